/*
 * Unit tests for ingest/jsonw: the canonical event's writer must write the
 * same bytes as what it replaced (cJSON_PrintUnformatted for subtrees,
 * cs_buf_json_str for strings, cs_fmt_time_ms for times), or payload hashes
 * already in the log would stop matching their retries.
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
#include "ingest/jsonw.h"

static void same_as_cjson(const char *json)
{
    cJSON *v = cJSON_Parse(json);
    if (!v) fail_msg("test JSON does not parse: %s", json);
    char *want = cJSON_PrintUnformatted(v);
    cs_buf got;
    cs_buf_init(&got);
    assert_int_equal(cs_jw_value(&got, v), 0);
    if (strcmp(got.data, want) != 0) fail_msg("for %s\n  cJSON: %s\n  jsonw: %s", json, want, got.data);
    cJSON_free(want);
    cs_buf_free(&got);
    cJSON_Delete(v);
}

static void test_values_match_cjson(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "{}", "[]", "null", "true", "false", "0", "-0", "-0.0", "1", "-1", "42", "2147483647", "-2147483648",
        "2147483648", "3000000000", "999999999999999", "1000000000000000", "-999999999999999", "1234567890123456",
        "9007199254740993", "1e20", "1e300", "-1e-300", "5e-324", "1.7976931348623157e308", "0.1", "0.3",
        "0.30000000000000004", "1.0000000000000002", "123.456", "-1.5e-7", "19.99", "1e2", "100.0",
        "\"\"", "\"plain\"", "\"q\\\"b\\\\s/\"", "\"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\"", "\"\\u00e9\\ud83d\\ude00\"",
        "{\"a\":1,\"b\":[1,2,{\"c\":null}],\"\\n\":\"x\",\"e\":{}}",
        "[[[[[]]]],{\"k\":[true,false,null,-3.25]}]",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) same_as_cjson(cases[i]);
    /* Around the integer fast path's edges, and a sweep of fractions. */
    char buf[64];
    static const long long edges[] = {0, 1000000000000000LL, -1000000000000000LL, 2147483647LL, -2147483648LL};
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
        for (long long d = -3; d <= 3; d++) {
            snprintf(buf, sizeof buf, "%lld", edges[e] + d);
            same_as_cjson(buf);
        }
    for (int i = -2000; i <= 2000; i += 7) {
        snprintf(buf, sizeof buf, "%.17g", i / 13.0);
        same_as_cjson(buf);
        snprintf(buf, sizeof buf, "%.6e", i * 1.234567e5);
        same_as_cjson(buf);
    }
}

static void test_strings_match_buf_json_str(void **state)
{
    (void)state;
    static const char *const cases[] = {"", "plain", "q\"b\\s/", "\b\f\n\r\t\x01\x1f\x7f", "\xc3\xa9", "end\\"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cs_buf want, got;
        cs_buf_init(&want), cs_buf_init(&got);
        cs_buf_json_str(&want, cases[i]);
        cs_jw_str(&got, cases[i]);
        assert_string_equal(got.data, want.data);
        assert_int_equal(got.len, want.len);
        cs_buf_free(&want), cs_buf_free(&got);
    }
    /* Every byte value once, in one string. */
    char all[256];
    for (int c = 1; c < 256; c++) all[c - 1] = (char)c;
    all[255] = '\0';
    cs_buf want, got;
    cs_buf_init(&want), cs_buf_init(&got);
    cs_buf_json_str(&want, all);
    cs_jw_str(&got, all);
    assert_string_equal(got.data, want.data);
    cs_buf_free(&want), cs_buf_free(&got);
}

static void test_times_match_fmt_time_ms(void **state)
{
    (void)state;
    static const int64_t fixed[] = {0, -1, -999, -1000, -1001, 999, 1000, 1795773600123456LL, -62135596800000000LL,
                                    253402300799999999LL, 951782400000000LL /* 2000-02-29 */, -2208988800000000LL};
    char want[40], got[25];
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        cs_fmt_time_ms(fixed[i], want, sizeof want);
        cs_jw_time_ms(fixed[i], got);
        assert_string_equal(got, want);
    }
    /* A walk over 400 years in uneven steps (leap days and centuries). */
    for (int64_t us = -2208988800000000LL; us < 10413792000000000LL; us += 86399123457LL * 7) {
        cs_fmt_time_ms(us, want, sizeof want);
        cs_jw_time_ms(us, got);
        if (strcmp(got, want) != 0) fail_msg("at %lld us: %s, want %s", (long long)us, got, want);
    }
}

static void test_members_merge(void **state)
{
    (void)state;
    cJSON *a = cJSON_Parse("{\"ip\":\"1\",\"groupId\":\"batch\",\"lib\":{\"n\":1}}");
    cJSON *b = cJSON_Parse("{\"groupId\":\"msg\",\"x\":[1]}");
    cs_buf out;
    cs_buf_init(&out);
    cs_buf_adds(&out, "{");
    assert_int_equal(cs_jw_members(&out, a, b, 1), 4);
    cs_buf_adds(&out, "}");
    /* a's keys that b lacks first, then b's, b winning. */
    assert_string_equal(out.data, "{\"ip\":\"1\",\"lib\":{\"n\":1},\"groupId\":\"msg\",\"x\":[1]}");
    cs_buf_reset(&out);
    assert_int_equal(cs_jw_members(&out, NULL, b, 0), 2);
    assert_string_equal(out.data, ",\"groupId\":\"msg\",\"x\":[1]");
    cs_buf_free(&out);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_match_cjson),
        cmocka_unit_test(test_strings_match_buf_json_str),
        cmocka_unit_test(test_times_match_fmt_time_ms),
        cmocka_unit_test(test_members_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
