#!/usr/bin/env bash
# bench/e2e.sh — lead routing end to end (issue 7): from the ingest
# ACKNOWLEDGEMENT of a LeadCreated to the lead's routed row COMMITTED in the
# store, p50/p99/p99.9, at 2,000 events/s of realistic background traffic
# (the simulator's world events, src/sim/world.h, paced, in batches as SDKs
# send them) with leads among them. See bench/e2e.c for the method.
#
#   BUILD=build bench/e2e.sh          (or: make bench-e2e)
#   BENCH_QUICK=1   10 s of traffic (whole script well under a minute)
#   BENCH_TMPDIR    where the server's data dir goes (default /var/tmp)
#
# The server is `crmstream serve` with the default config (config/crmstream.yaml:
# fsync always, SQLite store, 8 partitions, 3 reps, round robin) and
# CRMSTREAM_HIST_TRACE=crmstream_e2e_latency_seconds=FILE, which makes it
# write every observation of that histogram exactly (metrics.c), so the
# percentiles are not bucket bounds. Peer: the same run without background
# traffic (leads alone), to show what the 2,000 events/s cost.
# The LAST line is one JSON object with at least routed_p50_ms, routed_p99_ms,
# routed_p999_ms and targets_met (p50 <= 1 ms, p99 <= 5 ms).
set -euo pipefail
BUILD=${BUILD:-build}
DRV="$BUILD/bench/e2e"
SRVBIN="$BUILD/crmstream"
die() { echo "e2e.sh: $*" >&2; exit 1; }
for b in "$DRV" "$SRVBIN"; do [ -x "$b" ] || die "$b not built (run: make $b)"; done
command -v jq >/dev/null || die "jq not installed"
if [ "${BENCH_QUICK:-0}" = 1 ]; then secs=10; else secs=60; fi
RATE=${E2E_RATE:-2000}
LEADS=${E2E_LEADS:-20}

TMP=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/crmstream-bench-e2e.XXXXXX")
SRV=""
stop_pid() { # pid
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() { local rc=$?; stop_pid "$SRV"; rm -rf "$TMP"; exit "$rc"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "e2e.sh: $(nproc) vCPU, ${secs} s per run, ${RATE} events/s background + ${LEADS} leads/s" >&2
grep -v '^data:\|^http:' config/crmstream.yaml >"$TMP/config.yaml"

run() { # name rate -> $TMP/name.json
  local name=$1 rate=$2 rc=0
  rm -rf "$TMP/data" "$TMP/trace"; mkdir -p "$TMP/data"
  CRMSTREAM_HIST_TRACE="crmstream_e2e_latency_seconds=$TMP/trace" \
    "$SRVBIN" serve --config "$TMP/config.yaml" --data "$TMP/data" --http 127.0.0.1:0 2>>"$TMP/serve.log" &
  SRV=$!
  "$DRV" -a "$TMP/data/http.addr" -T "$TMP/trace" -r "$rate" -d "$secs" -l "$LEADS" -b 10 -c 4 \
    >"$TMP/$name.json" 2>"$TMP/$name.err" || rc=$?
  stop_pid "$SRV"; SRV=""
  sed "s/^/  [$name] /" "$TMP/$name.err" >&2
  jq -e .routed_p99_ms "$TMP/$name.json" >/dev/null 2>&1 || { tail -n 20 "$TMP/serve.log" >&2; die "no JSON from $DRV ($name, rc $rc)"; }
  [ "$rc" = 0 ] || echo "e2e.sh: WARNING: $name: not every lead was acknowledged and measured (rc $rc)" >&2
}

run background "$RATE"
# The peer: leads alone (a trickle of background keeps the same code path).
run alone 1

B=$(tail -n 1 "$TMP/background.json"); A=$(tail -n 1 "$TMP/alone.json")
printf '%-44s %12s %12s\n' "ack -> routed row committed (ms)" "alone" "@${RATE}/s" >&2
for k in p50 p99 p999; do
  printf '%-44s %12s %12s\n' "  $k" "$(echo "$A" | jq -r .routed_${k}_ms)" "$(echo "$B" | jq -r .routed_${k}_ms)" >&2
done
printf '%-44s %12s %12s\n' "arrival -> committed p99 (server side, ms)" "$(echo "$A" | jq -r .arrival_to_commit_p99_ms)" \
  "$(echo "$B" | jq -r .arrival_to_commit_p99_ms)" >&2
echo "$B" | jq -r '"targets (p50 <= 1 ms, p99 <= 5 ms): \(if .targets_met then "met" else "NOT met" end)"' >&2
jq -c -n --argjson b "$B" --argjson a "$A" '$b + {alone_routed_p50_ms: $a.routed_p50_ms, alone_routed_p99_ms: $a.routed_p99_ms,
  alone_routed_p999_ms: $a.routed_p999_ms,
  p99_ratio_background_vs_alone: (if $a.routed_p99_ms > 0 then ($b.routed_p99_ms / $a.routed_p99_ms * 100 | round / 100) else null end)}'
