/*
 * pipeline — the worker loop: fetch → apply → commit with offsets.
 */
#include "pipeline/pipeline.h"

#include <cjson/cJSON.h>
#include <pthread.h>
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

struct cs_pipeline {
    cs_bus          *bus;
    cs_store        *st;
    const cs_config *cfg;
    pthread_t        thread;
    int              stop;
    int64_t         *next;      /* committed next offset per partition */
    uint64_t         applied;
    uint64_t         poison;
    int              resync;    /* a batch failed: re-read next[] from the store first */
    int              paused;    /* maintenance: apply nothing until resumed */
    cs_sig_engine  **sig;       /* one signals engine per partition */
    cs_cooldown    **cooldown;  /* alert cooldowns, one table per partition */
    cs_abuse        *abuse;     /* signup velocity: global (abuse_apply.c) */
    cs_cooldown     *abuse_cd;
    cs_ruleset      *rules;     /* current rule set (NULL: none); swapped under rules_mu */
    pthread_mutex_t  rules_mu;
    cs_ruleset      *batch_rules; /* the set this batch evaluates (a reference) */
};

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

static int rebuild_signals(cs_pipeline *pl);
static int run_batch_tx(cs_pipeline *pl, cs_store *st, int P, int64_t t0, uint64_t poison0);

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int cs_pipeline_apply(cs_store *st, const cs_config *cfg, cs_sig_engine *sig, cs_pipeline_rules *rules, int partition,
                      const cs_rec *rec, uint64_t *poison)
{
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
    if (strcmp(type, "LeadCreated") == 0) rc = cs_pipeline_apply_lead(st, cfg, partition, rec, ev);
    else if (cs_pipeline_admin_object(type) >= 0) rc = cs_pipeline_apply_admin(st, partition, rec, ev, poison);
    else if (strcmp(type, "AccountGrouped") == 0 || strcmp(type, "ContactIdentified") == 0)
        rc = cs_pipeline_apply_traits(st, partition, rec, ev, poison);
    if (rc == 0 && cs_pipeline_admin_object(type) < 0) rc = cs_pipeline_apply_signals(st, sig, rules, partition, rec, ev, 1);
    if (rc == 0 && cs_pipeline_admin_object(type) < 0) rc = cs_pipeline_apply_abuse(st, rules, partition, rec, ev, 1);
    cJSON_Delete(ev);
    return rc;
}

struct fetch_ctx {
    cs_pipeline *pl;
    int          partition;
    int64_t      next;
    int          failed;
};

static int on_rec(const cs_rec *rec, void *arg)
{
    struct fetch_ctx *c = arg;
    cs_pipeline_rules r = {c->pl->batch_rules, c->pl->cooldown[c->partition], c->pl->abuse, c->pl->abuse_cd};
    if (cs_pipeline_apply(c->pl->st, c->pl->cfg, c->pl->sig[c->partition], &r, c->partition, rec, &c->pl->poison)) {
        c->failed = 1;
        return 1;
    }
    c->next = rec->offset + 1;
    return 0;
}

/* One batch across partitions. Returns records applied, 0 when idle, -1 on
 * a store error (rolled back; offsets unchanged). */
/* After a failed batch the store is the authority on where we are: a COMMIT
 * whose answer was lost (connection dropped) may have been applied, and
 * re-applying its events would flip fields back and forth in the audit. */
static int resync_offsets(cs_pipeline *pl)
{
    for (int p = 0; p < pl->bus->partitions; p++) {
        int64_t v;
        if (pl->st->ops->offset_get(pl->st, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, p, &v)) return -1;
        __atomic_store_n(&pl->next[p], v, __ATOMIC_RELAXED);
    }
    pl->resync = 0;
    return rebuild_signals(pl);
}

/* Signals state is in memory: rebuild a partition's engine from the log up
 * to the committed offset, writing nothing (the store already holds what
 * those events caused). At start, and after a rolled-back batch, whose
 * events the engine had already counted. */
struct rebuild_ctx {
    cs_pipeline *pl;
    int          partition;
    int64_t      upto;
};

static int on_rebuild(const cs_rec *rec, void *arg)
{
    struct rebuild_ctx *c = arg;
    if (rec->offset >= c->upto) return 1;
    cJSON *ev = cJSON_ParseWithLength(rec->value, rec->value_len);
    const char *type = ev ? str_of(ev, "type") : NULL;
    if (type && cs_pipeline_admin_object(type) < 0) {
        cs_pipeline_rules r = {NULL, NULL, c->pl->abuse, c->pl->abuse_cd};
        cs_pipeline_apply_signals(c->pl->st, c->pl->sig[c->partition], NULL, c->partition, rec, ev, 0);
        cs_pipeline_apply_abuse(c->pl->st, &r, c->partition, rec, ev, 0);
    }
    cJSON_Delete(ev);
    return 0;
}

static int rebuild_signals(cs_pipeline *pl)
{
    char err[256];
    cs_sig_config sc;
    cs_sig_config_defaults(&sc);
    int64_t t0 = cs_mono_us(), events = 0;
    cs_abuse_config ac;
    cs_abuse_config_defaults(&ac);
    cs_abuse_free(pl->abuse);
    cs_cooldown_free(pl->abuse_cd);
    pl->abuse = cs_abuse_new(&ac);
    pl->abuse_cd = cs_cooldown_new(65536);
    for (int p = 0; p < pl->bus->partitions; p++) {
        cs_sig_engine_free(pl->sig[p]);
        pl->sig[p] = cs_sig_engine_new(&sc, err, sizeof err);
        if (!pl->sig[p]) {
            cs_error("pipeline", "cannot create a signals engine", "\"error\":\"%s\"", err);
            return -1;
        }
        int64_t from = pl->bus->ops->start_offset ? pl->bus->ops->start_offset(pl->bus, CS_TOPIC_EVENTS, p) : 0;
        if (from > 0)
            cs_warn("pipeline", "signals rebuilt from the oldest retained offset: earlier events were deleted by retention",
                    "\"partition\":%d,\"from\":%lld", p, (long long)from);
        int64_t upto = __atomic_load_n(&pl->next[p], __ATOMIC_RELAXED);
        while (from < upto) {
            struct rebuild_ctx c = {pl, p, upto};
            int n = pl->bus->ops->fetch(pl->bus, CS_TOPIC_EVENTS, p, from, 4096, on_rebuild, &c);
            if (n <= 0) break;
            from += n;
            events += n;
        }
    }
    if (events)
        cs_info("pipeline", "signals state rebuilt from the log", "\"events\":%lld,\"ms\":%.1f", (long long)events,
                (double)(cs_mono_us() - t0) / 1000.0);
    return 0;
}

/* Time-driven signals (silence, renewal dates coming near) for accounts
 * that sent nothing: a bounded sweep per batch, inside its transaction. */
static int sweep_signals(cs_pipeline *pl, int partition, int64_t offset)
{
    cs_sig_engine *e = pl->sig[partition];
    if (!e || cs_sig_sweep_due(e) == 0) return 0;
    cs_sig_changes ch;
    cs_sig_changes_init(&ch);
    cs_sig_sweep(e, 2000, &ch);
    char id[64];
    snprintf(id, sizeof id, "sweep-%d-%lld", partition, (long long)offset);
    int rc = cs_pipeline_write_signal_changes(pl->st, &ch, id, partition, offset);
    /* Rules see sweep changes too (silence is a signal): once per account. */
    cs_pipeline_rules r = {pl->batch_rules, pl->cooldown[partition], pl->abuse, pl->abuse_cd};
    for (size_t i = 0; rc == 0 && i < ch.n; i++) {
        int first = 1;
        for (size_t k = 0; k < i && first; k++) first = strcmp(ch.v[k].account_id, ch.v[i].account_id) != 0;
        if (first)
            rc = cs_pipeline_apply_rules(pl->st, &r, e, partition, NULL, NULL, ch.v[i].account_id, &ch, ch.v[i].at_us, id);
    }
    cs_sig_changes_free(&ch);
    return rc;
}

static int run_batch(cs_pipeline *pl)
{
    if (pl->resync && resync_offsets(pl)) return -1;
    int P = pl->bus->partitions, any = 0;
    for (int p = 0; p < P && !any; p++)
        any = pl->bus->ops->end_offset(pl->bus, CS_TOPIC_EVENTS, p) > pl->next[p];
    if (!any) return 0;
    cs_store *st = pl->st;
    int64_t t0 = cs_mono_us();
    uint64_t poison0 = pl->poison;
    nrouted = 0;
    nsignal = 0;
    pthread_mutex_lock(&pl->rules_mu);
    pl->batch_rules = pl->rules ? cs_ruleset_ref(pl->rules) : NULL;
    pthread_mutex_unlock(&pl->rules_mu);
    int rc = run_batch_tx(pl, st, P, t0, poison0);
    cs_ruleset_unref(pl->batch_rules);
    pl->batch_rules = NULL;
    return rc;
}

static int run_batch_tx(cs_pipeline *pl, cs_store *st, int P, int64_t t0, uint64_t poison0)
{
    if (st->ops->begin(st)) return -1;
    int64_t *next = cs_malloc((size_t)P * sizeof *next);
    memcpy(next, pl->next, (size_t)P * sizeof *next);
    size_t budget = (size_t)pl->cfg->pipeline_batch_max, total = 0;
    for (int p = 0; p < P && total < budget; p++) {
        struct fetch_ctx c = {pl, p, next[p], 0};
        int n = pl->bus->ops->fetch(pl->bus, CS_TOPIC_EVENTS, p, next[p], budget - total, on_rec, &c);
        if (n < 0 || c.failed) goto fail;
        if (c.next == next[p]) continue;
        total += (size_t)(c.next - next[p]);
        next[p] = c.next;
        if (sweep_signals(pl, p, c.next - 1)) goto fail;
        if (st->ops->offset_set(st, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, p, next[p])) goto fail;
    }
    if (st->ops->commit(st)) goto fail;
    int64_t now = cs_now_us();
    cs_hist_observe(cs_metric_series(cs_m.store_tx_seconds, NULL), (double)(cs_mono_us() - t0) / 1e6);
    cs_series *routed = cs_metric_series(cs_m.e2e_seconds, "stage=\"routed\"");
    for (size_t i = 0; i < nrouted; i++) cs_hist_observe(routed, (double)(now - routed_ts[i]) / 1e6);
    cs_series *sigs = cs_metric_series(cs_m.e2e_seconds, "stage=\"signal\"");
    for (size_t i = 0; i < nsignal; i++) cs_hist_observe(sigs, (double)(now - signal_ts[i]) / 1e6);
    cs_metric_inc(cs_m.pipeline_events, "result=\"applied\"", total - (pl->poison - poison0));
    if (pl->poison != poison0) cs_metric_inc(cs_m.pipeline_events, "result=\"poison\"", pl->poison - poison0);
    for (int p = 0; p < P; p++) {
        /* The store's offsets are authoritative; the bus's group offsets
         * let retention know what the pipeline consumed (and feed lag
         * monitoring). Best effort: a failure only delays retention. */
        if (next[p] != pl->next[p] && pl->bus->ops->commit)
            pl->bus->ops->commit(pl->bus, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, p, next[p]);
        __atomic_store_n(&pl->next[p], next[p], __ATOMIC_RELAXED);
    }
    free(next);
    __atomic_add_fetch(&pl->applied, total, __ATOMIC_RELAXED);
    return (int)total;
fail:
    st->ops->rollback(st);
    free(next);
    pl->poison = poison0; /* counted again on retry */
    pl->resync = 1;
    return -1;
}

/* Replay on the running pipeline: batch_mu is held by the worker around
 * each batch, so the move happens between two batches (and the store's
 * writer connection is never used by two threads). One per process. */
static pthread_mutex_t batch_mu = PTHREAD_MUTEX_INITIALIZER;

int cs_pipeline_replay(cs_pipeline *pl, const cs_replay_req *req, cs_replay_result *res, int *usage, char *err,
                       size_t errlen)
{
    pthread_mutex_lock(&batch_mu);
    int rc = cs_pipeline_replay_move(pl->bus, pl->st, req, res, usage, err, errlen);
    /* The store is the authority: take its offsets and rebuild the signals
     * state up to them (on failure the worker retries this first). */
    if (rc == 0 && resync_offsets(pl) != 0) pl->resync = 1;
    pthread_mutex_unlock(&batch_mu);
    return rc;
}

static void *worker(void *arg)
{
    cs_pipeline *pl = arg;
    uint64_t seen = 0;
    int backoff_ms = 10;
    while (!__atomic_load_n(&pl->stop, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&pl->paused, __ATOMIC_ACQUIRE)) {
            seen = pl->bus->ops->wait(pl->bus, seen, 200);
            continue;
        }
        pthread_mutex_lock(&batch_mu);
        int n = run_batch(pl);
        pthread_mutex_unlock(&batch_mu);
        if (n > 0) {
            backoff_ms = 10;
            continue;
        }
        if (n < 0) {
            /* Retriable or not, the batch is retried from the stored offsets:
             * skipping would lose effects; the log says which kind it was. */
            cs_warn("pipeline", "batch rolled back; retrying", "\"backoff_ms\":%d,\"retriable\":%s", backoff_ms,
                    pl->st->retriable ? "true" : "false");
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
    for (int p = 0; p < pl->bus->partitions; p++) {
        char l[128];
        int64_t lag = pl->bus->ops->end_offset(pl->bus, CS_TOPIC_EVENTS, p) - __atomic_load_n(&pl->next[p], __ATOMIC_RELAXED);
        snprintf(l, sizeof l, "consumergroup=\"%s\",topic=\"%s\",partition=\"%d\"", CS_CONSUMER_PIPELINE,
                 CS_TOPIC_EVENTS, p);
        cs_metrics_line(out, "kafka_consumergroup_lag", l, (double)lag);
    }
}

static void collect_lag_sum(cs_buf *out, void *arg)
{
    char l[96];
    snprintf(l, sizeof l, "consumergroup=\"%s\",topic=\"%s\"", CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS);
    cs_metrics_line(out, "crmstream_consumer_lag_records", l, (double)cs_pipeline_lag(arg));
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

cs_pipeline *cs_pipeline_start(cs_bus *bus, cs_store *st, const cs_config *cfg, char *err, size_t errlen)
{
    cs_metrics_catalog_init();
    cs_pipeline *pl = cs_calloc(1, sizeof *pl);
    pl->bus = bus;
    pl->st = st;
    pl->cfg = cfg;
    pl->next = cs_calloc((size_t)bus->partitions, sizeof *pl->next);
    pl->sig = cs_calloc((size_t)bus->partitions, sizeof *pl->sig);
    pl->cooldown = cs_calloc((size_t)bus->partitions, sizeof *pl->cooldown);
    for (int p = 0; p < bus->partitions; p++) pl->cooldown[p] = cs_cooldown_new(65536);
    pthread_mutex_init(&pl->rules_mu, NULL);
    if (cs_pipeline_reload_rules(pl, err, errlen) != 0) goto fail;
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
    if (rebuild_signals(pl) != 0) {
        snprintf(err, errlen, "cannot rebuild the signals state");
        goto fail;
    }
    if (pthread_create(&pl->thread, NULL, worker, pl) != 0) {
        snprintf(err, errlen, "cannot start the pipeline thread");
        goto fail;
    }
    cs_metric_collector("kafka_consumergroup_lag", "Records in the log not yet committed by the consumer group.",
                        "gauge", collect_lag, pl);
    cs_metric_collector("crmstream_consumer_lag_records", "Consumer lag summed over partitions (kafka_consumergroup_lag summed; promtool rejects a gauge named _sum).", "gauge",
                        collect_lag_sum, pl);
    return pl;
fail:
    free_engines(pl);
    free(pl->next);
    free(pl);
    return NULL;
}

void cs_pipeline_stop(cs_pipeline *pl)
{
    if (!pl) return;
    cs_metric_collector("kafka_consumergroup_lag", "", "gauge", NULL, NULL);
    cs_metric_collector("crmstream_consumer_lag_records", "", "gauge", NULL, NULL);
    __atomic_store_n(&pl->stop, 1, __ATOMIC_RELEASE);
    pl->bus->ops->wakeup(pl->bus);
    pthread_join(pl->thread, NULL);
    free_engines(pl);
    free(pl->next);
    free(pl);
}

int64_t cs_pipeline_lag(cs_pipeline *pl)
{
    int64_t lag = 0;
    for (int p = 0; p < pl->bus->partitions; p++) {
        int64_t next = __atomic_load_n(&pl->next[p], __ATOMIC_RELAXED);
        lag += pl->bus->ops->end_offset(pl->bus, CS_TOPIC_EVENTS, p) - next;
    }
    return lag;
}

void cs_pipeline_pause(cs_pipeline *pl, int paused)
{
    __atomic_store_n(&pl->paused, paused, __ATOMIC_RELEASE);
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
