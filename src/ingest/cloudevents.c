/*
 * ingest/cloudevents — POST /v1/cloudevents: CloudEvents 1.0 over HTTP in
 * its three shapes, then the shared batch steps (batch.h):
 *   structured  Content-Type application/cloudevents+json, one event object
 *   batch       Content-Type application/cloudevents-batch+json, an array
 *   binary      attributes in ce-* headers, the body is the event's data
 *               (JSON, labelled by Content-Type)
 * Without a CloudEvents Content-Type and without ce-* headers the body is
 * read by its shape (an object: structured; an array: batch), as the other
 * endpoints read JSON whatever the Content-Type says.
 *
 * Mapping to the canonical event (docs/API.md "CloudEvents"):
 *   event_id    ← source + "/" + id (CloudEvents' uniqueness is source+id)
 *   type        ← the last dot-separated segment of type
 *                 ("com.example.FeatureUsed" → "FeatureUsed"; no dot: as is)
 *   account_id  ← extension accountid, else data.account_id
 *   user_id     ← extension userid, else data.user_id
 *   product_area, plan_tier ← extensions productarea, plantier
 *   timestamp   ← time
 *   properties  ← data (a JSON object)
 *   context.cloudevents ← id, source, the full type, subject, dataschema and
 *                 every other extension (structured and batch modes)
 * Errors name the CloudEvents attribute ("specversion", "accountid",
 * "data.email"; in binary mode the header: "ce-specversion").
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ingest/batch.h"
#include "ingest/jsonarena.h"
#include "ingest/ingest.h"
#include "ingest/jsoncheck.h"

enum mode { M_STRUCTURED, M_BATCH, M_BINARY, M_SHAPE };

static const char *const ce_known[] = {"id",      "source", "specversion", "type", "datacontenttype",
                                       "dataschema", "subject", "time",     "data", "data_base64"};

/* The ce-* headers read in binary mode when the caller cannot walk all
 * headers (cs_ingest_cloudevents with each NULL); with a walk, every ce-*
 * header is an attribute. */
static const char *const bin_attrs[] = {"id",      "source",    "specversion", "type",     "time",
                                        "subject", "dataschema", "accountid",  "userid",   "productarea",
                                        "plantier", "partitionkey", "traceparent"};

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The media type of a Content-Type value, lowercased, without parameters. */
static void media_type(const char *ct, char *out, size_t n)
{
    size_t o = 0;
    if (ct)
        for (const char *p = ct; *p && *p != ';' && o + 1 < n; p++)
            if (!is_ws(*p)) out[o++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    out[o] = '\0';
}

/* JSON media types: application/json, text/json, anything +json. Absent
 * counts as JSON (CloudEvents' JSON format implies application/json). */
static int json_media(const char *mt)
{
    size_t n = strlen(mt);
    return n == 0 || strcmp(mt, "application/json") == 0 || strcmp(mt, "text/json") == 0 ||
           (n > 5 && strcmp(mt + n - 5, "+json") == 0);
}

static int ext_name_ok(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9'))) return 0;
    return 1;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

/* The attribute's name as the sender wrote it: "ce-<name>" in binary mode. */
static const char *fname(int binary, const char *name, char *buf, size_t n)
{
    if (!binary || strcmp(name, "data") == 0 || strncmp(name, "data.", 5) == 0) snprintf(buf, n, "%s", name);
    else snprintf(buf, n, "ce-%s", name);
    return buf;
}

static void verr(cs_verr *err, const char *code, const char *field, const char *fmt, const char *a)
{
    char msg[192];
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field);
    snprintf(msg, sizeof msg, fmt, a);
    snprintf(err->message, sizeof err->message, "%.62s %s", field, msg);
}

/* ------------------------------------------------ native field names */

struct map_arg {
    int binary;
    int acc_from_data, user_from_data;
};

static void field_map(const char *native, char *out, size_t n, void *arg)
{
    const struct map_arg *m = arg;
    char b[64];
    if (strcmp(native, "event_id") == 0) snprintf(out, n, "%s", fname(m->binary, "id", b, sizeof b));
    else if (strcmp(native, "type") == 0) snprintf(out, n, "%s", fname(m->binary, "type", b, sizeof b));
    else if (strcmp(native, "timestamp") == 0) snprintf(out, n, "%s", fname(m->binary, "time", b, sizeof b));
    else if (strcmp(native, "account_id") == 0)
        snprintf(out, n, "%s", m->acc_from_data ? "data.account_id" : fname(m->binary, "accountid", b, sizeof b));
    else if (strcmp(native, "user_id") == 0)
        snprintf(out, n, "%s", m->user_from_data ? "data.user_id" : fname(m->binary, "userid", b, sizeof b));
    else if (strcmp(native, "product_area") == 0) snprintf(out, n, "%s", fname(m->binary, "productarea", b, sizeof b));
    else if (strcmp(native, "plan_tier") == 0) snprintf(out, n, "%s", fname(m->binary, "plantier", b, sizeof b));
    else if (strncmp(native, "properties", 10) == 0) snprintf(out, n, "data%s", native + 10);
    else snprintf(out, n, "%s", native);
}

/* An identifier attribute: a string, or an integer number (as text). */
static int id_value(const cJSON *v, char *buf, size_t n, const char **out)
{
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v)) {
        *out = v->valuestring;
        return 0;
    }
    if (cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble) {
        snprintf(buf, n, "%lld", (long long)v->valuedouble);
        *out = buf;
        return 0;
    }
    return -1;
}

/* A required, non-empty string attribute. */
static int req_str(const cJSON *ce, const char *name, int binary, const char **out, cs_verr *err)
{
    char f[64];
    const cJSON *v = get(ce, name);
    fname(binary, name, f, sizeof f);
    if (!v || cJSON_IsNull(v)) {
        verr(err, "missing_field", f, "is required (CloudEvents 1.0)%s", "");
        return -1;
    }
    if (!cJSON_IsString(v)) {
        verr(err, "wrong_type", f, "must be a string%s", "");
        return -1;
    }
    if (!v->valuestring[0]) {
        verr(err, "invalid_value", f, "must not be empty%s", "");
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

static int opt_str(const cJSON *ce, const char *name, int binary, const char **out, cs_verr *err)
{
    char f[64];
    const cJSON *v = get(ce, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) {
        verr(err, "wrong_type", fname(binary, name, f, sizeof f), "must be a string%s", "");
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

/* One CloudEvent (a JSON object; in binary mode built from the headers) to
 * the native shape, handed to the batch. */
static void add_event(cs_batch *b, size_t index, const cJSON *ce, int binary)
{
    cs_verr err;
    char f[96];
    if (!cJSON_IsObject(ce)) {
        verr(&err, "wrong_type", "", "each event must be a JSON object%s", "");
        snprintf(err.message, sizeof err.message, "each event must be a JSON object");
        return cs_batch_reject(b, index, &err);
    }
    if (!binary && cs_json_check(ce, 1, CS_JSON_MAX_DEPTH, b->ing->cfg->max_object_keys, &err) != 0)
        return cs_batch_reject(b, index, &err);
    const char *specversion, *id, *source, *type, *time_s, *subject, *dataschema, *dct;
    /* specversion first: it says how to read the rest. */
    if (req_str(ce, "specversion", binary, &specversion, &err)) return cs_batch_reject(b, index, &err);
    if (strcmp(specversion, "1.0") != 0) {
        char got[40];
        snprintf(got, sizeof got, "%.32s", specversion);
        verr(&err, "invalid_value", fname(binary, "specversion", f, sizeof f),
             "must be \"1.0\" (got \"%s\"); crmstream speaks CloudEvents 1.0", got);
        return cs_batch_reject(b, index, &err);
    }
    if (req_str(ce, "id", binary, &id, &err) || req_str(ce, "source", binary, &source, &err) ||
        req_str(ce, "type", binary, &type, &err) || opt_str(ce, "time", binary, &time_s, &err) ||
        opt_str(ce, "subject", binary, &subject, &err) || opt_str(ce, "dataschema", binary, &dataschema, &err) ||
        opt_str(ce, "datacontenttype", binary, &dct, &err))
        return cs_batch_reject(b, index, &err);
    /* Extensions: lowercase letters and digits, scalar values. */
    for (const cJSON *a = ce->child; a; a = a->next) {
        size_t i, nk = sizeof ce_known / sizeof ce_known[0];
        for (i = 0; i < nk; i++)
            if (strcmp(a->string, ce_known[i]) == 0) break;
        if (i < nk) continue;
        char nm[72];
        snprintf(nm, sizeof nm, "%.64s", a->string);
        if (!ext_name_ok(a->string)) {
            verr(&err, "invalid_value", nm,
                 "is not a valid extension attribute name: CloudEvents 1.0 allows only lowercase letters and "
                 "digits (accountid, not account_id)%s",
                 "");
            return cs_batch_reject(b, index, &err);
        }
        if (cJSON_IsObject(a) || cJSON_IsArray(a)) {
            verr(&err, "wrong_type", fname(binary, nm, f, sizeof f),
                 "must be a string, number or boolean (CloudEvents extensions are scalars)%s", "");
            return cs_batch_reject(b, index, &err);
        }
    }
    if (get(ce, "data_base64")) {
        verr(&err, "wrong_type", "data_base64",
             "is not supported: the event's data must be a JSON object (its fields become properties)%s", "");
        return cs_batch_reject(b, index, &err);
    }
    const cJSON *data = get(ce, "data");
    if (data && !cJSON_IsNull(data) && !cJSON_IsObject(data)) {
        verr(&err, "wrong_type", "data", "must be a JSON object (its fields become the event's properties)%s", "");
        return cs_batch_reject(b, index, &err);
    }
    if (!cJSON_IsObject(data)) data = NULL;
    if (dct && data) {
        char mt[96];
        media_type(dct, mt, sizeof mt);
        if (!json_media(mt)) {
            verr(&err, "invalid_value", fname(binary, "datacontenttype", f, sizeof f),
                 "must be application/json or a +json type: data becomes the event's properties%s", "");
            return cs_batch_reject(b, index, &err);
        }
    }
    /* event_id = source "/" id */
    char event_id[CS_ID_MAX + 2];
    size_t idlen = strlen(source) + 1 + strlen(id);
    if (idlen > CS_ID_MAX) {
        char lim[96];
        snprintf(lim, sizeof lim, "is too long: source + \"/\" + id is %zu bytes, the limit is %d", idlen, CS_ID_MAX);
        verr(&err, "invalid_value", fname(binary, "id", f, sizeof f), "%s", lim);
        return cs_batch_reject(b, index, &err);
    }
    size_t sl = strlen(source);
    memcpy(event_id, source, sl);
    event_id[sl] = '/';
    memcpy(event_id + sl + 1, id, strlen(id) + 1);
    /* type: the last segment of a reverse-DNS name */
    const char *dot = strrchr(type, '.');
    const char *short_type = dot ? dot + 1 : type;
    if (!*short_type) {
        verr(&err, "invalid_value", fname(binary, "type", f, sizeof f),
             "must not end with a dot: its last segment is the event type (com.example.FeatureUsed gives "
             "FeatureUsed)%s",
             "");
        return cs_batch_reject(b, index, &err);
    }
    int64_t ts_us = 0;
    if (time_s && cs_parse_time(time_s, &ts_us) != 0) {
        verr(&err, "invalid_value", fname(binary, "time", f, sizeof f),
             "must be an RFC 3339 time such as 2026-11-27T10:00:00.123Z%s", "");
        return cs_batch_reject(b, index, &err);
    }
    struct map_arg ma = {binary, 0, 0};
    char abuf[48], ubuf[48];
    const char *acc, *user;
    if (id_value(get(ce, "accountid"), abuf, sizeof abuf, &acc) != 0) {
        verr(&err, "wrong_type", fname(binary, "accountid", f, sizeof f), "must be a string%s", "");
        return cs_batch_reject(b, index, &err);
    }
    if (!acc) {
        if (id_value(get(data, "account_id"), abuf, sizeof abuf, &acc) != 0) {
            verr(&err, "wrong_type", "data.account_id", "must be a string%s", "");
            return cs_batch_reject(b, index, &err);
        }
        ma.acc_from_data = acc != NULL;
    }
    if (id_value(get(ce, "userid"), ubuf, sizeof ubuf, &user) != 0) {
        verr(&err, "wrong_type", fname(binary, "userid", f, sizeof f), "must be a string%s", "");
        return cs_batch_reject(b, index, &err);
    }
    if (!user) {
        if (id_value(get(data, "user_id"), ubuf, sizeof ubuf, &user) != 0) {
            verr(&err, "wrong_type", "data.user_id", "must be a string%s", "");
            return cs_batch_reject(b, index, &err);
        }
        ma.user_from_data = user != NULL;
    }

    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event_id", event_id);
    cJSON_AddStringToObject(ev, "type", short_type);
    if (acc) cJSON_AddStringToObject(ev, "account_id", acc);
    if (user) cJSON_AddStringToObject(ev, "user_id", user);
    if (time_s) {
        char when[40];
        cs_fmt_time_ms(ts_us, when, sizeof when);
        cJSON_AddStringToObject(ev, "timestamp", when);
    }
    const cJSON *pa = get(ce, "productarea"), *pt = get(ce, "plantier");
    if (pa && !cJSON_IsNull(pa)) cJSON_AddItemReferenceToObject(ev, "product_area", (cJSON *)pa);
    if (pt && !cJSON_IsNull(pt)) cJSON_AddItemReferenceToObject(ev, "plan_tier", (cJSON *)pt);
    if (data) cJSON_AddItemReferenceToObject(ev, "properties", (cJSON *)data);
    /* The envelope, kept for explainability: what the sender called it. */
    cJSON *ctx = cJSON_AddObjectToObject(ev, "context");
    cJSON *env = cJSON_AddObjectToObject(ctx, "cloudevents");
    cJSON_AddStringToObject(env, "id", id);
    cJSON_AddStringToObject(env, "source", source);
    cJSON_AddStringToObject(env, "type", type);
    if (subject) cJSON_AddStringToObject(env, "subject", subject);
    if (dataschema) cJSON_AddStringToObject(env, "dataschema", dataschema);
    for (const cJSON *a = ce->child; a; a = a->next) {
        size_t i, nk = sizeof ce_known / sizeof ce_known[0];
        for (i = 0; i < nk; i++)
            if (strcmp(a->string, ce_known[i]) == 0) break;
        if (i < nk || cJSON_IsNull(a) || strcmp(a->string, "accountid") == 0 || strcmp(a->string, "userid") == 0 ||
            strcmp(a->string, "productarea") == 0 || strcmp(a->string, "plantier") == 0)
            continue;
        cJSON_AddItemReferenceToObject(env, a->string, (cJSON *)a);
    }
    cs_batch_add(b, index, ev, time_s != NULL, ts_us, field_map, &ma);
    cJSON_Delete(ev);
}

/* ----------------------------------------------------------- binary mode */

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Header values are percent-encoded outside printable ASCII (CloudEvents
 * HTTP binding 3.1.3.2). A '%' not followed by two hex digits is kept.
 * Returns the decoded length (a decoded NUL shows as a shorter strlen). */
static size_t pct_decode(const char *s, char *out)
{
    size_t o = 0;
    for (size_t i = 0; s[i]; i++) {
        int h, l;
        if (s[i] == '%' && s[i + 1] && s[i + 2] && (h = hexv(s[i + 1])) >= 0 && (l = hexv(s[i + 2])) >= 0) {
            out[o++] = (char)(h << 4 | l);
            i += 2;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return o;
}

struct hdr_walk {
    cJSON      *ce;
    const char *bad;
    char        badname[72];
};

/* One ce-<name> header as attribute <name> (lowercased: header names are
 * case-insensitive), percent-decoded. The first of repeated headers wins. */
static void add_header_attr(struct hdr_walk *w, const char *hname, const char *v)
{
    char nm[72];
    size_t n = 0;
    for (const char *c = hname + 3; *c && n + 1 < sizeof nm; c++) nm[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    nm[n] = '\0';
    if (!n || cJSON_GetObjectItemCaseSensitive(w->ce, nm)) return;
    char *d = cs_malloc(strlen(v) + 1);
    size_t dn = pct_decode(v, d);
    if (strlen(d) != dn || cs_utf8_invalid_at(d, dn) >= 0) {
        if (!w->bad) {
            snprintf(w->badname, sizeof w->badname, "%s", nm);
            w->bad = w->badname;
        }
    } else {
        cJSON_AddStringToObject(w->ce, nm, d);
    }
    free(d);
}

static void on_header(void *arg, const char *name, const char *value)
{
    if (strncasecmp(name, "ce-", 3) == 0) add_header_attr(arg, name, value);
}

/* The event as a JSON object built from the ce-* headers; data (owned by
 * the caller's tree) is attached by reference. Sets bad (w->badname) to the
 * attribute when a decoded value is not UTF-8 or holds a NUL. */
static cJSON *from_headers(cs_ingest_header_fn header, cs_ingest_each_header_fn each, void *harg,
                           const cJSON *data, struct hdr_walk *w)
{
    w->ce = cJSON_CreateObject();
    w->bad = NULL;
    if (each) {
        each(harg, on_header, w);
    } else {
        for (size_t i = 0; i < sizeof bin_attrs / sizeof bin_attrs[0]; i++) {
            char h[48];
            snprintf(h, sizeof h, "ce-%s", bin_attrs[i]);
            const char *v = header(harg, h);
            if (v) add_header_attr(w, h, v);
        }
    }
    if (data) cJSON_AddItemReferenceToObject(w->ce, "data", (cJSON *)data);
    return w->ce;
}

/* -------------------------------------------------------------- request */

static int cloudevents_run(cs_ingest *ing, const cs_ingest_req *req, cs_ingest_header_fn header,
                           cs_ingest_each_header_fn each, void *harg, cs_buf *resp, int *retry_after)
{
    cs_ingest_body body;
    cJSON *root = NULL, *bin = NULL;
    int status = cs_ingest_open(ing, req, &body, resp);
    if (status) goto out;
    const char *ct = header ? header(harg, "Content-Type") : NULL;
    char mt[128];
    media_type(ct, mt, sizeof mt);
    enum mode mode;
    if (strcmp(mt, "application/cloudevents-batch+json") == 0) mode = M_BATCH;
    else if (strcmp(mt, "application/cloudevents+json") == 0) mode = M_STRUCTURED;
    else if (strncmp(mt, "application/cloudevents", 23) == 0) {
        status = cs_ingest_fail(ing, resp, 415, "unsupported_media_type",
                                "only the JSON event format is supported: application/cloudevents+json or "
                                "application/cloudevents-batch+json",
                                "Content-Type");
        goto out;
    } else if (header && (header(harg, "ce-specversion") || header(harg, "ce-id") || header(harg, "ce-type") ||
                          header(harg, "ce-source")))
        mode = M_BINARY;
    else mode = M_SHAPE;

    const char *p = body.data + cs_ingest_bom(body.data, body.len), *end = body.data + body.len;
    while (p < end && is_ws(*p)) p++;
    if (mode == M_BINARY && p < end && !json_media(mt)) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "binary-mode data must be JSON (Content-Type application/json or a +json type), not \"%.80s\"",
                 mt);
        status = cs_ingest_fail(ing, resp, 415, "unsupported_media_type", msg, "Content-Type");
        goto out;
    }
    if (p == end && mode != M_BINARY) {
        status = cs_ingest_fail(ing, resp, 400, "empty_body", "the request body is empty", NULL);
        goto out;
    }
    if (p < end) {
        status = cs_ingest_syntax(ing, body.data, body.len, (size_t)(p - body.data), 0, resp);
        if (status) goto out;
        const char *stop = NULL;
        root = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &stop, 0);
        if (!root) {
            status = cs_ingest_parse_error(ing, body.data, body.len, stop, resp);
            goto out;
        }
        while (stop < end && is_ws(*stop)) stop++;
        if (stop < end) {
            char msg[128];
            snprintf(msg, sizeof msg, "unexpected data after the JSON value at byte %ld", (long)(stop - body.data));
            status = cs_ingest_fail(ing, resp, 400, "malformed_json", msg, NULL);
            goto out;
        }
    }
    if (mode == M_SHAPE) mode = cJSON_IsArray(root) ? M_BATCH : M_STRUCTURED;
    if (mode == M_STRUCTURED && !cJSON_IsObject(root)) {
        status = cs_ingest_fail(ing, resp, 400, "wrong_shape",
                                cJSON_IsArray(root) ? "application/cloudevents+json holds one event object; send an "
                                                      "array as application/cloudevents-batch+json"
                                                    : "the body must be a CloudEvent (a JSON object)",
                                NULL);
        goto out;
    }
    size_t n = 1;
    if (mode == M_BATCH) {
        if (!cJSON_IsArray(root)) {
            status = cs_ingest_fail(ing, resp, 400, "wrong_shape",
                                    "application/cloudevents-batch+json must be an array of events", NULL);
            goto out;
        }
        n = (size_t)cJSON_GetArraySize(root);
        if (n == 0) {
            status = cs_ingest_fail(ing, resp, 400, "wrong_shape", "the batch holds no events (empty array)", NULL);
            goto out;
        }
        if ((long)n > ing->cfg->max_batch_events) {
            char msg[128];
            snprintf(msg, sizeof msg, "%zu events in one request; the limit is %ld", n, ing->cfg->max_batch_events);
            status = cs_ingest_fail(ing, resp, 413, "too_many_events", msg, NULL);
            goto out;
        }
    }
    /* CloudEvents carry no write key: Basic auth only, as on /v1/events. */
    status = cs_ingest_authorize(ing, &body, NULL, n, resp, retry_after);
    if (status) goto out;

    cs_batch b;
    cs_batch_init(&b, ing, "cloudevents", mode == M_BINARY ? "ce-id" : "id", req->received_us, n);
    b.meta.write_key = body.key ? body.key->name : NULL;
    if (mode == M_BINARY) {
        cs_verr err;
        struct hdr_walk w;
        if (root && !cJSON_IsNull(root) && !cJSON_IsObject(root)) {
            verr(&err, "wrong_type", "data",
                 "must be a JSON object (the request body in binary mode; its fields become properties)%s", "");
            cs_batch_reject(&b, 0, &err);
        } else if (root && cJSON_IsObject(root) &&
                   cs_json_check(root, 2, CS_JSON_MAX_DEPTH, ing->cfg->max_object_keys, &err) != 0) {
            char f2[sizeof err.field];
            snprintf(f2, sizeof f2, "data%s%.80s", err.field[0] ? "." : "", err.field);
            memcpy(err.field, f2, sizeof f2);
            cs_batch_reject(&b, 0, &err);
        } else {
            bin = from_headers(header, each, harg, cJSON_IsObject(root) ? root : NULL, &w);
            if (w.bad) {
                char f[96];
                verr(&err, "invalid_value", fname(1, w.bad, f, sizeof f),
                     "is not valid UTF-8 once percent-decoded%s", "");
                cs_batch_reject(&b, 0, &err);
            } else {
                add_event(&b, 0, bin, 1);
            }
        }
    } else if (mode == M_BATCH) {
        size_t i = 0;
        for (const cJSON *e = root->child; e; e = e->next, i++) add_event(&b, i, e, 0);
    } else {
        add_event(&b, 0, root, 0);
    }
    status = cs_batch_finish(&b, resp, retry_after);
    cs_batch_free(&b);
out:
    cs_json_arena_delete(bin);
    cs_json_arena_delete(root);
    cs_ingest_body_free(&body);
    return status;
}

/* The request's cJSON trees live in this thread's arena (jsonarena.h). */
int cs_ingest_cloudevents(cs_ingest *ing, const cs_ingest_req *req, cs_ingest_header_fn header,
                          cs_ingest_each_header_fn each, void *harg, cs_buf *resp, int *retry_after)
{
    cs_json_arena_begin();
    int status = cloudevents_run(ing, req, header, each, harg, resp, retry_after);
    cs_json_arena_end();
    return status;
}
