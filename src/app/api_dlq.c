/*
 * app/api_dlq — the dead-letter queue over HTTP (design brief §5):
 *   GET  /api/v1/dlq[?kind=delivery&destination=&limit=&cursor=]
 *   GET  /api/v1/dlq/{id}
 *   POST /api/v1/dlq/redrive   {"ids": [...]} | {"all": true} [, "kind": "event"]
 *
 * Every item names its "kind": failed deliveries (kind "delivery": outbox
 * rows in state dead) and events the pipeline could not apply (kind
 * "event": rows of dead_events, pipeline/dlq.c). Redrive puts a delivery
 * back to pending with its attempts reset and the SAME id, so a receiver
 * that drops repeated webhook-ids sees it once; it appends an event again
 * to the log with a redrive marker (ingest/redrive.c), once per DLQ id, and
 * the pipeline applies it once.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000
#define REDRIVE_MAX_IDS 1000

static void unavailable(cs_http_resp *resp)
{
    resp->retry_after = 1;
    cs_http_error(resp, 503, "store_unavailable", "the store could not answer; retry", NULL);
}

static void ms_json(cs_buf *b, const char *name, int64_t ms)
{
    cs_buf_printf(b, ",\"%s\":", name);
    if (ms < 0) {
        cs_buf_adds(b, "null");
        return;
    }
    char t[40];
    cs_fmt_time_ms(ms * 1000, t, sizeof t);
    cs_buf_json_str(b, t);
}

static void str_json(cs_buf *b, const char *name, const char *v)
{
    cs_buf_printf(b, ",\"%s\":", name);
    if (v) cs_buf_json_str(b, v);
    else cs_buf_adds(b, "null");
}

/* One delivery as a DLQ item; with_payload for show. */
static void delivery_json(cs_buf *b, const cs_outbox_row *r, int with_payload)
{
    cs_buf_adds(b, "{\"kind\":\"delivery\",\"id\":");
    cs_buf_json_str(b, r->id);
    str_json(b, "destination", r->dest);
    str_json(b, "state", r->state);
    str_json(b, "reason", r->last_error);
    cs_buf_printf(b, ",\"attempts\":%d,\"redrives\":%d", r->attempt, r->redrives);
    ms_json(b, "created_at", r->created_at_ms);
    ms_json(b, "failed_at", r->dead_at_ms);
    ms_json(b, "redriven_at", r->redriven_at_ms);
    ms_json(b, "delivered_at", r->delivered_at_ms);
    cs_buf_adds(b, ",\"cause\":{\"event_id\":");
    if (r->cause_event_id) cs_buf_json_str(b, r->cause_event_id);
    else cs_buf_adds(b, "null");
    cs_buf_printf(b, ",\"partition\":%d,\"offset\":%lld", r->partition, (long long)r->offset);
    str_json(b, "rule_id", r->rule_id);
    cs_buf_adds(b, "}");
    if (with_payload) {
        cs_buf_adds(b, ",\"payload\":");
        cJSON *j = r->payload ? cJSON_Parse(r->payload) : NULL;
        if (j) cs_buf_adds(b, r->payload); /* the JSON written by the rule, as it will be sent */
        else if (r->payload) cs_buf_json_str(b, r->payload);
        else cs_buf_adds(b, "null");
        cJSON_Delete(j);
    }
    cs_buf_adds(b, "}");
}

struct page {
    cs_buf *b;
    int     n, limit, more;
    int64_t last;
};

static int on_row(const cs_outbox_row *r, void *arg)
{
    struct page *p = arg;
    if (p->n == p->limit) {
        p->more = 1;
        return 1;
    }
    if (p->n++) cs_buf_adds(p->b, ",");
    delivery_json(p->b, r, 0);
    p->last = r->seq;
    return 0;
}

/* A dead-lettered event (kind "event"): a row of dead_events. */
struct evpage {
    cs_buf *b;
    int     n, limit, more;
    int64_t last;
};

static int on_dead_event(const cs_row *r, void *arg)
{
    struct evpage *p = arg;
    if (p->n == p->limit) {
        p->more = 1;
        return 1;
    }
    cs_buf_adds(p->b, p->n++ ? ",{\"kind\":\"event\"" : "{\"kind\":\"event\"");
    for (int i = 0; i < r->def->ncols; i++) {
        const char *name = r->def->cols[i].name, *v = r->vals[i];
        if (strcmp(name, "cause_event_id") == 0 || strcmp(name, "rule_id") == 0 || strcmp(name, "at") == 0) continue;
        cs_buf_printf(p->b, ",\"%s\":", name);
        if (!v) cs_buf_adds(p->b, "null");
        else if (r->def->cols[i].type == CS_COL_INT) cs_buf_adds(p->b, v);
        else cs_buf_json_str(p->b, v);
    }
    cs_buf_adds(p->b, "}");
    p->last = r->seq;
    return 0;
}

static void list_dead_events(cs_app *app, const cs_http_req *req, cs_http_resp *resp)
{
    int limit;
    int64_t cursor;
    if (cs_api_page_params(req, resp, &limit, &cursor)) return;
    const char *reason = cs_http_query(req, "reason");
    cs_kv f[1] = {{"reason", reason}};
    cs_buf_adds(&resp->body, "{\"items\":[");
    struct evpage p = {&resp->body, 0, limit, 0, cursor};
    if (app->store->ops->obj_list(app->store, CS_OBJ_DEAD_EVENT, cursor, limit + 1, f, reason && *reason ? 1 : 0,
                                  on_dead_event, &p) < 0) {
        cs_buf_reset(&resp->body);
        return unavailable(resp);
    }
    if (p.more) cs_buf_printf(&resp->body, "],\"next_cursor\":\"%lld\"}", (long long)p.last);
    else cs_buf_adds(&resp->body, "],\"next_cursor\":null}");
}

void cs_api_dlq_list(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    const char *kind = cs_http_query(req, "kind"), *dest = cs_http_query(req, "destination");
    const char *ls = cs_http_query(req, "limit"), *cs = cs_http_query(req, "cursor");
    int limit = LIST_DEFAULT;
    long long cursor = 0;
    char *end;
    if (kind && strcmp(kind, "delivery") != 0 && strcmp(kind, "event") != 0)
        return cs_http_error(resp, 400, "invalid_parameter", "kind must be delivery or event", "kind");
    if (ls) {
        errno = 0;
        long v = strtol(ls, &end, 10);
        if (errno || *end || end == ls || v < 1 || v > LIST_MAX)
            return cs_http_error(resp, 400, "invalid_parameter", "limit must be an integer from 1 to 1000", "limit");
        limit = (int)v;
    }
    if (cs && *cs) {
        errno = 0;
        cursor = strtoll(cs, &end, 10);
        if (errno || *end || cursor < 0)
            return cs_http_error(resp, 400, "invalid_parameter", "cursor is not one this server returned", "cursor");
    }
    if (kind && strcmp(kind, "event") == 0) return list_dead_events(app, req, resp);
    cs_buf_adds(&resp->body, "{\"items\":[");
    struct page p = {&resp->body, 0, limit, 0, cursor};
    if ((!kind || strcmp(kind, "delivery") == 0) &&
        app->store->ops->outbox_list(app->store, "dead", dest && *dest ? dest : NULL, cursor, limit + 1, on_row,
                                     &p) < 0) {
        cs_buf_reset(&resp->body);
        return unavailable(resp);
    }
    if (p.more) cs_buf_printf(&resp->body, "],\"next_cursor\":\"%lld\"}", (long long)p.last);
    else cs_buf_adds(&resp->body, "],\"next_cursor\":null}");
}

static int on_one(const cs_outbox_row *r, void *arg)
{
    delivery_json(arg, r, 1);
    return 1;
}

void cs_api_dlq_get(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    if (strncmp(req->param, "dlq_", 4) == 0) { /* an event (pipeline/dlq.c ids) */
        struct evpage p = {&resp->body, 0, 1, 0, 0};
        int n = app->store->ops->obj_get(app->store, CS_OBJ_DEAD_EVENT, req->param, on_dead_event, &p);
        if (n < 0) {
            cs_buf_reset(&resp->body);
            return unavailable(resp);
        }
        if (p.n == 0) return cs_http_error(resp, 404, "not_found", "no dead-lettered event with this id", "id");
        return; /* the first list item on_dead_event writes is the object itself */
    }
    int rc = app->store->ops->outbox_get(app->store, req->param, on_one, &resp->body);
    if (rc < 0) {
        cs_buf_reset(&resp->body);
        return unavailable(resp);
    }
    if (rc == 1) return cs_http_error(resp, 404, "not_found", "no delivery with this id", "id");
}

/* ---- redriving events ----------------------------------------------------
 * The original bytes and key come from the log (the DLQ id names the
 * partition and offset); ingest/redrive.c appends them again with the
 * marker, once per DLQ id. The pipeline marks the entry "redriven" when it
 * applies the copy. */
struct dead_row {
    int  found;
    char status[32];
};

static int on_dead_row(const cs_row *r, void *arg)
{
    struct dead_row *d = arg;
    int k = cs_obj_col(r->def, "status");
    d->found = 1;
    snprintf(d->status, sizeof d->status, "%s", k >= 0 && r->vals[k] ? r->vals[k] : "");
    return 0;
}

struct orig_rec {
    int64_t offset;
    int     found;
    cs_buf  key, val;
};

static int on_orig(const cs_rec *rec, void *arg)
{
    struct orig_rec *o = arg;
    if (rec->offset == o->offset) {
        o->found = 1;
        cs_buf_add(&o->key, rec->key, rec->key_len);
        cs_buf_add(&o->val, rec->value, rec->value_len);
    }
    return 1;
}

/* 1 redriven, 0 not in the DLQ, 2 already redriven, 3 cannot be redriven
 * (undecodable, or no longer in the log), -1 store, -2 log error. */
static int redrive_event(cs_app *app, const char *id)
{
    struct dead_row d = {0, ""};
    if (app->store->ops->obj_get(app->store, CS_OBJ_DEAD_EVENT, id, on_dead_row, &d) < 0) return -1;
    if (!d.found) return 0;
    if (strcmp(d.status, "dead") != 0) return 2;
    int p;
    long long off;
    if (sscanf(id, "dlq_%d_%lld", &p, &off) != 2 || p < 0 || p >= app->bus->partitions) return 3;
    struct orig_rec o = {off, 0, {0}, {0}};
    cs_buf_init(&o.key);
    cs_buf_init(&o.val);
    int rc = 3;
    if (app->bus->ops->fetch(app->bus, CS_TOPIC_EVENTS, p, off, 1, on_orig, &o) >= 0 && o.found && o.val.len &&
        o.val.data[0] == '{') {
        cs_buf_add(&o.key, "", 1); /* NUL */
        int r = cs_ingest_redrive(&app->ingest, id, o.key.data, o.val.data, o.val.len);
        rc = r == 1 ? 1 : r == 0 ? 2 : errno == EINVAL ? 3 : -2;
    }
    cs_buf_free(&o.key);
    cs_buf_free(&o.val);
    return rc;
}

struct dead_ids {
    cs_buf  ids;   /* NUL-separated */
    int     n;
    int64_t last;
};

static int on_dead_id(const cs_row *r, void *arg)
{
    struct dead_ids *c = arg;
    int k = cs_obj_col(r->def, "id");
    c->last = r->seq;
    if (k >= 0 && r->vals[k]) {
        cs_buf_add(&c->ids, r->vals[k], strlen(r->vals[k]) + 1);
        c->n++;
    }
    return 0;
}

static void add_id(cs_buf *b, int *n, const char *id)
{
    if ((*n)++) cs_buf_adds(b, ",");
    cs_buf_json_str(b, id);
}

static void redrive_events(cs_app *app, const cJSON *ids, int all, cs_http_resp *resp)
{
    struct dead_ids c;
    memset(&c, 0, sizeof c);
    cs_buf_init(&c.ids);
    if (all) { /* every entry still dead */
        cs_kv f[] = {{"status", "dead"}};
        for (;;) {
            int64_t before = c.last;
            int n = app->store->ops->obj_list(app->store, CS_OBJ_DEAD_EVENT, c.last, 1000, f, 1, on_dead_id, &c);
            if (n < 0) {
                cs_buf_free(&c.ids);
                return unavailable(resp);
            }
            if (n == 0 || c.last == before) break;
        }
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, ids)
    {
        cs_buf_add(&c.ids, it->valuestring, strlen(it->valuestring) + 1);
        c.n++;
    }
    cs_buf lists[3];
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) cs_buf_init(&lists[i]);
    long redriven = 0;
    const char *id = c.ids.data;
    for (int i = 0; i < c.n; i++, id += strlen(id) + 1) {
        int r = redrive_event(app, id);
        if (r < 0) {
            for (int k = 0; k < 3; k++) cs_buf_free(&lists[k]);
            cs_buf_free(&c.ids);
            cs_buf_reset(&resp->body);
            if (r == -2) {
                resp->retry_after = 1;
                return cs_http_error(resp, 503, "log_unavailable", "the event log could not take the write; retry later",
                                     NULL);
            }
            return unavailable(resp);
        }
        if (r == 1) redriven++;
        else add_id(&lists[r == 0 ? 0 : r == 2 ? 1 : 2], &counts[r == 0 ? 0 : r == 2 ? 1 : 2], id);
    }
    cs_buf_printf(&resp->body,
                  "{\"kind\":\"event\",\"redriven\":%ld,\"not_found\":[%s],\"already_redriven\":[%s],"
                  "\"not_redrivable\":[%s]}",
                  redriven, lists[0].data ? lists[0].data : "", lists[1].data ? lists[1].data : "",
                  lists[2].data ? lists[2].data : "");
    for (int k = 0; k < 3; k++) cs_buf_free(&lists[k]);
    cs_buf_free(&c.ids);
}

void cs_api_dlq_redrive(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    cJSON *j = req->body_len ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "ids"), *all = cJSON_GetObjectItemCaseSensitive(j, "all");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(j, "kind");
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return cs_http_error(resp, 400, "invalid_json", "expected {\"ids\": [...]} or {\"all\": true}", NULL);
    }
    if (kind && !(cJSON_IsString(kind) && (strcmp(kind->valuestring, "delivery") == 0 ||
                                           strcmp(kind->valuestring, "event") == 0))) {
        cJSON_Delete(j);
        return cs_http_error(resp, 422, "invalid_field", "kind: expected delivery or event", "kind");
    }
    int want_all = cJSON_IsTrue(all);
    if (all && !cJSON_IsBool(all)) {
        cJSON_Delete(j);
        return cs_http_error(resp, 422, "invalid_field", "all must be true or false", "all");
    }
    if (want_all == (ids != NULL) || (ids && (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) < 1 ||
                                               cJSON_GetArraySize(ids) > REDRIVE_MAX_IDS))) {
        cJSON_Delete(j);
        return cs_http_error(resp, 422, "invalid_field",
                             "give either ids (an array of 1 to 1000 delivery ids) or all: true", "ids");
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, ids) if (!cJSON_IsString(it) || !*it->valuestring)
    {
        cJSON_Delete(j);
        return cs_http_error(resp, 422, "invalid_field", "ids: every id is a non-empty string", "ids");
    }
    if (kind && strcmp(kind->valuestring, "event") == 0) {
        redrive_events(app, ids, want_all, resp);
        cJSON_Delete(j);
        return;
    }
    int64_t now = cs_now_us() / 1000;
    long total = 0;
    cs_buf missing;
    cs_buf_init(&missing);
    int nmissing = 0;
    if (want_all) {
        int n = app->store->ops->outbox_redrive(app->store, NULL, now);
        if (n < 0) goto fail;
        total = n;
    }
    cJSON_ArrayForEach(it, ids)
    {
        int n = app->store->ops->outbox_redrive(app->store, it->valuestring, now);
        if (n < 0) goto fail;
        if (n == 0) {
            if (nmissing++) cs_buf_adds(&missing, ",");
            cs_buf_json_str(&missing, it->valuestring);
        }
        total += n;
    }
    if (total > 0) cs_outbox_wake(app->store);
    cs_buf_printf(&resp->body, "{\"kind\":\"delivery\",\"redriven\":%ld,\"not_found\":[%s]}", total,
                  missing.data ? missing.data : "");
    cs_buf_free(&missing);
    cJSON_Delete(j);
    return;
fail:
    cs_buf_free(&missing);
    cJSON_Delete(j);
    cs_buf_reset(&resp->body);
    unavailable(resp);
}
