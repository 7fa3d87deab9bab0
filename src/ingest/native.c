/*
 * ingest/native — POST /v1/events: decode, validate, append, answer.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "http/errors.h"
#include "ingest/event.h"
#include "ingest/ingest.h"

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whole-request error with a JSON body. */
static int req_error(cs_buf *resp, int status, const char *code, const char *msg, const char *field)
{
    cs_buf_reset(resp);
    cs_json_error(resp, code, msg, field);
    return status;
}

static void push(cJSON ***v, size_t *n, size_t *cap, cJSON *x)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = cs_realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = x;
}

/* Parse body into a list of event values. roots owns what must be freed. */
static int decode(const char *body, size_t len, cJSON ***items, size_t *nitems, cJSON ***roots,
                  size_t *nroots, cs_buf *resp)
{
    size_t icap = 0, rcap = 0;
    const char *p = body, *end = body + len;
    while (p < end && is_ws(*p)) p++;
    if (p == end) return req_error(resp, 400, "empty_body", "the request body is empty", NULL);
    int values = 0;
    while (p < end) {
        const char *stop = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
        if (!root) {
            char msg[160];
            long at = stop ? (long)(stop - body) : (long)(p - body);
            snprintf(msg, sizeof msg, "malformed JSON at byte %ld", at);
            return req_error(resp, 400, "malformed_json", msg, NULL);
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
            return req_error(resp, 400, "malformed_json", msg, NULL);
        }
        if (p < end && cJSON_IsArray(root))
            return req_error(resp, 400, "wrong_shape",
                             "NDJSON lines must each hold one event object", NULL);
    }
    if (values > 1)
        for (size_t i = 0; i < *nitems; i++)
            if (cJSON_IsArray((*items)[i]))
                return req_error(resp, 400, "wrong_shape",
                                 "NDJSON lines must each hold one event object", NULL);
    if (*nitems == 0)
        return req_error(resp, 400, "wrong_shape", "the body holds no events (empty array)", NULL);
    return 0;
}

int cs_ingest_native(cs_ingest *ing, const char *body, size_t len, int64_t received_us,
                     cs_buf *resp, int *retry_after)
{
    long bad = cs_utf8_invalid_at(body, len);
    if (bad >= 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "invalid UTF-8 at byte %ld", bad);
        __atomic_add_fetch(&ing->requests_failed, 1, __ATOMIC_RELAXED);
        return req_error(resp, 400, "invalid_utf8", msg, NULL);
    }
    cJSON **items = NULL, **roots = NULL;
    size_t nitems = 0, nroots = 0;
    int status = decode(body, len, &items, &nitems, &roots, &nroots, resp);
    if (status) goto out;
    if ((long)nitems > ing->cfg->max_batch_events) {
        char msg[128];
        snprintf(msg, sizeof msg, "%zu events in one request; the limit is %ld", nitems,
                 ing->cfg->max_batch_events);
        status = req_error(resp, 413, "too_many_events", msg, NULL);
        goto out;
    }

    cs_msg *msgs = cs_malloc(nitems * sizeof *msgs);
    char (*keys)[160] = cs_malloc(nitems * sizeof *keys);
    size_t *offs = cs_malloc(nitems * sizeof *offs), *lens = cs_malloc(nitems * sizeof *lens);
    cs_buf vals, rej;
    cs_buf_init(&vals);
    cs_buf_init(&rej);
    size_t nmsg = 0, nrej = 0;
    cs_verr first = {0};
    for (size_t i = 0; i < nitems; i++) {
        cs_event ev;
        cs_verr err;
        size_t start = vals.len;
        int ok = cs_event_validate(items[i], received_us, &ev, &err) == 0;
        if (ok) {
            cs_event_serialize(&ev, "native", received_us, &vals);
            if ((long)(vals.len - start) > ing->cfg->max_event_bytes) {
                err.code = "event_too_large";
                snprintf(err.field, sizeof err.field, "%s", "");
                snprintf(err.message, sizeof err.message, "the event is %zu bytes; the limit is %ld",
                         vals.len - start, ing->cfg->max_event_bytes);
                vals.len = start;
                ok = 0;
            }
        }
        if (!ok) {
            if (nrej++ == 0) first = err;
            cs_buf_printf(&rej, "%s{\"index\":%zu,\"code\":", nrej > 1 ? "," : "", i);
            cs_buf_json_str(&rej, err.code);
            cs_buf_adds(&rej, ",\"field\":");
            cs_buf_json_str(&rej, err.field);
            cs_buf_adds(&rej, ",\"message\":");
            cs_buf_json_str(&rej, err.message);
            cs_buf_adds(&rej, "}");
            continue;
        }
        const char *key = cs_event_key(&ev, keys[nmsg], sizeof keys[nmsg]);
        if (key != keys[nmsg]) snprintf(keys[nmsg], sizeof keys[nmsg], "%s", key);
        offs[nmsg] = start;
        lens[nmsg] = vals.len - start;
        msgs[nmsg] = (cs_msg){.key = keys[nmsg], .key_len = strlen(keys[nmsg]), .ts_us = received_us};
        nmsg++;
    }
    for (size_t i = 0; i < nmsg; i++) msgs[i].value = vals.data + offs[i], msgs[i].value_len = lens[i];

    __atomic_add_fetch(&ing->rejected, nrej, __ATOMIC_RELAXED);
    cs_buf_reset(resp);
    if (nmsg == 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s%s", nitems > 1 ? "every event failed validation; first: " : "",
                 first.message);
        cs_json_error(resp, first.code, msg, first.field);
        resp->len--; /* reopen the outer object to add the per-event list */
        cs_buf_printf(resp, ",\"accepted\":0,\"duplicates\":0,\"rejected\":[%s]}", rej.data ? rej.data : "");
        status = 422;
    } else if (ing->bus->ops->produce(ing->bus, CS_TOPIC_EVENTS, msgs, nmsg) != 0) {
        cs_error("ingest", "append to the log failed; nothing acknowledged", "\"error\":\"%s\"",
                 strerror(errno));
        __atomic_add_fetch(&ing->requests_failed, 1, __ATOMIC_RELAXED);
        cs_json_error(resp, "log_unavailable", "the event log could not take the write; retry later", NULL);
        *retry_after = 1;
        status = 503;
    } else {
        __atomic_add_fetch(&ing->accepted, nmsg, __ATOMIC_RELAXED);
        cs_buf_printf(resp, "{\"accepted\":%zu,\"duplicates\":0,\"rejected\":[%s]}", nmsg,
                      rej.data ? rej.data : "");
        status = 200;
    }
    cs_buf_free(&vals);
    cs_buf_free(&rej);
    free(msgs);
    free(keys);
    free(offs);
    free(lens);
out:
    for (size_t i = 0; i < nroots; i++) cJSON_Delete(roots[i]);
    free(roots);
    free(items);
    return status;
}
