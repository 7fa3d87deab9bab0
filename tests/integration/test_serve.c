/*
 * Integration: a real `crmstream serve` process. LeadCreated events become
 * leads routed round-robin to the configured reps; SIGKILL at any moment
 * loses no acknowledged event and duplicates no lead; bad input gets a
 * specific 4xx with a JSON error and the server keeps serving.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.c"

static const char *const reps[] = {"rep_a", "rep_b", "rep_c"};

/* A batch of n LeadCreated events with ids prefix-<first..first+n-1>. The
 * timestamp is today's midnight, so it stays inside ingest's plausibility
 * window and retries carry the same payload. */
static char *lead_batch(const char *prefix, int first, int n)
{
    cs_buf b;
    cs_buf_init(&b);
    char ts[40];
    cs_fmt_time_ms(cs_now_us() / 86400000000LL * 86400000000LL, ts, sizeof ts);
    cs_buf_adds(&b, "[");
    for (int i = 0; i < n; i++)
        cs_buf_printf(&b,
                      "%s{\"event_id\":\"%s-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%d\","
                      "\"timestamp\":\"%s\",\"properties\":{\"email\":\"p%d@co%d.example\","
                      "\"company\":\"Co %d\",\"employee_count\":%d}}",
                      i ? "," : "", prefix, first + i, (first + i) % 17, ts, first + i, (first + i) % 17,
                      (first + i) % 17, 10 + (first + i) % 30); /* a function of the id: retries match */
    cs_buf_adds(&b, "]");
    return cs_buf_steal(&b);
}

static int post_accepted(th_server *s, const char *body)
{
    cJSON *j;
    int st = th_req(s, "POST", "/v1/events", body, &j);
    int acc = st == 200 ? (int)cJSON_GetObjectItem(j, "accepted")->valuedouble : -st;
    cJSON_Delete(j);
    return acc;
}

/* Post a retry of acknowledged events: every one is a duplicate. Returns
 * the duplicates count (accepted must be 0). */
static int post_duplicates(th_server *s, const char *body)
{
    cJSON *j;
    int st = th_req(s, "POST", "/v1/events", body, &j);
    int dup = -st;
    if (st == 200) {
        assert_int_equal((int)cJSON_GetObjectItem(j, "accepted")->valuedouble, 0);
        dup = (int)cJSON_GetObjectItem(j, "duplicates")->valuedouble;
    }
    cJSON_Delete(j);
    return dup;
}

/* Every lead: owner one of the reps, reason, routed_at; returns per-rep counts. */
static void check_all_leads(th_server *s, long expect, int counts[3])
{
    char path[128], cursor[64] = "";
    long n = 0;
    memset(counts, 0, 3 * sizeof *counts);
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/leads?limit=37%s%s", *cursor ? "&cursor=" : "", cursor);
        cJSON *j;
        assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
        for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next, n++) {
            const char *owner = cJSON_GetObjectItem(it, "owner")->valuestring;
            int k;
            for (k = 0; k < 3; k++)
                if (strcmp(owner, reps[k]) == 0) break;
            assert_true(k < 3);
            counts[k]++;
            assert_string_equal(cJSON_GetObjectItem(it, "status")->valuestring, "routed");
            assert_non_null(strstr(cJSON_GetObjectItem(it, "route_reason")->valuestring, "round_robin"));
            assert_true(cJSON_IsString(cJSON_GetObjectItem(it, "routed_at")));
        }
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        int more = cJSON_IsString(nc);
        if (more) snprintf(cursor, sizeof cursor, "%s", nc->valuestring);
        cJSON_Delete(j);
        if (!more) break;
    }
    assert_int_equal(n, expect);
}

static void test_leads_routed_round_robin_and_fetchable(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, NULL);
    assert_int_equal(th_start(&s), 0);
    for (int b = 0; b < 10; b++) {
        char *body = lead_batch("rr", b * 30, 30);
        assert_int_equal(post_accepted(&s, body), 30);
        free(body);
    }
    /* Other seed types are accepted and make no lead. */
    assert_int_equal(post_accepted(&s, "[{\"event_id\":\"f1\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_1\","
                                       "\"properties\":{\"feature\":\"export_csv\"}},"
                                       "{\"event_id\":\"t1\",\"type\":\"TrialActivated\",\"account_id\":\"acc_1\"},"
                                       "{\"event_id\":\"d1\",\"type\":\"DemoRequested\",\"account_id\":\"acc_1\","
                                       "\"properties\":{\"email\":\"x@y.example\"}},"
                                       "{\"event_id\":\"s1\",\"type\":\"SubscriptionUpgraded\",\"account_id\":\"acc_1\","
                                       "\"properties\":{\"plan_tier\":\"pro\",\"mrr\":500}},"
                                       "{\"event_id\":\"c1\",\"type\":\"SupportCaseEscalated\",\"account_id\":\"acc_1\","
                                       "\"properties\":{\"case_id\":\"42\"}}]"),
                     5);
    assert_int_equal(th_wait_leads(&s, 300, 20000), 300);
    int counts[3];
    check_all_leads(&s, 300, counts);
    for (int k = 0; k < 3; k++) assert_int_equal(counts[k], 100); /* strict rotation */

    /* One lead by id, via the list. */
    cJSON *j;
    assert_int_equal(th_req(&s, "GET", "/api/v1/leads?limit=1", NULL, &j), 200);
    cJSON *first = cJSON_GetObjectItem(j, "items")->child;
    char path[128];
    snprintf(path, sizeof path, "/api/v1/leads/%s", cJSON_GetObjectItem(first, "id")->valuestring);
    cJSON *one;
    assert_int_equal(th_req(&s, "GET", path, NULL, &one), 200);
    assert_string_equal(cJSON_GetObjectItem(one, "event_id")->valuestring,
                        cJSON_GetObjectItem(first, "event_id")->valuestring);
    int n = atoi(strrchr(cJSON_GetObjectItem(one, "event_id")->valuestring, '-') + 1);
    char email[64];
    snprintf(email, sizeof email, "p%d@co%d.example", n, n % 17);
    assert_string_equal(cJSON_GetObjectItem(one, "email")->valuestring, email);
    assert_int_equal((int)cJSON_GetObjectItem(one, "employee_count")->valuedouble, 10 + n % 30);
    assert_true(cJSON_GetObjectItem(one, "route_latency_ms")->valuedouble >= 0);
    cJSON_Delete(one);
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/leads/ld_doesnotexist", NULL, &j), 404);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring, "not_found");
    cJSON_Delete(j);

    /* A client retry of acknowledged events changes nothing. */
    char *again = lead_batch("rr", 0, 30);
    assert_int_equal(post_duplicates(&s, again), 30);
    free(again);
    char *marker = lead_batch("marker", 0, 1);
    assert_int_equal(post_accepted(&s, marker), 1);
    free(marker);
    assert_int_equal(th_wait_leads(&s, 301, 20000), 301); /* the marker, and no more */
    assert_int_equal(th_count_leads(&s), 301);
    assert_int_equal(th_stop(&s, SIGTERM), 0); /* clean exit: no leak reports under ASan */
    th_cleanup(&s);
}

/* A producer thread posting batches while the server gets SIGKILL. */
struct producer {
    th_server *s;
    int        acked_upto;   /* batches acknowledged */
    int        stop;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    cs_httpc c;
    cs_httpc_init(&c, p->s->target);
    cs_buf resp;
    cs_buf_init(&resp);
    for (int b = 0; !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE) && b < 100000; b++) {
        char *body = lead_batch("k9", b * 10, 10);
        int st;
        int rc = cs_httpc_request(&c, "POST", "/v1/events", NULL, body, strlen(body), &st, &resp);
        free(body);
        if (rc != 0 || st != 200) break; /* server gone: this batch is unknown, not acked */
        __atomic_store_n(&p->acked_upto, b + 1, __ATOMIC_RELEASE);
    }
    cs_buf_free(&resp);
    cs_httpc_close(&c);
    return NULL;
}

/* Mark which k9-<n> event ids have a lead; fails on a duplicate event id.
 * Returns the number of leads. */
static long k9_seen(th_server *s, unsigned char *seen, int max)
{
    char path[128], cursor[64] = "";
    long n = 0;
    memset(seen, 0, (size_t)max);
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/leads?limit=1000%s%s", *cursor ? "&cursor=" : "", cursor);
        cJSON *j;
        assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
        for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next) {
            const char *eid = cJSON_GetObjectItem(it, "event_id")->valuestring;
            if (strncmp(eid, "k9-", 3) != 0) continue;
            int k = atoi(eid + 3);
            assert_true(k >= 0 && k < max);
            assert_int_equal(seen[k], 0); /* no lead twice */
            seen[k] = 1;
            n++;
        }
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        int more = cJSON_IsString(nc);
        if (more) snprintf(cursor, sizeof cursor, "%s", nc->valuestring);
        cJSON_Delete(j);
        if (!more) return n;
    }
}

static void test_kill9_loses_no_acked_event_and_duplicates_no_lead(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, NULL);
    enum { MAXID = 1000000 };
    unsigned char *seen = malloc(MAXID);
    int acked = 0;    /* events k9-0 .. k9-(acked-1) were acknowledged */
    int possible = 0; /* ids below this may exist (in flight at a kill) */
    for (int cycle = 0; cycle <= 5; cycle++) {
        assert_int_equal(th_start(&s), 0);
        /* Everything acknowledged before every earlier kill is there, once;
         * nothing beyond what was ever sent. */
        assert_true(th_wait_leads(&s, acked, 60000) >= acked);
        /* Events in flight at the kill (durable, never acknowledged) are
         * applied too, after the acknowledged ones: count once the pipeline
         * has caught up, and again until two counts agree (a lead is briefly
         * between its account worker and the leads lane). */
        long have = -1, seen_n = -2;
        for (int tries = 0; tries < 50 && seen_n != have; tries++) {
            assert_int_equal(th_wait_caught_up(&s, 60000), 0);
            have = th_count_leads(&s);
            seen_n = k9_seen(&s, seen, MAXID);
        }
        assert_true(have >= acked);
        assert_int_equal(seen_n, have);
        for (int k = 0; k < acked; k++) assert_int_equal(seen[k], 1);
        assert_true(have <= possible);
        if (cycle == 5) break;
        /* Each cycle re-sends from k9-0 (a client retrying: must dedupe)
         * and goes further; kill once it has acks of its own. */
        struct producer p = {&s, 0, 0};
        pthread_t t;
        pthread_create(&t, NULL, produce, &p);
        while (__atomic_load_n(&p.acked_upto, __ATOMIC_ACQUIRE) < acked / 10 + 10 + cycle * 7) usleep(1000);
        th_stop(&s, SIGKILL);
        pthread_join(t, NULL);
        int up = __atomic_load_n(&p.acked_upto, __ATOMIC_ACQUIRE);
        if (up * 10 > acked) acked = up * 10;
        if ((up + 1) * 10 > possible) possible = (up + 1) * 10;
    }
    /* Re-sending acknowledged events after all of that changes nothing. */
    int resend = acked < 500 ? acked : 500;
    char *again = lead_batch("k9", 0, resend);
    assert_int_equal(post_duplicates(&s, again), resend); /* the window was rebuilt from the log at each start */
    free(again);
    char *marker = lead_batch("marker", 0, 1);
    assert_int_equal(post_accepted(&s, marker), 1);
    free(marker);
    long before = k9_seen(&s, seen, MAXID);
    assert_true(th_wait_leads(&s, before + 1, 60000) == before + 1);
    assert_int_equal(k9_seen(&s, seen, MAXID), before);
    free(seen);
    assert_int_equal(th_stop(&s, SIGTERM), 0); /* clean exit: no leak reports under ASan */
    th_cleanup(&s);
}

/* Expect status and error code (and field when not NULL). */
static void expect_error(th_server *s, const char *body, int status, const char *code, const char *field)
{
    cJSON *j;
    assert_int_equal(th_req(s, "POST", "/v1/events", body, &j), status);
    assert_non_null(j);
    cJSON *e = cJSON_GetObjectItem(j, "error");
    assert_non_null(e);
    assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, code);
    assert_true(strlen(cJSON_GetObjectItem(e, "message")->valuestring) > 0);
    if (field) assert_string_equal(cJSON_GetObjectItem(e, "field")->valuestring, field);
    cJSON_Delete(j);
    /* and the server keeps serving */
    assert_int_equal(th_req(s, "GET", "/healthz", NULL, NULL), 200);
}

static void test_bad_input_gets_specific_errors(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, "ingest:\n  max_body_bytes: 4096\n");
    assert_int_equal(th_start(&s), 0);
    expect_error(&s, "{\"event_id\":\"a\",", 400, "malformed_json", NULL);
    expect_error(&s, "", 400, "empty_body", NULL);
    expect_error(&s, "42", 422, "wrong_type", NULL);
    expect_error(&s, "[]", 400, "wrong_shape", NULL);
    expect_error(&s, "{\"event_id\":\"a\",\"account_id\":\"x\"}", 422, "missing_field", "type");
    expect_error(&s, "{\"type\":\"TrialActivated\",\"account_id\":\"x\"}", 422, "missing_field", "event_id");
    expect_error(&s, "{\"event_id\":\"a\",\"type\":\"TrialActivated\"}", 422, "missing_field", "account_id");
    expect_error(&s, "{\"event_id\":\"a\",\"type\":\"TrialActivated\",\"account_id\":7}", 422, "wrong_type",
                 "account_id");
    expect_error(&s, "{\"event_id\":\"a\",\"type\":\"TrialActivated\",\"account_id\":\"x\",\"timestamp\":5}", 422,
                 "wrong_type", "timestamp");
    expect_error(&s, "{\"event_id\":\"a\",\"type\":\"TrialActivated\",\"account_id\":\"x\",\"timestamp\":\"yesterday\"}",
                 422, "invalid_value", "timestamp");
    expect_error(&s, "{\"event_id\":\"a\",\"type\":\"FeatureUsed\",\"account_id\":\"x\"}", 422, "missing_field",
                 "properties.feature");
    expect_error(&s, "{\"event_id\":\"a\",\"type\":\"LeadCreated\",\"properties\":{\"email\":\"nope\"}}", 422,
                 "invalid_value", "properties.email");
    expect_error(&s, "{\"event_id\":\"a\",\"type\":\"TrialActivated\",\"account_id\":\"x\",\"acount\":1}", 422,
                 "unknown_field", "acount");
    expect_error(&s, "{\"event_id\":\"a\xff\",\"type\":\"T\",\"account_id\":\"x\"}", 400, "invalid_utf8", NULL);

    /* Over the body limit, announced by Content-Length: 413 before reading it. */
    char big[8192];
    memset(big, ' ', sizeof big - 1);
    big[0] = '[';
    big[sizeof big - 2] = ']';
    big[sizeof big - 1] = '\0';
    expect_error(&s, big, 413, "body_too_large", NULL);
    /* ... and sent chunked, with no length announced. */
    cs_buf raw;
    cs_buf_init(&raw);
    cs_buf_adds(&raw, "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 8; i++) cs_buf_printf(&raw, "400\r\n%.*s\r\n", 1024, big + 1);
    cs_buf_adds(&raw, "0\r\n\r\n");
    cs_httpc rc;
    cs_httpc_init(&rc, s.target);
    int st;
    cs_buf resp;
    cs_buf_init(&resp);
    assert_int_equal(cs_httpc_raw(&rc, raw.data, raw.len, &st, &resp), 0);
    assert_int_equal(st, 413);
    assert_non_null(strstr(resp.data, "body_too_large"));
    cs_httpc_close(&rc);
    cs_buf_free(&raw);
    cs_buf_free(&resp);

    /* One bad event among good ones: the good ones are taken. */
    cJSON *j;
    assert_int_equal(th_req(&s, "POST", "/v1/events",
                            "[{\"event_id\":\"g1\",\"type\":\"TrialActivated\",\"account_id\":\"x\"},"
                            "{\"event_id\":\"g2\",\"type\":\"TrialActivated\"},"
                            "{\"event_id\":\"g3\",\"type\":\"TrialActivated\",\"account_id\":\"y\"}]",
                            &j),
                     200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "accepted")->valuedouble, 2);
    cJSON *rej = cJSON_GetObjectItem(j, "rejected");
    assert_int_equal(cJSON_GetArraySize(rej), 1);
    assert_int_equal((int)cJSON_GetObjectItem(rej->child, "index")->valuedouble, 1);
    assert_string_equal(cJSON_GetObjectItem(rej->child, "field")->valuestring, "account_id");
    cJSON_Delete(j);
    /* NDJSON */
    assert_int_equal(th_req(&s, "POST", "/v1/events",
                            "{\"event_id\":\"n1\",\"type\":\"TrialActivated\",\"account_id\":\"x\"}\n"
                            "{\"event_id\":\"n2\",\"type\":\"TrialActivated\",\"account_id\":\"x\"}\n",
                            &j),
                     200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "accepted")->valuedouble, 2);
    cJSON_Delete(j);

    /* Routing errors and list parameters. */
    assert_int_equal(th_req(&s, "GET", "/nope", NULL, NULL), 404);
    assert_int_equal(th_req(&s, "DELETE", "/v1/events", NULL, NULL), 405);
    assert_int_equal(th_req(&s, "GET", "/api/v1/leads?limit=0", NULL, &j), 400);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "field")->valuestring, "limit");
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/leads?limit=1001", NULL, NULL), 400);
    assert_int_equal(th_req(&s, "GET", "/api/v1/leads?cursor=abc", NULL, NULL), 400);
    assert_int_equal(th_stop(&s, SIGTERM), 0); /* clean exit: no leak reports under ASan */
    th_cleanup(&s);
}


/* Pause the pipeline: the log keeps taking events until the lag passes
 * pipeline.max_lag, then ingest answers 503 + Retry-After and /readyz says
 * why; resume drains the lag and both recover. */
static void test_backpressure_and_readiness(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, "pipeline:\n  max_lag: 25\n");
    assert_int_equal(th_start(&s), 0);
    cJSON *j;
    assert_int_equal(th_req(&s, "GET", "/readyz", NULL, &j), 200);
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "ready");
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "POST", "/api/v1/pipeline/pause", "", &j), 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "paused")));
    cJSON_Delete(j);
    char *b1 = lead_batch("bp", 0, 30);
    assert_int_equal(post_accepted(&s, b1), 30); /* lag was 0: taken */
    free(b1);
    char *b2 = lead_batch("bp", 30, 5);
    assert_int_equal(th_req(&s, "POST", "/v1/events", b2, &j), 503);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring, "backpressure");
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/readyz", NULL, &j), 503);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "failing")->child, "check")->valuestring,
                        "pipeline_lag");
    cJSON_Delete(j);
    assert_int_equal(th_count_leads(&s), 0); /* paused: nothing applied */
    assert_int_equal(th_req(&s, "POST", "/api/v1/pipeline/resume", "", NULL), 200);
    assert_int_equal(th_wait_leads(&s, 30, 20000), 30);
    /* The leads are visible the moment the batch commits; the lag the
     * pipeline reports follows an instant later: poll, don't race. */
    assert_int_equal(th_wait_caught_up(&s, 20000), 0);
    assert_int_equal(th_req(&s, "GET", "/readyz", NULL, NULL), 200);
    assert_int_equal(post_accepted(&s, b2), 5);
    free(b2);
    assert_int_equal(th_wait_leads(&s, 35, 20000), 35);
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    th_cleanup(&s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leads_routed_round_robin_and_fetchable),
        cmocka_unit_test(test_bad_input_gets_specific_errors),
        cmocka_unit_test(test_backpressure_and_readiness),
        cmocka_unit_test(test_kill9_loses_no_acked_event_and_duplicates_no_lead),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
