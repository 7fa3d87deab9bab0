#!/usr/bin/env bash
# bench/rules.sh — rule evaluation: ns per event with 100 realistic rules
# (src/rules: conditions compiled once at load, evaluated without
# allocation) against a naive baseline in the same run, an interpreter that
# re-parses each condition from its text for every event. Both sides must
# agree on every match. Then routing (src/routing): the latency of one
# routing decision with 200 reps in a SQLite store (load reps and open
# leads in the transaction, rotation, decide, explain), the pure decision
# alone, and as the peer the first version's round robin over 3 config reps
# through the same path.
#
#   BUILD=build bench/rules.sh         (or: make bench-rules)
#   BENCH_QUICK=1   fewer events (a few seconds)
#   BENCH_REPS=N    repetitions (default 3; medians reported)
#
# Output: progress on stderr, a table on stdout, and the LAST line is one
# JSON object with ns_per_event_100_rules, baseline_ratio and route_p99_us.
set -euo pipefail
BUILD=${BUILD:-build}
BIN="$BUILD/bench/rules"
QUICK=${BENCH_QUICK:-0}
REPS=${BENCH_REPS:-3}
[ -x "$BIN" ] || { echo "rules.sh: $BIN not built (run: make $BIN)" >&2; exit 1; }
if [ "$QUICK" = 1 ]; then EVENTS=60000; ROUTES=2000; else EVENTS=400000; ROUTES=20000; fi
echo "rules.sh: 100 rules, $EVENTS events x $REPS reps (baseline: 1/50 of the events)" >&2
out=$("$BIN" "$EVENTS" "$REPS" "$ROUTES")
kv() { sed -n "s/^$1=//p" <<<"$out"; }
ns=$(kv ns_per_event); base=$(kv baseline_ns_per_event); ratio=$(kv ratio)
printf '%-36s %12s\n' "compiled (src/rules), ns/event" "$ns"
printf '%-36s %12s\n' "re-parse per event, ns/event" "$base"
printf '%-36s %12s\n' "baseline / compiled" "${ratio}x"
printf '%-36s %12s\n' "ns per rule" "$(kv ns_per_rule)"
printf '%-36s %12s\n' "matching rules per event" "$(kv matches_per_event)"
printf '%-36s %12s\n' "compiled size of 100 conditions, B" "$(kv compiled_bytes)"
rp50=$(kv route_p50_us); rp99=$(kv route_p99_us); rr99=$(kv route_rr3_p99_us)
rratio=$(awk -v a="$rp99" -v b="$rr99" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')
printf '%-36s %12s\n' "route, 200 reps, p50 / p99 us" "$rp50 / $rp99"
printf '%-36s %12s\n' "  pure decision, p50 / p99 us" "$(kv route_decide_p50_us) / $(kv route_decide_p99_us)"
printf '%-36s %12s\n' "  peer: round robin, 3 reps, p99 us" "$rr99"
printf '%-36s %12s\n' "  200 reps / round robin 3, p99" "${rratio}x"
printf '{"ns_per_event_100_rules": %s, "baseline_ns_per_event_100_rules": %s, "baseline_ratio": %s, "ns_per_rule": %s, "matches_per_event": %s, "events": %s, "reps": %s, "route_reps": 200, "route_decisions": %s, "route_p50_us": %s, "route_p99_us": %s, "route_decide_p50_us": %s, "route_decide_p99_us": %s, "route_rr3_p50_us": %s, "route_rr3_p99_us": %s, "route_p99_vs_rr3": %s, "quick": %s}\n' \
  "$ns" "$base" "$ratio" "$(kv ns_per_rule)" "$(kv matches_per_event)" "$EVENTS" "$REPS" "$ROUTES" "$rp50" "$rp99" \
  "$(kv route_decide_p50_us)" "$(kv route_decide_p99_us)" "$(kv route_rr3_p50_us)" "$rr99" "$rratio" "$QUICK"
