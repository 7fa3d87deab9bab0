/*
 * bench/warehouse — the warehouse sink (src/warehouse), driven by
 * bench/warehouse.sh (`make bench-warehouse`).
 *
 * 1. Throughput, one PostgreSQL 15 started here (tests/pgserver.c: temp
 *    dir, 127.0.0.1, a free port, never as root), one embedded log filled
 *    with N canonical events (the six seed types, properties and context,
 *    8 partitions):
 *    - COPY: the product's PostgreSQL destination (wh_pg_open: COPY, batch
 *      of warehouse.batch_max_events, offsets in the same transaction);
 *    - INSERT: the baseline, the same rows into the same table shape in
 *      another database of the same server, one prepared INSERT per row, the
 *      same batches (one transaction each, offsets updated in it);
 *    - files: the product's file destination (zstd NDJSON, fsync, manifest).
 *    Both PostgreSQL runs end with count(*) = N.
 * 2. End to end: `crmstream serve` with both destinations on; LeadCreated
 *    events posted one per request at R/s for D s with the sink running,
 *    then D s more with it paused (POST /api/v1/warehouse/pause); the
 *    ingest -> routed latency of every lead (its route_latency_ms), p50/p99
 *    per phase; then the time the sink takes to catch up after resume.
 *
 *   build/bench/warehouse [-n EVENTS] [-r RATE] [-d SECONDS]
 * The last line on stdout is one JSON object.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tests/harness.c"
#include "../tests/pgserver.c"
#include "core/logging.h"
#include "core/util.h"
#include "warehouse/sink.h"

#define PARTS 8
#define BATCH 10000

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-warehouse: %s: %s\n", what, why);
    exit(1);
}

static const char *const types[] = {"LeadCreated", "DemoRequested", "TrialActivated",
                                    "FeatureUsed", "SubscriptionUpgraded", "SupportCaseEscalated"};

/* One canonical event as ingest writes it to the log. */
static void gen_event(cs_buf *b, int i, int64_t now_us)
{
    char ts[40], rx[40];
    cs_fmt_time_ms(now_us - (int64_t)(i % 7200) * 1000000LL, ts, sizeof ts);
    cs_fmt_time_ms(now_us - (int64_t)(i % 7200) * 1000000LL + 40000, rx, sizeof rx);
    const char *type = types[i % 6];
    cs_buf_printf(b, "{\"event_id\":\"bw-%d\",\"type\":\"%s\",\"account_id\":\"acc_%d\",\"user_id\":\"u_%d\",\"timestamp\":\"%s\"",
                  i, type, i % 5000, i % 40000, ts);
    switch (i % 6) {
    case 0:
        cs_buf_printf(b, ",\"properties\":{\"email\":\"lead%d@example.com\",\"company\":\"Company %d\",\"country\":\"DE\","
                         "\"employee_count\":%d}",
                      i, i % 5000, 10 + i % 990);
        break;
    case 3:
        cs_buf_printf(b, ",\"product_area\":\"reports\",\"plan_tier\":\"trial\",\"properties\":{\"feature\":\"export_csv\",\"count\":%d}",
                      1 + i % 9);
        break;
    default: cs_buf_printf(b, ",\"properties\":{\"plan\":\"pro\",\"seats\":%d,\"note\":\"n%d\"}", 1 + i % 50, i); break;
    }
    cs_buf_printf(b, ",\"context\":{\"ip\":\"10.0.%d.%d\",\"library\":{\"name\":\"bench\",\"version\":\"1.0\"}},"
                     "\"source\":\"native\",\"received_at\":\"%s\",\"write_key\":\"bench\",\"payload_hash\":\"%016llx\"}",
                  (i >> 8) & 255, i & 255, rx, (unsigned long long)(i * 2654435761ULL));
}

static int64_t fill_log(cs_bus *bus, int n)
{
    int64_t now = cs_now_us(), bytes = 0;
    const int chunk = 500;
    cs_buf *v = cs_calloc(chunk, sizeof *v);
    char (*keys)[32] = cs_calloc(chunk, sizeof *keys);
    cs_msg *m = cs_calloc(chunk, sizeof *m);
    for (int i = 0; i < chunk; i++) cs_buf_init(&v[i]);
    for (int base = 0; base < n; base += chunk) {
        int k = n - base < chunk ? n - base : chunk;
        for (int j = 0; j < k; j++) {
            cs_buf_reset(&v[j]);
            gen_event(&v[j], base + j, now);
            snprintf(keys[j], sizeof keys[j], "acc_%d", (base + j) % 5000);
            m[j] = (cs_msg){.key = keys[j], .key_len = strlen(keys[j]), .value = v[j].data, .value_len = v[j].len,
                            .ts_us = now};
            bytes += (int64_t)v[j].len;
        }
        if (bus->ops->produce(bus, CS_TOPIC_EVENTS, m, (size_t)k) != 0) die("log", "produce failed");
    }
    for (int i = 0; i < chunk; i++) cs_buf_free(&v[i]);
    free(v);
    free(keys);
    free(m);
    return bytes;
}

/* Run a product destination until it has consumed n records; seconds. */
static double drain(wh_dest *d, long n)
{
    int64_t *next = cs_calloc(PARTS, sizeof *next);
    if (d->ops->resync(d, next) != 0) die("resync", d->err);
    int64_t t0 = cs_mono_us();
    long done = 0;
    while (done < n) {
        long k = d->ops->write(d, next);
        if (k < 0) die("write", d->err);
        if (k == 0) die("write", "no progress before every record was consumed");
        done += k;
    }
    double s = (double)(cs_mono_us() - t0) / 1e6;
    free(next);
    return s;
}

static long pg_count_rows(const char *uri)
{
    PGconn *c = PQconnectdb(uri);
    long n = -1;
    PGresult *r = PQexec(c, "SELECT count(*) FROM events");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n;
}

/* The baseline: one prepared INSERT per row, BATCH rows per transaction
 * with the partition's offset updated in it (the same guarantees). */
struct ins_ctx {
    PGconn *c;
    int     partition;
    int64_t next;
    long    rows;
};

static void must(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    if (PQresultStatus(r) != want) die(what, PQresultErrorMessage(r));
    PQclear(r);
    (void)c;
}

static int on_ins(const cs_rec *rec, void *arg)
{
    struct ins_ctx *x = arg;
    wh_row r;
    if (wh_row_decode(rec, &r) != 0) die("decode", "bad record");
    char *props = r.properties ? cJSON_PrintUnformatted(r.properties) : NULL;
    char *ctx = r.context ? cJSON_PrintUnformatted(r.context) : NULL;
    char part[16], off[32];
    snprintf(part, sizeof part, "%d", x->partition);
    snprintf(off, sizeof off, "%lld", (long long)rec->offset);
    const char *v[14] = {r.event_id, r.type, r.account_id, r.user_id, r.ts[0] ? r.ts : NULL, r.product_area,
                         r.plan_tier, props, ctx, r.received_at[0] ? r.received_at : NULL, part, off, r.source,
                         r.write_key};
    must(x->c, PQexecPrepared(x->c, "ins", 14, v, NULL, NULL, 0), PGRES_COMMAND_OK, "INSERT");
    cJSON_free(props);
    cJSON_free(ctx);
    wh_row_free(&r);
    x->next = rec->offset + 1;
    x->rows++;
    return 0;
}

static double insert_baseline(cs_bus *bus, const char *uri)
{
    PGconn *c = PQconnectdb(uri);
    if (PQstatus(c) != CONNECTION_OK) die("postgres", PQerrorMessage(c));
    must(c,
         PQprepare(c, "ins",
                   "INSERT INTO events (event_id, type, account_id, user_id, ts, product_area, plan_tier, properties,"
                   " context, received_at, partition, \"offset\", source, write_key)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                   14, NULL),
         PGRES_COMMAND_OK, "PREPARE");
    int64_t t0 = cs_mono_us();
    for (int p = 0; p < PARTS; p++) {
        int64_t end = bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
        struct ins_ctx x = {c, p, 0, 0};
        while (x.next < end) {
            int64_t from = x.next;
            must(c, PQexec(c, "BEGIN"), PGRES_COMMAND_OK, "BEGIN");
            if (bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, from, BATCH, on_ins, &x) < 0) die("log", "fetch");
            char a[32], b[32], pp[16];
            snprintf(pp, sizeof pp, "%d", p);
            snprintf(a, sizeof a, "%lld", (long long)x.next);
            snprintf(b, sizeof b, "%lld", (long long)from);
            const char *v[] = {pp, a, b};
            must(c,
                 PQexecParams(c,
                              "UPDATE warehouse_offsets SET next_offset = $2 WHERE topic = 'events' AND partition = $1"
                              " AND next_offset = $3",
                              3, NULL, v, NULL, NULL, 0),
                 PGRES_COMMAND_OK, "UPDATE");
            must(c, PQexec(c, "COMMIT"), PGRES_COMMAND_OK, "COMMIT");
        }
    }
    double s = (double)(cs_mono_us() - t0) / 1e6;
    PQfinish(c);
    return s;
}

/* ---- end to end ------------------------------------------------------------ */

static void sleep_until(int64_t t)
{
    int64_t now = cs_mono_us();
    if (t <= now) return;
    struct timespec ts = {(t - now) / 1000000, ((t - now) % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Post n LeadCreated events, one per request, at rate/s (open loop). */
static int post_leads(th_server *s, const char *prefix, int n, int rate)
{
    int64_t t0 = cs_mono_us();
    int ok = 0;
    char body[512], ts[40];
    for (int i = 0; i < n; i++) {
        sleep_until(t0 + (int64_t)i * 1000000 / rate);
        cs_fmt_time_ms(cs_now_us(), ts, sizeof ts);
        snprintf(body, sizeof body,
                 "{\"event_id\":\"%s-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%s_%d\",\"timestamp\":\"%s\","
                 "\"properties\":{\"email\":\"%s%d@example.com\",\"company\":\"C%d\"}}",
                 prefix, i, prefix, i % 97, ts, prefix, i, i % 97);
        if (th_req(s, "POST", "/v1/events", body, NULL) == 200) ok++;
    }
    return ok;
}

struct lat {
    double *v;
    int     n, cap;
};

static void lat_add(struct lat *l, double x)
{
    if (l->n == l->cap) l->v = cs_realloc(l->v, (size_t)(l->cap = l->cap ? l->cap * 2 : 1024) * sizeof *l->v);
    l->v[l->n++] = x;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(struct lat *l, int p)
{
    if (!l->n) return 0;
    int i = (l->n * p) / 100;
    return l->v[i < l->n ? i : l->n - 1];
}

/* Every lead's route_latency_ms, by event_id prefix. */
static void collect(th_server *s, struct lat *run, struct lat *paused)
{
    char path[160], cursor[64] = "";
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/leads?limit=1000%s%s", *cursor ? "&cursor=" : "", cursor);
        cJSON *j;
        if (th_req(s, "GET", path, NULL, &j) != 200 || !j) die("leads", "GET /api/v1/leads failed");
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "items"))
        {
            const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event_id"));
            double ms = cJSON_GetObjectItem(it, "route_latency_ms")->valuedouble;
            if (id && strncmp(id, "run-", 4) == 0) lat_add(run, ms);
            else if (id && strncmp(id, "pau-", 4) == 0) lat_add(paused, ms);
        }
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        int more = cJSON_IsString(nc);
        if (more) snprintf(cursor, sizeof cursor, "%s", nc->valuestring);
        cJSON_Delete(j);
        if (!more) break;
    }
    qsort(run->v, (size_t)run->n, sizeof *run->v, cmpd);
    qsort(paused->v, (size_t)paused->n, sizeof *paused->v, cmpd);
}

static long wh_lag(th_server *s)
{
    cJSON *j;
    long lag = -1;
    if (th_req(s, "GET", "/api/v1/warehouse", NULL, &j) == 200 && j)
        lag = (long)cJSON_GetObjectItem(j, "lag")->valuedouble;
    cJSON_Delete(j);
    return lag;
}

int main(int argc, char **argv)
{
    int n = 200000, rate = 200, secs = 10, c;
    while ((c = getopt(argc, argv, "n:r:d:")) != -1) {
        switch (c) {
        case 'n': n = atoi(optarg); break;
        case 'r': rate = atoi(optarg); break;
        case 'd': secs = atoi(optarg); break;
        default: fprintf(stderr, "usage: warehouse [-n EVENTS] [-r RATE] [-d SECONDS]\n"); return 2;
        }
    }
    if (n < 1 || rate < 1 || secs < 1) die("usage", "-n, -r and -d must be >= 1");
    cs_log_set_level(CS_LOG_WARN);
    tpg pg;
    if (tpg_start(&pg) != 0) die("postgres", "cannot start a throwaway server (tests/pgserver.c)");
    char err[512];
    const char *tmpdir = getenv("BENCH_TMPDIR");
    char dir[300];
    snprintf(dir, sizeof dir, "%s/crmstream-bench-wh-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/var/tmp");
    if (!mkdtemp(dir)) die(dir, "mkdtemp");
    cs_bus *bus = cs_bus_embedded_open(dir, PARTS, CS_FSYNC_NEVER, 0, err, sizeof err);
    if (!bus) die("log", err);
    int64_t raw = fill_log(bus, n);

    /* 1a. COPY (the product) */
    char uri_copy[256], uri_ins[256], uri_e2e[256];
    if (tpg_create_db(&pg, "bench_copy", uri_copy, sizeof uri_copy) || tpg_create_db(&pg, "bench_insert", uri_ins, sizeof uri_ins) ||
        tpg_create_db(&pg, "bench_e2e", uri_e2e, sizeof uri_e2e))
        die("postgres", "CREATE DATABASE failed");
    cs_config cfg;
    cs_config_defaults(&cfg);
    free(cfg.wh_postgres);
    cfg.wh_postgres = cs_strdup(uri_copy);
    cfg.wh_batch_max = BATCH;
    wh_dest *d = wh_pg_open(bus, &cfg, err, sizeof err);
    if (!d) die("postgres", err);
    double copy_s = drain(d, n);
    int64_t copy_bytes = d->bytes;
    d->ops->close(d);
    if (pg_count_rows(uri_copy) != n) die("COPY", "row count differs from the events written");

    /* 1b. INSERT row by row (the baseline): the same schema, made by the
     * product's own resync, then its own statements. */
    free(cfg.wh_postgres);
    cfg.wh_postgres = cs_strdup(uri_ins);
    d = wh_pg_open(bus, &cfg, err, sizeof err);
    int64_t *next = cs_calloc(PARTS, sizeof *next);
    if (!d || d->ops->resync(d, next) != 0) die("postgres", d ? d->err : err);
    d->ops->close(d);
    free(next);
    double ins_s = insert_baseline(bus, uri_ins);
    if (pg_count_rows(uri_ins) != n) die("INSERT", "row count differs from the events written");

    /* 1c. files */
    char whdir[400];
    snprintf(whdir, sizeof whdir, "%s/wh", dir);
    free(cfg.wh_dir);
    cfg.wh_dir = cs_strdup(whdir);
    d = wh_files_open(bus, &cfg, err, sizeof err);
    if (!d) die("files", err);
    double files_s = drain(d, n);
    int64_t files_bytes = d->bytes, nfiles = d->files;
    d->ops->close(d);
    cs_config_free(&cfg);
    bus->ops->close(bus);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);

    double copy_eps = n / copy_s, ins_eps = n / ins_s, files_eps = n / files_s;
    printf("%-44s %12s %10s\n", "throughput, " "events (8 partitions)", "events/s", "seconds");
    printf("%-44s %12.0f %10.2f\n", "postgres COPY (batch 10000, offsets in tx)", copy_eps, copy_s);
    printf("%-44s %12.0f %10.2f\n", "postgres INSERT per row (same batches)", ins_eps, ins_s);
    printf("%-44s %12.2f\n", "ratio COPY / INSERT", copy_eps / ins_eps);
    printf("%-44s %12.0f %10.2f\n", "files zstd NDJSON (fsync, manifest)", files_eps, files_s);
    printf("%-44s %12.1f   (%lld files, %.1f B/event vs %.1f raw, COPY %.1f)\n", "files compression ratio",
           (double)raw / (double)(files_bytes ? files_bytes : 1), (long long)nfiles, (double)files_bytes / n,
           (double)raw / n, (double)copy_bytes / n);
    fflush(stdout);

    /* 2. end to end, sink running vs paused */
    char yaml[800];
    snprintf(yaml, sizeof yaml,
             "warehouse:\n  postgres: \"%s\"\n  dir: DATA/wh\n  flush_interval_ms: 100\n  file_interval_ms: 1000\n",
             uri_e2e);
    th_server s;
    th_init(&s, yaml);
    if (th_start(&s) != 0) die("serve", "did not start (see its serve.log)");
    int per = rate * secs;
    post_leads(&s, "warm", rate, rate); /* 1 s of warm-up, not measured */
    int ok_run = post_leads(&s, "run", per, rate);
    if (th_wait_leads(&s, rate + per, 60000) < rate + per) die("e2e", "not every lead was routed (running)");
    if (th_req(&s, "POST", "/api/v1/warehouse/pause", "", NULL) != 200) die("e2e", "pause failed");
    int ok_paused = post_leads(&s, "pau", per, rate);
    if (th_wait_leads(&s, rate + 2L * per, 60000) < rate + 2L * per) die("e2e", "not every lead was routed (paused)");
    long lag_paused = wh_lag(&s);
    int64_t r0 = cs_mono_us();
    if (th_req(&s, "POST", "/api/v1/warehouse/resume", "", NULL) != 200) die("e2e", "resume failed");
    while (wh_lag(&s) != 0 && cs_mono_us() - r0 < 60000000) usleep(5000);
    double catchup_ms = (double)(cs_mono_us() - r0) / 1000.0;
    struct lat run = {0}, paused = {0};
    collect(&s, &run, &paused);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
    tpg_destroy(&pg);

    printf("%-44s %12s %10s %10s\n", "end to end, ingest -> routed (ms)", "leads", "p50", "p99");
    printf("%-44s %12d %10.2f %10.2f\n", "warehouse sink running", run.n, pct(&run, 50), pct(&run, 99));
    printf("%-44s %12d %10.2f %10.2f\n", "warehouse sink paused", paused.n, pct(&paused, 50), pct(&paused, 99));
    printf("%-44s %12ld %10.0f ms to catch up after resume\n", "warehouse lag when resumed", lag_paused, catchup_ms);
    printf("{\"events\":%d,\"postgres_events_per_s\":%.0f,\"insert_events_per_s\":%.0f,\"ratio_vs_insert\":%.2f,"
           "\"files_events_per_s\":%.0f,\"files_bytes_per_event\":%.1f,\"raw_bytes_per_event\":%.1f,"
           "\"e2e_rate_per_s\":%d,\"e2e_seconds\":%d,\"e2e_leads_running\":%d,\"e2e_leads_paused\":%d,"
           "\"e2e_acked_running\":%d,\"e2e_acked_paused\":%d,"
           "\"e2e_running_p50_ms\":%.2f,\"e2e_running_p99_ms\":%.2f,\"e2e_paused_p50_ms\":%.2f,\"e2e_paused_p99_ms\":%.2f,"
           "\"warehouse_lag_paused\":%ld,\"warehouse_catchup_ms\":%.0f}\n",
           n, copy_eps, ins_eps, copy_eps / ins_eps, files_eps, (double)files_bytes / n, (double)raw / n, rate, secs,
           run.n, paused.n, ok_run, ok_paused, pct(&run, 50), pct(&run, 99), pct(&paused, 50), pct(&paused, 99),
           lag_paused, catchup_ms);
    free(run.v);
    free(paused.v);
    return 0;
}
