/*
 * app/handlers — the HTTP route table and the handlers behind it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"

static void h_healthz(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)a, (void)req;
    cs_buf_adds(&resp->body, "{\"status\":\"ok\"}");
}

static void h_events(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    resp->status = cs_ingest_native(&app->ingest, req->body, req->body_len, req->received_us, &resp->body,
                                    &resp->retry_after);
}

static void json_opt_str(cs_buf *b, const char *name, const char *v)
{
    cs_buf_printf(b, ",\"%s\":", name);
    if (v && *v) cs_buf_json_str(b, v);
    else cs_buf_adds(b, "null");
}

static void lead_json(cs_buf *b, const cs_lead *l)
{
    cs_buf_adds(b, "{\"id\":");
    cs_buf_json_str(b, l->id);
    json_opt_str(b, "event_id", l->event_id);
    json_opt_str(b, "account_id", l->account_id);
    json_opt_str(b, "email", l->email);
    json_opt_str(b, "company", l->company);
    json_opt_str(b, "country", l->country);
    json_opt_str(b, "source", l->source);
    if (l->employee_count >= 0) cs_buf_printf(b, ",\"employee_count\":%ld", l->employee_count);
    else cs_buf_adds(b, ",\"employee_count\":null");
    json_opt_str(b, "status", l->status);
    json_opt_str(b, "owner", l->owner);
    json_opt_str(b, "routed_at", l->routed_at);
    json_opt_str(b, "route_reason", l->route_reason);
    cs_buf_printf(b, ",\"route_latency_ms\":%.3f", l->route_latency_ms);
    json_opt_str(b, "created_at", l->created_at);
    cs_buf_printf(b, ",\"partition\":%d,\"offset\":%lld}", l->partition, (long long)l->offset);
}

static void h_lead_get(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    cs_lead l;
    int rc = app->store->ops->lead_get(app->store, req->param, &l);
    if (rc == 1) return cs_http_error(resp, 404, "not_found", "no lead with this id", "id");
    if (rc < 0) {
        resp->retry_after = 1;
        return cs_http_error(resp, 503, "store_unavailable", "the store could not answer; retry", NULL);
    }
    lead_json(&resp->body, &l);
}

struct list_ctx {
    cs_buf *b;
    int     n, limit;
    int64_t last;     /* seq of the last row shown */
    int     more;     /* a row beyond the page exists */
};

static int on_lead(const cs_lead *l, void *arg)
{
    struct list_ctx *c = arg;
    if (c->n == c->limit) {
        c->more = 1; /* fetched limit+1: the extra row only says "there is more" */
        return 1;
    }
    if (c->n++) cs_buf_adds(c->b, ",");
    lead_json(c->b, l);
    c->last = l->seq;
    return 0;
}

/* Parse limit/cursor query parameters; 0 or -1 with the error answer set. */
static int list_params(const cs_http_req *req, cs_http_resp *resp, int *limit, int64_t *cursor)
{
    const char *ls = cs_http_query(req, "limit"), *cs = cs_http_query(req, "cursor");
    char *end;
    *limit = 100;
    *cursor = 0;
    if (ls) {
        errno = 0;
        long v = strtol(ls, &end, 10);
        if (errno || *end || end == ls || v < 1 || v > 1000) {
            cs_http_error(resp, 400, "invalid_parameter", "limit must be an integer from 1 to 1000", "limit");
            return -1;
        }
        *limit = (int)v;
    }
    if (cs && *cs) {
        errno = 0;
        long long v = strtoll(cs, &end, 10);
        if (errno || *end || v < 0) {
            cs_http_error(resp, 400, "invalid_parameter", "cursor is not one this server returned", "cursor");
            return -1;
        }
        *cursor = v;
    }
    return 0;
}

static void h_leads(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    int limit;
    int64_t cursor;
    if (list_params(req, resp, &limit, &cursor)) return;
    cs_buf_adds(&resp->body, "{\"items\":[");
    struct list_ctx c = {&resp->body, 0, limit, cursor, 0};
    if (app->store->ops->lead_list(app->store, cursor, limit + 1, on_lead, &c) < 0) {
        resp->retry_after = 1;
        return cs_http_error(resp, 503, "store_unavailable", "the store could not answer; retry", NULL);
    }
    if (c.more) cs_buf_printf(&resp->body, "],\"next_cursor\":\"%lld\"}", (long long)c.last);
    else cs_buf_adds(&resp->body, "],\"next_cursor\":null}");
}

const cs_http_route cs_app_routes[] = {
    {"GET", "/healthz", h_healthz},
    {"POST", "/v1/events", h_events},
    {"GET", "/api/v1/leads", h_leads},
    {"GET", "/api/v1/leads/{id}", h_lead_get},
};
const size_t cs_app_nroutes = sizeof cs_app_routes / sizeof cs_app_routes[0];
