/*
 * store/sqlite — the default store backend. WAL mode: the pipeline writes
 * through one connection, HTTP readers share another behind a mutex.
 * synchronous=NORMAL is enough for exactly-once: offsets commit in the same
 * transaction as the effects, so a commit lost to power failure is simply
 * re-applied from the log.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "core/util.h"
#include "store/migrations.h"
#include "store/objects.h"
#include "store/store.h"

enum {
    W_BEGIN, W_COMMIT, W_ROLLBACK, W_OFF_GET, W_OFF_SET, W_CNT_GET, W_CNT_SET, W_LEAD_INS,
    W_AUDIT_INS, W_SIG_HIST, W_SIG_SET, W_SIG_CLR_HIST, W_SIG_CLR, W_LEAD_LOAD, W_LEAD_UPD, W_LEAD_OPEN,
    W_LEAD_SLA, W_COUNT
};
#define LEAD_COLS "seq,id,event_id,account_id,email,company,country,source,employee_count,status," \
                  "owner,routed_at,route_reason,route_latency_ms,created_at,partition,offset," \
                  "domain,accepted_at,sla_due_at,route_explanation"
static const char *const wsql[W_COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_OFF_GET] = "SELECT next_offset FROM consumer_offsets WHERE consumer=?1 AND topic=?2 AND partition=?3",
    [W_OFF_SET] = "INSERT INTO consumer_offsets(consumer,topic,partition,next_offset) VALUES(?1,?2,?3,?4)"
                  " ON CONFLICT(consumer,topic,partition) DO UPDATE SET next_offset=excluded.next_offset",
    [W_CNT_GET] = "SELECT value FROM counters WHERE name=?1",
    [W_CNT_SET] = "INSERT INTO counters(name,value) VALUES(?1,?2)"
                  " ON CONFLICT(name) DO UPDATE SET value=excluded.value",
    [W_LEAD_INS] = "INSERT INTO leads(id,event_id,account_id,email,company,country,source,employee_count,"
                   "status,owner,routed_at,route_reason,route_latency_ms,created_at,partition,offset,"
                   "domain,accepted_at,sla_due_at,route_explanation)"
                   " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)"
                   " ON CONFLICT DO NOTHING",
    [W_AUDIT_INS] = "INSERT INTO audit(object,object_id,field,old_value,new_value,cause_event_id,"
                    "partition,offset,rule_id,at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
    [W_SIG_HIST] = "INSERT INTO signal_history(account_id,name,value,at,cause_event_id,partition,\"offset\",rule_id)"
                   " VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT DO NOTHING",
    [W_SIG_SET] = "INSERT INTO signals(account_id,name,value,at,cause_event_id,partition,\"offset\",rule_id)"
                  " VALUES(?1,?2,?3,?4,?5,?6,?7,?8) ON CONFLICT(account_id,name) DO UPDATE SET"
                  " value=excluded.value,at=excluded.at,cause_event_id=excluded.cause_event_id,"
                  "partition=excluded.partition,\"offset\"=excluded.\"offset\",rule_id=excluded.rule_id",
    [W_SIG_CLR_HIST] = "DELETE FROM signal_history WHERE ?1 < 0 OR partition = ?1",
    [W_SIG_CLR] = "DELETE FROM signals WHERE ?1 < 0 OR partition = ?1",
    [W_LEAD_LOAD] = "SELECT " LEAD_COLS " FROM leads WHERE id=?1",
    [W_LEAD_UPD] = "UPDATE leads SET status=?2,owner=?3,routed_at=?4,route_reason=?5,route_explanation=?6,"
                   "accepted_at=?7,sla_due_at=?8 WHERE id=?1",
    [W_LEAD_OPEN] = "SELECT owner, count(*) FROM leads WHERE status='routed' AND owner IS NOT NULL GROUP BY owner",
    [W_LEAD_SLA] = "SELECT " LEAD_COLS " FROM leads WHERE status='routed' AND sla_due_at IS NOT NULL"
                   " AND sla_due_at<=?1 ORDER BY sla_due_at, seq LIMIT ?2",
};

enum { R_LEAD_GET, R_LEAD_LIST, R_LEAD_BY_OWNER, R_SIG_LIST, R_SIG_HIST, R_AUDIT_LIST, R_COUNT };
#define SIG_COLS "account_id,name,value,at,cause_event_id,partition,\"offset\",rule_id"
static const char *const rsql[R_COUNT] = {
    [R_LEAD_GET] = "SELECT " LEAD_COLS " FROM leads WHERE id=?1",
    [R_LEAD_LIST] = "SELECT " LEAD_COLS " FROM leads WHERE seq>?1 ORDER BY seq LIMIT ?2",
    [R_LEAD_BY_OWNER] = "SELECT owner, count(*) FROM leads GROUP BY owner ORDER BY owner",
    [R_SIG_LIST] = "SELECT 0," SIG_COLS " FROM signals WHERE account_id=?1 ORDER BY name",
    [R_SIG_HIST] = "SELECT seq," SIG_COLS " FROM signal_history WHERE account_id=?1 AND name=?2 AND seq>?3"
                   " ORDER BY seq LIMIT ?4",
    [R_AUDIT_LIST] = "SELECT seq,object,object_id,field,old_value,new_value,cause_event_id,partition,offset,"
                     "rule_id,at FROM audit WHERE object=?1 AND (?2 IS NULL OR object_id=?2) AND seq>?3"
                     " ORDER BY seq LIMIT ?4",
};

/* Per-object statements, built from the object table (objects.c). */
enum { O_LOAD, O_UPSERT, O_INSERT, O_LISTW, O_WCOUNT };
enum { O_GET, O_LIST, O_RCOUNT };

struct sq {
    sqlite3        *w, *r;
    sqlite3_stmt   *ws[W_COUNT], *rs[R_COUNT];
    sqlite3_stmt   *ow[CS_OBJ_COUNT][O_WCOUNT], *or[CS_OBJ_COUNT][O_RCOUNT];
    pthread_mutex_t rmu;
    sqlite3_stmt   *xs[16];   /* the outbox's statements (X_*) */
    sqlite3_stmt   *find[CS_OBJ_COUNT][CS_OBJ_MAXCOLS]; /* obj_find_tx, prepared on first use */
    int             wal_pages;  /* the WAL's size at this writer's last commit */
};

/* Checkpoints sized to the transactions, instead of SQLite's fixed one at
 * 1,000 WAL pages. A checkpoint fsyncs the WAL, copies its pages into the
 * database and fsyncs that; on a shared disk every acknowledgement's
 * fdatasync in the log waits for those flushes. While transactions are small
 * (the pipeline caught up: a few events per pipeline.linger_ms) a checkpoint
 * comes every CS_SQLITE_CKPT_MIN pages: short flushes, often (bench-ingest's
 * single-event p99, docs/decisions.md "SQLite checkpoints"). While they
 * are big (a backlog: thousands of events each) every CS_SQLITE_CKPT_MAX
 * pages, as before, so a page rewritten by many transactions is copied once
 * (throughput). The threshold is 8 commits' worth of WAL growth, clamped. */
int cs_sqlite_ckpt_at(int grew)
{
    long at = 8L * (grew > 0 ? grew : 0);
    return at < CS_SQLITE_CKPT_MIN ? CS_SQLITE_CKPT_MIN : at > CS_SQLITE_CKPT_MAX ? CS_SQLITE_CKPT_MAX : (int)at;
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sq *q = arg;
    int grew = pages >= q->wal_pages ? pages - q->wal_pages : pages; /* smaller: the WAL restarted */
    q->wal_pages = pages;
    if (pages >= cs_sqlite_ckpt_at(grew)) sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

static int fail(cs_store *st, sqlite3 *db, const char *what)
{
    int code = sqlite3_errcode(db) & 0xff;
    st->retriable = code == SQLITE_BUSY || code == SQLITE_LOCKED;
    snprintf(st->errmsg, sizeof st->errmsg, "%s: %s", what, sqlite3_errmsg(db));
    cs_error("store", "sqlite error", "\"what\":\"%s\",\"error\":\"%s\"", what, sqlite3_errmsg(db));
    return -1;
}

static int step_done(cs_store *st, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) return fail(st, sqlite3_db_handle(s), what);
    return 0;
}

static int sq_begin(cs_store *st)
{
    struct sq *q = st->impl;
    return step_done(st, q->ws[W_BEGIN], "begin");
}

static int sq_commit(cs_store *st)
{
    struct sq *q = st->impl;
    int rc = step_done(st, q->ws[W_COMMIT], "commit");
    cs_outbox_tx_end(st, rc == 0);
    return rc;
}

static void sq_rollback(cs_store *st)
{
    struct sq *q = st->impl;
    if (!sqlite3_get_autocommit(q->w)) step_done(st, q->ws[W_ROLLBACK], "rollback");
    cs_outbox_tx_end(st, 0);
}

static int get_int(cs_store *st, sqlite3_stmt *s, int64_t *out, const char *what)
{
    int rc = sqlite3_step(s);
    *out = 0;
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(st, sqlite3_db_handle(s), what);
    return 0;
}

static int sq_off_get(cs_store *st, const char *consumer, const char *topic, int part, int64_t *next)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ws[W_OFF_GET];
    sqlite3_bind_text(s, 1, consumer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, part);
    return get_int(st, s, next, "offset_get");
}

static int sq_off_set(cs_store *st, const char *consumer, const char *topic, int part, int64_t next)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ws[W_OFF_SET];
    sqlite3_bind_text(s, 1, consumer, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, topic, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, part);
    sqlite3_bind_int64(s, 4, next);
    return step_done(st, s, "offset_set");
}

static int sq_cnt_get(cs_store *st, const char *name, int64_t *v)
{
    struct sq *q = st->impl;
    sqlite3_bind_text(q->ws[W_CNT_GET], 1, name, -1, SQLITE_STATIC);
    return get_int(st, q->ws[W_CNT_GET], v, "counter_get");
}

static int sq_cnt_set(cs_store *st, const char *name, int64_t v)
{
    struct sq *q = st->impl;
    sqlite3_bind_text(q->ws[W_CNT_SET], 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q->ws[W_CNT_SET], 2, v);
    return step_done(st, q->ws[W_CNT_SET], "counter_set");
}

static void bind_opt(sqlite3_stmt *s, int i, const char *v)
{
    if (v && *v) sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, i);
}

static int sq_lead_ins(cs_store *st, const cs_lead *l)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ws[W_LEAD_INS];
    sqlite3_bind_text(s, 1, l->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, l->event_id, -1, SQLITE_STATIC);
    bind_opt(s, 3, l->account_id);
    sqlite3_bind_text(s, 4, l->email, -1, SQLITE_STATIC);
    bind_opt(s, 5, l->company);
    bind_opt(s, 6, l->country);
    bind_opt(s, 7, l->source);
    if (l->employee_count >= 0) sqlite3_bind_int64(s, 8, l->employee_count);
    else sqlite3_bind_null(s, 8);
    sqlite3_bind_text(s, 9, l->status, -1, SQLITE_STATIC);
    bind_opt(s, 10, l->owner);
    bind_opt(s, 11, l->routed_at);
    bind_opt(s, 12, l->route_reason);
    sqlite3_bind_double(s, 13, l->route_latency_ms);
    sqlite3_bind_text(s, 14, l->created_at, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 15, l->partition);
    sqlite3_bind_int64(s, 16, l->offset);
    bind_opt(s, 17, l->domain);
    bind_opt(s, 18, l->accepted_at);
    bind_opt(s, 19, l->sla_due_at);
    bind_opt(s, 20, l->route_explanation);
    if (step_done(st, s, "lead_insert")) return -1;
    return sqlite3_changes(q->w) > 0 ? 1 : 0;
}

static int sq_audit_ins(cs_store *st, const cs_audit *a)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ws[W_AUDIT_INS];
    sqlite3_bind_text(s, 1, a->object, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, a->object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, a->field, -1, SQLITE_STATIC);
    bind_opt(s, 4, a->old_value);
    bind_opt(s, 5, a->new_value);
    bind_opt(s, 6, a->cause_event_id);
    sqlite3_bind_int(s, 7, a->partition);
    sqlite3_bind_int64(s, 8, a->offset);
    bind_opt(s, 9, a->rule_id);
    sqlite3_bind_text(s, 10, a->at, -1, SQLITE_STATIC);
    return step_done(st, s, "audit_insert");
}

static void col_text(sqlite3_stmt *s, int i, char *dst, size_t n)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

static void row_to_lead(sqlite3_stmt *s, cs_lead *l)
{
    l->seq = sqlite3_column_int64(s, 0);
    col_text(s, 1, l->id, sizeof l->id);
    col_text(s, 2, l->event_id, sizeof l->event_id);
    col_text(s, 3, l->account_id, sizeof l->account_id);
    col_text(s, 4, l->email, sizeof l->email);
    col_text(s, 5, l->company, sizeof l->company);
    col_text(s, 6, l->country, sizeof l->country);
    col_text(s, 7, l->source, sizeof l->source);
    l->employee_count = sqlite3_column_type(s, 8) == SQLITE_NULL ? -1 : (long)sqlite3_column_int64(s, 8);
    col_text(s, 9, l->status, sizeof l->status);
    col_text(s, 10, l->owner, sizeof l->owner);
    col_text(s, 11, l->routed_at, sizeof l->routed_at);
    col_text(s, 12, l->route_reason, sizeof l->route_reason);
    l->route_latency_ms = sqlite3_column_double(s, 13);
    col_text(s, 14, l->created_at, sizeof l->created_at);
    l->partition = sqlite3_column_int(s, 15);
    l->offset = sqlite3_column_int64(s, 16);
    col_text(s, 17, l->domain, sizeof l->domain);
    col_text(s, 18, l->accepted_at, sizeof l->accepted_at);
    col_text(s, 19, l->sla_due_at, sizeof l->sla_due_at);
    col_text(s, 20, l->route_explanation, sizeof l->route_explanation);
}

/* ---- routing: writer-side lead reads and updates ------------------------ */

static int sq_lead_load(cs_store *st, const char *id, cs_lead *out)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ws[W_LEAD_LOAD];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s), ret;
    if (rc == SQLITE_ROW) row_to_lead(s, out), ret = 0;
    else if (rc == SQLITE_DONE) ret = 1;
    else ret = fail(st, q->w, "lead_load");
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return ret;
}

static int sq_lead_update(cs_store *st, const cs_lead *l)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ws[W_LEAD_UPD];
    sqlite3_bind_text(s, 1, l->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, l->status, -1, SQLITE_STATIC);
    bind_opt(s, 3, l->owner);
    bind_opt(s, 4, l->routed_at);
    bind_opt(s, 5, l->route_reason);
    bind_opt(s, 6, l->route_explanation);
    bind_opt(s, 7, l->accepted_at);
    bind_opt(s, 8, l->sla_due_at);
    if (step_done(st, s, "lead_update")) return -1;
    return sqlite3_changes(q->w) > 0 ? 1 : 0;
}

static int sq_lead_open_counts(cs_store *st, void (*cb)(const char *, int64_t, void *), void *arg)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ws[W_LEAD_OPEN];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *o = sqlite3_column_text(s, 0);
        cb(o ? (const char *)o : "", sqlite3_column_int64(s, 1), arg);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(st, q->w, "lead_open_counts");
    sqlite3_reset(s);
    return ret;
}

static int sq_lead_sla_due(cs_store *st, const char *due, int limit, cs_lead_cb cb, void *arg)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ws[W_LEAD_SLA];
    sqlite3_bind_text(s, 1, due, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 2, limit);
    int n = 0, rc;
    static _Thread_local cs_lead l; /* 10 KiB: not on the stack */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        row_to_lead(s, &l);
        n++;
        if (cb(&l, arg)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) n = fail(st, q->w, "lead_sla_due");
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return n;
}

static int sq_lead_get(cs_store *st, const char *id, cs_lead *out)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->rs[R_LEAD_GET];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s), ret;
    if (rc == SQLITE_ROW) row_to_lead(s, out), ret = 0;
    else if (rc == SQLITE_DONE) ret = 1;
    else ret = fail(st, q->r, "lead_get");
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&q->rmu);
    return ret;
}

static int sq_lead_list(cs_store *st, int64_t after, int limit, cs_lead_cb cb, void *arg)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->rs[R_LEAD_LIST];
    sqlite3_bind_int64(s, 1, after);
    sqlite3_bind_int(s, 2, limit);
    int n = 0, rc;
    cs_lead l;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        row_to_lead(s, &l);
        n++;
        if (cb(&l, arg)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) n = fail(st, q->r, "lead_list");
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    pthread_mutex_unlock(&q->rmu);
    return n;
}

static int sq_by_owner(cs_store *st, void (*cb)(const char *, int64_t, void *), void *arg)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->rs[R_LEAD_BY_OWNER];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const unsigned char *o = sqlite3_column_text(s, 0);
        cb(o ? (const char *)o : "", sqlite3_column_int64(s, 1), arg);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(st, q->r, "lead_count_by_owner");
    sqlite3_reset(s);
    pthread_mutex_unlock(&q->rmu);
    return ret;
}

/* ---- CRM objects ------------------------------------------------------ */

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
    if (v) sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else sqlite3_bind_null(s, i);
}

static void reset(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

static int sq_obj_load(cs_store *st, int obj, const char *id, char **vals)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ow[obj][O_LOAD];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s), ret = 0;
    if (rc == SQLITE_ROW) {
        for (int i = 0; i < cs_objdefs[obj].ncols; i++) {
            const unsigned char *t = sqlite3_column_text(s, i);
            vals[i] = t ? cs_strdup((const char *)t) : NULL;
        }
        ret = 1;
    } else if (rc != SQLITE_DONE) {
        ret = fail(st, q->w, "object load");
    }
    reset(s);
    return ret;
}

static int sq_obj_save(cs_store *st, int obj, const char *const *vals, int insert_only)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->ow[obj][insert_only ? O_INSERT : O_UPSERT];
    for (int i = 0; i < cs_objdefs[obj].ncols; i++) bind_text_or_null(s, i + 1, vals[i]);
    if (step_done(st, s, "object save")) return -1;
    return sqlite3_changes(q->w) > 0 ? 1 : 0;
}

static const struct cs_obj_prims sq_prims = {sq_obj_load, sq_obj_save};

static int sq_obj_upsert(cs_store *st, int obj, const char *id, const cs_kv *kv, size_t n, const cs_cause *c)
{
    return cs_obj_write(st, &sq_prims, obj, id, kv, n, c, 0);
}

static int sq_obj_insert(cs_store *st, int obj, const char *id, const cs_kv *kv, size_t n, const cs_cause *c)
{
    return cs_obj_write(st, &sq_prims, obj, id, kv, n, c, 1);
}

static void bind_cause(sqlite3_stmt *s, const char *acc, const char *name, double v, const cs_cause *c)
{
    sqlite3_bind_text(s, 1, acc, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 3, v);
    bind_text_or_null(s, 4, c->at);
    sqlite3_bind_text(s, 5, c->event_id ? c->event_id : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 6, c->partition);
    sqlite3_bind_int64(s, 7, c->offset);
    bind_text_or_null(s, 8, c->rule_id);
}

static int sq_signal_set(cs_store *st, const char *acc, const char *name, double v, const cs_cause *c)
{
    struct sq *q = st->impl;
    bind_cause(q->ws[W_SIG_HIST], acc, name, v, c);
    if (step_done(st, q->ws[W_SIG_HIST], "signal history")) return -1;
    if (sqlite3_changes(q->w) == 0) return 0; /* this event was recorded already */
    bind_cause(q->ws[W_SIG_SET], acc, name, v, c);
    return step_done(st, q->ws[W_SIG_SET], "signal set") ? -1 : 1;
}

static int sq_signals_clear(cs_store *st, int partition)
{
    struct sq *q = st->impl;
    sqlite3_bind_int(q->ws[W_SIG_CLR_HIST], 1, partition);
    if (step_done(st, q->ws[W_SIG_CLR_HIST], "signal history clear")) return -1;
    sqlite3_bind_int(q->ws[W_SIG_CLR], 1, partition);
    return step_done(st, q->ws[W_SIG_CLR], "signals clear");
}

static int too_big(cs_store *st, size_t len)
{
    if (len <= CS_SNAPSHOT_MAX) return 0;
    st->retriable = 0;
    snprintf(st->errmsg, sizeof st->errmsg, "snapshot_put: %zu bytes is over the %zu-byte limit", len,
             CS_SNAPSHOT_MAX);
    return 1;
}

/* Snapshots are rare (every N batches, and at start): statements prepared per call. */
static int sq_snapshot_put(cs_store *st, const char *name, int partition, int64_t next_offset, const void *data,
                           size_t len)
{
    struct sq *q = st->impl;
    if (too_big(st, len)) return -1;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(q->w,
                           "INSERT INTO state_snapshots(name,partition,next_offset,data,bytes) VALUES(?1,?2,?3,?4,?5)"
                           " ON CONFLICT(name,partition) DO UPDATE SET next_offset=excluded.next_offset,"
                           "data=excluded.data,bytes=excluded.bytes,at=strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                           -1, &s, NULL) != SQLITE_OK)
        return fail(st, q->w, "snapshot_put");
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, partition);
    sqlite3_bind_int64(s, 3, next_offset);
    sqlite3_bind_blob64(s, 4, len ? data : "", (sqlite3_uint64)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)len);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) fail(st, q->w, "snapshot_put");
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int sq_snapshot_get(cs_store *st, const char *name, int partition, int64_t *next_offset, void **data,
                           size_t *len)
{
    struct sq *q = st->impl;
    *data = NULL;
    *len = 0;
    *next_offset = 0;
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(q->w, "SELECT next_offset,data FROM state_snapshots WHERE name=?1 AND partition=?2", -1,
                           &s, NULL) != SQLITE_OK)
        return fail(st, q->w, "snapshot_get");
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, partition);
    int rc = sqlite3_step(s), ret;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(s, 1) == 0) {
        ret = 1; /* cleared */
    } else if (rc == SQLITE_ROW) {
        *next_offset = sqlite3_column_int64(s, 0);
        const void *b = sqlite3_column_blob(s, 1);
        size_t n = (size_t)sqlite3_column_bytes(s, 1);
        *data = cs_malloc(n ? n : 1);
        if (n) memcpy(*data, b, n);
        *len = n;
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = 1;
    } else {
        ret = fail(st, q->w, "snapshot_get");
    }
    sqlite3_finalize(s);
    return ret;
}

/* Reader side: every read holds the reader mutex. */

static int emit_rows(cs_store *st, sqlite3_stmt *s, int obj, cs_row_cb cb, void *arg, const char *what)
{
    const cs_objdef *d = &cs_objdefs[obj];
    const char *vals[CS_OBJ_MAXCOLS];
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < d->ncols; i++) vals[i] = (const char *)sqlite3_column_text(s, i + 1);
        cs_row row = {d, sqlite3_column_int64(s, 0), vals};
        n++;
        if (cb(&row, arg)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) n = fail(st, sqlite3_db_handle(s), what);
    reset(s);
    return n;
}

static int sq_obj_get(cs_store *st, int obj, const char *id, cs_row_cb cb, void *arg)
{
    struct sq *q = st->impl;
    if (obj < 0 || obj >= CS_OBJ_COUNT) return -1;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->or[obj][O_GET];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int n = emit_rows(st, s, obj, cb, arg, "object get");
    pthread_mutex_unlock(&q->rmu);
    return n < 0 ? -1 : n == 0 ? 1 : 0;
}

/* A list statement (reader or writer side) bound and run: rows with seq >
 * after matching the filters, at most limit. */
static int list_run(cs_store *st, sqlite3_stmt *s, int obj, int64_t after, int limit, const cs_kv *f, size_t nf,
                    cs_row_cb cb, void *arg, const char *what)
{
    const cs_objdef *d = &cs_objdefs[obj];
    const char *params[CS_OBJ_MAXCOLS];
    if (cs_obj_filter_params(st, d, f, nf, params)) return -1;
    int nfl = cs_obj_nfilters(d);
    sqlite3_bind_int64(s, 1, after);
    for (int k = 0; k < nfl; k++)
        if (params[k]) sqlite3_bind_text(s, k + 2, params[k], -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, nfl + 2, limit);
    return emit_rows(st, s, obj, cb, arg, what);
}

static int sq_obj_list(cs_store *st, int obj, int64_t after, int limit, const cs_kv *f, size_t nf, cs_row_cb cb,
                       void *arg)
{
    struct sq *q = st->impl;
    if (obj < 0 || obj >= CS_OBJ_COUNT) return -1;
    pthread_mutex_lock(&q->rmu);
    int n = list_run(st, q->or[obj][O_LIST], obj, after, limit, f, nf, cb, arg, "object list");
    pthread_mutex_unlock(&q->rmu);
    return n;
}

static int sq_obj_find_tx(cs_store *st, int obj, const char *col, const char *value, cs_row_cb cb, void *arg)
{
    struct sq *q = st->impl;
    if (obj < 0 || obj >= CS_OBJ_COUNT) return -1;
    const cs_objdef *d = &cs_objdefs[obj];
    int c = cs_obj_col(d, col);
    if (c < 0 || (c > 0 && !(d->cols[c].flags & CS_COL_FILTER))) {
        snprintf(st->errmsg, sizeof st->errmsg, "%s: not a key of %s", col, d->name);
        st->retriable = 0;
        return -1;
    }
    if (!q->find[obj][c]) {
        char *sql = cs_obj_sql_find(d, '?', c);
        int rc = sqlite3_prepare_v3(q->w, sql, -1, SQLITE_PREPARE_PERSISTENT, &q->find[obj][c], NULL);
        free(sql);
        if (rc != SQLITE_OK) return fail(st, q->w, "object find (prepare)");
    }
    sqlite3_stmt *s = q->find[obj][c];
    sqlite3_bind_text(s, 1, value, -1, SQLITE_TRANSIENT);
    int n = emit_rows(st, s, obj, cb, arg, "object find");
    return n < 0 ? -1 : n == 0 ? 1 : 0;
}

/* The same list on the writer connection (no reader mutex: the writer is
 * the pipeline's own), inside its transaction. */
static int sq_obj_list_tx(cs_store *st, int obj, int64_t after, int limit, const cs_kv *f, size_t nf, cs_row_cb cb,
                          void *arg)
{
    struct sq *q = st->impl;
    if (obj < 0 || obj >= CS_OBJ_COUNT) return -1;
    return list_run(st, q->ow[obj][O_LISTW], obj, after, limit, f, nf, cb, arg, "object list (tx)");
}

static int emit_signals(cs_store *st, sqlite3_stmt *s, cs_signal_cb cb, void *arg, const char *what)
{
    struct sq *q = st->impl;
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cs_signal g = {
            .seq = sqlite3_column_int64(s, 0),
            .account_id = (const char *)sqlite3_column_text(s, 1),
            .name = (const char *)sqlite3_column_text(s, 2),
            .value = sqlite3_column_double(s, 3),
            .at = (const char *)sqlite3_column_text(s, 4),
            .cause_event_id = (const char *)sqlite3_column_text(s, 5),
            .partition = sqlite3_column_int(s, 6),
            .offset = sqlite3_column_int64(s, 7),
            .rule_id = (const char *)sqlite3_column_text(s, 8),
        };
        n++;
        if (cb(&g, arg)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) n = fail(st, q->r, what);
    reset(s);
    return n;
}

static int sq_signal_list(cs_store *st, const char *acc, cs_signal_cb cb, void *arg)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->rs[R_SIG_LIST];
    sqlite3_bind_text(s, 1, acc, -1, SQLITE_TRANSIENT);
    int n = emit_signals(st, s, cb, arg, "signal list");
    pthread_mutex_unlock(&q->rmu);
    return n;
}

static int sq_signal_history(cs_store *st, const char *acc, const char *name, int64_t after, int limit,
                             cs_signal_cb cb, void *arg)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->rs[R_SIG_HIST];
    sqlite3_bind_text(s, 1, acc, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, after);
    sqlite3_bind_int(s, 4, limit);
    int n = emit_signals(st, s, cb, arg, "signal history");
    pthread_mutex_unlock(&q->rmu);
    return n;
}

static int sq_audit_list(cs_store *st, const char *object, const char *object_id, int64_t after, int limit,
                         cs_audit_cb cb, void *arg)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->rs[R_AUDIT_LIST];
    sqlite3_bind_text(s, 1, object, -1, SQLITE_TRANSIENT);
    if (object_id) sqlite3_bind_text(s, 2, object_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, after);
    sqlite3_bind_int(s, 4, limit);
    int n = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        cs_audit a = {
            .seq = sqlite3_column_int64(s, 0),
            .object = (const char *)sqlite3_column_text(s, 1),
            .object_id = (const char *)sqlite3_column_text(s, 2),
            .field = (const char *)sqlite3_column_text(s, 3),
            .old_value = (const char *)sqlite3_column_text(s, 4),
            .new_value = (const char *)sqlite3_column_text(s, 5),
            .cause_event_id = (const char *)sqlite3_column_text(s, 6),
            .partition = sqlite3_column_int(s, 7),
            .offset = sqlite3_column_int64(s, 8),
            .rule_id = (const char *)sqlite3_column_text(s, 9),
            .at = (const char *)sqlite3_column_text(s, 10),
        };
        n++;
        if (cb(&a, arg)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) n = fail(st, q->r, "audit list");
    reset(s);
    pthread_mutex_unlock(&q->rmu);
    return n;
}

/* ---- the outbox (docs/OUTBOUND.md) --------------------------------------
 * X_INS runs on the writer connection in the pipeline's transaction; the
 * rest on the reader connection under the reader mutex, one autocommit
 * statement each (a claim is one UPDATE ... RETURNING: atomic, and WAL's
 * one writer at a time waits at most busy_timeout for the pipeline). */
enum { X_INS, X_CLAIM, X_DELIVERED, X_RETRY, X_DEAD, X_RELEASE, X_RELEASE_ALL, X_LIST, X_GET, X_REDRIVE,
       X_STATS, X_COUNT };
_Static_assert(X_COUNT <= 16, "struct sq: xs[16]");
#define OUTBOX_COLS "seq,id,dest,payload,state,attempt,created_at_ms,next_attempt_ms,lease_until_ms,last_error," \
                    "delivered_at_ms,dead_at_ms,redriven_at_ms,redrives,received_at_ms,cause_event_id,partition," \
                    "\"offset\",rule_id"
#define OUTBOX_CLAIMED " WHERE id=?1 AND state='claimed' RETURNING dest,received_at_ms"
static const char *const xsql[X_COUNT] = {
    [X_INS] = "INSERT INTO outbox(id,dest,payload,created_at_ms,next_attempt_ms,received_at_ms,cause_event_id,"
              "partition,\"offset\",rule_id) VALUES(?1,?2,?3,?4,?4,?5,?6,?7,?8,?9) ON CONFLICT(id) DO NOTHING",
    [X_CLAIM] = "UPDATE outbox SET state='claimed',lease_until_ms=?3 WHERE seq IN (SELECT seq FROM outbox"
                " WHERE dest=?1 AND ((state='pending' AND next_attempt_ms<=?2) OR (state='claimed' AND"
                " lease_until_ms<=?2)) ORDER BY next_attempt_ms,seq LIMIT ?4)"
                " RETURNING seq,id,dest,payload,attempt,COALESCE(redriven_at_ms,created_at_ms),next_attempt_ms",
    [X_DELIVERED] = "UPDATE outbox SET state='delivered',attempt=?2,delivered_at_ms=?3,lease_until_ms=NULL"
                    OUTBOX_CLAIMED,
    [X_RETRY] = "UPDATE outbox SET state='pending',attempt=?2,next_attempt_ms=?3,last_error=?4,lease_until_ms=NULL"
                OUTBOX_CLAIMED,
    [X_DEAD] = "UPDATE outbox SET state='dead',attempt=?2,dead_at_ms=?3,last_error=?4,lease_until_ms=NULL"
               OUTBOX_CLAIMED,
    [X_RELEASE] = "UPDATE outbox SET state='pending',lease_until_ms=NULL" OUTBOX_CLAIMED,
    [X_RELEASE_ALL] = "UPDATE outbox SET state='pending',lease_until_ms=NULL WHERE state='claimed'",
    [X_LIST] = "SELECT " OUTBOX_COLS " FROM outbox WHERE state=?1 AND (?2 IS NULL OR dest=?2) AND seq>?3"
               " ORDER BY seq LIMIT ?4",
    [X_GET] = "SELECT " OUTBOX_COLS " FROM outbox WHERE id=?1",
    [X_REDRIVE] = "UPDATE outbox SET state='pending',attempt=0,next_attempt_ms=?2,redriven_at_ms=?2,"
                  "redrives=redrives+1,lease_until_ms=NULL WHERE state='dead' AND (?1 IS NULL OR id=?1)",
    [X_STATS] = "SELECT dest,state,count(*),min(created_at_ms) FROM outbox"
                " WHERE state IN ('pending','claimed','dead') GROUP BY dest,state",
};

static int sq_outbox_insert(cs_store *st, const char *dest, const char *id, const char *payload, int64_t created_ms,
                            int64_t received_ms, const cs_cause *c)
{
    struct sq *q = st->impl;
    sqlite3_stmt *s = q->xs[X_INS];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, payload, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, created_ms);
    if (received_ms >= 0) sqlite3_bind_int64(s, 5, received_ms);
    if (c) {
        bind_opt(s, 6, c->event_id);
        sqlite3_bind_int(s, 7, c->partition);
        sqlite3_bind_int64(s, 8, c->offset);
        bind_opt(s, 9, c->rule_id);
    }
    if (step_done(st, s, "outbox insert")) return -1;
    return sqlite3_changes(q->w) > 0 ? 1 : 0;
}

static int64_t col_i64(sqlite3_stmt *s, int i)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, i);
}

static void outbox_row(sqlite3_stmt *s, cs_outbox_row *r)
{
    *r = (cs_outbox_row){
        .seq = sqlite3_column_int64(s, 0),
        .id = (const char *)sqlite3_column_text(s, 1),
        .dest = (const char *)sqlite3_column_text(s, 2),
        .payload = (const char *)sqlite3_column_text(s, 3),
        .state = (const char *)sqlite3_column_text(s, 4),
        .attempt = sqlite3_column_int(s, 5),
        .created_at_ms = sqlite3_column_int64(s, 6),
        .next_attempt_ms = sqlite3_column_int64(s, 7),
        .lease_until_ms = col_i64(s, 8),
        .last_error = (const char *)sqlite3_column_text(s, 9),
        .delivered_at_ms = col_i64(s, 10),
        .dead_at_ms = col_i64(s, 11),
        .redriven_at_ms = col_i64(s, 12),
        .redrives = sqlite3_column_int(s, 13),
        .received_at_ms = col_i64(s, 14),
        .cause_event_id = (const char *)sqlite3_column_text(s, 15),
        .partition = sqlite3_column_int(s, 16),
        .offset = sqlite3_column_int64(s, 17),
        .rule_id = (const char *)sqlite3_column_text(s, 18),
    };
}

/* Claimed rows, copied out of the statement to be sorted (RETURNING's
 * order is unspecified) and handed to the callback after the statement. */
typedef struct claimed {
    int64_t seq, created, next;
    int     attempt;
    char   *id, *dest, *payload;
} claimed;

static int claimed_cmp(const void *a, const void *b)
{
    const claimed *x = a, *y = b;
    if (x->next != y->next) return x->next < y->next ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int emit_claimed(claimed *rows, int n, cs_outbox_cb cb, void *arg)
{
    qsort(rows, (size_t)n, sizeof *rows, claimed_cmp);
    for (int i = 0; i < n; i++) {
        cs_outbox_row r = {.seq = rows[i].seq, .id = rows[i].id, .dest = rows[i].dest,
                           .payload = rows[i].payload, .state = "claimed", .attempt = rows[i].attempt,
                           .created_at_ms = rows[i].created, .next_attempt_ms = rows[i].next,
                           .lease_until_ms = -1, .delivered_at_ms = -1, .dead_at_ms = -1,
                           .redriven_at_ms = -1, .received_at_ms = -1};
        cb(&r, arg);
        free(rows[i].id), free(rows[i].dest), free(rows[i].payload);
    }
    free(rows);
    return n;
}

static int sq_outbox_claim(cs_store *st, const char *dest, int64_t now_ms, int64_t lease_until_ms, int max,
                           cs_outbox_cb cb, void *arg)
{
    struct sq *q = st->impl;
    if (max <= 0) return 0;
    claimed *rows = cs_calloc((size_t)max, sizeof *rows);
    int n = 0, rc;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->xs[X_CLAIM];
    sqlite3_bind_text(s, 1, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    sqlite3_bind_int64(s, 3, lease_until_ms);
    sqlite3_bind_int(s, 4, max);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && n < max) {
        claimed *c = &rows[n++];
        c->seq = sqlite3_column_int64(s, 0);
        c->id = cs_strdup((const char *)sqlite3_column_text(s, 1));
        c->dest = cs_strdup((const char *)sqlite3_column_text(s, 2));
        c->payload = cs_strdup((const char *)sqlite3_column_text(s, 3));
        c->attempt = sqlite3_column_int(s, 4);
        c->created = sqlite3_column_int64(s, 5);
        c->next = sqlite3_column_int64(s, 6);
    }
    int bad = rc != SQLITE_ROW && rc != SQLITE_DONE;
    if (bad) fail(st, q->r, "outbox claim");
    reset(s);
    pthread_mutex_unlock(&q->rmu);
    if (bad) n = 0; /* the UPDATE did not happen: nothing is leased */
    emit_claimed(rows, n, cb, arg);
    return bad ? -1 : n;
}

static int sq_outbox_report(cs_store *st, int what, const char *id, int attempt, int64_t ms, const char *text,
                            char *dest_out, int64_t *received_ms)
{
    struct sq *q = st->impl;
    static const int stmt[] = {[CS_OUTBOX_DELIVERED] = X_DELIVERED, [CS_OUTBOX_RETRY] = X_RETRY,
                               [CS_OUTBOX_DEAD] = X_DEAD, [CS_OUTBOX_RELEASE] = X_RELEASE};
    if (what < 0 || what > CS_OUTBOX_RELEASE) return -1;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->xs[stmt[what]];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    if (what != CS_OUTBOX_RELEASE) {
        sqlite3_bind_int(s, 2, attempt);
        sqlite3_bind_int64(s, 3, ms);
    }
    if (what == CS_OUTBOX_RETRY || what == CS_OUTBOX_DEAD) bind_text_or_null(s, 4, text);
    int rc = sqlite3_step(s), ret = 0;
    if (rc == SQLITE_ROW) {
        ret = 1;
        if (dest_out) col_text(s, 0, dest_out, 64);
        if (received_ms) *received_ms = col_i64(s, 1);
        rc = sqlite3_step(s);
    }
    if (rc != SQLITE_DONE) ret = fail(st, q->r, "outbox report");
    reset(s);
    pthread_mutex_unlock(&q->rmu);
    return ret;
}

static int sq_outbox_exec(cs_store *st, int x, const char *what)
{
    struct sq *q = st->impl;
    int rc = step_done(st, q->xs[x], what);
    return rc ? -1 : sqlite3_changes(q->r);
}

static int sq_outbox_release_all(cs_store *st)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    int n = sq_outbox_exec(st, X_RELEASE_ALL, "outbox release");
    pthread_mutex_unlock(&q->rmu);
    return n;
}

static int sq_outbox_redrive(cs_store *st, const char *id, int64_t now_ms)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    bind_text_or_null(q->xs[X_REDRIVE], 1, id);
    sqlite3_bind_int64(q->xs[X_REDRIVE], 2, now_ms);
    int n = sq_outbox_exec(st, X_REDRIVE, "outbox redrive");
    pthread_mutex_unlock(&q->rmu);
    return n;
}

static int emit_outbox(cs_store *st, sqlite3_stmt *s, cs_outbox_cb cb, void *arg, const char *what)
{
    struct sq *q = st->impl;
    int n = 0, rc;
    cs_outbox_row r;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        outbox_row(s, &r);
        n++;
        if (cb(&r, arg)) break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) n = fail(st, q->r, what);
    reset(s);
    return n;
}

static int sq_outbox_list(cs_store *st, const char *state, const char *dest, int64_t after, int limit,
                          cs_outbox_cb cb, void *arg)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->xs[X_LIST];
    sqlite3_bind_text(s, 1, state, -1, SQLITE_TRANSIENT);
    bind_text_or_null(s, 2, dest);
    sqlite3_bind_int64(s, 3, after);
    sqlite3_bind_int(s, 4, limit);
    int n = emit_outbox(st, s, cb, arg, "outbox list");
    pthread_mutex_unlock(&q->rmu);
    return n;
}

static int sq_outbox_get(cs_store *st, const char *id, cs_outbox_cb cb, void *arg)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->xs[X_GET];
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int n = emit_outbox(st, s, cb, arg, "outbox get");
    pthread_mutex_unlock(&q->rmu);
    return n < 0 ? -1 : n ? 0 : 1;
}

static int sq_outbox_stats(cs_store *st, void (*cb)(const char *, const char *, int64_t, int64_t, void *), void *arg)
{
    struct sq *q = st->impl;
    pthread_mutex_lock(&q->rmu);
    sqlite3_stmt *s = q->xs[X_STATS];
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        cb((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
           sqlite3_column_int64(s, 2), sqlite3_column_int64(s, 3), arg);
    int ret = rc == SQLITE_DONE ? 0 : fail(st, q->r, "outbox stats");
    reset(s);
    pthread_mutex_unlock(&q->rmu);
    return ret;
}

static void sq_close(cs_store *st)
{
    if (!st) return;
    struct sq *q = st->impl;
    if (q) {
        for (int i = 0; i < W_COUNT; i++) sqlite3_finalize(q->ws[i]);
        for (int i = 0; i < R_COUNT; i++) sqlite3_finalize(q->rs[i]);
        for (int i = 0; i < X_COUNT; i++) sqlite3_finalize(q->xs[i]);
        for (int o = 0; o < CS_OBJ_COUNT; o++) {
            for (int i = 0; i < O_WCOUNT; i++) sqlite3_finalize(q->ow[o][i]);
            for (int i = 0; i < O_RCOUNT; i++) sqlite3_finalize(q->or[o][i]);
            for (int i = 0; i < CS_OBJ_MAXCOLS; i++) sqlite3_finalize(q->find[o][i]);
        }
        sqlite3_close(q->w);
        sqlite3_close(q->r);
        pthread_mutex_destroy(&q->rmu);
        free(q);
    }
    free(st);
}

static const struct cs_store_ops sqlite_ops = {
    .name = "sqlite",
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .offset_get = sq_off_get,
    .offset_set = sq_off_set,
    .counter_get = sq_cnt_get,
    .counter_set = sq_cnt_set,
    .lead_insert = sq_lead_ins,
    .audit_insert = sq_audit_ins,
    .lead_get = sq_lead_get,
    .lead_list = sq_lead_list,
    .lead_count_by_owner = sq_by_owner,
    .lead_load = sq_lead_load,
    .lead_update = sq_lead_update,
    .lead_open_counts = sq_lead_open_counts,
    .lead_sla_due = sq_lead_sla_due,
    .obj_list_tx = sq_obj_list_tx,
    .obj_find_tx = sq_obj_find_tx,
    .obj_upsert = sq_obj_upsert,
    .obj_insert = sq_obj_insert,
    .signal_set = sq_signal_set,
    .signals_clear = sq_signals_clear,
    .snapshot_put = sq_snapshot_put,
    .snapshot_get = sq_snapshot_get,
    .obj_get = sq_obj_get,
    .obj_list = sq_obj_list,
    .signal_list = sq_signal_list,
    .signal_history = sq_signal_history,
    .audit_list = sq_audit_list,
    .outbox_insert = sq_outbox_insert,
    .outbox_claim = sq_outbox_claim,
    .outbox_report = sq_outbox_report,
    .outbox_release_all = sq_outbox_release_all,
    .outbox_list = sq_outbox_list,
    .outbox_get = sq_outbox_get,
    .outbox_redrive = sq_outbox_redrive,
    .outbox_stats = sq_outbox_stats,
    .close = sq_close,
};

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    if (exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                 " name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))",
             err, errlen))
        return -1;
    for (int i = 0; i < cs_sqlite_migrations_count; i++) {
        const struct cs_migration *m = cs_migration_nth(cs_sqlite_migrations, cs_sqlite_migrations_count, i);
        sqlite3_stmt *s;
        sqlite3_prepare_v2(db, "SELECT 1 FROM schema_migrations WHERE version=?1", -1, &s, NULL);
        sqlite3_bind_int(s, 1, m->version);
        int have = sqlite3_step(s) == SQLITE_ROW;
        sqlite3_finalize(s);
        if (have) continue;
        char rec[256];
        snprintf(rec, sizeof rec, "INSERT INTO schema_migrations(version,name) VALUES(%d,'%s')", m->version,
                 m->name);
        if (exec(db, "BEGIN", err, errlen)) return -1;
        if (exec(db, m->sql, err, errlen) || exec(db, rec, err, errlen)) {
            exec(db, "ROLLBACK", err + strlen(err), 0);
            return -1;
        }
        if (exec(db, "COMMIT", err, errlen)) return -1;
        cs_info("store", "migration applied", "\"version\":%d,\"name\":\"%s\"", m->version, m->name);
    }
    return 0;
}

static sqlite3 *open_db(const char *path, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", err, errlen)) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

cs_store *cs_store_sqlite_open(const char *path, char *err, size_t errlen)
{
    cs_store *st = cs_calloc(1, sizeof *st);
    struct sq *q = cs_calloc(1, sizeof *q);
    st->ops = &sqlite_ops;
    st->impl = q;
    pthread_mutex_init(&q->rmu, NULL);
    if (!(q->w = open_db(path, err, errlen)) || migrate(q->w, err, errlen) ||
        !(q->r = open_db(path, err, errlen)))
        goto fail;
    sqlite3_wal_hook(q->w, wal_hook, q); /* replaces the default auto-checkpoint */
    for (int i = 0; i < W_COUNT; i++)
        if (sqlite3_prepare_v3(q->w, wsql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->ws[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "prepare: %s", sqlite3_errmsg(q->w));
            goto fail;
        }
    for (int i = 0; i < R_COUNT; i++)
        if (sqlite3_prepare_v3(q->r, rsql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->rs[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "prepare: %s", sqlite3_errmsg(q->r));
            goto fail;
        }
    for (int i = 0; i < X_COUNT; i++) {
        sqlite3 *db = i == X_INS ? q->w : q->r;
        if (sqlite3_prepare_v3(db, xsql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->xs[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "prepare outbox: %s", sqlite3_errmsg(db));
            goto fail;
        }
    }
    for (int o = 0; o < CS_OBJ_COUNT; o++) {
        const cs_objdef *d = &cs_objdefs[o];
        char *sql[O_WCOUNT + O_RCOUNT] = {cs_obj_sql_load(d, '?'), cs_obj_sql_save(d, '?', 0),
                                          cs_obj_sql_save(d, '?', 1), cs_obj_sql_list(d, '?'),
                                          cs_obj_sql_get(d, '?'), cs_obj_sql_list(d, '?')};
        int bad = 0;
        for (int i = 0; i < O_WCOUNT + O_RCOUNT; i++) {
            sqlite3 *db = i < O_WCOUNT ? q->w : q->r;
            sqlite3_stmt **slot = i < O_WCOUNT ? &q->ow[o][i] : &q->or[o][i - O_WCOUNT];
            if (!bad && sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
                snprintf(err, errlen, "prepare %s: %s", d->table, sqlite3_errmsg(db));
                bad = 1;
            }
            free(sql[i]);
        }
        if (bad) goto fail;
    }
    return st;
fail:
    sq_close(st);
    return NULL;
}
