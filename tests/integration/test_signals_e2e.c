/*
 * Integration: account events become signals in the CRM, Segment group /
 * identify calls become account and contact rows, and signal state survives
 * SIGKILL: a server killed halfway and restarted ends with the same signals
 * as one that took the whole stream uninterrupted (T13 for signals).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.c"

/* n FeatureUsed events for accounts acc_0..acc_(accounts-1), event times
 * spread over the last hours (one UTC day at most, so no day sweep runs). */
static char *usage_batch(int first, int n, int accounts, int64_t base_us)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "[");
    static const char *const feats[] = {"reports", "api", "sso", "alerts", "export_csv"};
    for (int i = first; i < first + n; i++) {
        char ts[40];
        cs_fmt_time_ms(base_us + (int64_t)i * 1000000, ts, sizeof ts);
        cs_buf_printf(&b, "%s{\"event_id\":\"u-%d\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_%d\","
                          "\"user_id\":\"user_%d\",\"timestamp\":\"%s\",\"properties\":{\"feature\":\"%s\",\"count\":%d}}",
                      i > first ? "," : "", i, i % accounts, i % 7, ts, feats[i % 5], 1 + i % 3);
    }
    cs_buf_adds(&b, "]");
    return cs_buf_steal(&b);
}

static void post_ok(th_server *s, const char *path, const char *body)
{
    cJSON *j;
    assert_int_equal(th_req(s, "POST", path, body, &j), 200);
    cJSON_Delete(j);
}

/* "name=value;..." of an account's signals, sorted by the API. */
static void signals_of(th_server *s, const char *acc, char *out, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/accounts/%s", acc);
    cJSON *j;
    assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
    out[0] = '\0';
    for (cJSON *it = cJSON_GetObjectItem(j, "signals")->child; it; it = it->next) {
        size_t l = strlen(out);
        snprintf(out + l, n - l, "%s=%.6f;", it->string, it->valuedouble);
    }
    cJSON_Delete(j);
}

static void create_accounts(th_server *s, int accounts)
{
    for (int a = 0; a < accounts; a++) {
        char body[160];
        snprintf(body, sizeof body, "{\"id\":\"acc_%d\",\"name\":\"Account %d\"}", a, a);
        assert_int_equal(th_req(s, "POST", "/api/v1/accounts", body, NULL), 202);
    }
}

static void test_group_identify_and_signals(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, NULL);
    assert_int_equal(th_start(&s), 0);
    char ts[40], body[1024];
    cs_fmt_time_ms(cs_now_us(), ts, sizeof ts);
    snprintf(body, sizeof body,
             "{\"messageId\":\"g-1\",\"userId\":\"user_1\",\"groupId\":\"acc_g\",\"timestamp\":\"%s\","
             "\"traits\":{\"name\":\"Acme\",\"plan_tier\":\"pro\",\"mrr\":\"lots\",\"industry\":\"saas\"}}", ts);
    post_ok(&s, "/v1/group", body);
    snprintf(body, sizeof body,
             "{\"messageId\":\"i-1\",\"userId\":\"user_1\",\"context\":{\"groupId\":\"acc_g\"},\"timestamp\":\"%s\","
             "\"traits\":{\"email\":\"ada@acme.example\",\"name\":\"Ada\",\"title\":\"CTO\",\"shoe\":42}}", ts);
    post_ok(&s, "/v1/identify", body);
    char *u = usage_batch(0, 40, 1, cs_now_us() - 3600LL * 1000000);
    for (char *p = u; (p = strstr(p, "acc_0")); p++) memcpy(p, "acc_g", 5); /* same length */
    post_ok(&s, "/v1/events", u);
    free(u);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    cJSON *j;
    assert_int_equal(th_req(&s, "GET", "/api/v1/accounts/acc_g", NULL, &j), 200);
    assert_string_equal(cJSON_GetObjectItem(j, "name")->valuestring, "Acme");
    assert_string_equal(cJSON_GetObjectItem(j, "plan_tier")->valuestring, "pro");
    /* a trait of the wrong type for its field is kept, under custom */
    cJSON *custom = cJSON_GetObjectItem(j, "custom");
    assert_non_null(custom);
    char *cs = cJSON_PrintUnformatted(custom);
    assert_non_null(strstr(cs, "\"industry\":\"saas\""));
    assert_non_null(strstr(cs, "\"mrr\":\"lots\""));
    cJSON_free(cs);
    cJSON *usage = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "signals"), "usage_score");
    assert_true(cJSON_IsNumber(usage) && usage->valuedouble > 0 && usage->valuedouble <= 100);
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/contacts", NULL, &j), 200);
    cJSON *c = cJSON_GetObjectItem(j, "items")->child;
    assert_non_null(c);
    assert_string_equal(cJSON_GetObjectItem(c, "id")->valuestring, "user_1");
    assert_string_equal(cJSON_GetObjectItem(c, "email")->valuestring, "ada@acme.example");
    assert_string_equal(cJSON_GetObjectItem(c, "account_id")->valuestring, "acc_g");
    cJSON_Delete(j);
    /* every signal write is explained: audit rows name the rule */
    assert_int_equal(th_req(&s, "GET", "/api/v1/audit?object=account&id=acc_g", NULL, &j), 200);
    char *a = cJSON_PrintUnformatted(j);
    assert_non_null(strstr(a, "segment.group"));
    cJSON_free(a);
    cJSON_Delete(j);
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    th_cleanup(&s);
}

static void test_signals_identical_after_kill9(void **state)
{
    (void)state;
    enum { ACCOUNTS = 12, EVENTS = 1200 };
    int64_t base = cs_now_us() - 2 * 3600LL * 1000000; /* two hours ago, 1 s apart */
    th_server a, b;
    th_init(&a, NULL);
    th_init(&b, NULL);
    assert_int_equal(th_start(&a), 0);
    assert_int_equal(th_start(&b), 0);
    create_accounts(&a, ACCOUNTS);
    create_accounts(&b, ACCOUNTS);
    /* a: first half, SIGKILL, restart, second half. */
    char *h1 = usage_batch(0, EVENTS / 2, ACCOUNTS, base), *h2 = usage_batch(EVENTS / 2, EVENTS / 2, ACCOUNTS, base);
    post_ok(&a, "/v1/events", h1);
    assert_int_equal(th_wait_caught_up(&a, 30000), 0);
    th_stop(&a, SIGKILL);
    assert_int_equal(th_start(&a), 0);
    post_ok(&a, "/v1/events", h2);
    assert_int_equal(th_wait_caught_up(&a, 30000), 0);
    /* b: everything, uninterrupted. */
    post_ok(&b, "/v1/events", h1);
    post_ok(&b, "/v1/events", h2);
    assert_int_equal(th_wait_caught_up(&b, 30000), 0);
    free(h1);
    free(h2);
    for (int k = 0; k < ACCOUNTS; k++) {
        char acc[16], sa[512], sb[512];
        snprintf(acc, sizeof acc, "acc_%d", k);
        signals_of(&a, acc, sa, sizeof sa);
        signals_of(&b, acc, sb, sizeof sb);
        assert_non_null(strstr(sa, "usage_score="));
        assert_string_equal(sa, sb);
    }
    assert_int_equal(th_stop(&a, SIGTERM), 0);
    assert_int_equal(th_stop(&b, SIGTERM), 0);
    th_cleanup(&a);
    th_cleanup(&b);
}

/* An event later than the allowed lateness behind its partition's
 * watermark is acknowledged, kept in the DLQ with reason late_event and its
 * original bytes, and does not change the signals. */
static void test_late_event_goes_to_the_dlq(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, NULL);
    assert_int_equal(th_start(&s), 0);
    char now[40], old[40], body[600];
    cs_fmt_time_ms(cs_now_us(), now, sizeof now);
    cs_fmt_time_ms(cs_now_us() - 3 * 3600LL * 1000000, old, sizeof old);
    snprintf(body, sizeof body,
             "[{\"event_id\":\"on-time\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_late\",\"timestamp\":\"%s\","
             "\"properties\":{\"feature\":\"api\"}},"
             "{\"event_id\":\"too-late\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_late\",\"timestamp\":\"%s\","
             "\"properties\":{\"feature\":\"sso\"}}]",
             now, old);
    post_ok(&s, "/v1/events", body);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    cJSON *j;
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq?kind=event", NULL, &j), 200);
    cJSON *it = cJSON_GetObjectItem(j, "items")->child;
    assert_non_null(it);
    assert_null(it->next);
    assert_string_equal(cJSON_GetObjectItem(it, "kind")->valuestring, "event");
    assert_string_equal(cJSON_GetObjectItem(it, "reason")->valuestring, "late_event");
    assert_string_equal(cJSON_GetObjectItem(it, "event_id")->valuestring, "too-late");
    assert_non_null(strstr(cJSON_GetObjectItem(it, "payload")->valuestring, "\"feature\":\"sso\""));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(it, "offset")));
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq?kind=event&reason=undecodable", NULL, &j), 200);
    assert_null(cJSON_GetObjectItem(j, "items")->child);
    cJSON_Delete(j);
    /* replaying the log after a restart dead-letters it once, not twice */
    th_stop(&s, SIGKILL);
    assert_int_equal(th_start(&s), 0);
    assert_int_equal(th_req(&s, "POST", "/api/v1/replay", "{\"from_offset\":0}", NULL), 200);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq?kind=event", NULL, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 1);
    cJSON_Delete(j);
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    th_cleanup(&s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_identify_and_signals),
        cmocka_unit_test(test_signals_identical_after_kill9),
        cmocka_unit_test(test_late_event_goes_to_the_dlq),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
