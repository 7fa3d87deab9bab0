#!/usr/bin/env bash
# Generated references must match the binary: docs/CONFIG.md against
# `crmstream config-reference`, docs/METRICS.md against `metrics-reference`.
bin="${1:-build}/crmstream"
echo "1..2"
if diff <("$bin" config-reference) <(sed -n '/^| key |/,$p' docs/CONFIG.md) >/dev/null; then
  echo "ok 1 - docs/CONFIG.md matches crmstream config-reference"
else
  echo "not ok 1 - docs/CONFIG.md is stale: regenerate it from crmstream config-reference"; fail=1
fi
if diff <("$bin" metrics-reference) <(sed -n '/^| metric | type | labels | meaning |$/,/^$/p' docs/METRICS.md | sed '/^$/d' | head -n "$("$bin" metrics-reference | wc -l)") >/dev/null; then
  echo "ok 2 - docs/METRICS.md matches crmstream metrics-reference"
else
  echo "not ok 2 - docs/METRICS.md is stale: regenerate it from crmstream metrics-reference"; fail=1
fi
exit ${fail:-0}
