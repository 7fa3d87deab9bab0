#!/usr/bin/env bash
# bench/pipeline.sh — events/s through the pipeline (decode, signals, rules,
# the leads lane, one SQLite transaction per batch with its offsets) from a
# pre-filled embedded log of the simulator's world (realistic mixed events:
# usage, leads, trials, escalations, identify/group, duplicates, late and
# out-of-order), with 1 and 2 account workers, against the raw read rate of
# the same log in the same run (the ceiling).
#
#   BUILD=build bench/pipeline.sh        (or: make bench-pipeline)
#   BENCH_QUICK=1   a smaller world (under a minute)
#
# Output: the program's table; the LAST line is one JSON object with at
# least events_per_s and ratio_vs_log_read.
set -euo pipefail
BUILD=${BUILD:-build}
BIN="$BUILD/bench/pipeline"
[ -x "$BIN" ] || { echo "pipeline.sh: $BIN not built (run: make $BIN)" >&2; exit 1; }
dir=$(mktemp -d /tmp/crmstream-bench-pipeline-XXXXXX)
trap 'rm -rf "$dir"' EXIT
if [ "${BENCH_QUICK:-0}" = 1 ]; then ARGS=(-a 300 -d 20 -r 3); else ARGS=(-a 1500 -d 30 -r 5); fi
echo "pipeline.sh: quick=${BENCH_QUICK:-0}, $(nproc) vCPU, $(date -u +%Y-%m-%dT%H:%MZ); $BIN ${ARGS[*]}" >&2
"$BIN" "${ARGS[@]}" "$dir"
