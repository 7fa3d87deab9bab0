/*
 * ingest/jsoncheck — depth, duplicate keys and key counts over a cJSON tree.
 * Small objects compare keys pairwise; larger ones sort the key pointers.
 */
#include "ingest/jsoncheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static int err_at(cs_verr *err, const char *code, const char *path, const char *msg)
{
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", path);
    snprintf(err->message, sizeof err->message, "%s%s%s", *path ? path : "the event", *path ? ": " : ": ", msg);
    return -1;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The way from the checked value down to v: one frame per level, on the
 * stack; the dotted path is only written out when there is an error. */
struct frame {
    const struct frame *up;
    const char         *key;    /* object member, or NULL: */
    int                 index;  /* array element */
};

static void path_of(const struct frame *f, char *path, size_t plen)
{
    const struct frame *chain[CS_JSON_SYNTAX_MAX_DEPTH + 2];
    size_t n = 0;
    for (; f && n < sizeof chain / sizeof chain[0]; f = f->up) chain[n++] = f;
    size_t at = 0;
    path[0] = '\0';
    while (n-- > 0 && at + 1 < plen) {
        const struct frame *c = chain[n];
        if (c->key) snprintf(path + at, plen - at, "%s%s", at ? "." : "", c->key);
        else snprintf(path + at, plen - at, "[%d]", c->index);
        at += strlen(path + at);
    }
}

static int walk(const cJSON *v, const struct frame *here, int depth, int max_depth, long max_keys, char *path,
                size_t plen, cs_verr *err)
{
    if (depth > max_depth) {
        char msg[96];
        snprintf(msg, sizeof msg, "nesting is deeper than the limit of %d", max_depth);
        path_of(here, path, plen);
        return err_at(err, "too_deep", path, msg);
    }
    int obj = cJSON_IsObject(v);
    if (obj) {
        long n = 0;
        for (const cJSON *c = v->child; c; c = c->next) n++;
        if (n > max_keys) {
            char msg[128];
            snprintf(msg, sizeof msg, "an object with %ld keys; the limit is %ld", n, max_keys);
            path_of(here, path, plen);
            return err_at(err, "too_many_keys", path, msg);
        }
        const char *dup = NULL;
        if (n <= 16) {
            for (const cJSON *a = v->child; a && !dup; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                    if (a->string[0] == b->string[0] && strcmp(a->string, b->string) == 0) {
                        dup = a->string;
                        break;
                    }
        } else {
            const char **keys = cs_malloc((size_t)n * sizeof *keys);
            size_t i = 0;
            for (const cJSON *c = v->child; c; c = c->next) keys[i++] = c->string;
            qsort(keys, (size_t)n, sizeof *keys, cmp_key);
            for (i = 1; i < (size_t)n && !dup; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
            free(keys);
        }
        if (dup) {
            struct frame f = {here, dup, 0};
            path_of(&f, path, plen);
            return err_at(err, "duplicate_key", path, "the key appears more than once in its object");
        }
    }
    if (!obj && !cJSON_IsArray(v)) return 0;
    int index = 0;
    for (const cJSON *c = v->child; c; c = c->next, index++) {
        if (!cJSON_IsObject(c) && !cJSON_IsArray(c)) continue;
        struct frame f = {here, obj ? c->string : NULL, index};
        if (walk(c, &f, depth + 1, max_depth, max_keys, path, plen, err)) return -1;
    }
    return 0;
}

int cs_json_check(const cJSON *v, int depth0, int max_depth, long max_keys, cs_verr *err)
{
    char path[96] = "";
    return walk(v, NULL, depth0, max_depth, max_keys, path, sizeof path, err);
}

long cs_json_too_deep_at(const char *s, size_t len, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max) return (long)i;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return -1;
}

/* ------------------------------------------------------------ syntax */

static int is_jws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int hex4(const unsigned char *p, size_t avail, unsigned *out)
{
    if (avail < 4) return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

/* A string from the opening quote at *i; leaves *i after the closing one. */
static int scan_string(const unsigned char *p, size_t len, size_t *i, size_t *at)
{
    size_t k = *i + 1;
    for (;;) {
        if (k >= len) return *at = k, CS_JSON_BAD;
        unsigned char c = p[k];
        if (c == '"') break;
        if (c < 0x20) return *at = k, CS_JSON_BAD;
        if (c != '\\') {
            k++;
            continue;
        }
        if (k + 1 >= len) return *at = k, CS_JSON_BAD;
        unsigned char e = p[k + 1];
        if (e != 'u') {
            if (!strchr("\"\\/bfnrt", e) || !e) return *at = k, CS_JSON_BAD;
            k += 2;
            continue;
        }
        unsigned u;
        if (hex4(p + k + 2, len - k - 2, &u)) return *at = k, CS_JSON_BAD;
        if (u == 0) return *at = k, CS_JSON_NUL;
        if (u >= 0xDC00 && u <= 0xDFFF) return *at = k, CS_JSON_SURROGATE;
        if (u >= 0xD800 && u <= 0xDBFF) {
            unsigned lo;
            if (k + 7 >= len || p[k + 6] != '\\' || p[k + 7] != 'u' || hex4(p + k + 8, len - k - 8, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return *at = k, CS_JSON_SURROGATE;
            k += 6;
        }
        k += 6;
    }
    *i = k + 1;
    return CS_JSON_OK;
}

static int scan_number(const unsigned char *p, size_t len, size_t *i, size_t *at)
{
    size_t k = *i, start = k;
    int exp = 0;
    size_t int_digits = 0;
#define DIGIT(x) ((x) >= '0' && (x) <= '9')
    if (k < len && p[k] == '-') k++;
    if (k < len && p[k] == '0') k++, int_digits = 1;
    else if (k < len && p[k] >= '1' && p[k] <= '9')
        while (k < len && DIGIT(p[k])) k++, int_digits++;
    else return *at = k, CS_JSON_BAD;
    if (k < len && p[k] == '.') {
        k++;
        if (k >= len || !DIGIT(p[k])) return *at = k, CS_JSON_BAD;
        while (k < len && DIGIT(p[k])) k++;
    }
    if (k < len && (p[k] == 'e' || p[k] == 'E')) {
        exp = 1;
        k++;
        if (k < len && (p[k] == '+' || p[k] == '-')) k++;
        if (k >= len || !DIGIT(p[k])) return *at = k, CS_JSON_BAD;
        while (k < len && DIGIT(p[k])) k++;
    }
#undef DIGIT
    /* Only an exponent or more than 308 integer digits can leave the double
     * range; check those with strtod on a bounded copy. */
    if (exp || int_digits > 308) {
        char buf[1024];
        if (k - start >= sizeof buf) return *at = start, CS_JSON_RANGE;
        memcpy(buf, p + start, k - start);
        buf[k - start] = '\0';
        double d = strtod(buf, NULL);
        if (d > 1.7976931348623157e308 || d < -1.7976931348623157e308) return *at = start, CS_JSON_RANGE;
    }
    *i = k;
    return CS_JSON_OK;
}

int cs_json_syntax(const char *s, size_t len, size_t start, int multi, size_t *at)
{
    const unsigned char *p = (const unsigned char *)s;
    char stack[CS_JSON_SYNTAX_MAX_DEPTH]; /* '[' or '{' per open level */
    int depth = 0, rc;
    size_t i = start;
    for (;;) {
        /* A value is expected at i. */
        while (i < len && is_jws(p[i])) i++;
        if (i >= len) return *at = i, CS_JSON_BAD;
        unsigned char c = p[i];
        if (c == '[' || c == '{') {
            if (depth == CS_JSON_SYNTAX_MAX_DEPTH) return *at = i, CS_JSON_DEEP;
            stack[depth++] = (char)c;
            i++;
            while (i < len && is_jws(p[i])) i++;
            if (i < len && p[i] == (c == '[' ? ']' : '}')) {
                depth--, i++;
                goto after_value;
            }
            if (c == '[') continue;
            goto key;
        } else if (c == '"') {
            if ((rc = scan_string(p, len, &i, at))) return rc;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            if ((rc = scan_number(p, len, &i, at))) return rc;
        } else if (c == 't' && len - i >= 4 && memcmp(p + i, "true", 4) == 0) {
            i += 4;
        } else if (c == 'f' && len - i >= 5 && memcmp(p + i, "false", 5) == 0) {
            i += 5;
        } else if (c == 'n' && len - i >= 4 && memcmp(p + i, "null", 4) == 0) {
            i += 4;
        } else {
            return *at = i, CS_JSON_BAD;
        }
    after_value:
        for (;;) {
            while (i < len && is_jws(p[i])) i++;
            if (depth == 0) {
                if (i >= len) return CS_JSON_OK;
                if (!multi) return *at = i, CS_JSON_BAD;
                break; /* the next NDJSON value */
            }
            if (i >= len) return *at = i, CS_JSON_BAD;
            char open = stack[depth - 1];
            if (p[i] == (open == '[' ? ']' : '}')) {
                depth--, i++;
                continue;
            }
            if (p[i] != ',') return *at = i, CS_JSON_BAD;
            i++;
            if (open == '[') break; /* the next element */
            while (i < len && is_jws(p[i])) i++;
            goto key;
        }
        continue;
    key:
        /* An object member is expected at i: "key" : value */
        if (i >= len || p[i] != '"') return *at = i, CS_JSON_BAD;
        if ((rc = scan_string(p, len, &i, at))) return rc;
        while (i < len && is_jws(p[i])) i++;
        if (i >= len || p[i] != ':') return *at = i, CS_JSON_BAD;
        i++;
    }
}
