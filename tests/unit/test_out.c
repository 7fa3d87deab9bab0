/*
 * Unit tests for out/: Standard Webhooks signing (the specification's
 * example vector), secret parsing, the answer classification, backoff with
 * jitter, Retry-After (seconds and HTTP-date), the outbound address policy,
 * the Slack format, the in-memory outbox source (claim order, leases,
 * release, freeze) and configuration errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>

#include "out/format.h"
#include "out/out.h"
#include "out/policy.h"
#include "out/sign.h"
#include "out/source_mem.h"

/* ------------------------------------------------------------------ signing */

static void test_sign_matches_spec_vector(void **state)
{
    (void)state;
    /* The example of the Standard Webhooks specification (standard-webhooks
     * README), also what npm standardwebhooks 1.1.1 computes. */
    cs_out_key k;
    assert_int_equal(cs_out_key_parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &k), 0);
    const char *body = "{\"test\": 2432232314}";
    char sig[128];
    cs_out_sign1(&k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body), sig, sizeof sig);
    assert_string_equal(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

    /* Rotation: two space-separated signatures, each for its own key. */
    cs_out_key keys[2];
    assert_int_equal(cs_out_key_parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &keys[0]), 0); /* no prefix */
    assert_int_equal(cs_out_key_parse("whsec_c2Vjb25kIHNlY3JldA==", &keys[1]), 0);
    assert_int_equal((int)keys[1].len, 13); /* "second secret" */
    char two[256];
    cs_out_sign(keys, 2, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body), two, sizeof two);
    assert_true(strncmp(two, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,", 51) == 0);
    assert_int_equal((int)strlen(two), 47 * 2 + 1);
}

static void test_key_parse_rejects_bad_secrets(void **state)
{
    (void)state;
    cs_out_key k;
    assert_int_equal(cs_out_key_parse(NULL, &k), -1);
    assert_int_equal(cs_out_key_parse("", &k), -1);
    assert_int_equal(cs_out_key_parse("whsec_", &k), -1);
    assert_int_equal(cs_out_key_parse("whsec_abc", &k), -1);        /* length not 4n */
    assert_int_equal(cs_out_key_parse("whsec_ab!d", &k), -1);       /* not base64 */
    assert_int_equal(cs_out_key_parse("whsec_a=bc", &k), -1);       /* padding inside */
    char big[400] = "whsec_";
    memset(big + 6, 'A', 200);                                      /* 150 bytes > max */
    assert_int_equal(cs_out_key_parse(big, &k), -1);
    assert_int_equal(cs_out_key_parse("whsec_QQ==", &k), 0);
    assert_int_equal((int)k.len, 1);
    assert_int_equal(k.bytes[0], 'A');
}

/* ------------------------------------------------------------------- policy */

static void test_classify_follows_the_contract(void **state)
{
    (void)state;
    assert_int_equal(cs_out_classify(200), CS_OUT_OK);
    assert_int_equal(cs_out_classify(204), CS_OUT_OK);
    assert_int_equal(cs_out_classify(0), CS_OUT_RETRY);     /* no answer */
    assert_int_equal(cs_out_classify(500), CS_OUT_RETRY);
    assert_int_equal(cs_out_classify(503), CS_OUT_RETRY);
    assert_int_equal(cs_out_classify(408), CS_OUT_RETRY);
    assert_int_equal(cs_out_classify(429), CS_OUT_RETRY);
    assert_int_equal(cs_out_classify(301), CS_OUT_RETRY);   /* not followed */
    assert_int_equal(cs_out_classify(302), CS_OUT_RETRY);
    assert_int_equal(cs_out_classify(400), CS_OUT_DEAD);
    assert_int_equal(cs_out_classify(401), CS_OUT_DEAD);
    assert_int_equal(cs_out_classify(404), CS_OUT_DEAD);
    assert_int_equal(cs_out_classify(422), CS_OUT_DEAD);
    assert_int_equal(cs_out_classify(410), CS_OUT_GONE);
}

static void test_backoff_doubles_with_bounded_jitter(void **state)
{
    (void)state;
    uint64_t rng = 42;
    for (int attempt = 1; attempt <= 30; attempt++) {
        int64_t full = 1000;
        for (int i = 1; i < attempt && full < 60000; i++) full *= 2;
        if (full > 60000) full = 60000;
        int64_t lo = INT64_MAX, hi = 0;
        for (int i = 0; i < 200; i++) {
            int64_t d = cs_out_backoff_ms(1000, 60000, attempt, cs_out_rand(&rng));
            assert_true(d >= full / 2 && d <= full);
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        assert_true(hi > lo); /* jitter: not one fixed value */
    }
    /* The extremes of the random value reach both ends. */
    assert_int_equal(cs_out_backoff_ms(1000, 60000, 3, 0), 2000);
    assert_int_equal(cs_out_backoff_ms(1000, 60000, 3, 2000), 4000);
    /* A huge attempt number does not overflow. */
    assert_true(cs_out_backoff_ms(5000, 6LL * 3600 * 1000, 1000000, ~0ULL) <= 6LL * 3600 * 1000);
}

static void test_retry_after_seconds_and_dates(void **state)
{
    (void)state;
    int64_t now = 1445412480000LL; /* 2015-10-21T07:28:00Z */
    int64_t d = -1;
    assert_int_equal(cs_out_retry_after("120", now, &d), 0);
    assert_int_equal(d, 120000);
    assert_int_equal(cs_out_retry_after(" 0 ", now, &d), 0);
    assert_int_equal(d, 0);
    assert_int_equal(cs_out_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now, &d), 0);
    assert_int_equal(d, 120000);
    assert_int_equal(cs_out_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now, &d), 0);
    assert_int_equal(d, 0); /* in the past: now */
    assert_int_equal(cs_out_retry_after("soon", now, &d), -1);
    assert_int_equal(cs_out_retry_after("12abc", now, &d), -1);
    assert_int_equal(cs_out_retry_after("-5", now, &d), -1);
    assert_int_equal(cs_out_retry_after(NULL, now, &d), -1);
}

static int v4(const char *ip, int allow)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
    return cs_out_addr_allowed((struct sockaddr *)&sa, allow);
}

static int v6(const char *ip, int allow)
{
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, ip, &sa.sin6_addr), 1);
    return cs_out_addr_allowed((struct sockaddr *)&sa, allow);
}

static void test_address_policy(void **state)
{
    (void)state;
    const char *refused4[] = {"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255",
                              "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                              "224.0.0.1", "255.255.255.255", "240.0.0.1", "198.18.0.1"};
    for (size_t i = 0; i < sizeof refused4 / sizeof *refused4; i++) {
        if (v4(refused4[i], 0)) fail_msg("%s allowed without allow_private", refused4[i]);
        assert_true(v4(refused4[i], 1));
    }
    const char *public4[] = {"8.8.8.8", "172.32.0.1", "172.15.255.255", "100.128.0.1", "1.1.1.1",
                             "192.169.0.1"};
    for (size_t i = 0; i < sizeof public4 / sizeof *public4; i++)
        if (!v4(public4[i], 0)) fail_msg("%s refused", public4[i]);
    const char *refused6[] = {"::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1",
                              "::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254",
                              "64:ff9b::a9fe:a9fe" /* NAT64 of 169.254.169.254 */};
    for (size_t i = 0; i < sizeof refused6 / sizeof *refused6; i++) {
        if (v6(refused6[i], 0)) fail_msg("%s allowed without allow_private", refused6[i]);
        assert_true(v6(refused6[i], 1));
    }
    assert_true(v6("2606:4700::1111", 0));
    assert_true(v6("::ffff:8.8.8.8", 0));
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_false(cs_out_addr_allowed(&other, 1));
}

/* -------------------------------------------------------------------- Slack */

static void test_slack_format_text_and_blocks(void **state)
{
    (void)state;
    const char *p = "{\"type\":\"alert.raised\",\"timestamp\":\"2026-11-27T10:00:00Z\","
                    "\"title\":\"Churn risk: Acme\",\"text\":\"Usage fell <50%> & tickets rose\","
                    "\"data\":{\"account_id\":\"acc_42\",\"score\":0.82,\"renewal\":true,"
                    "\"nested\":{\"x\":1}}}";
    char *s = cs_out_slack_format(p, strlen(p));
    assert_non_null(s);
    cJSON *m = cJSON_Parse(s);
    assert_non_null(m);
    assert_string_equal(cJSON_GetObjectItem(m, "text")->valuestring,
                        "Usage fell &lt;50%&gt; &amp; tickets rose");
    cJSON *blocks = cJSON_GetObjectItem(m, "blocks");
    assert_int_equal(cJSON_GetArraySize(blocks), 4); /* header, text, fields, context */
    cJSON *hdr = cJSON_GetArrayItem(blocks, 0);
    assert_string_equal(cJSON_GetObjectItem(hdr, "type")->valuestring, "header");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(hdr, "text"), "text")->valuestring,
                        "Churn risk: Acme");
    cJSON *fields = cJSON_GetObjectItem(cJSON_GetArrayItem(blocks, 2), "fields");
    assert_int_equal(cJSON_GetArraySize(fields), 3); /* the nested value is skipped */
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(fields, 0), "text")->valuestring,
                        "*account_id*\nacc_42");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(fields, 1), "text")->valuestring,
                        "*score*\n0.82");
    cJSON_Delete(m);
    free(s);

    /* Limits: a 5000-byte multi-byte title is cut to <= 150 bytes, valid UTF-8. */
    char *big = malloc(20000);
    strcpy(big, "{\"title\":\"");
    for (int i = 0; i < 2500; i++) strcat(big, "\xc3\xa9"); /* é */
    strcat(big, "\"}");
    s = cs_out_slack_format(big, strlen(big));
    m = cJSON_Parse(s);
    assert_non_null(m);
    const char *t = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(
                        cJSON_GetObjectItem(m, "blocks"), 0), "text"), "text")->valuestring;
    assert_true(strlen(t) <= 150);
    assert_true(strlen(t) > 100);
    assert_string_equal(t + strlen(t) - 3, "...");
    assert_int_equal((int)(strlen(t) - 3) % 2, 0); /* whole two-byte characters */
    cJSON_Delete(m);
    free(s);
    free(big);

    /* Already a Slack message: passed through. Not an object: refused. */
    const char *ready = "{\"text\":\"hi\",\"blocks\":[{\"type\":\"divider\"}]}";
    s = cs_out_slack_format(ready, strlen(ready));
    assert_string_equal(s, ready);
    free(s);
    assert_null(cs_out_slack_format("[1,2]", 5));
    assert_null(cs_out_slack_format("{oops", 5));
}

/* ---------------------------------------------------------- in-memory source */

static void test_mem_source_claims_leases_and_reports(void **state)
{
    (void)state;
    cs_out_mem *m = cs_out_mem_new();
    cs_out_source src = cs_out_mem_source(m);
    assert_int_equal(cs_out_mem_add(m, "a", "d1", "{}", 300), 0);
    assert_int_equal(cs_out_mem_add(m, "b", "d1", "{}", 100), 0);
    assert_int_equal(cs_out_mem_add(m, "c", "d1", "{}", 200), 0);
    assert_int_equal(cs_out_mem_add(m, "x", "d2", "{}", 100), 0);
    assert_int_equal(cs_out_mem_add(m, "late", "d1", "{}", 5000), 0);
    assert_int_equal(cs_out_mem_add(m, "a", "d1", "{}", 1), -1); /* ids are unique */

    cs_out_delivery out[8];
    int n = src.ops->claim(src.ctx, "d1", 1000, 2000, out, 8);
    assert_int_equal(n, 3); /* due only, this destination only, oldest first */
    assert_string_equal(out[0].id, "b");
    assert_string_equal(out[1].id, "c");
    assert_string_equal(out[2].id, "a");
    for (int i = 0; i < n; i++) free(out[i].payload);
    assert_int_equal(src.ops->claim(src.ctx, "d1", 1500, 2500, out, 8), 0); /* leased */

    src.ops->delivered(src.ctx, "b", 1, 1600);
    src.ops->retry(src.ctx, "c", 1, 9000, "HTTP 500");
    src.ops->dead(src.ctx, "a", 1, "HTTP 404");
    cs_out_mem_row r;
    assert_int_equal(cs_out_mem_get(m, "c", &r), 0);
    assert_int_equal(r.state, CS_OUT_PENDING);
    assert_int_equal(r.attempt, 1);
    assert_int_equal(r.next_attempt_ms, 9000);
    assert_string_equal(r.reason, "HTTP 500");
    assert_int_equal(cs_out_mem_get(m, "a", &r), 0);
    assert_int_equal(r.state, CS_OUT_DEADLETTER);
    assert_int_equal(cs_out_mem_count(m, CS_OUT_DELIVERED), 1);

    /* An expired lease makes a claim due again; a frozen source drops reports. */
    n = src.ops->claim(src.ctx, "d2", 1000, 2000, out, 8);
    assert_int_equal(n, 1);
    free(out[0].payload);
    cs_out_mem_freeze(m, 1);
    src.ops->delivered(src.ctx, "x", 1, 1100);
    cs_out_mem_freeze(m, 0);
    assert_int_equal(src.ops->claim(src.ctx, "d2", 1999, 3000, out, 8), 0);
    n = src.ops->claim(src.ctx, "d2", 2000, 3000, out, 8);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].id, "x");
    assert_int_equal(out[0].attempt, 0);
    free(out[0].payload);
    /* Release: due at once, attempt unchanged. */
    src.ops->release(src.ctx, "x");
    n = src.ops->claim(src.ctx, "d2", 2001, 3000, out, 8);
    assert_int_equal(n, 1);
    free(out[0].payload);
    assert_int_equal(cs_out_mem_get(m, "x", &r), 0);
    assert_int_equal(r.claims, 3);
    assert_int_equal(r.releases, 1);
    cs_out_mem_free(m);
}

/* ------------------------------------------------------------ configuration */

static void test_config_errors_name_the_destination(void **state)
{
    (void)state;
    cs_out_mem *m = cs_out_mem_new();
    cs_out_opts opts = {.source = cs_out_mem_source(m)};
    char err[256];
    cs_out_dest_conf bad_url = {.name = "crm", .url = "ftp://x"};
    assert_null(cs_out_new(&bad_url, 1, &opts, err, sizeof err));
    assert_non_null(strstr(err, "crm"));
    cs_out_dest_conf bad_secret = {.name = "crm", .url = "https://x", .secrets = {"whsec_!!"}};
    assert_null(cs_out_new(&bad_secret, 1, &opts, err, sizeof err));
    assert_non_null(strstr(err, "secret"));
    cs_out_dest_conf bad_name = {.name = "a b", .url = "https://x"};
    assert_null(cs_out_new(&bad_name, 1, &opts, err, sizeof err));
    cs_out_dest_conf slack_secret = {.name = "s", .kind = CS_OUT_SLACK, .url = "https://x",
                                     .secrets = {"whsec_QQ=="}};
    assert_null(cs_out_new(&slack_secret, 1, &opts, err, sizeof err));
    cs_out_dest_conf two[2] = {{.name = "a", .url = "https://x"}, {.name = "a", .url = "https://y"}};
    assert_null(cs_out_new(two, 2, &opts, err, sizeof err));
    assert_non_null(strstr(err, "twice"));
    cs_out_dest_conf ok[2] = {{.name = "a", .url = "https://x", .secrets = {"whsec_QQ=="}},
                              {.name = "s", .kind = CS_OUT_SLACK, .url = "https://y"}};
    cs_out *o = cs_out_new(ok, 2, &opts, err, sizeof err);
    assert_non_null(o);
    cs_out_stats st;
    assert_int_equal(cs_out_stats_get(o, "s", &st), 0);
    assert_int_equal(cs_out_stats_get(o, "nope", &st), -1);
    cs_out_destroy(o);
    cs_out_destroy(NULL);
    cs_out_mem_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_matches_spec_vector),
        cmocka_unit_test(test_key_parse_rejects_bad_secrets),
        cmocka_unit_test(test_classify_follows_the_contract),
        cmocka_unit_test(test_backoff_doubles_with_bounded_jitter),
        cmocka_unit_test(test_retry_after_seconds_and_dates),
        cmocka_unit_test(test_address_policy),
        cmocka_unit_test(test_slack_format_text_and_blocks),
        cmocka_unit_test(test_mem_source_claims_leases_and_reports),
        cmocka_unit_test(test_config_errors_name_the_destination),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
