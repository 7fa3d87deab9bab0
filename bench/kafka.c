/*
 * bench/kafka — events/s through ingest -> Apache Kafka -> pipeline ->
 * PostgreSQL, with crmstream split into processes by role (the deployment
 * of docs/DEPLOY.md on one machine). Driven by bench/kafka.sh, which starts
 * the broker and runs Kafka's own ProducerPerformance beside it.
 *
 *   build/bench/kafka BOOTSTRAP N
 *
 * A throwaway PostgreSQL 15 (tests/pgserver.c); one `crmstream serve --role
 * ingest` and one `--role pipeline` on the same Kafka and PostgreSQL, with
 * log.partitions 8. Then:
 *   ingest    C client threads post N canonical FeatureUsed events (210-byte
 *             class, 2,000 accounts) to /v1/events in batches of B; each
 *             batch counts once its 200 came back (= Kafka acknowledged
 *             every event: acks=all, idempotent producer).
 *   end to end the clock runs from the first request to the moment the
 *             pipeline's offsets committed in PostgreSQL (the authoritative
 *             ones, in the same transaction as the CRM writes) sum to N:
 *             events_per_s_1 = N / that time.
 *   ingest_events_per_s = N / time until the last batch was acknowledged.
 * It also creates the topic perf-events (8 partitions) that
 * ProducerPerformance writes to, so both sides use the same partition count.
 * Progress on stderr; the last stdout line is one JSON object.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tests/harness.c"
#include "../tests/pgserver.c"

#include "bus/bus.h"
#include "core/config.h"
#include "core/logging.h"

enum { PARTS = 8, THREADS = 4, BATCH = 100, ACCOUNTS = 2000 };

static const char *target;
static long total, next_batch;
static long failed;

static void *client(void *arg)
{
    (void)arg;
    cs_httpc c;
    cs_httpc_init(&c, target);
    cs_buf body, resp;
    cs_buf_init(&body);
    cs_buf_init(&resp);
    for (;;) {
        long b = __atomic_fetch_add(&next_batch, 1, __ATOMIC_RELAXED);
        if (b * BATCH >= total) break;
        cs_buf_reset(&body);
        cs_buf_adds(&body, "[");
        for (long i = b * BATCH; i < (b + 1) * BATCH && i < total; i++)
            cs_buf_printf(&body,
                          "%s{\"event_id\":\"kb_%ld\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_%ld\","
                          "\"user_id\":\"u_%ld\",\"timestamp\":\"2026-11-27T10:%02ld:%02ld.000Z\",\"plan_tier\":\"pro\","
                          "\"properties\":{\"feature\":\"reports\",\"count\":%ld}}",
                          i == b * BATCH ? "" : ",", i, i * 7919 % ACCOUNTS, i % 5000, i / 60 % 60, i % 60, i % 7);
        cs_buf_adds(&body, "]");
        int st = 0;
        if (cs_httpc_request(&c, "POST", "/v1/events", NULL, body.data, body.len, &st, &resp) != 0 || st != 200) {
            fprintf(stderr, "kafka bench: batch %ld answered %d: %.*s\n", b, st, (int)resp.len, resp.data);
            __atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
        }
    }
    cs_buf_free(&body);
    cs_buf_free(&resp);
    cs_httpc_close(&c);
    return NULL;
}

/* sum(next_offset) of the pipeline's events offsets in the store; -1 on error. */
static long long applied(PGconn *db)
{
    PGresult *r = PQexec(db, "SELECT coalesce(sum(next_offset),0) FROM consumer_offsets WHERE topic='events'");
    long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

static void write_config(th_server *s, const char *bootstrap, const char *uri, const char *prefix)
{
    char path[400];
    snprintf(path, sizeof path, "%s/config.yaml", s->dir);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "bus: kafka://%s\nstore: \"%s\"\nlog:\n  partitions: %d\nkafka:\n  topic_prefix: %s\n  timeout_ms: 30000\n"
            "routing:\n  reps:\n    - {id: rep_a, name: A, email: a@example.com}\n",
            bootstrap, uri, PARTS, prefix);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s BOOTSTRAP N\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    cs_log_set_level(CS_LOG_WARN);
    const char *bootstrap = argv[1];
    total = atol(argv[2]);
    char err[1024], url[300];
    snprintf(url, sizeof url, "kafka://%s", bootstrap);

    /* perf-events for ProducerPerformance: same partition count. */
    cs_config cfg;
    cs_config_defaults(&cfg);
    cfg.partitions = PARTS;
    free(cfg.kafka_topic_prefix);
    cfg.kafka_topic_prefix = cs_strdup("perf-");
    cs_bus *bus = cs_bus_kafka_open(url, &cfg, err, sizeof err);
    if (!bus) {
        fprintf(stderr, "kafka bench: %s\n", err);
        return 1;
    }
    bus->ops->close(bus);
    cs_config_free(&cfg);

    static tpg pg;
    char uri[300];
    if (tpg_start(&pg) != 0 || tpg_create_db(&pg, "bench", uri, sizeof uri) != 0) {
        fprintf(stderr, "kafka bench: cannot start PostgreSQL\n");
        tpg_destroy(&pg);
        return 1;
    }
    static th_server ing, pl;
    th_init(&ing, NULL);
    th_init(&pl, NULL);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "bench%d-", (int)getpid());
    write_config(&ing, bootstrap, uri, prefix);
    write_config(&pl, bootstrap, uri, prefix);
    const char *r_ing[] = {"--role", "ingest", "--log-level", "warn", NULL};
    const char *r_pl[] = {"--role", "pipeline,dispatch", "--log-level", "warn", NULL};
    int rc = 1;
    if (th_start_args(&ing, r_ing) != 0 || th_start_args(&pl, r_pl) != 0) {
        fprintf(stderr, "kafka bench: serve did not start (logs: %s/serve.log, %s/serve.log)\n", ing.dir, pl.dir);
        goto out;
    }
    PGconn *db = PQconnectdb(uri);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "kafka bench: %s", PQerrorMessage(db));
        PQfinish(db);
        goto out;
    }
    target = ing.target;
    fprintf(stderr, "kafka bench: %ld FeatureUsed events, %d client threads x %d per request, %d partitions\n", total,
            THREADS, BATCH, PARTS);
    int64_t t0 = cs_mono_us();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, client, NULL);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    int64_t t_ack = cs_mono_us();
    long long done = 0;
    int64_t deadline = t_ack + 300 * 1000000LL;
    while ((done = applied(db)) < total && done >= 0 && cs_mono_us() < deadline) usleep(2000);
    int64_t t_end = cs_mono_us();
    PQfinish(db);
    if (failed || done != total) {
        fprintf(stderr, "kafka bench: %ld batches failed, %lld of %ld applied\n", failed, done, total);
        goto out;
    }
    double s_ack = (double)(t_ack - t0) / 1e6, s_end = (double)(t_end - t0) / 1e6;
    fprintf(stderr, "kafka bench: acknowledged by Kafka in %.2f s (%.0f events/s); applied in PostgreSQL after %.2f s\n",
            s_ack, (double)total / s_ack, s_end);
    printf("{\"events\":%ld,\"partitions\":%d,\"ingest_events_per_s\":%.0f,\"events_per_s_1\":%.0f,"
           "\"seconds_to_applied\":%.2f}\n",
           total, PARTS, (double)total / s_ack, (double)total / s_end, s_end);
    rc = 0;
out:
    if (ing.pid > 0) th_stop(&ing, SIGTERM);
    if (pl.pid > 0) th_stop(&pl, SIGTERM);
    if (rc == 0) {
        th_cleanup(&ing);
        th_cleanup(&pl);
    } else {
        fprintf(stderr, "kafka bench: logs kept: %s/serve.log (ingest), %s/serve.log (pipeline)\n", ing.dir, pl.dir);
    }
    tpg_destroy(&pg);
    return rc;
}
