/*
 * Integration: `crmstream serve --role` (docs/DEPLOY.md).
 *
 *  - a role subset on the embedded bus (or with SQLite) is refused with a
 *    clear error, as is an unknown role;
 *  - on a real Apache Kafka broker and a PostgreSQL store: a process with
 *    --role ingest acknowledges events but applies none (Kafka's end
 *    offsets grow, no lead appears, the pipeline endpoints answer 404
 *    role_not_served); a second process with --role pipeline on the same
 *    Kafka and PostgreSQL applies every one of them exactly once (the
 *    leads show through the ingest process's REST API), and refuses ingest.
 *
 * Without Java or the Kafka jars (`make deps`) the Kafka part SKIPs.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.c"
#include "kafkaserver.c"
#include "pgserver.c"

#include "bus/bus.h"
#include "core/config.h"
#include "core/logging.h"

static tkafka broker;
static int have_broker;
static char why_skip[512];

/* Run serve with args; the exit status and stderr (into err). */
static int run_serve(const char *yaml, const char *const *args, char *err, size_t errlen)
{
    th_server s;
    th_init(&s, yaml);
    char cmd[2000], data[400];
    snprintf(data, sizeof data, "%s/data", s.dir);
    int n = snprintf(cmd, sizeof cmd, "'%s' serve --config '%s/config.yaml' --data '%s' --http 127.0.0.1:0", th_bin(),
                     s.dir, data);
    for (int i = 0; args[i]; i++) n += snprintf(cmd + n, sizeof cmd - (size_t)n, " %s", args[i]);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " 2>'%s/err.txt' >/dev/null </dev/null", s.dir);
    int st = system(cmd);
    char path[400];
    snprintf(path, sizeof path, "%s/err.txt", s.dir);
    FILE *f = fopen(path, "r");
    size_t got = f ? fread(err, 1, errlen - 1, f) : 0;
    err[got] = 0;
    if (f) fclose(f);
    th_cleanup(&s);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_subset_refused_without_kafka(void **state)
{
    (void)state;
    char err[2000];
    const char *ingest[] = {"--role", "ingest", NULL};
    assert_int_equal(run_serve(NULL, ingest, err, sizeof err), 2);
    assert_non_null(strstr(err, "--role: running only some roles needs bus: kafka://"));
    assert_non_null(strstr(err, "PostgreSQL store"));
    /* Kafka with SQLite: still one process's store. */
    assert_int_equal(run_serve("bus: kafka://127.0.0.1:1\n", ingest, err, sizeof err), 2);
    assert_non_null(strstr(err, "PostgreSQL store"));
    const char *bad[] = {"--role", "ingest,web", NULL};
    assert_int_equal(run_serve(NULL, bad, err, sizeof err), 2);
    assert_non_null(strstr(err, "unknown role \"web\""));
    const char *empty[] = {"--role", "''", NULL};
    assert_int_equal(run_serve(NULL, empty, err, sizeof err), 2);
    assert_non_null(strstr(err, "unknown role \"\""));
}

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
                      "\"timestamp\":\"%s\",\"properties\":{\"email\":\"p%d@co%d.example\",\"company\":\"Co %d\"}}",
                      i ? "," : "", prefix, first + i, (first + i) % 13, ts, first + i, (first + i) % 13,
                      (first + i) % 13);
    cs_buf_adds(&b, "]");
    return cs_buf_steal(&b);
}

static int post_accepted(th_server *s, const char *body)
{
    cJSON *j;
    int st = th_req(s, "POST", "/v1/events", body, &j);
    int n = -st;
    if (st == 200) {
        cJSON *v = cJSON_GetObjectItem(j, "accepted");
        n = cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
    }
    cJSON_Delete(j);
    return n;
}

/* The error code of a refused request ("" if none). */
static void error_code(th_server *s, const char *method, const char *path, const char *body, int *status, char *code,
                       size_t len)
{
    cJSON *j = NULL;
    *status = th_req(s, method, path, body, &j);
    cJSON *e = cJSON_GetObjectItem(j, "error");
    cJSON *c = cJSON_IsObject(e) ? cJSON_GetObjectItem(e, "code") : e;
    snprintf(code, len, "%s", cJSON_IsString(c) ? c->valuestring : "");
    cJSON_Delete(j);
}

static int64_t events_end(cs_bus *bus)
{
    int64_t n = 0;
    for (int p = 0; p < bus->partitions; p++) n += bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
    return n;
}

static th_server ing, pipe_srv;
static tpg pg;

static int roles_teardown(void **state)
{
    (void)state;
    if (ing.dir[0]) th_cleanup(&ing);
    if (pipe_srv.dir[0]) th_cleanup(&pipe_srv);
    memset(&ing, 0, sizeof ing);
    memset(&pipe_srv, 0, sizeof pipe_srv);
    if (pg.dir[0]) tpg_destroy(&pg);
    return 0;
}

static void dump_log(th_server *s)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s/serve.log' | sed 's/^/# /' >&2", s->dir);
    if (system(cmd) != 0) fprintf(stderr, "# no serve.log\n");
}

static void test_ingest_and_pipeline_processes(void **state)
{
    (void)state;
    if (!have_broker) {
        fprintf(stderr, "# SKIP: %s\n", why_skip);
        skip();
    }
    assert_int_equal(tpg_start(&pg), 0);
    char uri[300], yaml[900];
    assert_int_equal(tpg_create_db(&pg, "roles", uri, sizeof uri), 0);
    snprintf(yaml, sizeof yaml,
             "bus: kafka://%s\nstore: \"%s\"\nlog:\n  partitions: 4\nkafka:\n  topic_prefix: roles-\n"
             "  timeout_ms: 15000\n",
             broker.bootstrap, uri);

    th_init(&ing, yaml);
    const char *r_ingest[] = {"--role", "ingest", NULL};
    if (th_start_args(&ing, r_ingest) != 0) dump_log(&ing);
    assert_true(*ing.target);

    /* The test's own view of Kafka's end offsets. */
    cs_config cfg;
    cs_config_defaults(&cfg);
    cfg.partitions = 4;
    free(cfg.kafka_topic_prefix);
    cfg.kafka_topic_prefix = cs_strdup("roles-");
    cfg.kafka_timeout_ms = 15000;
    char url[200], err[1024];
    snprintf(url, sizeof url, "kafka://%s", broker.bootstrap);
    cs_bus *bus = cs_bus_kafka_open(url, &cfg, err, sizeof err);
    assert_non_null(bus);

    /* Ingest only: acknowledged, in Kafka, applied by nobody. */
    char *b1 = lead_batch("r", 0, 40), *b2 = lead_batch("r", 40, 40);
    assert_int_equal(post_accepted(&ing, b1), 40);
    int64_t end1 = -1;
    for (int i = 0; i < 200 && end1 != 40; i++) { /* the watcher refreshes every 100 ms */
        end1 = events_end(bus);
        if (end1 != 40) usleep(20000);
    }
    assert_int_equal(end1, 40);
    assert_int_equal(post_accepted(&ing, b2), 40);
    int64_t end2 = -1;
    for (int i = 0; i < 200 && end2 != 80; i++) {
        end2 = events_end(bus);
        if (end2 != 80) usleep(20000);
    }
    assert_int_equal(end2, 80); /* the lag grows: nobody consumes */
    assert_int_equal(th_count_leads(&ing), 0);
    int st;
    char code[64];
    error_code(&ing, "POST", "/api/v1/pipeline/pause", "{}", &st, code, sizeof code);
    assert_int_equal(st, 404);
    assert_string_equal(code, "role_not_served");

    /* A pipeline process on the same Kafka and PostgreSQL applies them. */
    th_init(&pipe_srv, yaml);
    const char *r_pipeline[] = {"--role", "pipeline", NULL};
    if (th_start_args(&pipe_srv, r_pipeline) != 0) dump_log(&pipe_srv);
    assert_true(*pipe_srv.target);
    long n = th_wait_leads(&ing, 80, 60000);
    if (n != 80) dump_log(&pipe_srv);
    assert_int_equal(n, 80);
    assert_int_equal(th_wait_caught_up(&pipe_srv, 30000), 0);
    assert_int_equal(th_count_leads(&ing), 80); /* once each */
    error_code(&pipe_srv, "POST", "/v1/events", b1, &st, code, sizeof code);
    assert_int_equal(st, 404);
    assert_string_equal(code, "role_not_served");
    /* Re-sent through ingest: duplicates by event id, nothing new. */
    cJSON *j;
    assert_int_equal(th_req(&ing, "POST", "/v1/events", b1, &j), 200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "duplicates")->valuedouble, 40);
    cJSON_Delete(j);
    free(b1), free(b2);
    bus->ops->close(bus);
    cs_config_free(&cfg);
    th_stop(&pipe_srv, SIGTERM);
    th_stop(&ing, SIGTERM);
}

int main(void)
{
    cs_log_set_level(CS_LOG_WARN);
    int64_t t0 = cs_mono_us();
    have_broker = tkafka_start(&broker, why_skip, sizeof why_skip) == 0;
    if (have_broker)
        fprintf(stderr, "# kafka broker at %s, started in %.1f s\n", broker.bootstrap, (double)(cs_mono_us() - t0) / 1e6);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subset_refused_without_kafka),
        cmocka_unit_test_teardown(test_ingest_and_pipeline_processes, roles_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tkafka_stop(&broker);
    return rc;
}
