#!/usr/bin/env bash
# bench/webhooks.sh — webhook delivery (src/out): crmstream's dispatcher
# (curl multi, per-destination lanes, keep-alive, Standard Webhooks signing)
# against a naive peer (one blocking curl_easy per delivery, sequential, a
# new connection each), same local receiver (tests/webhook/recv.c on
# 127.0.0.1), same signed payloads, same run. See bench/webhooks.c.
# Then end to end: `crmstream serve` with one rule (a `webhook` for every
# SupportCaseEscalated event) pointing at a local receiver; events posted one
# per request to /v1/events at a fixed rate. See bench/webhooks_e2e.c.
#
#   BUILD=build bench/webhooks.sh          (or: make bench-webhooks)
#   BENCH_QUICK=1   fewer deliveries (whole script well under a minute)
#   BENCH_TMPDIR    where the server's data dir goes (default /var/tmp)
#
# Figures: deliveries/s with N deliveries waiting in the outbox; the delay
# from the outbox write (the pipeline's commit) to the receiver, p50/p99, at
# a steady rate (outbox_delivery_p50_ms/p99_ms); the same delay beside a
# destination that takes 10 s per request (lane isolation); and end to end,
# the delay from the ingest ACKNOWLEDGEMENT (the client reads its 200) to
# the webhook's arrival at the receiver, p50/p99, with the count delivered.
# The LAST line is one JSON object with at least deliveries_per_s and
# delivery_p99_ms; delivery_p50_ms/p99_ms there are the end-to-end figures.
set -euo pipefail
BUILD=${BUILD:-build}
BIN="$BUILD/bench/webhooks"
E2E="$BUILD/bench/webhooks_e2e"
SRVBIN="$BUILD/crmstream"
die() { echo "webhooks.sh: $*" >&2; exit 1; }
for b in "$BIN" "$E2E" "$SRVBIN"; do [ -x "$b" ] || die "$b not built (run: make $b)"; done
command -v jq >/dev/null || die "jq not installed (apt-get install jq; not yet in the Makefile's DEPS_PKGS)"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    args=(-n 5000 -r 300 -d 3 -c 8)
    e2e_args=(-r 200 -d 3 -c 4 -w 60)
else
    args=(-n 50000 -r 1000 -d 10 -c 8)
    e2e_args=(-r 200 -d 10 -c 4 -w 60)
fi

TMP=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/crmstream-bench-webhooks.XXXXXX")
SRV="" GEN=""
stop_pid() { # pid
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() { local rc=$?; stop_pid "$GEN"; stop_pid "$SRV"; rm -rf "$TMP"; exit "$rc"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "webhooks.sh: $(nproc) vCPU, $(curl-config --version 2>/dev/null || echo libcurl), args ${args[*]}; e2e ${e2e_args[*]}" >&2

# 1. The dispatcher against the naive peer, outbox-fed (bench/webhooks.c).
"$BIN" "${args[@]}" | tee "$TMP/outbox.out" | sed '$d'
OUT_JSON=$(tail -n 1 "$TMP/outbox.out")
echo "$OUT_JSON" | jq -e .deliveries_per_s >/dev/null || die "no JSON from $BIN"

# 2. End to end through `crmstream serve`: the default config
#    (config/crmstream.yaml: fsync always, sqlite store), plus one rule and
#    one destination at the receiver that webhooks_e2e starts. Outbound
#    settings are the defaults (poll_ms 100; the pipeline wakes the
#    dispatcher after each commit that wrote outbox rows).
mkdir -p "$TMP/data"
cat >"$TMP/rules.yaml" <<'YAML'
rules:
  - id: escalation-hook
    when: event.type == "SupportCaseEscalated"
    actions:
      - webhook: {destination: bench, template: "case {{ event.properties.case_id }} escalated"}
YAML
"$E2E" -p "$TMP/recv.port" -a "$TMP/data/http.addr" "${e2e_args[@]}" >"$TMP/e2e.json" &
GEN=$!
for _ in $(seq 1 1000); do [ -s "$TMP/recv.port" ] && break; kill -0 "$GEN" 2>/dev/null || die "webhooks_e2e died"; sleep 0.01; done
[ -s "$TMP/recv.port" ] || die "webhooks_e2e wrote no receiver port"
PORT=$(cat "$TMP/recv.port")
{ grep -v '^data:\|^http:' config/crmstream.yaml
  printf 'rules: %s\n' "$TMP/rules.yaml"
  printf 'outbound:\n  destinations:\n'
  printf '    - {name: bench, kind: webhook, url: "http://127.0.0.1:%s/hook",' "$PORT"
  printf ' secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], allow_private: true}\n'
} >"$TMP/config.yaml"
"$SRVBIN" serve --config "$TMP/config.yaml" --data "$TMP/data" --http 127.0.0.1:0 2>>"$TMP/serve.log" &
SRV=$!
E2E_RC=0
wait "$GEN" || E2E_RC=$?
GEN=""
E2E_JSON=$(tail -n 1 "$TMP/e2e.json")
if ! echo "$E2E_JSON" | jq -e .e2e_delivery_p99_ms >/dev/null 2>&1; then
  tail -n 20 "$TMP/serve.log" >&2
  die "no JSON from $E2E (rc $E2E_RC)"
fi
[ "$E2E_RC" = 0 ] || { tail -n 20 "$TMP/serve.log" >&2; echo "webhooks.sh: WARNING: not every event was acknowledged and delivered (see above)" >&2; }
stop_pid "$SRV"; SRV=""

printf '%-34s %14s\n' "end to end (serve, rule, webhook)" "$(echo "$E2E_JSON" | jq -r '"\(.e2e_rate_per_s)/s x \(.e2e_seconds) s"')"
echo "$E2E_JSON" | jq -r '
  "\("delivered / events acked" | .+ " " * (34 - length)) \("\(.e2e_delivered) / \(.e2e_acked)" | " " * (14 - length) + .)",
  "\("ingest ack p99 ms" | .+ " " * (34 - length)) \(.e2e_ack_p99_ms | tostring | " " * (14 - length) + .)",
  "\("delay p50 ms (ack -> receiver)" | .+ " " * (34 - length)) \(.e2e_delivery_p50_ms | tostring | " " * (14 - length) + .)",
  "\("delay p99 ms (ack -> receiver)" | .+ " " * (34 - length)) \(.e2e_delivery_p99_ms | tostring | " " * (14 - length) + .)"'

# Last line: the outbox-fed figures (their delays renamed outbox_delivery_*),
# the e2e figures, and delivery_p50_ms/p99_ms = ingest ack -> receiver.
jq -c -n --argjson o "$OUT_JSON" --argjson e "$E2E_JSON" '
  ($o | with_entries(if .key == "delivery_p50_ms" then .key = "outbox_delivery_p50_ms"
                     elif .key == "delivery_p99_ms" then .key = "outbox_delivery_p99_ms" else . end))
  + $e + {delivery_p50_ms: $e.e2e_delivery_p50_ms, delivery_p99_ms: $e.e2e_delivery_p99_ms,
          delivery_measured_from: "ingest_ack"}'
exit "$E2E_RC"
