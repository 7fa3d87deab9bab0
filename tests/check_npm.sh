#!/usr/bin/env bash
# The ingest API with the real npm SDKs (@segment/analytics-node,
# @rudderstack/rudder-sdk-node): tests/npm/sdk_test.js starts its own
# `crmstream serve` on 127.0.0.1 and prints TAP. `make deps` installs the
# packages (npm ci in tests/npm).
build=${1:-build}
cd "$(dirname "$0")/npm" || exit 1
if ! command -v node >/dev/null || [ ! -d node_modules/@segment/analytics-node ]; then
  echo "1..1"
  echo "not ok 1 - node or tests/npm/node_modules missing: run make deps"
  exit 1
fi
CRMSTREAM_BIN="$OLDPWD/$build/crmstream"
case "$build" in /*) CRMSTREAM_BIN="$build/crmstream";; esac
export CRMSTREAM_BIN
exec timeout 120 node sdk_test.js
