#!/usr/bin/env bash
# bench/rules.sh — rule evaluation: ns per event with 100 realistic rules
# (src/rules: conditions compiled once at load, evaluated without
# allocation) against a naive baseline in the same run, an interpreter that
# re-parses each condition from its text for every event. Both sides must
# agree on every match. Routing-decision latency (route_p99_us) belongs to
# src/routing and is not measured here.
#
#   BUILD=build bench/rules.sh         (or: make bench-rules)
#   BENCH_QUICK=1   fewer events (a few seconds)
#   BENCH_REPS=N    repetitions (default 3; medians reported)
#
# Output: progress on stderr, a table on stdout, and the LAST line is one
# JSON object with ns_per_event_100_rules and baseline_ratio.
set -euo pipefail
BUILD=${BUILD:-build}
BIN="$BUILD/bench/rules"
QUICK=${BENCH_QUICK:-0}
REPS=${BENCH_REPS:-3}
[ -x "$BIN" ] || { echo "rules.sh: $BIN not built (run: make $BIN)" >&2; exit 1; }
if [ "$QUICK" = 1 ]; then EVENTS=60000; else EVENTS=400000; fi
echo "rules.sh: 100 rules, $EVENTS events x $REPS reps (baseline: 1/50 of the events)" >&2
out=$("$BIN" "$EVENTS" "$REPS")
kv() { sed -n "s/^$1=//p" <<<"$out"; }
ns=$(kv ns_per_event); base=$(kv baseline_ns_per_event); ratio=$(kv ratio)
printf '%-36s %12s\n' "compiled (src/rules), ns/event" "$ns"
printf '%-36s %12s\n' "re-parse per event, ns/event" "$base"
printf '%-36s %12s\n' "baseline / compiled" "${ratio}x"
printf '%-36s %12s\n' "ns per rule" "$(kv ns_per_rule)"
printf '%-36s %12s\n' "matching rules per event" "$(kv matches_per_event)"
printf '%-36s %12s\n' "compiled size of 100 conditions, B" "$(kv compiled_bytes)"
printf '{"ns_per_event_100_rules": %s, "baseline_ns_per_event_100_rules": %s, "baseline_ratio": %s, "ns_per_rule": %s, "matches_per_event": %s, "events": %s, "reps": %s, "quick": %s}\n' \
  "$ns" "$base" "$ratio" "$(kv ns_per_rule)" "$(kv matches_per_event)" "$EVENTS" "$REPS" "$QUICK"
