#!/usr/bin/env bash
# Runs every test binary under BUILD/tests and every tests/check_*.sh, counts
# test cases (cmocka in TAP mode: "ok"/"not ok" lines) and ends with the
# line "N passed, N failed". Exit status 0 only when nothing failed.
#   tests/run.sh BUILD [FILTER]     FILTER: substring of the test file name
set -u
build=${1:-build}
filter=${2:-}
export CMOCKA_MESSAGE_OUTPUT=TAP
export CRMSTREAM_BIN="$PWD/$build/crmstream"
passed=0 failed=0
failures=()
run_one() { # name, command...
  local name=$1; shift
  local out rc
  # A hung test must fail, not eat CI's budget: TEST_TIMEOUT seconds each.
  out=$(timeout -k 10 "${TEST_TIMEOUT:-600}" "$@" 2>&1); rc=$?
  [ "$rc" -eq 124 ] && out+=$'\n'"not ok 999 - timed out after ${TEST_TIMEOUT:-600} s"
  local ok nok
  ok=$(grep -cE '^ok [0-9]+' <<<"$out")
  nok=$(grep -cE '^not ok [0-9]+' <<<"$out")
  if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then nok=1; fi   # crashed or failed outside a case
  passed=$((passed + ok)); failed=$((failed + nok))
  if [ "$nok" -gt 0 ]; then
    failures+=("$name")
    echo "---- $name (exit $rc) ----"; echo "$out" | tail -n 60
  fi
  printf '%-44s %3d passed, %d failed\n' "$name" "$ok" "$nok"
}
for t in "$build"/tests/unit/test_* "$build"/tests/integration/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *.d) continue;; esac
  [ -n "$filter" ] && [[ "$t" != *"$filter"* ]] && continue
  run_one "${t#"$build"/tests/}" "$t"
done
for s in tests/check_*.sh; do
  [ -f "$s" ] || continue
  [ -n "$filter" ] && [[ "$s" != *"$filter"* ]] && continue
  run_one "$(basename "$s")" bash "$s" "$build"
done
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
