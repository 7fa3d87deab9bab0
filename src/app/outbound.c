/*
 * app/outbound — serve's wiring of the outbound dispatcher (docs/OUTBOUND.md):
 * destinations from the config, a store handle of the dispatcher's own over
 * the outbox, stale claims released at start (single owner), the pipeline's
 * commit hook that wakes it, and its scrape-time metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "core/logging.h"
#include "metrics/metrics.h"
#include "out/out.h"
#include "out/source_store.h"

struct cs_outbound {
    cs_store *main;   /* the pipeline's store: its commits wake the dispatcher */
    cs_store *st;     /* the dispatcher's own handle */
    cs_out   *out;
    const cs_config *cfg;
};

static void wake(void *ctx)
{
    cs_out_wake(ctx);
}

static void on_alert(void *ctx, const cs_out_alert *a)
{
    (void)ctx;
    cs_error("out", "destination disabled",
             "\"destination\":\"%s\",\"kind\":\"%s\",\"detail\":\"%s\",\"delivery\":\"%s\","
             "\"hint\":\"fix the destination, then restart (deliveries wait in the outbox)\"",
             a->dest, a->kind, a->detail ? a->detail : "", a->delivery_id ? a->delivery_id : "");
}

/* ---- scrape-time metrics --------------------------------------------------- */

typedef struct depth {
    const cs_config *cfg;
    int64_t (*n)[3];       /* per destination: pending, claimed, dead */
    int64_t *oldest;       /* oldest created_at_ms of pending + claimed, or -1 */
} depth;

static void on_stat(const char *dest, const char *state, int64_t n, int64_t oldest_ms, void *arg)
{
    depth *d = arg;
    int s = strcmp(state, "pending") == 0 ? 0 : strcmp(state, "claimed") == 0 ? 1 : strcmp(state, "dead") == 0 ? 2 : -1;
    for (size_t i = 0; s >= 0 && i < d->cfg->ndestinations; i++) {
        if (strcmp(d->cfg->destinations[i].name, dest) != 0) continue;
        d->n[i][s] += n;
        if (s < 2 && oldest_ms >= 0 && (d->oldest[i] < 0 || oldest_ms < d->oldest[i])) d->oldest[i] = oldest_ms;
    }
}

static int collect(cs_outbound *ob, depth *d)
{
    size_t n = ob->cfg->ndestinations;
    d->cfg = ob->cfg;
    d->n = cs_calloc(n, sizeof *d->n);
    d->oldest = cs_malloc(n * sizeof *d->oldest);
    for (size_t i = 0; i < n; i++) d->oldest[i] = -1;
    return ob->st->ops->outbox_stats(ob->st, on_stat, d);
}

static void collect_depth(cs_buf *out, void *arg)
{
    cs_outbound *ob = arg;
    depth d;
    static const char *const states[] = {"pending", "claimed", "dead"};
    if (collect(ob, &d) == 0)
        for (size_t i = 0; i < ob->cfg->ndestinations; i++)
            for (int s = 0; s < 3; s++) {
                char l[160];
                snprintf(l, sizeof l, "destination=\"%s\",state=\"%s\"", ob->cfg->destinations[i].name, states[s]);
                cs_metrics_line(out, "crmstream_outbox_deliveries", l, (double)d.n[i][s]);
            }
    free(d.n), free(d.oldest);
}

static void collect_age(cs_buf *out, void *arg)
{
    cs_outbound *ob = arg;
    depth d;
    int64_t now = cs_now_us() / 1000;
    if (collect(ob, &d) == 0)
        for (size_t i = 0; i < ob->cfg->ndestinations; i++) {
            char l[128];
            snprintf(l, sizeof l, "destination=\"%s\"", ob->cfg->destinations[i].name);
            double age = d.oldest[i] < 0 || d.oldest[i] > now ? 0 : (double)(now - d.oldest[i]) / 1000.0;
            cs_metrics_line(out, "crmstream_outbox_oldest_age_seconds", l, age);
        }
    free(d.n), free(d.oldest);
}

static void collect_disabled(cs_buf *out, void *arg)
{
    cs_outbound *ob = arg;
    for (size_t i = 0; i < ob->cfg->ndestinations; i++) {
        cs_out_stats s;
        char l[128];
        if (cs_out_stats_get(ob->out, ob->cfg->destinations[i].name, &s) != 0) continue;
        snprintf(l, sizeof l, "destination=\"%s\"", ob->cfg->destinations[i].name);
        cs_metrics_line(out, "crmstream_webhook_destination_disabled", l, s.disabled ? 1 : 0);
    }
}

static const struct {
    const char *name, *help;
    cs_metric_collect_fn fn;
} collectors[] = {
    {"crmstream_outbox_deliveries", "Outbox rows per destination and state (pending, claimed, dead = in the DLQ).",
     collect_depth},
    {"crmstream_outbox_oldest_age_seconds",
     "Age of the oldest undelivered (pending or claimed) outbox row per destination; 0 when none.", collect_age},
    {"crmstream_webhook_destination_disabled", "1 when a destination answered 410 Gone and is disabled.",
     collect_disabled},
};

/* ---- start / stop ------------------------------------------------------------ */

cs_outbound *cs_outbound_start(cs_store *main, const cs_config *cfg, char *err, size_t errlen)
{
    *err = '\0';
    if (cfg->ndestinations == 0) return NULL;
    size_t n = cfg->ndestinations;
    cs_out_dest_conf *dc = cs_calloc(n, sizeof *dc);
    for (size_t i = 0; i < n; i++) {
        const cs_dest_cfg *d = &cfg->destinations[i];
        dc[i] = (cs_out_dest_conf){
            .name = d->name, .kind = strcmp(d->kind, "slack") == 0 ? CS_OUT_SLACK : CS_OUT_WEBHOOK, .url = d->url,
            .secrets = {d->secrets[0], d->secrets[1]}, .concurrency = d->concurrency, .rate_per_s = d->rate_per_s,
            .burst = d->burst, .queue_max = d->queue_max, .connect_timeout_ms = d->connect_timeout_ms,
            .timeout_ms = d->timeout_ms, .allow_private = d->allow_private,
            .retry_horizon_ms = (int64_t)d->retry_horizon_s * 1000, .backoff_base_ms = d->backoff_base_ms,
            .backoff_max_ms = d->backoff_max_ms, .max_attempts = d->max_attempts,
            .max_response = (size_t)d->max_response};
    }
    cs_outbound *ob = cs_calloc(1, sizeof *ob);
    ob->main = main;
    ob->cfg = cfg;
    char why[512];
    ob->st = cs_store_open(cfg->store, cfg->data_dir, why, sizeof why);
    if (!ob->st) {
        snprintf(err, errlen, "outbox store: %s", why);
        goto fail;
    }
    /* Single owner (the data directory's LOCK: one process runs the embedded
     * log and this outbox): claims left by a crashed process are released
     * now, so they are redelivered at once, with the same webhook-id. With a
     * shared bus (Kafka) this must go: the leases expire instead. */
    int released = ob->st->ops->outbox_release_all(ob->st);
    if (released < 0) {
        snprintf(err, errlen, "outbox: %s", ob->st->errmsg);
        goto fail;
    }
    if (released > 0) cs_info("out", "claims of a previous run released", "\"deliveries\":%d", released);
    cs_out_opts opts = {.source = cs_out_store_source(ob->st), .on_alert = on_alert, .alert_ctx = ob,
                        .poll_ms = cfg->outbound_poll_ms, .lease_ms = cfg->outbound_lease_ms};
    ob->out = cs_out_new(dc, (int)n, &opts, why, sizeof why);
    if (!ob->out) {
        const char *where = cfg->destinations[0].where; /* name the entry the message is about */
        for (size_t i = 0; i < n; i++)
            if (strstr(why, cfg->destinations[i].name)) {
                where = cfg->destinations[i].where;
                break;
            }
        snprintf(err, errlen, "%s: outbound.destinations: %s", where, why);
        goto fail;
    }
    for (size_t i = 0; i < sizeof collectors / sizeof collectors[0]; i++)
        cs_metric_collector(collectors[i].name, collectors[i].help, "gauge", collectors[i].fn, ob);
    cs_outbox_set_wake(main, wake, ob->out);
    if (cs_out_start(ob->out) != 0) {
        snprintf(err, errlen, "outbound: cannot start the dispatcher thread");
        goto fail;
    }
    free(dc);
    cs_info("out", "dispatcher started", "\"destinations\":%zu", n);
    return ob;
fail:
    free(dc);
    cs_outbound_stop(ob);
    return NULL;
}

void cs_outbound_stop(cs_outbound *ob)
{
    if (!ob) return;
    cs_outbox_set_wake(ob->main, NULL, NULL);
    for (size_t i = 0; i < sizeof collectors / sizeof collectors[0]; i++)
        cs_metric_collector(collectors[i].name, collectors[i].help, "gauge", NULL, NULL);
    cs_out_destroy(ob->out); /* gives queued and in-flight deliveries back: redelivered at once */
    if (ob->st) ob->st->ops->close(ob->st);
    free(ob);
}
