/*
 * ingest/jsonw — see jsonw.h. Strings are copied in runs between the
 * characters that need escaping; integers are written digit by digit; only
 * non-integral numbers go through snprintf (as cJSON does, so the bytes match).
 */
#include "ingest/jsonw.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static const char hexd[] = "0123456789abcdef";

/* 1 where a byte needs an escape in a JSON string (controls, " and \). */
static const unsigned char needs_esc[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* \ */
};

/* cjson: escape \b and \f by letter (cJSON's printer) rather than as \u00XX
 * (cs_buf_json_str's). */
static void put_str(cs_buf *b, const char *str, int cjson)
{
    const unsigned char *s = (const unsigned char *)(str ? str : "");
    size_t n = strlen((const char *)s);
    cs_buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    /* Most strings need no escape: find the first byte that does (16 at a
     * time where SSE2 exists) and copy everything before it at once. */
    size_t i = 0;
#ifdef __SSE2__
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i x = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                              _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                 _mm_cmpeq_epi8(_mm_max_epu8(v, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f)));
        int mask = _mm_movemask_epi8(x);
        if (mask) {
            i += (size_t)__builtin_ctz((unsigned)mask);
            break;
        }
    }
#endif
    while (i < n && !needs_esc[s[i]]) i++;
    memcpy(b->data + b->len, s, i);
    b->len += i;
    b->data[b->len] = '\0';
    const unsigned char *run = s += i;
    for (; i < n; i++, s++) {
        unsigned char c = *s;
        if (!needs_esc[c]) continue;
        if (s > run) cs_buf_add(b, run, (size_t)(s - run));
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        if (c == '"' || c == '\\') e[1] = (char)c;
        else if (c == '\n') e[1] = 'n';
        else if (c == '\r') e[1] = 'r';
        else if (c == '\t') e[1] = 't';
        else if (cjson && c == '\b') e[1] = 'b';
        else if (cjson && c == '\f') e[1] = 'f';
        else e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hexd[c >> 4], e[5] = hexd[c & 15], el = 6;
        cs_buf_add(b, e, el);
        run = s + 1;
    }
    if (s > run) cs_buf_add(b, run, (size_t)(s - run));
    cs_buf_add(b, "\"", 1);
}

void cs_jw_str(cs_buf *b, const char *s)
{
    put_str(b, s, 0);
}

void cs_jw_value_str(cs_buf *b, const char *s)
{
    put_str(b, s, 1);
}

static void put_int(cs_buf *b, long long v)
{
    char d[24];
    int i = (int)sizeof d;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do d[--i] = (char)('0' + u % 10), u /= 10;
    while (u);
    if (v < 0) d[--i] = '-';
    cs_buf_add(b, d + i, sizeof d - (size_t)i);
}

/* cJSON 1.7.15's print_number: "%1.15g", or "%1.17g" when 15 digits do
 * not read back the same. An integral value below 1e15 prints as its digits
 * under "%1.15g", so those are written directly (-0 keeps its sign). */
static void put_number(cs_buf *b, const cJSON *v)
{
    double d = v->valuedouble;
    if (isnan(d) || isinf(d)) {
        cs_buf_add(b, "null", 4);
        return;
    }
    if (d > -1e15 && d < 1e15 && d == (double)(long long)d && !(d == 0 && signbit(d))) {
        put_int(b, (long long)d);
        return;
    }
    char num[32];
    int n = snprintf(num, sizeof num, "%1.15g", d);
    double test = strtod(num, NULL);
    double maxv = fabs(test) > fabs(d) ? fabs(test) : fabs(d);
    if (!(fabs(test - d) <= maxv * DBL_EPSILON)) n = snprintf(num, sizeof num, "%1.17g", d);
    for (int i = 0; i < n; i++)
        if (num[i] == ',') num[i] = '.'; /* a locale's decimal comma, as cJSON replaces it */
    cs_buf_add(b, num, (size_t)n);
}

int cs_jw_value(cs_buf *b, const cJSON *v)
{
    if (!v) return -1;
    switch (v->type & 0xff) {
    case cJSON_NULL: cs_buf_add(b, "null", 4); return 0;
    case cJSON_False: cs_buf_add(b, "false", 5); return 0;
    case cJSON_True: cs_buf_add(b, "true", 4); return 0;
    case cJSON_Number: put_number(b, v); return 0;
    case cJSON_String: put_str(b, v->valuestring, 1); return 0;
    case cJSON_Raw:
        if (!v->valuestring) return -1;
        cs_buf_adds(b, v->valuestring);
        return 0;
    case cJSON_Array:
        cs_buf_add(b, "[", 1);
        for (const cJSON *c = v->child; c; c = c->next) {
            if (c != v->child) cs_buf_add(b, ",", 1);
            if (cs_jw_value(b, c) != 0) return -1;
        }
        cs_buf_add(b, "]", 1);
        return 0;
    case cJSON_Object:
        cs_buf_add(b, "{", 1);
        for (const cJSON *c = v->child; c; c = c->next) {
            if (c != v->child) cs_buf_add(b, ",", 1);
            put_str(b, c->string, 1);
            cs_buf_add(b, ":", 1);
            if (cs_jw_value(b, c) != 0) return -1;
        }
        cs_buf_add(b, "}", 1);
        return 0;
    default: return -1;
    }
}

static int has_key(const cJSON *o, const char *k)
{
    if (!o || !k) return 0;
    for (const cJSON *c = o->child; c; c = c->next)
        if (c->string && strcmp(c->string, k) == 0) return 1;
    return 0;
}

size_t cs_jw_members(cs_buf *b, const cJSON *a, const cJSON *bo, int first)
{
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *o = pass ? bo : a;
        if (!o) continue;
        for (const cJSON *c = o->child; c; c = c->next) {
            if (!pass && has_key(bo, c->string)) continue;
            if (!first || n) cs_buf_add(b, ",", 1);
            put_str(b, c->string, 1);
            cs_buf_add(b, ":", 1);
            cs_jw_value(b, c);
            n++;
        }
    }
    return n;
}

static void two(char *p, int v)
{
    p[0] = (char)('0' + v / 10), p[1] = (char)('0' + v % 10);
}

void cs_jw_time_ms(int64_t us, char out[25])
{
    int64_t secs = us >= 0 ? us / 1000000 : (us - 999999) / 1000000;
    int ms = (int)((us - secs * 1000000) / 1000);
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int sod = (int)(secs - days * 86400);
    /* civil_from_days (Howard Hinnant), the inverse of util.c's days_from_civil. */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2) y++;
    if (y < 0 || y > 9999) { /* outside what four digits hold: the general path */
        cs_fmt_time_ms(us, out, 25);
        return;
    }
    int yy = (int)y;
    out[0] = (char)('0' + yy / 1000), out[1] = (char)('0' + yy / 100 % 10);
    two(out + 2, yy % 100);
    out[4] = '-';
    two(out + 5, (int)m);
    out[7] = '-';
    two(out + 8, (int)d);
    out[10] = 'T';
    two(out + 11, sod / 3600);
    out[13] = ':';
    two(out + 14, sod / 60 % 60);
    out[16] = ':';
    two(out + 17, sod % 60);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100), out[21] = (char)('0' + ms / 10 % 10), out[22] = (char)('0' + ms % 10);
    out[23] = 'Z', out[24] = '\0';
}
