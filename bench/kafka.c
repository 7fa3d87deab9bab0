/*
 * bench/kafka — events/s through ingest -> Apache Kafka -> pipeline ->
 * PostgreSQL, with crmstream split into processes by role (the deployment
 * of docs/DEPLOY.md on one machine). Driven by bench/kafka.sh, which starts
 * the broker and runs Kafka's own ProducerPerformance beside it.
 *
 *   build/bench/kafka BOOTSTRAP N
 *
 * A throwaway PostgreSQL 15 (tests/pgserver.c); one `crmstream serve --role
 * ingest` and one, then two, `--role pipeline,dispatch` processes on the
 * same Kafka and PostgreSQL (a fresh topic prefix and database for each
 * run), log.partitions 8. The pipeline processes form the consumer group
 * `pipeline` (bus join): the clock starts once their
 * crmstream_bus_group_partitions sum to 8 (the group has settled). Then:
 *   ingest    C client threads post N canonical FeatureUsed events (210-byte
 *             class, 2,000 accounts) to /v1/events in batches of B; each
 *             batch counts once its 200 came back (= Kafka acknowledged
 *             every event: acks=all, idempotent producer).
 *   end to end the clock runs from the first request to the moment the
 *             pipeline's offsets committed in PostgreSQL (the authoritative
 *             ones, in the same transaction as the CRM writes) sum to N:
 *             events_per_s_1 (one pipeline process), events_per_s_2 (two)
 *             = N / that time.
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
    char path[1300];
    snprintf(path, sizeof path, "%s/config.yaml", s->dir);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "bus: kafka://%s\nstore: \"%s\"\nlog:\n  partitions: %d\nkafka:\n  topic_prefix: %s\n  timeout_ms: 30000\n"
            "routing:\n  reps:\n    - {id: rep_a, name: A, email: a@example.com}\n",
            bootstrap, uri, PARTS, prefix);
    fclose(f);
}

/* Partitions the process owns in group "pipeline" (its /metrics); -1 if unknown. */
static int owned(th_server *s)
{
    cs_buf resp;
    cs_buf_init(&resp);
    int st = 0, n = -1;
    if (cs_httpc_request(&s->c, "GET", "/metrics", NULL, NULL, 0, &st, &resp) == 0 && st == 200) {
        const char *k = "crmstream_bus_group_partitions{group=\"pipeline\"} ";
        const char *at = memmem(resp.data, resp.len, k, strlen(k));
        if (at) n = atoi(at + strlen(k));
    }
    cs_buf_free(&resp);
    return n;
}

struct result {
    double ingest_per_s, per_s, seconds, settle_s;
};

/* One run with nproc pipeline processes; 0 or -1. */
static int run_once(const char *bootstrap, tpg *pg, int nproc, struct result *res)
{
    char uri[300], prefix[64], db[32];
    snprintf(db, sizeof db, "bench%d", nproc);
    snprintf(prefix, sizeof prefix, "bench%d-%d-", (int)getpid(), nproc);
    if (tpg_create_db(pg, db, uri, sizeof uri) != 0) return -1;
    static th_server ing, pl[2];
    th_init(&ing, NULL);
    write_config(&ing, bootstrap, uri, prefix);
    for (int i = 0; i < nproc; i++) th_init(&pl[i], NULL), write_config(&pl[i], bootstrap, uri, prefix);
    const char *r_ing[] = {"--role", "ingest", "--log-level", "warn", NULL};
    const char *r_pl[] = {"--role", "pipeline,dispatch", "--log-level", "warn", NULL};
    int rc = -1;
    PGconn *db_conn = NULL;
    if (th_start_args(&ing, r_ing) != 0) goto out;
    for (int i = 0; i < nproc; i++)
        if (th_start_args(&pl[i], r_pl) != 0) goto out;
    /* The group settles: every partition owned by someone. */
    int64_t ts = cs_mono_us();
    for (;;) {
        int sum = 0;
        for (int i = 0; i < nproc; i++) {
            int o = owned(&pl[i]);
            sum += o > 0 ? o : 0;
        }
        if (sum == PARTS && (nproc == 1 || owned(&pl[1]) > 0)) break;
        if (cs_mono_us() - ts > 120 * 1000000LL) {
            fprintf(stderr, "kafka bench: the group did not settle (owned sum %d)\n", sum);
            goto out;
        }
        usleep(50000);
    }
    res->settle_s = (double)(cs_mono_us() - ts) / 1e6;
    db_conn = PQconnectdb(uri);
    if (PQstatus(db_conn) != CONNECTION_OK) {
        fprintf(stderr, "kafka bench: %s", PQerrorMessage(db_conn));
        goto out;
    }
    target = ing.target;
    next_batch = 0;
    failed = 0;
    int64_t t0 = cs_mono_us();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, client, NULL);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    int64_t t_ack = cs_mono_us();
    long long done = 0;
    int64_t deadline = t_ack + 300 * 1000000LL;
    while ((done = applied(db_conn)) < total && done >= 0 && cs_mono_us() < deadline) usleep(2000);
    int64_t t_end = cs_mono_us();
    if (failed || done != total) {
        fprintf(stderr, "kafka bench: %ld batches failed, %lld of %ld applied\n", failed, done, total);
        goto out;
    }
    res->ingest_per_s = (double)total / ((double)(t_ack - t0) / 1e6);
    res->seconds = (double)(t_end - t0) / 1e6;
    res->per_s = (double)total / res->seconds;
    fprintf(stderr,
            "kafka bench: %d pipeline process(es), group settled in %.1f s: acknowledged by Kafka in %.2f s "
            "(%.0f events/s); applied in PostgreSQL after %.2f s (%.0f events/s)\n",
            nproc, res->settle_s, (double)(t_ack - t0) / 1e6, res->ingest_per_s, res->seconds, res->per_s);
    rc = 0;
out:
    if (db_conn) PQfinish(db_conn);
    if (ing.pid > 0) th_stop(&ing, SIGTERM);
    for (int i = 0; i < nproc; i++)
        if (pl[i].pid > 0) th_stop(&pl[i], SIGTERM);
    if (rc == 0) {
        th_cleanup(&ing);
        for (int i = 0; i < nproc; i++) th_cleanup(&pl[i]);
    } else {
        fprintf(stderr, "kafka bench: logs kept: %s/serve.log (ingest)", ing.dir);
        for (int i = 0; i < nproc; i++) fprintf(stderr, ", %s/serve.log (pipeline %d)", pl[i].dir, i + 1);
        fprintf(stderr, "\n");
    }
    return rc;
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
    if (tpg_start(&pg) != 0) {
        fprintf(stderr, "kafka bench: cannot start PostgreSQL\n");
        tpg_destroy(&pg);
        return 1;
    }
    fprintf(stderr, "kafka bench: %ld FeatureUsed events, %d client threads x %d per request, %d partitions\n", total,
            THREADS, BATCH, PARTS);
    struct result r1 = {0}, r2 = {0};
    int rc = run_once(bootstrap, &pg, 1, &r1) == 0 && run_once(bootstrap, &pg, 2, &r2) == 0 ? 0 : 1;
    if (rc == 0)
        printf("{\"events\":%ld,\"partitions\":%d,\"ingest_events_per_s\":%.0f,\"events_per_s_1\":%.0f,"
               "\"events_per_s_2\":%.0f,\"seconds_to_applied_1\":%.2f,\"seconds_to_applied_2\":%.2f,"
               "\"group_settle_s_2\":%.1f,\"ratio_2_vs_1\":%.3f}\n",
               total, PARTS, r1.ingest_per_s, r1.per_s, r2.per_s, r1.seconds, r2.seconds, r2.settle_s,
               r2.per_s / r1.per_s);
    tpg_destroy(&pg);
    return rc;
}
