/*
 * bench/webhooks_e2e — webhook delay end to end, as a user sees it: from
 * the ingest acknowledgement (the 200 of POST /v1/events) to the webhook's
 * arrival at the receiver. Driven by bench/webhooks.sh, which starts
 * `crmstream serve` with one rule (a `webhook` action on every
 * SupportCaseEscalated event) whose destination is this program's receiver.
 *
 *   1. starts the receiver (tests/webhook/recv.c, 127.0.0.1, free port,
 *      answers 200 at once) and writes its port to PORTFILE;
 *   2. waits for the server's ADDRFILE (DATA/http.addr);
 *   3. posts R events/s for D s, one event per request, open loop: event i
 *      is due at t0 + i/R, sent by connection i mod C (keep-alive); records
 *      when each 200 arrived;
 *   4. waits (up to W s after the last send) for the webhooks; matches each
 *      to its event by data.event_id; delay = arrival - ack, p50/p99.
 *
 *   build/bench/webhooks_e2e -p PORTFILE -a ADDRFILE [-r R] [-d D] [-c C] [-w W]
 * Human lines on stderr; the last line on stdout is one JSON object.
 */
#include <cjson/cJSON.h>
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
#include "../tests/webhook/recv.c"

#define ID_PREFIX "e2e-"

static void on_req(void *ctx, const rv_req *q, rv_answer *a)
{
    (void)ctx, (void)q;
    a->status = 200;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(int64_t *v, int k, int p)
{
    if (k <= 0) return 0;
    int i = (k * p) / 100;
    return v[i < k ? i : k - 1] / 1000.0;
}

static void sleep_until_us(int64_t t)
{
    int64_t now = rv_now_us();
    if (t <= now) return;
    struct timespec ts = {(t - now) / 1000000, ((t - now) % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static size_t discard(char *p, size_t s, size_t n, void *u)
{
    (void)p, (void)u;
    return s * n;
}

typedef struct sender {
    const char *url;
    int         w, conns, total, rate;
    int64_t     t0;
    int64_t    *ack_us;  /* 0: no 200 */
    int64_t    *ack_lat; /* ack - due, per event */
    atomic_int *fails;
} sender;

static void *send_loop(void *arg)
{
    sender *s = arg;
    CURL *e = curl_easy_init();
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(e, CURLOPT_URL, s->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 15000L);
    for (int i = s->w; i < s->total; i += s->conns) {
        int64_t due = s->t0 + (int64_t)i * 1000000 / s->rate;
        sleep_until_us(due);
        char ts[40], body[512];
        cs_fmt_time_ms(rv_now_us(), ts, sizeof ts);
        snprintf(body, sizeof body,
                 "{\"event_id\":\"" ID_PREFIX "%d\",\"type\":\"SupportCaseEscalated\",\"account_id\":\"acc_%d\","
                 "\"timestamp\":\"%s\",\"properties\":{\"case_id\":\"case_%d\",\"priority\":\"high\"}}",
                 i, i % 97, ts, i);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        CURLcode rc = curl_easy_perform(e);
        int64_t now = rv_now_us();
        long st = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
        if (rc == CURLE_OK && st == 200) {
            s->ack_us[i] = now;
            s->ack_lat[i] = now - due;
        } else {
            atomic_fetch_add(s->fails, 1);
        }
    }
    curl_easy_cleanup(e);
    curl_slist_free_all(hd);
    return NULL;
}

static int read_addr(const char *path, char *addr, size_t len, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(addr, (int)len, f)) addr[0] = '\0';
            fclose(f);
            addr[strcspn(addr, "\r\n")] = '\0';
            if (*addr) return 0;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int main(int argc, char **argv)
{
    int rate = 200, secs = 10, conns = 4, wait_s = 60;
    const char *portfile = NULL, *addrfile = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "p:a:r:d:c:w:")) != -1) {
        if (opt == 'p') portfile = optarg;
        else if (opt == 'a') addrfile = optarg;
        else if (opt == 'r') rate = atoi(optarg);
        else if (opt == 'd') secs = atoi(optarg);
        else if (opt == 'c') conns = atoi(optarg);
        else if (opt == 'w') wait_s = atoi(optarg);
        else break;
    }
    if (!portfile || !addrfile || rate <= 0 || secs <= 0 || conns <= 0 || conns > 64) {
        fprintf(stderr, "usage: webhooks_e2e -p PORTFILE -a ADDRFILE [-r R] [-d S] [-c C] [-w W]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rv_server *srv = rv_start(on_req, NULL, 1);
    if (!srv) {
        fprintf(stderr, "webhooks_e2e: cannot start the receiver\n");
        return 1;
    }
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", portfile);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", rv_port(srv)) < 0 || fclose(f) != 0 || rename(tmp, portfile) != 0) {
        fprintf(stderr, "webhooks_e2e: cannot write %s\n", portfile);
        return 1;
    }
    char addr[128], url[200];
    if (read_addr(addrfile, addr, sizeof addr, 60000) != 0) {
        fprintf(stderr, "webhooks_e2e: no server address in %s\n", addrfile);
        rv_stop(srv);
        return 1;
    }
    snprintf(url, sizeof url, "http://%s/v1/events", addr);

    int total = rate * secs;
    int64_t *ack_us = calloc((size_t)total, sizeof *ack_us);
    int64_t *ack_lat = calloc((size_t)total, sizeof *ack_lat);
    int64_t *d = calloc((size_t)total + 1, sizeof *d);
    atomic_int fails = 0;
    sender s[64];
    pthread_t th[64];
    int64_t t0 = rv_now_us() + 20000;
    for (int w = 0; w < conns; w++) {
        s[w] = (sender){.url = url, .w = w, .conns = conns, .total = total, .rate = rate, .t0 = t0,
                        .ack_us = ack_us, .ack_lat = ack_lat, .fails = &fails};
        pthread_create(&th[w], NULL, send_loop, &s[w]);
    }
    for (int w = 0; w < conns; w++) pthread_join(th[w], NULL);
    int64_t t_sent = rv_now_us();
    int acked = 0;
    for (int i = 0; i < total; i++) acked += ack_us[i] != 0;
    int got = rv_wait(srv, "/hook", acked, wait_s * 1000);
    int64_t t_last = t_sent;

    /* Match each webhook to its event; the first arrival of each counts. */
    int n = rv_count(srv, NULL), k = 0, dup = 0, unmatched = 0, early = 0;
    unsigned char *seen = calloc((size_t)total, 1);
    for (int i = 0; i < n; i++) {
        rv_req q;
        if (rv_get(srv, i, &q) != 0 || strcmp(q.path, "/hook") != 0) continue;
        cJSON *j = q.body ? cJSON_ParseWithLength(q.body, q.body_len) : NULL;
        const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(j, "data"), "event_id"));
        int idx = -1;
        if (eid && strncmp(eid, ID_PREFIX, strlen(ID_PREFIX)) == 0) {
            char *end;
            long v = strtol(eid + strlen(ID_PREFIX), &end, 10);
            if (*end == '\0' && v >= 0 && v < total) idx = (int)v;
        }
        cJSON_Delete(j);
        if (idx < 0 || !ack_us[idx]) {
            unmatched++;
            continue;
        }
        if (seen[idx]) {
            dup++;
            continue;
        }
        seen[idx] = 1;
        if (q.at_us < ack_us[idx]) early++; /* delivered before the client read its 200 */
        d[k++] = q.at_us - ack_us[idx];
        if (q.at_us > t_last) t_last = q.at_us;
    }
    rv_stop(srv);
    qsort(d, (size_t)k, sizeof *d, cmp64);
    double p50 = pct_ms(d, k, 50), p99 = pct_ms(d, k, 99), pmax = k ? d[k - 1] / 1000.0 : 0;
    int a = 0;
    for (int i = 0; i < total; i++)
        if (ack_us[i]) ack_lat[a++] = ack_lat[i];
    qsort(ack_lat, (size_t)a, sizeof *ack_lat, cmp64);
    double a50 = pct_ms(ack_lat, a, 50), a99 = pct_ms(ack_lat, a, 99);
    double span = (t_last - t0) / 1e6, dps = span > 0 ? k / span : 0;

    fprintf(stderr, "e2e: %d events at %d/s for %d s over %d connections: %d acked (%d failed), ingest ack"
                    " p50 %.2f ms p99 %.2f ms\n", total, rate, secs, conns, acked, atomic_load(&fails), a50, a99);
    fprintf(stderr, "e2e: %d webhooks delivered (%d duplicate, %d unmatched, %d before the ack was read;"
                    " receiver saw %d/%d within %d s): %.0f/s; ingest ack -> receiver p50 %.2f ms,"
                    " p99 %.2f ms, max %.2f ms\n", k, dup, unmatched, early, got, acked, wait_s, dps, p50, p99, pmax);
    printf("{\"e2e_rate_per_s\":%d,\"e2e_seconds\":%d,\"e2e_connections\":%d,\"e2e_events\":%d,"
           "\"e2e_acked\":%d,\"e2e_ingest_failures\":%d,\"e2e_delivered\":%d,\"e2e_duplicates\":%d,"
           "\"e2e_deliveries_per_s\":%.0f,\"e2e_ack_p50_ms\":%.2f,\"e2e_ack_p99_ms\":%.2f,"
           "\"e2e_delivery_p50_ms\":%.2f,\"e2e_delivery_p99_ms\":%.2f,\"e2e_delivery_max_ms\":%.2f}\n",
           rate, secs, conns, total, acked, atomic_load(&fails), k, dup, dps, a50, a99, p50, p99, pmax);
    free(seen);
    free(d);
    free(ack_lat);
    free(ack_us);
    curl_global_cleanup();
    return k == acked && acked == total ? 0 : 1;
}
