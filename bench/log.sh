#!/usr/bin/env bash
# bench/log_append.sh — durable log append: crmstream's partition log
# (fsync=always, group commit) against its peer, Redis 7 Streams XADD with
# appendonly yes + appendfsync always, same ~200-byte payloads, same client
# concurrency, same disk, same run. Design target (DESIGN-BRIEF §6): >= 2x.
#
#   BUILD=build bench/log_append.sh          (or: make bench-log_append)
#   BENCH_QUICK=1   fewer events per run (whole script < 1 minute)
#   BENCH_REPS=N    repetitions per measurement (default 3; medians reported)
#   BENCH_TMPDIR=d  where the log file and the Redis AOF live (default
#                   $TMPDIR, else /var/tmp); must be a real disk, not tmpfs
#
# Configurations (crmstream <-> redis-benchmark):
#   c1      1 appender thread, 1 record/append    <-> -c 1  -P 1    (raw fsync cost)
#   c8      8 threads, 1 record/append            <-> -c 8  -P 1    (group commit)
#   c32     32 threads, 1 record/append           <-> -c 32 -P 1    (group commit)
#   c8_b16  8 threads, 16 records/append          <-> -c 8  -P 16
#   c8_b100 8 threads, 100 records/append         <-> -c 8  -P 100
# The target ratio applies to c8, c32, c8_b16 and c8_b100; c1 is shown for
# reference (both sides are one fdatasync per event there).
#
# Output: progress on stderr; a table on stdout; the LAST line is one JSON
# object with the medians and ratios. Only 127.0.0.1 is used.
set -euo pipefail

BUILD=${BUILD:-build}
BIN="$BUILD/bench/log_append"
QUICK=${BENCH_QUICK:-0}
REPS=${BENCH_REPS:-3}
BASE=${BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}
TARGET=2.0

CONFIGS=(c1 c8 c32 c8_b16 c8_b100)
declare -A THREADS=([c1]=1 [c8]=8 [c32]=32 [c8_b16]=8 [c8_b100]=8)
declare -A BATCH=([c1]=1 [c8]=1 [c32]=1 [c8_b16]=16 [c8_b100]=100)
if [ "$QUICK" = 1 ]; then
    declare -A COUNT=([c1]=1500 [c8]=12000 [c32]=24000 [c8_b16]=80000 [c8_b100]=200000)
else
    declare -A COUNT=([c1]=6000 [c8]=60000 [c32]=120000 [c8_b16]=400000 [c8_b100]=1000000)
fi

die() { echo "log_append.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run: make $BIN)"
command -v redis-server >/dev/null || die "redis-server not installed (make deps)"
command -v redis-benchmark >/dev/null || die "redis-benchmark not installed (make deps)"
command -v redis-cli >/dev/null || die "redis-cli not installed (make deps)"

TMP=$(mktemp -d "$BASE/crmstream-bench-log_append.XXXXXX")
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
[ "$FSTYPE" = tmpfs ] && echo "log_append.sh: WARNING: $BASE is tmpfs; fsync is free there" >&2

PAYLOAD=$("$BIN" -p)
PAYLOAD_BYTES=${#PAYLOAD}

# ---- Redis: 127.0.0.1, a free port, a temp dir, AOF with fsync always ----
start_redis() {
    local try port
    for try in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        rm -rf "$TMP/redis" && mkdir -p "$TMP/redis"
        redis-server --bind 127.0.0.1 --port "$port" --dir "$TMP/redis" \
            --appendonly yes --appendfsync always --save "" \
            --auto-aof-rewrite-percentage 0 --daemonize no --protected-mode yes \
            --logfile "$TMP/redis/redis.log" &
        REDIS_PID=$!
        for _ in $(seq 50); do
            if ! kill -0 "$REDIS_PID" 2>/dev/null; then break; fi
            if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ]; then
                REDIS_PORT=$port
                return 0
            fi
            sleep 0.1
        done
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    done
    die "could not start redis-server (see $TMP/redis/redis.log)"
}
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# ---- one measurement each; results go to $TMP/results as lines -----------
#   crm CONFIG eps p50_us p99_us recs_per_sync sync_mean_us
#   redis CONFIG eps p50_us p99_us
RESULTS="$TMP/results"
: >"$RESULTS"

run_crm() {
    local cfg=$1 out line
    local args=(-D "$TMP" -t "${THREADS[$cfg]}" -b "${BATCH[$cfg]}" -n "${COUNT[$cfg]}")
    if ! out=$("$BIN" "${args[@]}"); then echo "$out" >&2; die "crmstream run $cfg failed"; fi
    line=$(grep '^RESULT ' <<<"$out") || die "no RESULT line from $BIN"
    kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    echo "crm $cfg $(kv eps) $(kv p50_us) $(kv p99_us) $(kv appends_per_sync) $(kv sync_mean_us)" >>"$RESULTS"
    echo "  crmstream $cfg: $(kv eps) events/s, p50 $(kv p50_us) us, p99 $(kv p99_us) us," \
         "$(kv appends_per_sync) appends per fdatasync of $(kv sync_mean_us) us" >&2
}

run_redis() {
    local cfg=$1 csv rps p50 p99 n=${COUNT[$cfg]} len
    rcli del s >/dev/null
    # -P B: each client sends B XADDs per round trip, as crmstream appends B records per call.
    local args=(-h 127.0.0.1 -p "$REDIS_PORT" -n "$n" -c "${THREADS[$cfg]}" -P "${BATCH[$cfg]}")
    if ! csv=$(redis-benchmark "${args[@]}" --csv XADD s '*' f "$PAYLOAD" 2>&1); then echo "$csv" >&2; die "redis-benchmark $cfg failed"; fi
    # The command (with its JSON payload) is the first CSV field; read from the right.
    local prog='{ gsub(/"/, "", $NF); print $(NF-6), $(NF-3) * 1000, $(NF-1) * 1000 }'
    read -r rps p50 p99 < <(tail -n 1 <<<"$csv" | awk -F'","' "$prog")
    [[ "$rps" =~ ^[0-9.]+$ ]] || { echo "$csv" >&2; die "cannot parse redis-benchmark output"; }
    len=$(rcli xlen s)
    [ "$len" = "$n" ] || die "redis stream has $len entries after $n XADDs"
    rcli del s >/dev/null
    echo "redis $cfg $rps $p50 $p99" >>"$RESULTS"
    echo "  redis     $cfg: $rps XADD/s, p50 $p50 us, p99 $p99 us" >&2
}

start_redis
echo "log_append.sh: $PAYLOAD_BYTES-byte payloads, $REPS reps, quick=$QUICK, dir $TMP ($FSTYPE)," \
     "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$REDIS_PORT" >&2
for rep in $(seq "$REPS"); do
    echo "rep $rep/$REPS" >&2
    for cfg in "${CONFIGS[@]}"; do
        run_crm "$cfg"
        run_redis "$cfg"
    done
done

# ---- medians, table, JSON ------------------------------------------------
# median SYSTEM CONFIG FIELD (field 3 = eps, 4 = p50, 5 = p99, 6 = per sync, 7 = sync us)
median() {
    awk -v s="$1" -v c="$2" -v f="$3" '$1 == s && $2 == c { print $f }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2];
                                   else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
int() { awk -v a="$1" 'BEGIN { printf "%.0f", a }'; }

declare -A CE CP50 CP99 CPS CSY RE RP50 RP99 RT
min_ratio=""
for cfg in "${CONFIGS[@]}"; do
    CE[$cfg]=$(int "$(median crm "$cfg" 3)")
    CP50[$cfg]=$(median crm "$cfg" 4)
    CP99[$cfg]=$(median crm "$cfg" 5)
    CPS[$cfg]=$(median crm "$cfg" 6)
    CSY[$cfg]=$(median crm "$cfg" 7)
    RE[$cfg]=$(int "$(median redis "$cfg" 3)")
    RP50[$cfg]=$(int "$(median redis "$cfg" 4)")
    RP99[$cfg]=$(int "$(median redis "$cfg" 5)")
    RT[$cfg]=$(ratio "${CE[$cfg]}" "${RE[$cfg]}")
    if [ "$cfg" != c1 ]; then
        if [ -z "$min_ratio" ] || awk -v a="${RT[$cfg]}" -v b="$min_ratio" 'BEGIN { exit !(a < b) }'; then
            min_ratio=${RT[$cfg]}
        fi
    fi
done
met=$(awk -v a="$min_ratio" -v t="$TARGET" 'BEGIN { print (a >= t ? "true" : "false") }')

echo
echo "log_append: durable append, fsync before ack, ${PAYLOAD_BYTES}-byte JSON events; medians of $REPS runs"
echo "($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) vCPU, $FSTYPE at $BASE, quick=$QUICK)"
printf '%-8s %-22s %12s %9s %9s %11s %9s %9s %7s %10s\n' config "clients x recs/call" \
    "crm ev/s" "p50 us" "p99 us" "redis ev/s" "p50 us" "p99 us" ratio "recs/sync"
for cfg in "${CONFIGS[@]}"; do
    printf '%-8s %-22s %12s %9s %9s %11s %9s %9s %7s %10s\n' "$cfg" \
        "${THREADS[$cfg]} x ${BATCH[$cfg]}" "${CE[$cfg]}" "${CP50[$cfg]}" "${CP99[$cfg]}" \
        "${RE[$cfg]}" "${RP50[$cfg]}" "${RP99[$cfg]}" "${RT[$cfg]}" \
        "$(awk -v a="${CPS[$cfg]}" -v b="${BATCH[$cfg]}" 'BEGIN { printf "%.1f", a * b }')"
done
echo "ratio = crmstream events/s / redis XADD/s (target >= $TARGET on c8, c32, c8_b16, c8_b100);" \
     "min ratio $min_ratio, target met: $met"
echo "recs/sync = records made durable per fdatasync (group commit); latencies: crmstream per"
echo "append call, redis per request as redis-benchmark reports them"

json="{\"bench\":\"log_append\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"quick\":$QUICK"
json+=",\"reps\":$REPS,\"nproc\":$(nproc),\"fs\":\"$FSTYPE\",\"payload_bytes\":$PAYLOAD_BYTES"
for cfg in "${CONFIGS[@]}"; do
    r=$cfg
    [ "${BATCH[$cfg]}" -gt 1 ] && r="c${THREADS[$cfg]}_p${BATCH[$cfg]}"
    json+=",\"crmstream_eps_$cfg\":${CE[$cfg]},\"redis_xadd_always_eps_$r\":${RE[$cfg]}"
    json+=",\"ratio_$cfg\":${RT[$cfg]}"
    json+=",\"crmstream_p50_us_$cfg\":${CP50[$cfg]},\"crmstream_p99_us_$cfg\":${CP99[$cfg]}"
    json+=",\"redis_p50_us_$r\":${RP50[$cfg]},\"redis_p99_us_$r\":${RP99[$cfg]}"
    json+=",\"crmstream_appends_per_sync_$cfg\":${CPS[$cfg]},\"crmstream_sync_us_$cfg\":${CSY[$cfg]}"
done
json+=",\"min_ratio\":$min_ratio,\"target_ratio\":$TARGET,\"target_met\":$met}"
echo "$json"
