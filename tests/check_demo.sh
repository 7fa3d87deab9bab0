#!/usr/bin/env bash
# `crmstream demo` (what `make demo` runs), shortened: it must exit 0, route
# every acknowledged lead to the reps of config/crmstream.yaml, and say where
# its data and logs are. Prints TAP.
set -u
bin="$PWD/${1:-build}/crmstream"
out=$("$bin" demo --days 3 --accounts 60 --duration 2 --rate 500 2>&1); rc=$?
dir=$(sed -n 's/^data  *\([^ ]*\) .*/\1/p' <<<"$out")
n=0 failed=0
check() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; failed=1; fi; }
check "demo exits 0" '[ "$rc" -eq 0 ]'
acked=$(sed -n 's/^leads acknowledged *\([0-9]*\).*/\1/p' <<<"$out")
routed=$(sed -n 's/^leads routed *\([0-9]*\).*/\1/p' <<<"$out")
check "every acknowledged lead routed ($routed of $acked)" '[ -n "$acked" ] && [ "$acked" -gt 0 ] && [ "$acked" = "$routed" ]'
check "leads spread over the configured reps" 'grep -q "rep_ada" <<<"$out" && grep -q "rep_grace" <<<"$out" && grep -q "rep_linus" <<<"$out"'
check "latency line" 'grep -qE "ingest -> routed +p50 [0-9.]+ ms +p99 [0-9.]+ ms +p99.9 [0-9.]+ ms +max" <<<"$out"'
check "detection quality table with every planted pattern" 'grep -qE "^churn +[0-9]+" <<<"$out" && grep -qE "^ticket_spike +[0-9]+" <<<"$out" && grep -qE "^trial_pql +[0-9]+" <<<"$out" && grep -qE "^signup_abuse +[0-9]+" <<<"$out"'
check "routing correctness line, every lead to its expected owner" 'grep -qE "^routing +[0-9]+ leads in the truth, ([0-9]+) routed, \1 to the expected owner: correctness 1.000" <<<"$out"'
check "traffic mix: both doors and the perturbations" 'grep -qE "native /v1/events [1-9][0-9]* .*Segment /v1/batch [1-9][0-9]*" <<<"$out" && grep -qE "^traffic sent +\{\"events\":[0-9]+" <<<"$out" && grep -qE "late events in the events DLQ \(reason late_event\): [0-9]+" <<<"$out"'
check "e2e latency percentiles from /metrics" 'grep -qE "^  ingest -> lead routed +live +[0-9.]+ +[0-9.]+ +[0-9.]+ +[1-9]" <<<"$out" && grep -qE "^  ingest -> signal written +backfill +[0-9.]+ +[0-9.]+ +[0-9.]+ +[1-9]" <<<"$out"'
check "where to look next" 'grep -q "^where to look next" <<<"$out" && grep -q "GET /metrics" <<<"$out" && grep -q "GET /api/v1/leads" <<<"$out" && grep -q "GET /api/v1/alerts" <<<"$out" && grep -q "crmstream status" <<<"$out" && grep -q "crmstream dlq list --kind event" <<<"$out"'
check "data dir and server log exist" '[ -n "$dir" ] && [ -f "$dir/serve.log" ] && [ -f "$dir/crm.sqlite" ]'
[ "$failed" -ne 0 ] && echo "$out" | sed 's/^/# /'
[ -n "$dir" ] && [[ "$dir" == data/demo-* ]] && rm -rf "$dir"
# The opt-in lead barrier (for a server without the leads lane) keeps the
# expected owners too.
out2=$("$bin" demo --days 3 --accounts 60 --duration 1 --rate 200 --lead-barrier 2>&1); rc2=$?
dir2=$(sed -n 's/^data  *\([^ ]*\) .*/\1/p' <<<"$out2")
check "--lead-barrier: exits 0, waits counted, every lead to its expected owner" '[ "$rc2" -eq 0 ] && grep -qE "lead ordering +[1-9][0-9]* waits" <<<"$out2" && grep -qE "^routing +[0-9]+ leads in the truth, ([0-9]+) routed, \1 to the expected owner: correctness 1.000" <<<"$out2"'
[ "$rc2" -ne 0 ] && echo "$out2" | tail -30 | sed 's/^/# /'
[ -n "$dir2" ] && [[ "$dir2" == data/demo-* ]] && rm -rf "$dir2"
echo "1..$n"
exit $failed
