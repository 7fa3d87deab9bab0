#!/usr/bin/env bash
# docs/CONFIG.md must hold exactly what `crmstream config-reference` prints.
bin="${1:-build}/crmstream"
echo "1..1"
if diff <("$bin" config-reference) <(sed -n '/^| key |/,$p' docs/CONFIG.md) >/dev/null; then
  echo "ok 1 - docs/CONFIG.md matches crmstream config-reference"
else
  echo "not ok 1 - docs/CONFIG.md is stale: regenerate it from crmstream config-reference"; exit 1
fi
