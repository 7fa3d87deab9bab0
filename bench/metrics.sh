#!/usr/bin/env bash
# make bench-metrics — what collecting metrics costs ingest.
#
# Two measures, each with metrics.enabled true vs false on the same binary:
#  1. throughput: wrk posts native batches of 100 unique events over 4
#     keep-alive connections for D seconds, runs alternate on/off, medians of
#     R runs. log.fsync: never, so the run is CPU-bound and the metrics' CPU
#     cost is visible (with fsync always it hides behind the disk).
#  2. instructions: the server under valgrind --tool=callgrind takes the same
#     fixed request sequence (N requests of 100 events) in both modes; the
#     Ir ratio is repeatable where the throughput ratio is within noise.
# Last line: one JSON object with overhead_pct (instructions) and the
# throughput figures. BENCH_QUICK=1 finishes in under a minute.
set -euo pipefail
BUILD=${BUILD:-build}
bin="$PWD/$BUILD/crmstream"
if [ "${BENCH_QUICK:-0}" = 1 ]; then D=3; R=2; N=60; else D=8; R=3; N=200; fi
tmp=$(mktemp -d /tmp/crmstream-bench-metrics-XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

start() { # enabled(true|false) [wrapper...]
  local en=$1; shift
  rm -rf "$tmp/data"; mkdir -p "$tmp/data"
  printf 'log:\n  fsync: never\nmetrics:\n  enabled: %s\ningest:\n  dedupe_max_ids: 4194304\npipeline:\n  max_lag: 0\n' "$en" > "$tmp/config.yaml"
  "$@" "$bin" serve --config "$tmp/config.yaml" --data "$tmp/data" --http 127.0.0.1:0 2>"$tmp/serve.log" &
  pid=$!
  for _ in $(seq 1 3000); do [ -s "$tmp/data/http.addr" ] && break; sleep 0.01; done
  addr=$(cat "$tmp/data/http.addr")
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

run_wrk() { # prints events/s
  local out; out=$(BATCH=100 wrk -t2 -c4 -d"${D}s" -s bench/ingest_batch.lua "http://$addr/v1/events" 2>&1)
  if ! grep -q "non200=0" <<<"$out"; then echo "wrk saw non-200 answers:" >&2; echo "$out" >&2; exit 1; fi
  awk '/Requests\/sec/ {printf "%.0f\n", $2 * 100}' <<<"$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "== throughput (wrk, 4 connections, batches of 100, fsync never, ${D}s x $R each) =="
on=() off=()
for r in $(seq 1 "$R"); do
  start true;  on+=("$(run_wrk)");  stop
  start false; off+=("$(run_wrk)"); stop
  echo "run $r: metrics on ${on[-1]} ev/s, off ${off[-1]} ev/s"
done
on_med=$(printf '%s\n' "${on[@]}" | median)
off_med=$(printf '%s\n' "${off[@]}" | median)
tp_pct=$(awk -v a="$on_med" -v b="$off_med" 'BEGIN {printf "%.2f", (b - a) / b * 100}')

echo "== instructions (callgrind, $N requests of 100 events each) =="
ir() { # enabled -> total instructions of the server for the fixed sequence
  start "$1" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1" --dump-instr=no
  # A fixed sequence: N requests of 100 events, the same bytes in both modes.
  for i in $(seq 1 "$N"); do
    body="["
    for k in $(seq 1 100); do
      body+="{\"event_id\":\"cg-$i-$k\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_$((k % 50))\",\"properties\":{\"feature\":\"api\",\"count\":1}},"
    done
    curl -s -o /dev/null -w '' "http://$addr/v1/events" -d "${body%,}]"
  done
  stop
  awk '/^summary:/ {print $2}' "$tmp"/cg."$1"*
}
ir_on=$(ir true | awk '{s += $1} END {print s}')
ir_off=$(ir false | awk '{s += $1} END {print s}')
ir_pct=$(awk -v a="$ir_on" -v b="$ir_off" 'BEGIN {printf "%.2f", (a - b) / b * 100}')
per_on=$(awk -v a="$ir_on" -v n="$N" 'BEGIN {printf "%.0f", a / (n * 100)}')
per_off=$(awk -v a="$ir_off" -v n="$N" 'BEGIN {printf "%.0f", a / (n * 100)}')

printf '\n%-34s %14s %14s %10s\n' "" "metrics on" "metrics off" "overhead"
printf '%-34s %14s %14s %9s%%\n' "ingest events/s (median)" "$on_med" "$off_med" "$tp_pct"
printf '%-34s %14s %14s %9s%%\n' "server instructions per event" "$per_on" "$per_off" "$ir_pct"
echo "(throughput differences under ~5% are within this machine's run-to-run noise; the instruction count is the repeatable figure)"
echo "{\"bench\":\"metrics\",\"overhead_pct\":$ir_pct,\"throughput_overhead_pct\":$tp_pct,\"events_per_s_metrics_on\":$on_med,\"events_per_s_metrics_off\":$off_med,\"instructions_per_event_on\":$per_on,\"instructions_per_event_off\":$per_off,\"target_overhead_pct\":2}"
