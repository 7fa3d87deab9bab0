/*
 * pipeline — the worker loop: fetch → apply → commit with offsets.
 */
#include "pipeline/pipeline.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "metrics/catalog.h"
#include "routing/router.h"
#include "signals/abuse.h"
#include "signals/sigconfig.h"

/* One thread: an account worker owning some `events` partitions (p mod
 * nworkers == id), or the leads lane (topic `leads`, partition 0). Each has
 * its own store connection, so batches of different workers commit
 * independently (SQLite serialises them; PostgreSQL runs them side by
 * side). Per-partition state (offsets, signals engines, cooldowns) is only
 * ever touched by the partition's owner. */
struct cs_worker {
    cs_pipeline *pl;
    int          id;
    int          lane;
    cs_store    *st;
    int          own_store;   /* opened for this worker (closed at stop) */
    int         *parts;
    int          nparts;
    pthread_t    thread;
    int          started;
    int          resync;      /* a batch failed: re-read offsets from the store first */
    uint64_t     poison;
    cs_ruleset  *batch_rules; /* the set this batch evaluates (a reference) */
    /* The event failing now (poison isolation): after poison_attempts
     * failures it is dead-lettered and its partition moves on. */
    int          fail_part;
    int64_t      fail_off;
    long         fail_attempts;
    int64_t      fail_first_us;
    char         fail_msg[256];
    /* Offsets dead-lettered as rule_error (from the store at each resync):
     * never applied, also not when state is rebuilt from the log. */
    struct { int p; int64_t off; } *dead;
    size_t       ndead, capdead;
    /* Redrives applied in the current batch (the store sees them at commit). */
    int64_t     *snap_at;     /* per partition: offset of its last snapshot */
    char       (*redriven)[64];
    size_t       nredriven, capredriven;
    /* The lane: ids of recent lead-lane records (a retried request can
     * append one twice), so each counts once. */
    int64_t      next_sla_us;   /* the lane: next SLA sweep (wall clock) */
    int64_t      next_relay_us; /* the lane: next relay of derived events */
    uint64_t    *seen;        /* two tables of LANE_SLOTS (lane_seen) */
    size_t       seen_pos;
    unsigned     seen_gen;
};

#define LANE_SEEN 65536
#define SLA_SWEEP_US 1000000 /* the lane checks SLA deadlines once a second */
#define RELAY_US 250000      /* and relays derived events four times a second */

struct cs_pipeline {
    cs_bus          *bus;
    cs_store        *st;        /* worker 0's connection; the caller's */
    const cs_config *cfg;
    int              stop;
    int64_t         *next;      /* committed next offset per `events` partition */
    int64_t          lane_next; /* the leads lane's next offset */
    uint64_t         applied;
    int              paused;    /* maintenance: apply nothing until resumed */
    pthread_mutex_t  pause_mu;  /* paused workers sleep on pause_cv, not on the bus */
    pthread_cond_t   pause_cv;
    cs_sig_engine  **sig;       /* one signals engine per partition */
    cs_cooldown    **cooldown;  /* alert cooldowns, one table per partition */
    cs_abuse        *abuse;     /* signup velocity: the lane's */
    cs_cooldown     *abuse_cd;
    cs_ruleset      *rules;     /* current rule set (NULL: none); swapped under rules_mu */
    pthread_mutex_t  rules_mu;
    /* Workers hold it shared around each batch; replay holds it exclusive,
     * so a replay happens between batches of every worker. */
    pthread_rwlock_t batch_lock;
    cs_worker       *w;         /* nw account workers, then the lane */
    int              nw;
    /* Consumer-group membership (a bus with join: Kafka): the partitions
     * this process owns now; without join it owns them all. Changed only
     * under batch_lock held exclusive (between batches). */
    int             *owned;
    int              lane_owned;
    int              grouped;
    int              assigned;  /* the events group assigned at least once */
    int              dlq_topic; /* dead letters also to events.dlq (Kafka) */
    /* ---- dry run (cs_pipeline_start_dry: the backtest) ----
     * Applies into a scratch store up to fixed end offsets, then its
     * threads exit: no group offsets (bus commit), no consumer group
     * (join), no lag collectors, no metrics from its threads. */
    int              dry;
    int64_t         *dry_end;   /* per `events` partition */
    int64_t          dry_lane_end;
    int              dry_finished; /* threads that reached their ends */
    /* Dry run, order across topics (live, leads come long after the reps
     * and accounts they are routed among; a replay from 0 must keep that):
     * the lane applies a record appended at T only once every `events`
     * record appended before T is applied, and account workers apply a
     * record appended at T only once the lane has passed T. dry_gate_us:
     * append time of the lane's record at dry_gate_off (INT64_MAX at its
     * end), published by the controlling thread (cs_pipeline_dry_done), so
     * the lane and the workers only ever read forward (a Kafka reader
     * restarts when asked for an offset it has passed). */
    int64_t          dry_gate_us;
    int64_t          dry_gate_off;
};

static int64_t dry_gate(cs_pipeline *pl);

/* Dry run: the end a worker may read up to (the bus's end, capped by the
 * dry run's fixed end offsets). */
static int64_t avail_end(cs_pipeline *pl, const char *topic, int p)
{
    int64_t end = pl->bus->ops->end_offset(pl->bus, topic, p);
    if (!pl->dry) return end;
    int64_t cap = strcmp(topic, CS_TOPIC_LEADS) == 0 ? pl->dry_lane_end : pl->dry_end[p];
    return end < cap ? end : cap;
}

/* Ingest times of the leads routed in the current batch, observed as the
 * ingest -> routed latency once the batch commits (bounded: the rest of a
 * huge batch goes unmeasured, never unbounded memory). */
#define ROUTED_MAX 4096
static _Thread_local int64_t routed_ts[ROUTED_MAX];
static _Thread_local size_t nrouted;
/* Likewise for events whose signal changes were written (ingest -> signal). */
static _Thread_local int64_t signal_ts[ROUTED_MAX];
static _Thread_local size_t nsignal;

void cs_pipeline_note_routed(int64_t ingest_us)
{
    if (nrouted < ROUTED_MAX) routed_ts[nrouted++] = ingest_us;
}

void cs_pipeline_note_signal(int64_t ingest_us)
{
    if (nsignal < ROUTED_MAX) signal_ts[nsignal++] = ingest_us;
}

static _Thread_local char poison_msg[256];

void cs_pipeline_poison(const char *msg)
{
    snprintf(poison_msg, sizeof poison_msg, "%s", msg);
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- fault points (RELIABILITY.md T11) ----------------------------------
 * CRMSTREAM_FAULT=POINT:N kills the process with SIGKILL the Nth time a
 * worker reaches POINT: after_fetch (records read, nothing written),
 * mid_write (some of the batch written, not committed), after_commit (the
 * store committed, the log's group offsets and memory not yet updated),
 * after_all (the batch fully done). Only tests set it. */
static void fault_point(const char *point)
{
    static int parsed;
    static char name[32];
    static long at;
    static long hits;
    if (!__atomic_load_n(&parsed, __ATOMIC_ACQUIRE)) {
        const char *f = getenv("CRMSTREAM_FAULT");
        const char *c = f ? strchr(f, ':') : NULL;
        if (c && (size_t)(c - f) < sizeof name) {
            memcpy(name, f, (size_t)(c - f));
            at = strtol(c + 1, NULL, 10);
        }
        __atomic_store_n(&parsed, 1, __ATOMIC_RELEASE);
    }
    if (at <= 0 || strcmp(name, point) != 0) return;
    if (__atomic_add_fetch(&hits, 1, __ATOMIC_RELAXED) == at) {
        cs_warn("pipeline", "fault point reached: killing the process (CRMSTREAM_FAULT)", "\"point\":\"%s\"", point);
        raise(SIGKILL);
    }
}

/* ---- applying one record ------------------------------------------------ */

static int sweep_signals(cs_worker *w, int partition, int64_t offset);

static int is_dead(const cs_worker *w, int p, int64_t off)
{
    for (size_t i = 0; i < w->ndead; i++)
        if (w->dead[i].p == p && w->dead[i].off == off) return 1;
    return 0;
}

static void add_dead(cs_worker *w, int p, int64_t off)
{
    if (is_dead(w, p, off)) return;
    if (w->ndead == w->capdead) {
        w->capdead = w->capdead ? w->capdead * 2 : 16;
        w->dead = cs_realloc(w->dead, w->capdead * sizeof *w->dead);
    }
    w->dead[w->ndead].p = p;
    w->dead[w->ndead++].off = off;
}

struct status_ctx {
    char status[32];
};

static int on_status(const cs_row *row, void *arg)
{
    struct status_ctx *c = arg;
    int k = cs_obj_col(row->def, "status");
    snprintf(c->status, sizeof c->status, "%s", k >= 0 && row->vals[k] ? row->vals[k] : "");
    return 0;
}

/* A redriven record (`crmstream dlq redrive`): its first copy in the log
 * applies and marks the DLQ entry "redriven" in the batch's transaction;
 * any later copy of the same entry is a no-op. 1 apply, 0 skip, -1 error. */
static int redrive_first(cs_worker *w, const char *dlq_id)
{
    for (size_t i = 0; i < w->nredriven; i++)
        if (strcmp(w->redriven[i], dlq_id) == 0) return 0;
    struct status_ctx c = {""};
    if (w->st->ops->obj_get(w->st, CS_OBJ_DEAD_EVENT, dlq_id, on_status, &c) < 0) return -1;
    if (strcmp(c.status, "redriven") == 0) return 0;
    if (w->nredriven == w->capredriven) {
        w->capredriven = w->capredriven ? w->capredriven * 2 : 8;
        w->redriven = cs_realloc(w->redriven, w->capredriven * sizeof *w->redriven);
    }
    snprintf(w->redriven[w->nredriven++], 64, "%s", dlq_id);
    return 1;
}

int cs_pipeline_apply(cs_store *st, const cs_config *cfg, cs_sig_engine *sig, cs_pipeline_rules *rules, int partition,
                      const cs_rec *rec, uint64_t *poison)
{
    (void)cfg;
    cJSON *ev = cJSON_ParseWithLength(rec->value, rec->value_len);
    const char *type = ev ? str_of(ev, "type") : NULL;
    if (!type || !str_of(ev, "event_id")) {
        /* Ingest validated it, so this is corruption or a foreign writer:
         * never stall the partition on it — keep it in the DLQ and move on. */
        (*poison)++;
        cs_error("pipeline", "undecodable record dead-lettered", "\"partition\":%d,\"offset\":%lld", partition,
                 (long long)rec->offset);
        const char *eid = ev ? str_of(ev, "event_id") : NULL;
        int drc = cs_pipeline_dead_event(st, partition, rec, eid, "undecodable",
                                         ev ? "the record has no type or no event_id" : "the record is not JSON");
        cJSON_Delete(ev);
        return drc;
    }
    int rc = 0;
    /* Leads and signup velocity are the leads lane's (lane_apply). */
    if (cs_pipeline_admin_object(type) >= 0) rc = cs_pipeline_apply_admin(st, partition, rec, ev, poison);
    else if (strcmp(type, "AccountGrouped") == 0 || strcmp(type, "ContactIdentified") == 0)
        rc = cs_pipeline_apply_traits(st, partition, rec, ev, poison);
    if (rc == 0 && cs_pipeline_admin_object(type) < 0) rc = cs_pipeline_apply_signals(st, sig, rules, partition, rec, ev, 1);
    cJSON_Delete(ev);
    return rc;
}

/* An account worker's record: skip what is dead-lettered, dead-letter what
 * failed poison_attempts times, apply the rest. 0, -1 store error,
 * CS_PIPELINE_POISON (the batch rolls back and is retried). */
static int worker_apply(cs_worker *w, int p, const cs_rec *rec)
{
    cs_pipeline *pl = w->pl;
    if (is_dead(w, p, rec->offset)) return 0;
    if (w->fail_attempts >= pl->cfg->pipeline_poison_attempts && w->fail_part == p && w->fail_off == rec->offset) {
        char first[40], last[40], attempts[24];
        cs_fmt_time_ms(w->fail_first_us, first, sizeof first);
        cs_fmt_time_ms(cs_now_us(), last, sizeof last);
        snprintf(attempts, sizeof attempts, "%ld", w->fail_attempts);
        cJSON *ev = cJSON_ParseWithLength(rec->value, rec->value_len);
        const char *eid = ev ? str_of(ev, "event_id") : NULL;
        cs_error("pipeline", "poison event dead-lettered; the partition moves on",
                 "\"partition\":%d,\"offset\":%lld,\"attempts\":%ld", p, (long long)rec->offset, w->fail_attempts);
        int rc = cs_pipeline_dead_event_ex(w->st, p, rec, eid, "rule_error", w->fail_msg, attempts, first, last);
        cJSON_Delete(ev);
        if (rc == 0) {
            w->poison++;
            add_dead(w, p, rec->offset);
            w->fail_attempts = 0;
            w->fail_off = -1;
        }
        return rc;
    }
    /* A redriven copy applies once (redrive_first). */
    const char *mark = memmem(rec->value, rec->value_len, "\"_redrive\":\"", 12);
    char dlq_id[64] = "";
    if (mark) {
        cJSON *ev = cJSON_ParseWithLength(rec->value, rec->value_len);
        const char *id = ev ? str_of(ev, "_redrive") : NULL;
        snprintf(dlq_id, sizeof dlq_id, "%s", id ? id : "");
        cJSON_Delete(ev);
        if (*dlq_id) {
            int first = redrive_first(w, dlq_id);
            if (first < 0) return -1;
            if (first == 0) {
                cs_metric_inc(cs_m.pipeline_events, "result=\"redrive_duplicate\"", 1);
                return 0;
            }
        }
    }
    cs_pipeline_rules r = {w->batch_rules, pl->cooldown[p], NULL, NULL, pl->cfg};
    poison_msg[0] = 0;
    int rc = cs_pipeline_apply(w->st, pl->cfg, pl->sig[p], &r, p, rec, &w->poison);
    if (rc == CS_PIPELINE_POISON) {
        if (w->fail_part == p && w->fail_off == rec->offset) {
            w->fail_attempts++;
        } else {
            w->fail_part = p;
            w->fail_off = rec->offset;
            w->fail_attempts = 1;
            w->fail_first_us = cs_now_us();
        }
        snprintf(w->fail_msg, sizeof w->fail_msg, "%s", poison_msg[0] ? poison_msg : "the event failed in the pipeline");
        cs_warn("pipeline", "event failed; the batch is retried without its effects",
                "\"partition\":%d,\"offset\":%lld,\"attempt\":%ld,\"error\":\"%s\"", p, (long long)rec->offset,
                w->fail_attempts, w->fail_msg);
        return rc;
    }
    if (rc == 0) rc = sweep_signals(w, p, rec->offset);
    if (rc == 0 && *dlq_id) {
        cs_kv kv[] = {{"status", "redriven"}};
        char at[40];
        cs_fmt_time_ms(rec->append_us, at, sizeof at);
        cs_cause cause = {.event_id = NULL, .partition = p, .offset = rec->offset, .rule_id = "dlq.redrive", .at = at};
        if (w->st->ops->obj_upsert(w->st, CS_OBJ_DEAD_EVENT, dlq_id, kv, 1, &cause) < 0) return -1;
    }
    return rc;
}

/* ---- rebuilding in-memory state from the log ---------------------------- */

struct rebuild_ctx {
    cs_worker *w;
    int        partition;
    int64_t    upto;
    char     (*seen)[64];   /* redrive ids met in this rebuild */
    size_t     nseen, capseen;
};

static int on_rebuild(const cs_rec *rec, void *arg)
{
    struct rebuild_ctx *c = arg;
    if (rec->offset >= c->upto) return 1;
    if (is_dead(c->w, c->partition, rec->offset)) return 0;
    cJSON *ev = cJSON_ParseWithLength(rec->value, rec->value_len);
    const char *type = ev ? str_of(ev, "type") : NULL;
    const char *rd = ev ? str_of(ev, "_redrive") : NULL;
    int skip = 0;
    if (rd) { /* the first copy of a redrive applied; later ones did not */
        for (size_t i = 0; i < c->nseen && !skip; i++) skip = strcmp(c->seen[i], rd) == 0;
        if (!skip) {
            if (c->nseen == c->capseen) {
                c->capseen = c->capseen ? c->capseen * 2 : 8;
                c->seen = cs_realloc(c->seen, c->capseen * sizeof *c->seen);
            }
            snprintf(c->seen[c->nseen++], 64, "%s", rd);
        }
    }
    cs_sig_engine *e = c->w->pl->sig[c->partition];
    if (!skip && type && cs_pipeline_admin_object(type) < 0)
        cs_pipeline_apply_signals(c->w->st, e, NULL, c->partition, rec, ev, 0);
    if (cs_sig_sweep_due(e)) { /* as sweep_signals does, writing nothing */
        cs_sig_changes ch;
        cs_sig_changes_init(&ch);
        while (cs_sig_sweep(e, 4096, &ch) > 0) cs_sig_changes_reset(&ch);
        cs_sig_changes_free(&ch);
    }
    cJSON_Delete(ev);
    return 0;
}

struct dead_ctx {
    cs_worker *w;
    int64_t    last;
};

static int on_dead_row(const cs_row *row, void *arg)
{
    struct dead_ctx *c = arg;
    c->last = row->seq;
    int k = cs_obj_col(row->def, "id");
    int p;
    long long off;
    if (k >= 0 && row->vals[k] && sscanf(row->vals[k], "dlq_%d_%lld", &p, &off) == 2) add_dead(c->w, p, off);
    return 0;
}

/* The rule_error entries of the DLQ: events never applied. */
static int load_dead(cs_worker *w)
{
    w->ndead = 0;
    cs_kv f[] = {{"reason", "rule_error"}};
    struct dead_ctx c = {w, 0};
    for (;;) {
        int64_t before = c.last;
        int n = w->st->ops->obj_list(w->st, CS_OBJ_DEAD_EVENT, c.last, 1000, f, 1, on_dead_row, &c);
        if (n < 0) return -1;
        if (n == 0 || c.last == before) return 0;
    }
}

/* Signals state is in memory: rebuild the worker's partitions' engines from
 * the log up to the committed offsets, writing nothing (the store already
 * holds what those events caused). At start, after a rolled-back batch
 * (whose events the engine had counted) and after a replay. */
static int rebuild_worker(cs_worker *w)
{
    cs_pipeline *pl = w->pl;
    char err[256];
    cs_sig_config sc;
    cs_sig_config_from(pl->cfg, &sc);
    int64_t t0 = cs_mono_us(), events = 0;
    int restored = 0;
    if (load_dead(w)) return -1;
    for (int i = 0; i < w->nparts; i++) {
        int p = w->parts[i];
        cs_sig_engine_free(pl->sig[p]);
        pl->sig[p] = NULL;
        if (!pl->owned[p]) continue; /* another member's: no state here */
        int64_t upto = __atomic_load_n(&pl->next[p], __ATOMIC_RELAXED);
        /* The partition's last snapshot (committed with the offset it
         * reflects), then the log from there; else the log from its start. */
        int64_t snap_off = 0, from = -1;
        void *data = NULL;
        size_t len = 0;
        int g = w->st->ops->snapshot_get ? w->st->ops->snapshot_get(w->st, CS_SNAPSHOT_SIGNALS, p, &snap_off, &data, &len)
                                         : 1;
        if (g < 0) return -1;
        if (g == 0 && snap_off <= upto) {
            int rc = 0;
            pl->sig[p] = cs_sig_restore(&sc, data, len, &rc, err, sizeof err);
            if (pl->sig[p]) {
                from = snap_off;
                restored++;
            } else {
                cs_warn("pipeline", "signals snapshot not usable: rebuilding from the log", "\"partition\":%d,\"error\":\"%s\"",
                        p, err);
            }
        }
        free(data);
        w->snap_at[p] = from >= 0 ? from : 0;
        if (from >= 0) goto replay;
        pl->sig[p] = cs_sig_engine_new(&sc, err, sizeof err);
        if (!pl->sig[p]) {
            cs_error("pipeline", "cannot create a signals engine", "\"error\":\"%s\"", err);
            return -1;
        }
        from = pl->bus->ops->start_offset ? pl->bus->ops->start_offset(pl->bus, CS_TOPIC_EVENTS, p) : 0;
        if (from > 0)
            cs_warn("pipeline", "signals rebuilt from the oldest retained offset: earlier events were deleted by retention",
                    "\"partition\":%d,\"from\":%lld", p, (long long)from);
    replay:;
        struct rebuild_ctx c = {w, p, upto, NULL, 0, 0};
        while (from < upto) {
            int n = pl->bus->ops->fetch(pl->bus, CS_TOPIC_EVENTS, p, from, 4096, on_rebuild, &c);
            if (n <= 0) break;
            from += n;
            events += n;
        }
        free(c.seen);
    }
    if (events || restored)
        cs_info("pipeline", "signals state rebuilt", "\"worker\":%d,\"snapshots\":%d,\"events_replayed\":%lld,\"ms\":%.1f",
                w->id, restored, (long long)events, (double)(cs_mono_us() - t0) / 1000.0);
    return 0;
}

/* After a failed batch the store is the authority on where we are: a COMMIT
 * whose answer was lost (connection dropped) may have been applied, and
 * re-applying its events would flip fields back and forth in the audit. */
static int resync_worker(cs_worker *w)
{
    cs_pipeline *pl = w->pl;
    if (w->lane) {
        int64_t v;
        if (w->st->ops->offset_get(w->st, CS_CONSUMER_PIPELINE, CS_TOPIC_LEADS, 0, &v)) return -1;
        __atomic_store_n(&pl->lane_next, v, __ATOMIC_RELAXED);
    } else {
        for (int i = 0; i < w->nparts; i++) {
            if (!pl->owned[w->parts[i]]) continue;
            int64_t v;
            if (w->st->ops->offset_get(w->st, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, w->parts[i], &v)) return -1;
            __atomic_store_n(&pl->next[w->parts[i]], v, __ATOMIC_RELAXED);
        }
    }
    int rc = w->lane ? cs_pipeline_lane_rebuild(w) : rebuild_worker(w);
    if (rc == 0) w->resync = 0;
    return rc;
}

/* Time-driven signals (silence, renewal dates coming near) for accounts
 * that sent nothing: when an event moves the partition's watermark into a
 * new day, every account of the partition is re-evaluated right after that
 * event, inside its batch's transaction. At a point of the log, not of the
 * batching, so the written signals are the same whatever the batch sizes,
 * the worker count, or a crash and rebuild (which sweeps at the same
 * records, writing nothing). */
static int sweep_signals(cs_worker *w, int partition, int64_t offset)
{
    cs_pipeline *pl = w->pl;
    cs_sig_engine *e = pl->sig[partition];
    if (!e || cs_sig_sweep_due(e) == 0) return 0;
    cs_sig_changes ch;
    cs_sig_changes_init(&ch);
    while (cs_sig_sweep(e, 4096, &ch) > 0) {
    }
    char id[64];
    snprintf(id, sizeof id, "sweep-%d-%lld", partition, (long long)offset);
    int rc = cs_pipeline_write_signal_changes(w->st, &ch, id, partition, offset);
    /* Rules see sweep changes too (silence is a signal): once per account. */
    cs_pipeline_rules r = {w->batch_rules, pl->cooldown[partition], NULL, NULL, pl->cfg};
    for (size_t i = 0; rc == 0 && i < ch.n; i++) {
        int first = 1;
        for (size_t k = 0; k < i && first; k++) first = strcmp(ch.v[k].account_id, ch.v[i].account_id) != 0;
        if (first)
            rc = cs_pipeline_apply_rules(w->st, &r, e, partition, NULL, NULL, ch.v[i].account_id, &ch, ch.v[i].at_us, id);
    }
    cs_sig_changes_free(&ch);
    return rc < 0 ? -1 : 0;
}

/* ---- the leads lane -------------------------------------------------------
 * Topic `leads`, one partition, one owner: leads (routing needs the global
 * rotation and rep load) and signup velocity (per email domain, IP, device
 * across all accounts), in ingest order whatever the number of workers. */

/* Two generations of an open-addressing set of id hashes: a lookup checks
 * both, an insert goes to the current one, and when that holds LANE_SEEN
 * ids it becomes the previous one. So the last LANE_SEEN..2*LANE_SEEN ids
 * are remembered, in O(1), deterministically (a rebuild sees the same). */
#define LANE_SLOTS (2 * LANE_SEEN)

static int seen_in(const uint64_t *t, uint64_t h)
{
    for (size_t i = h & (LANE_SLOTS - 1);; i = (i + 1) & (LANE_SLOTS - 1)) {
        if (t[i] == h) return 1;
        if (t[i] == 0) return 0;
    }
}

static int lane_seen(cs_worker *w, const char *event_id)
{
    size_t n = strlen(event_id);
    uint64_t h = (uint64_t)cs_murmur2(event_id, n) | ((uint64_t)cs_crc32c(0, event_id, n) << 32);
    if (h == 0) h = 1;
    uint64_t *cur = w->seen + (w->seen_gen & 1) * LANE_SLOTS, *prev = w->seen + ((w->seen_gen + 1) & 1) * LANE_SLOTS;
    if (seen_in(cur, h) || seen_in(prev, h)) return 1;
    if (w->seen_pos == LANE_SEEN) { /* the current generation is full */
        w->seen_gen++;
        w->seen_pos = 0;
        cur = prev;
        memset(cur, 0, LANE_SLOTS * sizeof *cur);
    }
    size_t i = h & (LANE_SLOTS - 1);
    while (cur[i]) i = (i + 1) & (LANE_SLOTS - 1);
    cur[i] = h;
    w->seen_pos++;
    return 0;
}

static int lane_apply(cs_worker *w, const cs_rec *rec, int write)
{
    cs_pipeline *pl = w->pl;
    cJSON *ev = cJSON_ParseWithLength(rec->value, rec->value_len);
    const char *type = ev ? str_of(ev, "type") : NULL, *eid = ev ? str_of(ev, "event_id") : NULL;
    int rc = 0;
    if (!type || !eid) {
        /* The same bytes are in `events`, where the account worker
         * dead-letters them; here they are only skipped. */
        cJSON_Delete(ev);
        return 0;
    }
    if (lane_seen(w, eid)) {
        cJSON_Delete(ev);
        return 0;
    }
    if (cs_pipeline_admin_object(type) >= 0) { /* LeadAccepted (POST /api/v1/leads/{id}/accept) */
        rc = write ? cs_pipeline_apply_admin(w->st, 0, rec, ev, &w->poison) : 0;
        cJSON_Delete(ev);
        return rc;
    }
    /* The rules in force choose the routing policy (a matching rule's
     * route_lead action), else the config's routing.* policy. */
    cs_pipeline_rules r = {w->batch_rules, NULL, pl->abuse, pl->abuse_cd, pl->cfg};
    cs_lead_ctx lc = {&r};
    if (write && strcmp(type, "LeadCreated") == 0) rc = cs_pipeline_apply_lead_ctx(w->st, pl->cfg, 0, rec, ev, &lc);
    if (rc == 0) rc = cs_pipeline_apply_abuse(w->st, &r, 0, rec, ev, write);
    cJSON_Delete(ev);
    return rc;
}

struct lane_rebuild_ctx {
    cs_worker *w;
    int64_t    upto;
};

static int on_lane_rebuild(const cs_rec *rec, void *arg)
{
    struct lane_rebuild_ctx *c = arg;
    if (rec->offset >= c->upto) return 1;
    lane_apply(c->w, rec, 0);
    return 0;
}

int cs_pipeline_lane_rebuild(cs_worker *w)
{
    cs_pipeline *pl = w->pl;
    cs_abuse_config ac;
    cs_abuse_config_from(pl->cfg, &ac);
    cs_abuse_free(pl->abuse);
    cs_cooldown_free(pl->abuse_cd);
    pl->abuse = cs_abuse_new(&ac);
    pl->abuse_cd = cs_cooldown_new(65536);
    memset(w->seen, 0, 2 * LANE_SLOTS * sizeof *w->seen);
    w->seen_pos = 0;
    w->seen_gen = 0;
    int64_t from = pl->bus->ops->start_offset ? pl->bus->ops->start_offset(pl->bus, CS_TOPIC_LEADS, 0) : 0;
    int64_t upto = __atomic_load_n(&pl->lane_next, __ATOMIC_RELAXED);
    struct lane_rebuild_ctx c = {w, upto};
    while (from < upto) {
        int n = pl->bus->ops->fetch(pl->bus, CS_TOPIC_LEADS, 0, from, 4096, on_lane_rebuild, &c);
        if (n <= 0) break;
        from += n;
    }
    return 0;
}

/* ---- batches --------------------------------------------------------------- */

struct fetch_ctx {
    cs_worker *w;
    int        partition;
    int64_t    next;
    int        failed;
    size_t     n;
    size_t     batch_n;     /* applied earlier in this batch (other partitions) */
    int64_t    deadline_us; /* stop adding to the batch after this (monotonic) */
};

static int on_rec(const cs_rec *rec, void *arg)
{
    struct fetch_ctx *c = arg;
    if (cs_mono_us() > c->deadline_us && (c->n || c->batch_n)) return 1; /* pipeline.batch_max_ms */
    cs_pipeline *dpl = c->w->pl;
    if (dpl->dry) { /* dry run: the cross-topic order (struct cs_pipeline); fetch limits keep it, this is a net */
        if (c->w->lane ? c->n >= 1 : rec->append_us >= __atomic_load_n(&dpl->dry_gate_us, __ATOMIC_ACQUIRE)) return 1;
    }
    if (c->n++ == 0) fault_point("after_fetch");
    else if (c->n == 2) fault_point("mid_write");
    int rc = c->w->lane ? lane_apply(c->w, rec, 1) : worker_apply(c->w, c->partition, rec);
    if (rc) {
        c->failed = rc;
        return 1;
    }
    c->next = rec->offset + 1;
    return 0;
}

/* Every pipeline.snapshot_every_events events of a partition, its signals
 * engine goes into the store in the batch's transaction, with the offset
 * it reflects: a restart (or a consumer-group takeover, or a poison retry)
 * restores it and replays only the log after it. */
static int take_snapshot(cs_worker *w, int p, int64_t next)
{
    cs_pipeline *pl = w->pl;
    long every = pl->cfg->pipeline_snapshot_every;
    if (every <= 0 || !w->st->ops->snapshot_put || !pl->sig[p] || next - w->snap_at[p] < every) return 0;
    cs_buf b;
    cs_buf_init(&b);
    int64_t t0 = cs_mono_us();
    cs_sig_snapshot(pl->sig[p], &b);
    int rc = w->st->ops->snapshot_put(w->st, CS_SNAPSHOT_SIGNALS, p, next, b.data, b.len);
    if (rc == 0) {
        w->snap_at[p] = next; /* a rollback re-reads it through resync */
        cs_metric_inc(cs_m.snapshot_bytes, NULL, b.len);
        cs_hist_observe(cs_metric_series(cs_m.snapshot_seconds, NULL), (double)(cs_mono_us() - t0) / 1e6);
    }
    cs_buf_free(&b);
    return rc;
}

/* Commit the batch; observe the latencies its leads and signals had. */
static void observe_commit(int64_t t0)
{
    int64_t now = cs_now_us();
    cs_hist_observe(cs_metric_series(cs_m.store_tx_seconds, NULL), (double)(cs_mono_us() - t0) / 1e6);
    cs_series *routed = cs_metric_series(cs_m.e2e_seconds, "stage=\"routed\"");
    for (size_t i = 0; i < nrouted; i++) cs_hist_observe(routed, (double)(now - routed_ts[i]) / 1e6);
    cs_series *sigs = cs_metric_series(cs_m.e2e_seconds, "stage=\"signal\"");
    for (size_t i = 0; i < nsignal; i++) cs_hist_observe(sigs, (double)(now - signal_ts[i]) / 1e6);
}

/* One batch over the worker's partitions (or the lane). Returns records
 * applied, 0 when idle, -1 on a store error or a poison event (rolled
 * back; offsets unchanged; the caller retries). */
static int run_batch_tx(cs_worker *w, int64_t t0)
{
    cs_pipeline *pl = w->pl;
    cs_store *st = w->st;
    uint64_t poison0 = w->poison;
    int n_parts = w->lane ? 1 : w->nparts;
    const char *topic = w->lane ? CS_TOPIC_LEADS : CS_TOPIC_EVENTS;
    int64_t next[n_parts > 0 ? n_parts : 1];
    for (int i = 0; i < n_parts; i++)
        next[i] = w->lane ? pl->lane_next : __atomic_load_n(&pl->next[w->parts[i]], __ATOMIC_RELAXED);
    w->nredriven = 0;
    if (st->ops->begin(st)) return -1;
    size_t budget = (size_t)pl->cfg->pipeline_batch_max, total = 0;
    int failed = 0;
    for (int i = 0; i < n_parts && total < budget; i++) {
        int p = w->lane ? 0 : w->parts[i];
        if (w->lane ? !pl->lane_owned : !pl->owned[p]) continue;
        if (pl->grouped && pl->bus->ops->end_offset(pl->bus, topic, p) > next[i]) {
            /* Fence (bus.h join): the stored offset must still be where this
             * member left it; PostgreSQL locks the row until commit. Else
             * another member took the partition over: start again from the
             * store. */
            int64_t stored;
            if (st->ops->offset_get(st, CS_CONSUMER_PIPELINE, topic, p, &stored)) goto fail;
            if (stored != next[i]) {
                cs_warn("pipeline", "partition moved on in the store: another member processed it; resyncing",
                        "\"topic\":\"%s\",\"partition\":%d,\"ours\":%lld,\"stored\":%lld", topic, p,
                        (long long)next[i], (long long)stored);
                goto fail;
            }
        }
        struct fetch_ctx c = {w, p, next[i], 0, 0, total, t0 + pl->cfg->pipeline_batch_max_ms * 1000};
        size_t max = budget - total;
        if (pl->dry) { /* dry run: never past its end offsets, nor past the cross-topic gate */
            int64_t left = avail_end(pl, topic, p) - next[i];
            if (w->lane) {
                left = left > 1 ? 1 : left; /* one lead at a time (has_work checked its barrier) */
            } else {
                int64_t gate = __atomic_load_n(&pl->dry_gate_us, __ATOMIC_ACQUIRE), upto = avail_end(pl, topic, p);
                if (gate == INT64_MIN) upto = next[i];
                else if (gate != INT64_MAX && pl->bus->ops->offset_for_time) {
                    int64_t o = pl->bus->ops->offset_for_time(pl->bus, topic, p, gate);
                    if (o >= 0 && o < upto) upto = o;
                }
                if (upto - next[i] < left) left = upto - next[i];
            }
            if (left <= 0) continue;
            if ((uint64_t)left < max) max = (size_t)left;
        }
        int n = pl->bus->ops->fetch(pl->bus, topic, p, next[i], max, on_rec, &c);
        if (n < 0 || c.failed) {
            failed = c.failed ? c.failed : -1;
            goto fail;
        }
        if (c.next == next[i]) continue;
        total += (size_t)(c.next - next[i]);
        next[i] = c.next;
        if (!w->lane && take_snapshot(w, p, next[i])) goto fail;
        if (st->ops->offset_set(st, CS_CONSUMER_PIPELINE, topic, p, next[i])) goto fail;
    }
    if (w->lane && !pl->dry && cs_clock_us() >= w->next_sla_us) { /* dry run: none (wall clock) */
        /* Routed leads not accepted in time: re-routed, alert raised
         * (src/routing), once a second, in this transaction. */
        if (cs_routing_sla_sweep(st, pl->cfg, cs_clock_us(), 100, NULL) < 0) goto fail;
        w->next_sla_us = cs_clock_us() + SLA_SWEEP_US;
    }
    if (st->ops->commit(st)) goto fail;
    fault_point("after_commit");
    observe_commit(t0);
    uint64_t dead = w->poison - poison0;
    /* Events count once: the lane's records are copies of events. */
    if (w->lane) cs_metric_inc(cs_m.lane_records, NULL, total);
    else cs_metric_inc(cs_m.pipeline_events, "result=\"applied\"", total - dead);
    if (dead) cs_metric_inc(cs_m.pipeline_events, "result=\"poison\"", dead);
    for (int i = 0; i < n_parts; i++) {
        int p = w->lane ? 0 : w->parts[i];
        int64_t old = w->lane ? pl->lane_next : pl->next[p];
        /* The store's offsets are authoritative; the bus's group offsets
         * let retention know what the pipeline consumed (and feed lag
         * monitoring). Best effort: a failure only delays retention. */
        if (next[i] != old && pl->bus->ops->commit && !pl->dry) pl->bus->ops->commit(pl->bus, CS_CONSUMER_PIPELINE, topic, p, next[i]);
        if (w->lane) __atomic_store_n(&pl->lane_next, next[i], __ATOMIC_RELAXED);
        else __atomic_store_n(&pl->next[p], next[i], __ATOMIC_RELEASE);
    }
    if (!w->lane) __atomic_add_fetch(&pl->applied, total, __ATOMIC_RELAXED);
    fault_point("after_all");
    return (int)total;
fail:
    st->ops->rollback(st);
    w->poison = poison0; /* counted again on retry */
    w->resync = 1;
    return failed == CS_PIPELINE_POISON ? CS_PIPELINE_POISON : -1;
}

static int has_work(cs_worker *w)
{
    cs_pipeline *pl = w->pl;
    if (w->lane && pl->dry) { /* one record at a time, once the events before it are applied */
        if (avail_end(pl, CS_TOPIC_LEADS, 0) <= pl->lane_next) return 0;
        if (__atomic_load_n(&pl->dry_gate_off, __ATOMIC_ACQUIRE) != pl->lane_next) return 0; /* not published yet */
        int64_t t = __atomic_load_n(&pl->dry_gate_us, __ATOMIC_ACQUIRE);
        if (t == INT64_MIN) return 0;
        for (int p = 0; t != INT64_MAX && pl->bus->ops->offset_for_time && p < pl->bus->partitions; p++) {
            int64_t need = pl->bus->ops->offset_for_time(pl->bus, CS_TOPIC_EVENTS, p, t);
            if (need < 0 || need > pl->dry_end[p]) need = pl->dry_end[p];
            if (__atomic_load_n(&pl->next[p], __ATOMIC_ACQUIRE) < need) return 0;
        }
        return 1;
    }
    if (w->lane) /* dry run: no SLA sweeps (wall-clock effects, not the log's) */
        return pl->lane_owned && (avail_end(pl, CS_TOPIC_LEADS, 0) > pl->lane_next ||
                                  (!pl->dry && cs_clock_us() >= w->next_sla_us));
    for (int i = 0; i < w->nparts; i++)
        if (pl->owned[w->parts[i]] &&
            avail_end(pl, CS_TOPIC_EVENTS, w->parts[i]) > pl->next[w->parts[i]])
            return 1;
    return 0;
}

static int run_batch(cs_worker *w)
{
    cs_pipeline *pl = w->pl;
    if (w->resync && resync_worker(w)) return -1;
    /* A dry run never relays: that would append its derived events to the real log. */
    if (w->lane && pl->lane_owned && !pl->dry && cs_clock_us() >= w->next_relay_us) {
        /* Derived events (emit_event) from the outbox to the log: the lane
         * holds the bus; at least once, a few times a second. */
        if (cs_pipeline_relay_derived(w->st, pl->bus, cs_clock_us() / 1000, 256) < 0) return -1;
        if (pl->dlq_topic && cs_pipeline_relay_dlq(w->st, pl->bus, cs_clock_us() / 1000, 256) < 0) return -1;
        w->next_relay_us = cs_clock_us() + RELAY_US;
    }
    if (!has_work(w)) return 0;
    int64_t t0 = cs_mono_us();
    nrouted = 0;
    nsignal = 0;
    pthread_mutex_lock(&pl->rules_mu);
    w->batch_rules = pl->rules ? cs_ruleset_ref(pl->rules) : NULL;
    pthread_mutex_unlock(&pl->rules_mu);
    int rc = run_batch_tx(w, t0);
    cs_ruleset_unref(w->batch_rules);
    w->batch_rules = NULL;
    return rc;
}

int cs_pipeline_replay(cs_pipeline *pl, const cs_replay_req *req, cs_replay_result *res, int *usage, char *err,
                       size_t errlen)
{
    pthread_rwlock_wrlock(&pl->batch_lock);
    int rc = cs_pipeline_replay_move(pl->bus, pl->st, req, res, usage, err, errlen);
    /* The store is the authority: take its offsets now (so lag shows the
     * events to re-apply at once); each worker rebuilds its signals state
     * up to them before its next batch. */
    for (int i = 0; rc == 0 && i < pl->nw; i++) {
        cs_worker *w = &pl->w[i];
        for (int k = 0; k < w->nparts; k++) {
            int64_t v;
            if (pl->st->ops->offset_get(pl->st, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, w->parts[k], &v) == 0)
                __atomic_store_n(&pl->next[w->parts[k]], v, __ATOMIC_RELAXED);
        }
        w->resync = 1;
    }
    pthread_rwlock_unlock(&pl->batch_lock);
    return rc;
}

static void wake_paused(cs_pipeline *pl)
{
    pthread_mutex_lock(&pl->pause_mu);
    pthread_cond_broadcast(&pl->pause_cv);
    pthread_mutex_unlock(&pl->pause_mu);
}

/* Wait ms, or less when paused or stopped. */
static void linger(cs_pipeline *pl, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&pl->pause_mu);
    while (!__atomic_load_n(&pl->stop, __ATOMIC_ACQUIRE) && !__atomic_load_n(&pl->paused, __ATOMIC_ACQUIRE))
        if (pthread_cond_timedwait(&pl->pause_cv, &pl->pause_mu, &ts) == ETIMEDOUT) break;
    pthread_mutex_unlock(&pl->pause_mu);
}

static void *worker(void *arg)
{
    cs_worker *w = arg;
    cs_pipeline *pl = w->pl;
    uint64_t seen = 0;
    int backoff_ms = 10;
    if (pl->dry) cs_metrics_mute_thread(1); /* a dry run shows in no metric */
    pthread_setname_np(pthread_self(), w->lane ? "cs-leads-lane" : "cs-pipeline");
    /* Account workers yield the CPU to ingest (acknowledgements) and to the
     * leads lane (routing): pipeline.nice. Raising one's own nice value
     * needs no privilege; a failure is logged, never fatal. */
    if (!w->lane && !pl->dry && pl->cfg->pipeline_sched_idle) {
        /* SCHED_IDLE would also make the thread's I/O idle-class (the kernel
         * derives it), and the log's fdatasync can wait on the store's
         * writes through the file system's journal: keep I/O best-effort. */
        struct sched_param sp = {0};
        if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0 ||
            syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, (int)gettid(), (2 << 13) | 4 /* BE, 4 */) != 0)
            cs_warn("pipeline", "cannot set the worker's scheduling class (pipeline.sched_idle)", "\"error\":\"%s\"",
                    strerror(errno));
    } else if (!w->lane && !pl->dry && pl->cfg->pipeline_nice > 0 &&
               setpriority(PRIO_PROCESS, (id_t)gettid(), (int)pl->cfg->pipeline_nice) != 0) {
        cs_warn("pipeline", "cannot lower the worker's priority (pipeline.nice)", "\"error\":\"%s\"", strerror(errno));
    }
    while (!__atomic_load_n(&pl->stop, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&pl->paused, __ATOMIC_ACQUIRE)) {
            /* Not on the bus: appends would wake it for nothing. */
            pthread_mutex_lock(&pl->pause_mu);
            if (__atomic_load_n(&pl->paused, __ATOMIC_ACQUIRE) && !__atomic_load_n(&pl->stop, __ATOMIC_ACQUIRE))
                pthread_cond_wait(&pl->pause_cv, &pl->pause_mu);
            pthread_mutex_unlock(&pl->pause_mu);
            continue;
        }
        pthread_rwlock_rdlock(&pl->batch_lock);
        int n = run_batch(w);
        pthread_rwlock_unlock(&pl->batch_lock);
        if (n > 0) {
            backoff_ms = 10;
            /* Caught up (the batch was not full): an account worker lets
             * events gather for pipeline.linger_ms before its next batch,
             * so a trickle costs one transaction per linger, not per event.
             * The leads lane never waits (routing latency). */
            if (!w->lane && !pl->dry && pl->cfg->pipeline_linger_ms > 0 && n < pl->cfg->pipeline_batch_max)
                linger(pl, pl->cfg->pipeline_linger_ms);
            continue;
        }
        if (n == 0 && pl->dry) { /* dry run: done at its end offsets, else waiting on the other topic */
            int done = 1;
            if (w->lane) done = pl->lane_next >= pl->dry_lane_end;
            for (int i = 0; !w->lane && i < w->nparts; i++)
                done &= pl->next[w->parts[i]] >= pl->dry_end[w->parts[i]];
            if (done) {
                __atomic_add_fetch(&pl->dry_finished, 1, __ATOMIC_ACQ_REL);
                break;
            }
            usleep(200);
            continue;
        }
        if (n == CS_PIPELINE_POISON) continue; /* retried at once, without its effects */
        if (n < 0) {
            /* Retriable or not, the batch is retried from the stored offsets:
             * skipping would lose effects; the log says which kind it was. */
            cs_warn("pipeline", "batch rolled back; retrying", "\"worker\":%d,\"backoff_ms\":%d,\"retriable\":%s,\"error\":\"%s\"",
                    w->id, backoff_ms, w->st->retriable ? "true" : "false", w->st->errmsg);
            usleep((useconds_t)backoff_ms * 1000);
            backoff_ms = backoff_ms < 2000 ? backoff_ms * 2 : 2000;
            continue;
        }
        seen = pl->bus->ops->wait(pl->bus, seen, 200);
    }
    return NULL;
}

/* Consumer lag per partition, under the names people already chart
 * (kafka_exporter's), and its sum. */
static void collect_lag(cs_buf *out, void *arg)
{
    cs_pipeline *pl = arg;
    char l[128];
    for (int p = 0; p < pl->bus->partitions; p++) {
        if (!__atomic_load_n(&pl->owned[p], __ATOMIC_RELAXED)) continue; /* the owning member reports it */
        int64_t lag = pl->bus->ops->end_offset(pl->bus, CS_TOPIC_EVENTS, p) - __atomic_load_n(&pl->next[p], __ATOMIC_RELAXED);
        snprintf(l, sizeof l, "consumergroup=\"%s\",topic=\"%s\",partition=\"%d\"", CS_CONSUMER_PIPELINE,
                 CS_TOPIC_EVENTS, p);
        cs_metrics_line(out, "kafka_consumergroup_lag", l, (double)lag);
    }
    if (!__atomic_load_n(&pl->lane_owned, __ATOMIC_RELAXED)) return;
    int64_t lag = pl->bus->ops->end_offset(pl->bus, CS_TOPIC_LEADS, 0) - __atomic_load_n(&pl->lane_next, __ATOMIC_RELAXED);
    snprintf(l, sizeof l, "consumergroup=\"%s\",topic=\"%s\",partition=\"0\"", CS_CONSUMER_PIPELINE, CS_TOPIC_LEADS);
    cs_metrics_line(out, "kafka_consumergroup_lag", l, (double)lag);
}

static void collect_lag_sum(cs_buf *out, void *arg)
{
    cs_pipeline *pl = arg;
    char l[96];
    int64_t lane = __atomic_load_n(&pl->lane_owned, __ATOMIC_RELAXED)
                       ? pl->bus->ops->end_offset(pl->bus, CS_TOPIC_LEADS, 0) - __atomic_load_n(&pl->lane_next, __ATOMIC_RELAXED)
                       : 0;
    snprintf(l, sizeof l, "consumergroup=\"%s\",topic=\"%s\"", CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS);
    cs_metrics_line(out, "crmstream_consumer_lag_records", l, (double)(cs_pipeline_lag(pl) - lane));
    snprintf(l, sizeof l, "consumergroup=\"%s\",topic=\"%s\"", CS_CONSUMER_PIPELINE, CS_TOPIC_LEADS);
    cs_metrics_line(out, "crmstream_consumer_lag_records", l, (double)lane);
}

static void free_workers(cs_pipeline *pl)
{
    for (int i = 0; pl->w && i <= pl->nw; i++) {
        cs_worker *w = &pl->w[i];
        if (w->own_store && w->st) w->st->ops->close(w->st);
        free(w->parts);
        free(w->dead);
        free(w->redriven);
        free(w->snap_at);
        free(w->seen);
    }
    free(pl->w);
    pl->w = NULL;
}

static void free_engines(cs_pipeline *pl)
{
    for (int p = 0; pl->sig && p < pl->bus->partitions; p++) cs_sig_engine_free(pl->sig[p]);
    for (int p = 0; pl->cooldown && p < pl->bus->partitions; p++) cs_cooldown_free(pl->cooldown[p]);
    free(pl->sig);
    free(pl->cooldown);
    cs_abuse_free(pl->abuse);
    cs_cooldown_free(pl->abuse_cd);
    cs_ruleset_unref(pl->rules);
    pthread_mutex_destroy(&pl->rules_mu);
    pthread_mutex_destroy(&pl->pause_mu);
    pthread_cond_destroy(&pl->pause_cv);
    pthread_rwlock_destroy(&pl->batch_lock);
}

int cs_pipeline_reload_rules(cs_pipeline *pl, char *err, size_t errlen)
{
    const char *path = pl->cfg->rules_path;
    cs_ruleset *rs = NULL;
    if (access(path, R_OK) == 0) {
        /* changed.<signal>: true when this event (or sweep) changed it. */
        static const char *const roots[] = {"event", "account", "lead", "contact", "signals", "changed", NULL};
        cs_rules_opts opts = {.roots = roots};
        rs = cs_rules_load_file(path, &opts, err, errlen);
        if (!rs) {
            if (pl->dry) return -1; /* a candidate file: the caller reports it */
            cs_metric_inc(cs_m.rules_reloads, "result=\"failed\"", 1);
            cs_error("rules", "rules not loaded: the previous rules keep running", "\"file\":\"%s\"", path);
            return -1;
        }
    }
    pthread_mutex_lock(&pl->rules_mu);
    cs_ruleset *old = pl->rules;
    pl->rules = rs;
    pthread_mutex_unlock(&pl->rules_mu);
    cs_ruleset_unref(old);
    if (pl->dry) return 0;
    cs_metric_inc(cs_m.rules_reloads, "result=\"ok\"", 1);
    cs_info("rules", rs ? "rules loaded" : "no rules file: no rules", "\"file\":\"%s\",\"rules\":%zu", path,
            rs ? cs_ruleset_count(rs) : (size_t)0);
    return 0;
}

size_t cs_pipeline_rule_count(cs_pipeline *pl)
{
    pthread_mutex_lock(&pl->rules_mu);
    size_t n = pl->rules ? cs_ruleset_count(pl->rules) : 0;
    pthread_mutex_unlock(&pl->rules_mu);
    return n;
}

/* Consumer-group changes (bus.h join): between batches (batch_lock held
 * exclusive, so an in-flight batch commits first, as the contract asks),
 * drop the state of partitions taken away and have their owners load the
 * new ones from the store's offsets. */
static void on_events_change(void *arg, const int *owned, int n)
{
    cs_pipeline *pl = arg;
    pthread_rwlock_wrlock(&pl->batch_lock);
    int P = pl->bus->partitions, gained = 0, lost = 0;
    for (int p = 0; p < P; p++) {
        int now = 0;
        for (int i = 0; i < n && !now; i++) now = owned[i] == p;
        if (now == pl->owned[p]) continue;
        __atomic_store_n(&pl->owned[p], now, __ATOMIC_RELAXED);
        cs_worker *w = &pl->w[p % pl->nw];
        if (now) {
            gained++;
            w->resync = 1;
        } else {
            lost++;
            cs_sig_engine_free(pl->sig[p]);
            pl->sig[p] = NULL;
        }
    }
    pthread_rwlock_unlock(&pl->batch_lock);
    __atomic_store_n(&pl->assigned, 1, __ATOMIC_RELEASE);
    cs_info("pipeline", "partitions assigned", "\"owned\":%d,\"gained\":%d,\"lost\":%d", n, gained, lost);
}

static void on_lane_change(void *arg, const int *owned, int n)
{
    (void)owned;
    cs_pipeline *pl = arg;
    pthread_rwlock_wrlock(&pl->batch_lock);
    int now = n > 0;
    if (now != pl->lane_owned) {
        __atomic_store_n(&pl->lane_owned, now, __ATOMIC_RELAXED);
        pl->w[pl->nw].resync = 1; /* gained: load offset and state; lost: nothing runs */
    }
    pthread_rwlock_unlock(&pl->batch_lock);
    cs_info("pipeline", now ? "leads lane assigned to this process" : "leads lane released", NULL);
}

int cs_pipeline_workers(const cs_config *cfg, int partitions)
{
    long n = cfg->pipeline_workers;
    int sqlite = !cfg->store || !*cfg->store || strncmp(cfg->store, "sqlite:", 7) == 0;
    if (n <= 0 && sqlite) {
        /* SQLite takes one writer at a time: a second worker's batch waits
         * for the first's lock and the leads lane's lead waits behind both
         * (bench-e2e on 2 vCPUs: routed p99 1.4-3.3 ms with one worker,
         * 2.8-7.3 ms with two; docs/decisions.md). Latency first. */
        n = 1;
    } else if (n <= 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? cpus : 1;
    }
    return (int)(n < partitions ? n : partitions);
}

static cs_pipeline *start(cs_bus *bus, cs_store *st, const cs_config *cfg, const int64_t *events_end,
                          int64_t leads_end, char *err, size_t errlen)
{
    cs_metrics_catalog_init();
    cs_pipeline *pl = cs_calloc(1, sizeof *pl);
    pl->bus = bus;
    pl->st = st;
    pl->cfg = cfg;
    if (events_end) { /* dry run */
        pl->dry = 1;
        pl->dry_end = cs_malloc((size_t)bus->partitions * sizeof *pl->dry_end);
        memcpy(pl->dry_end, events_end, (size_t)bus->partitions * sizeof *pl->dry_end);
        pl->dry_lane_end = leads_end;
    }
    pl->next = cs_calloc((size_t)bus->partitions, sizeof *pl->next);
    pl->sig = cs_calloc((size_t)bus->partitions, sizeof *pl->sig);
    pl->cooldown = cs_calloc((size_t)bus->partitions, sizeof *pl->cooldown);
    for (int p = 0; p < bus->partitions; p++) pl->cooldown[p] = cs_cooldown_new(65536);
    pthread_mutex_init(&pl->rules_mu, NULL);
    pthread_mutex_init(&pl->pause_mu, NULL);
    pthread_cond_init(&pl->pause_cv, NULL);
    pthread_rwlock_init(&pl->batch_lock, NULL);
    pl->nw = cs_pipeline_workers(cfg, bus->partitions);
    pl->owned = cs_calloc((size_t)bus->partitions, sizeof *pl->owned);
    pl->grouped = bus->ops->join != NULL && !pl->dry; /* a dry run owns every partition */
    for (int p = 0; p < bus->partitions && !pl->grouped; p++) pl->owned[p] = 1;
    pl->lane_owned = !pl->grouped;
    /* On Kafka the DLQ lives in Kafka too (`events.dlq`); the embedded bus
     * keeps dead letters in the store only. */
    pl->dlq_topic = strcmp(bus->ops->name, "kafka") == 0;
    cs_pipeline_dlq_topic(pl->dlq_topic);
    pl->w = cs_calloc((size_t)pl->nw + 1, sizeof *pl->w);
    if (cs_pipeline_reload_rules(pl, err, errlen) != 0) goto fail;
    for (int i = 0; i <= pl->nw; i++) {
        cs_worker *w = &pl->w[i];
        w->pl = pl;
        w->id = i;
        w->lane = i == pl->nw;
        w->fail_off = -1;
        if (i == 0) {
            w->st = st;
        } else {
            /* Each thread its own connection: one writer transaction each. */
            w->st = cs_store_open(cfg->store, cfg->data_dir, err, errlen);
            if (!w->st) goto fail;
            w->own_store = 1;
        }
        if (w->lane) {
            w->seen = cs_calloc(2 * LANE_SLOTS, sizeof *w->seen);
        } else {
            w->parts = cs_malloc((size_t)bus->partitions * sizeof *w->parts);
            w->snap_at = cs_calloc((size_t)bus->partitions, sizeof *w->snap_at);
            for (int p = i; p < bus->partitions; p += pl->nw) w->parts[w->nparts++] = p;
        }
    }
    for (int p = 0; p < bus->partitions; p++) {
        if (st->ops->offset_get(st, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, p, &pl->next[p])) {
            snprintf(err, errlen, "reading pipeline offsets: %s", st->errmsg);
            goto fail;
        }
        int64_t end = bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
        if (pl->next[p] > end) {
            snprintf(err, errlen,
                     "store offset %lld of partition %d is past the log end %lld: the log lost "
                     "acknowledged events or belongs to another store",
                     (long long)pl->next[p], p, (long long)end);
            goto fail;
        }
    }
    for (int i = 0; i <= pl->nw; i++)
        if (resync_worker(&pl->w[i]) != 0) {
            snprintf(err, errlen, "cannot rebuild the pipeline's state: %s", pl->w[i].st->errmsg);
            goto fail;
        }
    if (pl->lane_next > bus->ops->end_offset(bus, CS_TOPIC_LEADS, 0)) {
        snprintf(err, errlen, "store offset %lld of the leads lane is past the log end: the log lost acknowledged "
                 "events or belongs to another store", (long long)pl->lane_next);
        goto fail;
    }
    if (pl->dry) {
        pl->dry_gate_off = -1;
        dry_gate(pl);
    }
    for (int i = 0; i <= pl->nw; i++) {
        if (pthread_create(&pl->w[i].thread, NULL, worker, &pl->w[i]) != 0) {
            snprintf(err, errlen, "cannot start a pipeline thread");
            __atomic_store_n(&pl->stop, 1, __ATOMIC_RELEASE);
            wake_paused(pl);
            bus->ops->wakeup(bus);
            for (int k = 0; k < i; k++) pthread_join(pl->w[k].thread, NULL);
            goto fail;
        }
        pl->w[i].started = 1;
    }
    if (pl->grouped) {
        /* Kafka: the partitions come from the consumer group; until it
         * assigns, this process applies nothing. */
        if (bus->ops->join(bus, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, on_events_change, pl) != 0 ||
            bus->ops->join(bus, CS_CONSUMER_PIPELINE "-leads", CS_TOPIC_LEADS, on_lane_change, pl) != 0) {
            snprintf(err, errlen, "cannot join the pipeline's consumer group: %s", strerror(errno));
            __atomic_store_n(&pl->stop, 1, __ATOMIC_RELEASE);
            wake_paused(pl);
            bus->ops->wakeup(bus);
            for (int i = 0; i <= pl->nw; i++) pthread_join(pl->w[i].thread, NULL);
            if (bus->ops->leave) {
                bus->ops->leave(bus, CS_CONSUMER_PIPELINE);
                bus->ops->leave(bus, CS_CONSUMER_PIPELINE "-leads");
            }
            goto fail;
        }
    }
    if (pl->dry) return pl; /* no lag collectors: the real pipeline's */
    cs_info("pipeline", "started", "\"workers\":%d,\"partitions\":%d,\"leads_lane\":true,\"consumer_group\":%s",
            pl->nw, bus->partitions, pl->grouped ? "true" : "false");
    cs_metric_collector("kafka_consumergroup_lag", "Records in the log not yet committed by the consumer group.",
                        "gauge", collect_lag, pl);
    cs_metric_collector("crmstream_consumer_lag_records", "Consumer lag per topic summed over partitions (kafka_consumergroup_lag summed; promtool rejects a gauge named _sum).", "gauge",
                        collect_lag_sum, pl);
    return pl;
fail:
    free_workers(pl);
    free_engines(pl);
    free(pl->next);
    free(pl->owned);
    free(pl->dry_end);
    free(pl);
    return NULL;
}

static int on_gate_rec(const cs_rec *rec, void *arg)
{
    *(int64_t *)arg = rec->append_us;
    return 1;
}

/* Dry run: publish the append time of the lane's next record. Only the
 * controlling thread calls it (start, cs_pipeline_dry_done), reading the
 * leads topic forward with its own reader. */
static int64_t dry_gate(cs_pipeline *pl)
{
    int64_t next = __atomic_load_n(&pl->lane_next, __ATOMIC_ACQUIRE);
    if (__atomic_load_n(&pl->dry_gate_off, __ATOMIC_ACQUIRE) == next) return pl->dry_gate_us; /* up to date */
    int64_t t = INT64_MAX;
    if (next < pl->dry_lane_end && pl->bus->ops->fetch(pl->bus, CS_TOPIC_LEADS, 0, next, 1, on_gate_rec, &t) < 1)
        t = INT64_MIN; /* cannot read it now: everybody holds; retried at the next call */
    __atomic_store_n(&pl->dry_gate_us, t, __ATOMIC_RELEASE);
    if (t != INT64_MIN) __atomic_store_n(&pl->dry_gate_off, next, __ATOMIC_RELEASE);
    return t;
}

cs_pipeline *cs_pipeline_start(cs_bus *bus, cs_store *st, const cs_config *cfg, char *err, size_t errlen)
{
    return start(bus, st, cfg, NULL, 0, err, errlen);
}

cs_pipeline *cs_pipeline_start_dry(cs_bus *bus, cs_store *st, const cs_config *cfg, const int64_t *events_end,
                                   int64_t leads_end, char *err, size_t errlen)
{
    return start(bus, st, cfg, events_end, leads_end, err, errlen);
}

int cs_pipeline_dry_done(cs_pipeline *pl)
{
    dry_gate(pl); /* the cross-topic gate follows the lane (struct cs_pipeline) */
    return __atomic_load_n(&pl->dry_finished, __ATOMIC_ACQUIRE) == pl->nw + 1;
}

void cs_pipeline_stop(cs_pipeline *pl)
{
    if (!pl) return;
    if (!pl->dry) { /* a dry run registered none (and must not drop the real ones) */
        cs_metric_collector("kafka_consumergroup_lag", "", "gauge", NULL, NULL);
        cs_metric_collector("crmstream_consumer_lag_records", "", "gauge", NULL, NULL);
    }
    if (pl->grouped && pl->bus->ops->leave) {
        /* Revokes everything (after the in-flight batches commit) and lets
         * the other members take over at once. */
        pl->bus->ops->leave(pl->bus, CS_CONSUMER_PIPELINE);
        pl->bus->ops->leave(pl->bus, CS_CONSUMER_PIPELINE "-leads");
    }
    __atomic_store_n(&pl->stop, 1, __ATOMIC_RELEASE);
    wake_paused(pl);
    pl->bus->ops->wakeup(pl->bus);
    for (int i = 0; i <= pl->nw; i++)
        if (pl->w[i].started) pthread_join(pl->w[i].thread, NULL);
    free_workers(pl);
    free_engines(pl);
    free(pl->next);
    free(pl->owned);
    free(pl->dry_end);
    free(pl);
}

int64_t cs_pipeline_lag(cs_pipeline *pl)
{
    int64_t lag = 0;
    /* Until the consumer group first assigned, this member may owe every
     * partition: count them all (not ready, backpressure as if alone). */
    int all = pl->grouped && !__atomic_load_n(&pl->assigned, __ATOMIC_ACQUIRE);
    for (int p = 0; p < pl->bus->partitions; p++) {
        if (!all && !__atomic_load_n(&pl->owned[p], __ATOMIC_RELAXED)) continue; /* another member's to report */
        int64_t next = __atomic_load_n(&pl->next[p], __ATOMIC_RELAXED);
        lag += pl->bus->ops->end_offset(pl->bus, CS_TOPIC_EVENTS, p) - next;
    }
    if (all || __atomic_load_n(&pl->lane_owned, __ATOMIC_RELAXED))
        lag += pl->bus->ops->end_offset(pl->bus, CS_TOPIC_LEADS, 0) - __atomic_load_n(&pl->lane_next, __ATOMIC_RELAXED);
    return lag;
}

void cs_pipeline_pause(cs_pipeline *pl, int paused)
{
    __atomic_store_n(&pl->paused, paused, __ATOMIC_RELEASE);
    wake_paused(pl);
    cs_info("pipeline", paused ? "paused" : "resumed", NULL);
}

int cs_pipeline_paused(cs_pipeline *pl)
{
    return __atomic_load_n(&pl->paused, __ATOMIC_ACQUIRE);
}

uint64_t cs_pipeline_applied(cs_pipeline *pl)
{
    return __atomic_load_n(&pl->applied, __ATOMIC_RELAXED);
}
