/*
 * Unit tests for ingest/jsonfast: the one-pass parser against the checked
 * path it stands in for (cs_utf8_invalid_at + cs_json_syntax + the real
 * cJSON_ParseWithLengthOpts + nothing after the value).
 *
 * The contract checked on every input: when the fast parser accepts, the
 * checked path accepts too and the two trees are identical (types, keys,
 * strings, numbers bit for bit, valueint, links). It must accept every
 * ordinary valid document (so the ingest path really is fast), and it may
 * decline only the unusual ones jsonfast.h names. Inputs: hand-written
 * edge cases, random documents, and hundreds of thousands of mutations of
 * them (bytes flipped, inserted, deleted, truncated), in and out of an
 * arena span.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "ingest/event.h"
#include "ingest/jsonarena.h"
#include "ingest/jsoncheck.h"
#include "ingest/jsonfast.h"

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The checked path: the tree, or NULL when it rejects the document. */
static cJSON *checked(const char *s, size_t len)
{
    size_t at = 0;
    if (cs_utf8_invalid_at(s, len) >= 0) return NULL;
    if (cs_json_syntax(s, len, 0, 0, &at) != CS_JSON_OK) return NULL;
    const char *stop = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(s, len, &stop, 0);
    if (!v) return NULL;
    while (stop < s + len && is_ws(*stop)) stop++;
    if (stop != s + len) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

/* The fast path over a whole document: the tree, or NULL (declined). */
static cJSON *fast(const char *s, size_t len)
{
    size_t end = 0;
    cJSON *v = cs_json_fast_parse(s, len, &end);
    if (!v) return NULL;
    assert_true(end <= len);
    const char *p = s + end;
    while (p < s + len && is_ws(*p)) p++;
    if (p != s + len) {
        cs_json_arena_delete(v);
        return NULL;
    }
    return v;
}

/* Identical trees, and cJSON's link invariants on both. */
static int same(const cJSON *a, const cJSON *b)
{
    if (a->type != b->type || a->valueint != b->valueint) return 0;
    if (memcmp(&a->valuedouble, &b->valuedouble, sizeof(double)) != 0) return 0;
    if (!a->valuestring != !b->valuestring || (a->valuestring && strcmp(a->valuestring, b->valuestring) != 0)) return 0;
    if (!a->string != !b->string || (a->string && strcmp(a->string, b->string) != 0)) return 0;
    const cJSON *x = a->child, *y = b->child, *px = NULL, *py = NULL;
    for (; x && y; px = x, py = y, x = x->next, y = y->next) {
        if (px && (x->prev != px || y->prev != py)) return 0;
        if (!same(x, y)) return 0;
    }
    if (x || y) return 0;
    if (a->child && (a->child->prev != px || b->child->prev != py)) return 0; /* first->prev = last */
    return 1;
}

static long accepted, declined;

/* Check one input. must: the fast path has to accept it. */
static void check(const char *s, size_t len, int must)
{
    cJSON *f = fast(s, len);
    cJSON *c = checked(s, len);
    if (f) {
        accepted++;
        if (!c || !same(f, c)) fail_msg("fast path accepted differently: %.*s", (int)(len > 200 ? 200 : len), s);
    } else {
        declined++;
        if (must) fail_msg("fast path declined a plain document: %.*s", (int)(len > 200 ? 200 : len), s);
    }
    cs_json_arena_delete(f);
    cJSON_Delete(c);
}

static void checks(const char *s, int must) { check(s, strlen(s), must); }

static const char *valid[] = {
    "{}", "[]", "0", "-0", "1", "-1", "true", "false", "null", "\"\"", " \t\r\n{ \"a\" : [ 1 , 2 ] }\n",
    "{\"a\":{\"b\":{\"c\":[[],{},[{}]]}}}",
    "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\\u20ac\\ud83d\\ude00\\uFFFF\\u0001\"",
    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"", "{\"k\\u00e9y\":\"v\",\"\":1}",
    "[0.5,1.5e3,-2.25E-2,1e+2,1E2,123456789012345,1234567890123456,9007199254740993,18446744073709551616]",
    "[2147483647,2147483648,-2147483648,-2147483649,1e308,-1e308,1.7976931348623157e308,5e-324,1e-400]",
    "[0.1,0.2,0.30000000000000004,3.141592653589793,-0.0,0e0,0E-0,100000000000000000000000000000]",
    "{\"type\":\"track\",\"event\":\"Feature Used\",\"messageId\":\"m-1\",\"context\":{\"groupId\":\"acc_1\"},"
    "\"properties\":{\"n\":3,\"ok\":true,\"none\":null,\"list\":[1,\"two\",{\"three\":3}]}}",
    "[\"a long string with no escapes at all, longer than sixteen bytes, to take the wide scan path\","
    "\"0123456789abcdef0123456789abcdef\\\"\",\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"]",
    "{\"a\":1,\"a\":2}", /* duplicate keys: valid JSON, both kept (cs_json_check rejects them later) */
};

static const char *invalid[] = {
    "", " ", "{", "}", "[", "]", "[1,]", "{\"a\":1,}", "{,}", "[,1]", "{\"a\"}", "{\"a\":}", "{1:2}", "[1 2]",
    "01", "-", "-01", "1.", ".5", "1e", "1e+", "+1", "0x10", "1.5.5", "Infinity", "NaN", "tru", "nul", "falsey",
    "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u00zz\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
    "\"\\u0000\"", "\"tab\there\"", "\"\x01\"", "\"\xc0\xaf\"", "\"\xe0\x80\xaf\"", "\"\xed\xa0\x80\"",
    "\"\xe0\x9f\xbf\"", "\"\xf0\x8f\xbf\xbf\"", "\"\xc1\xbf\"",
    "\"\xf4\x90\x80\x80\"", "\"\xff\"", "\"\xc3\"", "\"\xe2\x82\"", "1e309", "-1e309", "[1]x", "{} {}", "\f1",
    "[1\f]", "[\x00]", "'a'", "[\"a\"\"b\"]", "{\"a\" 1}",
};

static void test_cases(void **state)
{
    (void)state;
    for (int arena = 0; arena < 2; arena++) {
        if (arena) cs_json_arena_begin();
        for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) checks(valid[i], 1);
        for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
            checks(invalid[i], 0);
            assert_null(fast(invalid[i], strlen(invalid[i])));
        }
        /* A NUL byte inside the given length is data, not the end. */
        check("[1,\0 2]", 7, 0);
        assert_null(fast("[1,\0 2]", 7));
        if (arena) cs_json_arena_end();
    }
}

/* Declined but valid: left to the checked path, which accepts them. */
static void test_declined(void **state)
{
    (void)state;
    char buf[512];
    /* Nesting: CS_JSON_FAST_DEPTH levels taken, one more declined. */
    for (int extra = 0; extra < 2; extra++) {
        int n = CS_JSON_FAST_DEPTH + extra;
        memset(buf, '[', (size_t)n);
        memset(buf + n, ']', (size_t)n);
        cJSON *f = fast(buf, 2 * (size_t)n), *c = checked(buf, 2 * (size_t)n);
        assert_non_null(c);
        if (extra) assert_null(f);
        else assert_true(f && same(f, c));
        cJSON_Delete(f);
        cJSON_Delete(c);
    }
    /* Numbers: 63 characters taken, 64 declined (cJSON reads at most 63). */
    memset(buf, '1', 63);
    check(buf, 63, 1);
    memset(buf, '1', 64);
    assert_null(fast(buf, 64));
    snprintf(buf, sizeof buf, "0.%061d", 5);
    check(buf, strlen(buf), 1);
}

/* ---------------------------------------------------------------- random */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void ws(cs_buf *b)
{
    static const char *w[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    cs_buf_adds(b, w[rnd() % 7]);
}

static void gen_string(cs_buf *b)
{
    static const char *parts[] = {"a", "Z", "0", " ", "hello", "\\n", "\\t", "\\\"", "\\\\", "\\/", "\\b", "\\f",
                                  "\\r", "\\u0041", "\\u00e9", "\\u20AC", "\\ud83d\\ude00", "\\u0001", "\xc3\xa9",
                                  "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbf", "0123456789abcdefghij", "~"};
    cs_buf_adds(b, "\"");
    int n = (int)(rnd() % 8);
    for (int i = 0; i < n; i++) cs_buf_adds(b, parts[rnd() % (sizeof parts / sizeof *parts)]);
    cs_buf_adds(b, "\"");
}

static void gen_number(cs_buf *b)
{
    static const char *forms[] = {"0", "-0", "7", "-12", "3.25", "-0.001", "1e3", "2E-7", "6.02e+23", "123456789012345",
                                  "1234567890123456789", "2147483648", "-2147483649", "0.1", "1e-320", "9.999e307"};
    cs_buf_adds(b, forms[rnd() % (sizeof forms / sizeof *forms)]);
}

static void gen(cs_buf *b, int depth)
{
    int k = (int)(rnd() % (depth > 6 ? 5 : 8));
    switch (k) {
    case 0: gen_string(b); break;
    case 1: gen_number(b); break;
    case 2: cs_buf_adds(b, rnd() % 2 ? "true" : "false"); break;
    case 3: cs_buf_adds(b, "null"); break;
    case 4: gen_string(b); break;
    case 5:
    case 6: {
        cs_buf_adds(b, "{");
        int n = (int)(rnd() % 5);
        for (int i = 0; i < n; i++) {
            if (i) cs_buf_adds(b, ",");
            ws(b);
            gen_string(b);
            ws(b);
            cs_buf_adds(b, ":");
            ws(b);
            gen(b, depth + 1);
            ws(b);
        }
        cs_buf_adds(b, "}");
        break;
    }
    default: {
        cs_buf_adds(b, "[");
        int n = (int)(rnd() % 5);
        for (int i = 0; i < n; i++) {
            if (i) cs_buf_adds(b, ",");
            ws(b);
            gen(b, depth + 1);
            ws(b);
        }
        cs_buf_adds(b, "]");
    }
    }
}

static void mutate(char *s, size_t *len, size_t cap)
{
    static const char bytes[] = {'"', '\\', '{', '}', '[', ']', ',', ':', '0', '-', 'e', '.', 'u', ' ', '\t', '\f',
                                 '\0', 'd', '8', (char)0x80, (char)0xc0, (char)0xc3, (char)0xed, (char)0xf4,
                                 (char)0xff, (char)0xe2, '\x01', 'a'};
    int n = 1 + (int)(rnd() % 3);
    for (int i = 0; i < n && *len > 0; i++) {
        size_t at = rnd() % *len;
        switch (rnd() % 4) {
        case 0: s[at] = bytes[rnd() % sizeof bytes]; break;
        case 1:
            if (*len + 1 < cap) {
                memmove(s + at + 1, s + at, *len - at);
                s[at] = bytes[rnd() % sizeof bytes];
                (*len)++;
            }
            break;
        case 2:
            memmove(s + at, s + at + 1, *len - at - 1);
            (*len)--;
            break;
        default: *len = at; break;
        }
    }
}

static void test_random(void **state)
{
    (void)state;
    accepted = declined = 0;
    char *m = cs_malloc(1 << 16);
    for (int round = 0; round < 4000; round++) {
        int arena = round % 2;
        if (arena) cs_json_arena_begin();
        cs_buf b;
        cs_buf_init(&b);
        ws(&b);
        gen(&b, 0);
        ws(&b);
        check(b.data, b.len, 1);
        for (int k = 0; k < 50 && b.len < (1 << 16) - 8; k++) {
            size_t len = b.len;
            memcpy(m, b.data, len);
            mutate(m, &len, (1 << 16));
            check(m, len, 0);
        }
        cs_buf_free(&b);
        if (arena) cs_json_arena_end();
    }
    free(m);
    /* Both outcomes happened many times: the mutations reach the checks. */
    printf("# accepted %ld declined %ld\n", accepted, declined);
    assert_true(accepted > 20000);
    assert_true(declined > 50000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_declined),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
