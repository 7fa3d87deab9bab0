/*
 * bench/webhooks — webhook delivery: crmstream's dispatcher (src/out: curl
 * multi, lanes, keep-alive) against a naive peer (one blocking curl_easy per
 * delivery, sequential, a new connection each time), same receiver, same
 * signed payloads, same run. The receiver is tests/webhook/recv.c on
 * 127.0.0.1 (a thread per connection, answering 200 at once).
 *
 *   throughput  N deliveries in the outbox at once; deliveries/s until the
 *               receiver has all of them
 *   delay       deliveries written to the outbox at a steady rate R/s for D
 *               seconds; delay = receiver arrival - outbox write, p50/p99
 *               (the outbox write is the pipeline's commit: the moment the
 *               effect became durable)
 *   isolation   the delay run again with a second destination whose
 *               receiver takes 10 s per request, also fed at R/s
 *
 *   build/bench/webhooks [-n N] [-r R] [-d SECONDS] [-c CONCURRENCY]
 * Prints a table; the last line is one JSON object.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "out/out.h"
#include "out/sign.h"
#include "out/source_mem.h"
#include "../tests/webhook/recv.c"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
static const char *PAYLOAD =
    "{\"type\":\"alert.raised\",\"timestamp\":\"2026-11-27T10:00:00.123Z\",\"title\":\"Churn risk\","
    "\"data\":{\"account_id\":\"acc_42\",\"rule\":\"usage_drop\",\"score\":0.82,\"owner\":\"rep_a\","
    "\"renewal_date\":\"2027-01-15\",\"reason\":\"weekly active users fell 45% in 14 days\"}}";

static void on_req(void *ctx, const rv_req *q, rv_answer *a)
{
    (void)ctx;
    a->status = 200;
    if (strcmp(q->path, "/slow") == 0) a->delay_ms = 10000;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Delays (ms) of the receiver's requests on path whose id starts with
 * prefix: arrival - the write time encoded in the id ("<prefix><us>_<i>"). */
static void delays(rv_server *s, const char *path, const char *prefix, double *p50, double *p99)
{
    int n = rv_count(s, NULL), k = 0;
    int64_t *d = calloc((size_t)n + 1, sizeof *d);
    size_t pl = strlen(prefix);
    for (int i = 0; i < n; i++) {
        rv_req q;
        rv_get(s, i, &q);
        if (strcmp(q.path, path) != 0 || strncmp(q.id, prefix, pl) != 0) continue;
        d[k++] = q.at_us - strtoll(q.id + pl, NULL, 10);
    }
    qsort(d, (size_t)k, sizeof *d, cmp64);
    *p50 = k ? d[k / 2] / 1000.0 : 0;
    *p99 = k ? d[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1] / 1000.0 : 0;
    free(d);
}

static void sleep_until_us(int64_t t)
{
    int64_t now = cs_now_us();
    if (t <= now) return;
    struct timespec ts = {(t - now) / 1000000, ((t - now) % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ the peer */

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p, (void)u;
    return s * n;
}

static cs_out_key g_key;

/* One delivery the naive way: a fresh handle (and connection), blocking. */
static int naive_send(const char *url, const char *id)
{
    char ts[64], sig[160], h[200];
    int64_t now = cs_now_us() / 1000000;
    cs_out_sign(&g_key, 1, id, now, PAYLOAD, strlen(PAYLOAD), sig, sizeof sig);
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(h, sizeof h, "webhook-id: %s", id);
    hd = curl_slist_append(hd, h);
    snprintf(ts, sizeof ts, "webhook-timestamp: %lld", (long long)now);
    hd = curl_slist_append(hd, ts);
    snprintf(h, sizeof h, "webhook-signature: %s", sig);
    hd = curl_slist_append(hd, h);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, PAYLOAD);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 15000L);
    CURLcode rc = curl_easy_perform(e);
    long st = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_cleanup(e);
    curl_slist_free_all(hd);
    return rc == CURLE_OK && st == 200 ? 0 : -1;
}

typedef struct pacer {
    cs_out_mem *mem;
    cs_out     *o;        /* NULL: the naive consumer polls */
    const char *prefix;
    const char *dest, *dest2;
    int         rate, seconds;
    atomic_int  written;
} pacer;

/* Write deliveries to the outbox at rate/s; the id carries the write time. */
static void *pace(void *arg)
{
    pacer *p = arg;
    int total = p->rate * p->seconds;
    int64_t t0 = cs_now_us();
    for (int i = 0; i < total; i++) {
        sleep_until_us(t0 + (int64_t)i * 1000000 / p->rate);
        char id[96];
        int64_t now = cs_now_us();
        snprintf(id, sizeof id, "%s%lld_%d", p->prefix, (long long)now, i);
        cs_out_mem_add(p->mem, id, p->dest, PAYLOAD, now / 1000);
        if (p->dest2) {
            snprintf(id, sizeof id, "slow%lld_%d", (long long)now, i);
            cs_out_mem_add(p->mem, id, p->dest2, PAYLOAD, now / 1000);
        }
        if (p->o) cs_out_wake(p->o);
        atomic_fetch_add(&p->written, 1);
    }
    return NULL;
}

/* The naive consumer: take the oldest due delivery, send it, block, next. */
static int naive_consume(cs_out_mem *mem, const char *dest, const char *url, int total,
                         atomic_int *written)
{
    cs_out_source src = cs_out_mem_source(mem);
    int done = 0, fails = 0;
    while (done < total) {
        cs_out_delivery d;
        int64_t now = cs_now_us() / 1000;
        if (src.ops->claim(src.ctx, dest, now, now + 60000, &d, 1) != 1) {
            if (written && atomic_load(written) >= total && done >= total) break;
            struct timespec ts = {0, 50000}; /* 50 us: the peer is naive, not lazy */
            nanosleep(&ts, NULL);
            continue;
        }
        if (naive_send(url, d.id) == 0) src.ops->delivered(src.ctx, d.id, 1, now);
        else fails++;
        free(d.payload);
        done++;
    }
    return fails;
}

/* ------------------------------------------------------------ the runs */

static cs_out *open_out(cs_out_mem *mem, const char *url, const char *slow_url, int conc)
{
    cs_out_dest_conf d[2] = {
        {.name = "fast", .url = url, .secrets = {SECRET}, .allow_private = 1, .concurrency = conc,
         .queue_max = 1024},
        {.name = "slow", .url = slow_url, .secrets = {SECRET}, .allow_private = 1, .concurrency = 4,
         .timeout_ms = 15000},
    };
    cs_out_opts opts = {.source = cs_out_mem_source(mem), .poll_ms = 50};
    char err[256];
    cs_out *o = cs_out_new(d, slow_url ? 2 : 1, &opts, err, sizeof err);
    if (!o) {
        fprintf(stderr, "webhooks: %s\n", err);
        exit(1);
    }
    return o;
}

static double wait_delivered(cs_out_mem *mem, int n, int64_t t0)
{
    while (cs_out_mem_count(mem, CS_OUT_DELIVERED) < n) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        if (cs_now_us() - t0 > 300000000LL) {
            fprintf(stderr, "webhooks: deliveries stalled\n");
            exit(1);
        }
    }
    return (cs_now_us() - t0) / 1e6;
}

int main(int argc, char **argv)
{
    int n = 20000, rate = 500, secs = 5, conc = 8;
    int opt;
    while ((opt = getopt(argc, argv, "n:r:d:c:")) != -1) {
        if (opt == 'n') n = atoi(optarg);
        else if (opt == 'r') rate = atoi(optarg);
        else if (opt == 'd') secs = atoi(optarg);
        else if (opt == 'c') conc = atoi(optarg);
        else {
            fprintf(stderr, "usage: webhooks [-n N] [-r RATE] [-d SECONDS] [-c CONCURRENCY]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cs_out_key_parse(SECRET, &g_key);
    rv_server *srv = rv_start(on_req, NULL, 0);
    char url[128], slow_url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", rv_port(srv));
    snprintf(slow_url, sizeof slow_url, "http://127.0.0.1:%d/slow", rv_port(srv));
    int nbase = n / 4 > 1000 ? n / 4 : (n < 1000 ? n : 1000);

    /* 1. throughput, dispatcher */
    cs_out_mem *mem = cs_out_mem_new();
    int64_t now = cs_now_us();
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof id, "t%lld_%d", (long long)now, i);
        cs_out_mem_add(mem, id, "fast", PAYLOAD, now / 1000);
    }
    cs_out *o = open_out(mem, url, NULL, conc);
    int64_t t0 = cs_now_us();
    cs_out_start(o);
    double el = wait_delivered(mem, n, t0);
    double dps = n / el;
    cs_out_destroy(o);
    cs_out_mem_free(mem);
    fprintf(stderr, "dispatcher: %d deliveries in %.2f s: %.0f/s\n", n, el, dps);

    /* 2. throughput, naive */
    mem = cs_out_mem_new();
    now = cs_now_us();
    for (int i = 0; i < nbase; i++) {
        char id[64];
        snprintf(id, sizeof id, "b%lld_%d", (long long)now, i);
        cs_out_mem_add(mem, id, "fast", PAYLOAD, now / 1000);
    }
    t0 = cs_now_us();
    int fails = naive_consume(mem, "fast", url, nbase, NULL);
    el = (cs_now_us() - t0) / 1e6;
    double bdps = nbase / el;
    cs_out_mem_free(mem);
    fprintf(stderr, "naive: %d deliveries in %.2f s: %.0f/s (%d failed)\n", nbase, el, bdps, fails);

    /* 3. delay at a steady rate, dispatcher; 4. the same beside a slow destination */
    double p50 = 0, p99 = 0, sp50 = 0, sp99 = 0;
    for (int run = 0; run < 2; run++) {
        mem = cs_out_mem_new();
        o = open_out(mem, url, run ? slow_url : NULL, conc);
        cs_out_start(o);
        pacer p = {.mem = mem, .o = o, .prefix = run ? "s" : "d", .dest = "fast",
                   .dest2 = run ? "slow" : NULL, .rate = rate, .seconds = secs};
        pthread_t th;
        pthread_create(&th, NULL, pace, &p);
        pthread_join(th, NULL);
        wait_delivered(mem, rate * secs, cs_now_us());
        if (run == 0) delays(srv, "/hook", "d", &p50, &p99);
        else delays(srv, "/hook", "s", &sp50, &sp99);
        if (run) {
            cs_out_stats ss;
            cs_out_stats_get(o, "slow", &ss);
            fprintf(stderr, "beside slow: slow lane had %d in flight, %d queued, %llu done\n",
                    ss.inflight, ss.queued, (unsigned long long)ss.attempts);
        }
        cs_out_destroy(o); /* abandons the slow lane's requests (released) */
        cs_out_mem_free(mem);
    }
    fprintf(stderr, "dispatcher delay at %d/s: p50 %.2f ms, p99 %.2f ms; beside a 10 s destination:"
                    " p50 %.2f ms, p99 %.2f ms\n", rate, p50, p99, sp50, sp99);

    /* 5. delay at the same rate, naive */
    mem = cs_out_mem_new();
    pacer bp = {.mem = mem, .prefix = "n", .dest = "fast", .rate = rate, .seconds = secs};
    pthread_t th;
    pthread_create(&th, NULL, pace, &bp);
    fails += naive_consume(mem, "fast", url, rate * secs, &bp.written);
    pthread_join(th, NULL);
    double bp50, bp99;
    delays(srv, "/hook", "n", &bp50, &bp99);
    cs_out_mem_free(mem);
    fprintf(stderr, "naive delay at %d/s: p50 %.2f ms, p99 %.2f ms\n", rate, bp50, bp99);
    rv_stop(srv);

    printf("%-34s %14s %14s\n", "", "dispatcher", "naive");
    printf("%-34s %14.0f %14.0f\n", "deliveries/s (burst)", dps, bdps);
    printf("%-34s %14.2f %14.2f\n", "delay p50 ms (steady rate)", p50, bp50);
    printf("%-34s %14.2f %14.2f\n", "delay p99 ms (steady rate)", p99, bp99);
    printf("%-34s %14.2f %14s\n", "delay p99 ms beside a 10 s dest", sp99, "-");
    printf("{\"bench\":\"webhooks\",\"deliveries\":%d,\"concurrency\":%d,\"rate_per_s\":%d,"
           "\"seconds\":%d,\"deliveries_per_s\":%.0f,\"delivery_p50_ms\":%.2f,\"delivery_p99_ms\":%.2f,"
           "\"naive_deliveries_per_s\":%.0f,\"naive_delivery_p50_ms\":%.2f,\"naive_delivery_p99_ms\":%.2f,"
           "\"throughput_ratio\":%.2f,\"beside_slow_p50_ms\":%.2f,\"beside_slow_p99_ms\":%.2f,"
           "\"naive_failures\":%d}\n",
           n, conc, rate, secs, dps, p50, p99, bdps, bp50, bp99, bdps > 0 ? dps / bdps : 0, sp50,
           sp99, fails);
    curl_global_cleanup();
    return 0;
}
