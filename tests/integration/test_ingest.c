/*
 * Integration: the ingest front door of a real `crmstream serve` with write
 * keys configured — Segment /v1/batch with gzip and the key as Basic-auth
 * user or writeKey, 401 and 429, the dedupe window surviving a restart
 * (rebuilt from the log), 409 on a reused messageId, leads created exactly
 * once from Segment track calls, and the counters in /metrics.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <cmocka.h>

#include "harness.c"

static const char keys_yaml[] = "auth:\n  write_keys:\n"
                                "    - {name: web, key: wk-web}\n"
                                "    - {name: slow, key: wk-slow, rate_limit: 2}\n";
#define AUTH_WEB "Authorization: Basic d2std2ViOg==\r\n"   /* "wk-web:" */
#define AUTH_SLOW "Authorization: Basic d2stc2xvdzo=\r\n"  /* "wk-slow:" */

static int post(th_server *s, const char *path, const char *headers, const char *body, size_t len, cJSON **j)
{
    cs_buf resp;
    cs_buf_init(&resp);
    int st = -1;
    if (cs_httpc_request(&s->c, "POST", path, headers, body, len, &st, &resp) != 0) st = -1;
    *j = resp.data ? cJSON_Parse(resp.data) : NULL;
    cs_buf_free(&resp);
    return st;
}

/* n LeadCreated track calls sg-<first..>, in a Segment batch. */
static char *segment_batch(int first, int n, const char *extra)
{
    cs_buf b;
    cs_buf_init(&b);
    static char now[40]; /* one client time for the whole test: a retry resends the same message */
    if (!*now) cs_fmt_time_ms(cs_now_us(), now, sizeof now);
    cs_buf_adds(&b, "{\"batch\":[");
    for (int i = first; i < first + n; i++)
        cs_buf_printf(&b,
                      "%s{\"type\":\"track\",\"event\":\"Lead Created\",\"messageId\":\"sg-%d\",\"userId\":\"u%d\","
                      "\"properties\":{\"email\":\"p%d@co%d.example\",\"company\":\"Co\"},"
                      "\"originalTimestamp\":\"%s\"}",
                      i > first ? "," : "", i, i, i, i % 5, now);
    cs_buf_printf(&b, "],\"context\":{\"groupId\":\"acc_seg\"},\"sentAt\":\"%s\"%s}", now, extra ? extra : "");
    return cs_buf_steal(&b);
}

static size_t gzip_buf(const char *in, size_t len, unsigned char **out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&z, len) + 64;
    *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = *out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = z.total_out;
    deflateEnd(&z);
    return n;
}

static long metric(th_server *s, const char *name)
{
    cs_buf resp;
    cs_buf_init(&resp);
    int st;
    assert_int_equal(cs_httpc_request(&s->c, "GET", "/metrics", NULL, NULL, 0, &st, &resp), 0);
    assert_int_equal(st, 200);
    /* The sum of the family over its label sets; -1 when absent. */
    long v = -1;
    size_t n = strlen(name);
    for (const char *p = resp.data; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) != 0 || (p[n] != ' ' && p[n] != '{')) continue;
        const char *sp = strchr(p[n] == '{' ? strchr(p, '}') : p, ' ');
        v = (v < 0 ? 0 : v) + atol(sp + 1);
    }
    cs_buf_free(&resp);
    return v;
}

static void test_segment_auth_gzip_dedupe_restart(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, keys_yaml);
    assert_int_equal(th_start(&s), 0);
    cJSON *j;
    char *body = segment_batch(0, 20, NULL);
    /* No key, unknown key: 401 with the JSON error; nothing stored. */
    assert_int_equal(post(&s, "/v1/batch", NULL, body, strlen(body), &j), 401);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring, "unauthorized");
    cJSON_Delete(j);
    assert_int_equal(post(&s, "/v1/batch", "Authorization: Basic bm9wZTo=\r\n", body, strlen(body), &j), 401);
    cJSON_Delete(j);
    assert_int_equal(post(&s, "/v1/events", NULL, "{}", 2, &j), 401); /* native too */
    cJSON_Delete(j);
    /* Gzipped, labelled as a form (as RudderStack sends it), key as Basic user. */
    unsigned char *gz;
    size_t gzn = gzip_buf(body, strlen(body), &gz);
    assert_int_equal(post(&s, "/v1/batch",
                          AUTH_WEB "Content-Encoding: gzip\r\nContent-Type: application/x-www-form-urlencoded\r\n",
                          (char *)gz, gzn, &j),
                     200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "accepted")->valuedouble, 20);
    cJSON_Delete(j);
    free(gz);
    /* Unknown encoding: 415. */
    assert_int_equal(post(&s, "/v1/batch", AUTH_WEB "Content-Encoding: br\r\n", body, strlen(body), &j), 415);
    cJSON_Delete(j);
    free(body);
    assert_int_equal(th_wait_leads(&s, 20, 20000), 20);
    /* Restart: the dedupe window is rebuilt from the log, so a retry with
     * the key in the body is all duplicates and makes no lead. */
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    assert_int_equal(th_start(&s), 0);
    body = segment_batch(0, 25, ",\"writeKey\":\"wk-web\"");
    assert_int_equal(post(&s, "/v1/batch", NULL, body, strlen(body), &j), 200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "accepted")->valuedouble, 5);
    assert_int_equal((int)cJSON_GetObjectItem(j, "duplicates")->valuedouble, 20);
    cJSON_Delete(j);
    free(body);
    assert_int_equal(th_wait_leads(&s, 25, 20000), 25);
    /* Same messageId, different payload: 409. */
    const char *conflict = "{\"messageId\":\"sg-3\",\"event\":\"Lead Created\",\"properties\":{\"email\":\"x@y.example\"}}";
    assert_int_equal(post(&s, "/v1/track", AUTH_WEB, conflict, strlen(conflict), &j), 409);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "field")->valuestring, "messageId");
    cJSON_Delete(j);
    /* A rate-limited key: 2 events/s, a batch of 2 fills it, the next gets 429. */
    body = segment_batch(100, 2, NULL);
    assert_int_equal(post(&s, "/v1/batch", AUTH_SLOW, body, strlen(body), &j), 200);
    cJSON_Delete(j);
    free(body);
    body = segment_batch(102, 2, NULL);
    assert_int_equal(post(&s, "/v1/batch", AUTH_SLOW, body, strlen(body), &j), 429);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring, "rate_limited");
    cJSON_Delete(j);
    free(body);
    assert_int_equal(th_wait_leads(&s, 27, 20000), 27);
    assert_int_equal(th_count_leads(&s), 27);
    /* The counters agree (this process only: 5 + 2 accepted, 20 duplicates). */
    assert_int_equal(metric(&s, "crmstream_events_accepted_total"), 7);
    assert_int_equal(metric(&s, "crmstream_events_duplicate_total"), 20);
    assert_int_equal(metric(&s, "crmstream_ingest_rate_limited_total"), 1);
    assert_int_equal(metric(&s, "crmstream_ingest_dedupe_ids"), 27);
    /* Every answer by endpoint and code: two batches taken, one 429, one 409. */
    assert_int_equal(metric(&s, "crmstream_ingest_requests_total{endpoint=\"batch\",code=\"200\"}"), 2);
    assert_int_equal(metric(&s, "crmstream_ingest_requests_total{endpoint=\"batch\",code=\"429\"}"), 1);
    assert_int_equal(metric(&s, "crmstream_ingest_requests_total{endpoint=\"track\",code=\"409\"}"), 1);
    assert_int_equal(metric(&s, "crmstream_ingest_requests_total"), 4);
    assert_int_equal(th_stop(&s, SIGTERM), 0); /* clean exit: no leak reports under ASan */
    th_cleanup(&s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_segment_auth_gzip_dedupe_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
