/*
 * Integration: REST for CRM objects against a real `crmstream serve`.
 * Writes (POST/PUT accounts and reps) answer 202 with the id of the admin
 * event they appended to the log; the pipeline applies it, so tests poll the
 * GET with a deadline. Covers fields and their types, filters, pagination,
 * 404s, validation errors naming the field, the audit trail naming the
 * cause event, SQL metacharacters in every text field, and the same server
 * on a PostgreSQL store (a throwaway server, tests/pgserver.c).
 */
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
#include "pgserver.c"

/* ---------------------------------------------------------------- helpers */

static void urlenc(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; *s && k + 4 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.~", c))
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, n - k, "%%%02X", c);
    }
    out[k] = '\0';
}

static const char *jstr(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static const char *err_field(const cJSON *j)
{
    return jstr(cJSON_GetObjectItemCaseSensitive(j, "error"), "field");
}

/* POST/PUT expecting 202; returns the event id (static buffer). */
static const char *write_ok(th_server *s, const char *method, const char *path, const char *body)
{
    static char eid[64];
    cJSON *j;
    int st = th_req(s, method, path, body, &j);
    if (st != 202) fprintf(stderr, "%s %s -> %d\n", method, path, st);
    assert_int_equal(st, 202);
    assert_non_null(jstr(j, "event_id"));
    snprintf(eid, sizeof eid, "%s", jstr(j, "event_id"));
    assert_true(strncmp(eid, "adm_", 4) == 0);
    cJSON_Delete(j);
    return eid;
}

/* Expect status and, when field is given, an error naming it. */
static void expect_error(th_server *s, const char *method, const char *path, const char *body, int status,
                         const char *field)
{
    cJSON *j;
    int st = th_req(s, method, path, body, &j);
    if (st != status) fprintf(stderr, "%s %s %s -> %d\n", method, path, body ? body : "", st);
    assert_int_equal(st, status);
    assert_non_null(j);
    if (field) {
        assert_non_null(err_field(j));
        assert_string_equal(err_field(j), field);
    }
    cJSON_Delete(j);
}

/* Poll GET path until cond(json) holds or the deadline passes; returns the
 * last 200 body (caller frees) or NULL. */
static cJSON *poll_get(th_server *s, const char *path, int (*cond)(const cJSON *, const void *), const void *arg)
{
    int64_t deadline = cs_mono_us() + 20 * 1000000LL;
    for (;;) {
        cJSON *j;
        int st = th_req(s, "GET", path, NULL, &j);
        if (st == 200 && cond(j, arg)) return j;
        cJSON_Delete(j);
        if (cs_mono_us() > deadline) return NULL;
        usleep(10000);
    }
}

struct kvs {
    const char *k, *v;
};

static int has_str(const cJSON *j, const void *arg)
{
    const struct kvs *x = arg;
    const char *v = jstr(j, x->k);
    return v && strcmp(v, x->v) == 0;
}

static cJSON *wait_field(th_server *s, const char *base, const char *id, const char *k, const char *v)
{
    char path[1024], enc[800];
    urlenc(id, enc, sizeof enc);
    snprintf(path, sizeof path, "%s/%s", base, enc);
    struct kvs x = {k, v};
    cJSON *j = poll_get(s, path, has_str, &x);
    assert_non_null(j);
    return j;
}

static int audit_rows(th_server *s, const char *object, const char *id, const char *field, const char *event_id)
{
    char path[1024], enc[800];
    urlenc(id, enc, sizeof enc);
    snprintf(path, sizeof path, "/api/v1/audit?object=%s&id=%s&limit=1000", object, enc);
    cJSON *j;
    assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
    int n = 0;
    for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next) {
        const cJSON *cause = cJSON_GetObjectItem(it, "cause");
        if (field && strcmp(jstr(it, "field"), field) != 0) continue;
        if (event_id && strcmp(jstr(cause, "event_id"), event_id) != 0) continue;
        assert_string_equal(jstr(cause, "rule_id"), "api");
        assert_true(cJSON_IsNumber(cJSON_GetObjectItem(cause, "offset")));
        n++;
    }
    cJSON_Delete(j);
    return n;
}

static void start(th_server *s, const char *yaml)
{
    th_init(s, yaml);
    assert_int_equal(th_start(s), 0);
}

static void finish(th_server *s)
{
    assert_int_equal(th_stop(s, SIGTERM), 0); /* clean exit: LeakSanitizer has its say */
    th_cleanup(s);
}

/* ---------------------------------------------------------------- tests */

static void accounts_flow(th_server *s)
{
    const char *e1 = write_ok(s, "POST", "/api/v1/accounts",
                              "{\"id\":\"acc_1\",\"name\":\"Acme\",\"domain\":\"acme.example\",\"plan_tier\":\"trial\","
                              "\"mrr\":1200.5,\"renewal_date\":\"2027-02-01\",\"owner\":\"rep_a\","
                              "\"custom\":{\"seats\":12,\"tags\":[\"x\"]}}");
    char ev1[64];
    snprintf(ev1, sizeof ev1, "%s", e1);
    cJSON *j = wait_field(s, "/api/v1/accounts", "acc_1", "name", "Acme");
    assert_true(cJSON_GetObjectItem(j, "mrr")->valuedouble == 1200.5);
    assert_string_equal(jstr(j, "renewal_date"), "2027-02-01");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "custom"), "seats")->valueint, 12);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "health_score")));
    assert_true(cJSON_IsObject(cJSON_GetObjectItem(j, "signals")));
    cJSON_Delete(j);
    /* PUT changes one field (and repeats another unchanged): one audit row. */
    const char *e2 = write_ok(s, "PUT", "/api/v1/accounts/acc_1", "{\"plan_tier\":\"pro\",\"name\":\"Acme\"}");
    char ev2[64];
    snprintf(ev2, sizeof ev2, "%s", e2);
    j = wait_field(s, "/api/v1/accounts", "acc_1", "plan_tier", "pro");
    assert_string_equal(jstr(j, "owner"), "rep_a"); /* untouched */
    cJSON_Delete(j);
    assert_int_equal(audit_rows(s, "account", "acc_1", NULL, ev1), 8); /* id + 7 fields */
    assert_int_equal(audit_rows(s, "account", "acc_1", NULL, ev2), 1);
    assert_int_equal(audit_rows(s, "account", "acc_1", "plan_tier", ev2), 1);
    /* PUT creates too (an upsert). */
    write_ok(s, "PUT", "/api/v1/accounts/acc_2", "{\"name\":\"Beta\",\"owner\":\"rep_b\",\"plan_tier\":\"pro\"}");
    for (int i = 3; i <= 6; i++) {
        char body[200];
        snprintf(body, sizeof body, "{\"id\":\"acc_%d\",\"name\":\"N%d\",\"owner\":\"rep_%s\",\"plan_tier\":\"trial\"}",
                 i, i, i % 2 ? "a" : "b");
        write_ok(s, "POST", "/api/v1/accounts", body);
    }
    cJSON_Delete(wait_field(s, "/api/v1/accounts", "acc_6", "name", "N6"));
    cJSON_Delete(wait_field(s, "/api/v1/accounts", "acc_2", "name", "Beta"));
    /* Pagination: 6 accounts, pages of 4 then 2. */
    assert_int_equal(th_req(s, "GET", "/api/v1/accounts?limit=4", NULL, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 4);
    char path[200];
    snprintf(path, sizeof path, "/api/v1/accounts?limit=4&cursor=%s", jstr(j, "next_cursor"));
    cJSON_Delete(j);
    assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 2);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "next_cursor")));
    cJSON_Delete(j);
    /* Filters. */
    assert_int_equal(th_req(s, "GET", "/api/v1/accounts?owner=rep_a&plan_tier=trial", NULL, &j), 200);
    int n = 0;
    for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next, n++) {
        assert_string_equal(jstr(it, "owner"), "rep_a");
        assert_string_equal(jstr(it, "plan_tier"), "trial");
    }
    assert_int_equal(n, 2); /* acc_3, acc_5 (acc_1 is pro now) */
    cJSON_Delete(j);
    /* 404s. */
    expect_error(s, "GET", "/api/v1/accounts/acc_none", NULL, 404, "id");
    expect_error(s, "GET", "/api/v1/reps/rep_none", NULL, 404, "id");
    expect_error(s, "DELETE", "/api/v1/accounts/acc_1", NULL, 405, NULL);
}

static void test_accounts_write_read_audit(void **state)
{
    (void)state;
    th_server s;
    start(&s, NULL);
    accounts_flow(&s);
    finish(&s);
}

static void test_validation_errors_name_the_field(void **state)
{
    (void)state;
    cJSON *j;
    th_server s;
    start(&s, NULL);
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",", 400, NULL);
    expect_error(&s, "POST", "/api/v1/accounts", "[1,2]", 400, NULL);
    expect_error(&s, "POST", "/api/v1/accounts", "{\"name\":\"no id\"}", 422, "id");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"\"}", 422, "id");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":7}", 422, "id");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a/b\"}", 422, "id");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\\nb\"}", 422, "id");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",\"colour\":\"red\"}", 422, "colour");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",\"mrr\":\"lots\"}", 422, "mrr");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",\"mrr\":-5}", 422, "mrr");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",\"renewal_date\":\"next year\"}", 422, "renewal_date");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",\"renewal_date\":\"2027-13-01\"}", 422, "renewal_date");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",\"custom\":\"x\"}", 422, "custom");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",\"health_score\":50}", 422, "health_score");
    expect_error(&s, "POST", "/api/v1/accounts", "{\"id\":\"a\",\"plan_tier\":3}", 422, "plan_tier");
    expect_error(&s, "PUT", "/api/v1/accounts/a", "{\"id\":\"b\"}", 422, "id");
    expect_error(&s, "POST", "/api/v1/reps", "{\"id\":\"r\",\"capacity\":2.5}", 422, "capacity");
    expect_error(&s, "POST", "/api/v1/reps", "{\"id\":\"r\",\"capacity\":-1}", 422, "capacity");
    expect_error(&s, "POST", "/api/v1/reps", "{\"id\":\"r\",\"email\":\"nobody\"}", 422, "email");
    expect_error(&s, "POST", "/api/v1/reps", "{\"id\":\"r\",\"out_of_office\":\"yes\"}", 422, "out_of_office");
    expect_error(&s, "POST", "/api/v1/reps", "{\"id\":\"r\",\"pools\":\"smb\"}", 422, "pools");
    expect_error(&s, "GET", "/api/v1/accounts?limit=0", NULL, 400, "limit");
    expect_error(&s, "GET", "/api/v1/accounts?limit=1001", NULL, 400, "limit");
    expect_error(&s, "GET", "/api/v1/reps?cursor=abc", NULL, 400, "cursor");
    expect_error(&s, "GET", "/api/v1/reps?out_of_office=maybe", NULL, 400, "out_of_office");
    expect_error(&s, "GET", "/api/v1/audit", NULL, 400, "object");
    expect_error(&s, "GET", "/api/v1/audit?object=planet", NULL, 400, "object");
    /* An admin event type sent to the ingest endpoint is not applied. */
    char ts[40], forged[400];
    cs_fmt_time_ms(cs_now_us(), ts, sizeof ts);
    snprintf(forged, sizeof forged,
             "{\"event_id\":\"forged-1\",\"type\":\"AccountUpserted\",\"account_id\":\"acc_forged\","
             "\"timestamp\":\"%s\",\"properties\":{\"name\":\"x\"}}",
             ts);
    assert_int_equal(th_req(&s, "POST", "/v1/events",
                            forged, &j), 200);
    assert_int_equal(cJSON_GetObjectItem(j, "accepted")->valueint, 1);
    cJSON_Delete(j);
    write_ok(&s, "POST", "/api/v1/reps", "{\"id\":\"marker\",\"name\":\"M\"}");
    cJSON_Delete(wait_field(&s, "/api/v1/reps", "marker", "name", "M"));
    /* Nothing invalid reached the store. */
    assert_int_equal(th_req(&s, "GET", "/api/v1/accounts", NULL, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 0);
    cJSON_Delete(j);
    finish(&s);
}

static int ooo_true(const cJSON *j, const void *arg)
{
    (void)arg;
    return cJSON_IsTrue(cJSON_GetObjectItem(j, "out_of_office"));
}

static void test_reps_alerts_tasks(void **state)
{
    (void)state;
    th_server s;
    start(&s, NULL);
    const char *e = write_ok(&s, "POST", "/api/v1/reps",
                             "{\"id\":\"rep_ann\",\"name\":\"Ann\",\"email\":\"ann@example.com\",\"pools\":[\"smb\",\"emea\"],"
                             "\"territory\":{\"country\":[\"DE\"]},\"capacity\":20,\"timezone\":\"Europe/Berlin\","
                             "\"working_hours\":{\"mon\":[\"09:00\",\"17:00\"]},\"out_of_office\":false}");
    char ev[64];
    snprintf(ev, sizeof ev, "%s", e);
    cJSON *j = wait_field(&s, "/api/v1/reps", "rep_ann", "name", "Ann");
    assert_int_equal(cJSON_GetObjectItem(j, "capacity")->valueint, 20);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "out_of_office")));
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "pools"), 1)->valuestring, "emea");
    cJSON_Delete(j);
    write_ok(&s, "PUT", "/api/v1/reps/rep_ann", "{\"out_of_office\":true}");
    write_ok(&s, "POST", "/api/v1/reps", "{\"id\":\"rep_bob\",\"name\":\"Bob\"}");
    cJSON_Delete(wait_field(&s, "/api/v1/reps", "rep_bob", "name", "Bob"));
    cJSON_Delete(poll_get(&s, "/api/v1/reps/rep_ann", ooo_true, NULL)); /* another partition: wait for it */
    assert_int_equal(th_req(&s, "GET", "/api/v1/reps?out_of_office=true", NULL, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 1);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "items")->child, "id"), "rep_ann");
    cJSON_Delete(j);
    assert_int_equal(audit_rows(&s, "rep", "rep_ann", NULL, ev), 9);
    assert_int_equal(audit_rows(&s, "rep", "rep_ann", "out_of_office", NULL), 2);
    /* Alerts and tasks are written by rules; empty lists have the list shape. */
    const char *lists[] = {"/api/v1/alerts", "/api/v1/tasks", "/api/v1/contacts",
                           "/api/v1/alerts?severity=high&kind=churn_risk", "/api/v1/tasks?status=open&limit=1000"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        assert_int_equal(th_req(&s, "GET", lists[i], NULL, &j), 200);
        assert_true(cJSON_IsArray(cJSON_GetObjectItem(j, "items")));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "next_cursor")));
        cJSON_Delete(j);
    }
    finish(&s);
}

static const char *const nasty[] = {
    "O'Brien; DROP TABLE accounts; --",
    "back\\\\slash \\\\' \\\"dq\\\"",
    "\\u00fcn\\u00efc\\u00f6d\\u00e9 \\u65e5\\u672c \\ud83d\\ude80",
    "'); DELETE FROM audit WHERE ('1'='1 %_ $1 ?1",
};
/* The same strings once JSON-decoded (what the API must return). */
static const char *const nasty_raw[] = {
    "O'Brien; DROP TABLE accounts; --",
    "back\\slash \\' \"dq\"",
    "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9" " \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x9a\x80",
    "'); DELETE FROM audit WHERE ('1'='1 %_ $1 ?1",
};

static void test_sql_metacharacters_in_every_text_field(void **state)
{
    (void)state;
    th_server s;
    start(&s, NULL);
    for (size_t k = 0; k < sizeof nasty / sizeof nasty[0]; k++) {
        const char *v = nasty[k], *raw = nasty_raw[k];
        char body[2048], id[300], rid[300];
        snprintf(id, sizeof id, "acc %zu %s", k, raw);
        snprintf(rid, sizeof rid, "rep %zu %s", k, raw);
        snprintf(body, sizeof body,
                 "{\"id\":\"acc %zu %s\",\"name\":\"%s\",\"domain\":\"%s\",\"plan_tier\":\"%s\",\"renewal_date\":null,"
                 "\"owner\":\"%s\",\"custom\":{\"%s\":\"%s\"}}",
                 k, v, v, v, v, v, v, v);
        write_ok(&s, "POST", "/api/v1/accounts", body);
        snprintf(body, sizeof body,
                 "{\"id\":\"rep %zu %s\",\"name\":\"%s\",\"email\":\"x%s@example.com\",\"timezone\":\"%s\","
                 "\"pools\":[\"%s\"],\"territory\":{\"k\":\"%s\"}}",
                 k, v, v, v, v, v, v);
        write_ok(&s, "POST", "/api/v1/reps", body);
        cJSON *j = wait_field(&s, "/api/v1/accounts", id, "name", raw);
        assert_string_equal(jstr(j, "id"), id);
        assert_string_equal(jstr(j, "domain"), raw);
        assert_string_equal(jstr(j, "plan_tier"), raw);
        assert_string_equal(jstr(j, "owner"), raw);
        assert_string_equal(jstr(cJSON_GetObjectItem(j, "custom"), raw), raw);
        cJSON_Delete(j);
        j = wait_field(&s, "/api/v1/reps", rid, "name", raw);
        assert_string_equal(jstr(j, "timezone"), raw);
        assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "pools"), 0)->valuestring, raw);
        cJSON_Delete(j);
        /* As a filter value, and in the audit. */
        char enc[800], path[1200];
        urlenc(raw, enc, sizeof enc);
        snprintf(path, sizeof path, "/api/v1/accounts?owner=%s", enc);
        assert_int_equal(th_req(&s, "GET", path, NULL, &j), 200);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 1);
        assert_string_equal(jstr(cJSON_GetObjectItem(j, "items")->child, "id"), id);
        cJSON_Delete(j);
        assert_int_equal(audit_rows(&s, "account", id, "owner", NULL), 1);
    }
    cJSON *j;
    assert_int_equal(th_req(&s, "GET", "/api/v1/accounts?limit=1000", NULL, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 4); /* nothing dropped */
    cJSON_Delete(j);
    finish(&s);
}

/* The whole server on PostgreSQL (`store: postgresql://…`), and the data
 * survives a restart of crmstream. */
static tpg pg; /* one server for the binary (group setup), a database per test */

static void test_on_postgres(void **state)
{
    (void)state;
    char uri[256], yaml[400];
    assert_int_equal(tpg_create_db(&pg, "api", uri, sizeof uri), 0);
    snprintf(yaml, sizeof yaml, "store: \"%s\"\n", uri);
    th_server s;
    start(&s, yaml);
    accounts_flow(&s);
    assert_int_equal(th_stop(&s, SIGKILL), SIGKILL);
    assert_int_equal(th_start(&s), 0);
    cJSON *j = wait_field(&s, "/api/v1/accounts", "acc_1", "plan_tier", "pro");
    cJSON_Delete(j);
    assert_int_equal(audit_rows(&s, "account", "acc_1", NULL, NULL), 9); /* no re-application */
    finish(&s);
    /* It really was PostgreSQL that held the data. */
    PGconn *c = PQconnectdb(uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "SELECT count(*) FROM accounts");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "6");
    PQclear(r);
    PQfinish(c);
}

static char *lead_events(const char *prefix, int first, int n)
{
    char ts[40];
    cs_fmt_time_ms(cs_now_us(), ts, sizeof ts);
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "[");
    for (int i = first; i < first + n; i++)
        cs_buf_printf(&b,
                      "%s{\"event_id\":\"%s-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%d\","
                      "\"timestamp\":\"%s\",\"properties\":{\"email\":\"p%d@example.com\"}}",
                      i > first ? "," : "", prefix, i, i % 7, ts, i);
    cs_buf_adds(&b, "]");
    return cs_buf_steal(&b);
}

static void post_leads(th_server *s, const char *prefix, int first, int n)
{
    char *body = lead_events(prefix, first, n);
    cJSON *j;
    assert_int_equal(th_req(s, "POST", "/v1/events", body, &j), 200);
    assert_int_equal(cJSON_GetObjectItem(j, "accepted")->valueint, n);
    cJSON_Delete(j);
    free(body);
}

/* The pipeline's lag, both topics summed, from /metrics (which, unlike
 * /readyz, reports it while the store is down). */
static int64_t lag_of(th_server *s)
{
    cs_buf b;
    cs_buf_init(&b);
    int st = 0;
    assert_int_equal(cs_httpc_request(&s->c, "GET", "/metrics", NULL, NULL, 0, &st, &b), 0);
    assert_int_equal(st, 200);
    cs_buf_add(&b, "", 1);
    int64_t v = 0;
    for (const char *p = b.data; (p = strstr(p, "\ncrmstream_consumer_lag_records{"));) {
        p = strchr(p, '}');
        v += strtoll(p + 2, NULL, 10);
    }
    cs_buf_free(&b);
    return v;
}

/* Poll the server's log for a line containing both strings. */
static int log_has(th_server *s, const char *a, const char *b)
{
    char path[300], line[4096];
    snprintf(path, sizeof path, "%s/serve.log", s->dir);
    int64_t deadline = cs_mono_us() + 20 * 1000000LL;
    while (cs_mono_us() < deadline) {
        FILE *f = fopen(path, "r");
        int hit = 0;
        while (f && !hit && fgets(line, sizeof line, f)) hit = strstr(line, a) && strstr(line, b);
        if (f) fclose(f);
        if (hit) return 1;
        usleep(20000);
    }
    return 0;
}

/* T12 through the pipeline: PostgreSQL dies (immediate stop) while events
 * keep arriving; the log still acknowledges them, the pipeline backs off and
 * retries, and after the restart every event has its lead exactly once. */
static void test_postgres_restart_mid_stream(void **state)
{
    (void)state;
    char uri[256], yaml[400];
    assert_int_equal(tpg_create_db(&pg, "restart", uri, sizeof uri), 0);
    snprintf(yaml, sizeof yaml, "store: \"%s\"\n", uri);
    th_server s;
    start(&s, yaml);
    post_leads(&s, "before", 0, 60);
    assert_int_equal(th_wait_leads(&s, 60, 20000), 60);
    assert_int_equal(tpg_stop(&pg, "immediate"), 0);
    post_leads(&s, "during", 0, 90); /* acknowledged: the log does not need the store */
    assert_true(log_has(&s, "batch rolled back; retrying", "\"retriable\":true"));
    cJSON *j;
    int st = th_req(&s, "GET", "/api/v1/leads", NULL, &j);
    assert_int_equal(st, 503); /* readers say "retry", they do not hang */
    cJSON_Delete(j);
    /* Not ready while the store is down, and the body says which check. */
    assert_int_equal(th_req(&s, "GET", "/readyz", NULL, &j), 503);
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "not_ready");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "failing")->child, "check")->valuestring, "store");
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/healthz", NULL, NULL), 200); /* alive all along */
    /* The outage lasts 20 s (the scenario's length, measured on the clock)
     * while events keep coming: every one is acknowledged and the lag only
     * grows; nothing goes to a DLQ. */
    int64_t lag0 = lag_of(&s), last = lag0, t_end = cs_mono_us() + 20 * 1000000LL;
    assert_true(lag0 >= 180); /* 90 events + their 90 copies in the leads lane */
    int sent = 0;
    while (cs_mono_us() < t_end) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "out%d", sent);
        post_leads(&s, prefix, 0, 5);
        sent += 5;
        int64_t lag;
        for (int i = 0; i < 500 && (lag = lag_of(&s)) < last + 10; i++) usleep(2000);
        assert_int_equal(lag, last + 10); /* the pipeline applies nothing meanwhile */
        last = lag;
        struct timespec pace = {0, 400000000L};
        nanosleep(&pace, NULL); /* the scenario's pace: about 2 requests a second */
    }
    assert_int_equal(tpg_restart(&pg), 0);
    /* Ready again once the store answers (polled: reconnects are lazy). */
    int ready = 0;
    for (int i = 0; i < 1500 && !ready; i++) {
        ready = th_req(&s, "GET", "/readyz", NULL, NULL) == 200;
        if (!ready) usleep(20000);
    }
    assert_true(ready);
    post_leads(&s, "after", 0, 30);
    long total = 180 + sent;
    assert_int_equal(th_wait_leads(&s, total, 30000), total);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    /* The DLQ stayed empty: a store outage is never poison. */
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq?kind=event", NULL, &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "items")), 0);
    cJSON_Delete(j);
    /* Exactly once: distinct event ids = rows, and no more arrive. */
    PGconn *c = PQconnectdb(uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "SELECT count(*), count(DISTINCT event_id) FROM leads");
    char want[24];
    snprintf(want, sizeof want, "%ld", total);
    assert_string_equal(PQgetvalue(r, 0, 0), want);
    assert_string_equal(PQgetvalue(r, 0, 1), want);
    PQclear(r);
    /* Offsets never ahead of the store: the stored next offsets sum to the
     * records applied (every event here is a lead), on both topics. */
    r = PQexec(c, "SELECT coalesce(sum(next_offset),0) FROM consumer_offsets WHERE consumer='pipeline' AND topic='events'");
    assert_string_equal(PQgetvalue(r, 0, 0), want);
    PQclear(r);
    r = PQexec(c, "SELECT coalesce(sum(next_offset),0) FROM consumer_offsets WHERE consumer='pipeline' AND topic='leads'");
    assert_string_equal(PQgetvalue(r, 0, 0), want);
    PQclear(r);
    PQfinish(c);
    finish(&s);
}

static int pg_setup(void **state)
{
    (void)state;
    return tpg_start(&pg);
}

static int pg_teardown(void **state)
{
    (void)state;
    tpg_destroy(&pg);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accounts_write_read_audit),
        cmocka_unit_test(test_validation_errors_name_the_field),
        cmocka_unit_test(test_reps_alerts_tasks),
        cmocka_unit_test(test_sql_metacharacters_in_every_text_field),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_on_postgres),
        cmocka_unit_test(test_postgres_restart_mid_stream),
    };
    int failed = cmocka_run_group_tests_name("api_crm", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("api_crm_postgres", pg_tests, pg_setup, pg_teardown);
    return failed ? 1 : 0;
}
