/*
 * Integration: the backtest on a real Apache Kafka broker (bus: kafka://).
 * The server replays its Kafka topics through candidate rules in a dry
 * pipeline (no consumer group joined, no group offsets committed): the same
 * exact differences as on the embedded log — one territory rule widened
 * (the GB leads change owner) and an alert threshold lowered (alerts and
 * tasks added) — and the live pipeline's committed group offsets on Kafka
 * are the same before and after.
 *
 * Without Java or the Kafka jars (`make deps`) it SKIPs.
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
#include "kafkaserver.c"

#include "bus/bus.h"
#include "core/config.h"
#include "pipeline/pipeline.h"

static tkafka broker;
static int have_broker;
static char why_skip[512];
static int64_t T0;

static const char live_rules[] =
    "rules:\n"
    "  - id: territory-emea\n"
    "    when: event.type == \"LeadCreated\" && lead.country in [\"DE\", \"FR\"]\n"
    "    actions:\n"
    "      - route_lead: {strategy: round_robin, pool: emea}\n"
    "  - id: territory-rest\n"
    "    when: event.type == \"LeadCreated\"\n"
    "    actions:\n"
    "      - route_lead: {strategy: round_robin, pool: row}\n"
    "  - id: escalation\n"
    "    when: event.type == \"SupportCaseEscalated\" && event.properties.priority >= 3\n"
    "    actions:\n"
    "      - raise_alert: {kind: escalation, severity: warning, dedupe_key: \"esc:{{ event.properties.case_id }}\",\n"
    "                      cooldown: 1m}\n"
    "      - create_task: {title: \"Look at case {{ event.properties.case_id }}\", due_in: 2h}\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void post(th_server *s, const char *body)
{
    int st = th_req(s, "POST", "/v1/events", body, NULL);
    assert_int_equal(st, 200);
}

static void lead_in(th_server *s, const char *id, const char *country, int minutes)
{
    char ts[40], body[400];
    cs_fmt_time_ms(T0 + (int64_t)minutes * 60000000, ts, sizeof ts);
    snprintf(body, sizeof body,
             "{\"event_id\":\"%s\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%s\",\"timestamp\":\"%s\","
             "\"properties\":{\"email\":\"%s@example.com\",\"country\":\"%s\"}}",
             id, id, ts, id, country);
    post(s, body);
}

static void escalate(th_server *s, const char *id, const char *acc, int minutes, int priority)
{
    char ts[40], body[400];
    cs_fmt_time_ms(T0 + (int64_t)minutes * 60000000, ts, sizeof ts);
    snprintf(body, sizeof body,
             "{\"event_id\":\"%s\",\"type\":\"SupportCaseEscalated\",\"account_id\":\"%s\",\"timestamp\":\"%s\","
             "\"properties\":{\"case_id\":\"%s\",\"priority\":%d}}",
             id, acc, ts, id, priority);
    post(s, body);
}

static double num(const cJSON *j, const char *kind, const char *field)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, kind), field);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* The live pipeline's committed group offsets on Kafka, summed. */
static int64_t committed(cs_bus *bus)
{
    int64_t sum = 0;
    for (int p = 0; p < bus->partitions; p++) {
        int64_t c = bus->ops->committed(bus, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, p);
        sum += c > 0 ? c : 0;
    }
    int64_t l = bus->ops->committed(bus, CS_CONSUMER_PIPELINE, CS_TOPIC_LEADS, 0);
    return sum * 1000 + (l > 0 ? l : 0);
}

static void test_backtest_on_kafka(void **state)
{
    (void)state;
    if (!have_broker) {
        fprintf(stderr, "# SKIP: %s\n", why_skip);
        skip();
    }
    T0 = cs_now_us() - 6 * 3600LL * 1000000;
    th_server s;
    char yaml[900], rpath[300];
    snprintf(yaml, sizeof yaml, "bus: kafka://%s\nkafka:\n  topic_prefix: bt-\n  timeout_ms: 15000\n",
             broker.bootstrap);
    th_init(&s, yaml);
    snprintf(rpath, sizeof rpath, "%s/rules.yaml", s.dir);
    write_file(rpath, live_rules);
    char extra[400];
    snprintf(extra, sizeof extra, "rules: %s\n", rpath);
    FILE *f = fopen(strcat(strcpy((char[320]){0}, s.dir), "/config.yaml"), "a");
    fputs(extra, f);
    fclose(f);
    assert_int_equal(th_start(&s), 0);

    assert_true(th_req(&s, "POST", "/api/v1/reps", "{\"id\":\"rep_a\",\"pools\":[\"emea\"]}", NULL) / 100 == 2);
    assert_true(th_req(&s, "POST", "/api/v1/reps", "{\"id\":\"rep_b\",\"pools\":[\"row\"]}", NULL) / 100 == 2);
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);
    static const char *const ids[] = {"t1", "t2", "t3", "t4", "t5", "t6", "t7"};
    static const char *const cc[] = {"DE", "GB", "US", "FR", "GB", "US", "GB"};
    for (int i = 0; i < 7; i++) lead_in(&s, ids[i], cc[i], 10 * (i + 1));
    escalate(&s, "c1", "acc_1", 0, 1);
    escalate(&s, "c2", "acc_1", 10, 2);
    escalate(&s, "c3", "acc_2", 20, 3);
    escalate(&s, "c4", "acc_2", 30, 4);
    escalate(&s, "c5", "acc_3", 300, 2);
    assert_int_equal(th_wait_leads(&s, 7, 60000), 7);
    assert_int_equal(th_wait_caught_up(&s, 60000), 0);

    cs_config cfg;
    cs_config_defaults(&cfg);
    cfg.partitions = 4;
    free(cfg.kafka_topic_prefix);
    cfg.kafka_topic_prefix = cs_strdup("bt-");
    cfg.kafka_timeout_ms = 15000;
    char url[200], err[1024];
    snprintf(url, sizeof url, "kafka://%s", broker.bootstrap);
    cs_bus *bus = cs_bus_kafka_open(url, &cfg, err, sizeof err);
    assert_non_null(bus);
    int64_t before = committed(bus);

    char cand[sizeof live_rules + 16];
    snprintf(cand, sizeof cand, "%s", live_rules);
    char *at = strstr(cand, "[\"DE\", \"FR\"]");
    assert_non_null(at);
    at++;
    memmove(at + 6, at, strlen(at) + 1);
    memcpy(at, "\"GB\", ", 6);
    at = strstr(cand, "priority >= 3");
    assert_non_null(at);
    at[12] = '2';
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "rules", cand);
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    cJSON *j;
    assert_int_equal(th_req(&s, "POST", "/api/v1/backtest", body, &j), 200);
    cJSON_free(body);
    assert_int_equal((int)num(j, "leads", "rerouted"), 3);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "leads"), "examples"))
    {
        const char *eid = cJSON_GetObjectItem(e, "event_id")->valuestring;
        assert_true(strcmp(eid, "t2") == 0 || strcmp(eid, "t5") == 0 || strcmp(eid, "t7") == 0);
        assert_string_equal(cJSON_GetObjectItem(e, "before")->valuestring, "rep_b");
        assert_string_equal(cJSON_GetObjectItem(e, "after")->valuestring, "rep_a");
    }
    assert_int_equal((int)num(j, "alerts", "added"), 2);
    assert_int_equal((int)num(j, "alerts", "removed"), 0);
    assert_int_equal((int)num(j, "tasks", "added"), 2);
    assert_int_equal((int)num(j, "tasks", "removed"), 0);
    assert_int_equal((int)cJSON_GetObjectItem(j, "lead_events")->valuedouble, 7);
    cJSON_Delete(j);
    /* The live consumer group's offsets did not move (nothing new was sent). */
    assert_int_equal(committed(bus), before);
    bus->ops->close(bus);
    cs_config_free(&cfg);
    assert_int_equal(th_stop(&s, SIGTERM), 0);
    th_cleanup(&s);
}

static int setup(void **state)
{
    (void)state;
    have_broker = tkafka_start(&broker, why_skip, sizeof why_skip) == 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tkafka_stop(&broker);
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backtest_on_kafka),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
