/*
 * Integration: lead routing through a running server. Reps and an account
 * are created through the REST API (admin events on the log), LeadCreated
 * events are ingested, and the leads' owners, statuses, SLA deadlines and
 * explanations are read back from GET /api/v1/leads/{id}: the account's
 * owner by email domain, territory, capacity counted from open leads,
 * out-of-office reps skipped, the fallback queue; then acceptance through
 * POST /api/v1/leads/{id}/accept frees capacity, with its 202/404/409/422.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.c"

static const char *jstr(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static void write_ok(th_server *s, const char *method, const char *path, const char *body)
{
    cJSON *j;
    int st = th_req(s, method, path, body, &j);
    if (st != 202) fprintf(stderr, "%s %s -> %d\n", method, path, st);
    assert_int_equal(st, 202);
    cJSON_Delete(j);
}

/* GET path until cond holds (deadline 20 s). */
static cJSON *poll_get(th_server *s, const char *path, int (*cond)(const cJSON *, const void *), const void *arg)
{
    int64_t deadline = cs_mono_us() + 20 * 1000000LL;
    for (;;) {
        cJSON *j = NULL;
        int st = th_req(s, "GET", path, NULL, &j);
        if (st == 200 && cond(j, arg)) return j;
        cJSON_Delete(j);
        if (cs_mono_us() > deadline) fail_msg("timed out waiting on %s", path);
        usleep(10000);
    }
}

static int exists(const cJSON *j, const void *arg)
{
    (void)j, (void)arg;
    return 1;
}

static int field_is(const cJSON *j, const void *arg)
{
    const char *const *kv = arg;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, kv[0]);
    if (cJSON_IsBool(v)) return strcmp(kv[1], cJSON_IsTrue(v) ? "true" : "false") == 0;
    return cJSON_IsString(v) && strcmp(v->valuestring, kv[1]) == 0;
}

/* The lead made for email (polls the list until the pipeline wrote it). */
struct want {
    const char *email;
    char        id[160];
};

static int has_lead(const cJSON *j, const void *arg)
{
    struct want *w = (struct want *)arg;
    for (const cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next)
        if (strcmp(jstr(it, "email"), w->email) == 0) {
            snprintf(w->id, sizeof w->id, "%s", jstr(it, "id"));
            return 1;
        }
    return 0;
}

static cJSON *lead(th_server *s, const char *eid, const char *email, const char *country)
{
    char body[512];
    snprintf(body, sizeof body,
             "{\"event_id\":\"%s\",\"type\":\"LeadCreated\",\"properties\":{\"email\":\"%s\",\"country\":\"%s\","
             "\"employee_count\":40}}",
             eid, email, country);
    cJSON *j;
    assert_int_equal(th_req(s, "POST", "/v1/events", body, &j), 200);
    cJSON_Delete(j);
    struct want w = {email, ""};
    cJSON_Delete(poll_get(s, "/api/v1/leads?limit=1000", has_lead, &w));
    char path[256];
    snprintf(path, sizeof path, "/api/v1/leads/%s", w.id);
    assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
    return j;
}

static const cJSON *candidate(const cJSON *lead_json, const char *rep)
{
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(lead_json, "route_explanation"), "candidates");
    for (const cJSON *it = c ? c->child : NULL; it; it = it->next)
        if (strcmp(jstr(it, "rep"), rep) == 0) return it;
    return NULL;
}

static int excluded_for(const cJSON *lead_json, const char *rep, const char *why)
{
    const cJSON *c = candidate(lead_json, rep);
    const cJSON *x = c ? cJSON_GetObjectItem(c, "excluded") : NULL;
    for (const cJSON *it = x ? x->child : NULL; it; it = it->next)
        if (strcmp(it->valuestring, why) == 0) return 1;
    return 0;
}

static void expect_status(th_server *s, const char *method, const char *path, const char *body, int status,
                          const char *field)
{
    cJSON *j;
    assert_int_equal(th_req(s, method, path, body, &j), status);
    if (field) assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), field);
    cJSON_Delete(j);
}

static void test_routing_through_the_api(void **state)
{
    (void)state;
    th_server s;
    /* The harness's config has reps rep_a, rep_b, rep_c (no territory). */
    th_init(&s, "routing:\n"
                "  strategy: territory\n"
                "  match_account: true\n"
                "  sla: 1h\n"
                "  fallback: inbound-queue\n");
    assert_int_equal(th_start(&s), 0);

    write_ok(&s, "POST", "/api/v1/reps",
             "{\"id\":\"rep_de\",\"name\":\"De\",\"territory\":{\"countries\":[\"DE\"]},\"capacity\":1}");
    write_ok(&s, "POST", "/api/v1/reps",
             "{\"id\":\"rep_emea\",\"name\":\"Emea\",\"territory\":{\"regions\":[\"emea\"]},\"weight\":2,"
             "\"timezone\":\"Europe/Berlin\"}");
    write_ok(&s, "POST", "/api/v1/reps",
             "{\"id\":\"rep_us\",\"name\":\"Us\",\"territory\":{\"countries\":[\"US\"]},\"out_of_office\":true}");
    write_ok(&s, "POST", "/api/v1/accounts", "{\"id\":\"acc_acme\",\"name\":\"Acme\",\"domain\":\"acme.com\",\"owner\":\"rep_a\"}");
    expect_status(&s, "POST", "/api/v1/reps", "{\"id\":\"rep_w\",\"weight\":0}", 422, "weight");
    cJSON_Delete(poll_get(&s, "/api/v1/reps/rep_de", exists, NULL));
    cJSON_Delete(poll_get(&s, "/api/v1/reps/rep_emea", exists, NULL));
    const char *ooo[] = {"out_of_office", "true"};
    cJSON_Delete(poll_get(&s, "/api/v1/reps/rep_us", field_is, ooo));
    cJSON_Delete(poll_get(&s, "/api/v1/accounts/acc_acme", exists, NULL));

    /* 1. the account's owner, matched by the email's domain (rep_a has no
     *    territory: the owner keeps the account anyway) */
    cJSON *l1 = lead(&s, "l1", "jane@acme.com", "DE");
    assert_string_equal(jstr(l1, "owner"), "rep_a");
    assert_string_equal(jstr(l1, "account_id"), "acc_acme");
    assert_string_equal(jstr(l1, "domain"), "acme.com");
    const cJSON *x = cJSON_GetObjectItem(l1, "route_explanation");
    assert_string_equal(jstr(x, "via"), "account_owner");
    assert_string_equal(jstr(cJSON_GetObjectItem(x, "account_match"), "matched_by"), "domain");
    assert_non_null(strstr(jstr(l1, "route_reason"), "account_owner"));

    /* 2. territory: DE -> rep_de (the config reps have no territory) */
    cJSON *l2 = lead(&s, "l2", "max@beta.de", "DE");
    assert_string_equal(jstr(l2, "owner"), "rep_de");
    assert_string_equal(jstr(l2, "status"), "routed");
    assert_true(excluded_for(l2, "rep_b", "territory"));
    assert_true(excluded_for(l2, "rep_us", "out_of_office"));
    assert_true(excluded_for(l2, "rep_us", "territory"));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(candidate(l2, "rep_emea"), "eligible")));
    int64_t routed, due;
    assert_int_equal(cs_parse_time(jstr(l2, "routed_at"), &routed), 0);
    assert_int_equal(cs_parse_time(jstr(l2, "sla_due_at"), &due), 0);
    assert_int_equal(due - routed, 3600 * 1000000LL); /* sla: 1h, no working hours */
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(l2, "accepted_at")));

    /* 3. rep_de holds one open lead = its capacity -> rep_emea */
    cJSON *l3 = lead(&s, "l3", "eva@gamma.de", "DE");
    assert_string_equal(jstr(l3, "owner"), "rep_emea");
    assert_true(excluded_for(l3, "rep_de", "capacity"));
    assert_int_equal(cJSON_GetObjectItem(candidate(l3, "rep_de"), "open_leads")->valueint, 1);

    /* 4. nobody covers the US but rep_us, who is out of office -> queue */
    cJSON *l4 = lead(&s, "l4", "bob@delta.com", "US");
    assert_string_equal(jstr(l4, "status"), "queued");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(l4, "owner")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(l4, "sla_due_at")));
    assert_string_equal(jstr(cJSON_GetObjectItem(l4, "route_explanation"), "queue"), "inbound-queue");
    assert_non_null(strstr(jstr(l4, "route_reason"), "fallback queue inbound-queue"));

    /* 5. acceptance: only the owner, once; it frees rep_de's capacity */
    char path[256], l2id[160], l4id[160];
    snprintf(l2id, sizeof l2id, "%s", jstr(l2, "id"));
    snprintf(l4id, sizeof l4id, "%s", jstr(l4, "id"));
    snprintf(path, sizeof path, "/api/v1/leads/%s/accept", l2id);
    expect_status(&s, "POST", path, "{\"rep\":\"rep_emea\"}", 409, "rep");
    expect_status(&s, "POST", path, "{\"rep\":7}", 422, "rep");
    expect_status(&s, "POST", path, "[1]", 400, NULL);
    expect_status(&s, "POST", "/api/v1/leads/ld_nope/accept", NULL, 404, "id");
    write_ok(&s, "POST", path, "{\"rep\":\"rep_de\"}");
    snprintf(path, sizeof path, "/api/v1/leads/%s", l2id);
    const char *acc[] = {"status", "accepted"};
    cJSON *a2 = poll_get(&s, path, field_is, acc);
    assert_non_null(jstr(a2, "accepted_at"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(a2, "sla_due_at")));
    cJSON_Delete(a2);
    snprintf(path, sizeof path, "/api/v1/leads/%s/accept", l2id);
    expect_status(&s, "POST", path, NULL, 409, "status");
    snprintf(path, sizeof path, "/api/v1/leads/%s/accept", l4id);
    expect_status(&s, "POST", path, NULL, 409, "status");

    /* the audit trail has the acceptance, caused by the API's admin event */
    cJSON *j;
    snprintf(path, sizeof path, "/api/v1/audit?object=lead&id=%s", l2id);
    assert_int_equal(th_req(&s, "GET", path, NULL, &j), 200);
    int accepted_rows = 0;
    for (const cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next)
        if (strcmp(jstr(it, "field"), "status") == 0 && jstr(it, "new_value") &&
            strcmp(jstr(it, "new_value"), "accepted") == 0) {
            accepted_rows++;
            assert_string_equal(jstr(cJSON_GetObjectItem(it, "cause"), "rule_id"), "api");
        }
    assert_int_equal(accepted_rows, 1);
    cJSON_Delete(j);

    /* 6. rep_de has room again */
    cJSON *l6 = lead(&s, "l6", "ida@eps.de", "DE");
    assert_string_equal(jstr(l6, "owner"), "rep_de");
    assert_int_equal(cJSON_GetObjectItem(candidate(l6, "rep_de"), "open_leads")->valueint, 0);

    /* A restart replays nothing twice: same owners. */
    assert_int_equal(th_stop(&s, SIGKILL) != 0, 1);
    assert_int_equal(th_start(&s), 0);
    assert_int_equal(th_wait_caught_up(&s, 20000), 0);
    snprintf(path, sizeof path, "/api/v1/leads/%s", jstr(l3, "id"));
    assert_int_equal(th_req(&s, "GET", path, NULL, &j), 200);
    assert_string_equal(jstr(j, "owner"), "rep_emea");
    cJSON_Delete(j);
    assert_int_equal(th_count_leads(&s), 5);

    cJSON_Delete(l1);
    cJSON_Delete(l2);
    cJSON_Delete(l3);
    cJSON_Delete(l4);
    cJSON_Delete(l6);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
}

static int has_alert_kind(const cJSON *j, const void *arg)
{
    for (const cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next)
        if (strcmp(jstr(it, "kind"), (const char *)arg) == 0) return 1;
    return 0;
}

static int owner_not(const cJSON *j, const void *arg)
{
    const char *o = jstr(j, "owner");
    return o && strcmp(o, (const char *)arg) != 0;
}

/* The SLA through a running server: a routed lead not accepted within the
 * SLA is re-routed to another rep and an alert raised by the leads lane's
 * sweep; its deadline survives a restart (it is in the store), and the
 * clock is moved forward with CRMSTREAM_CLOCK_OFFSET_S, not waited for. An
 * accepted lead is left alone. */
static void test_sla_breach_reroutes_after_restart(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, "routing:\n  sla: 10m\n");
    assert_int_equal(th_start(&s), 0);
    cJSON *l1 = lead(&s, "sla1", "ann@one.example", "DE");
    cJSON *l2 = lead(&s, "sla2", "bob@two.example", "DE");
    char owner1[64], id1[160], id2[160], path[300];
    snprintf(owner1, sizeof owner1, "%s", jstr(l1, "owner"));
    snprintf(id1, sizeof id1, "%s", jstr(l1, "id"));
    snprintf(id2, sizeof id2, "%s", jstr(l2, "id"));
    assert_non_null(jstr(l1, "sla_due_at"));
    snprintf(path, sizeof path, "/api/v1/leads/%s/accept", id2);
    assert_int_equal(th_req(&s, "POST", path, NULL, NULL), 202);
    const char *acc[] = {"status", "accepted"};
    snprintf(path, sizeof path, "/api/v1/leads/%s", id2);
    cJSON_Delete(poll_get(&s, path, field_is, acc));
    /* Within the SLA: nothing happens. */
    assert_int_equal(th_req(&s, "GET", "/api/v1/alerts", NULL, NULL), 200);
    th_stop(&s, SIGTERM);
    /* 20 minutes later (the server's clock), after a restart. */
    setenv("CRMSTREAM_CLOCK_OFFSET_S", "1200", 1);
    int started = th_start(&s);
    unsetenv("CRMSTREAM_CLOCK_OFFSET_S");
    assert_int_equal(started, 0);
    cJSON_Delete(poll_get(&s, "/api/v1/alerts", has_alert_kind, "lead_sla_breach"));
    snprintf(path, sizeof path, "/api/v1/leads/%s", id1);
    cJSON *r1 = poll_get(&s, path, owner_not, owner1);
    assert_string_equal(jstr(r1, "status"), "routed");
    snprintf(path, sizeof path, "/api/v1/leads/%s", id2);
    cJSON *r2;
    assert_int_equal(th_req(&s, "GET", path, NULL, &r2), 200);
    assert_string_equal(jstr(r2, "status"), "accepted");
    assert_string_equal(jstr(r2, "owner"), jstr(l2, "owner"));
    cJSON_Delete(r1);
    cJSON_Delete(r2);
    cJSON_Delete(l1);
    cJSON_Delete(l2);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_routing_through_the_api),
                                       cmocka_unit_test(test_sla_breach_reroutes_after_restart)};
    return cmocka_run_group_tests_name("routing_api", tests, NULL, NULL);
}
