/*
 * store/postgres — the scale-out store backend over libpq. Same interface and
 * schema meaning as sqlite.c: the pipeline writes through one connection,
 * HTTP readers share a second one behind a mutex. Every data statement is a
 * server-side prepared statement with text parameters.
 *
 * Failures are classified for the caller (store.h `retriable`): a lost
 * connection, a server shutting down or starting (SQLSTATE 57P*), class 08,
 * serialization failures and deadlocks may succeed later; the pipeline rolls
 * back and retries the batch from its stored offsets, so nothing is skipped.
 * A lost connection is re-established (and the statements re-prepared) at the
 * next call made outside a transaction; inside one, the transaction is gone
 * and the call fails as retriable until the caller rolls back.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "core/util.h"
#include "store/migrations.h"
#include "store/objects.h"
#include "store/store.h"

#define LEAD_COLS "seq,id,event_id,account_id,email,company,country,source,employee_count,status," \
                  "owner,routed_at,route_reason,route_latency_ms,created_at,partition,\"offset\"," \
                  "domain,accepted_at,sla_due_at,route_explanation"
#define SIG_COLS "account_id,name,value,at,cause_event_id,partition,\"offset\",rule_id"

enum {
    S_OFF_GET, S_OFF_SET, S_CNT_GET, S_CNT_SET, S_LEAD_INS, S_AUDIT_INS, S_SIG_HIST, S_SIG_SET,
    S_LEAD_GET, S_LEAD_LIST, S_LEAD_BY_OWNER, S_SIG_LIST, S_SIG_HISTORY, S_AUDIT_LIST, S_SIG_CLR_HIST, S_SIG_CLR,
    S_LEAD_LOAD, S_LEAD_UPD, S_LEAD_OPEN, S_LEAD_SLA, S_FIXED
};
static const char *const fixed_sql[S_FIXED] = {
    /* FOR UPDATE: inside a batch it fences the partition (a second member
     * of the consumer group waits, then sees the moved offset). */
    [S_OFF_GET] = "SELECT next_offset FROM consumer_offsets WHERE consumer=$1 AND topic=$2 AND partition=$3 FOR UPDATE",
    [S_OFF_SET] = "INSERT INTO consumer_offsets(consumer,topic,partition,next_offset) VALUES($1,$2,$3,$4)"
                  " ON CONFLICT(consumer,topic,partition) DO UPDATE SET next_offset=excluded.next_offset",
    [S_CNT_GET] = "SELECT value FROM counters WHERE name=$1",
    [S_CNT_SET] = "INSERT INTO counters(name,value) VALUES($1,$2) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
    [S_LEAD_INS] = "INSERT INTO leads(id,event_id,account_id,email,company,country,source,employee_count,"
                   "status,owner,routed_at,route_reason,route_latency_ms,created_at,partition,\"offset\","
                   "domain,accepted_at,sla_due_at,route_explanation)"
                   " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)"
                   " ON CONFLICT DO NOTHING",
    [S_AUDIT_INS] = "INSERT INTO audit(object,object_id,field,old_value,new_value,cause_event_id,"
                    "partition,\"offset\",rule_id,at) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
    [S_SIG_HIST] = "INSERT INTO signal_history(" SIG_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING",
    [S_SIG_SET] = "INSERT INTO signals(" SIG_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8)"
                  " ON CONFLICT(account_id,name) DO UPDATE SET value=excluded.value,at=excluded.at,"
                  "cause_event_id=excluded.cause_event_id,partition=excluded.partition,"
                  "\"offset\"=excluded.\"offset\",rule_id=excluded.rule_id",
    [S_LEAD_GET] = "SELECT " LEAD_COLS " FROM leads WHERE id=$1",
    [S_LEAD_LIST] = "SELECT " LEAD_COLS " FROM leads WHERE seq>$1 ORDER BY seq LIMIT $2",
    [S_LEAD_BY_OWNER] = "SELECT owner, count(*) FROM leads GROUP BY owner ORDER BY owner",
    [S_SIG_LIST] = "SELECT 0," SIG_COLS " FROM signals WHERE account_id=$1 ORDER BY name",
    [S_SIG_HISTORY] = "SELECT seq," SIG_COLS " FROM signal_history WHERE account_id=$1 AND name=$2 AND seq>$3"
                      " ORDER BY seq LIMIT $4",
    [S_AUDIT_LIST] = "SELECT seq,object,object_id,field,old_value,new_value,cause_event_id,partition,\"offset\","
                     "rule_id,at FROM audit WHERE object=$1 AND ($2::text IS NULL OR object_id=$2::text) AND seq>$3"
                     " ORDER BY seq LIMIT $4",
    [S_SIG_CLR_HIST] = "DELETE FROM signal_history WHERE $1::int < 0 OR partition = $1::int",
    [S_SIG_CLR] = "DELETE FROM signals WHERE $1::int < 0 OR partition = $1::int",
    [S_LEAD_LOAD] = "SELECT " LEAD_COLS " FROM leads WHERE id=$1",
    [S_LEAD_UPD] = "UPDATE leads SET status=$2,owner=$3,routed_at=$4,route_reason=$5,route_explanation=$6,"
                   "accepted_at=$7,sla_due_at=$8 WHERE id=$1",
    [S_LEAD_OPEN] = "SELECT owner, count(*) FROM leads WHERE status='routed' AND owner IS NOT NULL GROUP BY owner",
    [S_LEAD_SLA] = "SELECT " LEAD_COLS " FROM leads WHERE status='routed' AND sla_due_at IS NOT NULL"
                   " AND sla_due_at<=$1 ORDER BY sla_due_at, seq LIMIT $2",
};
/* Object statements follow the fixed ones: S_FIXED + obj * O_N + kind. */
enum { O_LOAD, O_UPSERT, O_INSERT, O_GET, O_LIST, O_N };
/* The outbox's statements (X_*) follow the object ones. */
enum { X_INS, X_CLAIM, X_DELIVERED, X_RETRY, X_DEAD, X_RELEASE, X_RELEASE_ALL, X_LIST, X_GET, X_REDRIVE,
       X_STATS, X_COUNT };
#define XSTMT(i) (S_FIXED + CS_OBJ_COUNT * O_N + (i))
#define NSTMT (S_FIXED + CS_OBJ_COUNT * O_N + X_COUNT)
#define OSTMT(obj, kind) (S_FIXED + (obj) * O_N + (kind))

struct pgconn {
    PGconn *c;
    int     prepared;   /* statements exist on this session */
    int     in_tx;
};

struct pg {
    struct pgconn   w, r;
    pthread_mutex_t rmu;
    char           *sql[NSTMT];
};

/* ---- errors and connections ------------------------------------------ */

static void trim_msg(char *dst, size_t n, const char *msg)
{
    snprintf(dst, n, "%s", msg ? msg : "error");
    size_t len = strlen(dst);
    while (len && (dst[len - 1] == '\n' || dst[len - 1] == ' ')) dst[--len] = '\0';
}

/* Record an error and whether retrying may help. Always returns -1. */
static int pfail(cs_store *st, struct pgconn *pc, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int lost = !pc->c || PQstatus(pc->c) != CONNECTION_OK;
    st->retriable = lost || (state && (strncmp(state, "08", 2) == 0 || strcmp(state, "40001") == 0 ||
                                       strcmp(state, "40P01") == 0 || strncmp(state, "57P", 3) == 0 ||
                                       strcmp(state, "53300") == 0));
    char msg[200];
    trim_msg(msg, sizeof msg, r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r)
                              : pc->c                       ? PQerrorMessage(pc->c)
                                                            : "no connection");
    snprintf(st->errmsg, sizeof st->errmsg, "%s: %s%s%s", what, state ? state : "", state ? " " : "", msg);
    if (lost) pc->prepared = 0;
    cs_error("store", "postgres error", "\"what\":\"%s\",\"sqlstate\":\"%s\",\"retriable\":%s", what,
             state ? state : "", st->retriable ? "true" : "false");
    return -1;
}

static void quiet(void *arg, const char *msg)
{
    (void)arg, (void)msg; /* NOTICEs (e.g. IF NOT EXISTS) are not errors */
}

static int prepare_all(cs_store *st, struct pgconn *pc)
{
    struct pg *p = st->impl;
    for (int i = 0; i < NSTMT; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        PGresult *r = PQprepare(pc->c, name, p->sql[i], 0, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pfail(st, pc, r, "prepare");
            PQclear(r);
            return -1;
        }
        PQclear(r);
    }
    pc->prepared = 1;
    return 0;
}

/* Make the session usable: reconnect after a loss, outside a transaction. */
static int ready(cs_store *st, struct pgconn *pc)
{
    if (PQstatus(pc->c) == CONNECTION_OK && pc->prepared) return 0;
    if (pc->in_tx) {
        snprintf(st->errmsg, sizeof st->errmsg, "connection lost inside a transaction; roll back and retry");
        st->retriable = 1;
        return -1;
    }
    if (PQstatus(pc->c) != CONNECTION_OK) {
        PQreset(pc->c);
        if (PQstatus(pc->c) != CONNECTION_OK) return pfail(st, pc, NULL, "reconnect");
        cs_info("store", "postgres reconnected", "\"server_version\":%d", PQserverVersion(pc->c));
    }
    return prepare_all(st, pc);
}

/* Run prepared statement i with text params; NULL on failure (recorded). */
static PGresult *run(cs_store *st, struct pgconn *pc, int i, int n, const char *const *v, const char *what)
{
    if (ready(st, pc)) return NULL;
    char name[16];
    snprintf(name, sizeof name, "s%d", i);
    PGresult *r = PQexecPrepared(pc->c, name, n, v, NULL, NULL, 0);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && !pc->in_tx && PQstatus(pc->c) != CONNECTION_OK) {
        /* A session lost while idle (server restarted since the last call):
         * outside a transaction nothing is half done, so reconnect and try
         * once more rather than fail a read that can succeed now. */
        PQclear(r);
        pc->prepared = 0;
        if (ready(st, pc)) return NULL;
        r = PQexecPrepared(pc->c, name, n, v, NULL, NULL, 0);
        s = PQresultStatus(r);
    }
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        pfail(st, pc, r, what);
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Run and discard; rows affected, or -1. */
static int run_cmd(cs_store *st, struct pgconn *pc, int i, int n, const char *const *v, const char *what)
{
    PGresult *r = run(st, pc, i, n, v, what);
    if (!r) return -1;
    int rows = atoi(PQcmdTuples(r));
    PQclear(r);
    return rows;
}

static int simple(cs_store *st, struct pgconn *pc, const char *sql, const char *expect_tag)
{
    PGresult *r = PQexec(pc->c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK && (!expect_tag || strcmp(PQcmdStatus(r), expect_tag) == 0);
    if (!ok) {
        if (PQresultStatus(r) == PGRES_COMMAND_OK) { /* COMMIT of an aborted transaction says ROLLBACK */
            snprintf(st->errmsg, sizeof st->errmsg, "%s: the transaction was rolled back", sql);
            st->retriable = 0;
        } else {
            pfail(st, pc, r, sql);
        }
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* ---- pipeline (writer) side ------------------------------------------- */

static int pg_begin(cs_store *st)
{
    struct pg *p = st->impl;
    if (ready(st, &p->w)) return -1;
    if (simple(st, &p->w, "BEGIN", NULL)) {
        /* Lost while idle: reconnect once, as run() does. */
        if (PQstatus(p->w.c) == CONNECTION_OK || ready(st, &p->w) || simple(st, &p->w, "BEGIN", NULL)) return -1;
    }
    p->w.in_tx = 1;
    return 0;
}

static int pg_commit(cs_store *st)
{
    struct pg *p = st->impl;
    int rc = simple(st, &p->w, "COMMIT", "COMMIT");
    p->w.in_tx = 0;
    cs_outbox_tx_end(st, rc == 0);
    return rc;
}

static void pg_rollback(cs_store *st)
{
    struct pg *p = st->impl;
    if (PQstatus(p->w.c) == CONNECTION_OK && PQtransactionStatus(p->w.c) != PQTRANS_IDLE) {
        char keep[256];
        memcpy(keep, st->errmsg, sizeof keep); /* the caller wants the first error */
        simple(st, &p->w, "ROLLBACK", NULL);
        memcpy(st->errmsg, keep, sizeof keep);
    }
    p->w.in_tx = 0;
    cs_outbox_tx_end(st, 0);
}

static int get_i64(cs_store *st, int i, int n, const char *const *v, int64_t *out, const char *what)
{
    struct pg *p = st->impl;
    PGresult *r = run(st, &p->w, i, n, v, what);
    *out = 0;
    if (!r) return -1;
    if (PQntuples(r) > 0) *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

static int pg_off_get(cs_store *st, const char *consumer, const char *topic, int part, int64_t *next)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", part);
    const char *v[] = {consumer, topic, ps};
    return get_i64(st, S_OFF_GET, 3, v, next, "offset_get");
}

static int pg_off_set(cs_store *st, const char *consumer, const char *topic, int part, int64_t next)
{
    struct pg *p = st->impl;
    char ps[16], ns[24];
    snprintf(ps, sizeof ps, "%d", part);
    snprintf(ns, sizeof ns, "%lld", (long long)next);
    const char *v[] = {consumer, topic, ps, ns};
    return run_cmd(st, &p->w, S_OFF_SET, 4, v, "offset_set") < 0 ? -1 : 0;
}

static int pg_cnt_get(cs_store *st, const char *name, int64_t *value)
{
    const char *v[] = {name};
    return get_i64(st, S_CNT_GET, 1, v, value, "counter_get");
}

static int pg_cnt_set(cs_store *st, const char *name, int64_t value)
{
    struct pg *p = st->impl;
    char vs[24];
    snprintf(vs, sizeof vs, "%lld", (long long)value);
    const char *v[] = {name, vs};
    return run_cmd(st, &p->w, S_CNT_SET, 2, v, "counter_set") < 0 ? -1 : 0;
}

static const char *opt(const char *s)
{
    return s && *s ? s : NULL;
}

static int pg_lead_ins(cs_store *st, const cs_lead *l)
{
    struct pg *p = st->impl;
    char emp[24], lat[40], part[16], off[24];
    snprintf(emp, sizeof emp, "%ld", l->employee_count);
    snprintf(lat, sizeof lat, "%.6f", l->route_latency_ms);
    snprintf(part, sizeof part, "%d", l->partition);
    snprintf(off, sizeof off, "%lld", (long long)l->offset);
    const char *v[20] = {l->id,         l->event_id,     opt(l->account_id), l->email,
                         opt(l->company), opt(l->country), opt(l->source),
                         l->employee_count >= 0 ? emp : NULL,
                         l->status,     opt(l->owner),   opt(l->routed_at), opt(l->route_reason),
                         lat,           l->created_at,   part,              off,
                         opt(l->domain), opt(l->accepted_at), opt(l->sla_due_at), opt(l->route_explanation)};
    int n = run_cmd(st, &p->w, S_LEAD_INS, 20, v, "lead_insert");
    return n < 0 ? -1 : n > 0;
}

static int pg_audit_ins(cs_store *st, const cs_audit *a)
{
    struct pg *p = st->impl;
    char part[16], off[24];
    snprintf(part, sizeof part, "%d", a->partition);
    snprintf(off, sizeof off, "%lld", (long long)a->offset);
    const char *v[10] = {a->object,          a->object_id, a->field, opt(a->old_value), opt(a->new_value),
                         opt(a->cause_event_id), part,     off,      opt(a->rule_id),   a->at};
    return run_cmd(st, &p->w, S_AUDIT_INS, 10, v, "audit_insert") < 0 ? -1 : 0;
}

static int pg_obj_load(cs_store *st, int obj, const char *id, char **vals)
{
    struct pg *p = st->impl;
    const char *v[] = {id};
    PGresult *r = run(st, &p->w, OSTMT(obj, O_LOAD), 1, v, "object load");
    if (!r) return -1;
    int found = PQntuples(r) > 0;
    for (int i = 0; found && i < cs_objdefs[obj].ncols; i++)
        vals[i] = PQgetisnull(r, 0, i) ? NULL : cs_strdup(PQgetvalue(r, 0, i));
    PQclear(r);
    return found;
}

static int pg_obj_save(cs_store *st, int obj, const char *const *vals, int insert_only)
{
    struct pg *p = st->impl;
    int n = run_cmd(st, &p->w, OSTMT(obj, insert_only ? O_INSERT : O_UPSERT), cs_objdefs[obj].ncols, vals,
                    "object save");
    return n < 0 ? -1 : n > 0;
}

static const struct cs_obj_prims pg_prims = {pg_obj_load, pg_obj_save};

static int pg_obj_upsert(cs_store *st, int obj, const char *id, const cs_kv *kv, size_t n, const cs_cause *c)
{
    return cs_obj_write(st, &pg_prims, obj, id, kv, n, c, 0);
}

static int pg_obj_insert(cs_store *st, int obj, const char *id, const cs_kv *kv, size_t n, const cs_cause *c)
{
    return cs_obj_write(st, &pg_prims, obj, id, kv, n, c, 1);
}

static int pg_signal_set(cs_store *st, const char *acc, const char *name, double value, const cs_cause *c)
{
    struct pg *p = st->impl;
    char vs[40], part[16], off[24];
    snprintf(vs, sizeof vs, "%.17g", value);
    snprintf(part, sizeof part, "%d", c->partition);
    snprintf(off, sizeof off, "%lld", (long long)c->offset);
    const char *v[8] = {acc, name, vs, c->at, c->event_id ? c->event_id : "", part, off, c->rule_id};
    int n = run_cmd(st, &p->w, S_SIG_HIST, 8, v, "signal history");
    if (n <= 0) return n;
    return run_cmd(st, &p->w, S_SIG_SET, 8, v, "signal set") < 0 ? -1 : 1;
}

static int pg_signals_clear(cs_store *st, int partition)
{
    struct pg *p = st->impl;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", partition);
    const char *v[] = {ps};
    if (run_cmd(st, &p->w, S_SIG_CLR_HIST, 1, v, "signal history clear") < 0) return -1;
    return run_cmd(st, &p->w, S_SIG_CLR, 1, v, "signals clear") < 0 ? -1 : 0;
}

/* Snapshots are rare (every N batches, and at start) and binary: unprepared
 * statements with a binary bytea parameter and binary results. */
static PGresult *snap_exec(cs_store *st, struct pgconn *pc, const char *sql, int n, const char *const *v,
                           const int *lens, const int *fmts, const char *what)
{
    if (ready(st, pc)) return NULL;
    PGresult *r = PQexecParams(pc->c, sql, n, NULL, v, lens, fmts, 1);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        pfail(st, pc, r, what);
        PQclear(r);
        return NULL;
    }
    return r;
}

static int pg_snapshot_put(cs_store *st, const char *name, int partition, int64_t next_offset, const void *data,
                           size_t len)
{
    struct pg *p = st->impl;
    if (len > CS_SNAPSHOT_MAX) {
        st->retriable = 0;
        snprintf(st->errmsg, sizeof st->errmsg, "snapshot_put: %zu bytes is over the %zu-byte limit", len,
                 CS_SNAPSHOT_MAX);
        return -1;
    }
    char ps[16], ns[24], bs[24];
    snprintf(ps, sizeof ps, "%d", partition);
    snprintf(ns, sizeof ns, "%lld", (long long)next_offset);
    snprintf(bs, sizeof bs, "%zu", len);
    const char *v[] = {name, ps, ns, len ? (const char *)data : "", bs};
    int lens[] = {0, 0, 0, (int)len, 0};
    int fmts[] = {0, 0, 0, 1, 0};
    PGresult *r = snap_exec(st, &p->w,
                            "INSERT INTO state_snapshots(name,partition,next_offset,data,bytes)"
                            " VALUES($1,$2::int,$3::bigint,$4::bytea,$5::bigint)"
                            " ON CONFLICT(name,partition) DO UPDATE SET next_offset=excluded.next_offset,"
                            "data=excluded.data,bytes=excluded.bytes,at=now()",
                            5, v, lens, fmts, "snapshot_put");
    if (!r) return -1;
    PQclear(r);
    return 0;
}

static int pg_snapshot_get(cs_store *st, const char *name, int partition, int64_t *next_offset, void **data,
                           size_t *len)
{
    struct pg *p = st->impl;
    *data = NULL;
    *len = 0;
    *next_offset = 0;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", partition);
    const char *v[] = {name, ps};
    /* binary results: the offset comes back as text (a text column's binary
     * form is its bytes), the data as raw bytes */
    PGresult *r = snap_exec(st, &p->w,
                            "SELECT next_offset::text, data FROM state_snapshots WHERE name=$1 AND partition=$2::int",
                            2, v, NULL, NULL, "snapshot_get");
    if (!r) return -1;
    if (PQntuples(r) == 0 || PQgetlength(r, 0, 1) == 0) { /* none, or cleared */
        PQclear(r);
        return 1;
    }
    *next_offset = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    size_t n = (size_t)PQgetlength(r, 0, 1);
    *data = cs_malloc(n ? n : 1);
    if (n) memcpy(*data, PQgetvalue(r, 0, 1), n);
    *len = n;
    PQclear(r);
    return 0;
}

/* ---- reader side (any thread; one session behind a mutex) --------------- */

static PGresult *read_run(cs_store *st, int i, int n, const char *const *v, const char *what)
{
    struct pg *p = st->impl;
    return run(st, &p->r, i, n, v, what);
}

static const char *val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static void cpy(char *dst, size_t n, const PGresult *r, int row, int col)
{
    snprintf(dst, n, "%s", PQgetvalue(r, row, col));
}

static void row_to_lead(const PGresult *r, int i, cs_lead *l)
{
    l->seq = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    cpy(l->id, sizeof l->id, r, i, 1);
    cpy(l->event_id, sizeof l->event_id, r, i, 2);
    cpy(l->account_id, sizeof l->account_id, r, i, 3);
    cpy(l->email, sizeof l->email, r, i, 4);
    cpy(l->company, sizeof l->company, r, i, 5);
    cpy(l->country, sizeof l->country, r, i, 6);
    cpy(l->source, sizeof l->source, r, i, 7);
    l->employee_count = PQgetisnull(r, i, 8) ? -1 : strtol(PQgetvalue(r, i, 8), NULL, 10);
    cpy(l->status, sizeof l->status, r, i, 9);
    cpy(l->owner, sizeof l->owner, r, i, 10);
    cpy(l->routed_at, sizeof l->routed_at, r, i, 11);
    cpy(l->route_reason, sizeof l->route_reason, r, i, 12);
    l->route_latency_ms = strtod(PQgetvalue(r, i, 13), NULL);
    cpy(l->created_at, sizeof l->created_at, r, i, 14);
    l->partition = atoi(PQgetvalue(r, i, 15));
    l->offset = strtoll(PQgetvalue(r, i, 16), NULL, 10);
    cpy(l->domain, sizeof l->domain, r, i, 17);
    cpy(l->accepted_at, sizeof l->accepted_at, r, i, 18);
    cpy(l->sla_due_at, sizeof l->sla_due_at, r, i, 19);
    cpy(l->route_explanation, sizeof l->route_explanation, r, i, 20);
}

/* ---- routing: writer-side lead reads and updates ------------------------ */

static int pg_lead_load(cs_store *st, const char *id, cs_lead *out)
{
    struct pg *p = st->impl;
    const char *v[] = {id};
    PGresult *r = run(st, &p->w, S_LEAD_LOAD, 1, v, "lead_load");
    int ret = !r ? -1 : PQntuples(r) ? 0 : 1;
    if (ret == 0) row_to_lead(r, 0, out);
    PQclear(r);
    return ret;
}

static int pg_lead_update(cs_store *st, const cs_lead *l)
{
    struct pg *p = st->impl;
    const char *v[8] = {l->id, l->status, opt(l->owner), opt(l->routed_at), opt(l->route_reason),
                        opt(l->route_explanation), opt(l->accepted_at), opt(l->sla_due_at)};
    int n = run_cmd(st, &p->w, S_LEAD_UPD, 8, v, "lead_update");
    return n < 0 ? -1 : n > 0;
}

static int pg_lead_open_counts(cs_store *st, void (*cb)(const char *, int64_t, void *), void *arg)
{
    struct pg *p = st->impl;
    PGresult *r = run(st, &p->w, S_LEAD_OPEN, 0, NULL, "lead_open_counts");
    for (int i = 0; r && i < PQntuples(r); i++) cb(PQgetvalue(r, i, 0), strtoll(PQgetvalue(r, i, 1), NULL, 10), arg);
    int ret = r ? 0 : -1;
    PQclear(r);
    return ret;
}

static int pg_lead_sla_due(cs_store *st, const char *due, int limit, cs_lead_cb cb, void *arg)
{
    struct pg *p = st->impl;
    char ls[16];
    snprintf(ls, sizeof ls, "%d", limit);
    const char *v[] = {due, ls};
    PGresult *r = run(st, &p->w, S_LEAD_SLA, 2, v, "lead_sla_due");
    int n = -1;
    if (r) {
        static _Thread_local cs_lead l; /* 10 KiB: not on the stack */
        for (n = 0; n < PQntuples(r);) {
            row_to_lead(r, n++, &l);
            if (cb(&l, arg)) break;
        }
    }
    PQclear(r);
    return n;
}

static int pg_lead_get(cs_store *st, const char *id, cs_lead *out)
{
    struct pg *p = st->impl;
    const char *v[] = {id};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, S_LEAD_GET, 1, v, "lead_get");
    int ret = !r ? -1 : PQntuples(r) ? 0 : 1;
    if (ret == 0) row_to_lead(r, 0, out);
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return ret;
}

static int pg_lead_list(cs_store *st, int64_t after, int limit, cs_lead_cb cb, void *arg)
{
    struct pg *p = st->impl;
    char as[24], ls[16];
    snprintf(as, sizeof as, "%lld", (long long)after);
    snprintf(ls, sizeof ls, "%d", limit);
    const char *v[] = {as, ls};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, S_LEAD_LIST, 2, v, "lead_list");
    int n = -1;
    if (r) {
        cs_lead l;
        for (n = 0; n < PQntuples(r);) {
            row_to_lead(r, n++, &l);
            if (cb(&l, arg)) break;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return n;
}

static int pg_by_owner(cs_store *st, void (*cb)(const char *, int64_t, void *), void *arg)
{
    struct pg *p = st->impl;
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, S_LEAD_BY_OWNER, 0, NULL, "lead_count_by_owner");
    for (int i = 0; r && i < PQntuples(r); i++) cb(PQgetvalue(r, i, 0), strtoll(PQgetvalue(r, i, 1), NULL, 10), arg);
    int ret = r ? 0 : -1;
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return ret;
}

static int emit_rows(const PGresult *r, int obj, cs_row_cb cb, void *arg)
{
    const cs_objdef *d = &cs_objdefs[obj];
    const char *vals[CS_OBJ_MAXCOLS];
    int n = 0;
    while (n < PQntuples(r)) {
        for (int i = 0; i < d->ncols; i++) vals[i] = val(r, n, i + 1);
        cs_row row = {d, strtoll(PQgetvalue(r, n, 0), NULL, 10), vals};
        n++;
        if (cb(&row, arg)) break;
    }
    return n;
}

static int pg_obj_get(cs_store *st, int obj, const char *id, cs_row_cb cb, void *arg)
{
    struct pg *p = st->impl;
    if (obj < 0 || obj >= CS_OBJ_COUNT) return -1;
    const char *v[] = {id};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, OSTMT(obj, O_GET), 1, v, "object get");
    int ret = !r ? -1 : emit_rows(r, obj, cb, arg) ? 0 : 1;
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return ret;
}

/* The list statement's parameters and run, on the reader (tx = 0, under
 * its mutex) or the writer session (tx = 1, inside its transaction). */
static int list_run(cs_store *st, int tx, int obj, int64_t after, int limit, const cs_kv *f, size_t nf, cs_row_cb cb,
                    void *arg)
{
    struct pg *p = st->impl;
    if (obj < 0 || obj >= CS_OBJ_COUNT) return -1;
    const cs_objdef *d = &cs_objdefs[obj];
    const char *v[CS_OBJ_MAXCOLS + 2];
    char as[24], ls[16];
    int nfl = cs_obj_nfilters(d);
    if (cs_obj_filter_params(st, d, f, nf, v + 1)) return -1;
    snprintf(as, sizeof as, "%lld", (long long)after);
    snprintf(ls, sizeof ls, "%d", limit);
    v[0] = as;
    v[nfl + 1] = ls;
    if (!tx) pthread_mutex_lock(&p->rmu);
    PGresult *r = tx ? run(st, &p->w, OSTMT(obj, O_LIST), nfl + 2, v, "object list (tx)")
                     : read_run(st, OSTMT(obj, O_LIST), nfl + 2, v, "object list");
    int n = r ? emit_rows(r, obj, cb, arg) : -1;
    PQclear(r);
    if (!tx) pthread_mutex_unlock(&p->rmu);
    return n;
}

static int pg_obj_list(cs_store *st, int obj, int64_t after, int limit, const cs_kv *f, size_t nf, cs_row_cb cb,
                       void *arg)
{
    return list_run(st, 0, obj, after, limit, f, nf, cb, arg);
}

/* Unprepared (PQexecParams): a lookup by a key column, in the transaction. */
static int pg_obj_find_tx(cs_store *st, int obj, const char *col, const char *value, cs_row_cb cb, void *arg)
{
    struct pg *p = st->impl;
    if (obj < 0 || obj >= CS_OBJ_COUNT) return -1;
    const cs_objdef *d = &cs_objdefs[obj];
    int c = cs_obj_col(d, col);
    if (c < 0 || (c > 0 && !(d->cols[c].flags & CS_COL_FILTER))) {
        snprintf(st->errmsg, sizeof st->errmsg, "%s: not a key of %s", col, d->name);
        st->retriable = 0;
        return -1;
    }
    if (ready(st, &p->w)) return -1;
    char *sql = cs_obj_sql_find(d, '$', c);
    const char *v[] = {value};
    PGresult *r = PQexecParams(p->w.c, sql, 1, NULL, v, NULL, NULL, 0);
    free(sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pfail(st, &p->w, r, "object find");
        PQclear(r);
        return -1;
    }
    int n = emit_rows(r, obj, cb, arg);
    PQclear(r);
    return n ? 0 : 1;
}

/* The same list on the writer session, inside its transaction. */
static int pg_obj_list_tx(cs_store *st, int obj, int64_t after, int limit, const cs_kv *f, size_t nf, cs_row_cb cb,
                          void *arg)
{
    return list_run(st, 1, obj, after, limit, f, nf, cb, arg);
}

static int emit_signals(const PGresult *r, cs_signal_cb cb, void *arg)
{
    int n = 0;
    while (n < PQntuples(r)) {
        int i = n++;
        cs_signal g = {.seq = strtoll(PQgetvalue(r, i, 0), NULL, 10),
                       .account_id = val(r, i, 1),
                       .name = val(r, i, 2),
                       .value = strtod(PQgetvalue(r, i, 3), NULL),
                       .at = val(r, i, 4),
                       .cause_event_id = val(r, i, 5),
                       .partition = atoi(PQgetvalue(r, i, 6)),
                       .offset = strtoll(PQgetvalue(r, i, 7), NULL, 10),
                       .rule_id = val(r, i, 8)};
        if (cb(&g, arg)) break;
    }
    return n;
}

static int pg_signal_list(cs_store *st, const char *acc, cs_signal_cb cb, void *arg)
{
    struct pg *p = st->impl;
    const char *v[] = {acc};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, S_SIG_LIST, 1, v, "signal list");
    int n = r ? emit_signals(r, cb, arg) : -1;
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return n;
}

static int pg_signal_history(cs_store *st, const char *acc, const char *name, int64_t after, int limit,
                             cs_signal_cb cb, void *arg)
{
    struct pg *p = st->impl;
    char as[24], ls[16];
    snprintf(as, sizeof as, "%lld", (long long)after);
    snprintf(ls, sizeof ls, "%d", limit);
    const char *v[] = {acc, name, as, ls};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, S_SIG_HISTORY, 4, v, "signal history");
    int n = r ? emit_signals(r, cb, arg) : -1;
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return n;
}

static int pg_audit_list(cs_store *st, const char *object, const char *object_id, int64_t after, int limit,
                         cs_audit_cb cb, void *arg)
{
    struct pg *p = st->impl;
    char as[24], ls[16];
    snprintf(as, sizeof as, "%lld", (long long)after);
    snprintf(ls, sizeof ls, "%d", limit);
    const char *v[] = {object, object_id, as, ls};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, S_AUDIT_LIST, 4, v, "audit list");
    int n = -1;
    if (r) {
        for (n = 0; n < PQntuples(r);) {
            int i = n++;
            cs_audit a = {.seq = strtoll(PQgetvalue(r, i, 0), NULL, 10),
                          .object = val(r, i, 1),
                          .object_id = val(r, i, 2),
                          .field = val(r, i, 3),
                          .old_value = val(r, i, 4),
                          .new_value = val(r, i, 5),
                          .cause_event_id = val(r, i, 6),
                          .partition = atoi(PQgetvalue(r, i, 7)),
                          .offset = strtoll(PQgetvalue(r, i, 8), NULL, 10),
                          .rule_id = val(r, i, 9),
                          .at = val(r, i, 10)};
            if (cb(&a, arg)) break;
        }
    }
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return n;
}

/* ---- the outbox (docs/OUTBOUND.md) --------------------------------------
 * X_INS runs on the writer session in the pipeline's transaction; the rest
 * on the reader session under its mutex, one autocommit statement each. A
 * claim is one UPDATE over a SELECT ... FOR UPDATE SKIP LOCKED, so several
 * processes can share the outbox without taking each other's rows. */
#define OUTBOX_COLS "seq,id,dest,payload,state,attempt,created_at_ms,next_attempt_ms,lease_until_ms,last_error," \
                    "delivered_at_ms,dead_at_ms,redriven_at_ms,redrives,received_at_ms,cause_event_id,partition," \
                    "\"offset\",rule_id"
#define OUTBOX_CLAIMED " WHERE id=$1 AND state='claimed' RETURNING dest,received_at_ms"
static const char *const xsql[X_COUNT] = {
    [X_INS] = "INSERT INTO outbox(id,dest,payload,created_at_ms,next_attempt_ms,received_at_ms,cause_event_id,"
              "partition,\"offset\",rule_id) VALUES($1,$2,$3,$4,$4,$5,$6,$7,$8,$9) ON CONFLICT(id) DO NOTHING",
    [X_CLAIM] = "UPDATE outbox SET state='claimed',lease_until_ms=$3 WHERE seq IN (SELECT seq FROM outbox"
                " WHERE dest=$1 AND ((state='pending' AND next_attempt_ms<=$2) OR (state='claimed' AND"
                " lease_until_ms<=$2)) ORDER BY next_attempt_ms,seq LIMIT $4 FOR UPDATE SKIP LOCKED)"
                " RETURNING seq,id,dest,payload,attempt,COALESCE(redriven_at_ms,created_at_ms),next_attempt_ms",
    [X_DELIVERED] = "UPDATE outbox SET state='delivered',attempt=$2,delivered_at_ms=$3,lease_until_ms=NULL"
                    OUTBOX_CLAIMED,
    [X_RETRY] = "UPDATE outbox SET state='pending',attempt=$2,next_attempt_ms=$3,last_error=$4,lease_until_ms=NULL"
                OUTBOX_CLAIMED,
    [X_DEAD] = "UPDATE outbox SET state='dead',attempt=$2,dead_at_ms=$3,last_error=$4,lease_until_ms=NULL"
               OUTBOX_CLAIMED,
    [X_RELEASE] = "UPDATE outbox SET state='pending',lease_until_ms=NULL" OUTBOX_CLAIMED,
    [X_RELEASE_ALL] = "UPDATE outbox SET state='pending',lease_until_ms=NULL WHERE state='claimed'",
    [X_LIST] = "SELECT " OUTBOX_COLS " FROM outbox WHERE state=$1 AND ($2::text IS NULL OR dest=$2::text)"
               " AND seq>$3 ORDER BY seq LIMIT $4",
    [X_GET] = "SELECT " OUTBOX_COLS " FROM outbox WHERE id=$1",
    [X_REDRIVE] = "UPDATE outbox SET state='pending',attempt=0,next_attempt_ms=$2,redriven_at_ms=$2,"
                  "redrives=redrives+1,lease_until_ms=NULL WHERE state='dead' AND ($1::text IS NULL OR id=$1::text)",
    [X_STATS] = "SELECT dest,state,count(*),min(created_at_ms) FROM outbox"
                " WHERE state IN ('pending','claimed','dead') GROUP BY dest,state",
};

static int pg_outbox_insert(cs_store *st, const char *dest, const char *id, const char *payload, int64_t created_ms,
                            int64_t received_ms, const cs_cause *c)
{
    struct pg *p = st->impl;
    char cs[24], rs[24], part[16], off[24];
    snprintf(cs, sizeof cs, "%lld", (long long)created_ms);
    snprintf(rs, sizeof rs, "%lld", (long long)received_ms);
    snprintf(part, sizeof part, "%d", c ? c->partition : 0);
    snprintf(off, sizeof off, "%lld", c ? (long long)c->offset : 0LL);
    const char *v[9] = {id, dest, payload, cs, received_ms >= 0 ? rs : NULL, c ? opt(c->event_id) : NULL,
                        c ? part : NULL, c ? off : NULL, c ? opt(c->rule_id) : NULL};
    int n = run_cmd(st, &p->w, XSTMT(X_INS), 9, v, "outbox insert");
    return n < 0 ? -1 : n > 0;
}

static int64_t i64_or(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? -1 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

typedef struct claimed {
    int64_t seq, next;
    int     row;
} claimed;

static int claimed_cmp(const void *a, const void *b)
{
    const claimed *x = a, *y = b;
    if (x->next != y->next) return x->next < y->next ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int pg_outbox_claim(cs_store *st, const char *dest, int64_t now_ms, int64_t lease_until_ms, int max,
                           cs_outbox_cb cb, void *arg)
{
    struct pg *p = st->impl;
    if (max <= 0) return 0;
    char ns[24], ls[24], ms[16];
    snprintf(ns, sizeof ns, "%lld", (long long)now_ms);
    snprintf(ls, sizeof ls, "%lld", (long long)lease_until_ms);
    snprintf(ms, sizeof ms, "%d", max);
    const char *v[] = {dest, ns, ls, ms};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, XSTMT(X_CLAIM), 4, v, "outbox claim");
    pthread_mutex_unlock(&p->rmu);
    if (!r) return -1;
    int n = PQntuples(r);
    claimed *rows = cs_calloc((size_t)n + 1, sizeof *rows);
    for (int i = 0; i < n; i++)
        rows[i] = (claimed){strtoll(PQgetvalue(r, i, 0), NULL, 10), strtoll(PQgetvalue(r, i, 6), NULL, 10), i};
    qsort(rows, (size_t)n, sizeof *rows, claimed_cmp); /* RETURNING has no order */
    for (int k = 0; k < n; k++) {
        int i = rows[k].row;
        cs_outbox_row o = {.seq = rows[k].seq, .id = PQgetvalue(r, i, 1), .dest = PQgetvalue(r, i, 2),
                           .payload = PQgetvalue(r, i, 3), .state = "claimed", .attempt = atoi(PQgetvalue(r, i, 4)),
                           .created_at_ms = strtoll(PQgetvalue(r, i, 5), NULL, 10), .next_attempt_ms = rows[k].next,
                           .lease_until_ms = -1, .delivered_at_ms = -1, .dead_at_ms = -1, .redriven_at_ms = -1,
                           .received_at_ms = -1};
        cb(&o, arg);
    }
    free(rows);
    PQclear(r);
    return n;
}

static int pg_outbox_report(cs_store *st, int what, const char *id, int attempt, int64_t ms, const char *text,
                            char *dest_out, int64_t *received_ms)
{
    struct pg *p = st->impl;
    static const int stmt[] = {[CS_OUTBOX_DELIVERED] = X_DELIVERED, [CS_OUTBOX_RETRY] = X_RETRY,
                               [CS_OUTBOX_DEAD] = X_DEAD, [CS_OUTBOX_RELEASE] = X_RELEASE};
    if (what < 0 || what > CS_OUTBOX_RELEASE) return -1;
    char as[16], mss[24];
    snprintf(as, sizeof as, "%d", attempt);
    snprintf(mss, sizeof mss, "%lld", (long long)ms);
    const char *v[] = {id, as, mss, text};
    int nv = what == CS_OUTBOX_RELEASE ? 1 : what == CS_OUTBOX_DELIVERED ? 3 : 4;
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, XSTMT(stmt[what]), nv, v, "outbox report");
    pthread_mutex_unlock(&p->rmu);
    if (!r) return -1;
    int ret = PQntuples(r) > 0;
    if (ret && dest_out) snprintf(dest_out, 64, "%s", PQgetvalue(r, 0, 0));
    if (ret && received_ms) *received_ms = i64_or(r, 0, 1);
    PQclear(r);
    return ret;
}

static int pg_outbox_release_all(cs_store *st)
{
    struct pg *p = st->impl;
    pthread_mutex_lock(&p->rmu);
    int n = run_cmd(st, &p->r, XSTMT(X_RELEASE_ALL), 0, NULL, "outbox release");
    pthread_mutex_unlock(&p->rmu);
    return n;
}

static int pg_outbox_redrive(cs_store *st, const char *id, int64_t now_ms)
{
    struct pg *p = st->impl;
    char ns[24];
    snprintf(ns, sizeof ns, "%lld", (long long)now_ms);
    const char *v[] = {id, ns};
    pthread_mutex_lock(&p->rmu);
    int n = run_cmd(st, &p->r, XSTMT(X_REDRIVE), 2, v, "outbox redrive");
    pthread_mutex_unlock(&p->rmu);
    return n;
}

static int emit_outbox(const PGresult *r, cs_outbox_cb cb, void *arg)
{
    int n = 0;
    while (n < PQntuples(r)) {
        int i = n++;
        cs_outbox_row o = {.seq = strtoll(PQgetvalue(r, i, 0), NULL, 10), .id = val(r, i, 1), .dest = val(r, i, 2),
                           .payload = val(r, i, 3), .state = val(r, i, 4), .attempt = atoi(PQgetvalue(r, i, 5)),
                           .created_at_ms = i64_or(r, i, 6), .next_attempt_ms = i64_or(r, i, 7),
                           .lease_until_ms = i64_or(r, i, 8), .last_error = val(r, i, 9),
                           .delivered_at_ms = i64_or(r, i, 10), .dead_at_ms = i64_or(r, i, 11),
                           .redriven_at_ms = i64_or(r, i, 12), .redrives = atoi(PQgetvalue(r, i, 13)),
                           .received_at_ms = i64_or(r, i, 14), .cause_event_id = val(r, i, 15),
                           .partition = atoi(PQgetvalue(r, i, 16)), .offset = i64_or(r, i, 17),
                           .rule_id = val(r, i, 18)};
        if (cb(&o, arg)) break;
    }
    return n;
}

static int pg_outbox_list(cs_store *st, const char *state, const char *dest, int64_t after, int limit,
                          cs_outbox_cb cb, void *arg)
{
    struct pg *p = st->impl;
    char as[24], ls[16];
    snprintf(as, sizeof as, "%lld", (long long)after);
    snprintf(ls, sizeof ls, "%d", limit);
    const char *v[] = {state, dest, as, ls};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, XSTMT(X_LIST), 4, v, "outbox list");
    int n = r ? emit_outbox(r, cb, arg) : -1;
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return n;
}

static int pg_outbox_get(cs_store *st, const char *id, cs_outbox_cb cb, void *arg)
{
    struct pg *p = st->impl;
    const char *v[] = {id};
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, XSTMT(X_GET), 1, v, "outbox get");
    int ret = !r ? -1 : emit_outbox(r, cb, arg) ? 0 : 1;
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return ret;
}

static int pg_outbox_stats(cs_store *st, void (*cb)(const char *, const char *, int64_t, int64_t, void *), void *arg)
{
    struct pg *p = st->impl;
    pthread_mutex_lock(&p->rmu);
    PGresult *r = read_run(st, XSTMT(X_STATS), 0, NULL, "outbox stats");
    for (int i = 0; r && i < PQntuples(r); i++)
        cb(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), strtoll(PQgetvalue(r, i, 2), NULL, 10), i64_or(r, i, 3), arg);
    int ret = r ? 0 : -1;
    PQclear(r);
    pthread_mutex_unlock(&p->rmu);
    return ret;
}

static void pg_close(cs_store *st)
{
    if (!st) return;
    struct pg *p = st->impl;
    if (p) {
        PQfinish(p->w.c);
        PQfinish(p->r.c);
        for (int i = 0; i < NSTMT; i++) free(p->sql[i]);
        pthread_mutex_destroy(&p->rmu);
        free(p);
    }
    free(st);
}

static const struct cs_store_ops postgres_ops = {
    .name = "postgres",
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .offset_get = pg_off_get,
    .offset_set = pg_off_set,
    .counter_get = pg_cnt_get,
    .counter_set = pg_cnt_set,
    .lead_insert = pg_lead_ins,
    .audit_insert = pg_audit_ins,
    .obj_upsert = pg_obj_upsert,
    .obj_insert = pg_obj_insert,
    .signal_set = pg_signal_set,
    .signals_clear = pg_signals_clear,
    .snapshot_put = pg_snapshot_put,
    .snapshot_get = pg_snapshot_get,
    .lead_get = pg_lead_get,
    .lead_list = pg_lead_list,
    .lead_count_by_owner = pg_by_owner,
    .lead_load = pg_lead_load,
    .lead_update = pg_lead_update,
    .lead_open_counts = pg_lead_open_counts,
    .lead_sla_due = pg_lead_sla_due,
    .obj_list_tx = pg_obj_list_tx,
    .obj_find_tx = pg_obj_find_tx,
    .obj_get = pg_obj_get,
    .obj_list = pg_obj_list,
    .signal_list = pg_signal_list,
    .signal_history = pg_signal_history,
    .audit_list = pg_audit_list,
    .outbox_insert = pg_outbox_insert,
    .outbox_claim = pg_outbox_claim,
    .outbox_report = pg_outbox_report,
    .outbox_release_all = pg_outbox_release_all,
    .outbox_list = pg_outbox_list,
    .outbox_get = pg_outbox_get,
    .outbox_redrive = pg_outbox_redrive,
    .outbox_stats = pg_outbox_stats,
    .close = pg_close,
};

/* ---- open and migrate -------------------------------------------------- */

static PGconn *connect_uri(const char *uri, char *err, size_t errlen)
{
    /* expand_dbname: the URI supplies everything; connect_timeout bounds a
     * reconnect attempt so a down server is reported, not waited on. */
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {uri, "5", "crmstream", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char msg[300];
        trim_msg(msg, sizeof msg, c ? PQerrorMessage(c) : "out of memory");
        snprintf(err, errlen, "postgres: %s", msg);
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, quiet, NULL);
    return c;
}

static int exec_ok(PGconn *c, const char *sql, int nparams, const char *const *v, char *err, size_t errlen)
{
    PGresult *r = nparams ? PQexecParams(c, sql, nparams, NULL, v, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    int ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok) {
        char msg[300];
        trim_msg(msg, sizeof msg, PQresultErrorMessage(r));
        snprintf(err, errlen, "postgres migration: %s", msg);
    }
    int rows = ok && s == PGRES_TUPLES_OK ? PQntuples(r) : 0;
    PQclear(r);
    return ok ? rows : -1;
}

/* Each migration in its own transaction, under an advisory lock so two
 * processes starting together do not both apply it. */
static int migrate(PGconn *c, char *err, size_t errlen)
{
    for (int i = 0; i < cs_postgres_migrations_count; i++) {
        const struct cs_migration *m = cs_migration_nth(cs_postgres_migrations, cs_postgres_migrations_count, i);
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m->version);
        const char *v[] = {ver, m->name};
        int have;
        if (exec_ok(c, "BEGIN", 0, NULL, err, errlen) < 0 ||
            exec_ok(c, "SELECT pg_advisory_xact_lock(7263727)", 0, NULL, err, errlen) < 0 ||
            exec_ok(c,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                    0, NULL, err, errlen) < 0 ||
            (have = exec_ok(c, "SELECT 1 FROM schema_migrations WHERE version=$1", 1, v, err, errlen)) < 0)
            goto fail;
        if (!have && (exec_ok(c, m->sql, 0, NULL, err, errlen) < 0 ||
                      exec_ok(c, "INSERT INTO schema_migrations(version,name) VALUES($1,$2)", 2, v, err,
                              errlen) < 0))
            goto fail;
        if (exec_ok(c, "COMMIT", 0, NULL, err, errlen) < 0) goto fail;
        if (!have) cs_info("store", "migration applied", "\"version\":%d,\"backend\":\"postgres\"", m->version);
    }
    return 0;
fail:
    PQclear(PQexec(c, "ROLLBACK"));
    return -1;
}

cs_store *cs_store_postgres_open(const char *uri, char *err, size_t errlen)
{
    cs_store *st = cs_calloc(1, sizeof *st);
    struct pg *p = cs_calloc(1, sizeof *p);
    st->ops = &postgres_ops;
    st->impl = p;
    pthread_mutex_init(&p->rmu, NULL);
    for (int i = 0; i < S_FIXED; i++) p->sql[i] = cs_strdup(fixed_sql[i]);
    for (int o = 0; o < CS_OBJ_COUNT; o++) {
        const cs_objdef *d = &cs_objdefs[o];
        p->sql[OSTMT(o, O_LOAD)] = cs_obj_sql_load(d, '$');
        p->sql[OSTMT(o, O_UPSERT)] = cs_obj_sql_save(d, '$', 0);
        p->sql[OSTMT(o, O_INSERT)] = cs_obj_sql_save(d, '$', 1);
        p->sql[OSTMT(o, O_GET)] = cs_obj_sql_get(d, '$');
        p->sql[OSTMT(o, O_LIST)] = cs_obj_sql_list(d, '$');
    }
    for (int i = 0; i < X_COUNT; i++) p->sql[XSTMT(i)] = cs_strdup(xsql[i]);
    if (!(p->w.c = connect_uri(uri, err, errlen)) || migrate(p->w.c, err, errlen) ||
        !(p->r.c = connect_uri(uri, err, errlen)))
        goto fail;
    if (prepare_all(st, &p->w) || prepare_all(st, &p->r)) {
        snprintf(err, errlen, "postgres: %s", st->errmsg);
        goto fail;
    }
    return st;
fail:
    pg_close(st);
    return NULL;
}
