/*
 * Integration: the pipeline's guarantees (issue "Pipeline", RELIABILITY.md
 * T11), against a real `crmstream serve`:
 *   - poison isolation: an event a rule errors on goes to the events DLQ
 *     (reason rule_error) while the 10,000 events around it in the same
 *     partition are applied; after the rule is fixed a redrive applies it
 *     exactly once; a second redrive changes nothing; a restart re-applies
 *     nothing;
 *   - worker count: the same log applied by 1 and by 2 account workers
 *     gives identical CRM tables (lead owners included);
 *   - T11: the pipeline killed after fetch, mid-write, after the commit and
 *     after everything: 0 lost, 0 duplicate rows, signals equal to an
 *     uninterrupted run.
 *
 * One suite, two buses: every test runs on the embedded log, then again on
 * a real Apache Kafka broker started here (`make deps` fetches it; without
 * it the Kafka group SKIPs), except the worker-count test, which copies the
 * embedded log's files (on Kafka the consumer-group test, test_kafka_group.c,
 * covers processes sharing partitions).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.c"
#include "bus/bus.h"
#include "core/config.h"
#include "kafkaserver.c"

/* The bus under test: NULL = embedded; else a Kafka broker's bootstrap. */
static const char *kafka_boot;
static tkafka broker;
static char why_skip[512];
static int topic_seq;
static char topic_prefix[64]; /* the last pinit's, on Kafka */

/* th_init with the bus under test in the config (each server its own
 * topics on Kafka). */
static void pinit(th_server *s, const char *extra)
{
    char yaml[4096];
    snprintf(topic_prefix, sizeof topic_prefix, "t%d-%d-", (int)getpid(), ++topic_seq);
    if (kafka_boot)
        snprintf(yaml, sizeof yaml,
                 "bus: kafka://%s\nkafka:\n  topic_prefix: %s\n  timeout_ms: 15000\n  session_timeout_ms: 6000\n%s",
                 kafka_boot, topic_prefix, extra ? extra : "");
    else
        snprintf(yaml, sizeof yaml, "%s", extra ? extra : "");
    th_init(s, yaml);
}

/* On Kafka, after a start: wait until this process owns every partition
 * (a killed predecessor's are reassigned after the session timeout), so
 * "caught up" means all of them. */
static long metric(th_server *s, const char *series);
static void owns_all(th_server *s)
{
    if (!kafka_boot) return;
    for (int i = 0; i < 3000; i++) {
        if (metric(s, "crmstream_bus_group_partitions{group=\"pipeline\"}") == 4 &&
            metric(s, "crmstream_bus_group_partitions{group=\"pipeline-leads\"}") == 1)
            return;
        usleep(10000);
    }
    fail_msg("the consumer group did not assign every partition to %s", s->target);
}

static void skip_without_bus(void)
{
    if (kafka_boot || !why_skip[0]) return;
    fprintf(stderr, "# SKIP: %s\n", why_skip);
    skip();
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void post(th_server *s, const char *body)
{
    cJSON *j = NULL;
    int st = th_req(s, "POST", "/v1/events", body, &j);
    if (st != 200) fprintf(stderr, "POST /v1/events: %d\n", st);
    assert_int_equal(st, 200);
    cJSON_Delete(j);
}

static long metric(th_server *s, const char *series)
{
    cs_buf body;
    cs_buf_init(&body);
    int st = 0;
    assert_int_equal(cs_httpc_request(&s->c, "GET", "/metrics", NULL, NULL, 0, &st, &body), 0);
    assert_int_equal(st, 200);
    cs_buf_add(&body, "", 1);
    long v = 0;
    const char *p = strstr(body.data, series);
    if (p) v = strtol(p + strlen(series) + 1, NULL, 10);
    cs_buf_free(&body);
    return v;
}

/* Rows of a query over the server's SQLite store, one line each ('|'
 * between columns), sorted by the query; "" when none. */
static char *dump(th_server *s, const char *sql)
{
    char path[600];
    snprintf(path, sizeof path, "%s/data/crm.sqlite", s->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    cs_buf b;
    cs_buf_init(&b);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const unsigned char *t = sqlite3_column_text(st, i);
            cs_buf_printf(&b, "%s%s", i ? "|" : "", t ? (const char *)t : "NULL");
        }
        cs_buf_adds(&b, "\n");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    cs_buf_add(&b, "", 1);
    return b.data;
}

static long count_rows(th_server *s, const char *sql)
{
    char *d = dump(s, sql);
    long n = strtol(d, NULL, 10);
    free(d);
    return n;
}

static int64_t T0;

/* On Kafka: the dead letters in `<prefix>events.dlq` with their DLQ ids,
 * polled until n are there (the leads lane relays them from the outbox). */
struct dlq_seen {
    int  n;
    char ids[512];
};

static int on_dlq_rec(const cs_rec *rec, void *arg)
{
    struct dlq_seen *d = arg;
    cJSON *j = cJSON_ParseWithLength(rec->value, rec->value_len);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "dlq_id"));
    if (id && cJSON_GetStringValue(cJSON_GetObjectItem(j, "payload"))) {
        d->n++;
        snprintf(d->ids + strlen(d->ids), sizeof d->ids - strlen(d->ids), "%s ", id);
    }
    cJSON_Delete(j);
    return 0;
}

static void expect_dlq_topic(int n, const char *id_a, const char *id_b)
{
    if (!kafka_boot) return;
    cs_config cfg;
    cs_config_defaults(&cfg);
    cfg.partitions = 4;
    free(cfg.kafka_topic_prefix);
    cfg.kafka_topic_prefix = cs_strdup(topic_prefix);
    cfg.kafka_timeout_ms = 15000;
    char url[200], err[1024];
    snprintf(url, sizeof url, "kafka://%s", kafka_boot);
    cs_bus *bus = cs_bus_kafka_open(url, &cfg, err, sizeof err);
    if (!bus) fail_msg("kafka: %s", err);
    struct dlq_seen d = {0, ""};
    for (int i = 0; i < 500 && d.n < n; i++) {
        d.n = 0, d.ids[0] = 0;
        for (int p = 0; p < 4; p++) bus->ops->fetch(bus, CS_TOPIC_DLQ, p, 0, 100, on_dlq_rec, &d);
        if (d.n < n) usleep(20000);
    }
    assert_int_equal(d.n, n);
    assert_non_null(strstr(d.ids, id_a));
    assert_non_null(strstr(d.ids, id_b));
    bus->ops->close(bus);
    cs_config_free(&cfg);
}

/* ------------------------------------------------------------ poison */

static const char rules_bad[] =
    "rules:\n"
    "  - id: big-seats\n"
    "    when: event.type == \"FeatureUsed\" && event.properties.seats > 3\n"
    "    actions:\n"
    "      - create_task: {title: \"seats {{ account.id }}\", due_in: 1h}\n";
/* Fixed: a string seat count no longer errors (and "many" counts as big). */
static const char rules_fixed[] =
    "rules:\n"
    "  - id: big-seats\n"
    "    when: event.type == \"FeatureUsed\" && string(event.properties.seats) in [\"4\", \"many\"]\n"
    "    actions:\n"
    "      - create_task: {title: \"seats {{ account.id }}\", due_in: 1h}\n";

static void test_poison_isolated_then_redriven_once(void **state)
{
    (void)state;
    th_server s;
    char extra[800], rpath[600];
    skip_without_bus();
    pinit(&s, NULL);
    snprintf(rpath, sizeof rpath, "%s/rules.yaml", s.dir);
    write_file(rpath, rules_bad);
    snprintf(extra, sizeof extra, "%s/config.yaml", s.dir);
    FILE *cf = fopen(extra, "a");
    assert_non_null(cf);
    /* Snapshots every 1,000 events: a poison retry restores one and replays after it. */
    fprintf(cf, "rules: %s\npipeline:\n  workers: 2\n  poison_attempts: 3\n  snapshot_every_events: 1000\n", rpath);
    fclose(cf);
    assert_int_equal(th_start(&s), 0);
    /* 10,001 events of one account (one partition); number 5000 carries a
     * string where the rule compares a number. */
    const int N = 10001, POISON = 5000;
    cs_buf b;
    cs_buf_init(&b);
    for (int i = 0; i < N; i++) {
        if (i % 500 == 0) {
            cs_buf_reset(&b);
            cs_buf_adds(&b, "[");
        }
        char ts[40], seats[16];
        cs_fmt_time_ms(T0 + (int64_t)i * 1000, ts, sizeof ts);
        if (i == POISON) snprintf(seats, sizeof seats, "\"many\"");
        else snprintf(seats, sizeof seats, "%d", i % 5);
        cs_buf_printf(&b,
                      "%s{\"event_id\":\"p-%d\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_poison\","
                      "\"user_id\":\"u1\",\"timestamp\":\"%s\",\"properties\":{\"feature\":\"export\",\"seats\":%s}}",
                      i % 500 ? "," : "", i, ts, seats);
        if (i % 500 == 499 || i == N - 1) {
            cs_buf_adds(&b, "]");
            post(&s, b.data);
        }
    }
    cs_buf_free(&b);
    assert_int_equal(th_wait_caught_up(&s, 120000), 0);
    /* The poison is in the DLQ with its reason, rule and attempts ... */
    cJSON *j;
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq?kind=event", NULL, &j), 200);
    cJSON *items = cJSON_GetObjectItem(j, "items");
    assert_int_equal(cJSON_GetArraySize(items), 1);
    cJSON *it = items->child;
    assert_string_equal(cJSON_GetObjectItem(it, "event_id")->valuestring, "p-5000");
    assert_string_equal(cJSON_GetObjectItem(it, "reason")->valuestring, "rule_error");
    assert_string_equal(cJSON_GetObjectItem(it, "status")->valuestring, "dead");
    assert_non_null(strstr(cJSON_GetObjectItem(it, "message")->valuestring, "big-seats"));
    assert_int_equal((int)cJSON_GetObjectItem(it, "attempts")->valuedouble, 3);
    char dlq_id[64];
    snprintf(dlq_id, sizeof dlq_id, "%s", cJSON_GetObjectItem(it, "id")->valuestring);
    cJSON_Delete(j);
    /* ... and every other event was applied: a task for each seats == 4
     * (i % 5 == 4: 2,000 of them, on both sides of the poison). */
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM tasks WHERE rule_id='big-seats'"), 2000);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM signal_history WHERE cause_event_id='p-5000'"), 0);
    assert_int_equal(metric(&s, "crmstream_pipeline_events_total{result=\"poison\"}"), 1);
    /* A second poison, on another account, for --all below. */
    char ts2[40], extra_ev[400];
    cs_fmt_time_ms(T0 + 20000 * 1000000LL, ts2, sizeof ts2);
    snprintf(extra_ev, sizeof extra_ev,
             "{\"event_id\":\"p-extra\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_other\",\"user_id\":\"u2\","
             "\"timestamp\":\"%s\",\"properties\":{\"feature\":\"export\",\"seats\":\"lots\"}}",
             ts2);
    post(&s, extra_ev);
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM dead_events WHERE status='dead'"), 2);
    /* On Kafka the dead letters are in `events.dlq` too, once each. */
    char id_extra[64];
    char *ids = dump(&s, "SELECT id FROM dead_events WHERE event_id='p-extra'");
    snprintf(id_extra, sizeof id_extra, "%.*s", (int)strcspn(ids, "\n"), ids);
    free(ids);
    expect_dlq_topic(2, dlq_id, id_extra);

    /* Fix the rule, redrive: applied exactly once. */
    write_file(rpath, rules_fixed);
    assert_int_equal(th_req(&s, "POST", "/api/v1/rules/reload", "", NULL), 200);
    char body[200];
    snprintf(body, sizeof body, "{\"kind\":\"event\",\"ids\":[\"%s\"]}", dlq_id);
    assert_int_equal(th_req(&s, "POST", "/api/v1/dlq/redrive", body, &j), 200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "redriven")->valuedouble, 1);
    cJSON_Delete(j);
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM tasks WHERE rule_id='big-seats'"), 2001);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT status FROM dead_events WHERE id='%s'", dlq_id);
    char *st = dump(&s, sql);
    assert_string_equal(st, "redriven\n");
    free(st);

    /* A second redrive (the CLI this time) changes nothing. */
    char cmd[900];
    snprintf(cmd, sizeof cmd, "%s dlq redrive --kind event --target %s %s 2>&1", th_bin(), s.target, dlq_id);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[512] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, "redriven 0"));
    assert_non_null(strstr(out, "already redriven"));
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM tasks WHERE rule_id='big-seats'"), 2001);
    /* --all redrives what is still dead: the second poison. */
    snprintf(cmd, sizeof cmd, "%s dlq redrive --kind event --all --target %s 2>&1", th_bin(), s.target);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, "redriven 1")); /* p-extra; p-5000 is redriven already */
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM dead_events WHERE status='redriven'"), 2);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM signal_history WHERE cause_event_id='p-extra'") > 0, 1);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM tasks WHERE rule_id='big-seats'"), 2001);
    /* Unknown ids are named; bad kinds are refused. */
    assert_int_equal(th_req(&s, "POST", "/api/v1/dlq/redrive", "{\"kind\":\"event\",\"ids\":[\"dlq_0_999999\"]}", &j),
                     200);
    assert_string_equal(cJSON_GetObjectItem(j, "not_found")->child->valuestring, "dlq_0_999999");
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "POST", "/api/v1/dlq/redrive", "{\"kind\":\"parcel\",\"all\":true}", NULL), 422);

    /* SIGKILL and restart: the state rebuilt from the log skips the
     * dead-lettered offset and counts the redriven copy once. */
    th_stop(&s, SIGKILL);
    assert_int_equal(th_start(&s), 0);
    owns_all(&s);
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM tasks WHERE rule_id='big-seats'"), 2001);
    assert_int_equal(count_rows(&s, "SELECT count(*) FROM dead_events"), 2);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
}

/* A batch is bounded by time as well as by size: with 1 ms per batch,
 * 5,000 waiting events (far more than 1 ms of work) take several
 * transactions, and all are applied. */
static void test_batch_bounded_by_time(void **state)
{
    (void)state;
    th_server s;
    skip_without_bus();
    pinit(&s, "pipeline:\n  workers: 1\n  batch_max_events: 100000\n  batch_max_ms: 1\n");
    assert_int_equal(th_start(&s), 0);
    owns_all(&s);
    assert_int_equal(th_req(&s, "POST", "/api/v1/pipeline/pause", "", NULL), 200);
    cs_buf b;
    cs_buf_init(&b);
    for (int i = 0; i < 5000; i++) {
        if (i % 500 == 0) {
            cs_buf_reset(&b);
            cs_buf_adds(&b, "[");
        }
        char ts[40];
        cs_fmt_time_ms(T0 + (int64_t)i * 1000, ts, sizeof ts);
        cs_buf_printf(&b,
                      "%s{\"event_id\":\"t-%d\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_t\",\"user_id\":\"u1\","
                      "\"timestamp\":\"%s\",\"properties\":{\"feature\":\"export\"}}",
                      i % 500 ? "," : "", i, ts);
        if (i % 500 == 499) {
            cs_buf_adds(&b, "]");
            post(&s, b.data);
        }
    }
    cs_buf_free(&b);
    long tx0 = metric(&s, "crmstream_store_transaction_seconds_count");
    assert_int_equal(th_req(&s, "POST", "/api/v1/pipeline/resume", "", NULL), 200);
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    assert_int_equal(metric(&s, "crmstream_pipeline_events_total{result=\"applied\"}"), 5000);
    long tx = metric(&s, "crmstream_store_transaction_seconds_count") - tx0;
    printf("# 5000 events in %ld transactions of at most 1 ms of work\n", tx);
    assert_true(tx >= 3);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
}

/* pipeline.linger_ms: events that arrive one by one share transactions.
 * 40 single-event requests, each acknowledged before the next is sent:
 * with a 300 ms linger the account worker commits at most once per 300 ms
 * of the sending time (+2 for the edges), not once per event; the leads
 * lane's own periodic work (SLA sweep 1/s, outbox relay 4/s) is allowed
 * for on top. Every event is applied. */
static void test_linger_shares_transactions(void **state)
{
    (void)state;
    th_server s;
    skip_without_bus();
    pinit(&s, "pipeline:\n  workers: 1\n  linger_ms: 300\n");
    assert_int_equal(th_start(&s), 0);
    owns_all(&s);
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    long tx0 = metric(&s, "crmstream_store_transaction_seconds_count");
    long ap0 = metric(&s, "crmstream_pipeline_events_total{result=\"applied\"}");
    int64_t t0 = cs_mono_us();
    for (int i = 0; i < 40; i++) {
        char body[512], ts[40];
        cs_fmt_time_ms(T0 + (int64_t)i * 1000, ts, sizeof ts);
        snprintf(body, sizeof body,
                 "{\"event_id\":\"l-%d\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_l%d\",\"user_id\":\"u1\","
                 "\"timestamp\":\"%s\",\"properties\":{\"feature\":\"export\"}}",
                 i, i % 3, ts);
        post(&s, body);
    }
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    double ms = (double)(cs_mono_us() - t0) / 1000.0;
    assert_int_equal(metric(&s, "crmstream_pipeline_events_total{result=\"applied\"}") - ap0, 40);
    long tx = metric(&s, "crmstream_store_transaction_seconds_count") - tx0;
    long bound = (long)(ms / 300.0) + 2 + (long)(ms / 250.0) + 2;
    printf("# 40 single events over %.0f ms: %ld transactions (bound %ld)\n", ms, tx, bound);
    assert_true(tx <= bound && tx < 40);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
}

/* Per thread of the server: its name, nice value (stat field 19),
 * scheduling policy (field 41) and I/O priority. */
struct th_attr {
    char comm[64];
    int  nice, policy, ioprio;
};

static int server_threads(const th_server *s, struct th_attr *out, int max)
{
    char path[128];
    snprintf(path, sizeof path, "/proc/%d/task", (int)s->pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < max) {
        if (de->d_name[0] == '.') continue;
        struct th_attr *a = &out[n];
        char f[600], stat[1024] = "";
        snprintf(f, sizeof f, "%s/%s/comm", path, de->d_name);
        FILE *fp = fopen(f, "r");
        if (!fp) continue;
        if (!fgets(a->comm, sizeof a->comm, fp)) a->comm[0] = 0;
        fclose(fp);
        a->comm[strcspn(a->comm, "\n")] = 0;
        snprintf(f, sizeof f, "%s/%s/stat", path, de->d_name);
        fp = fopen(f, "r");
        if (!fp) continue;
        if (!fgets(stat, sizeof stat, fp)) stat[0] = 0;
        fclose(fp);
        char *p = strrchr(stat, ')'); /* fields after the ") " that ends comm */
        assert_non_null(p);
        int field = 2;
        a->nice = a->policy = 99;
        for (char *tok = strtok(p + 2, " "); tok; tok = strtok(NULL, " ")) {
            if (++field == 19) a->nice = atoi(tok);
            else if (field == 41) a->policy = atoi(tok);
        }
        a->ioprio = (int)syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, atoi(de->d_name));
        n++;
    }
    closedir(d);
    return n;
}

/* pipeline.nice: the account workers' threads run at that nice value, the
 * leads lane and the HTTP threads at the process's. */
static void test_nice_applies_to_account_workers(void **state)
{
    (void)state;
    th_server s;
    skip_without_bus();
    pinit(&s, "pipeline:\n  workers: 2\n  nice: 7\n  sched_idle: 0\n");
    assert_int_equal(th_start(&s), 0);
    owns_all(&s);
    struct th_attr t[256];
    int n = server_threads(&s, t, 256), workers = 0, lanes = 0, others = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(t[i].policy, SCHED_OTHER);
        if (strcmp(t[i].comm, "cs-pipeline") == 0) workers++, assert_int_equal(t[i].nice, 7);
        else if (strcmp(t[i].comm, "cs-leads-lane") == 0) lanes++, assert_int_equal(t[i].nice, 0);
        else others++, assert_int_equal(t[i].nice, 0);
    }
    assert_int_equal(workers, 2);
    assert_int_equal(lanes, 1);
    assert_true(others > 0);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
}

/* pipeline.sched_idle: the account workers' threads under SCHED_IDLE with
 * best-effort I/O (class 2, level 4), everything else as the process;
 * and the pipeline still applies what ingest acknowledges. */
static void test_sched_idle_applies_to_account_workers(void **state)
{
    (void)state;
    th_server s;
    skip_without_bus();
    pinit(&s, "pipeline:\n  workers: 2\n  sched_idle: 1\n");
    assert_int_equal(th_start(&s), 0);
    owns_all(&s);
    struct th_attr t[256];
    int n = server_threads(&s, t, 256), workers = 0, others = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].comm, "cs-pipeline") == 0) {
            workers++;
            assert_int_equal(t[i].policy, SCHED_IDLE);
            assert_int_equal(t[i].ioprio, (2 << 13) | 4);
        } else {
            others++;
            assert_int_equal(t[i].policy, SCHED_OTHER);
        }
    }
    assert_int_equal(workers, 2);
    assert_true(others > 1);
    long ap0 = metric(&s, "crmstream_pipeline_events_total{result=\"applied\"}");
    post(&s, "{\"event_id\":\"si-1\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_si\",\"user_id\":\"u1\","
             "\"properties\":{\"feature\":\"export\"}}");
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    assert_int_equal(metric(&s, "crmstream_pipeline_events_total{result=\"applied\"}") - ap0, 1);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
}

/* ------------------------------------------------------- worker count */

/* Every table, every column but insertion order (seq) and wall-clock
 * measurements, sorted: two stores with equal dumps hold the same CRM. */
static char *dump_all(th_server *s)
{
    static const char *const tables[] = {"accounts", "contacts", "reps", "leads", "tasks", "alerts", "signals",
                                         "signal_history", "audit", "dead_events", "outbox", "counters",
                                         "consumer_offsets", NULL};
    static const char *const wall[] = {"seq", "route_latency_ms", "created_at_ms", "next_attempt_ms",
                                       "lease_until_ms", "first_failed_at", "last_failed_at", NULL};
    cs_buf all;
    cs_buf_init(&all);
    char path[600];
    snprintf(path, sizeof path, "%s/data/crm.sqlite", s->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (int t = 0; tables[t]; t++) {
        char sql[4096];
        snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info('%s')", tables[t]);
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        cs_buf cols;
        cs_buf_init(&cols);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *c = (const char *)sqlite3_column_text(st, 0);
            int skip = 0;
            for (int w = 0; wall[w] && !skip; w++) skip = strcmp(c, wall[w]) == 0;
            if (!skip) cs_buf_printf(&cols, "%s\"%s\"", cols.len ? "," : "", c);
        }
        sqlite3_finalize(st);
        cs_buf_add(&cols, "", 1);
        snprintf(sql, sizeof sql, "SELECT %s FROM %s ORDER BY %s", cols.data, tables[t], cols.data);
        cs_buf_free(&cols);
        char *d = dump(s, sql);
        cs_buf_printf(&all, "== %s\n%s", tables[t], d);
        free(d);
    }
    sqlite3_close(db);
    cs_buf_add(&all, "", 1);
    return all.data;
}

static void test_one_and_two_workers_give_identical_tables(void **state)
{
    (void)state;
    char rules[700], cwd[512], extra[1000];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(rules, sizeof rules, "%s/config/rules.yaml", cwd);
    th_server a, b;
    snprintf(extra, sizeof extra, "rules: %s\ningest:\n  max_age: 0\npipeline:\n  workers: 1\n", rules);
    th_init(&a, extra);
    snprintf(extra, sizeof extra, "rules: %s\ningest:\n  max_age: 0\npipeline:\n  workers: 2\n  snapshot_every_events: 500\n", rules);
    th_init(&b, extra);
    assert_int_equal(th_start(&a), 0);
    /* A realistic world: leads, trials, usage, escalations, identify and
     * group calls, duplicates, late and out-of-order events. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s simulate --target %s --days 20 --accounts 120 --seed 7 --rate 100000 "
             "--duration 120 >/dev/null 2>&1", th_bin(), a.target);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(th_wait_caught_up(&a, 120000), 0);
    th_stop(&a, SIGTERM);
    /* B gets A's log (the same stream, byte for byte) and no store. */
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/data' && cp -r '%s/data/log' '%s/data/'", b.dir, a.dir, b.dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(th_start(&b), 0);
    assert_int_equal(th_wait_caught_up(&b, 120000), 0);
    th_stop(&b, SIGTERM);
    long leads = count_rows(&a, "SELECT count(*) FROM leads");
    long owned = count_rows(&a, "SELECT count(DISTINCT owner) FROM leads");
    long sigs = count_rows(&a, "SELECT count(*) FROM signal_history");
    printf("# stream: %ld leads over %ld owners, %ld signal changes, %ld tasks, %ld alerts\n", leads, owned, sigs,
           count_rows(&a, "SELECT count(*) FROM tasks"), count_rows(&a, "SELECT count(*) FROM alerts"));
    assert_true(leads > 20);
    assert_int_equal(owned, 3);
    assert_true(sigs > 100);
    char *da = dump_all(&a), *db = dump_all(&b);
    if (strcmp(da, db) != 0) {
        /* Say where: the first differing line. */
        const char *x = da, *y = db;
        while (*x && *x == *y) x++, y++;
        while (x > da && x[-1] != '\n') x--, y--;
        fail_msg("1 worker and 2 workers differ at:\n  1: %.300s\n  2: %.300s", x, y);
    }
    free(da);
    free(db);
    th_cleanup(&a);
    th_cleanup(&b);
}

/* --------------------------------------------------------------- T11 */

static void post_stream(th_server *s)
{
    /* 40 accounts × (a lead, a trial, 10 feature uses, an escalation). */
    cs_buf b;
    cs_buf_init(&b);
    for (int a = 0; a < 40; a++) {
        cs_buf_reset(&b);
        cs_buf_adds(&b, "[");
        char ts[40];
        for (int i = 0; i < 13; i++) {
            cs_fmt_time_ms(T0 + (int64_t)(a * 13 + i) * 60000000, ts, sizeof ts);
            const char *type = i == 0 ? "LeadCreated" : i == 1 ? "TrialActivated" : i == 12 ? "SupportCaseEscalated"
                                                                                           : "FeatureUsed";
            cs_buf_printf(&b,
                          "%s{\"event_id\":\"k-%d-%d\",\"type\":\"%s\",\"account_id\":\"acc_%d\",\"user_id\":\"u%d\","
                          "\"timestamp\":\"%s\",\"properties\":{\"feature\":\"f%d\",\"email\":\"p%d@corp%d.example\","
                          "\"company\":\"Corp %d\",\"case_id\":\"c%d\",\"severity\":\"high\",\"plan_tier\":\"trial\"}}",
                          i ? "," : "", a, i, type, a, i % 3, ts, i % 4, a, a, a, a);
        }
        cs_buf_adds(&b, "]");
        post(s, b.data);
    }
    cs_buf_free(&b);
}

static const char *const effect_queries[] = {
    "SELECT event_id, owner, status FROM leads ORDER BY event_id",
    "SELECT account_id, name, value, cause_event_id FROM signal_history ORDER BY 1, 2, 4",
    "SELECT account_id, name, value FROM signals ORDER BY 1, 2",
    "SELECT id, account_id, rule_id FROM tasks ORDER BY id",
    "SELECT id, dedupe_key FROM alerts ORDER BY id",
    NULL};

static void test_t11_kill_points(void **state)
{
    (void)state;
    char rules[700], cwd[512], extra[1000];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(rules, sizeof rules, "%s/config/rules.yaml", cwd);
    /* Snapshots every 20 events: the restart after each kill restores
     * them and replays the log after them. */
    snprintf(extra, sizeof extra, "rules: %s\npipeline:\n  workers: 2\n  batch_max_events: 10\n  snapshot_every_events: 20\n",
             rules);
    /* The uninterrupted run. */
    th_server ref;
    skip_without_bus();
    pinit(&ref, extra);
    assert_int_equal(th_start(&ref), 0);
    owns_all(&ref);
    post_stream(&ref);
    assert_int_equal(th_wait_caught_up(&ref, 60000), 0);
    th_stop(&ref, SIGTERM);
    assert_int_equal(count_rows(&ref, "SELECT count(*) FROM leads"), 40);
    static const char *const points[] = {"after_fetch", "mid_write", "after_commit", "after_all"};
    for (int k = 0; k < 4; k++) {
        th_server s;
        pinit(&s, extra);
        assert_int_equal(th_start(&s), 0);
        /* Pause, take every event durably, then arm the fault and let the
         * pipeline run into it: the 25th batch (of ~60, 10 events each, over
         * the threads) dies at the point, after some partition has passed
         * 20 events and so has a snapshot. */
        assert_int_equal(th_req(&s, "POST", "/api/v1/pipeline/pause", "", NULL), 200);
        post_stream(&s);
        th_stop(&s, SIGTERM);
        char fault[64];
        snprintf(fault, sizeof fault, "%s:25", points[k]);
        setenv("CRMSTREAM_FAULT", fault, 1);
        int started = th_start(&s);
        unsetenv("CRMSTREAM_FAULT");
        if (started == 0) { /* it may die before or after it answers /healthz */
            int st = 0;
            pid_t w = 0;
            for (int i = 0; i < 6000 && w == 0; i++) {
                w = waitpid(s.pid, &st, WNOHANG);
                if (w == 0) usleep(10000);
            }
            assert_int_equal(w, s.pid);
            assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
            s.pid = -1;
        }
        assert_int_equal(th_start(&s), 0);
        owns_all(&s);
        assert_int_equal(th_wait_caught_up(&s, 60000), 0);
        th_stop(&s, SIGTERM);
        /* 0 lost, 0 duplicates: every effect equals the uninterrupted run. */
        for (int q = 0; effect_queries[q]; q++) {
            char *x = dump(&ref, effect_queries[q]), *y = dump(&s, effect_queries[q]);
            if (strcmp(x, y) != 0) fail_msg("%s: %s differs from the uninterrupted run", points[k], effect_queries[q]);
            free(x);
            free(y);
        }
        assert_int_equal(count_rows(&s, "SELECT count(*) FROM (SELECT object, object_id, field, new_value, "
                                        "cause_event_id, rule_id FROM audit GROUP BY 1, 2, 3, 4, 5, 6 HAVING count(*) > 1)"),
                         0);
        /* ... and the restart restored snapshots rather than the whole log. */
        char logp[600], line[2048];
        snprintf(logp, sizeof logp, "%s/serve.log", s.dir);
        FILE *lf = fopen(logp, "r");
        assert_non_null(lf);
        int restored = 0;
        while (fgets(line, sizeof line, lf)) {
            const char *x = strstr(line, "\"snapshots\":");
            if (x && x[12] >= '1' && x[12] <= '9') restored = 1;
        }
        fclose(lf);
        assert_true(restored);
        printf("# T11 %s: killed, restarted from snapshots, effects identical\n", points[k]);
        th_cleanup(&s);
    }
    th_cleanup(&ref);
}

/* `crmstream replay --rebuild` with the server stopped (on Kafka the log is
 * the cluster's and the command joins the consumer group to re-apply):
 * every signal is recomputed from the log and equals what the live run
 * wrote; leads, tasks and alerts are not written twice. */
static void test_replay_rebuild_offline(void **state)
{
    (void)state;
    skip_without_bus();
    char rules[700], cwd[512], extra[1000];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(rules, sizeof rules, "%s/config/rules.yaml", cwd);
    snprintf(extra, sizeof extra, "rules: %s\n", rules);
    th_server s;
    pinit(&s, extra);
    assert_int_equal(th_start(&s), 0);
    owns_all(&s);
    post_stream(&s);
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    th_stop(&s, SIGTERM);
    char *before[8];
    for (int q = 0; effect_queries[q]; q++) before[q] = dump(&s, effect_queries[q]);
    assert_true(count_rows(&s, "SELECT count(*) FROM signal_history") > 40);
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "%s replay --rebuild --config %s/config.yaml --data %s/data 2>&1", th_bin(), s.dir, s.dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    if (st != 0) fail_msg("replay exited %d: %s", st, out);
    assert_non_null(strstr(out, "-> 0 (log end"));
    for (int q = 0; effect_queries[q]; q++) {
        char *after = dump(&s, effect_queries[q]);
        if (strcmp(before[q], after) != 0) fail_msg("replay --rebuild changed: %s", effect_queries[q]);
        free(after);
        free(before[q]);
    }
    th_cleanup(&s);
}

int main(void)
{
    T0 = (cs_now_us() / 1000000 - 6 * 3600) * 1000000; /* recent, inside the plausible window */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poison_isolated_then_redriven_once),
        cmocka_unit_test(test_batch_bounded_by_time),
        cmocka_unit_test(test_linger_shares_transactions),
        cmocka_unit_test(test_nice_applies_to_account_workers),
        cmocka_unit_test(test_sched_idle_applies_to_account_workers),
        cmocka_unit_test(test_one_and_two_workers_give_identical_tables),
        cmocka_unit_test(test_t11_kill_points),
        cmocka_unit_test(test_replay_rebuild_offline),
    };
    int rc = cmocka_run_group_tests_name("pipeline_embedded", tests, NULL, NULL);
    /* The same suite on Apache Kafka. */
    const struct CMUnitTest on_kafka[] = {
        cmocka_unit_test(test_poison_isolated_then_redriven_once),
        cmocka_unit_test(test_batch_bounded_by_time),
        cmocka_unit_test(test_t11_kill_points),
        cmocka_unit_test(test_replay_rebuild_offline),
    };
    if (tkafka_start(&broker, why_skip, sizeof why_skip) == 0) kafka_boot = broker.bootstrap;
    else if (!why_skip[0]) snprintf(why_skip, sizeof why_skip, "no Kafka broker");
    rc |= cmocka_run_group_tests_name("pipeline_kafka", on_kafka, NULL, NULL);
    tkafka_stop(&broker);
    return rc;
}
