#!/usr/bin/env bash
# bench/webhooks.sh — webhook delivery (src/out): crmstream's dispatcher
# (curl multi, per-destination lanes, keep-alive, Standard Webhooks signing)
# against a naive peer (one blocking curl_easy per delivery, sequential, a
# new connection each), same local receiver (tests/webhook/recv.c on
# 127.0.0.1), same signed payloads, same run. See bench/webhooks.c.
#
#   BUILD=build bench/webhooks.sh          (or: make bench-webhooks)
#   BENCH_QUICK=1   fewer deliveries (whole script well under a minute)
#
# Figures: deliveries/s with N deliveries waiting in the outbox; the delay
# from the outbox write (the pipeline's commit) to the receiver, p50/p99, at
# a steady rate; the same delay beside a destination that takes 10 s per
# request (lane isolation). The LAST line is one JSON object with at least
# deliveries_per_s and delivery_p99_ms.
set -euo pipefail
BUILD=${BUILD:-build}
BIN="$BUILD/bench/webhooks"
[ -x "$BIN" ] || { echo "webhooks.sh: $BIN not built (run: make $BIN)" >&2; exit 1; }
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    args=(-n 5000 -r 300 -d 3 -c 8)
else
    args=(-n 50000 -r 1000 -d 10 -c 8)
fi
echo "webhooks.sh: $(nproc) vCPU, $(curl-config --version 2>/dev/null || echo libcurl), args ${args[*]}" >&2
exec "$BIN" "${args[@]}"
