/*
 * out/source_store — see source_store.h. Stateless: every call is one
 * statement on the store (the claim, one UPDATE ... RETURNING).
 */
#include "out/source_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "core/util.h"
#include "metrics/catalog.h"

typedef struct fill {
    cs_out_delivery *out;
    int              n, max;
} fill;

static int on_claimed(const cs_outbox_row *r, void *arg)
{
    fill *f = arg;
    if (f->n == f->max) return 1;
    cs_out_delivery *d = &f->out[f->n++];
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", r->id);
    snprintf(d->dest, sizeof d->dest, "%s", r->dest);
    d->payload = cs_strdup(r->payload ? r->payload : "");
    d->payload_len = strlen(d->payload);
    d->attempt = r->attempt;
    d->created_at_ms = r->created_at_ms;
    d->next_attempt_ms = r->next_attempt_ms;
    return 0;
}

static int st_claim(void *ctx, const char *dest, int64_t now_ms, int64_t lease_until_ms, cs_out_delivery *out,
                    int max)
{
    cs_store *st = ctx;
    fill f = {out, 0, max};
    int n = st->ops->outbox_claim(st, dest, now_ms, lease_until_ms, max, on_claimed, &f);
    return n < 0 ? -1 : f.n;
}

/* One report; counts the outcome by destination. */
static int report(cs_store *st, int what, const char *id, int attempt, int64_t ms, const char *text)
{
    char dest[64] = "";
    int64_t received = -1;
    int rc = st->ops->outbox_report(st, what, id, attempt, ms, text, dest, &received);
    if (rc < 0) return -1;
    if (rc == 0 || what == CS_OUTBOX_RELEASE) return 0; /* not claimed (a late report): nothing changed */
    static const char *const status[] = {"delivered", "retry", "dead"};
    char labels[160];
    snprintf(labels, sizeof labels, "destination=\"%s\",status=\"%s\"", dest, status[what]);
    cs_metric_inc(cs_m.webhook_deliveries, labels, 1);
    if (what == CS_OUTBOX_DELIVERED && received >= 0 && ms >= received) {
        snprintf(labels, sizeof labels, "destination=\"%s\"", dest);
        cs_hist_observe(cs_metric_series(cs_m.webhook_latency, labels), (double)(ms - received) / 1000.0);
    }
    return 0;
}

static int st_delivered(void *ctx, const char *id, int attempt, int64_t at_ms)
{
    return report(ctx, CS_OUTBOX_DELIVERED, id, attempt, at_ms, NULL);
}

static int st_retry(void *ctx, const char *id, int attempt, int64_t next_ms, const char *error)
{
    return report(ctx, CS_OUTBOX_RETRY, id, attempt, next_ms, error);
}

static int st_dead(void *ctx, const char *id, int attempt, const char *reason)
{
    cs_warn("out", "delivery moved to the DLQ", "\"delivery\":\"%s\",\"attempts\":%d", id, attempt);
    return report(ctx, CS_OUTBOX_DEAD, id, attempt, cs_now_us() / 1000, reason);
}

static int st_release(void *ctx, const char *id)
{
    return report(ctx, CS_OUTBOX_RELEASE, id, 0, 0, NULL);
}

static const cs_out_source_ops store_ops = {
    .claim = st_claim,
    .delivered = st_delivered,
    .retry = st_retry,
    .dead = st_dead,
    .release = st_release,
};

cs_out_source cs_out_store_source(cs_store *st)
{
    cs_metrics_catalog_init();
    return (cs_out_source){.ops = &store_ops, .ctx = st};
}
