/*
 * Integration: the backtest (POST /api/v1/backtest, `crmstream backtest`).
 * A recorded stream (escalations of known priorities, leads routed round
 * robin) under live rules; candidate rules that change one condition (an
 * alert threshold) or drop an action are replayed with no effects, and the
 * reported differences are checked exactly: which alerts and tasks are
 * added or removed, no lead rerouted, a window that narrows them; the live
 * store and metrics are untouched; bad rules answer 422 with
 * file:line:column; a second backtest while one runs answers 409; one past
 * backtest.timeout_ms answers 503; the scratch store is removed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.c"

static const char live_rules[] =
    "rules:\n"
    "  - id: escalation\n"
    "    when: event.type == \"SupportCaseEscalated\" && event.properties.priority >= 3\n"
    "    actions:\n"
    "      - raise_alert: {kind: escalation, severity: warning, dedupe_key: \"esc:{{ event.properties.case_id }}\",\n"
    "                      cooldown: 1m}\n"
    "      - create_task: {title: \"Look at case {{ event.properties.case_id }}\", due_in: 2h}\n";

/* The threshold lowered to 2: c2 and c5 fire too. */
static const char cand_lower[] =
    "rules:\n"
    "  - id: escalation\n"
    "    when: event.type == \"SupportCaseEscalated\" && event.properties.priority >= 2\n"
    "    actions:\n"
    "      - raise_alert: {kind: escalation, severity: warning, dedupe_key: \"esc:{{ event.properties.case_id }}\",\n"
    "                      cooldown: 1m}\n"
    "      - create_task: {title: \"Look at case {{ event.properties.case_id }}\", due_in: 2h}\n";

/* Threshold raised to 4 and no task: c3's alert goes, every task goes. */
static const char cand_higher[] =
    "rules:\n"
    "  - id: escalation\n"
    "    when: event.type == \"SupportCaseEscalated\" && event.properties.priority >= 4\n"
    "    actions:\n"
    "      - raise_alert: {kind: escalation, severity: warning, dedupe_key: \"esc:{{ event.properties.case_id }}\",\n"
    "                      cooldown: 1m}\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int64_t T0;

static void escalate(th_server *s, const char *id, const char *acc, int minutes, int priority)
{
    char ts[40], body[400];
    cs_fmt_time_ms(T0 + (int64_t)minutes * 60000000, ts, sizeof ts);
    snprintf(body, sizeof body,
             "{\"event_id\":\"%s\",\"type\":\"SupportCaseEscalated\",\"account_id\":\"%s\",\"timestamp\":\"%s\","
             "\"properties\":{\"case_id\":\"%s\",\"priority\":%d}}",
             id, acc, ts, id, priority);
    assert_int_equal(th_req(s, "POST", "/v1/events", body, NULL), 200);
}

static void lead(th_server *s, int i, int minutes)
{
    char ts[40], body[400];
    cs_fmt_time_ms(T0 + (int64_t)minutes * 60000000, ts, sizeof ts);
    snprintf(body, sizeof body,
             "{\"event_id\":\"lead-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_l%d\",\"timestamp\":\"%s\","
             "\"properties\":{\"email\":\"p%d@example.com\"}}",
             i, i, ts, i);
    assert_int_equal(th_req(s, "POST", "/v1/events", body, NULL), 200);
}

/* The request body for rules text (and an optional window). */
static char *bt_body(const char *rules, const char *name, const char *from, const char *to)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "rules", rules);
    if (name) cJSON_AddStringToObject(b, "name", name);
    if (from) cJSON_AddStringToObject(b, "from", from);
    if (to) cJSON_AddStringToObject(b, "to", to);
    char *s = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return s;
}

static int backtest(th_server *s, const char *rules, const char *from, const char *to, cJSON **out)
{
    char *body = bt_body(rules, "cand.yaml", from, to);
    int st = th_req(s, "POST", "/api/v1/backtest", body, out);
    cJSON_free(body);
    return st;
}

static double num(const cJSON *j, const char *kind, const char *field)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, kind), field);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* The examples of a kind, as a sorted "change:account:key" list joined by ' '. */
static void changes(const cJSON *j, const char *kind, const char *keyfield, char *out, size_t n)
{
    const cJSON *ex = cJSON_GetObjectItem(cJSON_GetObjectItem(j, kind), "examples");
    char items[16][200];
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ex)
    {
        assert_true(k < 16);
        snprintf(items[k++], sizeof items[0], "%s:%s:%s", cJSON_GetObjectItem(e, "change")->valuestring,
                 cJSON_GetObjectItem(e, "account_id")->valuestring, cJSON_GetObjectItem(e, keyfield)->valuestring);
    }
    for (int a = 0; a < k; a++) /* sort */
        for (int b = a + 1; b < k; b++)
            if (strcmp(items[a], items[b]) > 0) {
                char t[200];
                memcpy(t, items[a], sizeof t);
                memcpy(items[a], items[b], sizeof t);
                memcpy(items[b], t, sizeof t);
            }
    out[0] = 0;
    for (int a = 0; a < k; a++) {
        if (a) strncat(out, " ", n - strlen(out) - 1);
        strncat(out, items[a], n - strlen(out) - 1);
    }
}

/* Id of the live object of kind (alerts/tasks) whose field has value. */
static void live_id(th_server *s, const char *path, const char *field, const char *value, char *out, size_t n)
{
    cJSON *j;
    assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
    out[0] = 0;
    for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next)
        if (strcmp(cJSON_GetObjectItem(it, field)->valuestring, value) == 0)
            snprintf(out, n, "%s", cJSON_GetObjectItem(it, "id")->valuestring);
    cJSON_Delete(j);
    assert_true(out[0] != 0);
}

static int count(th_server *s, const char *path)
{
    cJSON *j;
    assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(j, "items"));
    cJSON_Delete(j);
    return n;
}

/* The metric lines the pipeline counts (a dry run must not move them). */
static char *pipeline_metrics(th_server *s)
{
    int status;
    cs_buf b, out;
    cs_buf_init(&b);
    cs_buf_init(&out);
    assert_int_equal(cs_httpc_request(&s->c, "GET", "/metrics", NULL, NULL, 0, &status, &b), 0);
    assert_int_equal(status, 200);
    cs_buf_adds(&b, "");
    for (char *line = strtok(b.data, "\n"); line; line = strtok(NULL, "\n"))
        if (strncmp(line, "crmstream_rule_actions_total", 28) == 0 ||
            strncmp(line, "crmstream_pipeline_events_total", 31) == 0 ||
            strncmp(line, "crmstream_e2e_latency_seconds_count", 35) == 0 ||
            strncmp(line, "crmstream_rules_reloads_total", 29) == 0)
            cs_buf_printf(&out, "%s\n", line);
    cs_buf_free(&b);
    cs_buf_adds(&out, "");
    return cs_buf_steal(&out);
}

/* Scratch directories in the server's data dir (DATA = dir/data). */
static int scratch_dirs(const char *dir)
{
    char data[400];
    snprintf(data, sizeof data, "%s/data", dir);
    DIR *d = opendir(data);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "backtest-", 9) == 0) n++;
    closedir(d);
    return n;
}

struct held {
    const char *target;
    const char *body;
    int         status;
};

static void *held_request(void *arg)
{
    struct held *h = arg;
    cs_httpc c;
    cs_httpc_init(&c, h->target);
    c.timeout_ms = 120000;
    cs_buf r;
    cs_buf_init(&r);
    if (cs_httpc_request(&c, "POST", "/api/v1/backtest", "Content-Type: application/json\r\n", h->body,
                         strlen(h->body), &h->status, &r) != 0)
        h->status = -1;
    cs_buf_free(&r);
    cs_httpc_close(&c);
    return NULL;
}

static void wait_file(const char *path)
{
    int64_t deadline = cs_mono_us() + 60 * 1000000LL;
    while (access(path, F_OK) != 0) {
        assert_true(cs_mono_us() < deadline);
        usleep(2000);
    }
}

static void test_backtest_differences(void **state)
{
    (void)state;
    T0 = cs_now_us() - 6 * 3600LL * 1000000;
    th_server s;
    char extra[700], rpath[300], hold[320], started[340];
    th_init(&s, NULL);
    snprintf(rpath, sizeof rpath, "%s/rules.yaml", s.dir);
    snprintf(hold, sizeof hold, "%s/hold", s.dir);
    snprintf(started, sizeof started, "%s/hold.started", s.dir);
    write_file(rpath, live_rules);
    snprintf(extra, sizeof extra, "rules: %s\n", rpath);
    FILE *f = fopen(strcat(strcpy((char[320]){0}, s.dir), "/config.yaml"), "a");
    fputs(extra, f);
    fclose(f);
    setenv("CRMSTREAM_BACKTEST_HOLD", hold, 1);
    assert_int_equal(th_start(&s), 0);

    /* The recorded stream: priorities 1..4 on three accounts, and leads. */
    escalate(&s, "c1", "acc_1", 0, 1);
    escalate(&s, "c2", "acc_1", 10, 2);
    escalate(&s, "c3", "acc_2", 20, 3);
    escalate(&s, "c4", "acc_2", 30, 4);
    escalate(&s, "c5", "acc_3", 300, 2);
    for (int i = 0; i < 7; i++) lead(&s, i, 40 + i);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    assert_int_equal(count(&s, "/api/v1/alerts"), 2); /* c3, c4 */
    assert_int_equal(count(&s, "/api/v1/tasks"), 2);
    assert_int_equal(th_count_leads(&s), 7);
    char *m0 = pipeline_metrics(&s);

    /* A scratch directory left by a server that died mid-backtest is removed
     * by the next one. */
    char stale[400];
    snprintf(stale, sizeof stale, "%s/data/backtest-Zz0123", s.dir);
    assert_int_equal(mkdir(stale, 0755), 0);
    strcat(stale, "/crm.sqlite");
    write_file(stale, "left over");
    assert_int_equal(scratch_dirs(s.dir), 1);

    /* Lower threshold: c2 and c5 would raise an alert and a task each. */
    cJSON *j;
    char got[1024];
    assert_int_equal(backtest(&s, cand_lower, NULL, NULL, &j), 200);
    assert_int_equal((int)num(j, "leads", "rerouted"), 0); /* same leads, same round robin */
    assert_int_equal((int)num(j, "alerts", "added"), 2);
    assert_int_equal((int)num(j, "alerts", "removed"), 0);
    assert_int_equal((int)num(j, "tasks", "added"), 2);
    assert_int_equal((int)num(j, "tasks", "removed"), 0);
    changes(j, "alerts", "dedupe_key", got, sizeof got);
    char want[600], ts2[40], ts5[40];
    cs_fmt_time_ms(T0 + 10LL * 60000000, ts2, sizeof ts2);
    cs_fmt_time_ms(T0 + 300LL * 60000000, ts5, sizeof ts5);
    snprintf(want, sizeof want, "added:acc_1:esc:c2@%s added:acc_3:esc:c5@%s", ts2, ts5);
    assert_string_equal(got, want);
    changes(j, "tasks", "title", got, sizeof got);
    assert_string_equal(got, "added:acc_1:Look at case c2 added:acc_3:Look at case c5");
    assert_string_equal(cJSON_GetObjectItem(j, "rules")->valuestring, "cand.yaml");
    assert_int_equal((int)cJSON_GetObjectItem(j, "events")->valuedouble, 12);
    assert_int_equal((int)cJSON_GetObjectItem(j, "lead_events")->valuedouble, 7);
    cJSON_Delete(j);
    assert_int_equal(scratch_dirs(s.dir), 0);

    /* A window [T0+5m, T0+200m) keeps c2 only. */
    char from[40], to[40];
    cs_fmt_time_ms(T0 + 5LL * 60000000, from, sizeof from);
    cs_fmt_time_ms(T0 + 200LL * 60000000, to, sizeof to);
    assert_int_equal(backtest(&s, cand_lower, from, to, &j), 200);
    assert_int_equal((int)num(j, "alerts", "added"), 1);
    assert_int_equal((int)num(j, "tasks", "added"), 1);
    changes(j, "tasks", "title", got, sizeof got);
    assert_string_equal(got, "added:acc_1:Look at case c2");
    cJSON_Delete(j);

    /* Higher threshold, no task action: c3's alert and both tasks removed,
     * named by the live rows' ids. */
    assert_int_equal(backtest(&s, cand_higher, NULL, NULL, &j), 200);
    assert_int_equal((int)num(j, "leads", "rerouted"), 0);
    assert_int_equal((int)num(j, "alerts", "added"), 0);
    assert_int_equal((int)num(j, "alerts", "removed"), 1);
    assert_int_equal((int)num(j, "tasks", "added"), 0);
    assert_int_equal((int)num(j, "tasks", "removed"), 2);
    changes(j, "tasks", "title", got, sizeof got);
    assert_string_equal(got, "removed:acc_2:Look at case c3 removed:acc_2:Look at case c4");
    char id[64];
    live_id(&s, "/api/v1/alerts", "account_id", "acc_2", id, sizeof id); /* both acc_2: take c3's by key */
    const cJSON *ex = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "alerts"), "examples");
    assert_int_equal(cJSON_GetArraySize(ex), 1);
    const char *key = cJSON_GetObjectItem(ex->child, "dedupe_key")->valuestring;
    assert_true(strncmp(key, "esc:c3@", 7) == 0);
    live_id(&s, "/api/v1/alerts", "dedupe_key", key, id, sizeof id);
    assert_string_equal(cJSON_GetObjectItem(ex->child, "id")->valuestring, id);
    cJSON_Delete(j);

    /* The same rules as live: no difference at all. */
    assert_int_equal(backtest(&s, live_rules, NULL, NULL, &j), 200);
    assert_int_equal((int)num(j, "alerts", "added") + (int)num(j, "alerts", "removed"), 0);
    assert_int_equal((int)num(j, "tasks", "added") + (int)num(j, "tasks", "removed"), 0);
    assert_int_equal((int)num(j, "leads", "rerouted"), 0);
    cJSON_Delete(j);

    /* No effects: the live store and the pipeline's metrics are unchanged,
     * the scratch stores are gone. */
    assert_int_equal(count(&s, "/api/v1/alerts"), 2);
    assert_int_equal(count(&s, "/api/v1/tasks"), 2);
    assert_int_equal(th_count_leads(&s), 7);
    char *m1 = pipeline_metrics(&s);
    assert_string_equal(m0, m1);
    free(m0);
    free(m1);
    assert_int_equal(scratch_dirs(s.dir), 0);

    /* Bad rules: 422 naming file:line:column; nothing ran. */
    assert_int_equal(backtest(&s, "rules:\n  - id: broken\n    when: event.type ==\n    actions: []\n", NULL, NULL, &j),
                     422);
    const char *msg = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message")->valuestring;
    assert_non_null(strstr(msg, "cand.yaml:3:"));
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "POST", "/api/v1/backtest", "{\"from\":\"2026-01-01T00:00:00Z\"}", NULL), 400);

    /* One at a time: a second backtest while the first runs answers 409. */
    unlink(started);
    write_file(hold, "");
    char *body = bt_body(cand_lower, "cand.yaml", NULL, NULL);
    struct held h = {s.target, body, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, held_request, &h), 0);
    wait_file(started);
    assert_int_equal(backtest(&s, cand_lower, NULL, NULL, &j), 409);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring,
                        "backtest_running");
    cJSON_Delete(j);
    unlink(hold);
    pthread_join(t, NULL);
    assert_int_equal(h.status, 200);
    cJSON_free(body);

    /* The command: table and --json, exit 0; a bad file exits 1. */
    char cpath[320], cmd[1200];
    snprintf(cpath, sizeof cpath, "%s/cand.yaml", s.dir);
    write_file(cpath, cand_lower);
    snprintf(cmd, sizeof cmd, "%s backtest --rules %s --target %s --json > %s/bt.json", th_bin(), cpath, s.target, s.dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 0);
    snprintf(cpath, sizeof cpath, "%s/bt.json", s.dir);
    f = fopen(cpath, "r");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_int_equal((int)num(j, "alerts", "added"), 2);
    cJSON_Delete(j);
    snprintf(cmd, sizeof cmd, "%s backtest --rules %s/cand.yaml --target %s > %s/bt.txt", th_bin(), s.dir, s.target,
             s.dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 0);
    snprintf(cpath, sizeof cpath, "%s/bad.yaml", s.dir);
    write_file(cpath, "rules:\n  - id: x\n    when: (\n");
    snprintf(cmd, sizeof cmd, "%s backtest --rules %s --target %s 2> %s/bt.err", th_bin(), cpath, s.target, s.dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    snprintf(cmd, sizeof cmd, "grep -q 'bad.yaml:3:' %s/bt.err", s.dir);
    assert_int_equal(WEXITSTATUS(system(cmd)), 0);
    snprintf(cmd, sizeof cmd, "%s backtest --target %s 2>/dev/null", th_bin(), s.target);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    assert_int_equal(scratch_dirs(s.dir), 0);
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    th_cleanup(&s);

    /* Past backtest.timeout_ms: 503, and the scratch store is removed. */
    th_init(&s, "backtest:\n  timeout_ms: 1000\n");
    snprintf(hold, sizeof hold, "%s/hold", s.dir);
    setenv("CRMSTREAM_BACKTEST_HOLD", hold, 1);
    assert_int_equal(th_start(&s), 0);
    write_file(hold, "");
    assert_int_equal(backtest(&s, cand_lower, NULL, NULL, &j), 503);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "code")->valuestring,
                        "backtest_timeout");
    cJSON_Delete(j);
    assert_int_equal(scratch_dirs(s.dir), 0);
    unsetenv("CRMSTREAM_BACKTEST_HOLD");
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    th_cleanup(&s);
}

/* Territory rules: DE and FR leads to the emea pool (rep_a), the rest to
 * the row pool (rep_b). The candidate adds GB to emea: exactly the GB leads
 * change owner, rep_b -> rep_a. */
static const char terr_live[] =
    "rules:\n"
    "  - id: territory-emea\n"
    "    when: event.type == \"LeadCreated\" && lead.country in [\"DE\", \"FR\"]\n"
    "    actions:\n"
    "      - route_lead: {strategy: round_robin, pool: emea}\n"
    "  - id: territory-rest\n"
    "    when: event.type == \"LeadCreated\"\n"
    "    actions:\n"
    "      - route_lead: {strategy: round_robin, pool: row}\n";

static void lead_in(th_server *s, const char *id, const char *country, int minutes)
{
    char ts[40], body[400];
    cs_fmt_time_ms(T0 + (int64_t)minutes * 60000000, ts, sizeof ts);
    snprintf(body, sizeof body,
             "{\"event_id\":\"%s\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%s\",\"timestamp\":\"%s\","
             "\"properties\":{\"email\":\"%s@example.com\",\"country\":\"%s\"}}",
             id, id, ts, id, country);
    assert_int_equal(th_req(s, "POST", "/v1/events", body, NULL), 200);
}

static void rep_pool(th_server *s, const char *id, const char *pool)
{
    char body[200];
    snprintf(body, sizeof body, "{\"id\":\"%s\",\"pools\":[\"%s\"]}", id, pool);
    int st = th_req(s, "POST", "/api/v1/reps", body, NULL);
    assert_true(st == 200 || st == 202);
}

static void rerouted(const cJSON *j, char *out, size_t n)
{
    char items[16][200];
    int k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "leads"), "examples"))
    {
        assert_true(k < 16);
        snprintf(items[k++], sizeof items[0], "%s:%s->%s", cJSON_GetObjectItem(e, "event_id")->valuestring,
                 cJSON_GetObjectItem(e, "before")->valuestring, cJSON_GetObjectItem(e, "after")->valuestring);
    }
    for (int a = 0; a < k; a++)
        for (int b = a + 1; b < k; b++)
            if (strcmp(items[a], items[b]) > 0) {
                char t[200];
                memcpy(t, items[a], sizeof t);
                memcpy(items[a], items[b], sizeof t);
                memcpy(items[b], t, sizeof t);
            }
    out[0] = 0;
    for (int a = 0; a < k; a++) {
        if (a) strncat(out, " ", n - strlen(out) - 1);
        strncat(out, items[a], n - strlen(out) - 1);
    }
}

static void test_backtest_territory(void **state)
{
    (void)state;
    T0 = cs_now_us() - 6 * 3600LL * 1000000;
    th_server s;
    char extra[400], rpath[300];
    th_init(&s, NULL);
    snprintf(rpath, sizeof rpath, "%s/rules.yaml", s.dir);
    write_file(rpath, terr_live);
    snprintf(extra, sizeof extra, "rules: %s\n", rpath);
    FILE *f = fopen(strcat(strcpy((char[320]){0}, s.dir), "/config.yaml"), "a");
    fputs(extra, f);
    fclose(f);
    unsetenv("CRMSTREAM_BACKTEST_HOLD");
    assert_int_equal(th_start(&s), 0);
    rep_pool(&s, "rep_a", "emea");
    rep_pool(&s, "rep_b", "row");
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    static const struct {
        const char *id, *country, *live;
    } leads[] = {{"t1", "DE", "rep_a"}, {"t2", "GB", "rep_b"}, {"t3", "US", "rep_b"}, {"t4", "FR", "rep_a"},
                 {"t5", "GB", "rep_b"}, {"t6", "US", "rep_b"}, {"t7", "GB", "rep_b"}};
    for (int i = 0; i < 7; i++) lead_in(&s, leads[i].id, leads[i].country, 10 * (i + 1));
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    assert_int_equal(th_wait_leads(&s, 7, 30000), 7);
    /* what happened (live) */
    cJSON *j;
    assert_int_equal(th_req(&s, "GET", "/api/v1/leads?limit=100", NULL, &j), 200);
    int seen = 0;
    for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next)
        for (int i = 0; i < 7; i++)
            if (strcmp(cJSON_GetObjectItem(it, "event_id")->valuestring, leads[i].id) == 0) {
                assert_string_equal(cJSON_GetObjectItem(it, "owner")->valuestring, leads[i].live);
                seen++;
            }
    cJSON_Delete(j);
    assert_int_equal(seen, 7);

    /* The candidate: GB joins the emea territory. */
    char cand[sizeof terr_live + 16], got[1024];
    snprintf(cand, sizeof cand, "%s", terr_live);
    char *at = strstr(cand, "[\"DE\", \"FR\"]");
    assert_non_null(at);
    at++; /* after the [ */
    memmove(at + 6, at, strlen(at) + 1);
    memcpy(at, "\"GB\", ", 6);
    assert_non_null(strstr(cand, "[\"GB\", \"DE\", \"FR\"]"));
    assert_int_equal(backtest(&s, cand, NULL, NULL, &j), 200);
    assert_int_equal((int)num(j, "leads", "rerouted"), 3);
    rerouted(j, got, sizeof got);
    assert_string_equal(got, "t2:rep_b->rep_a t5:rep_b->rep_a t7:rep_b->rep_a");
    assert_int_equal((int)num(j, "alerts", "added") + (int)num(j, "alerts", "removed"), 0);
    assert_int_equal((int)num(j, "tasks", "added") + (int)num(j, "tasks", "removed"), 0);
    cJSON_Delete(j);
    /* A window around t5 (50 min): only it. */
    char from[40], to[40];
    cs_fmt_time_ms(T0 + 45LL * 60000000, from, sizeof from);
    cs_fmt_time_ms(T0 + 55LL * 60000000, to, sizeof to);
    assert_int_equal(backtest(&s, cand, from, to, &j), 200);
    rerouted(j, got, sizeof got);
    assert_string_equal(got, "t5:rep_b->rep_a");
    cJSON_Delete(j);
    /* The live rules themselves: nothing differs; the live leads kept their owners. */
    assert_int_equal(backtest(&s, terr_live, NULL, NULL, &j), 200);
    assert_int_equal((int)num(j, "leads", "rerouted"), 0);
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/leads?limit=100", NULL, &j), 200);
    for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next)
        for (int i = 0; i < 7; i++)
            if (strcmp(cJSON_GetObjectItem(it, "event_id")->valuestring, leads[i].id) == 0)
                assert_string_equal(cJSON_GetObjectItem(it, "owner")->valuestring, leads[i].live);
    cJSON_Delete(j);
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    th_cleanup(&s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backtest_differences),
        cmocka_unit_test(test_backtest_territory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
