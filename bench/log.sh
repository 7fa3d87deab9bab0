#!/usr/bin/env bash
# bench/log.sh — the embedded log (src/log) against its peer, Redis 7 Streams,
# in the same run, same disk, same ~200-byte FeatureUsed JSON payloads
# (issue 3, DESIGN-BRIEF §6). `make bench-log` builds build/bench/log and runs this.
#
#   headline  1 M events (quick: 100 k), fsync always, 8 concurrent producers
#             crmstream: 8 threads x 16 records per append, one partition (one
#                        file, like Redis's one AOF; 8 partitions shown as an extra row)
#             Redis:     appendonly yes, appendfsync always, redis-benchmark
#                        -c 8 -P 16 XADD (pipelined)
#   single    8 producers x 1 event per append/request (group commit), fewer events
#   relaxed   crmstream fsync interval:10 vs Redis appendfsync everysec, as headline
#   ceiling   O_DIRECT sequential writes, 1 MiB each (the disk's bandwidth)
#   recovery  a child appends 10 M events (quick: 1 M) and is SIGKILLed mid-append;
#             the time to reopen the log (recovery) is timed
#
# NOT like for like, and said so in the output: crmstream's producers are
# in-process threads calling the log; Redis's clients go over loopback TCP
# and RESP. The network front door is compared by the HTTP ingest benchmark.
#
# Knobs: BENCH_QUICK=1 (< 1 minute), BENCH_TMPDIR=dir (default $TMPDIR, else
# /var/tmp; a real disk, never tmpfs), BUILD=dir. Progress on stderr; a table
# on stdout; the LAST line is one JSON object.
set -euo pipefail

BUILD=${BUILD:-build}
BIN="$BUILD/bench/log"
QUICK=${BENCH_QUICK:-0}
BASE=${BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}
TARGET_RATIO=2.0
TARGET_RECOVERY=2.0
if [ "$QUICK" = 1 ]; then
    N_HEAD=100000 N_SINGLE=10000 N_RECOVERY=1000000 ODIRECT_MIB=256
else
    N_HEAD=1000000 N_SINGLE=60000 N_RECOVERY=10000000 ODIRECT_MIB=1024
fi
T=8 B=16 P=1   # one partition: one log file, as Redis has one AOF (8 partitions: an extra row)

die() { echo "log.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run: make $BIN)"
for c in redis-server redis-benchmark redis-cli; do command -v $c >/dev/null || die "$c not installed (make deps)"; done

TMP=$(mktemp -d "$BASE/crmstream-bench-log.XXXXXX")
REDIS_PID=""
cleanup() {
    local rc=$?
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill "$REDIS_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FSTYPE=$(df --output=fstype "$TMP" | tail -n 1)
[ "$FSTYPE" = tmpfs ] && echo "log.sh: WARNING: $BASE is tmpfs; fsync is free there" >&2
PAYLOAD=$("$BIN" -p)
PAYLOAD_BYTES=${#PAYLOAD}

start_redis() {
    local port
    for _ in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        mkdir -p "$TMP/redis"
        redis-server --bind 127.0.0.1 --port "$port" --dir "$TMP/redis" \
            --appendonly yes --appendfsync always --save "" \
            --auto-aof-rewrite-percentage 0 --daemonize no --protected-mode yes \
            --logfile "$TMP/redis/redis.log" &
        REDIS_PID=$!
        for _ in $(seq 50); do
            kill -0 "$REDIS_PID" 2>/dev/null || break
            if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then REDIS_PORT=$port; return 0; fi
            sleep 0.1
        done
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    done
    die "could not start redis-server (see $TMP/redis/redis.log)"
}
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# crm NAME ARGS... -> sets CRM_<field> via the RESULT line
run_crm() {
    local out line
    out=$("$BIN" -D "$TMP" "$@") || { echo "$out" >&2; die "build/bench/log $* failed"; }
    echo "$out" | sed 's/^/    /' | grep -v RESULT >&2
    line=$(grep '^RESULT ' <<<"$out") || die "no RESULT line from $BIN"
    echo "$line"
}

# redis N CLIENTS PIPELINE -> "rps p50_us p99_us"
run_redis() {
    local n=$1 c=$2 pp=$3 csv rps p50 p99 len
    rcli del s >/dev/null
    csv=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -n "$n" -c "$c" -P "$pp" --csv XADD s '*' f "$PAYLOAD" 2>&1) ||
        { echo "$csv" >&2; die "redis-benchmark failed"; }
    local prog='{ gsub(/"/, "", $NF); print $(NF-6), $(NF-3) * 1000, $(NF-1) * 1000 }'
    read -r rps p50 p99 < <(tail -n 1 <<<"$csv" | awk -F'","' "$prog")
    [[ "$rps" =~ ^[0-9.]+$ ]] || { echo "$csv" >&2; die "cannot parse redis-benchmark output"; }
    len=$(rcli xlen s)
    [ "$len" = "$n" ] || die "redis stream has $len entries after $n XADDs"
    rcli del s >/dev/null
    echo "    redis: $rps XADD/s, p50 $p50 us, p99 $p99 us (-c $c -P $pp, $n)" >&2
    echo "$rps $p50 $p99"
}

start_redis
echo "log.sh: $PAYLOAD_BYTES-byte payloads, quick=$QUICK, dir $TMP ($FSTYPE), redis-server" \
     "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$REDIS_PORT" >&2

echo "ceiling: O_DIRECT sequential writes, $ODIRECT_MIB MiB" >&2
L=$(run_crm -O "$ODIRECT_MIB"); ODIRECT=$(kv odirect_mb_s "$L")

echo "headline: $N_HEAD events, fsync always, $T producers x $B per append / redis -c $T -P $B" >&2
L=$(run_crm -t $T -b $B -P $P -n "$N_HEAD" -f always)
H_EPS=$(kv eps "$L") H_MB=$(kv mb_s "$L") H_P50=$(kv p50_us "$L") H_P99=$(kv p99_us "$L") H_RPS=$(kv recs_per_sync "$L")
read -r R_EPS R_P50 R_P99 < <(run_redis "$N_HEAD" $T $B)

echo "partitions: the headline on 8 partitions (one producer thread each: no shared fsync)" >&2
L=$(run_crm -t $T -b $B -P 8 -n "$N_HEAD" -f always)
P8_EPS=$(kv eps "$L") P8_P50=$(kv p50_us "$L") P8_P99=$(kv p99_us "$L")

echo "single: $N_SINGLE events, fsync always, $T producers x 1 / redis -c $T -P 1" >&2
L=$(run_crm -t $T -b 1 -P $P -n "$N_SINGLE" -f always)
S_EPS=$(kv eps "$L") S_P50=$(kv p50_us "$L") S_P99=$(kv p99_us "$L")
read -r SR_EPS SR_P50 SR_P99 < <(run_redis "$N_SINGLE" $T 1)

echo "relaxed: $N_HEAD events, crmstream interval:10 / redis appendfsync everysec" >&2
L=$(run_crm -t $T -b $B -P $P -n "$N_HEAD" -f interval:10)
I_EPS=$(kv eps "$L") I_P50=$(kv p50_us "$L") I_P99=$(kv p99_us "$L")
rcli config set appendfsync everysec >/dev/null
read -r IR_EPS IR_P50 IR_P99 < <(run_redis "$N_HEAD" $T $B)
rcli config set appendfsync always >/dev/null

echo "recovery: $N_RECOVERY events appended by a child (8 partitions, the default), kill -9, reopen" >&2
L=$(run_crm -R "$N_RECOVERY" -t $T -b $B -P 8)
REC_S=$(kv recovery_s "$L") REC_N=$(kv recovered_events "$L") REC_SEGS=$(kv segments "$L")

f() { awk -v a="$1" -v d="${2:-0}" 'BEGIN { printf "%.*f", d, a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
mb() { awk -v e="$1" -v b="$PAYLOAD_BYTES" 'BEGIN { printf "%.1f", e * b / 1e6 }'; }
RATIO=$(ratio "$H_EPS" "$R_EPS") S_RATIO=$(ratio "$S_EPS" "$SR_EPS") I_RATIO=$(ratio "$I_EPS" "$IR_EPS")
P99_MS=$(awk -v a="$H_P99" 'BEGIN { printf "%.3f", a / 1000 }')
MET_R=$(awk -v a="$RATIO" -v t="$TARGET_RATIO" 'BEGIN { print (a >= t ? "true" : "false") }')
MET_REC=$(awk -v a="$REC_S" -v t="$TARGET_RECOVERY" 'BEGIN { print (a <= t ? "true" : "false") }')

echo
echo "log: durable append, ${PAYLOAD_BYTES}-byte FeatureUsed JSON events ($(date -u +%Y-%m-%dT%H:%MZ)," \
     "$(nproc) vCPU, $FSTYPE at $BASE, quick=$QUICK$([ "$QUICK" = 1 ] && echo ': SMALLER COUNTS than the full run'))"
echo "crmstream's producers are in-process threads calling the log; Redis's clients go over loopback TCP."
printf '%-34s %12s %8s %9s %9s   %12s %8s %9s %9s %7s\n' run "crm ev/s" "MB/s" "p50 us" "p99 us" \
    "redis ev/s" "MB/s" "p50 us" "p99 us" ratio
row() { printf '%-34s %12s %8s %9s %9s   %12s %8s %9s %9s %7s\n' "$1" "$(f "$2")" "$(mb "$2")" "$3" "$4" \
    "$(f "$5")" "$(mb "$5")" "$6" "$7" "$8"; }
row "always, 8 x 16/append ($N_HEAD)" "$H_EPS" "$H_P50" "$H_P99" "$R_EPS" "$R_P50" "$R_P99" "$RATIO"
row "always, 8 x 16, 8 partitions" "$P8_EPS" "$P8_P50" "$P8_P99" "$R_EPS" "$R_P50" "$R_P99" "$(ratio "$P8_EPS" "$R_EPS")"
row "always, 8 x 1 ($N_SINGLE)" "$S_EPS" "$S_P50" "$S_P99" "$SR_EPS" "$SR_P50" "$SR_P99" "$S_RATIO"
row "interval:10 vs everysec ($N_HEAD)" "$I_EPS" "$I_P50" "$I_P99" "$IR_EPS" "$IR_P50" "$IR_P99" "$I_RATIO"
echo "latency: crmstream per append call (16 events), Redis per request as redis-benchmark reports it"
PCT=$(awk -v a="$H_MB" -v c="$ODIRECT" 'BEGIN { printf "%.1f", (c > 0 ? 100 * a / c : 0) }')
echo "records per fdatasync (headline): $H_RPS; O_DIRECT sequential-write ceiling: $ODIRECT MB/s" \
     "(the headline writes $PCT % of it: fsync latency, not bandwidth, bounds a durable append)"
echo "recovery after kill -9 with $REC_N events in the log ($REC_SEGS segments): ${REC_S} s to reopen" \
     "(target <= $TARGET_RECOVERY s: $MET_REC); ratio target >= $TARGET_RATIO: $MET_R"

echo "{\"bench\":\"log\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"quick\":$QUICK,\"fs\":\"$FSTYPE\"" \
     ",\"payload_bytes\":$PAYLOAD_BYTES,\"events\":$N_HEAD,\"producers\":$T,\"records_per_append\":$B" \
     ",\"partitions\":$P,\"events_per_s\":$(f "$H_EPS"),\"mb_per_s\":$(mb "$H_EPS"),\"append_p50_ms\":$(awk -v a="$H_P50" 'BEGIN { printf "%.3f", a / 1000 }')" \
     ",\"append_p99_ms\":$P99_MS,\"redis_events_per_s\":$(f "$R_EPS"),\"redis_mb_per_s\":$(mb "$R_EPS")" \
     ",\"redis_p50_ms\":$(awk -v a="$R_P50" 'BEGIN { printf "%.3f", a / 1000 }'),\"redis_p99_ms\":$(awk -v a="$R_P99" 'BEGIN { printf "%.3f", a / 1000 }')" \
     ",\"ratio_vs_redis\":$RATIO,\"p8_events_per_s\":$(f "$P8_EPS"),\"single_events_per_s\":$(f "$S_EPS"),\"single_redis_events_per_s\":$(f "$SR_EPS")" \
     ",\"single_ratio\":$S_RATIO,\"interval10_events_per_s\":$(f "$I_EPS"),\"redis_everysec_events_per_s\":$(f "$IR_EPS")" \
     ",\"interval_ratio\":$I_RATIO,\"odirect_mb_per_s\":$ODIRECT,\"recovery_s\":$REC_S,\"recovery_events\":$REC_N" \
     ",\"target_ratio\":$TARGET_RATIO,\"ratio_met\":$MET_R,\"target_recovery_s\":$TARGET_RECOVERY,\"recovery_met\":$MET_REC}" | tr -d '\n' | sed 's/" ,/",/g; s/ ,/,/g'
echo
