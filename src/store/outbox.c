/*
 * store/outbox — the backend-independent side of the transactional outbox:
 * the pipeline's enqueue (inside its batch transaction), deterministic ids,
 * and the wake hook called after a commit that wrote outbox rows.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "core/util.h"
#include "store/store.h"

/* The hook's (fn, ctx) pair is read by the pipeline thread after a commit
 * and set by serve: one lock keeps the pair consistent. */
static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;

static int valid_name(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max) return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return 0;
    return 1;
}

/* The ingest time a payload carries as top-level "received_at", in epoch
 * ms; -1 when it has none. */
static int64_t received_ms(const char *payload)
{
    if (!strstr(payload, "\"received_at\"")) return -1; /* most payloads: no parse */
    cJSON *j = cJSON_Parse(payload);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "received_at");
    int64_t us, ms = -1;
    if (cJSON_IsString(v) && cs_parse_time(v->valuestring, &us) == 0) ms = us / 1000;
    cJSON_Delete(j);
    return ms;
}

int cs_outbox_enqueue(cs_store *st, const char *dest, const char *id, const char *payload, const cs_cause *cause)
{
    if (!valid_name(dest, 63) || !valid_name(id, 95) || !payload || !*payload) {
        snprintf(st->errmsg, sizeof st->errmsg, "outbox enqueue: bad destination, id or payload");
        st->retriable = 0;
        return -1;
    }
    if (!st->ops->outbox_insert) {
        snprintf(st->errmsg, sizeof st->errmsg, "outbox enqueue: the %s store has no outbox", st->ops->name);
        st->retriable = 0;
        return -1;
    }
    int rc = st->ops->outbox_insert(st, dest, id, payload, cs_now_us() / 1000, received_ms(payload), cause);
    if (rc == 1) st->outbox_dirty = 1;
    return rc;
}

void cs_outbox_id(const char *event_id, const char *rule_id, const char *dest, char *out, size_t outlen)
{
    cs_buf b;
    cs_buf_init(&b);
    /* NUL separators: ("a", "bc") and ("ab", "c") differ */
    cs_buf_add(&b, event_id ? event_id : "", strlen(event_id ? event_id : "") + 1);
    cs_buf_add(&b, rule_id ? rule_id : "", strlen(rule_id ? rule_id : "") + 1);
    cs_buf_add(&b, dest ? dest : "", strlen(dest ? dest : ""));
    uint32_t a = (uint32_t)cs_murmur2(b.data, b.len), c = cs_crc32c(0, b.data, b.len),
             d = cs_crc32c(0x9e3779b9u, b.data, b.len);
    snprintf(out, outlen, "msg_%08x%08x%08x", a, c, d);
    cs_buf_free(&b);
}

void cs_outbox_set_wake(cs_store *st, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&hook_mu);
    st->outbox_wake = fn;
    st->outbox_wake_ctx = fn ? ctx : NULL;
    pthread_mutex_unlock(&hook_mu);
}

void cs_outbox_wake(cs_store *st)
{
    pthread_mutex_lock(&hook_mu);
    if (st->outbox_wake) st->outbox_wake(st->outbox_wake_ctx);
    pthread_mutex_unlock(&hook_mu);
}

void cs_outbox_tx_end(cs_store *st, int committed)
{
    int dirty = st->outbox_dirty;
    st->outbox_dirty = 0;
    if (dirty && committed) cs_outbox_wake(st);
}
