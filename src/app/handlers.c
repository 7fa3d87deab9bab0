/*
 * app/handlers — the HTTP route table and the handlers behind it.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "core/util.h"
#include "metrics/catalog.h"

int cs_app_role_check(const cs_app *app, unsigned role, cs_http_resp *resp)
{
    if (!app->roles || (app->roles & role)) return 0;
    const char *name = role == CS_ROLE_INGEST ? "ingest" : role == CS_ROLE_PIPELINE ? "pipeline" : "dispatch";
    char m[200];
    snprintf(m, sizeof m, "this process runs without the %s role (crmstream serve --role): send this to a %s node", name,
             name);
    cs_http_error(resp, 404, "role_not_served", m, NULL);
    return -1;
}

static void h_healthz(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)a, (void)req;
    cs_buf_adds(&resp->body, "{\"status\":\"ok\"}");
}

/* Ready: the log recovered and the store migrated (both happen before the
 * server listens), the store answers now, and the pipeline is within
 * pipeline.max_lag. The body names whatever is not ready. */
static void h_readyz(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)req;
    cs_app *app = a;
    cs_buf failing;
    cs_buf_init(&failing);
    cs_lead probe;
    if (app->store->ops->lead_get(app->store, "ld_readyz_probe", &probe) < 0) {
        cs_buf_adds(&failing, "{\"check\":\"store\",\"message\":");
        cs_buf_json_str(&failing, app->store->errmsg);
        cs_buf_adds(&failing, "}");
    }
    int64_t lag = app->pipeline ? cs_pipeline_lag(app->pipeline) : 0; /* none here: --role */
    if (app->cfg.pipeline_max_lag > 0 && lag > app->cfg.pipeline_max_lag)
        cs_buf_printf(&failing, "%s{\"check\":\"pipeline_lag\",\"message\":\"%lld events behind (bound %ld)\"}",
                      failing.len ? "," : "", (long long)lag, app->cfg.pipeline_max_lag);
    if (failing.len) {
        resp->status = 503;
        resp->retry_after = 1;
        cs_buf_printf(&resp->body, "{\"status\":\"not_ready\",\"failing\":[%s]}", failing.data);
    } else {
        cs_buf_printf(&resp->body, "{\"status\":\"ready\",\"pipeline_lag\":%lld}", (long long)lag);
    }
    cs_buf_free(&failing);
}

static void pause_resume(cs_app *app, cs_http_resp *resp, int paused)
{
    if (cs_app_role_check(app, CS_ROLE_PIPELINE, resp)) return;
    cs_pipeline_pause(app->pipeline, paused);
    cs_buf_printf(&resp->body, "{\"paused\":%s,\"pipeline_lag\":%lld}", paused ? "true" : "false",
                  (long long)cs_pipeline_lag(app->pipeline));
}

static void h_pause(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)req;
    pause_resume(a, resp, 1);
}

static void h_resume(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)req;
    pause_resume(a, resp, 0);
}

/* POST /api/v1/rules/reload: a bad file answers 422 naming file:line:column
 * and the old rules keep running. */
static void h_rules_reload(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)req;
    cs_app *app = a;
    char err[512];
    if (cs_app_role_check(app, CS_ROLE_PIPELINE, resp)) return;
    if (cs_pipeline_reload_rules(app->pipeline, err, sizeof err) != 0)
        return cs_http_error(resp, 422, "invalid_rules", err, "rules");
    cs_buf_printf(&resp->body, "{\"rules\":%zu}", cs_pipeline_rule_count(app->pipeline));
}

/* POST /api/v1/replay {"from_offset": N | "from_time": "RFC3339",
 * "partition": P?, "rebuild": bool?}: move the running pipeline back
 * (cs_pipeline_replay); it re-applies from there in the background (the
 * answer says how many events; lag in /metrics and /readyz shows progress). */
static void h_replay(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    if (cs_app_role_check(app, CS_ROLE_PIPELINE, resp)) return;
    cJSON *b = req->body_len ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;
    if (!cJSON_IsObject(b)) {
        cJSON_Delete(b);
        return cs_http_error(resp, 400, "invalid_json",
                             "the body must be one JSON object: {\"from_offset\": N} or {\"from_time\": \"RFC3339\"}",
                             NULL);
    }
    cs_replay_req rq = {.partition = -1, .from_offset = -1};
    const char *bad = NULL, *why = NULL;
    int have_off = 0, have_time = 0;
    for (cJSON *it = b->child; it && !bad; it = it->next) {
        if (strcmp(it->string, "from_offset") == 0) {
            have_off = 1;
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > 9e15 ||
                it->valuedouble != (double)(int64_t)it->valuedouble)
                bad = it->string, why = "expected an integer offset >= 0";
            else rq.from_offset = (int64_t)it->valuedouble;
        } else if (strcmp(it->string, "from_time") == 0) {
            have_time = 1;
            if (!cJSON_IsString(it) || cs_parse_time(it->valuestring, &rq.from_time_us) != 0)
                bad = it->string, why = "expected an RFC 3339 time such as 2026-11-27T10:00:00Z";
        } else if (strcmp(it->string, "partition") == 0) {
            if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= app->bus->partitions ||
                it->valuedouble != (double)(int)it->valuedouble)
                bad = it->string, why = "expected an existing partition number";
            else rq.partition = (int)it->valuedouble;
        } else if (strcmp(it->string, "rebuild") == 0) {
            if (!cJSON_IsBool(it)) bad = it->string, why = "expected true or false";
            else rq.rebuild = cJSON_IsTrue(it);
        } else {
            bad = it->string, why = "unknown field (from_offset, from_time, partition, rebuild)";
        }
    }
    if (!bad && have_off && have_time) bad = "from_time", why = "from_offset and from_time exclude each other";
    if (!bad && !have_off && !have_time && !rq.rebuild)
        bad = "from_offset", why = "say where from: from_offset, from_time, or rebuild: true";
    if (!bad && rq.rebuild && (have_time || rq.from_offset > 0))
        bad = have_time ? "from_time" : "from_offset", why = "rebuild replays from the start (omit it or use 0)";
    char field[64];
    if (bad) snprintf(field, sizeof field, "%s", bad);
    cJSON_Delete(b);
    if (bad) return cs_http_error(resp, 400, "invalid_field", why, field);
    cs_replay_result res = {0};
    char err[512];
    int usage = 0;
    if (cs_pipeline_replay(app->pipeline, &rq, &res, &usage, err, sizeof err) != 0) {
        if (usage) return cs_http_error(resp, 400, "invalid_field", err, "partition");
        resp->retry_after = 1;
        return cs_http_error(resp, 503, "replay_failed", err, NULL);
    }
    cs_buf_printf(&resp->body, "{\"rebuild\":%s,\"events\":%lld,\"partitions\":[", rq.rebuild ? "true" : "false",
                  (long long)res.events);
    for (int i = 0; i < res.n; i++)
        cs_buf_printf(&resp->body, "%s{\"partition\":%d,\"from\":%lld,\"to\":%lld,\"log_end\":%lld}", i ? "," : "",
                      res.v[i].partition, (long long)res.v[i].before, (long long)res.v[i].after,
                      (long long)res.v[i].end);
    cs_buf_adds(&resp->body, "]}");
    cs_replay_result_free(&res);
}

static cs_ingest_req ingest_req(const cs_http_req *req)
{
    return (cs_ingest_req){.body = req->body, .len = req->body_len,
                           .content_encoding = cs_http_header(req, "Content-Encoding"),
                           .authorization = cs_http_header(req, "Authorization"), .received_us = req->received_us};
}

/* crmstream_ingest_requests_total{endpoint,code}: endpoints are the route
 * table's (a handful), codes the few ingest answers; the family's series
 * bound (CS_METRIC_MAX_SERIES) holds them all. */
static void count_request(const char *endpoint, int status)
{
    char l[64];
    snprintf(l, sizeof l, "endpoint=\"%s\",code=\"%d\"", endpoint, status);
    cs_metric_inc(cs_m.ingest_requests, l, 1);
}

static void h_events(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    if (cs_app_role_check(app, CS_ROLE_INGEST, resp)) return;
    cs_ingest_req ir = ingest_req(req);
    resp->status = cs_ingest_native(&app->ingest, &ir, &resp->body, &resp->retry_after);
    count_request("events", resp->status);
}

/* Segment tracking API: the call is the path's last segment. */
static void h_segment(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    if (cs_app_role_check(app, CS_ROLE_INGEST, resp)) return;
    cs_ingest_req ir = ingest_req(req);
    const char *call = strrchr(req->path, '/') + 1;
    resp->status = cs_ingest_segment(&app->ingest, call, &ir, &resp->body, &resp->retry_after);
    count_request(call, resp->status);
}

/* CloudEvents: structured, batch and binary modes (ce-* headers). */
static const char *req_header(void *req, const char *name)
{
    return cs_http_header(req, name);
}

static void req_each_header(void *req, void (*cb)(void *cbarg, const char *name, const char *value), void *cbarg)
{
    cs_http_each_header(req, cb, cbarg);
}

static void h_cloudevents(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    if (cs_app_role_check(app, CS_ROLE_INGEST, resp)) return;
    cs_ingest_req ir = ingest_req(req);
    resp->status = cs_ingest_cloudevents(&app->ingest, &ir, req_header, req_each_header, (void *)req, &resp->body,
                                         &resp->retry_after);
    count_request("cloudevents", resp->status);
}

/* Prometheus text 0.0.4: the registry (src/metrics/catalog.h), then the
 * ingest request counters and the dedupe window's size. */
static void h_metrics(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)req;
    cs_app *app = a;
    cs_ingest *ing = &app->ingest;
    cs_metrics_render(&resp->body);
    static const struct {
        const char *name, *help;
        size_t      off;
    } counters[] = {
        {"crmstream_ingest_requests_failed_total", "Ingest requests answered with a whole-request error.",
         offsetof(cs_ingest, requests_failed)},
        {"crmstream_ingest_unauthorized_total", "Ingest requests with a missing or unknown write key.",
         offsetof(cs_ingest, unauthorized)},
        {"crmstream_ingest_rate_limited_total", "Ingest requests refused with 429 by a write key's rate limit.",
         offsetof(cs_ingest, rate_limited)},
    };
    resp->content_type = "text/plain; version=0.0.4";
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        uint64_t v = __atomic_load_n((uint64_t *)((char *)ing + counters[i].off), __ATOMIC_RELAXED);
        cs_buf_printf(&resp->body, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[i].name, counters[i].help,
                      counters[i].name, counters[i].name, (unsigned long long)v);
    }
    cs_dedupe *d = &ing->dedupe;
    uint64_t live = 0, expired = 0, early = 0;
    if (d->ring) {
        pthread_mutex_lock(&d->lock);
        live = d->live, expired = d->expired, early = d->evicted_early;
        pthread_mutex_unlock(&d->lock);
    }
    cs_buf_printf(&resp->body,
                  "# HELP crmstream_ingest_dedupe_ids Event ids in the dedupe window.\n"
                  "# TYPE crmstream_ingest_dedupe_ids gauge\ncrmstream_ingest_dedupe_ids %llu\n"
                  "# HELP crmstream_ingest_dedupe_max_ids Most ids the dedupe window holds (ingest.dedupe_max_ids).\n"
                  "# TYPE crmstream_ingest_dedupe_max_ids gauge\ncrmstream_ingest_dedupe_max_ids %llu\n"
                  "# HELP crmstream_ingest_dedupe_bytes Memory reserved by the dedupe window.\n"
                  "# TYPE crmstream_ingest_dedupe_bytes gauge\ncrmstream_ingest_dedupe_bytes %zu\n"
                  "# HELP crmstream_ingest_dedupe_expired_total Ids that left the window by age.\n"
                  "# TYPE crmstream_ingest_dedupe_expired_total counter\ncrmstream_ingest_dedupe_expired_total %llu\n"
                  "# HELP crmstream_ingest_dedupe_evicted_early_total Ids forgotten before the window ended because "
                  "the window was full.\n"
                  "# TYPE crmstream_ingest_dedupe_evicted_early_total counter\n"
                  "crmstream_ingest_dedupe_evicted_early_total %llu\n",
                  (unsigned long long)live, (unsigned long long)d->cap, ing->dedupe_bytes,
                  (unsigned long long)expired, (unsigned long long)early);
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
    cs_buf_printf(b, ",\"partition\":%d,\"offset\":%lld", l->partition, (long long)l->offset);
    /* Routing (src/routing): the explanation is JSON the router wrote. */
    json_opt_str(b, "domain", l->domain);
    json_opt_str(b, "accepted_at", l->accepted_at);
    json_opt_str(b, "sla_due_at", l->sla_due_at);
    cs_buf_adds(b, ",\"route_explanation\":");
    cs_buf_adds(b, l->route_explanation[0] == '{' ? l->route_explanation : "null");
    cs_buf_adds(b, "}");
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

static void h_leads(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    int limit;
    int64_t cursor;
    if (cs_api_page_params(req, resp, &limit, &cursor)) return;
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
    {"GET", "/readyz", h_readyz},
    {"POST", "/api/v1/pipeline/pause", h_pause},
    {"POST", "/api/v1/rules/reload", h_rules_reload},
    {"POST", "/api/v1/pipeline/resume", h_resume},
    {"POST", "/api/v1/replay", h_replay},
    {"GET", "/metrics", h_metrics},
    {"POST", "/v1/events", h_events},
    {"POST", "/v1/batch", h_segment},
    {"POST", "/v1/track", h_segment},
    {"POST", "/v1/identify", h_segment},
    {"POST", "/v1/group", h_segment},
    {"POST", "/v1/page", h_segment},
    {"POST", "/v1/screen", h_segment},
    {"POST", "/v1/cloudevents", h_cloudevents},
    {"GET", "/api/v1/leads", h_leads},
    {"GET", "/api/v1/leads/{id}", h_lead_get},
    {"POST", "/api/v1/leads/{id}/accept", cs_api_lead_accept},
    /* CRM objects: src/app/api_crm.c */
    {"GET", "/api/v1/accounts", cs_api_accounts},
    {"POST", "/api/v1/accounts", cs_api_accounts},
    {"GET", "/api/v1/accounts/{id}", cs_api_account},
    {"PUT", "/api/v1/accounts/{id}", cs_api_account},
    {"GET", "/api/v1/reps", cs_api_reps},
    {"POST", "/api/v1/reps", cs_api_reps},
    {"GET", "/api/v1/reps/{id}", cs_api_rep},
    {"PUT", "/api/v1/reps/{id}", cs_api_rep},
    {"GET", "/api/v1/alerts", cs_api_alerts},
    {"GET", "/api/v1/tasks", cs_api_tasks},
    {"GET", "/api/v1/contacts", cs_api_contacts},
    {"GET", "/api/v1/audit", cs_api_audit},
    /* DLQ: src/app/api_dlq.c */
    {"GET", "/api/v1/dlq", cs_api_dlq_list},
    {"GET", "/api/v1/dlq/{id}", cs_api_dlq_get},
    {"POST", "/api/v1/dlq/redrive", cs_api_dlq_redrive},
    /* Warehouse sink: src/app/api_warehouse.c */
    {"GET", "/api/v1/warehouse", cs_api_warehouse},
    {"POST", "/api/v1/warehouse/pause", cs_api_warehouse_pause},
    {"POST", "/api/v1/warehouse/resume", cs_api_warehouse_resume},
    /* Backtest: src/app/api_backtest.c */
    {"POST", "/api/v1/backtest", cs_api_backtest},
};
const size_t cs_app_nroutes = sizeof cs_app_routes / sizeof cs_app_routes[0];
