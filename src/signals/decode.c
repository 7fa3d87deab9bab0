/*
 * signals/decode.c — canonical event JSON to cs_sig_event (see decode.h).
 */
#include "signals/decode.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/util.h"

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int32_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cs_sig_parse_day(const char *s, int32_t *day)
{
    if (!s) return -1;
    size_t n = strlen(s);
    if (n == 10) {
        for (int i = 0; i < 10; i++)
            if (i == 4 || i == 7 ? s[i] != '-' : (s[i] < '0' || s[i] > '9')) return -1;
        int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
        int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return -1;
        if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return -1;
        *day = days_from_civil(y, m, d);
        return 0;
    }
    int64_t us;
    if (cs_parse_time(s, &us)) return -1;
    int64_t dd = us / 86400000000LL;
    if (us % 86400000000LL < 0) dd--;
    *day = (int32_t)dd;
    return 0;
}

static enum cs_sig_type type_of(const char *t)
{
    switch (t[0]) {
    case 'F': if (strcmp(t, "FeatureUsed") == 0) return CS_SIG_EV_FEATURE_USED; break;
    case 'T': if (strcmp(t, "TrialActivated") == 0) return CS_SIG_EV_TRIAL_ACTIVATED; break;
    case 'S':
        if (strcmp(t, "SubscriptionUpgraded") == 0) return CS_SIG_EV_SUBSCRIPTION_UPGRADED;
        if (strcmp(t, "SupportCaseEscalated") == 0) return CS_SIG_EV_SUPPORT_ESCALATED;
        break;
    case 'L': if (strcmp(t, "LeadCreated") == 0) return CS_SIG_EV_LEAD; break;
    case 'D': if (strcmp(t, "DemoRequested") == 0) return CS_SIG_EV_LEAD; break;
    default: break;
    }
    return CS_SIG_EV_OTHER;
}

int cs_sig_decode(const cJSON *obj, cs_sig_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->renewal_day = CS_SIG_NO_DAY;
    ev->ts_us = INT64_MIN;
    const char *type = str_of(obj, "type");
    const char *acc = str_of(obj, "account_id");
    const char *ts = str_of(obj, "timestamp");
    if (!type || !acc || !*acc || !ts || cs_parse_time(ts, &ev->ts_us)) return CS_SIG_EINVAL;
    ev->type = type_of(type);
    ev->type_name = type;
    ev->type_len = strlen(type);
    ev->account_id = acc;
    ev->account_len = strlen(acc);
    ev->account_hash = cs_sig_hash(acc, ev->account_len);
    const char *user = str_of(obj, "user_id");
    if (user && *user) ev->user_hash = cs_sig_hash(user, strlen(user));
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(obj, "properties");
    ev->plan_tier = cs_sig_tier_parse(str_of(obj, "plan_tier"));
    if (!cJSON_IsObject(props)) props = NULL;
    if (props) {
        int32_t d;
        if (cs_sig_parse_day(str_of(props, "renewal_date"), &d) == 0) ev->renewal_day = d;
    }
    switch (ev->type) {
    case CS_SIG_EV_FEATURE_USED: {
        const char *f = str_of(props, "feature");
        if (f && *f) ev->feature_hash = cs_sig_hash(f, strlen(f));
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(props, "count");
        double n = cJSON_IsNumber(c) ? c->valuedouble : 1;
        ev->count = n >= 1 && n <= 65535 ? (uint32_t)n : (n > 65535 ? 65535u : 1u);
        break;
    }
    case CS_SIG_EV_SUBSCRIPTION_UPGRADED: {
        enum cs_sig_tier t = cs_sig_tier_parse(str_of(props, "plan_tier"));
        if (t != CS_SIG_TIER_NONE) ev->plan_tier = t;
        break;
    }
    case CS_SIG_EV_TRIAL_ACTIVATED: {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(props, "trial_days");
        if (cJSON_IsNumber(d) && d->valuedouble >= 1 && d->valuedouble <= 255) ev->trial_days = (int)d->valuedouble;
        break;
    }
    default:
        break;
    }
    return 0;
}

/* ---- the fast path: canonical JSON bytes to cs_sig_event, no tree ---------
 *
 * A single pass over the object that picks out the fields cs_sig_decode
 * reads and skips the rest. It gives up (FAST_NO) on anything it does not
 * need to understand to be exact: a string with an escape among the fields
 * it reads, a key with an escape, a repeated field it reads, a number it
 * reads that is not plain digits, nesting deeper than 32, a control byte,
 * malformed JSON, or bytes after the object. The caller then parses with
 * cJSON and runs cs_sig_decode, so both paths always agree (a unit test
 * compares them field by field). */

enum { FAST_NO = 1 };

typedef struct span {
    const char *p;
    size_t      n;
    int         set;   /* the key was present (with any value) */
    int         str;   /* ... and its value is a string without escapes */
} span;

typedef struct scan {
    const char *p, *end;
} scan;

static inline void ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t')) s->p++;
}

/* A string at s->p (after its opening quote is checked); *esc set when it
 * holds an escape. Returns 0 with the body in *b / *n. */
static inline __attribute__((always_inline)) int str_body(scan *s, const char **b, size_t *n, int *esc)
{
    if (s->p >= s->end || *s->p != '"') return FAST_NO;
    const char *q = ++s->p;
    *esc = 0;
    for (;;) {
        const char *hit = q;
#ifdef __SSE2__
        /* 16 bytes at a time: the first quote, backslash or control byte */
        while (s->end - hit >= 16) {
            __m128i x = _mm_loadu_si128((const __m128i *)(const void *)hit);
            __m128i sp = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                                                   _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
                                      _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f)));
            unsigned m = (unsigned)_mm_movemask_epi8(sp);
            if (m) {
                hit += __builtin_ctz(m);
                goto found;
            }
            hit += 16;
        }
#endif
        /* 8 bytes at a time while none is a quote, a backslash or a control byte */
        while (s->end - hit >= 8) {
            uint64_t x;
            memcpy(&x, hit, 8);
            const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
            uint64_t q1 = x ^ (ones * '"'), q2 = x ^ (ones * '\\');
            uint64_t m = ((q1 - ones) & ~q1) | ((q2 - ones) & ~q2) | ((x - ones * 0x20) & ~x);
            if (m & highs) {
                /* the lowest flagged byte is exact (a borrow only flags bytes above a real hit) */
                hit += __builtin_ctzll(m & highs) >> 3;
                break;
            }
            hit += 8;
        }
        while (hit < s->end && *hit != '"' && *hit != '\\' && (unsigned char)*hit >= 0x20) hit++;
#ifdef __SSE2__
    found:
#endif
        if (hit >= s->end || (unsigned char)*hit < 0x20) return FAST_NO;
        if (*hit == '"') {
            *b = s->p;
            *n = (size_t)(hit - s->p);
            s->p = hit + 1;
            return 0;
        }
        /* backslash: the escapes cJSON accepts; \u must be 4 hex digits and
         * not a surrogate (whose pairing rules cJSON checks: let it) */
        *esc = 1;
        if (hit + 1 >= s->end) return FAST_NO;
        switch (hit[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': q = hit + 2; break;
        case 'u': {
            if (s->end - hit < 6) return FAST_NO;
            unsigned u = 0;
            for (int i = 2; i < 6; i++) {
                char c = hit[i];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0) return FAST_NO;
                u = u << 4 | (unsigned)d;
            }
            if (u == 0 || (u >= 0xD800 && u <= 0xDFFF)) return FAST_NO;
            q = hit + 6;
            break;
        }
        default: return FAST_NO;
        }
    }
}

static int skip_value(scan *s, int depth);

static int skip_container(scan *s, int depth, char close)
{
    if (depth > 32) return FAST_NO;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        ws(s);
        if (close == '}') {
            const char *b;
            size_t n;
            int esc;
            if (str_body(s, &b, &n, &esc)) return FAST_NO;
            ws(s);
            if (s->p >= s->end || *s->p++ != ':') return FAST_NO;
            ws(s);
        }
        if (skip_value(s, depth + 1)) return FAST_NO;
        ws(s);
        if (s->p >= s->end) return FAST_NO;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p++ != close) return FAST_NO;
        return 0;
    }
}

static int skip_number(scan *s)
{
    const char *p = s->p;
    if (p < s->end && *p == '-') p++;
    if (p >= s->end || *p < '0' || *p > '9') return FAST_NO;
    if (*p == '0') p++;
    else
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    if (p < s->end && *p == '.') {
        p++;
        if (p >= s->end || *p < '0' || *p > '9') return FAST_NO;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < s->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < s->end && (*p == '+' || *p == '-')) p++;
        if (p >= s->end || *p < '0' || *p > '9') return FAST_NO;
        while (p < s->end && *p >= '0' && *p <= '9') p++;
    }
    if (p - s->p > 63) return FAST_NO; /* cJSON reads at most 63 bytes of a number */
    s->p = p;
    return 0;
}

static int skip_lit(scan *s, const char *lit, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0) return FAST_NO;
    s->p += n;
    return 0;
}

static int skip_value(scan *s, int depth)
{
    if (s->p >= s->end) return FAST_NO;
    switch (*s->p) {
    case '"': {
        const char *b;
        size_t n;
        int esc;
        return str_body(s, &b, &n, &esc);
    }
    case '{': return skip_container(s, depth, '}');
    case '[': return skip_container(s, depth, ']');
    case 't': return skip_lit(s, "true", 4);
    case 'f': return skip_lit(s, "false", 5);
    case 'n': return skip_lit(s, "null", 4);
    default: return skip_number(s);
    }
}

/* The value of a field we read: a string without escapes goes to sp; a
 * string with one gives up; another value is skipped and remembered as
 * "present, not a string" (cs_sig_decode then sees it as absent). */
static int take(scan *s, span *sp, int depth)
{
    if (sp->set) return FAST_NO; /* a repeated field: cJSON's first-match rule, let it decide */
    sp->set = 1;
    if (s->p < s->end && *s->p == '"') {
        int esc;
        if (str_body(s, &sp->p, &sp->n, &esc) || esc) return FAST_NO;
        sp->str = 1;
        return 0;
    }
    const char *v = s->p;
    if (skip_value(s, depth)) return FAST_NO;
    sp->p = v; /* the raw token (numbers) */
    sp->n = (size_t)(s->p - v);
    return 0;
}

#define KEY_IS(b, n, lit) ((n) == sizeof(lit) - 1 && memcmp((b), (lit), sizeof(lit) - 1) == 0)

typedef struct fields {
    span type, account, user, ts, plan;                 /* top level */
    span props;                                         /* the properties value */
    span feature, count, pplan, trial_days, renewal;    /* properties.* */
} fields;

/* One object's members; props: 1 for the top level (which holds properties). */
static int members(scan *s, fields *f, int top)
{
    if (s->p >= s->end || *s->p != '{') return FAST_NO;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        ws(s);
        const char *k;
        size_t kn;
        int esc;
        if (str_body(s, &k, &kn, &esc) || esc) return FAST_NO;
        ws(s);
        if (s->p >= s->end || *s->p++ != ':') return FAST_NO;
        ws(s);
        span *sp = NULL;
        if (top) {
            if (KEY_IS(k, kn, "type")) sp = &f->type;
            else if (KEY_IS(k, kn, "account_id")) sp = &f->account;
            else if (KEY_IS(k, kn, "user_id")) sp = &f->user;
            else if (KEY_IS(k, kn, "timestamp")) sp = &f->ts;
            else if (KEY_IS(k, kn, "plan_tier")) sp = &f->plan;
            else if (KEY_IS(k, kn, "properties")) {
                if (f->props.set) return FAST_NO;
                f->props.set = 1;
                if (s->p < s->end && *s->p == '{') {
                    f->props.str = 1; /* "is an object" */
                    if (members(s, f, 0)) return FAST_NO;
                } else if (skip_value(s, 1)) {
                    return FAST_NO;
                }
                goto next;
            }
        } else {
            if (KEY_IS(k, kn, "feature")) sp = &f->feature;
            else if (KEY_IS(k, kn, "count")) sp = &f->count;
            else if (KEY_IS(k, kn, "plan_tier")) sp = &f->pplan;
            else if (KEY_IS(k, kn, "trial_days")) sp = &f->trial_days;
            else if (KEY_IS(k, kn, "renewal_date")) sp = &f->renewal;
        }
        if (sp ? take(s, sp, 2) : skip_value(s, 2)) return FAST_NO;
    next:
        ws(s);
        if (s->p >= s->end) return FAST_NO;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p++ != '}') return FAST_NO;
        return 0;
    }
}

/* A span's string copied NUL-terminated into buf (NULL when not a string or
 * too long for buf: the callers' parsers reject such lengths anyway, but
 * "too long" gives up to stay exact). */
static int cstr(const span *sp, char *buf, size_t cap, const char **out)
{
    *out = NULL;
    if (!sp->str) return 0;
    if (sp->n >= cap) return FAST_NO;
    memcpy(buf, sp->p, sp->n);
    buf[sp->n] = 0;
    *out = buf;
    return 0;
}

/* A number field: present-but-not-number reads as absent (*has = 0); plain
 * digits (up to 9) as their value; anything else gives up. */
static int small_uint(const span *sp, int *has, double *v)
{
    *has = 0;
    if (!sp->set || sp->str || sp->n == 0) return 0;
    char c0 = sp->p[0];
    if (!(c0 == '-' || (c0 >= '0' && c0 <= '9'))) return 0; /* true/false/null/object/array */
    if (sp->n > 9) return FAST_NO;
    uint32_t x = 0;
    for (size_t i = 0; i < sp->n; i++) {
        if (sp->p[i] < '0' || sp->p[i] > '9') return FAST_NO;
        x = x * 10 + (uint32_t)(sp->p[i] - '0');
    }
    *has = 1;
    *v = (double)x;
    return 0;
}

static enum cs_sig_type type_of_n(const char *t, size_t n)
{
#define T(lit, v) if (KEY_IS(t, n, lit)) return v
    switch (n ? t[0] : 0) {
    case 'F': T("FeatureUsed", CS_SIG_EV_FEATURE_USED); break;
    case 'T': T("TrialActivated", CS_SIG_EV_TRIAL_ACTIVATED); break;
    case 'S': T("SubscriptionUpgraded", CS_SIG_EV_SUBSCRIPTION_UPGRADED); T("SupportCaseEscalated", CS_SIG_EV_SUPPORT_ESCALATED); break;
    case 'L': T("LeadCreated", CS_SIG_EV_LEAD); break;
    case 'D': T("DemoRequested", CS_SIG_EV_LEAD); break;
    default: break;
    }
#undef T
    return CS_SIG_EV_OTHER;
}

static int decode_fast(const char *json, size_t len, cs_sig_event *ev)
{
    fields f;
    memset(&f, 0, sizeof f);
    scan s = {json, json + len};
    ws(&s);
    if (members(&s, &f, 1)) return FAST_NO;
    ws(&s);
    if (s.p != s.end && !(s.p + 1 == s.end && *s.p == 0)) return FAST_NO;
    memset(ev, 0, sizeof *ev);
    ev->renewal_day = CS_SIG_NO_DAY;
    ev->ts_us = INT64_MIN;
    char tbuf[64];
    const char *ts;
    if (cstr(&f.ts, tbuf, sizeof tbuf, &ts)) return FAST_NO;
    if (!f.type.str || !f.account.str || f.account.n == 0 || !ts) return CS_SIG_EINVAL;
    if (memchr(f.account.p, 0, f.account.n) || memchr(f.type.p, 0, f.type.n)) return FAST_NO;
    if (cs_parse_time(ts, &ev->ts_us)) {
        ev->ts_us = INT64_MIN;
        return CS_SIG_EINVAL;
    }
    ev->type = type_of_n(f.type.p, f.type.n);
    ev->type_name = f.type.p;
    ev->type_len = f.type.n;
    ev->account_id = f.account.p;
    ev->account_len = f.account.n;
    ev->account_hash = cs_sig_hash(f.account.p, f.account.n);
    if (f.user.str && f.user.n) {
        if (memchr(f.user.p, 0, f.user.n)) return FAST_NO;
        ev->user_hash = cs_sig_hash(f.user.p, f.user.n);
    }
    char pbuf[64];
    const char *plan;
    if (cstr(&f.plan, pbuf, sizeof pbuf, &plan)) return FAST_NO;
    ev->plan_tier = cs_sig_tier_parse(plan);
    int props = f.props.str;
    if (props) {
        char rbuf[64];
        const char *r;
        int32_t d;
        if (cstr(&f.renewal, rbuf, sizeof rbuf, &r)) return FAST_NO;
        if (r && cs_sig_parse_day(r, &d) == 0) ev->renewal_day = d;
    }
    switch (ev->type) {
    case CS_SIG_EV_FEATURE_USED: {
        if (props && f.feature.str && f.feature.n) {
            if (memchr(f.feature.p, 0, f.feature.n)) return FAST_NO;
            ev->feature_hash = cs_sig_hash(f.feature.p, f.feature.n);
        }
        int has = 0;
        double n = 1;
        if (props && small_uint(&f.count, &has, &n)) return FAST_NO;
        if (!has) n = 1;
        ev->count = n >= 1 && n <= 65535 ? (uint32_t)n : (n > 65535 ? 65535u : 1u);
        break;
    }
    case CS_SIG_EV_SUBSCRIPTION_UPGRADED: {
        if (!props) break;
        char buf[64];
        const char *t;
        if (cstr(&f.pplan, buf, sizeof buf, &t)) return FAST_NO;
        enum cs_sig_tier tier = cs_sig_tier_parse(t);
        if (tier != CS_SIG_TIER_NONE) ev->plan_tier = tier;
        break;
    }
    case CS_SIG_EV_TRIAL_ACTIVATED: {
        int has = 0;
        double d = 0;
        if (props && small_uint(&f.trial_days, &has, &d)) return FAST_NO;
        if (has && d >= 1 && d <= 255) ev->trial_days = (int)d;
        break;
    }
    default:
        break;
    }
    return 0;
}

int cs_sig_decode_json(const char *json, size_t len, cs_sig_event *ev, cJSON **tree)
{
    *tree = NULL;
    int rc = decode_fast(json, len, ev);
    if (rc != FAST_NO) return rc;
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o) {
        memset(ev, 0, sizeof *ev);
        ev->renewal_day = CS_SIG_NO_DAY;
        ev->ts_us = INT64_MIN;
        return CS_SIG_EINVAL;
    }
    *tree = o;
    return cs_sig_decode(o, ev);
}
