#!/usr/bin/env bash
# Differential test of the rules expression language (src/rules/expr.c)
# against @bufbuild/cel 0.6.1 (npm, pinned in tests/cel/package-lock.json):
# ~600 generated expressions (fixed seed) plus ~110 edge cases over the
# fixed bindings in tests/cel/bindings.json. Builds the small C driver
# tests/cel/cel_eval.c from the sources (sanitizers on when BUILD is an
# asan build), then tests/cel/diff.mjs compares and prints TAP; the last
# line is a JSON summary. Documented differences: docs/RULES.md.
#   tests/check_cel.sh [BUILD]      CEL_SEED=S CEL_COUNT=N to explore
build=${1:-build}
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
if ! command -v node >/dev/null || [ ! -d tests/cel/node_modules/@bufbuild/cel ]; then
  echo "1..1"
  echo "not ok 1 - node or tests/cel/node_modules missing: run make deps"
  exit 1
fi
flags=""
case "$build" in *asan*) flags="-fsanitize=address,undefined -fno-sanitize-recover=all";; esac
mkdir -p "$build/tests/cel"
bin="$build/tests/cel/cel_eval"
if ! ${CC:-cc} -O1 -g -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow $flags -Isrc \
     -o "$bin" tests/cel/cel_eval.c src/rules/expr.c src/core/util.c -lcjson -lm 2>"$build/tests/cel/build.log"; then
  echo "1..1"
  echo "not ok 1 - building tests/cel/cel_eval failed: $(head -c 400 "$build/tests/cel/build.log")"
  exit 1
fi
exec timeout 120 node tests/cel/diff.mjs "$bin" --seed "${CEL_SEED:-20261127}" --count "${CEL_COUNT:-600}"
