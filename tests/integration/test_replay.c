/*
 * Integration: `crmstream replay` and POST /api/v1/replay (T13). After a
 * replay from offset 0 — offline, online, and with --rebuild — the CRM
 * tables (leads, accounts, signals) are identical to before, excluding
 * wall-clock columns (route_latency_ms); --from-time picks the first offset
 * appended at or after the time, per partition; the offline command refuses
 * a data directory a server holds (exit 1) and bad usage exits 2.
 */
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.c"

/* Run `crmstream ARGS...` with stdout and stderr captured; the exit status. */
static int run_cli(char *out, size_t outlen, char *err, size_t errlen, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)th_bin();
    va_list ap;
    va_start(ap, errlen);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && n < 31) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    char fo[] = "/tmp/crmstream-replay-out-XXXXXX", fe[] = "/tmp/crmstream-replay-err-XXXXXX";
    int fdo = mkstemp(fo), fde = mkstemp(fe);
    assert_true(fdo >= 0 && fde >= 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fdo, 1), dup2(fde, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    char *bufs[2] = {out, err};
    size_t lens[2] = {outlen, errlen};
    int fds[2] = {fdo, fde};
    for (int i = 0; i < 2; i++) {
        ssize_t k = pread(fds[i], bufs[i], lens[i] - 1, 0);
        bufs[i][k > 0 ? k : 0] = '\0';
        close(fds[i]);
    }
    unlink(fo), unlink(fe);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void post_ok(th_server *s, const char *path, const char *body)
{
    cJSON *j;
    assert_int_equal(th_req(s, "POST", path, body, &j), 200);
    cJSON_Delete(j);
}

/* Usage events, leads and admin account writes for accounts acc_0..acc_(A-1). */
static void populate(th_server *s, int first, int n)
{
    const int A = 12;
    if (first == 0)
        for (int a = 0; a < A; a++) {
            char body[200];
            snprintf(body, sizeof body, "{\"id\":\"acc_%d\",\"name\":\"Account %d\",\"plan_tier\":\"%s\"}", a, a,
                     a % 2 ? "pro" : "trial");
            assert_int_equal(th_req(s, "POST", "/api/v1/accounts", body, NULL), 202);
        }
    int64_t base = cs_now_us() - 3LL * 3600 * 1000000;
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "[");
    static const char *const feats[] = {"reports", "api", "sso", "alerts", "export_csv"};
    for (int i = first; i < first + n; i++) {
        char ts[40];
        cs_fmt_time_ms(base + (int64_t)i * 1000000, ts, sizeof ts);
        if (i % 10 == 3)
            cs_buf_printf(&b, "%s{\"event_id\":\"lead-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%d\","
                              "\"timestamp\":\"%s\",\"properties\":{\"email\":\"p%d@example.com\",\"company\":\"C%d\"}}",
                          i > first ? "," : "", i, i % A, ts, i, i % A);
        else
            cs_buf_printf(&b, "%s{\"event_id\":\"u-%d\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_%d\","
                              "\"user_id\":\"user_%d\",\"timestamp\":\"%s\",\"properties\":{\"feature\":\"%s\","
                              "\"count\":%d}}",
                          i > first ? "," : "", i, i % A, i % 7, ts, feats[i % 5], 1 + i % 3);
    }
    cs_buf_adds(&b, "]");
    post_ok(s, "/v1/events", b.data);
    cs_buf_free(&b);
    assert_int_equal(th_wait_caught_up(s, 30000), 0);
}

/* The CRM tables as text: leads (no route_latency_ms), accounts, signals. */
static char *snapshot(th_server *s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/crm.sqlite", s->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    static const char leads_q[] = "SELECT id,event_id,account_id,email,company,country,source,employee_count,"
                                  "status,owner,routed_at,route_reason,created_at,partition,offset FROM leads ORDER BY id";
    static const char *const q[] = {
        leads_q,
        "SELECT * FROM accounts ORDER BY id",
        "SELECT * FROM signals ORDER BY account_id, name",
    };
    cs_buf b;
    cs_buf_init(&b);
    long rows = 0;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db, q[i], -1, &st, NULL), SQLITE_OK);
        cs_buf_printf(&b, "-- %zu\n", i);
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const unsigned char *v = sqlite3_column_text(st, c);
                cs_buf_printf(&b, "%s|", v ? (const char *)v : "NULL");
            }
            cs_buf_adds(&b, "\n");
            rows++;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    assert_true(rows > 20);
    return cs_buf_steal(&b);
}

static void assert_same(const char *a, const char *b)
{
    if (strcmp(a, b) != 0) {
        fprintf(stderr, "---- before\n%s\n---- after\n%s\n", a, b);
        fail_msg("CRM tables differ after the replay");
    }
}

static void paths(th_server *s, char *data, char *cfg, size_t n)
{
    snprintf(data, n, "%s/data", s->dir);
    snprintf(cfg, n, "%s/config.yaml", s->dir);
}

static void test_offline_replay_same_tables(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, NULL);
    assert_int_equal(th_start(&s), 0);
    populate(&s, 0, 300);
    char *before = snapshot(&s);
    char data[512], cfg[512], out[8192], err[4096];
    paths(&s, data, cfg, sizeof data);
    /* A server holds the data dir: refused, exit 1, one line. */
    assert_int_equal(run_cli(out, sizeof out, err, sizeof err, "replay", "--from-offset", "0", "--data", data,
                             "--config", cfg, (char *)NULL), 1);
    assert_non_null(strstr(err, "crmstream: replay: "));
    assert_non_null(strstr(err, "POST /api/v1/replay"));
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    /* Lose the latest signal change (its history row and the current
     * value): the replay re-applies the log and brings it back, and
     * duplicates nothing else. */
    char dbp[600];
    snprintf(dbp, sizeof dbp, "%s/crm.sqlite", data);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbp, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DELETE FROM signals WHERE (account_id, name) IN (SELECT account_id, name FROM "
                                  "signal_history ORDER BY seq DESC LIMIT 1);"
                                  "DELETE FROM signal_history WHERE seq IN (SELECT max(seq) FROM signal_history)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_close(db);
    char *damaged = snapshot(&s);
    assert_int_not_equal(strcmp(before, damaged), 0);
    free(damaged);

    assert_int_equal(run_cli(out, sizeof out, err, sizeof err, "replay", "--from-offset", "0", "--data", data,
                             "--config", cfg, (char *)NULL), 0);
    assert_non_null(strstr(out, "partition 0: offset "));
    assert_non_null(strstr(out, "-> 0 (log end "));
    assert_non_null(strstr(out, "replayed "));
    assert_int_equal(strlen(err) > 0 && strstr(err, "\r["), 0); /* no progress bar when piped */
    char *after = snapshot(&s);
    assert_same(before, after);
    free(after);

    /* --rebuild: signal state cleared and recomputed: the same values. */
    assert_int_equal(run_cli(out, sizeof out, err, sizeof err, "replay", "--rebuild", "--data", data, "--config", cfg,
                             (char *)NULL), 0);
    assert_non_null(strstr(out, "signals recomputed"));
    after = snapshot(&s);
    assert_same(before, after);
    free(after);

    /* One partition from an offset past its end: nothing moves forward. */
    assert_int_equal(run_cli(out, sizeof out, err, sizeof err, "replay", "--from-offset", "1000000", "--partition",
                             "2", "--data", data, "--config", cfg, (char *)NULL), 0);
    assert_non_null(strstr(out, "partition 2: "));
    assert_null(strstr(out, "partition 1: "));
    assert_non_null(strstr(out, "replayed 0 events"));

    /* The server starts on the replayed store and has the same tables. */
    assert_int_equal(th_start(&s), 0);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    after = snapshot(&s);
    assert_same(before, after);
    free(after);
    free(before);
    th_cleanup(&s);
}

static int replay_api(th_server *s, const char *body, cJSON **j) { return th_req(s, "POST", "/api/v1/replay", body, j); }

static void test_online_replay_same_tables(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, NULL);
    assert_int_equal(th_start(&s), 0);
    populate(&s, 0, 300);
    char *before = snapshot(&s);
    cJSON *j;
    assert_int_equal(replay_api(&s, "{\"from_offset\": 0}", &j), 200);
    assert_true(cJSON_GetObjectItem(j, "events")->valuedouble >= 300);
    cJSON *parts = cJSON_GetObjectItem(j, "partitions");
    assert_int_equal(cJSON_GetArraySize(parts), 4);
    for (cJSON *p = parts->child; p; p = p->next) assert_int_equal(cJSON_GetObjectItem(p, "to")->valuedouble, 0);
    cJSON_Delete(j);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    char *after = snapshot(&s);
    assert_same(before, after);
    free(after);

    assert_int_equal(replay_api(&s, "{\"rebuild\": true, \"partition\": 1}", &j), 200);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "partitions")), 1);
    cJSON_Delete(j);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    after = snapshot(&s);
    assert_same(before, after);
    free(after);

    /* More events after the replay are applied as usual. */
    populate(&s, 300, 50);
    assert_int_equal(th_count_leads(&s), 35);

    /* Validation: each error names the field. */
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"from_offset\": -1}", "from_offset"},
        {"{\"from_offset\": 1.5}", "from_offset"},
        {"{\"from_offset\": \"0\"}", "from_offset"},
        {"{\"from_time\": \"yesterday\"}", "from_time"},
        {"{\"from_offset\": 0, \"from_time\": \"2026-01-01T00:00:00Z\"}", "from_time"},
        {"{\"from_offset\": 0, \"partition\": 4}", "partition"},
        {"{\"from_offset\": 0, \"rebuild\": \"yes\"}", "rebuild"},
        {"{\"rebuild\": true, \"from_offset\": 7}", "from_offset"},
        {"{\"from_offset\": 0, \"bogus\": 1}", "bogus"},
        {"{}", "from_offset"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(replay_api(&s, bad[i].body, &j), 400);
        cJSON *e = cJSON_GetObjectItem(j, "error");
        assert_non_null(e);
        assert_string_equal(cJSON_GetObjectItem(e, "field")->valuestring, bad[i].field);
        cJSON_Delete(j);
    }
    assert_int_equal(replay_api(&s, "[1]", &j), 400);
    cJSON_Delete(j);
    assert_int_equal(replay_api(&s, "not json", &j), 400);
    cJSON_Delete(j);
    free(before);
    th_cleanup(&s);
}

/* Committed next offset per partition, from the store. */
static void store_offsets(th_server *s, int64_t *next)
{
    char path[512];
    snprintf(path, sizeof path, "%s/data/crm.sqlite", s->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT partition, next_offset FROM consumer_offsets WHERE consumer='pipeline'"
                                        " AND topic='events'",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (int p = 0; p < 4; p++) next[p] = 0;
    while (sqlite3_step(st) == SQLITE_ROW) next[sqlite3_column_int(st, 0)] = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_from_time(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, NULL);
    assert_int_equal(th_start(&s), 0);
    populate(&s, 0, 200);
    int64_t mid[4];
    store_offsets(&s, mid);
    usleep(30000);
    char t[40];
    cs_fmt_time_ms(cs_now_us(), t, sizeof t);
    usleep(30000);
    populate(&s, 200, 200);
    int64_t end[4];
    store_offsets(&s, end);
    for (int p = 0; p < 4; p++) assert_true(end[p] > mid[p]);

    /* Online: the answer names the offsets picked. */
    char body[128];
    snprintf(body, sizeof body, "{\"from_time\": \"%s\"}", t);
    cJSON *j;
    assert_int_equal(replay_api(&s, body, &j), 200);
    for (cJSON *p = cJSON_GetObjectItem(j, "partitions")->child; p; p = p->next) {
        int id = (int)cJSON_GetObjectItem(p, "partition")->valuedouble;
        assert_int_equal((int64_t)cJSON_GetObjectItem(p, "to")->valuedouble, mid[id]);
        assert_int_equal((int64_t)cJSON_GetObjectItem(p, "from")->valuedouble, end[id]);
    }
    cJSON_Delete(j);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    /* A time before everything is the start; after everything, no move. */
    assert_int_equal(replay_api(&s, "{\"from_time\": \"2001-01-01T00:00:00Z\", \"partition\": 3}", &j), 200);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "partitions")->child, "to")->valuedouble, 0);
    cJSON_Delete(j);
    assert_int_equal(th_wait_caught_up(&s, 30000), 0);
    assert_int_equal(replay_api(&s, "{\"from_time\": \"2100-01-01T00:00:00Z\"}", &j), 200);
    assert_int_equal(cJSON_GetObjectItem(j, "events")->valuedouble, 0);
    cJSON_Delete(j);
    assert_int_equal(th_stop(&s, SIGTERM), 0);

    /* Offline, one partition. */
    char data[512], cfg[512], out[8192], err[4096], want[128];
    paths(&s, data, cfg, sizeof data);
    assert_int_equal(run_cli(out, sizeof out, err, sizeof err, "replay", "--from-time", t, "--partition", "1", "--data",
                             data, "--config", cfg, (char *)NULL), 0);
    snprintf(want, sizeof want, "partition 1: offset %lld -> %lld (log end %lld)", (long long)end[1],
             (long long)mid[1], (long long)end[1]);
    assert_non_null(strstr(out, want));
    assert_null(strstr(out, "partition 0:"));
    store_offsets(&s, mid);
    assert_int_equal(mid[1], end[1]); /* re-applied to the end */
    th_cleanup(&s);
}

static void test_bad_usage(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, NULL);
    char data[512], cfg[512], out[8192], err[4096];
    paths(&s, data, cfg, sizeof data);
    static const char *const cases[][6] = {
        {NULL},
        {"--from-offset", NULL},
        {"--from-offset", "x", NULL},
        {"--from-offset", "-3", NULL},
        {"--from-offset", "1", "--from-time", "2026-01-01T00:00:00Z", NULL},
        {"--from-time", "soon", NULL},
        {"--rebuild", "--from-offset", "5", NULL},
        {"--partition", "1", NULL},
        {"--from-offset", "0", "--partition", "4", NULL},
        {"--from-offset", "0", "--bogus", NULL},
        {"--from-offset", "0", "extra", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *a[6] = {0};
        for (int k = 0; k < 6 && cases[i][k]; k++) a[k] = cases[i][k];
        int rc = run_cli(out, sizeof out, err, sizeof err, "replay", "--config", cfg, "--data", data, a[0], a[1], a[2],
                         a[3], a[4], (char *)NULL);
        if (rc != 2) fprintf(stderr, "case %zu: exit %d: %s", i, rc, err);
        assert_int_equal(rc, 2);
        assert_int_equal(strncmp(err, "crmstream: replay: ", 19), 0);
        assert_non_null(strchr(err, '\n'));
        assert_int_equal(strchr(err, '\n')[1], '\0'); /* one line */
    }
    assert_int_equal(run_cli(out, sizeof out, err, sizeof err, "replay", "--help", (char *)NULL), 0);
    assert_non_null(strstr(out, "--from-time"));
    /* No log in the data dir: a runtime failure. */
    assert_int_equal(run_cli(out, sizeof out, err, sizeof err, "replay", "--from-offset", "0", "--config", cfg, "--data",
                             data, (char *)NULL), 1);
    th_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_usage),
        cmocka_unit_test(test_offline_replay_same_tables),
        cmocka_unit_test(test_online_replay_same_tables),
        cmocka_unit_test(test_from_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
