/*
 * ingest — what every ingest endpoint shares: set-up and the dedupe
 * rebuild, body decoding and auth, and one request's batch (validate →
 * serialize → dedupe → append → answer). See ingest.h and batch.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "http/errors.h"
#include "ingest/batch.h"
#include "ingest/body.h"
#include "ingest/jsonarena.h"
#include "ingest/jsoncheck.h"
#include "ingest/jsonfast.h"
#include "metrics/catalog.h"

/* ------------------------------------------------------------ set-up */

struct rebuild {
    cs_dedupe *d;
    int64_t    since_us;  /* records ingested before this are outside the window */
    uint32_t   now_s;
    int64_t    next;
    uint64_t   ids, records;
};

static int on_rebuild_rec(const cs_rec *rec, void *arg)
{
    struct rebuild *r = arg;
    r->next = rec->offset + 1;
    r->records++;
    if (rec->ts_us < r->since_us) return 0;
    uint64_t id[2], payload;
    const char *rd;
    size_t rdlen;
    if (cs_ingest_redrive_mark(rec->value, rec->value_len, &rd, &rdlen)) { /* ingest/redrive.c */
        cs_ingest_redrive_key(rd, rdlen, id);
        cs_dedupe_add(r->d, id, 0, (uint32_t)(rec->ts_us / 1000000), r->now_s);
        return 0;
    }
    if (cs_event_dedupe_keys(rec->value, rec->value_len, id, &payload) != 0) return 0;
    cs_dedupe_add(r->d, id, payload, (uint32_t)(rec->ts_us / 1000000), r->now_s);
    r->ids++;
    return 0;
}

int cs_ingest_init(cs_ingest *ing, cs_bus *bus, const cs_config *cfg, char *err, size_t errlen)
{
    memset(ing, 0, sizeof *ing);
    cs_metrics_catalog_init();
    cs_json_arena_install(); /* before the server's threads use cJSON */
    ing->bus = bus;
    ing->cfg = cfg;
    cs_auth_init(&ing->auth, cfg);
    cs_dedupe_init(&ing->dedupe, (uint64_t)cfg->dedupe_max_ids, (uint32_t)cfg->dedupe_window_s);
    ing->dedupe_bytes = ing->dedupe.bytes;
    if (!bus) return 0;
    int64_t t0 = cs_mono_us(), now = cs_now_us();
    struct rebuild r = {&ing->dedupe, now - (int64_t)cfg->dedupe_window_s * 1000000, (uint32_t)(now / 1000000), 0,
                        0, 0};
    for (int p = 0; p < bus->partitions; p++) {
        int64_t end = bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
        r.next = 0;
        while (r.next < end) {
            int64_t from = r.next;
            int n = bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, from, 65536, on_rebuild_rec, &r);
            if (n < 0) {
                snprintf(err, errlen, "dedupe rebuild: cannot read partition %d of %s at offset %lld", p,
                         CS_TOPIC_EVENTS, (long long)from);
                return -1;
            }
            if (n == 0 || r.next == from) break;
        }
    }
    ing->dedupe_rebuilt_ids = r.ids;
    ing->dedupe_rebuild_records = r.records;
    ing->dedupe_rebuild_ms = (double)(cs_mono_us() - t0) / 1000.0;
    return 0;
}

void cs_ingest_destroy(cs_ingest *ing)
{
    if (!ing) return;
    cs_auth_destroy(&ing->auth);
    cs_dedupe_destroy(&ing->dedupe);
}

/* ------------------------------------------------------- request level */

int cs_ingest_fail(cs_ingest *ing, cs_buf *resp, int status, const char *code, const char *msg, const char *field)
{
    if (ing) __atomic_add_fetch(&ing->requests_failed, 1, __ATOMIC_RELAXED);
    cs_buf_reset(resp);
    cs_json_error(resp, code, msg, field);
    return status;
}

int cs_ingest_open(cs_ingest *ing, const cs_ingest_req *req, cs_ingest_body *b, cs_buf *resp)
{
    int st = cs_ingest_open_raw(ing, req, b, resp);
    return st ? st : cs_ingest_utf8(ing, b, resp);
}

int cs_ingest_utf8(cs_ingest *ing, const cs_ingest_body *b, cs_buf *resp)
{
    long bad = cs_utf8_invalid_at(b->data, b->len);
    if (bad < 0) return 0;
    char msg[96];
    snprintf(msg, sizeof msg, "invalid UTF-8 at byte %ld", bad);
    return cs_ingest_fail(ing, resp, 400, "invalid_utf8", msg, NULL);
}

static int json_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

int cs_ingest_parse_one(cs_ingest *ing, const cs_ingest_body *b, cJSON **root, cs_buf *resp)
{
    *root = NULL;
    size_t start = cs_ingest_bom(b->data, b->len), end = 0;
    cJSON *v = cs_json_fast_parse(b->data + start, b->len - start, &end);
    if (v) {
        const char *p = b->data + start + end, *stop = b->data + b->len;
        while (p < stop && json_ws(*p)) p++;
        if (p == stop) return *root = v, 0;
        cs_json_arena_delete(v);
    }
    /* The checked path, in the order it always ran. */
    int status = cs_ingest_utf8(ing, b, resp);
    if (status) return status;
    const char *p = b->data + start, *end_ = b->data + b->len;
    while (p < end_ && json_ws(*p)) p++;
    if (p == end_) return cs_ingest_fail(ing, resp, 400, "empty_body", "the request body is empty", NULL);
    status = cs_ingest_syntax(ing, b->data, b->len, (size_t)(p - b->data), 0, resp);
    if (status) return status;
    const char *stop = NULL;
    v = cJSON_ParseWithLengthOpts(p, (size_t)(end_ - p), &stop, 0);
    if (!v) return cs_ingest_parse_error(ing, b->data, b->len, stop, resp);
    while (stop < end_ && json_ws(*stop)) stop++;
    if (stop < end_) {
        cs_json_arena_delete(v);
        char msg[128];
        snprintf(msg, sizeof msg, "unexpected data after the JSON value at byte %ld", (long)(stop - b->data));
        return cs_ingest_fail(ing, resp, 400, "malformed_json", msg, NULL);
    }
    *root = v;
    return 0;
}

int cs_ingest_open_raw(cs_ingest *ing, const cs_ingest_req *req, cs_ingest_body *b, cs_buf *resp)
{
    memset(b, 0, sizeof *b);
    cs_buf_init(&b->decoded);
    if (ing->auth.nkeys && req->authorization) {
        char user[512];
        b->header_key = 1;
        if (cs_auth_basic_user(req->authorization, user, sizeof user) != 0) {
            __atomic_add_fetch(&ing->unauthorized, 1, __ATOMIC_RELAXED);
            return cs_ingest_fail(ing, resp, 401, "unauthorized",
                                  "the Authorization header must be Basic with the write key as the user name",
                                  "Authorization");
        }
        b->key = cs_auth_lookup(&ing->auth, user, strlen(user));
        if (!b->key) {
            __atomic_add_fetch(&ing->unauthorized, 1, __ATOMIC_RELAXED);
            return cs_ingest_fail(ing, resp, 401, "unauthorized", "unknown write key", "Authorization");
        }
    }
    int st = cs_body_decode(req->content_encoding, req->body, req->len, (size_t)ing->cfg->max_body_bytes,
                            &b->decoded, &b->data, &b->len, resp);
    if (st) {
        __atomic_add_fetch(&ing->requests_failed, 1, __ATOMIC_RELAXED);
        return st;
    }
    return 0;
}

void cs_ingest_body_free(cs_ingest_body *b)
{
    cs_buf_free(&b->decoded);
}

int cs_ingest_authorize(cs_ingest *ing, cs_ingest_body *b, const char *body_key, size_t nevents, cs_buf *resp,
                        int *retry_after)
{
    if (!ing->auth.nkeys) return 0;
    if (!b->key) {
        if (!body_key || !*body_key) {
            __atomic_add_fetch(&ing->unauthorized, 1, __ATOMIC_RELAXED);
            return cs_ingest_fail(ing, resp, 401, "unauthorized",
                                  "a write key is required: Basic auth with the key as the user name, or writeKey in "
                                  "the body",
                                  "writeKey");
        }
        b->key = cs_auth_lookup(&ing->auth, body_key, strlen(body_key));
        if (!b->key) {
            __atomic_add_fetch(&ing->unauthorized, 1, __ATOMIC_RELAXED);
            return cs_ingest_fail(ing, resp, 401, "unauthorized", "unknown write key", "writeKey");
        }
    }
    int wait = cs_auth_take(&ing->auth, b->key, nevents, cs_mono_us());
    if (wait) {
        __atomic_add_fetch(&ing->rate_limited, 1, __ATOMIC_RELAXED);
        char msg[160];
        snprintf(msg, sizeof msg, "write key \"%.60s\" is over its rate limit of %g events/s; retry after %d s",
                 b->key->name, b->key->rate, wait);
        *retry_after = wait;
        return cs_ingest_fail(ing, resp, 429, "rate_limited", msg, NULL);
    }
    return 0;
}

int cs_ingest_parse_error(cs_ingest *ing, const char *body, size_t len, const char *stop, cs_buf *resp)
{
    char msg[160];
    long deep = cs_json_too_deep_at(body, len, CS_JSON_MAX_DEPTH + 2);
    if (deep >= 0) {
        snprintf(msg, sizeof msg, "JSON nesting deeper than the limit of %d at byte %ld", CS_JSON_MAX_DEPTH, deep);
        return cs_ingest_fail(ing, resp, 400, "too_deep", msg, NULL);
    }
    snprintf(msg, sizeof msg, "malformed JSON at byte %ld", stop ? (long)(stop - body) : 0L);
    return cs_ingest_fail(ing, resp, 400, "malformed_json", msg, NULL);
}

size_t cs_ingest_bom(const char *body, size_t len)
{
    return len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
}

int cs_ingest_syntax(cs_ingest *ing, const char *body, size_t len, size_t start, int multi, cs_buf *resp)
{
    size_t at = 0;
    int rc = cs_json_syntax(body, len, start, multi, &at);
    if (rc == CS_JSON_OK) return 0;
    if (rc == CS_JSON_BAD || rc == CS_JSON_DEEP) return cs_ingest_parse_error(ing, body, len, body + at, resp);
    char msg[160];
    snprintf(msg, sizeof msg, "%s at byte %zu",
             rc == CS_JSON_NUL         ? "\\u0000 (NUL) is not allowed in strings"
             : rc == CS_JSON_SURROGATE ? "a lone UTF-16 surrogate escape (\\uD800-\\uDFFF without its pair)"
                                       : "a number outside the range of a double",
             at);
    return cs_ingest_fail(ing, resp, 400, "invalid_value", msg, NULL);
}

/* --------------------------------------------------------- batch level */

void cs_batch_init(cs_batch *b, cs_ingest *ing, const char *source, const char *id_field, int64_t received_us,
                   size_t total)
{
    memset(b, 0, sizeof *b);
    b->ing = ing;
    b->meta.source = source;
    b->meta.received_us = received_us;
    b->id_field = id_field;
    b->total = total;
    char l[64];
    snprintf(l, sizeof l, "source=\"%s\"", source);
    cs_metric_inc(cs_m.events_received, l, total);
    cs_buf_init(&b->vals);
    cs_buf_init(&b->rej);
    /* Room for the whole request up front (bounded by max_batch_events):
     * growing a large buffer by realloc cost more than writing into it. */
    size_t hint = total < 4096 ? total : 4096;
    cs_buf_reserve(&b->vals, hint * 512);
    b->cap = hint ? hint : 1;
    b->items = cs_malloc(b->cap * sizeof *b->items);
}

void cs_batch_free(cs_batch *b)
{
    cs_buf_free(&b->vals);
    cs_buf_free(&b->rej);
    free(b->items);
    b->items = NULL;
}

void cs_batch_reject(cs_batch *b, size_t index, const cs_verr *err)
{
    char l[128];
    snprintf(l, sizeof l, "source=\"%s\",reason=\"%s\"", b->meta.source, err->code);
    cs_metric_inc(cs_m.events_rejected, l, 1);
    if (b->nrej++ == 0) b->first = *err;
    cs_buf_printf(&b->rej, "%s{\"index\":%zu,\"code\":", b->nrej > 1 ? "," : "", index);
    cs_buf_json_str(&b->rej, err->code);
    cs_buf_adds(&b->rej, ",\"field\":");
    cs_buf_json_str(&b->rej, err->field);
    cs_buf_adds(&b->rej, ",\"message\":");
    cs_buf_json_str(&b->rej, err->message);
    cs_buf_adds(&b->rej, "}");
}

static void verr(cs_verr *err, const char *code, const char *field, const char *msg)
{
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field);
    snprintf(err->message, sizeof err->message, "%s", msg);
}

static void reject_mapped(cs_batch *b, size_t index, cs_verr *err, cs_field_map map, void *map_arg);
static void queue(cs_batch *b, size_t index, cs_event *evp, int has_client_ts, int64_t client_ts_us,
                  cs_field_map map, void *map_arg);

void cs_batch_add(cs_batch *b, size_t index, const cJSON *obj, int has_client_ts, int64_t client_ts_us,
                  cs_field_map map, void *map_arg)
{
    cs_event ev;
    cs_verr err;
    if (cs_event_validate(obj, b->meta.received_us, &ev, &err) != 0) return reject_mapped(b, index, &err, map, map_arg);
    queue(b, index, &ev, has_client_ts, client_ts_us, map, map_arg);
}

void cs_batch_add_event(cs_batch *b, size_t index, cs_event *ev, int has_client_ts, int64_t client_ts_us,
                        cs_field_map map, void *map_arg)
{
    cs_verr err;
    if (cs_event_check(ev, &err) != 0) return reject_mapped(b, index, &err, map, map_arg);
    queue(b, index, ev, has_client_ts, client_ts_us, map, map_arg);
}

/* The checks against the policy, the canonical bytes, the queue. */
static void queue(cs_batch *b, size_t index, cs_event *evp, int has_client_ts, int64_t client_ts_us,
                  cs_field_map map, void *map_arg)
{
    const cs_config *cfg = b->ing->cfg;
    const cs_event ev = *evp;
    cs_verr err;
    char msg[200];
    int64_t recv = b->meta.received_us;
    if (cfg->reject_unknown_types && !cs_event_type_known(ev.type)) {
        snprintf(msg, sizeof msg, "type \"%.64s\" is not a known type (ingest.unknown_types: reject)", ev.type);
        verr(&err, "unknown_type", "type", msg);
        goto reject;
    }
    if (ev.has_ts) {
        if (ev.ts_us > recv + (int64_t)cfg->max_future_s * 1000000) {
            snprintf(msg, sizeof msg, "timestamp is more than %ld s ahead of the server's clock (ingest.max_future)",
                     cfg->max_future_s);
            verr(&err, "implausible_timestamp", "timestamp", msg);
            goto reject;
        }
        if (cfg->max_age_s > 0 && ev.ts_us < recv - (int64_t)cfg->max_age_s * 1000000) {
            snprintf(msg, sizeof msg, "timestamp is more than %ld s in the past (ingest.max_age)", cfg->max_age_s);
            verr(&err, "implausible_timestamp", "timestamp", msg);
            goto reject;
        }
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->items = cs_realloc(b->items, b->cap * sizeof *b->items);
    }
    cs_batch_item *it = &b->items[b->n];
    size_t start = b->vals.len;
    cs_event_meta m = b->meta;
    m.has_client_ts = has_client_ts;
    m.client_ts_us = client_ts_us;
    if (!has_client_ts && ev.has_ts) m.has_client_ts = 1, m.client_ts_us = ev.ts_us;
    cs_event_serialize_full(&ev, &m, &b->vals, it->id, &it->payload);
    if ((long)(b->vals.len - start) > cfg->max_event_bytes) {
        snprintf(msg, sizeof msg, "the event is %zu bytes; the limit is %ld", b->vals.len - start,
                 cfg->max_event_bytes);
        verr(&err, "event_too_large", "", msg);
        b->vals.len = start;
        b->vals.data[start] = '\0';
        goto reject;
    }
    it->index = index;
    it->type_label = cs_metrics_type_label(ev.type);
    it->off = start;
    it->len = b->vals.len - start;
    const char *key = cs_event_key(&ev, it->key, sizeof it->key);
    if (key != it->key) {
        size_t kl = strnlen(key, sizeof it->key - 1);
        memcpy(it->key, key, kl);
        it->key[kl] = '\0';
    }
    b->n++;
    return;
reject:
    reject_mapped(b, index, &err, map, map_arg);
}

static void reject_mapped(cs_batch *b, size_t index, cs_verr *errp, cs_field_map map, void *map_arg)
{
    cs_verr err = *errp;
    if (map && err.field[0]) {
        char f[sizeof err.field];
        map(err.field, f, sizeof f, map_arg);
        if (strcmp(f, err.field) != 0) {
            /* The message names the field too: say it in the sender's words. */
            char m2[sizeof err.message];
            size_t fl = strlen(err.field);
            if (strncmp(err.message, err.field, fl) == 0) {
                snprintf(m2, sizeof m2, "%s%s", f, err.message + fl);
                memcpy(err.message, m2, sizeof m2);
            }
            memcpy(err.field, f, sizeof f);
        }
    }
    cs_batch_reject(b, index, &err);
}

/* Types the leads lane consumes (pipeline/lane.c). */
int cs_ingest_is_lane_type(const char *type)
{
    return type && (strcmp(type, "LeadCreated") == 0 || strcmp(type, "DemoRequested") == 0 ||
                    strcmp(type, "TrialActivated") == 0);
}

static int produce_leads(cs_bus *bus, const cs_msg *msgs, const char *const *types, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += cs_ingest_is_lane_type(types[i]);
    if (k == 0) return 0;
    cs_msg *lm = cs_malloc(k * sizeof *lm);
    k = 0;
    for (size_t i = 0; i < n; i++)
        if (cs_ingest_is_lane_type(types[i])) lm[k++] = msgs[i];
    int rc = bus->ops->produce(bus, CS_TOPIC_LEADS, lm, k);
    free(lm);
    return rc;
}

int cs_batch_finish(cs_batch *b, cs_buf *resp, int *retry_after)
{
    cs_ingest *ing = b->ing;
    cs_dedupe *d = ing->dedupe.ring ? &ing->dedupe : NULL;
    size_t accepted = 0, dups = 0, conflicts = 0;
    int status = 200;
    cs_verr conflict_err = {0};
    cs_msg *msgs = cs_malloc((b->n ? b->n : 1) * sizeof *msgs);
    uint64_t(*claimed)[2] = cs_malloc((b->n ? b->n : 1) * sizeof *claimed);
    size_t *todo = cs_malloc((b->n ? b->n : 1) * sizeof *todo), ntodo = b->n;
    const char **types = cs_malloc((b->n ? b->n : 1) * sizeof *types);
    for (size_t i = 0; i < b->n; i++) todo[i] = i;
    if (b->n && ing->backlog && ing->cfg->pipeline_max_lag > 0) {
        int64_t lag = ing->backlog(ing->backlog_arg);
        if (lag > ing->cfg->pipeline_max_lag) {
            char msg[160];
            snprintf(msg, sizeof msg, "the pipeline is %lld events behind (pipeline.max_lag %ld); retry later",
                     (long long)lag, ing->cfg->pipeline_max_lag);
            *retry_after = 1;
            free(msgs), free(claimed), free(todo), free(types);
            return cs_ingest_fail(ing, resp, 503, "backpressure", msg, NULL);
        }
    }
    uint32_t owner = d ? cs_dedupe_owner(d) : 0;
    uint32_t now_s = (uint32_t)(b->meta.received_us / 1000000);
    /* Rounds: an id pending under another request is retried after that
     * request resolves, holding nothing of ours meanwhile (no deadlock). */
    while (ntodo) {
        size_t nmsg = 0, nbusy = 0;
        if (d) {
            for (size_t t = 0; t < ntodo; t++) cs_dedupe_prefetch(d, b->items[todo[t]].id);
            cs_dedupe_prefetch_evictions(d, ntodo);
        }
        for (size_t t = 0; t < ntodo; t++) {
            cs_batch_item *it = &b->items[todo[t]];
            enum cs_dd_result r = d ? cs_dedupe_claim(d, it->id, it->payload, now_s, owner) : CS_DD_NEW;
            if (r == CS_DD_NEW) {
                types[nmsg] = it->type_label;
                memcpy(claimed[nmsg], it->id, sizeof it->id);
                msgs[nmsg++] = (cs_msg){.key = it->key, .key_len = strlen(it->key), .value = b->vals.data + it->off,
                                        .value_len = it->len, .ts_us = b->meta.received_us};
            } else if (r == CS_DD_DUP) {
                dups++;
            } else if (r == CS_DD_CONFLICT) {
                char msg[200];
                snprintf(msg, sizeof msg, "%s was already accepted with a different payload", b->id_field);
                verr(&conflict_err, "id_conflict", b->id_field, msg);
                cs_batch_reject(b, it->index, &conflict_err);
                conflicts++;
            } else {
                todo[nbusy++] = todo[t];
            }
        }
        int64_t t0 = cs_mono_us();
        /* The leads lane first (DESIGN-BRIEF §3.5): lead and signup events
         * in ingest order, so routing decisions do not depend on how many
         * workers run. If "events" then fails, the client's retry appends
         * the lead again; the lane applies an event id once. */
        int prc = nmsg ? produce_leads(ing->bus, msgs, types, nmsg) : 0;
        if (prc == 0 && nmsg) prc = ing->bus->ops->produce(ing->bus, CS_TOPIC_EVENTS, msgs, nmsg);
        if (nmsg && prc == 0) {
            size_t bytes = 0;
            for (size_t k = 0; k < nmsg; k++) bytes += msgs[k].value_len + msgs[k].key_len;
            cs_hist_observe(cs_metric_series(cs_m.log_append_seconds, NULL), (double)(cs_mono_us() - t0) / 1e6);
            cs_metric_inc(cs_m.log_append_bytes, NULL, bytes);
        }
        if (nmsg && prc != 0) {
            if (d) cs_dedupe_resolve(d, owner, (const uint64_t(*)[2])claimed, nmsg, 0);
            cs_error("ingest", "append to the log failed; nothing acknowledged", "\"error\":\"%s\"", strerror(errno));
            *retry_after = 1;
            status = cs_ingest_fail(ing, resp, 503, "log_unavailable",
                                    "the event log could not take the write; retry later", NULL);
            goto out;
        }
        if (d && nmsg) cs_dedupe_resolve(d, owner, (const uint64_t(*)[2])claimed, nmsg, 1);
        /* One counter update per type label, not per event. */
        for (size_t k = 0; k < nmsg; k++) {
            if (!types[k]) continue;
            const char *t = types[k];
            size_t cnt = 0;
            for (size_t j = k; j < nmsg; j++)
                if (types[j] == t || (types[j] && strcmp(types[j], t) == 0)) cnt++, types[j] = NULL;
            char l[96];
            snprintf(l, sizeof l, "source=\"%s\",type=\"%s\"", b->meta.source, t);
            cs_metric_inc(cs_m.events_accepted, l, cnt);
        }
        accepted += nmsg;
        ntodo = nbusy;
        for (size_t t = 0; t < ntodo; t++) cs_dedupe_wait(d, b->items[todo[t]].id, 10000);
    }
    __atomic_add_fetch(&ing->accepted, accepted, __ATOMIC_RELAXED);
    __atomic_add_fetch(&ing->duplicates, dups, __ATOMIC_RELAXED);
    if (dups) {
        char l[64];
        snprintf(l, sizeof l, "source=\"%s\"", b->meta.source);
        cs_metric_inc(cs_m.events_duplicate, l, dups);
    }
    __atomic_add_fetch(&ing->rejected, b->nrej, __ATOMIC_RELAXED);
    cs_buf_reset(resp);
    if (b->total == 1 && conflicts == 1) {
        cs_json_error(resp, "id_conflict", conflict_err.message, conflict_err.field);
        status = 409;
    } else if (accepted == 0 && dups == 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s%s", b->total > 1 ? "every event failed validation; first: " : "",
                 b->first.message);
        cs_json_error(resp, b->first.code, msg, b->first.field);
        resp->len--; /* reopen the outer object to add the per-event list */
        cs_buf_printf(resp, ",\"accepted\":0,\"duplicates\":0,\"rejected\":[%s]}", b->rej.data ? b->rej.data : "");
        status = 422;
    } else {
        cs_buf_printf(resp, "{\"accepted\":%zu,\"duplicates\":%zu,\"rejected\":[%s]}", accepted, dups,
                      b->rej.data ? b->rej.data : "");
    }
out:
    free(msgs);
    free(claimed);
    free(todo);
    free(types);
    return status;
}
