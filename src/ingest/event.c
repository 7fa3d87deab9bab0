/*
 * ingest/event — validation and canonical serialization of events.
 */
#include "ingest/event.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <xxhash.h>

#include "ingest/jsonw.h"

static int set_err(cs_verr *err, const char *code, const char *field, const char *fmt, const char *a)
{
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", field);
    snprintf(err->message, sizeof err->message, fmt, field, a);
    return -1;
}

/* Optional (or required) string field of at most max bytes. */
static int get_str(const cJSON *obj, const char *name, const char *path, int required, size_t max,
                   const char **out, cs_verr *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (required) return set_err(err, "missing_field", path, "%s is required%s", "");
        return 0;
    }
    if (!cJSON_IsString(v)) return set_err(err, "wrong_type", path, "%s must be a string%s", "");
    size_t n = strlen(v->valuestring);
    if (n == 0 && required) return set_err(err, "invalid_value", path, "%s must not be empty%s", "");
    if (n > max) return set_err(err, "invalid_value", path, "%s is longer than the limit%s", "");
    *out = v->valuestring;
    return 0;
}

static int get_num(const cJSON *obj, const char *name, const char *path, cs_verr *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return set_err(err, "wrong_type", path, "%s must be a number%s", "");
    if (v->valuedouble < 0) return set_err(err, "invalid_value", path, "%s must not be negative%s", "");
    return 0;
}

int cs_event_is_lead(const char *type)
{
    return strcmp(type, "LeadCreated") == 0 || strcmp(type, "DemoRequested") == 0;
}

static int valid_type_name(const char *t)
{
    if (!((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z'))) return 0;
    for (; *t; t++)
        if (!((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9') ||
              *t == '_' || *t == '.' || *t == '-' || *t == ':'))
            return 0;
    return 1;
}

static int check_props(cs_event *ev, cs_verr *err);

static const char *const known_fields[] = {"event_id", "type",      "account_id", "user_id",
                                           "timestamp", "product_area", "plan_tier", "properties",
                                           "context",  "integrations"};

int cs_event_validate(const cJSON *obj, int64_t received_us, cs_event *ev, cs_verr *err)
{
    memset(ev, 0, sizeof *ev);
    if (!cJSON_IsObject(obj)) return set_err(err, "wrong_type", "", "an event must be a JSON object%s%s", "");
    for (const cJSON *f = obj->child; f; f = f->next) {
        size_t i, n = sizeof known_fields / sizeof known_fields[0];
        for (i = 0; i < n; i++)
            if (strcmp(f->string, known_fields[i]) == 0) break;
        if (i == n) {
            char path[96];
            snprintf(path, sizeof path, "%.90s", f->string);
            return set_err(err, "unknown_field", path,
                           "%s is not a field of an event (custom data goes in properties)%s", "");
        }
    }
    if (get_str(obj, "event_id", "event_id", 1, CS_ID_MAX, &ev->event_id, err)) return -1;
    if (get_str(obj, "type", "type", 1, CS_TYPE_MAX, &ev->type, err)) return -1;
    if (!valid_type_name(ev->type))
        return set_err(err, "invalid_value", "type",
                       "%s must start with a letter and hold only letters, digits and _.:-%s", "");
    if (get_str(obj, "user_id", "user_id", 0, CS_ID_MAX, &ev->user_id, err)) return -1;
    if (get_str(obj, "product_area", "product_area", 0, CS_ID_MAX, &ev->product_area, err)) return -1;
    if (get_str(obj, "plan_tier", "plan_tier", 0, CS_ID_MAX, &ev->plan_tier, err)) return -1;

    const cJSON *props = cJSON_GetObjectItemCaseSensitive(obj, "properties");
    if (props && !cJSON_IsNull(props) && !cJSON_IsObject(props))
        return set_err(err, "wrong_type", "properties", "%s must be an object%s", "");
    ev->properties = cJSON_IsObject(props) ? props : NULL;
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(obj, "context");
    if (ctx && !cJSON_IsNull(ctx) && !cJSON_IsObject(ctx))
        return set_err(err, "wrong_type", "context", "%s must be an object%s", "");
    ev->context = cJSON_IsObject(ctx) ? ctx : NULL;

    const char *ts;
    if (get_str(obj, "timestamp", "timestamp", 0, 64, &ts, err)) return -1;
    if (ts) {
        if (cs_parse_time(ts, &ev->ts_us) != 0)
            return set_err(err, "invalid_value", "timestamp",
                           "%s must be an RFC 3339 time such as 2026-11-27T10:00:00.123Z%s", "");
        ev->has_ts = 1;
    } else {
        ev->ts_us = received_us;
    }
    if (check_props(ev, err)) return -1;
    return get_str(obj, "account_id", "account_id", !cs_event_is_lead(ev->type), CS_ID_MAX, &ev->account_id, err);
}

/* A string field already read: required, and at most max bytes. */
static int chk_str(const char *v, const char *path, int required, size_t max, cs_verr *err)
{
    if (!v) return required ? set_err(err, "missing_field", path, "%s is required%s", "") : 0;
    size_t n = strlen(v);
    if (n == 0 && required) return set_err(err, "invalid_value", path, "%s must not be empty%s", "");
    if (n > max) return set_err(err, "invalid_value", path, "%s is longer than the limit%s", "");
    return 0;
}

int cs_event_check(cs_event *ev, cs_verr *err)
{
    if (chk_str(ev->event_id, "event_id", 1, CS_ID_MAX, err)) return -1;
    if (chk_str(ev->type, "type", 1, CS_TYPE_MAX, err)) return -1;
    if (!valid_type_name(ev->type))
        return set_err(err, "invalid_value", "type",
                       "%s must start with a letter and hold only letters, digits and _.:-%s", "");
    if (chk_str(ev->user_id, "user_id", 0, CS_ID_MAX, err)) return -1;
    if (chk_str(ev->product_area, "product_area", 0, CS_ID_MAX, err)) return -1;
    if (chk_str(ev->plan_tier, "plan_tier", 0, CS_ID_MAX, err)) return -1;
    if (check_props(ev, err)) return -1;
    return chk_str(ev->account_id, "account_id", !cs_event_is_lead(ev->type), CS_ID_MAX, err);
}

/* Per-type required properties (design brief §5); sets lead_domain. */
static int check_props(cs_event *ev, cs_verr *err)
{
    const char *email = NULL, *s;
    static const cJSON empty = {0};
    const cJSON *p = ev->properties ? ev->properties : &empty;
    int lead = cs_event_is_lead(ev->type);
    /* The canonical plan tier and product area (design brief §5) where an
     * SDK can only send properties (Segment track): lifted when the event
     * has none of its own. */
    const cJSON *pv;
    if (!ev->plan_tier && cJSON_IsString(pv = cJSON_GetObjectItemCaseSensitive(p, "plan_tier")) &&
        strlen(pv->valuestring) <= CS_ID_MAX)
        ev->plan_tier = pv->valuestring;
    if (!ev->product_area && cJSON_IsString(pv = cJSON_GetObjectItemCaseSensitive(p, "product_area")) &&
        strlen(pv->valuestring) <= CS_ID_MAX)
        ev->product_area = pv->valuestring;
    if (lead) {
        if (get_str(p, "email", "properties.email", 1, 254, &email, err)) return -1;
        const char *at = strrchr(email, '@');
        if (!at || at == email || !at[1] || strchr(at + 1, '.') == NULL)
            return set_err(err, "invalid_value", "properties.email", "%s must be an email address%s", "");
        snprintf(ev->lead_domain, sizeof ev->lead_domain, "%s", at + 1);
        for (char *c = ev->lead_domain; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        if (get_str(p, "company", "properties.company", 0, 256, &s, err) ||
            get_str(p, "country", "properties.country", 0, 64, &s, err) ||
            get_str(p, "source", "properties.source", 0, 128, &s, err) ||
            get_num(p, "employee_count", "properties.employee_count", err))
            return -1;
    } else if (strcmp(ev->type, "FeatureUsed") == 0) {
        if (get_str(p, "feature", "properties.feature", 1, 128, &s, err) ||
            get_num(p, "count", "properties.count", err))
            return -1;
    } else if (strcmp(ev->type, "SubscriptionUpgraded") == 0) {
        if (get_str(p, "plan_tier", "properties.plan_tier", 1, 64, &s, err) ||
            get_num(p, "mrr", "properties.mrr", err))
            return -1;
    } else if (strcmp(ev->type, "SupportCaseEscalated") == 0) {
        if (get_str(p, "case_id", "properties.case_id", 1, 128, &s, err)) return -1;
    } else if (strcmp(ev->type, "TrialActivated") == 0) {
        if (get_num(p, "trial_days", "properties.trial_days", err)) return -1;
    }
    return 0;
}

const char *cs_event_key(const cs_event *ev, char *buf, size_t len)
{
    if (ev->account_id) return ev->account_id;
    snprintf(buf, len, "domain:%s", ev->lead_domain);
    return buf;
}

/* ,"name":"value" (the event's own fields: cs_buf_json_str's escaping). */
static void add_field(cs_buf *out, const char *key, size_t klen, const char *v)
{
    if (!v) return;
    cs_buf_add(out, key, klen);
    cs_jw_str(out, v);
}
#define ADD_FIELD(out, lit, v) add_field(out, lit, sizeof lit - 1, v)

/* Where cs_event_serialize's fixed fields landed, for the hashes. */
struct spans {
    size_t id_off, id_len;   /* the event_id string literal, quotes included */
    size_t ts_key;           /* the start of ,"timestamp":" */
    size_t ts_end;           /* just past the timestamp's closing quote */
    size_t src;              /* the start of ,"source":" */
};

static void serialize(const cs_event *ev, const char *source, int64_t received_us, cs_buf *out, struct spans *sp)
{
    char ts[25];
    cs_buf_reserve(out, 512);
    cs_buf_add(out, "{\"event_id\":", 12);
    sp->id_off = out->len;
    cs_jw_str(out, ev->event_id);
    sp->id_len = out->len - sp->id_off;
    ADD_FIELD(out, ",\"type\":", ev->type);
    ADD_FIELD(out, ",\"account_id\":", ev->account_id);
    ADD_FIELD(out, ",\"user_id\":", ev->user_id);
    cs_jw_time_ms(ev->ts_us, ts);
    sp->ts_key = out->len;
    ADD_FIELD(out, ",\"timestamp\":", ts);
    sp->ts_end = out->len;
    ADD_FIELD(out, ",\"product_area\":", ev->product_area);
    ADD_FIELD(out, ",\"plan_tier\":", ev->plan_tier);
    if (ev->prop_name || ev->prop_category) {
        cs_buf_add(out, ",\"properties\":{", 15);
        int first = 1;
        if (ev->prop_name) {
            cs_buf_add(out, "\"name\":", 7);
            cs_jw_value_str(out, ev->prop_name);
            first = 0;
        }
        if (ev->prop_category) {
            cs_buf_add(out, first ? "\"category\":" : ",\"category\":", first ? 11 : 12);
            cs_jw_value_str(out, ev->prop_category);
            first = 0;
        }
        cs_jw_members(out, NULL, ev->properties, first);
        cs_buf_add(out, "}", 1);
    } else if (ev->properties) {
        cs_buf_add(out, ",\"properties\":", 14);
        cs_jw_value(out, ev->properties);
    }
    if (ev->context_base && ev->context_base->child) {
        cs_buf_add(out, ",\"context\":{", 12);
        cs_jw_members(out, ev->context_base, ev->context, 1);
        cs_buf_add(out, "}", 1);
    } else if (ev->context) {
        cs_buf_add(out, ",\"context\":", 11);
        cs_jw_value(out, ev->context);
    }
    sp->src = out->len;
    ADD_FIELD(out, ",\"source\":", source);
    cs_jw_time_ms(received_us, ts);
    ADD_FIELD(out, ",\"received_at\":", ts);
    cs_buf_add(out, "}", 1);
}

void cs_event_serialize(const cs_event *ev, const char *source, int64_t received_us, cs_buf *out)
{
    struct spans sp;
    serialize(ev, source, received_us, out, &sp);
}

int cs_event_type_known(const char *type)
{
    static const char *const known[] = {"LeadCreated",          "DemoRequested",       "TrialActivated",
                                        "FeatureUsed",          "SubscriptionUpgraded", "SupportCaseEscalated",
                                        "ContactIdentified",    "AccountGrouped",      "PageViewed",
                                        "ScreenViewed"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(type, known[i]) == 0) return 1;
    return 0;
}

void cs_event_serialize_full(const cs_event *ev, const cs_event_meta *m, cs_buf *out, uint64_t id_fp[2],
                             uint64_t *payload)
{
    size_t start = out->len;
    struct spans sp;
    serialize(ev, m->source, m->received_us, out, &sp);
    const char *b = out->data;
    XXH128_hash_t h = XXH3_128bits(b + sp.id_off, sp.id_len);
    id_fp[0] = h.high64, id_fp[1] = h.low64;
    /* The payload hash: the canonical bytes up to the ingest metadata
     * (source, received_at), with the timestamp replaced by the client's
     * own time ("-" when none). */
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, b + start, sp.ts_key - start);
    char cts[25] = "-";
    if (m->has_client_ts) cs_jw_time_ms(m->client_ts_us, cts);
    XXH3_64bits_update(&st, cts, strlen(cts));
    XXH3_64bits_update(&st, b + sp.ts_end, sp.src - sp.ts_end);
    uint64_t ph = XXH3_64bits_digest(&st);
    if (ph == 0) ph = 1; /* 0 means "unknown" in the dedupe window */
    *payload = ph;
    out->len--; /* reopen the object */
    if (m->write_key) ADD_FIELD(out, ",\"write_key\":", m->write_key);
    char tail[36] = ",\"payload_hash\":\"";
    for (int i = 0; i < 16; i++) tail[17 + i] = "0123456789abcdef"[(ph >> (60 - 4 * i)) & 15];
    tail[33] = '"', tail[34] = '}';
    cs_buf_add(out, tail, 35);
}

int cs_event_dedupe_keys(const char *v, size_t len, uint64_t id_fp[2], uint64_t *payload)
{
    static const char pre[] = "{\"event_id\":\"";
    if (len < sizeof pre || memcmp(v, pre, sizeof pre - 1) != 0) return -1;
    const char *idp = v + sizeof pre - 2, *end = v + len, *q = idp + 1;
    while (q < end && *q != '"') q += *q == '\\' ? 2 : 1;
    if (q >= end) return -1;
    q++;
    XXH128_hash_t h = XXH3_128bits(idp, (size_t)(q - idp));
    id_fp[0] = h.high64, id_fp[1] = h.low64;
    *payload = 0;
    static const char suf[] = ",\"payload_hash\":\"";
    size_t sl = sizeof suf - 1;
    if (len >= sl + 18 && memcmp(end - 18 - sl, suf, sl) == 0 && end[-1] == '}' && end[-2] == '"') {
        char hex[17];
        memcpy(hex, end - 18, 16);
        hex[16] = '\0';
        char *stop;
        unsigned long long x = strtoull(hex, &stop, 16);
        if (*stop == '\0') *payload = x;
    }
    return 0;
}

long cs_utf8_invalid_at(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07;
        else return (long)i;
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xc0) != 0x80) return (long)i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return (long)i;
        i += n + 1;
    }
    return -1;
}
