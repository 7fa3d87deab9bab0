#!/usr/bin/env bash
# bench/ingest.sh — HTTP ingest as users run it (make bench-ingest).
#
# The server: `crmstream serve` with the default config (config/crmstream.yaml:
# 8 partitions, log.fsync always = fsync before every 200, group commit through
# the topic's journal: one fdatasync per commit round for all partitions;
# log.compression zstd, the default: each partition's share of a request is
# one zstd frame on disk), pipeline on (default batches: up to 5,000 events
# per store transaction when behind). One change, said here as DESIGN-BRIEF §6 asks: pipeline.max_lag
# is 0 (no bound), because the pipeline falls behind ingest at these rates and
# the default bound (1,000,000 events) would turn the end of a run into 503s.
# A fresh data dir per run, on a real disk (BENCH_TMPDIR, default /var/tmp).
#
# Per run (R runs; medians reported):
#  1. throughput: wrk posts Segment /v1/batch bodies of 100 realistic track
#     events (~26 KB, unique messageIds; bench/ingest_segment.lua) over C
#     keep-alive connections for D s. Only 200 answers count: events/s =
#     200s/s x 100; any non-200 fails the run.
#  2. latency: bench/ingest_paced (C, open loop) sends single-event
#     POST /v1/track requests at a fixed 5,000 req/s for D s over 16
#     connections, latency measured from each request's due time
#     (coordinated omission corrected); p50/p99.
#  3. the peer: the same events XADDed to a Redis 7 stream (redis-server
#     started here on a free port, appendonly yes, appendfsync always),
#     pipelined 100 per round trip over C connections, for D s.
#  4. (once, besides the medians) the same wrk run with the pipeline paused
#     (POST /api/v1/pipeline/pause): ingest's own cost without the pipeline's
#     store writes on the same two cores. Reported apart, never as events_per_s.
#  0. (first) build/bench/ingest_json: CPU ns per event of the validate path
#     (cs_ingest_segment, log stubbed) and of parsing alone with each JSON
#     library tried (docs/decisions.md "JSON").
# Last line: one JSON object (events_per_s, single_p50_ms, single_p99_ms,
# redis_events_per_s, ratio_vs_redis, ...). BENCH_QUICK=1: under a minute.
#
#   BENCH_QUICK=1  D=4 s, R=2       BENCH_REPS=N  runs (default 3)
#   BENCH_CONNS=C  wrk/redis connections (default 8)
set -euo pipefail
BUILD=${BUILD:-build}
BIN="$PWD/$BUILD/crmstream"
GEN="$PWD/$BUILD/bench/ingest_paced"
JB="$PWD/$BUILD/bench/ingest_json"
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then D=4; R=${BENCH_REPS:-2}; else D=10; R=${BENCH_REPS:-3}; fi
C=${BENCH_CONNS:-8}
RATE=5000
BASE=${BENCH_TMPDIR:-/var/tmp}

die() { echo "ingest.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (make)"
[ -x "$GEN" ] || die "$GEN not built (make $BUILD/bench/ingest_paced)"
[ -x "$JB" ] || die "$JB not built (make $BUILD/bench/ingest_json)"
for t in wrk redis-server redis-cli; do command -v $t >/dev/null || die "$t not installed (make deps)"; done

TMP=$(mktemp -d "$BASE/crmstream-bench-ingest.XXXXXX")
SRV="" REDIS_PID=""
stop_pid() { # pid
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() { local rc=$?; stop_pid "$SRV"; stop_pid "$REDIS_PID"; rm -rf "$TMP"; exit "$rc"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
FSTYPE=$(df --output=fstype "$TMP" | tail -n 1)
[ "$FSTYPE" = tmpfs ] && echo "ingest.sh: WARNING: $BASE is tmpfs; fsync is free there" >&2

# The default config, with the lag bound lifted (see above).
sed -e 's/^pipeline:$/pipeline:\n  max_lag: 0/' config/crmstream.yaml >"$TMP/config.yaml"
grep -q '^  max_lag: 0$' "$TMP/config.yaml" || die "config/crmstream.yaml has no pipeline: section"
grep -q 'fsync: always' "$TMP/config.yaml" || die "config/crmstream.yaml no longer says fsync: always"

start_server() {
  rm -rf "$TMP/data"; mkdir -p "$TMP/data"
  "$BIN" serve --config "$TMP/config.yaml" --data "$TMP/data" --http 127.0.0.1:0 2>>"$TMP/serve.log" &
  SRV=$!
  for _ in $(seq 1 3000); do [ -s "$TMP/data/http.addr" ] && break; kill -0 "$SRV" || die "server died (see $TMP/serve.log)"; sleep 0.01; done
  ADDR=$(cat "$TMP/data/http.addr")
}

start_redis() {
  local port
  for _ in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 40000))
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    rm -rf "$TMP/redis" && mkdir -p "$TMP/redis"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$TMP/redis" --appendonly yes --appendfsync always \
      --save "" --auto-aof-rewrite-percentage 0 --daemonize no --logfile "$TMP/redis/redis.log" &
    REDIS_PID=$!
    for _ in $(seq 50); do
      kill -0 "$REDIS_PID" 2>/dev/null || break
      if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then REDIS_ADDR=127.0.0.1:$port; return 0; fi
      sleep 0.1
    done
    stop_pid "$REDIS_PID"; REDIS_PID=""
  done
  die "could not start redis-server"
}

# The answers of a wrk run, checked on both sides: wrk counts completed
# requests and those answered >= 400; the server counts its answers by code
# (crmstream_ingest_requests_total). Every request wrk counted must be a 200
# the server gave, and the server may have answered at most one more per
# connection (in flight when wrk stopped). Prints wrk's count of 200s.
check_wrk() { # wrk-output
  local ok bad srv other m
  ok=$(sed -n 's/^statuses ok=\([0-9]*\) non200=.*/\1/p' <<<"$1")
  bad=$(sed -n 's/^statuses ok=[0-9]* non200=\([0-9]*\)/\1/p' <<<"$1")
  [ -n "$ok" ] || { echo "$1" >&2; die "no status line from wrk"; }
  [ "$bad" = 0 ] || { echo "$1" >&2; tail -n 5 "$TMP/serve.log" >&2; die "wrk saw $bad answers >= 400"; }
  m=$(curl -sf "http://$ADDR/metrics") || die "could not read the server's metrics"
  srv=$(awk '/^crmstream_ingest_requests_total\{endpoint="batch",code="200"\}/ {print $2}' <<<"$m")
  other=$(awk '/^crmstream_ingest_requests_total\{/ && !/code="200"/ {n += $2} END {print n + 0}' <<<"$m")
  [ "$other" = 0 ] || { grep '^crmstream_ingest_requests_total' <<<"$m" >&2; die "the server gave $other answers other than 200"; }
  [ -n "$srv" ] && [ "$srv" -ge "$ok" ] && [ "$srv" -le $((ok + C)) ] ||
    die "wrk counted $ok answers as 200, the server gave ${srv:-0} (expected $ok..$((ok + C)))"
  echo "$ok"
}

RESULTS="$TMP/results"; : >"$RESULTS"
kv() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; }

echo "ingest.sh: $(nproc) vCPU, $FSTYPE at $BASE, D=${D}s x $R runs, $C connections, quick=$QUICK" >&2
# 0. CPU cost of the validate path and of the JSON parsers alone.
jp=$("$JB" path -n "$([ "$QUICK" = 1 ] && echo 50 || echo 200)") || die "ingest_json path failed"
jl=$("$JB" parsers -n "$([ "$QUICK" = 1 ] && echo 50 || echo 200)") || die "ingest_json parsers failed"
PATH_NS=$(kv ns_per_event "$jp")
pns() { sed -n "s/^parser $1 ns_per_event=\([0-9]*\).*/\1/p" <<<"$jl"; }
echo "  validate path (cs_ingest_segment, log stubbed): $PATH_NS ns/event CPU; parse+free alone: cJSON $(pns cjson), json-c $(pns jsonc), jansson $(pns jansson), yajl $(pns yajl), jsmn (tokens only) $(pns jsmn_tokens_only), strict syntax pass $(pns syntax_pass) ns/event" >&2
start_redis
for r in $(seq 1 "$R"); do
  start_server
  out=$(RUN=$r BATCH=100 wrk -t2 -c"$C" -d"${D}s" --latency -s bench/ingest_segment.lua "http://$ADDR/v1/batch" 2>&1)
  okn=$(check_wrk "$out")
  secs=$(awk '/requests in/ {v=$4; sub(/,$/, "", v); if (v ~ /ms$/) {sub(/ms$/, "", v); v/=1000} else if (v ~ /m$/) {sub(/m$/, "", v); v*=60} else sub(/s$/, "", v); print v}' <<<"$out")
  eps=$(awk -v n="$okn" -v s="$secs" 'BEGIN {printf "%.0f", n * 100 / s}')
  bp99=$(sed -n 's/^latency p50_ms=[0-9.]* p99_ms=\([0-9.]*\)/\1/p' <<<"$out")
  echo "  run $r: /v1/batch x100: $eps events/s ($okn requests in ${secs}s, batch p99 ${bp99} ms)" >&2
  # A fresh server for the paced run, so it does not share the CPUs with the
  # pipeline catching up on the throughput run's backlog, nor the disk with
  # the kernel writing back the hundreds of MB that run left dirty (sync).
  stop_pid "$SRV"; SRV=""; rm -rf "$TMP/data"; sync; start_server
  p=$("$GEN" http -a "$ADDR" -r "$RATE" -d "$D" -c 16 -k "$r") || { echo "$p" >&2; die "paced run failed"; }
  echo "  run $r: /v1/track at $RATE/s: $(kv rate "$p") req/s, p50 $(kv p50_ms "$p") ms, p99 $(kv p99_ms "$p") ms, max $(kv max_ms "$p") ms" >&2
  stop_pid "$SRV"; SRV=""
  redis-cli -h "${REDIS_ADDR%:*}" -p "${REDIS_ADDR#*:}" del events >/dev/null
  q=$("$GEN" redis -a "$REDIS_ADDR" -d "$D" -c "$C" -P 100 -k "$r") || { echo "$q" >&2; die "redis run failed"; }
  echo "  run $r: redis XADD x100 pipelined: $(kv eps "$q") events/s" >&2
  echo "$eps $(kv p50_ms "$p") $(kv p99_ms "$p") $(kv eps "$q") $bp99 $(kv rate "$p")" >>"$RESULTS"
done

# 4. Once: the throughput run with the pipeline paused (ingest alone).
start_server
curl -sf -X POST "http://$ADDR/api/v1/pipeline/pause" >/dev/null || die "could not pause the pipeline"
out=$(RUN=$((R + 1)) BATCH=100 wrk -t2 -c"$C" -d"${D}s" --latency -s bench/ingest_segment.lua "http://$ADDR/v1/batch" 2>&1)
okn=$(check_wrk "$out")
secs=$(awk '/requests in/ {v=$4; sub(/,$/, "", v); if (v ~ /ms$/) {sub(/ms$/, "", v); v/=1000} else if (v ~ /m$/) {sub(/m$/, "", v); v*=60} else sub(/s$/, "", v); print v}' <<<"$out")
PAUSED_EPS=$(awk -v n="$okn" -v s="$secs" 'BEGIN {printf "%.0f", n * 100 / s}')
echo "  pipeline paused: /v1/batch x100: $PAUSED_EPS events/s (ingest alone; not the headline)" >&2
stop_pid "$SRV"; SRV=""

med() { awk -v f="$1" '{print $f}' "$RESULTS" | sort -g | awk '{v[NR]=$1} END {if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}'; }
EPS=$(printf '%.0f' "$(med 1)"); P50=$(med 2); P99=$(med 3); REPS_=$(printf '%.0f' "$(med 4)"); BP99=$(med 5); PRATE=$(printf '%.0f' "$(med 6)")
RATIO=$(awk -v a="$EPS" -v b="$REPS_" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
MET_T=$(awk -v a="$EPS" 'BEGIN {print (a >= 300000 ? "true" : "false")}')
MET_L=$(awk -v a="$P99" 'BEGIN {print (a <= 2 ? "true" : "false")}')
echo
echo "ingest: Segment /v1/batch x100 (wrk, $C conns) and /v1/track at $RATE/s (paced); medians of $R runs"
echo "($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) vCPU shared with the load generators and other work, $FSTYPE, fsync always)"
printf '%-44s %12s\n' "crmstream events/s (validated, deduped, durable)" "$EPS" \
  "redis XADD events/s (appendfsync always, P100)" "$REPS_" \
  "ratio crmstream / redis" "$RATIO" "single-event p50 ms at $RATE/s" "$P50" "single-event p99 ms at $RATE/s" "$P99" \
  "batch request p99 ms (wrk, closed loop)" "$BP99" \
  "events/s with the pipeline paused (1 run)" "$PAUSED_EPS" "validate path CPU ns/event (no HTTP/fsync)" "$PATH_NS"
echo "targets: >= 300000 events/s: $MET_T; single p99 <= 2 ms: $MET_L"
echo "{\"bench\":\"ingest\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"quick\":$QUICK,\"runs\":$R,\"nproc\":$(nproc),\"fs\":\"$FSTYPE\",\"connections\":$C,\"events_per_s\":$EPS,\"single_rate\":$PRATE,\"single_p50_ms\":$P50,\"single_p99_ms\":$P99,\"batch_p99_ms\":$BP99,\"redis_events_per_s\":$REPS_,\"events_per_s_pipeline_paused\":$PAUSED_EPS,\"path_ns_per_event\":$PATH_NS,\"parse_ns_per_event\":{\"cjson\":$(pns cjson),\"jsonc\":$(pns jsonc),\"jansson\":$(pns jansson),\"yajl\":$(pns yajl),\"jsmn_tokens_only\":$(pns jsmn_tokens_only),\"syntax_pass\":$(pns syntax_pass)},\"fsync\":\"always\",\"http_threads\":\"per-connection\",\"ratio_vs_redis\":$RATIO,\"target_events_per_s\":300000,\"target_single_p99_ms\":2,\"events_target_met\":$MET_T,\"p99_target_met\":$MET_L}"
