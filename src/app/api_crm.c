/*
 * app/api_crm — REST for CRM objects (design brief §5): accounts, reps,
 * alerts, tasks, contacts and the audit trail.
 *
 * Reads go to the store's reader side. Writes never touch the store: a POST
 * or PUT is validated here (errors name the field), appended to the log as an
 * admin event (AccountUpserted, RepUpserted; pipeline/admin.c applies it in
 * the pipeline's transaction, with audit rows whose cause is that event) and
 * answered 202 with the event id once the log has it durably. So replaying
 * the log rebuilds API-made changes too (principle 1).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "app/app.h"
#include "core/logging.h"
#include "routing/router.h"

#define LIST_DEFAULT 100
#define LIST_MAX 1000

static void store_unavailable(cs_http_resp *resp)
{
    resp->retry_after = 1;
    cs_http_error(resp, 503, "store_unavailable", "the store could not answer; retry", NULL);
}

/* limit (1..1000, default 100) and cursor (a seq this server returned);
 * shared by every list endpoint. */
int cs_api_page_params(const cs_http_req *req, cs_http_resp *resp, int *limit, int64_t *cursor)
{
    const char *ls = cs_http_query(req, "limit"), *cs = cs_http_query(req, "cursor");
    char *end;
    *limit = LIST_DEFAULT;
    *cursor = 0;
    if (ls) {
        errno = 0;
        long v = strtol(ls, &end, 10);
        if (errno || *end || end == ls || v < 1 || v > LIST_MAX) {
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

/* ---- objects as JSON --------------------------------------------------- */

static void row_json(cs_buf *b, const cs_row *r)
{
    const cs_objdef *d = r->def;
    cs_buf_adds(b, "{");
    for (int i = 0; i < d->ncols; i++) {
        const char *v = r->vals[i];
        cs_buf_printf(b, "%s\"%s\":", i ? "," : "", d->cols[i].name);
        if (!v) {
            cs_buf_adds(b, "null");
            continue;
        }
        switch (d->cols[i].type) {
        case CS_COL_TEXT: cs_buf_json_str(b, v); break;
        case CS_COL_BOOL: cs_buf_adds(b, strcmp(v, "0") ? "true" : "false"); break;
        case CS_COL_REAL:
        case CS_COL_INT:
        case CS_COL_JSON: cs_buf_adds(b, v); break; /* validated on the way in */
        }
    }
    cs_buf_adds(b, "}");
}

struct page {
    cs_buf *b;
    int     n, limit, more;
    int64_t last;
};

static int on_row(const cs_row *r, void *arg)
{
    struct page *pg = arg;
    if (pg->n == pg->limit) {
        pg->more = 1; /* fetched limit+1: the extra row only says "there is more" */
        return 1;
    }
    if (pg->n++) cs_buf_adds(pg->b, ",");
    row_json(pg->b, r);
    pg->last = r->seq;
    return 0;
}

static void end_page(cs_buf *b, const struct page *pg)
{
    if (pg->more) cs_buf_printf(b, "],\"next_cursor\":\"%lld\"}", (long long)pg->last);
    else cs_buf_adds(b, "],\"next_cursor\":null}");
}

/* GET list of obj, with ?col=value filters on the filterable columns. */
static void list_objects(cs_app *app, int obj, const cs_http_req *req, cs_http_resp *resp)
{
    const cs_objdef *d = &cs_objdefs[obj];
    int limit;
    int64_t cursor;
    if (cs_api_page_params(req, resp, &limit, &cursor)) return;
    cs_kv f[CS_OBJ_MAXCOLS];
    size_t nf = 0;
    for (int i = 0; i < d->ncols; i++) {
        if (!(d->cols[i].flags & CS_COL_FILTER)) continue;
        const char *v = cs_http_query(req, d->cols[i].name);
        if (!v) continue;
        if (d->cols[i].type == CS_COL_BOOL) {
            if (strcmp(v, "true") && strcmp(v, "false"))
                return cs_http_error(resp, 400, "invalid_parameter", "expected true or false", d->cols[i].name);
            v = strcmp(v, "true") == 0 ? "1" : "0";
        }
        f[nf++] = (cs_kv){d->cols[i].name, v};
    }
    cs_buf_adds(&resp->body, "{\"items\":[");
    struct page pg = {&resp->body, 0, limit, 0, cursor};
    if (app->store->ops->obj_list(app->store, obj, cursor, limit + 1, f, nf, on_row, &pg) < 0) {
        cs_buf_reset(&resp->body);
        return store_unavailable(resp);
    }
    end_page(&resp->body, &pg);
}

static int on_signal(const cs_signal *s, void *arg)
{
    struct page *pg = arg;
    if (pg->n++) cs_buf_adds(pg->b, ",");
    cs_buf_json_str(pg->b, s->name);
    cs_buf_printf(pg->b, ":%.17g", s->value);
    return 0;
}

static int on_one(const cs_row *r, void *arg)
{
    cs_buf *b = arg;
    row_json(b, r);
    return 0;
}

static void get_object(cs_app *app, int obj, const cs_http_req *req, cs_http_resp *resp)
{
    cs_store *st = app->store;
    int rc = st->ops->obj_get(st, obj, req->param, on_one, &resp->body);
    if (rc == 1) {
        char msg[64];
        snprintf(msg, sizeof msg, "no %s with this id", cs_objdefs[obj].name);
        return cs_http_error(resp, 404, "not_found", msg, "id");
    }
    if (rc < 0) {
        cs_buf_reset(&resp->body);
        return store_unavailable(resp);
    }
    if (obj == CS_OBJ_ACCOUNT) { /* with its current signals */
        resp->body.len--, resp->body.data[resp->body.len] = '\0';
        cs_buf_adds(&resp->body, ",\"signals\":{");
        struct page pg = {&resp->body, 0, 0, 0, 0};
        if (st->ops->signal_list(st, req->param, on_signal, &pg) < 0) {
            cs_buf_reset(&resp->body);
            return store_unavailable(resp);
        }
        cs_buf_adds(&resp->body, "}}");
    }
}

/* ---- writes: validate, append an admin event, 202 --------------------- */

static int valid_date(const char *s)
{
    int y, m, d;
    char tail;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || s[4] != '-' || s[7] != '-')
        return 0;
    return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/* Field rules beyond the column type. NULL when fine. */
static const char *field_rule(int obj, const cs_kv *kv, const char **field)
{
    *field = kv->name;
    const char *v = kv->value;
    if (!v) return NULL;
    if (strcmp(kv->name, "renewal_date") == 0 && !valid_date(v)) return "expected a date YYYY-MM-DD";
    if (strcmp(kv->name, "email") == 0 && (!strchr(v, '@') || strchr(v, '@') == v))
        return "expected an email address";
    if (strcmp(kv->name, "mrr") == 0 && strtod(v, NULL) < 0) return "must not be negative";
    if (obj == CS_OBJ_REP && strcmp(kv->name, "capacity") == 0 && strtoll(v, NULL, 10) < 0)
        return "must not be negative";
    if (strcmp(kv->name, "name") == 0 && !*v) return "must not be empty";
    if (obj == CS_OBJ_REP) {
        const char *why = cs_route_rep_check(kv->name, v); /* territory, working_hours, timezone, pools, weight */
        if (why) return why;
    }
    if (strlen(v) > 65536) return "longer than 65536 bytes";
    return NULL;
}

/* An id must be addressable as one path segment: /api/v1/accounts/{id}. */
static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 200) return 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p < 0x20 || *p == 0x7f || *p == '/') return 0;
    return 1;
}

static void new_event_id(char *out, size_t n)
{
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) abort(); /* the kernel's CSPRNG cannot fail here */
    size_t k = (size_t)snprintf(out, n, "adm_");
    for (size_t i = 0; i < sizeof r && k + 2 < n; i++) k += (size_t)snprintf(out + k, n - k, "%02x", r[i]);
}

/* POST (id in the body) or PUT (id in the path) of obj. */
static void write_object(cs_app *app, int obj, const char *path_id, const cs_http_req *req, cs_http_resp *resp)
{
    const cs_objdef *d = &cs_objdefs[obj];
    cJSON *body = cJSON_ParseWithLength(req->body ? req->body : "", req->body_len);
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return cs_http_error(resp, 400, "invalid_json", "the body must be one JSON object", NULL);
    }
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(body, "id");
    const char *id = path_id;
    char why[256];
    const char *field = NULL;
    cs_kv kv[CS_OBJ_MAXCOLS];
    int n = -1;
    if (jid && !cJSON_IsString(jid)) {
        snprintf(why, sizeof why, "id: expected a string");
        field = "id";
    } else if (path_id && jid && strcmp(jid->valuestring, path_id) != 0) {
        snprintf(why, sizeof why, "id: differs from the id in the path");
        field = "id";
    } else if ((path_id || jid) && !valid_id(path_id ? path_id : jid->valuestring)) {
        snprintf(why, sizeof why, "id: 1 to 200 bytes, no '/' and no control characters (it goes in URLs)");
        field = "id";
    } else {
        if (!id) id = jid ? jid->valuestring : NULL;
        n = cs_obj_kv_from_json(d, body, 0, kv, CS_OBJ_MAXCOLS, why, sizeof why, &field);
        if (n >= 0 && cs_obj_check(d, id, kv, (size_t)n, why, sizeof why, &field) != 0) {
            cs_obj_kv_free(kv, n);
            n = -1;
        }
        for (int i = 0; n >= 0 && i < n; i++) {
            const char *rule = field_rule(obj, &kv[i], &field);
            if (rule) {
                snprintf(why, sizeof why, "%s: %s", field, rule);
                cs_obj_kv_free(kv, n);
                n = -1;
            }
        }
    }
    char fieldbuf[80], idbuf[300];
    snprintf(fieldbuf, sizeof fieldbuf, "%s", field ? field : "id"); /* field may point into body */
    if (n < 0) {
        cJSON_Delete(body);
        return cs_http_error(resp, 422, "invalid_field", why, fieldbuf);
    }
    cs_obj_kv_free(kv, n);
    snprintf(idbuf, sizeof idbuf, "%s", id); /* id may point into body, edited below */
    id = idbuf;

    /* The admin event: the body's fields as given (validated above). */
    char eid[48], ts[40], key[320];
    new_event_id(eid, sizeof eid);
    cs_fmt_time_ms(req->received_us, ts, sizeof ts);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event_id", eid);
    cJSON_AddStringToObject(ev, "type", obj == CS_OBJ_ACCOUNT ? "AccountUpserted" : "RepUpserted");
    cJSON_AddStringToObject(ev, "object_id", id);
    if (obj == CS_OBJ_ACCOUNT) cJSON_AddStringToObject(ev, "account_id", id);
    cJSON_AddStringToObject(ev, "timestamp", ts);
    cJSON_DeleteItemFromObjectCaseSensitive(body, "id");
    cJSON_AddItemToObject(ev, "properties", body); /* ev owns body now */
    char *value = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    /* Accounts are keyed by account id like every account event (one
     * partition, in order); reps by "rep:<id>". */
    snprintf(key, sizeof key, "%s%s", obj == CS_OBJ_REP ? "rep:" : "", id);
    cs_msg m = {.key = key, .key_len = strlen(key), .value = value, .value_len = strlen(value),
                .ts_us = req->received_us};
    int rc = app->bus->ops->produce(app->bus, CS_TOPIC_EVENTS, &m, 1);
    cJSON_free(value);
    if (rc != 0) {
        resp->retry_after = 1;
        return cs_http_error(resp, 503, "log_unavailable", "the event log could not take the write; retry later",
                             NULL);
    }
    resp->status = 202;
    cs_buf_adds(&resp->body, "{\"event_id\":");
    cs_buf_json_str(&resp->body, eid);
    cs_buf_adds(&resp->body, ",\"id\":");
    cs_buf_json_str(&resp->body, id);
    cs_buf_printf(&resp->body, ",\"partition\":%d,\"offset\":%lld}", m.partition, (long long)m.offset);
}

/* ---- POST /api/v1/leads/{id}/accept -------------------------------------
 * Appends LeadAccepted (pipeline/admin.c applies it: the lead's SLA stops).
 * 404 when no such lead, 409 when it is not routed and waiting (already
 * accepted, queued, re-routed meanwhile is fine: still routed); body
 * optional {"rep": "<id>"}: only the owner may accept. 202 with the event. */
void cs_api_lead_accept(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    static _Thread_local cs_lead l; /* ~10 KiB: not on an HTTP thread's stack */
    int rc = app->store->ops->lead_get(app->store, req->param, &l);
    if (rc == 1) return cs_http_error(resp, 404, "not_found", "no lead with this id", "id");
    if (rc < 0) return store_unavailable(resp);
    cJSON *body = req->body_len ? cJSON_ParseWithLength(req->body, req->body_len) : cJSON_CreateObject();
    const cJSON *rep = cJSON_GetObjectItemCaseSensitive(body, "rep");
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return cs_http_error(resp, 400, "invalid_json", "the body must be empty or one JSON object", NULL);
    }
    for (const cJSON *it = body->child; it; it = it->next)
        if (strcmp(it->string, "rep") != 0) {
            cJSON_Delete(body);
            return cs_http_error(resp, 422, "invalid_field", "not a field of an accept (expected rep)", "rep");
        }
    if (rep && !cJSON_IsString(rep)) {
        cJSON_Delete(body);
        return cs_http_error(resp, 422, "invalid_field", "rep: expected a string", "rep");
    }
    if (strcmp(l.status, "routed") != 0) {
        cJSON_Delete(body);
        return cs_http_error(resp, 409, "not_acceptable",
                             strcmp(l.status, "accepted") == 0 ? "the lead is already accepted"
                                                               : "the lead is not routed to a rep",
                             "status");
    }
    if (rep && strcmp(rep->valuestring, l.owner) != 0) {
        cJSON_Delete(body);
        return cs_http_error(resp, 409, "not_owner", "only the lead's owner can accept it", "rep");
    }
    char eid[48], ts[40];
    new_event_id(eid, sizeof eid);
    cs_fmt_time_ms(req->received_us, ts, sizeof ts);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event_id", eid);
    cJSON_AddStringToObject(ev, "type", "LeadAccepted");
    cJSON_AddStringToObject(ev, "object_id", l.id);
    cJSON_AddStringToObject(ev, "timestamp", ts);
    cJSON_AddItemToObject(ev, "properties", body); /* ev owns body */
    char *value = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    /* Keyed like the lead's event: "lead:<id>" (the leads lane reads it in order with the lead). */
    char key[200];
    snprintf(key, sizeof key, "lead:%s", l.id);
    cs_msg m = {.key = key, .key_len = strlen(key), .value = value, .value_len = strlen(value),
                .ts_us = req->received_us};
    rc = app->bus->ops->produce(app->bus, CS_TOPIC_EVENTS, &m, 1);
    cJSON_free(value);
    if (rc != 0) {
        resp->retry_after = 1;
        return cs_http_error(resp, 503, "log_unavailable", "the event log could not take the write; retry later",
                             NULL);
    }
    resp->status = 202;
    cs_buf_adds(&resp->body, "{\"event_id\":");
    cs_buf_json_str(&resp->body, eid);
    cs_buf_adds(&resp->body, ",\"id\":");
    cs_buf_json_str(&resp->body, l.id);
    cs_buf_printf(&resp->body, ",\"partition\":%d,\"offset\":%lld}", m.partition, (long long)m.offset);
}

/* ---- audit -------------------------------------------------------------- */

static void opt_str(cs_buf *b, const char *name, const char *v)
{
    cs_buf_printf(b, ",\"%s\":", name);
    if (v) cs_buf_json_str(b, v);
    else cs_buf_adds(b, "null");
}

static int on_audit(const cs_audit *a, void *arg)
{
    struct page *pg = arg;
    if (pg->n == pg->limit) {
        pg->more = 1;
        return 1;
    }
    cs_buf *b = pg->b;
    if (pg->n++) cs_buf_adds(b, ",");
    cs_buf_adds(b, "{\"object\":");
    cs_buf_json_str(b, a->object ? a->object : "");
    opt_str(b, "id", a->object_id);
    opt_str(b, "field", a->field);
    opt_str(b, "old_value", a->old_value);
    opt_str(b, "new_value", a->new_value);
    cs_buf_adds(b, ",\"cause\":{\"event_id\":");
    if (a->cause_event_id) cs_buf_json_str(b, a->cause_event_id);
    else cs_buf_adds(b, "null");
    cs_buf_printf(b, ",\"partition\":%d,\"offset\":%lld", a->partition, (long long)a->offset);
    opt_str(b, "rule_id", a->rule_id);
    cs_buf_adds(b, "}");
    opt_str(b, "at", a->at);
    cs_buf_adds(b, "}");
    pg->last = a->seq;
    return 0;
}

void cs_api_audit(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    const char *object = cs_http_query(req, "object"), *id = cs_http_query(req, "id");
    int limit;
    int64_t cursor;
    if (!object || !*object)
        return cs_http_error(resp, 400, "missing_parameter", "object is required (lead, account, rep, ...)", "object");
    if (cs_obj_find(object) < 0 && strcmp(object, "lead") != 0)
        return cs_http_error(resp, 400, "invalid_parameter", "unknown object", "object");
    if (cs_api_page_params(req, resp, &limit, &cursor)) return;
    cs_buf_adds(&resp->body, "{\"items\":[");
    struct page pg = {&resp->body, 0, limit, 0, cursor};
    if (app->store->ops->audit_list(app->store, object, id && *id ? id : NULL, cursor, limit + 1, on_audit, &pg) <
        0) {
        cs_buf_reset(&resp->body);
        return store_unavailable(resp);
    }
    end_page(&resp->body, &pg);
}

/* ---- the handlers in the route table (app.h) ---------------------------- */

void cs_api_accounts(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    if (strcmp(req->method, "POST") == 0) write_object(a, CS_OBJ_ACCOUNT, NULL, req, resp);
    else list_objects(a, CS_OBJ_ACCOUNT, req, resp);
}

void cs_api_account(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    if (strcmp(req->method, "PUT") == 0) write_object(a, CS_OBJ_ACCOUNT, req->param, req, resp);
    else get_object(a, CS_OBJ_ACCOUNT, req, resp);
}

void cs_api_reps(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    if (strcmp(req->method, "POST") == 0) write_object(a, CS_OBJ_REP, NULL, req, resp);
    else list_objects(a, CS_OBJ_REP, req, resp);
}

void cs_api_rep(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    if (strcmp(req->method, "PUT") == 0) write_object(a, CS_OBJ_REP, req->param, req, resp);
    else get_object(a, CS_OBJ_REP, req, resp);
}

void cs_api_alerts(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    list_objects(a, CS_OBJ_ALERT, req, resp);
}

void cs_api_tasks(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    list_objects(a, CS_OBJ_TASK, req, resp);
}

void cs_api_contacts(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    list_objects(a, CS_OBJ_CONTACT, req, resp);
}
