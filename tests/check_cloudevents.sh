#!/usr/bin/env bash
# POST /v1/cloudevents with the real npm `cloudevents` 10.0.0 SDK (binary and
# structured emitters, and a batch): tests/npm/cloudevents_test.js starts its
# own `crmstream serve` on 127.0.0.1 and prints TAP. `make deps` installs the
# package (npm ci in tests/npm).
build=${1:-build}
cd "$(dirname "$0")/npm" || exit 1
if ! command -v node >/dev/null || [ ! -d node_modules/cloudevents ]; then
  echo "1..1"
  echo "not ok 1 - node or tests/npm/node_modules/cloudevents missing: run make deps"
  exit 1
fi
CRMSTREAM_BIN="$OLDPWD/$build/crmstream"
case "$build" in /*) CRMSTREAM_BIN="$build/crmstream";; esac
export CRMSTREAM_BIN
exec timeout 120 node cloudevents_test.js
