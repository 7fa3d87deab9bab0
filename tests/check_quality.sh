#!/usr/bin/env bash
# Signal quality on the default world (issue: simulator and evaluation):
# `crmstream demo` sends 30 days of the 500-account world with seed 2 (the
# thresholds were tuned on seed 1) and evaluates the alerts against the
# ground truth. Every planted pattern must reach recall >= 0.95 and
# precision >= 0.90. The table is printed as TAP comments. Prints TAP.
set -u
bin="$PWD/${1:-build}/crmstream"
out=$("$bin" demo --days 30 --seed 2 --duration 2 --rate 200 2>&1); rc=$?
dir=$(sed -n 's/^data  *\([^ ]*\) .*/\1/p' <<<"$out")
n=0 failed=0
check() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; failed=1; fi; }
check "demo exits 0" '[ "$rc" -eq 0 ]'
sed -n '/^pattern /,/^$/p' <<<"$out" | sed 's/^/# /'
for p in churn ticket_spike trial_pql signup_abuse; do
  line=$(grep -E "^$p +" <<<"$out")
  recall=$(awk '{print $4}' <<<"$line"); precision=$(awk '{print $6}' <<<"$line"); planted=$(awk '{print $2}' <<<"$line")
  check "$p: planted $planted >= 50" '[ -n "$planted" ] && [ "$planted" -ge 50 ]'
  check "$p: recall $recall >= 0.95" 'awk -v r="$recall" "BEGIN{exit !(r >= 0.95)}"'
  check "$p: precision $precision >= 0.90" 'awk -v p="$precision" "BEGIN{exit !(p >= 0.90)}"'
done
[ "$failed" -ne 0 ] && echo "$out" | tail -30 | sed 's/^/# /'
[ -n "$dir" ] && [[ "$dir" == data/demo-* ]] && rm -rf "$dir"
echo "1..$n"
exit $failed
