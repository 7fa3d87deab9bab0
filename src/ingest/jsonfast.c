/*
 * ingest/jsonfast — see jsonfast.h. One pass, iterative (an explicit stack
 * of CS_JSON_FAST_DEPTH frames), strings scanned 16 bytes at a time where
 * SSE2 exists. Inside an arena span the nodes and strings are carved from
 * 8 KB blocks of the arena; outside one each is malloc'd, like cJSON's own.
 */
#include "ingest/jsonfast.h"

#include <float.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "ingest/jsonarena.h"

struct mem {
    unsigned char *p, *end;
    int            arena;
};

static void *take(struct mem *m, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (!m->arena) return malloc(n);
    if ((size_t)(m->end - m->p) < n) {
        size_t size = n > 8192 ? n : 8192;
        unsigned char *b = cs_json_arena_malloc(size);
        if (!b) return NULL;
        m->p = b, m->end = b + size;
    }
    void *r = m->p;
    m->p += n;
    return r;
}

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *e)
{
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static int hex4(const uint8_t *p, const uint8_t *e, unsigned *out)
{
    if (e - p < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
        else return -1;
        v = v << 4 | d;
    }
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0: the
 * rules of cs_utf8_invalid_at (no overlongs, surrogates or > U+10FFFF). */
static size_t utf8_seq(const uint8_t *p, const uint8_t *e)
{
    unsigned c = p[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07;
    else return 0;
    if ((size_t)(e - p) <= n) return 0;
    for (size_t k = 1; k <= n; k++) {
        if ((p[k] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[k] & 0x3f);
    }
    if (n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
    if (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
    return n + 1;
}

/* The code point of the \u escape at p (p[0] == '\\', p[1] == 'u'), a
 * surrogate pair taken whole; *in = escape bytes read. 0 when declined:
 * \u0000 (C strings cannot hold it) or a lone surrogate. */
static uint32_t uescape(const uint8_t *p, const uint8_t *e, size_t *in)
{
    unsigned hi, lo;
    if (hex4(p + 2, e, &hi) || hi == 0 || (hi >= 0xdc00 && hi <= 0xdfff)) return 0;
    if (hi < 0xd800 || hi > 0xdbff) return *in = 6, hi;
    if (e - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, e, &lo) || lo < 0xdc00 || lo > 0xdfff) return 0;
    *in = 12;
    return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
}

static char *put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

static char unescape1(uint8_t c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return 0;
    }
}

/* The string whose opening quote is at p: its decoded bytes in *out.
 * Returns the byte after the closing quote, or NULL (declined). */
static const uint8_t *string(struct mem *m, const uint8_t *p, const uint8_t *e, char **out)
{
    const uint8_t *s = ++p;
    int esc = 0;
    for (;;) {
#ifdef __SSE2__
        while (e - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
            /* '"', '\\', and (signed) below 0x20: control bytes and every byte >= 0x80 */
            __m128i x = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                                  _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                                     _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
            int mask = _mm_movemask_epi8(x);
            if (mask) {
                p += __builtin_ctz((unsigned)mask);
                break;
            }
            p += 16;
        }
#endif
        if (p >= e) return NULL;
        uint8_t c = *p;
        if (c == '"') break;
        if (c >= 0x20 && c < 0x80 && c != '\\') {
            p++;
            continue;
        }
        if (c == '\\') {
            if (e - p < 2) return NULL;
            esc = 1;
            if (p[1] == 'u') {
                size_t in = 0;
                if (!uescape(p, e, &in)) return NULL;
                p += in;
            } else {
                if (!unescape1(p[1])) return NULL;
                p += 2;
            }
            continue;
        }
        if (c < 0x20) return NULL;
        size_t n = utf8_seq(p, e);
        if (!n) return NULL;
        p += n;
    }
    /* Escapes only shrink the text (\uXXXX: 6 bytes for at most 3), so
     * the input's length bounds the output's. */
    size_t in = (size_t)(p - s);
    char *o = take(m, in + 1);
    if (!o) return NULL;
    *out = o;
    if (!esc) {
        memcpy(o, s, in);
        o += in;
    } else {
        for (const uint8_t *q = s; q < p;) {
            if (*q != '\\') {
                *o++ = (char)*q++;
            } else if (q[1] == 'u') {
                size_t k = 0;
                o = put_utf8(o, uescape(q, p, &k));
                q += k;
            } else {
                *o++ = unescape1(q[1]);
                q += 2;
            }
        }
    }
    *o = '\0';
    return p + 1;
}

#define DIGIT(c) ((c) >= '0' && (c) <= '9')

/* The number at p into item, as cJSON stores it (strtod of the text,
 * valueint saturated). Returns the byte after it, or NULL. */
static const uint8_t *number(const uint8_t *p, const uint8_t *e, cJSON *item)
{
    const uint8_t *s = p;
    int neg = 0, plain = 1, digits = 0;
    uint64_t v = 0;
    if (*p == '-') neg = 1, p++;
    if (p >= e) return NULL;
    if (*p == '0') {
        p++, digits = 1;
    } else if (*p >= '1' && *p <= '9') {
        while (p < e && DIGIT(*p)) v = v * 10 + (uint64_t)(*p++ - '0'), digits++;
    } else {
        return NULL;
    }
    if (p < e && *p == '.') {
        plain = 0, p++;
        if (p >= e || !DIGIT(*p)) return NULL;
        while (p < e && DIGIT(*p)) p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        plain = 0, p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !DIGIT(*p)) return NULL;
        while (p < e && DIGIT(*p)) p++;
    }
    size_t n = (size_t)(p - s);
    if (n >= 64) return NULL; /* cJSON reads at most 63 characters of a number */
    double d;
    if (plain && digits <= 15) { /* below 2^53: the conversion is exact, as strtod's */
        d = (double)v;
        if (neg) d = -d;
    } else {
        char buf[64];
        memcpy(buf, s, n);
        buf[n] = '\0';
        char *stop = NULL;
        d = strtod(buf, &stop);
        if (stop != buf + n || !(d <= DBL_MAX && d >= -DBL_MAX)) return NULL;
    }
    item->valuedouble = d;
    item->valueint = d >= INT_MAX ? INT_MAX : d <= (double)INT_MIN ? INT_MIN : (int)d;
    item->type = cJSON_Number;
    return p;
}

cJSON *cs_json_fast_parse(const char *str, size_t len, size_t *end)
{
    const uint8_t *b = (const uint8_t *)str, *p = b, *e = b + len;
    struct mem m = {NULL, NULL, cs_json_arena_active()};
    struct {
        cJSON *node, *last;
    } st[CS_JSON_FAST_DEPTH];
    int d = 0;
    cJSON *root = NULL, *cur;
    char *key = NULL;

value:
    p = skip_ws(p, e);
    if (p >= e || !(cur = take(&m, sizeof *cur))) goto fail;
    memset(cur, 0, sizeof *cur);
    if (d == 0) {
        root = cur;
    } else {
        cJSON *last = st[d - 1].last;
        if (last) last->next = cur, cur->prev = last;
        else st[d - 1].node->child = cur;
        st[d - 1].last = cur;
        cur->string = key;
        key = NULL;
    }
    switch (*p) {
    case '{':
    case '[': {
        int obj = *p == '{';
        if (d == CS_JSON_FAST_DEPTH) goto fail;
        cur->type = obj ? cJSON_Object : cJSON_Array;
        st[d].node = cur, st[d].last = NULL, d++;
        p = skip_ws(p + 1, e);
        if (p < e && *p == (obj ? '}' : ']')) {
            d--, p++;
            goto after;
        }
        if (obj) goto key;
        goto value;
    }
    case '"':
        if (!(p = string(&m, p, e, &cur->valuestring))) goto fail;
        cur->type = cJSON_String;
        break;
    case 't':
        if (e - p < 4 || memcmp(p, "true", 4) != 0) goto fail;
        cur->type = cJSON_True, cur->valueint = 1, p += 4;
        break;
    case 'f':
        if (e - p < 5 || memcmp(p, "false", 5) != 0) goto fail;
        cur->type = cJSON_False, p += 5;
        break;
    case 'n':
        if (e - p < 4 || memcmp(p, "null", 4) != 0) goto fail;
        cur->type = cJSON_NULL, p += 4;
        break;
    default:
        if (!(*p == '-' || DIGIT(*p)) || !(p = number(p, e, cur))) goto fail;
        break;
    }
after:
    if (d == 0) {
        *end = (size_t)(p - b);
        return root;
    }
    p = skip_ws(p, e);
    if (p >= e) goto fail;
    {
        cJSON *top = st[d - 1].node;
        int obj = top->type == cJSON_Object;
        if (*p == ',') {
            p++;
            if (obj) goto key;
            goto value;
        }
        if (*p != (obj ? '}' : ']')) goto fail;
        top->child->prev = st[d - 1].last; /* cJSON: the first child's prev is the last */
        d--, p++;
        goto after;
    }
key:
    p = skip_ws(p, e);
    if (p >= e || *p != '"' || !(p = string(&m, p, e, &key))) goto fail;
    p = skip_ws(p, e);
    if (p >= e || *p != ':') goto fail;
    p++;
    goto value;

fail:
    if (!m.arena) {
        cJSON_Delete(root);
        free(key);
    }
    return NULL;
}
