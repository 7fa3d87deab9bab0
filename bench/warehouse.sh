#!/usr/bin/env bash
# bench/warehouse.sh — the warehouse sink (src/warehouse): events/s into
# PostgreSQL with the product's COPY destination against a row-by-row INSERT
# baseline (same events, same table shape, same batches and transactions,
# same throwaway PostgreSQL 15 started by the benchmark on 127.0.0.1 at a
# free port, run as the `postgres` user when we are root), and into zstd
# NDJSON files; then the pipeline's end-to-end latency (ingest -> routed,
# p50/p99) through `crmstream serve` with the warehouse sink running and
# then paused (POST /api/v1/warehouse/pause), and the catch-up after resume.
# See bench/warehouse.c.
#
#   BUILD=build bench/warehouse.sh          (or: make bench-warehouse)
#   BENCH_QUICK=1   30 k events, 3 s per latency phase (well under a minute)
#   BENCH_TMPDIR    where the log and files go (default /var/tmp)
#
# The LAST line is one JSON object with postgres_events_per_s,
# ratio_vs_insert, files_events_per_s and e2e_{running,paused}_p{50,99}_ms.
set -euo pipefail
BUILD=${BUILD:-build}
BIN="$BUILD/bench/warehouse"
die() { echo "warehouse.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run: make $BIN)"
[ -x "$BUILD/crmstream" ] || die "$BUILD/crmstream not built"
command -v jq >/dev/null || die "jq not installed (apt-get install jq)"
if [ "${BENCH_QUICK:-0}" = 1 ]; then args=(-n 30000 -r 200 -d 3)
else args=(-n 200000 -r 200 -d 10); fi
echo "warehouse.sh: $(nproc) vCPU, PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}'), args ${args[*]}" >&2
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
CRMSTREAM_BIN="$PWD/$BUILD/crmstream" "$BIN" "${args[@]}" | tee "$OUT"
tail -n 1 "$OUT" | jq -e '.postgres_events_per_s and .ratio_vs_insert and .files_events_per_s' >/dev/null \
  || die "no JSON from $BIN"
