/*
 * Integration (issue "Kafka"): two pipeline processes share the partitions
 * of a real Apache Kafka broker as one consumer group over one PostgreSQL
 * store; one is killed with SIGKILL mid-stream and the survivor takes its
 * partitions (and the leads lane) over. The checker then finds 0 lost
 * events, 0 duplicate CRM rows, and signals equal to those of a single
 * process on the embedded bus fed the same events.
 *
 * Processes: one `serve --role ingest` (the front door: HTTP -> Kafka) and
 * two `serve --role pipeline`; `log.partitions: 8`. Without Java or the
 * Kafka jars (`make deps`) it SKIPs.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.c"
#include "kafkaserver.c"
#include "pgserver.c"

#include "core/logging.h"

static tkafka broker;
static int have_broker;
static char why_skip[512];
static tpg pg;
static th_server ing, pa, pb, ref;

static int64_t T0;

/* Batch k of the stream: 30 accounts, each a lead, a trial, feature uses
 * and an escalation, spread over event time. */
static char *batch(int k)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "[");
    for (int a = 0; a < 30; a++) {
        char ts[40];
        int64_t t = T0 + ((int64_t)k * 30 + a) * 90 * 1000000LL;
        cs_fmt_time_ms(t, ts, sizeof ts);
        const char *type = k == 0 ? "LeadCreated" : k == 1 ? "TrialActivated" : k % 7 == 6 ? "SupportCaseEscalated"
                                                                                        : "FeatureUsed";
        cs_buf_printf(&b,
                      "%s{\"event_id\":\"g-%d-%d\",\"type\":\"%s\",\"account_id\":\"acc_%d\",\"user_id\":\"u%d\","
                      "\"timestamp\":\"%s\",\"properties\":{\"feature\":\"f%d\",\"email\":\"p%d@corp%d.example\","
                      "\"case_id\":\"c%d-%d\",\"severity\":\"high\",\"plan_tier\":\"trial\"}}",
                      a ? "," : "", k, a, type, a, (k + a) % 4, ts, (k * 7 + a) % 5, a, a, k, a);
    }
    cs_buf_adds(&b, "]");
    return cs_buf_steal(&b);
}

static void post(th_server *s, const char *body)
{
    cJSON *j = NULL;
    int st = th_req(s, "POST", "/v1/events", body, &j);
    assert_int_equal(st, 200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "accepted")->valuedouble, 30);
    cJSON_Delete(j);
}

/* A gauge from /metrics (0 when absent). */
static double gauge(th_server *s, const char *series)
{
    cs_buf body;
    cs_buf_init(&body);
    int st = 0;
    if (cs_httpc_request(&s->c, "GET", "/metrics", NULL, NULL, 0, &st, &body) != 0 || st != 200) {
        cs_buf_free(&body);
        return -1;
    }
    cs_buf_add(&body, "", 1);
    const char *p = strstr(body.data, series);
    double v = p ? strtod(p + strlen(series) + 1, NULL) : 0;
    cs_buf_free(&body);
    return v;
}

static int wait_gauge(th_server *s, const char *series, double want, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (gauge(s, series) == want) return 0;
        usleep(20000);
    }
    return -1;
}

/* Signals as "account|name|value(6 decimals)" lines, sorted. */
static char *pg_signals(const char *uri)
{
    PGconn *c = PQconnectdb(uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "SELECT account_id, name, value FROM signals ORDER BY 1, 2");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    cs_buf b;
    cs_buf_init(&b);
    for (int i = 0; i < PQntuples(r); i++)
        cs_buf_printf(&b, "%s|%s|%.6f\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), strtod(PQgetvalue(r, i, 2), NULL));
    PQclear(r);
    PQfinish(c);
    cs_buf_add(&b, "", 1);
    return b.data;
}

static char *sqlite_signals(th_server *s)
{
    char path[600];
    snprintf(path, sizeof path, "%s/data/crm.sqlite", s->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT account_id, name, value FROM signals ORDER BY 1, 2", -1, &st, NULL),
                     SQLITE_OK);
    cs_buf b;
    cs_buf_init(&b);
    while (sqlite3_step(st) == SQLITE_ROW)
        cs_buf_printf(&b, "%s|%s|%.6f\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                      sqlite3_column_double(st, 2));
    sqlite3_finalize(st);
    sqlite3_close(db);
    cs_buf_add(&b, "", 1);
    return b.data;
}

static long pg_count(const char *uri, const char *sql)
{
    PGconn *c = PQconnectdb(uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    long n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return n;
}

static void dump_log(th_server *s)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -n 20 '%s/serve.log' | sed 's/^/# /' >&2", s->dir);
    if (system(cmd) != 0) fprintf(stderr, "# no serve.log\n");
}

static int teardown(void **state)
{
    (void)state;
    th_server *all[] = {&ing, &pa, &pb, &ref};
    for (int i = 0; i < 4; i++)
        if (all[i]->dir[0]) th_cleanup(all[i]);
    if (pg.dir[0]) tpg_destroy(&pg);
    return 0;
}

static void test_two_pipeline_processes_survive_a_sigkill(void **state)
{
    (void)state;
    if (!have_broker) {
        fprintf(stderr, "# SKIP: %s\n", why_skip);
        skip();
    }
    enum { BATCHES = 24 };
    char rules[700], cwd[512], uri[300], yaml[1500];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(rules, sizeof rules, "%s/config/rules.yaml", cwd);
    assert_int_equal(tpg_start(&pg), 0);
    assert_int_equal(tpg_create_db(&pg, "group", uri, sizeof uri), 0);
    snprintf(yaml, sizeof yaml,
             "bus: kafka://%s\nstore: \"%s\"\nrules: %s\nlog:\n  partitions: 8\nkafka:\n  topic_prefix: grp-\n"
             "  timeout_ms: 15000\n  session_timeout_ms: 6000\npipeline:\n  workers: 2\n  batch_max_events: 20\n"
             "  snapshot_every_events: 40\n",
             broker.bootstrap, uri, rules);
    th_init(&ing, yaml);
    th_init(&pa, yaml);
    th_init(&pb, yaml);
    const char *r_ingest[] = {"--role", "ingest", NULL}, *r_pipe[] = {"--role", "pipeline", NULL};
    if (th_start_args(&ing, r_ingest) != 0) dump_log(&ing);
    assert_true(*ing.target);
    if (th_start_args(&pa, r_pipe) != 0) dump_log(&pa);
    assert_true(*pa.target);
    if (th_start_args(&pb, r_pipe) != 0) dump_log(&pb);
    assert_true(*pb.target);
    /* Both members hold partitions (cooperative-sticky: 4 + 4). */
    assert_int_equal(wait_gauge(&pa, "crmstream_bus_group_partitions{group=\"pipeline\"}", 4, 60000), 0);
    assert_int_equal(wait_gauge(&pb, "crmstream_bus_group_partitions{group=\"pipeline\"}", 4, 60000), 0);

    /* The first half, applied by both. */
    for (int k = 0; k < BATCHES / 2; k++) {
        char *b = batch(k);
        post(&ing, b);
        free(b);
    }
    assert_int_equal(th_wait_caught_up(&pa, 60000), 0);
    assert_int_equal(th_wait_caught_up(&pb, 60000), 0);
    /* SIGKILL one member mid-stream: the second half keeps coming. */
    th_stop(&pa, SIGKILL);
    for (int k = BATCHES / 2; k < BATCHES; k++) {
        char *b = batch(k);
        post(&ing, b);
        free(b);
    }
    /* After the session timeout the survivor owns all 8 and catches up. */
    if (wait_gauge(&pb, "crmstream_bus_group_partitions{group=\"pipeline\"}", 8, 60000) != 0) dump_log(&pb);
    assert_int_equal(gauge(&pb, "crmstream_bus_group_partitions{group=\"pipeline\"}"), 8);
    assert_int_equal(th_wait_caught_up(&pb, 60000), 0);

    /* 0 lost, 0 duplicates. */
    assert_int_equal(pg_count(uri, "SELECT count(*) FROM leads"), 30);
    assert_int_equal(pg_count(uri, "SELECT count(DISTINCT event_id) FROM leads"), 30);
    assert_int_equal(pg_count(uri, "SELECT coalesce(sum(next_offset),0) FROM consumer_offsets WHERE "
                                   "consumer='pipeline' AND topic='events'"),
                     BATCHES * 30);
    assert_int_equal(pg_count(uri, "SELECT count(*) FROM (SELECT object, object_id, field, new_value, cause_event_id, "
                                   "rule_id FROM audit GROUP BY 1, 2, 3, 4, 5, 6 HAVING count(*) > 1) d"),
                     0);
    assert_int_equal(pg_count(uri, "SELECT count(*) FROM dead_events"), 0);

    /* The same events through one process on the embedded bus. */
    snprintf(yaml, sizeof yaml, "rules: %s\nlog:\n  partitions: 8\n", rules);
    th_init(&ref, yaml);
    assert_int_equal(th_start(&ref), 0);
    for (int k = 0; k < BATCHES; k++) {
        char *b = batch(k);
        post(&ref, b);
        free(b);
    }
    assert_int_equal(th_wait_caught_up(&ref, 60000), 0);
    th_stop(&ref, SIGTERM);
    char *x = pg_signals(uri), *y = sqlite_signals(&ref);
    long lines = 0;
    for (const char *c = y; *c; c++) lines += *c == '\n';
    printf("# %d events, 2 pipeline processes, one SIGKILLed: %ld signal values equal to the embedded run\n",
           BATCHES * 30, lines);
    assert_true(lines >= 30);
    assert_string_equal(x, y);
    free(x);
    free(y);
    th_stop(&pb, SIGTERM);
    th_stop(&ing, SIGTERM);
}

int main(void)
{
    cs_log_set_level(CS_LOG_WARN);
    T0 = (cs_now_us() / 1000000 - 30 * 3600) * 1000000;
    have_broker = tkafka_start(&broker, why_skip, sizeof why_skip) == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_two_pipeline_processes_survive_a_sigkill, teardown),
    };
    int rc = cmocka_run_group_tests_name("kafka_group", tests, NULL, NULL);
    tkafka_stop(&broker);
    return rc;
}
