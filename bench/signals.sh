#!/usr/bin/env bash
# bench/signals.sh — the signals engine (src/signals): updates per second per
# core with pre-decoded events (parsing excluded) at 100 k and 1 M accounts,
# bytes per account at 1 M accounts, the daily sweep's cost per account,
# snapshot size / encode / restore time, and replay throughput with parsing
# included (embedded log read + fast decode + batched apply), on 1 and 2
# threads. Peers in the same run: a naive engine that rescans each account's
# event list on every event, one cs_sig_apply call per event (no batch
# prefetch), the cJSON replay path, and cJSON parse alone.
# Design targets (DESIGN-BRIEF §6): >= 2,000,000 updates/s/core; <= 512 bytes
# per account; replay >= 1,000,000 events/s.
#
#   BUILD=build bench/signals.sh          (or: make bench-signals)
#   BENCH_QUICK=1   fewer events (whole script well under a minute)
#
# Output: the program's table; the LAST line is one JSON object with at least
# updates_per_s_per_core, bytes_per_account, replay_events_per_s.
set -euo pipefail

BUILD=${BUILD:-build}
BIN="$BUILD/bench/signals"
QUICK=${BENCH_QUICK:-0}
[ -x "$BIN" ] || { echo "signals.sh: $BIN not built (run: make $BIN)" >&2; exit 1; }

if [ "$QUICK" = 1 ]; then
    ARGS=(-a 100000,1000000 -n 2000000 -d 30 -r 400000 -t 2 -N 1000000)
else
    ARGS=(-a 100000,1000000 -n 10000000 -d 30 -r 2000000 -t 2 -N 3000000)
fi
echo "signals.sh: quick=$QUICK, $(nproc) vCPU, $(date -u +%Y-%m-%dT%H:%MZ); $BIN ${ARGS[*]}" >&2
out=$("$BIN" "${ARGS[@]}")
echo "$out" | sed '$d'
json=$(echo "$out" | tail -n 1)
# verdicts against the targets, appended to the program's JSON
verdict=$(awk -v j="$json" 'BEGIN {
    n = split(j, kv, /[,{}]/); for (i = 1; i <= n; i++) { split(kv[i], p, ":"); gsub(/"/, "", p[1]); v[p[1]] = p[2] }
    printf "\"updates_target_met\":%s,\"bytes_target_met\":%s,\"replay_target_met\":%s",
        (v["updates_per_s_per_core"] >= 2000000 ? "true" : "false"),
        (v["bytes_per_account"] <= 512 ? "true" : "false"),
        (v["replay_events_per_s"] >= 1000000 ? "true" : "false") }')
echo "targets: updates >= 2,000,000/s/core, bytes <= 512/account, replay >= 1,000,000 events/s"
echo "${json%\}},\"quick\":$QUICK,\"nproc\":$(nproc),$verdict}"
