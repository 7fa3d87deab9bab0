#!/usr/bin/env bash
# bench/store.sh — CRM store writes: signal-field updates and lead inserts per
# second through the cs_store interface, on SQLite and on PostgreSQL 15, at
# two account counts, batched the way the pipeline commits (one transaction
# per batch of B events, the partition's next offset in the same
# transaction) against a naive baseline run in the same process, on the same
# database, in the same minute: the same statements in autocommit (one
# statement per row, one transaction per statement). See bench/store.c for
# exactly what one event writes.
#
#   BUILD=build bench/store.sh          (or: make bench-store)
#   BENCH_QUICK=1   10 k and 100 k accounts, shorter runs (< 1 minute)
#   BENCH_REPS=N    repetitions (default 3; medians reported)
#   BENCH_BATCH=B   events per batch transaction (default 500, the default
#                   of pipeline.batch_max_events)
#   BENCH_SECS=S    seconds per measurement (default 3; quick 0.6)
#   BENCH_ACCOUNTS="N1 N2"  account counts (default "10000 1000000";
#                   quick "10000 100000")
#   BENCH_TMPDIR=d  where the SQLite file and the PostgreSQL data directory
#                   live (default $TMPDIR, else /var/tmp; a real disk)
#   BENCH_PG=0      skip PostgreSQL (its figures are then null)
#
# PostgreSQL: Debian's postgresql 15 binaries (/usr/lib/postgresql/15/bin or
# $CRMSTREAM_PG_BIN), initdb into a temp dir, started on 127.0.0.1 at a free
# port with its unix socket in that dir, server defaults otherwise (fsync on,
# synchronous_commit on, shared_buffers 128 MB), stopped (pg_ctl -m
# immediate) and removed at exit, also on failure or Ctrl-C. PostgreSQL
# refuses to run as root, so as root every server command runs as the
# `postgres` user (runuser) and the temp dir is chown'ed to it.
#
# Output: progress on stderr; a table on stdout; the LAST line is one JSON
# object with the medians and ratios.
set -euo pipefail

BUILD=${BUILD:-build}
BIN="$BUILD/bench/store"
QUICK=${BENCH_QUICK:-0}
REPS=${BENCH_REPS:-3}
BATCH=${BENCH_BATCH:-500}
BASE=${BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}
PGBIN=${CRMSTREAM_PG_BIN:-/usr/lib/postgresql/15/bin}
WITH_PG=${BENCH_PG:-1}
if [ "$QUICK" = 1 ]; then
    SECS=${BENCH_SECS:-0.6}
    read -r -a SIZES <<<"${BENCH_ACCOUNTS:-10000 100000}"
else
    SECS=${BENCH_SECS:-3}
    read -r -a SIZES <<<"${BENCH_ACCOUNTS:-10000 1000000}"
fi

die() { echo "store.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run: make $BIN)"
if [ "$WITH_PG" = 1 ]; then
    [ -x "$PGBIN/initdb" ] && [ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL 15 not found in $PGBIN (make deps)"
fi

TMP=$(mktemp -d "$BASE/crmstream-bench-store.XXXXXX")
chmod 755 "$TMP"
AS_PG=()
if [ "$(id -u)" = 0 ]; then AS_PG=(runuser -u postgres --); fi
PG_UP=0
CHILD=""
cleanup() {
    local rc=$?
    if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null || true; wait "$CHILD" 2>/dev/null || true; fi
    if [ "$PG_UP" = 1 ]; then
        (cd "$TMP/pg" && "${AS_PG[@]}" "$PGBIN/pg_ctl" -D data -m immediate -w -t 60 stop >>ctl.log 2>&1) ||
            echo "store.sh: pg_ctl stop failed; see $TMP/pg/ctl.log" >&2
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FSTYPE=$(df --output=fstype "$TMP" | tail -n 1)
[ "$FSTYPE" = tmpfs ] && echo "store.sh: WARNING: $BASE is tmpfs; fsync is free there" >&2

# ---- PostgreSQL: initdb, 127.0.0.1, a free port, stopped by cleanup --------
PG_PORT=""
start_pg() {
    mkdir -p "$TMP/pg"
    [ "$(id -u)" = 0 ] && chown postgres: "$TMP/pg"
    (cd "$TMP/pg" && "${AS_PG[@]}" "$PGBIN/initdb" -D data -U crm -A trust -E UTF8 --locale=C --no-sync \
        >initdb.log 2>&1) || die "initdb failed: $(tail -n 5 "$TMP/pg/initdb.log")"
    local try port
    for try in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 40000))
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        PG_UP=1 # from here on cleanup stops it (a failed start makes stop a no-op)
        if (cd "$TMP/pg" && "${AS_PG[@]}" "$PGBIN/pg_ctl" -D data -l server.log -w -t 60 \
                -o "-p $port -k '$TMP/pg' -c listen_addresses=127.0.0.1" start >>ctl.log 2>&1); then
            PG_PORT=$port
            return 0
        fi
        PG_UP=0
    done
    die "could not start PostgreSQL (see $TMP/pg/server.log)"
}
PSQL() { PGOPTIONS="-c client_min_messages=warning" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U crm "$@"; }

RESULTS="$TMP/results"
: >"$RESULTS"

# run BACKEND ACCOUNTS: one process, REPS repetitions of the four measurements
run() {
    local backend=$1 n=$2 spec out
    if [ "$backend" = sqlite ]; then
        rm -f "$TMP/crm.sqlite" "$TMP/crm.sqlite-wal" "$TMP/crm.sqlite-shm"
        spec="sqlite:$TMP/crm.sqlite"
    else
        local db="bench_$n"
        PSQL -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
        spec="postgresql://crm@127.0.0.1:$PG_PORT/$db"
    fi
    echo "  $backend, $n accounts:" >&2
    # In the background + wait, so a TERM/INT reaches the trap (and the
    # child is stopped by cleanup) without waiting for the run to end.
    "$BIN" -s "$spec" -a "$n" -B "$BATCH" -d "$SECS" -r "$REPS" >"$TMP/out" &
    CHILD=$!
    if ! wait "$CHILD"; then
        CHILD=""
        cat "$TMP/out" >&2
        die "$BIN failed on $backend with $n accounts"
    fi
    CHILD=""
    out=$(cat "$TMP/out")
    grep -q '^CHECK ok' <<<"$out" || die "no CHECK line from $BIN"
    sed -n 's/^SEED .* secs=\(.*\)/    seeded in \1 s/p' <<<"$out" >&2
    grep '^RESULT ' <<<"$out" | while read -r line; do
        kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
        echo "$backend $n $(kv work) $(kv mode) $(kv eps) $(kv commit_us) $(kv wbytes_per_event)" >>"$RESULTS"
        echo "    rep $(kv rep) $(kv work)/$(kv mode): $(kv eps) events/s ($(kv events) in $(kv secs) s)" >&2
    done
    if [ "$backend" = sqlite ]; then
        echo "    database file $(du -m "$TMP/crm.sqlite" | cut -f1) MB" >&2
        rm -f "$TMP/crm.sqlite" "$TMP/crm.sqlite-wal" "$TMP/crm.sqlite-shm"
    else
        PSQL -d postgres -c "DROP DATABASE bench_$n" >/dev/null
    fi
}

BACKENDS=(sqlite)
if [ "$WITH_PG" = 1 ]; then
    start_pg
    BACKENDS+=(postgres)
    PGVER=$("$PGBIN/postgres" --version | awk '{print $3}')
fi
echo "store.sh: accounts ${SIZES[*]}, batch $BATCH, $SECS s per measurement, $REPS reps," \
     "quick=$QUICK, dir $TMP ($FSTYPE)${PG_PORT:+, PostgreSQL ${PGVER:-?} on 127.0.0.1:$PG_PORT}" >&2
for n in "${SIZES[@]}"; do
    for b in "${BACKENDS[@]}"; do run "$b" "$n"; done
done

# ---- medians, table, JSON ------------------------------------------------
# median BACKEND ACCOUNTS WORK MODE FIELD (5 = eps, 6 = commit us, 7 = bytes written per event)
median() {
    awk -v b="$1" -v n="$2" -v w="$3" -v m="$4" -v f="$5" \
        '$1 == b && $2 == n && $3 == w && $4 == m { print $f }' "$RESULTS" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "null"; else if (NR % 2) printf "%.0f\n", v[(NR + 1) / 2];
                                   else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b == "null" || b <= 0) print "null"; else printf "%.1f", a / b }'; }

declare -A M
for n in "${SIZES[@]}"; do
    for b in sqlite postgres; do
        for w in updates leads; do
            for m in batched naive; do
                M[$b.$n.$w.$m]=$(median "$b" "$n" "$w" "$m" 5)
            done
            M[$b.$n.$w.commit]=$(median "$b" "$n" "$w" batched 6)
            M[$b.$n.$w.wkb]=null
            [ "$b" = sqlite ] && M[$b.$n.$w.wkb]=$(awk -v a="$(median "$b" "$n" "$w" batched 7)" \
                'BEGIN { if (a == "null") print a; else printf "%.1f", a / 1024 }')
            M[$b.$n.$w.ratio]=$(ratio "${M[$b.$n.$w.batched]}" "${M[$b.$n.$w.naive]}")
        done
    done
done

echo
echo "store: CRM store writes per second through cs_store; batched = one transaction per $BATCH events"
echo "with the offset write (as the pipeline commits), naive = autocommit, one transaction per statement;"
echo "medians of $REPS runs of $SECS s ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) vCPU, $FSTYPE at $BASE, quick=$QUICK)"
printf '%-9s %10s %-8s %12s %12s %7s %12s %10s\n' backend accounts work "batched ev/s" "naive ev/s" ratio \
    "commit us" "KB wr/ev"
for n in "${SIZES[@]}"; do
    for b in "${BACKENDS[@]}"; do
        for w in updates leads; do
            wkb=${M[$b.$n.$w.wkb]}
            [ "$wkb" = null ] && wkb=-
            printf '%-9s %10s %-8s %12s %12s %7s %12s %10s\n' "$b" "$n" "$w" "${M[$b.$n.$w.batched]}" \
                "${M[$b.$n.$w.naive]}" "${M[$b.$n.$w.ratio]}" "${M[$b.$n.$w.commit]}" "$wkb"
        done
    done
done
echo "updates: signal_set + account obj_upsert of health_score and health_breakdown (2 audit rows), 6 statements;"
echo "leads: counter_get + lead_insert + counter_set + 2 audit rows, 5 statements; + offset_set per batch"
echo "(batched) or per event (naive). ratio = batched / naive. commit us = mean COMMIT time of one batch."
echo "KB wr/ev = KiB the process wrote per event, batched (SQLite: WAL + checkpoint writes; /proc/self/io wchar)."
echo "SQLite: WAL, synchronous=NORMAL (the store's settings). PostgreSQL ${PGVER:-(skipped)}: server defaults, fsync on."

# JSON: headline figures at the largest account count (the 1 M case in a full run).
big=${SIZES[-1]} small=${SIZES[0]}
json="{\"bench\":\"store\",\"date\":\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\",\"quick\":$QUICK,\"reps\":$REPS"
json+=",\"nproc\":$(nproc),\"fs\":\"$FSTYPE\",\"batch_size\":$BATCH,\"secs_per_run\":$SECS"
json+=",\"accounts\":[$(IFS=,; echo "${SIZES[*]}")],\"headline_accounts\":$big"
json+=",\"sqlite_updates_per_s\":${M[sqlite.$big.updates.batched]}"
json+=",\"postgres_updates_per_s\":${M[postgres.$big.updates.batched]}"
json+=",\"sqlite_leads_per_s\":${M[sqlite.$big.leads.batched]}"
json+=",\"postgres_leads_per_s\":${M[postgres.$big.leads.batched]}"
# ratio_vs_naive: the smallest batched/naive ratio over backends and work at that count
minr=$(printf '%s\n' "${M[sqlite.$big.updates.ratio]}" "${M[sqlite.$big.leads.ratio]}" \
       "${M[postgres.$big.updates.ratio]}" "${M[postgres.$big.leads.ratio]}" | grep -v null | sort -g | head -n 1)
json+=",\"ratio_vs_naive\":${minr:-null}"
json+=",\"ratio_vs_naive_by\":{\"sqlite_updates\":${M[sqlite.$big.updates.ratio]},\"postgres_updates\":${M[postgres.$big.updates.ratio]}"
json+=",\"sqlite_leads\":${M[sqlite.$big.leads.ratio]},\"postgres_leads\":${M[postgres.$big.leads.ratio]}}"
for n in "${SIZES[@]}"; do
    for b in sqlite postgres; do
        for w in updates leads; do
            json+=",\"${b}_${w}_per_s_${n}\":${M[$b.$n.$w.batched]},\"${b}_${w}_naive_per_s_${n}\":${M[$b.$n.$w.naive]}"
            json+=",\"${b}_${w}_ratio_${n}\":${M[$b.$n.$w.ratio]},\"${b}_${w}_commit_us_${n}\":${M[$b.$n.$w.commit]}"
            [ "$b" = sqlite ] && json+=",\"${b}_${w}_write_kib_per_event_${n}\":${M[$b.$n.$w.wkb]}"
        done
    done
done
json+=",\"small_accounts\":$small}"
echo "$json"
