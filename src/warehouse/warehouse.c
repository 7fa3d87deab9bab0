/*
 * warehouse — one consumer thread per destination; see warehouse.h.
 */
#include "warehouse/warehouse.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/logging.h"
#include "core/util.h"
#include "metrics/catalog.h"
#include "warehouse/sink.h"

#define WH_MAX_DEST 2

struct dest_thread {
    cs_warehouse *wh;
    wh_dest      *d;
    pthread_t     thread;
    int           started;
    int           loaded;    /* next[] holds the destination's positions */
    int64_t      *next;      /* read by other threads: atomics */
    int           parked;    /* paused and idle (no batch in flight); under wh->mu */
    int           failing;   /* the last batch or position load failed (atomic) */
    int64_t       errors;    /* failed batches and loads (atomic) */
};

struct cs_warehouse {
    cs_bus            *bus;
    int                partitions;
    int                ndest;
    struct dest_thread dest[WH_MAX_DEST];
    pthread_mutex_t    mu;        /* stop, cond, group commits */
    pthread_cond_t     cond;
    int                stop;
    int                paused;    /* POST /api/v1/warehouse/pause; under mu */
    pthread_cond_t     parked;    /* a worker parked (pause waits for it) */
    int64_t           *committed; /* last group offset committed to the bus */
};

static void collect_lag(cs_buf *out, void *arg);
static void collect_paused(cs_buf *out, void *arg);

/* ---- rows ---------------------------------------------------------------- */

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void norm_time(const char *s, char *out, size_t n)
{
    int64_t us;
    out[0] = '\0';
    if (s && cs_parse_time(s, &us) == 0) cs_fmt_time_ms(us, out, n);
}

int wh_row_decode(const cs_rec *rec, wh_row *r)
{
    memset(r, 0, sizeof *r);
    r->ev = cJSON_ParseWithLength(rec->value, rec->value_len);
    if (!cJSON_IsObject(r->ev) || !(r->event_id = str_of(r->ev, "event_id"))) {
        cJSON_Delete(r->ev);
        r->ev = NULL;
        return -1;
    }
    r->type = str_of(r->ev, "type");
    r->account_id = str_of(r->ev, "account_id");
    r->user_id = str_of(r->ev, "user_id");
    r->product_area = str_of(r->ev, "product_area");
    r->plan_tier = str_of(r->ev, "plan_tier");
    r->source = str_of(r->ev, "source");
    r->write_key = str_of(r->ev, "write_key");
    r->properties = cJSON_GetObjectItemCaseSensitive(r->ev, "properties");
    r->context = cJSON_GetObjectItemCaseSensitive(r->ev, "context");
    norm_time(str_of(r->ev, "timestamp"), r->ts, sizeof r->ts);
    norm_time(str_of(r->ev, "received_at"), r->received_at, sizeof r->received_at);
    char fallback[32];
    const char *t = r->ts[0] ? r->ts : r->received_at;
    if (!*t) {
        cs_fmt_time_ms(rec->append_us ? rec->append_us : rec->ts_us, fallback, sizeof fallback);
        t = fallback;
    }
    /* t is "YYYY-MM-DDTHH:..." (cs_fmt_time_ms) */
    snprintf(r->part_dir, sizeof r->part_dir, "dt=%.10s/hour=%.2s", t, t + 11);
    return 0;
}

void wh_row_free(wh_row *r)
{
    cJSON_Delete(r->ev);
    r->ev = NULL;
}

/* ---- the loop ------------------------------------------------------------ */

static int stopping(cs_warehouse *wh)
{
    return __atomic_load_n(&wh->stop, __ATOMIC_ACQUIRE);
}

/* Sleep up to ms, woken early by stop. */
static void nap(cs_warehouse *wh, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&wh->mu);
    while (!wh->stop)
        if (pthread_cond_timedwait(&wh->cond, &wh->mu, &ts) == ETIMEDOUT) break;
    pthread_mutex_unlock(&wh->mu);
}

/* The bus group offset is the slowest loaded destination's position; it only
 * moves forward, and only once every destination has loaded its positions. */
static void commit_group(cs_warehouse *wh)
{
    pthread_mutex_lock(&wh->mu);
    for (int p = 0; p < wh->partitions; p++) {
        int64_t lo = INT64_MAX;
        for (int i = 0; i < wh->ndest; i++) {
            if (!__atomic_load_n(&wh->dest[i].loaded, __ATOMIC_ACQUIRE)) {
                lo = -1;
                break;
            }
            int64_t v = __atomic_load_n(&wh->dest[i].next[p], __ATOMIC_RELAXED);
            if (v < lo) lo = v;
        }
        if (lo > wh->committed[p] && wh->bus->ops->commit) {
            /* Best effort: a failure only delays retention and lag gauges. */
            if (wh->bus->ops->commit(wh->bus, CS_CONSUMER_WAREHOUSE, CS_TOPIC_EVENTS, p, lo) == 0)
                wh->committed[p] = lo;
        }
    }
    pthread_mutex_unlock(&wh->mu);
}

static int64_t backlog(cs_warehouse *wh, const int64_t *next)
{
    int64_t n = 0;
    for (int p = 0; p < wh->partitions; p++) {
        int64_t end = wh->bus->ops->end_offset(wh->bus, CS_TOPIC_EVENTS, p);
        if (end > next[p]) n += end - next[p];
    }
    return n;
}

/* While paused: park (pause() waits for every worker to be parked, so no
 * batch is in flight once it returns) until resumed or stopped. Returns 1
 * when it parked (the caller re-checks stop). */
static int park_while_paused(cs_warehouse *wh, struct dest_thread *t)
{
    int waited = 0;
    pthread_mutex_lock(&wh->mu);
    while (wh->paused && !wh->stop) {
        if (!t->parked) {
            t->parked = 1;
            pthread_cond_broadcast(&wh->parked);
        }
        pthread_cond_wait(&wh->cond, &wh->mu);
        waited = 1;
    }
    t->parked = 0;
    pthread_mutex_unlock(&wh->mu);
    return waited;
}

static void *worker(void *arg)
{
    struct dest_thread *t = arg;
    cs_warehouse *wh = t->wh;
    wh_dest *d = t->d;
    pthread_setname_np(pthread_self(), "cs-warehouse");
    int P = wh->partitions, backoff_ms = 10, failing = 0;
    int64_t *next = cs_calloc((size_t)P, sizeof *next);
    uint64_t seen = 0;
    int64_t last_flush = cs_mono_us();
    int need_resync = 1;
    char lab[64];
    snprintf(lab, sizeof lab, "destination=\"%s\"", d->ops->name);
    cs_series *m_events = cs_metric_series(cs_m.wh_events, lab), *m_bytes = cs_metric_series(cs_m.wh_bytes, lab),
              *m_errors = cs_metric_series(cs_m.wh_errors, lab), *m_skipped = cs_metric_series(cs_m.wh_skipped, lab),
              *m_secs = cs_metric_series(cs_m.wh_batch_seconds, lab),
              *m_files = d->ops->name[0] == 'f' ? cs_metric_series(cs_m.wh_files, NULL) : NULL;
    int64_t rep_written = 0, rep_bytes = 0, rep_files = 0, rep_skipped = 0;
    while (!stopping(wh)) {
        if (park_while_paused(wh, t)) continue;
        if (need_resync) {
            if (d->ops->resync(d, next) != 0) {
                cs_warn("warehouse", "cannot load positions; retrying",
                        "\"destination\":\"%s\",\"error\":\"%s\",\"backoff_ms\":%d", d->ops->name, d->err, backoff_ms);
                nap(wh, backoff_ms);
                backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
                failing = 1;
                __atomic_store_n(&t->failing, 1, __ATOMIC_RELAXED);
                __atomic_add_fetch(&t->errors, 1, __ATOMIC_RELAXED);
                cs_counter_add(m_errors, 1);
                continue;
            }
            for (int p = 0; p < P; p++) __atomic_store_n(&t->next[p], next[p], __ATOMIC_RELAXED);
            __atomic_store_n(&t->loaded, 1, __ATOMIC_RELEASE);
            need_resync = 0;
            commit_group(wh);
        }
        int64_t avail = backlog(wh, next);
        int64_t now = cs_mono_us();
        if (avail == 0 || (avail < d->batch_max && now - last_flush < d->interval_us)) {
            int64_t left_ms = avail == 0 ? 200 : (d->interval_us - (now - last_flush)) / 1000 + 1;
            seen = wh->bus->ops->wait(wh->bus, seen, (int)(left_ms < 200 ? left_ms : 200));
            continue;
        }
        int64_t b0 = cs_mono_us();
        long n = d->ops->write(d, next);
        if (n < 0) {
            __atomic_store_n(&t->failing, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&t->errors, 1, __ATOMIC_RELAXED);
            cs_counter_add(m_errors, 1);
            cs_warn("warehouse", "batch failed; retrying from the stored positions",
                    "\"destination\":\"%s\",\"error\":\"%s\",\"backoff_ms\":%d", d->ops->name, d->err, backoff_ms);
            need_resync = 1;
            failing = 1;
            nap(wh, backoff_ms);
            backoff_ms = backoff_ms < 5000 ? backoff_ms * 2 : 5000;
            continue;
        }
        cs_hist_observe(m_secs, (double)(cs_mono_us() - b0) / 1e6);
        cs_counter_add(m_events, (uint64_t)(d->written - rep_written));
        cs_counter_add(m_bytes, (uint64_t)(d->bytes - rep_bytes));
        cs_counter_add(m_files, (uint64_t)(d->files - rep_files));
        cs_counter_add(m_skipped, (uint64_t)(d->skipped - rep_skipped));
        rep_written = d->written, rep_bytes = d->bytes, rep_files = d->files, rep_skipped = d->skipped;
        __atomic_store_n(&t->failing, 0, __ATOMIC_RELAXED);
        if (failing) {
            cs_info("warehouse", "destination recovered", "\"destination\":\"%s\",\"backlog\":%lld", d->ops->name,
                    (long long)avail);
            failing = 0;
        }
        backoff_ms = 10;
        last_flush = cs_mono_us();
        for (int p = 0; p < P; p++) __atomic_store_n(&t->next[p], next[p], __ATOMIC_RELAXED);
        commit_group(wh);
    }
    free(next);
    return NULL;
}

/* ---- lifecycle ----------------------------------------------------------- */

int cs_warehouse_configured(const cs_config *cfg)
{
    return (cfg->wh_postgres && *cfg->wh_postgres) || (cfg->wh_dir && *cfg->wh_dir);
}

cs_warehouse *cs_warehouse_start(cs_bus *bus, const cs_config *cfg, char *err, size_t errlen)
{
    cs_warehouse *wh = cs_calloc(1, sizeof *wh);
    wh->bus = bus;
    wh->partitions = bus->partitions;
    pthread_mutex_init(&wh->mu, NULL);
    pthread_cond_init(&wh->cond, NULL);
    pthread_cond_init(&wh->parked, NULL);
    cs_metrics_catalog_init();
    wh->committed = cs_calloc((size_t)bus->partitions, sizeof *wh->committed);
    if (cfg->wh_postgres && *cfg->wh_postgres) {
        wh_dest *d = wh_pg_open(bus, cfg, err, errlen);
        if (!d) goto fail;
        wh->dest[wh->ndest++].d = d;
    }
    if (cfg->wh_dir && *cfg->wh_dir) {
        wh_dest *d = wh_files_open(bus, cfg, err, errlen);
        if (!d) goto fail;
        wh->dest[wh->ndest++].d = d;
    }
    /* Register the group before anything is written, at its committed
     * position or 0, so retention keeps what the warehouse has not consumed
     * even while a destination is unreachable (DESIGN-BRIEF §3.1). */
    for (int p = 0; p < bus->partitions; p++) {
        int64_t c = bus->ops->committed ? bus->ops->committed(bus, CS_CONSUMER_WAREHOUSE, CS_TOPIC_EVENTS, p) : -1;
        if (c < 0) {
            c = 0;
            if (bus->ops->commit && bus->ops->commit(bus, CS_CONSUMER_WAREHOUSE, CS_TOPIC_EVENTS, p, 0) != 0) {
                snprintf(err, errlen, "registering consumer group %s: %s", CS_CONSUMER_WAREHOUSE, strerror(errno));
                goto fail;
            }
        }
        wh->committed[p] = c;
    }
    for (int i = 0; i < wh->ndest; i++) {
        struct dest_thread *t = &wh->dest[i];
        t->wh = wh;
        t->next = cs_calloc((size_t)bus->partitions, sizeof *t->next);
        if (pthread_create(&t->thread, NULL, worker, t) != 0) {
            snprintf(err, errlen, "cannot start the warehouse thread");
            goto fail;
        }
        t->started = 1;
        cs_info("warehouse", "started", "\"destination\":\"%s\",\"batch_max_events\":%ld,\"flush_ms\":%lld",
                t->d->ops->name, t->d->batch_max, (long long)(t->d->interval_us / 1000));
    }
    cs_metric_collector("crmstream_warehouse_lag_records",
                        "Records of the log not yet written by a warehouse destination (consumer group warehouse).",
                        "gauge", collect_lag, wh);
    cs_metric_collector("crmstream_warehouse_paused", "1 while the warehouse sink is paused (POST /api/v1/warehouse/pause).",
                        "gauge", collect_paused, wh);
    return wh;
fail:
    cs_warehouse_stop(wh);
    return NULL;
}

void cs_warehouse_stop(cs_warehouse *wh)
{
    if (!wh) return;
    cs_metric_collector("crmstream_warehouse_lag_records", "", "gauge", NULL, NULL);
    cs_metric_collector("crmstream_warehouse_paused", "", "gauge", NULL, NULL);
    pthread_mutex_lock(&wh->mu);
    __atomic_store_n(&wh->stop, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&wh->cond);
    pthread_mutex_unlock(&wh->mu);
    for (int i = 0; i < wh->ndest; i++) {
        struct dest_thread *t = &wh->dest[i];
        if (t->started) pthread_join(t->thread, NULL);
        t->d->ops->close(t->d);
        free(t->next);
    }
    pthread_mutex_destroy(&wh->mu);
    pthread_cond_destroy(&wh->cond);
    pthread_cond_destroy(&wh->parked);
    free(wh->committed);
    free(wh);
}

static int64_t dest_lag(cs_warehouse *wh, struct dest_thread *t)
{
    if (!__atomic_load_n(&t->loaded, __ATOMIC_ACQUIRE)) return -1;
    int64_t lag = 0;
    for (int p = 0; p < wh->partitions; p++)
        lag += wh->bus->ops->end_offset(wh->bus, CS_TOPIC_EVENTS, p) - __atomic_load_n(&t->next[p], __ATOMIC_RELAXED);
    return lag;
}

int64_t cs_warehouse_lag(cs_warehouse *wh)
{
    int64_t worst = 0;
    for (int i = 0; i < wh->ndest; i++) {
        int64_t lag = dest_lag(wh, &wh->dest[i]);
        if (lag < 0) return -1;
        if (lag > worst) worst = lag;
    }
    return worst;
}

int cs_warehouse_pause(cs_warehouse *wh, int paused, int timeout_ms)
{
    pthread_mutex_lock(&wh->mu);
    wh->paused = paused;
    pthread_cond_broadcast(&wh->cond);
    int all = 1;
    if (paused) {
        cs_info("warehouse", "paused", "\"destinations\":%d", wh->ndest);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        for (;;) {
            all = 1;
            for (int i = 0; i < wh->ndest; i++)
                if (!wh->dest[i].parked) all = 0;
            if (all || pthread_cond_timedwait(&wh->parked, &wh->mu, &ts) == ETIMEDOUT) break;
        }
        if (!all)
            for (int i = 0; i < wh->ndest; i++)
                if (!wh->dest[i].parked) all = 0;
    } else {
        cs_info("warehouse", "resumed", "\"destinations\":%d", wh->ndest);
    }
    pthread_mutex_unlock(&wh->mu);
    return paused ? all : 1;
}

void cs_warehouse_status_json(cs_warehouse *wh, cs_buf *out)
{
    pthread_mutex_lock(&wh->mu);
    int paused = wh->paused;
    pthread_mutex_unlock(&wh->mu);
    cs_buf_printf(out, "{\"paused\":%s,\"lag\":%lld,\"destinations\":[", paused ? "true" : "false",
                  (long long)cs_warehouse_lag(wh));
    for (int i = 0; i < wh->ndest; i++) {
        struct dest_thread *t = &wh->dest[i];
        pthread_mutex_lock(&wh->mu);
        int parked = t->parked;
        pthread_mutex_unlock(&wh->mu);
        cs_buf_printf(out, "%s{\"name\":\"%s\",\"lag\":%lld,\"failing\":%s,\"errors\":%lld,\"parked\":%s}",
                      i ? "," : "", t->d->ops->name, (long long)dest_lag(wh, t),
                      __atomic_load_n(&t->failing, __ATOMIC_RELAXED) ? "true" : "false",
                      (long long)__atomic_load_n(&t->errors, __ATOMIC_RELAXED), parked ? "true" : "false");
    }
    cs_buf_adds(out, "]}");
}

static void collect_lag(cs_buf *out, void *arg)
{
    cs_warehouse *wh = arg;
    for (int i = 0; i < wh->ndest; i++) {
        int64_t lag = dest_lag(wh, &wh->dest[i]);
        if (lag < 0) continue; /* positions not loaded yet */
        char l[128];
        snprintf(l, sizeof l, "consumergroup=\"%s\",topic=\"%s\",destination=\"%s\"", CS_CONSUMER_WAREHOUSE,
                 CS_TOPIC_EVENTS, wh->dest[i].d->ops->name);
        cs_metrics_line(out, "crmstream_warehouse_lag_records", l, (double)lag);
    }
}

static void collect_paused(cs_buf *out, void *arg)
{
    cs_warehouse *wh = arg;
    pthread_mutex_lock(&wh->mu);
    int paused = wh->paused;
    pthread_mutex_unlock(&wh->mu);
    cs_metrics_line(out, "crmstream_warehouse_paused", NULL, paused);
}
