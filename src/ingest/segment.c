/*
 * ingest/segment — the Segment HTTP Tracking API: POST /v1/batch and the
 * single calls /v1/{track,identify,group,page,screen}, as sent by the Segment
 * and RudderStack SDKs (FACTS.md): body JSON whatever the Content-Type says,
 * gzip bodies, the write key as Basic-auth user or `writeKey` in the body,
 * batch `context` merged into each item, `sentAt` per batch or per item.
 *
 * Each message becomes a native-shaped cJSON object (borrowing the message's
 * subtrees by reference, no copies) and goes through the same validation,
 * dedupe and append as /v1/events (batch.h). Mapping (design brief §5):
 *   messageId → event_id; track.event → type (PascalCased when it holds
 *   spaces: "Order Completed" → "OrderCompleted"); identify → ContactIdentified,
 *   group → AccountGrouped, page → PageViewed, screen → ScreenViewed;
 *   account_id ← context.groupId, else groupId, else properties/traits.account_id;
 *   user_id ← userId, else anonymousId; properties ← properties (track, page,
 *   screen) or traits (identify, group);
 *   timestamp ← receivedAt − (sentAt − originalTimestamp) when both are
 *   present, else timestamp, else originalTimestamp, else receivedAt.
 * Errors name the Segment field (messageId, event, context.groupId, ...).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/batch.h"
#include "ingest/jsonarena.h"
#include "ingest/ingest.h"
#include "ingest/jsoncheck.h"

enum call { C_TRACK, C_IDENTIFY, C_GROUP, C_PAGE, C_SCREEN, C_ALIAS, C_UNKNOWN };

static enum call call_of(const char *s)
{
    if (!s) return C_UNKNOWN;
    if (strcmp(s, "track") == 0) return C_TRACK;
    if (strcmp(s, "identify") == 0) return C_IDENTIFY;
    if (strcmp(s, "group") == 0) return C_GROUP;
    if (strcmp(s, "page") == 0) return C_PAGE;
    if (strcmp(s, "screen") == 0) return C_SCREEN;
    if (strcmp(s, "alias") == 0) return C_ALIAS;
    return C_UNKNOWN;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static int type_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-' || c == ':';
}

/* A track event name as a canonical type: kept when already valid, else
 * the words joined in PascalCase ("Order Completed" → "OrderCompleted"). */
static void normalize_type(const char *name, char *out, size_t n)
{
    int valid = ((*name >= 'A' && *name <= 'Z') || (*name >= 'a' && *name <= 'z'));
    for (const char *p = name; valid && *p; p++) valid = type_char(*p);
    if (valid) {
        snprintf(out, n, "%s", name);
        return;
    }
    size_t o = 0;
    int up = 1;
    for (const char *p = name; *p && o + 1 < n; p++) {
        char c = *p;
        if (!type_char(c)) {
            up = 1;
            continue;
        }
        if (up && c >= 'a' && c <= 'z') c = (char)(c - 32);
        up = 0;
        out[o++] = c;
    }
    out[o] = '\0';
    if (!o) snprintf(out, n, "%s", name); /* nothing usable: validation names the field */
}

struct map_arg {
    enum call call;
};

static void field_map(const char *native, char *out, size_t n, void *arg)
{
    const struct map_arg *m = arg;
    int traits = m->call == C_IDENTIFY || m->call == C_GROUP;
    if (strcmp(native, "event_id") == 0) snprintf(out, n, "messageId");
    else if (strcmp(native, "type") == 0) snprintf(out, n, "%s", m->call == C_TRACK ? "event" : "type");
    else if (strcmp(native, "account_id") == 0) snprintf(out, n, "%s", m->call == C_GROUP ? "groupId" : "context.groupId");
    else if (strcmp(native, "user_id") == 0) snprintf(out, n, "userId");
    else if (traits && strncmp(native, "properties", 10) == 0) snprintf(out, n, "traits%s", native + 10);
    else snprintf(out, n, "%s", native);
}

static int id_string(const cJSON *v, char *buf, size_t n, const char **out)
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

static void verr(cs_verr *err, const char *code, const char *field, const char *msg)
{
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field);
    snprintf(err->message, sizeof err->message, "%s %s", field, msg);
}

/* Parse an optional time field v (the message's key name); -1 with err on
 * a bad value. */
static int time_field(const cJSON *v, const char *name, int *has, int64_t *us, cs_verr *err)
{
    *has = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) {
        verr(err, "wrong_type", name, "must be an RFC 3339 time string");
        return -1;
    }
    if (cs_parse_time(v->valuestring, us) != 0) {
        verr(err, "invalid_value", name, "must be an RFC 3339 time such as 2026-11-27T10:00:00.123Z");
        return -1;
    }
    *has = 1;
    return 0;
}

/* The message keys the mapping reads, found in one walk over the message
 * (its keys are unique: cs_json_check ran first) instead of one linear
 * lookup per key. */
struct msg_keys {
    const cJSON *type, *sent_at, *original_ts, *timestamp, *traits, *properties, *context, *message_id, *event,
        *group_id, *user_id, *anonymous_id, *name, *category;
};

static void msg_keys(const cJSON *msg, struct msg_keys *k)
{
    memset(k, 0, sizeof *k);
    for (const cJSON *c = msg->child; c; c = c->next) {
        const char *n = c->string;
        const cJSON **slot = NULL;
        switch (n[0]) {
        case 'a': slot = strcmp(n, "anonymousId") == 0 ? &k->anonymous_id : NULL; break;
        case 'c':
            slot = strcmp(n, "context") == 0 ? &k->context : strcmp(n, "category") == 0 ? &k->category : NULL;
            break;
        case 'e': slot = strcmp(n, "event") == 0 ? &k->event : NULL; break;
        case 'g': slot = strcmp(n, "groupId") == 0 ? &k->group_id : NULL; break;
        case 'm': slot = strcmp(n, "messageId") == 0 ? &k->message_id : NULL; break;
        case 'n': slot = strcmp(n, "name") == 0 ? &k->name : NULL; break;
        case 'o': slot = strcmp(n, "originalTimestamp") == 0 ? &k->original_ts : NULL; break;
        case 'p': slot = strcmp(n, "properties") == 0 ? &k->properties : NULL; break;
        case 's': slot = strcmp(n, "sentAt") == 0 ? &k->sent_at : NULL; break;
        case 't':
            slot = strcmp(n, "type") == 0        ? &k->type
                   : strcmp(n, "timestamp") == 0 ? &k->timestamp
                   : strcmp(n, "traits") == 0    ? &k->traits
                                                 : NULL;
            break;
        case 'u': slot = strcmp(n, "userId") == 0 ? &k->user_id : NULL; break;
        default: break;
        }
        if (slot && !*slot) *slot = c;
    }
}

/* Map one message to the native shape and hand it to the batch. */
static void add_message(cs_batch *b, size_t index, const cJSON *msg, enum call call, const cJSON *batch_ctx,
                        int batch_has_sent, int64_t batch_sent_us)
{
    cs_verr err;
    if (!cJSON_IsObject(msg)) {
        verr(&err, "wrong_type", "", "each message must be a JSON object");
        snprintf(err.message, sizeof err.message, "each message must be a JSON object");
        return cs_batch_reject(b, index, &err);
    }
    if (cs_json_check(msg, 1, CS_JSON_MAX_DEPTH, b->ing->cfg->max_object_keys, &err) != 0)
        return cs_batch_reject(b, index, &err);
    struct msg_keys k;
    msg_keys(msg, &k);
    if (call == C_UNKNOWN) {
        const cJSON *t = k.type;
        call = call_of(cJSON_IsString(t) ? t->valuestring : NULL);
        if (call == C_UNKNOWN) {
            verr(&err, t ? "invalid_value" : "missing_field", "type",
                 "must be one of track, identify, group, page, screen");
            return cs_batch_reject(b, index, &err);
        }
    }
    if (call == C_ALIAS) {
        verr(&err, "unsupported_type", "type", "alias is not supported: crmstream keys people by userId");
        return cs_batch_reject(b, index, &err);
    }
    /* Time: Segment's clock-skew correction when sentAt and originalTimestamp are both there. */
    int has_sent, has_orig, has_ts;
    int64_t sent, orig, ts;
    if (time_field(k.sent_at, "sentAt", &has_sent, &sent, &err) ||
        time_field(k.original_ts, "originalTimestamp", &has_orig, &orig, &err) ||
        time_field(k.timestamp, "timestamp", &has_ts, &ts, &err))
        return cs_batch_reject(b, index, &err);
    if (!has_sent && batch_has_sent) has_sent = 1, sent = batch_sent_us;
    int has_client = 0;
    int64_t client = 0, when = 0;
    if (has_orig && has_sent) when = b->meta.received_us - (sent - orig), client = orig, has_client = 1;
    else if (has_ts) when = client = ts, has_client = 1;
    else if (has_orig) when = client = orig, has_client = 1;

    int traits = call == C_IDENTIFY || call == C_GROUP;
    const cJSON *props = traits ? k.traits : k.properties;
    const cJSON *ctx = k.context;
    if (ctx && !cJSON_IsNull(ctx) && !cJSON_IsObject(ctx)) {
        verr(&err, "wrong_type", "context", "must be an object");
        return cs_batch_reject(b, index, &err);
    }
    if (props && !cJSON_IsNull(props) && !cJSON_IsObject(props)) {
        verr(&err, "wrong_type", traits ? "traits" : "properties", "must be an object");
        return cs_batch_reject(b, index, &err);
    }

    /* The native event, field by field: pointers into the message's tree,
     * nothing built or copied (the batch context and a page's name and
     * category are merged when the canonical bytes are written). */
    cs_event ev;
    memset(&ev, 0, sizeof ev);
    const cJSON *mid = k.message_id;
    int mid_bad = mid && !cJSON_IsNull(mid) && !cJSON_IsString(mid); /* said after the mapping's own errors */
    if (cJSON_IsString(mid)) ev.event_id = mid->valuestring;
    char tbuf[CS_TYPE_MAX * 2];
    const char *type = call == C_IDENTIFY ? "ContactIdentified"
                       : call == C_GROUP  ? "AccountGrouped"
                       : call == C_PAGE   ? "PageViewed"
                       : call == C_SCREEN ? "ScreenViewed"
                                          : NULL;
    if (call == C_TRACK) {
        const cJSON *e = k.event;
        if (!e || cJSON_IsNull(e)) {
            verr(&err, "missing_field", "event", "is required for a track call");
            return cs_batch_reject(b, index, &err);
        }
        if (!cJSON_IsString(e)) {
            verr(&err, "wrong_type", "event", "must be a string");
            return cs_batch_reject(b, index, &err);
        }
        normalize_type(e->valuestring, tbuf, sizeof tbuf);
        type = tbuf;
    }
    ev.type = type;

    /* Context: the message's own keys win over the batch's. */
    const cJSON *base = cJSON_IsObject(batch_ctx) && batch_ctx->child ? batch_ctx : NULL;
    ev.context_base = base;
    ev.context = cJSON_IsObject(ctx) ? ctx : NULL;

    char abuf[48], ubuf[48];
    const char *acc = NULL, *user = NULL;
    const cJSON *gid = get(ctx, "groupId");
    if (!gid && base) gid = get(base, "groupId");
    const cJSON *cands[3] = {gid, k.group_id, get(props, "account_id")};
    const char *names[3] = {"context.groupId", "groupId", traits ? "traits.account_id" : "properties.account_id"};
    if (call == C_GROUP) { /* a group call is about the group it names */
        const cJSON *t = cands[0];
        cands[0] = cands[1], cands[1] = t;
        const char *tn = names[0];
        names[0] = names[1], names[1] = tn;
    }
    for (int i = 0; i < 3 && !acc; i++) {
        if (!cands[i] || cJSON_IsNull(cands[i])) continue;
        if (id_string(cands[i], abuf, sizeof abuf, &acc) != 0) {
            verr(&err, "wrong_type", names[i], "must be a string");
            return cs_batch_reject(b, index, &err);
        }
    }
    ev.account_id = acc;
    const cJSON *uid = k.user_id;
    if (!uid || cJSON_IsNull(uid)) uid = k.anonymous_id;
    if (id_string(uid, ubuf, sizeof ubuf, &user) != 0) {
        verr(&err, "wrong_type", "userId", "must be a string");
        return cs_batch_reject(b, index, &err);
    }
    ev.user_id = user;
    if (mid_bad) {
        verr(&err, "wrong_type", "messageId", "must be a string");
        return cs_batch_reject(b, index, &err);
    }
    /* Millisecond precision, as the canonical timestamp keeps it. */
    if (has_client) when = (when >= 0 ? when / 1000 : (when - 999) / 1000) * 1000;
    ev.ts_us = has_client ? when : b->meta.received_us;
    ev.has_ts = has_client;
    ev.properties = cJSON_IsObject(props) ? props : NULL;
    if (call == C_PAGE || call == C_SCREEN) {
        /* The page/screen name and category are properties of the view. */
        const cJSON *nm = k.name, *cat = k.category;
        if (cJSON_IsString(nm) && !get(props, "name")) ev.prop_name = nm->valuestring;
        if (cJSON_IsString(cat) && !get(props, "category")) ev.prop_category = cat->valuestring;
    }
    struct map_arg ma = {call};
    cs_batch_add_event(b, index, &ev, has_client, client, field_map, &ma);
}

static int segment_run(cs_ingest *ing, const char *call_name, const cs_ingest_req *req, cs_buf *resp,
                       int *retry_after)
{
    cs_ingest_body body;
    cJSON *root = NULL;
    int status = cs_ingest_open_raw(ing, req, &body, resp);
    if (status) goto out;
    status = cs_ingest_parse_one(ing, &body, &root, resp);
    if (status) goto out;
    if (!cJSON_IsObject(root)) {
        status = cs_ingest_fail(ing, resp, 400, "wrong_shape", "the body must be a JSON object", NULL);
        goto out;
    }
    for (const cJSON *a = root->child; a; a = a->next) /* the envelope's own keys, once each */
        for (const cJSON *c = a->next; c; c = c->next)
            if (strcmp(a->string, c->string) == 0) {
                status = cs_ingest_fail(ing, resp, 400, "duplicate_key", "a key appears more than once in the body",
                                        a->string);
                goto out;
            }
    int is_batch = strcmp(call_name, "batch") == 0;
    const cJSON *items = is_batch ? get(root, "batch") : NULL;
    size_t n = 1;
    if (is_batch) {
        if (!cJSON_IsArray(items)) {
            status = cs_ingest_fail(ing, resp, 400, "wrong_shape", "batch must be an array of messages", "batch");
            goto out;
        }
        n = (size_t)cJSON_GetArraySize(items);
        if (n == 0) {
            status = cs_ingest_fail(ing, resp, 400, "wrong_shape", "the batch holds no messages", "batch");
            goto out;
        }
        if ((long)n > ing->cfg->max_batch_events) {
            char msg[128];
            snprintf(msg, sizeof msg, "%zu messages in one batch; the limit is %ld", n, ing->cfg->max_batch_events);
            status = cs_ingest_fail(ing, resp, 413, "too_many_events", msg, "batch");
            goto out;
        }
    }
    const cJSON *wk = get(root, "writeKey");
    status = cs_ingest_authorize(ing, &body, cJSON_IsString(wk) ? wk->valuestring : NULL, n, resp, retry_after);
    if (status) goto out;

    const cJSON *bctx = is_batch ? get(root, "context") : NULL;
    cs_verr err;
    if (bctx && !cJSON_IsNull(bctx) && !cJSON_IsObject(bctx)) {
        status = cs_ingest_fail(ing, resp, 400, "wrong_shape", "context must be an object", "context");
        goto out;
    }
    if (bctx && cs_json_check(bctx, 2, CS_JSON_MAX_DEPTH, ing->cfg->max_object_keys, &err) != 0) {
        char f[128];
        snprintf(f, sizeof f, "context.%s", err.field);
        status = cs_ingest_fail(ing, resp, 400, err.code, err.message, f);
        goto out;
    }
    int has_sent = 0;
    int64_t sent = 0;
    if (is_batch) {
        const cJSON *s = get(root, "sentAt");
        if (cJSON_IsString(s) && cs_parse_time(s->valuestring, &sent) == 0) has_sent = 1;
        else if (s && !cJSON_IsNull(s)) {
            status = cs_ingest_fail(ing, resp, 400, "invalid_value", "sentAt must be an RFC 3339 time", "sentAt");
            goto out;
        }
    }
    cs_batch b;
    cs_batch_init(&b, ing, "segment", "messageId", req->received_us, n);
    b.meta.write_key = body.key ? body.key->name : NULL;
    if (is_batch) {
        size_t i = 0;
        for (const cJSON *m = items->child; m; m = m->next, i++) add_message(&b, i, m, C_UNKNOWN, bctx, has_sent, sent);
    } else {
        add_message(&b, 0, root, call_of(call_name), NULL, 0, 0);
    }
    status = cs_batch_finish(&b, resp, retry_after);
    cs_batch_free(&b);
out:
    cs_json_arena_delete(root);
    cs_ingest_body_free(&body);
    return status;
}

/* The request's cJSON trees live in this thread's arena (jsonarena.h). */
int cs_ingest_segment(cs_ingest *ing, const char *call_name, const cs_ingest_req *req, cs_buf *resp,
                      int *retry_after)
{
    cs_json_arena_begin();
    int status = segment_run(ing, call_name, req, resp, retry_after);
    cs_json_arena_end();
    return status;
}
