/*
 * ingest/native — POST /v1/events: one object, an array or NDJSON; then the
 * shared batch steps (batch.h).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "http/errors.h"
#include "ingest/batch.h"
#include "ingest/jsonarena.h"
#include "ingest/event.h"
#include "ingest/ingest.h"
#include "ingest/jsoncheck.h"
#include "ingest/jsonfast.h"

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whole-request error with a JSON body. */
static int req_error(cs_buf *resp, int status, const char *code, const char *msg, const char *field)
{
    return cs_ingest_fail(NULL, resp, status, code, msg, field);
}

static void push(cJSON ***v, size_t *n, size_t *cap, cJSON *x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = cs_realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = x;
}

/* Parse body into a list of event values. roots owns what must be freed.
 * fast: parse with cs_json_fast_parse and return FAST_DECLINED on anything
 * it does not take or any error at all, so the checked pass (fast = 0,
 * after cs_ingest_utf8) is the one that words every answer. */
#define FAST_DECLINED (-1)
static int decode(cs_ingest *ing, const char *body, size_t len, int fast, cJSON ***items, size_t *nitems,
                  cJSON ***roots, size_t *nroots, cs_buf *resp)
{
#define FAIL(expr) return fast ? FAST_DECLINED : (expr)
    size_t icap = 0, rcap = 0;
    const char *p = body + cs_ingest_bom(body, len), *end = body + len;
    while (p < end && is_ws(*p)) p++;
    if (p == end) FAIL(req_error(resp, 400, "empty_body", "the request body is empty", NULL));
    if (!fast) {
        int st = cs_ingest_syntax(NULL, body, len, (size_t)(p - body), 1, resp);
        if (st) return st;
    }
    int values = 0;
    while (p < end) {
        const char *stop = NULL;
        cJSON *root;
        if (fast) {
            size_t used = 0;
            root = cs_json_fast_parse(p, (size_t)(end - p), &used);
            if (!root) return FAST_DECLINED;
            stop = p + used;
        } else {
            root = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
            if (!root) return cs_ingest_parse_error(ing, body, len, stop ? stop : p, resp);
        }
        push(roots, nroots, &rcap, root);
        values++;
        if (cJSON_IsArray(root) && values == 1) {
            for (cJSON *it = root->child; it; it = it->next) push(items, nitems, &icap, it);
        } else {
            push(items, nitems, &icap, root);
        }
        /* NDJSON: further values must each start on a new line. */
        int newline = 0;
        p = stop;
        while (p < end && is_ws(*p)) newline |= *p++ == '\n';
        if (p < end && !newline) {
            char msg[160];
            snprintf(msg, sizeof msg, "unexpected data after the JSON value at byte %ld", (long)(p - body));
            FAIL(req_error(resp, 400, "malformed_json", msg, NULL));
        }
        if (p < end && cJSON_IsArray(root))
            FAIL(req_error(resp, 400, "wrong_shape", "NDJSON lines must each hold one event object", NULL));
    }
    if (values > 1)
        for (size_t i = 0; i < *nitems; i++)
            if (cJSON_IsArray((*items)[i]))
                FAIL(req_error(resp, 400, "wrong_shape", "NDJSON lines must each hold one event object", NULL));
    if (*nitems == 0) FAIL(req_error(resp, 400, "wrong_shape", "the body holds no events (empty array)", NULL));
    return 0;
#undef FAIL
}

static int native_run(cs_ingest *ing, const cs_ingest_req *req, cs_buf *resp, int *retry_after)
{
    cs_ingest_body body;
    int status = cs_ingest_open_raw(ing, req, &body, resp);
    if (status) {
        cs_ingest_body_free(&body);
        return status;
    }
    cJSON **items = NULL, **roots = NULL;
    size_t nitems = 0, nroots = 0;
    status = decode(ing, body.data, body.len, 1, &items, &nitems, &roots, &nroots, resp);
    if (status == FAST_DECLINED) {
        for (size_t i = 0; i < nroots; i++) cs_json_arena_delete(roots[i]);
        nitems = nroots = 0;
        status = cs_ingest_utf8(ing, &body, resp);
        if (status) goto out;
        status = decode(ing, body.data, body.len, 0, &items, &nitems, &roots, &nroots, resp);
    }
    if (status) {
        __atomic_add_fetch(&ing->requests_failed, 1, __ATOMIC_RELAXED);
        goto out;
    }
    if ((long)nitems > ing->cfg->max_batch_events) {
        char msg[128];
        snprintf(msg, sizeof msg, "%zu events in one request; the limit is %ld", nitems,
                 ing->cfg->max_batch_events);
        status = cs_ingest_fail(ing, resp, 413, "too_many_events", msg, NULL);
        goto out;
    }
    /* Native bodies carry no writeKey: the key comes from Basic auth. */
    status = cs_ingest_authorize(ing, &body, NULL, nitems, resp, retry_after);
    if (status) goto out;
    cs_batch b;
    cs_batch_init(&b, ing, "native", "event_id", req->received_us, nitems);
    b.meta.write_key = body.key ? body.key->name : NULL;
    for (size_t i = 0; i < nitems; i++) {
        cs_verr err;
        if (cs_json_check(items[i], 1, CS_JSON_MAX_DEPTH, ing->cfg->max_object_keys, &err) != 0)
            cs_batch_reject(&b, i, &err);
        else
            cs_batch_add(&b, i, items[i], 0, 0, NULL, NULL);
    }
    status = cs_batch_finish(&b, resp, retry_after);
    cs_batch_free(&b);
out:
    for (size_t i = 0; i < nroots; i++) cs_json_arena_delete(roots[i]);
    free(roots);
    free(items);
    cs_ingest_body_free(&body);
    return status;
}

/* The request's cJSON trees live in this thread's arena (jsonarena.h). */
int cs_ingest_native(cs_ingest *ing, const cs_ingest_req *req, cs_buf *resp, int *retry_after)
{
    cs_json_arena_begin();
    int status = native_run(ing, req, resp, retry_after);
    cs_json_arena_end();
    return status;
}
