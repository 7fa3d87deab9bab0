/*
 * bench/e2e — lead routing end to end, as a user sees it: from the ingest
 * ACKNOWLEDGEMENT of a LeadCreated (the client reads its 200) to the lead's
 * routed row COMMITTED in the store, under realistic background traffic.
 * Driven by bench/e2e.sh, which starts `crmstream serve` with
 * CRMSTREAM_HIST_TRACE=crmstream_e2e_latency_seconds=TRACEFILE (metrics.c:
 * one line per observation, "<labels> <seconds> <wall_us>"; the pipeline
 * observes stage="routed" right after each batch's COMMIT returns, with the
 * request's arrival time as the start).
 *
 *   1. waits for the server's ADDRFILE (DATA/http.addr);
 *   2. background: the simulator's world events (src/sim/world.h: accounts,
 *      usage, tickets, trials, ...; its own LeadCreated left out) at R
 *      events/s, B per request (an SDK's batch), open loop over C keep-alive
 *      connections: batch k is due at t0 + k*B/R;
 *   3. leads: L LeadCreated/s, one per request, on ONE connection, in turn
 *      (so request intervals never overlap); records the wall time before
 *      the send and after its 200 (the ack); event time = the background's
 *      current world time (so nothing is late);
 *   4. waits until the pipeline has caught up (/readyz lag 0), reads the
 *      trace: each routed sample gives the commit time (wall_us, observed
 *      microseconds after COMMIT) and the arrival (wall_us - seconds); it is
 *      matched to the lead request sent last before its arrival;
 *      delay = commit - ack (negative: committed before the client read its
 *      ack; counted, and 0 in the percentiles).
 *
 *   build/bench/e2e -a ADDRFILE -T TRACEFILE [-r R] [-d D] [-l L] [-b B] [-c C] [-w W]
 * Human lines on stderr; the last line on stdout is one JSON object.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "sim/httpc.h"
#include "sim/world.h"

static void sleep_until_us(int64_t t)
{
    int64_t now = cs_now_us();
    if (t <= now) return;
    struct timespec ts = {(t - now) / 1000000, ((t - now) % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v (k values), p in (0, 1]. */
static double pct(const double *v, int k, double p)
{
    if (k <= 0) return 0;
    long i = (long)((double)k * p + 0.999999999) - 1;
    if (i < 0) i = 0;
    if (i >= k) i = k - 1;
    return v[i];
}

typedef struct bg {
    const char  *target;
    int          id, conns, batches, per;
    double       rate;
    int64_t      t0;
    char       **bodies;  /* one per batch */
    atomic_long *acked, *failed;
    double      *ack_ms;  /* per batch: ack - due (ms), -1 failed */
} bg;

static void *bg_loop(void *arg)
{
    bg *b = arg;
    cs_httpc h;
    cs_httpc_init(&h, b->target);
    cs_buf r;
    cs_buf_init(&r);
    for (int k = b->id; k < b->batches; k += b->conns) {
        int64_t due = b->t0 + (int64_t)((double)k * b->per * 1e6 / b->rate);
        sleep_until_us(due);
        int status = 0;
        r.len = 0;
        if (cs_httpc_request(&h, "POST", "/v1/events", "Content-Type: application/json\r\n", b->bodies[k],
                             strlen(b->bodies[k]), &status, &r) == 0 && status == 200) {
            atomic_fetch_add(b->acked, b->per);
            b->ack_ms[k] = (double)(cs_now_us() - due) / 1000.0;
        } else {
            atomic_fetch_add(b->failed, b->per);
            b->ack_ms[k] = -1;
        }
    }
    cs_buf_free(&r);
    cs_httpc_close(&h);
    return NULL;
}

typedef struct lead_run {
    const char *target;
    int         n;
    double      rate;
    int64_t     t0, world0, world_span_us, run_us;
    int64_t    *send_us, *ack_us; /* ack 0: failed */
} lead_run;

static void *lead_loop(void *arg)
{
    lead_run *l = arg;
    cs_httpc h;
    cs_httpc_init(&h, l->target);
    cs_buf r;
    cs_buf_init(&r);
    char body[600], ts[40];
    for (int i = 0; i < l->n; i++) {
        /* a little off the background's grid */
        int64_t due = l->t0 + (int64_t)(((double)i + 0.37) * 1e6 / l->rate);
        sleep_until_us(due);
        int64_t wt = l->world0 + (int64_t)((double)l->world_span_us * (double)(due - l->t0) / (double)l->run_us);
        cs_fmt_time_ms(wt, ts, sizeof ts);
        snprintf(body, sizeof body,
                 "{\"event_id\":\"bench-lead-%d\",\"type\":\"LeadCreated\",\"account_id\":\"bench_acc_%d\","
                 "\"timestamp\":\"%s\",\"properties\":{\"email\":\"lead%d@bench%d.example.com\",\"company\":\"Bench "
                 "%d\",\"country\":\"DE\",\"employee_count\":%d}}",
                 i, i, ts, i, i % 97, i % 97, 10 + i % 500);
        int status = 0;
        r.len = 0;
        l->send_us[i] = cs_now_us();
        if (cs_httpc_request(&h, "POST", "/v1/events", "Content-Type: application/json\r\n", body, strlen(body),
                             &status, &r) == 0 && status == 200)
            l->ack_us[i] = cs_now_us();
        else
            l->ack_us[i] = 0;
    }
    cs_buf_free(&r);
    cs_httpc_close(&h);
    return NULL;
}

static int read_target(const char *addrfile, char *target, size_t n, int wait_s)
{
    for (int i = 0; i < wait_s * 100; i++) {
        FILE *f = fopen(addrfile, "r");
        if (f) {
            char a[128] = "";
            int ok = fgets(a, sizeof a, f) != NULL;
            fclose(f);
            a[strcspn(a, "\r\n")] = 0;
            if (ok && *a) {
                snprintf(target, n, "http://%s", a);
                return 0;
            }
        }
        usleep(10000);
    }
    return -1;
}

static int caught_up(cs_httpc *h)
{
    cs_buf r;
    cs_buf_init(&r);
    int status = 0, ok = 0;
    if (cs_httpc_request(h, "GET", "/readyz", NULL, NULL, 0, &status, &r) == 0 && r.data) {
        cJSON *j = cJSON_Parse(r.data);
        const cJSON *lag = cJSON_GetObjectItem(j, "pipeline_lag");
        ok = status == 200 && cJSON_IsNumber(lag) && lag->valuedouble == 0;
        cJSON_Delete(j);
    }
    cs_buf_free(&r);
    return ok;
}

int main(int argc, char **argv)
{
    const char *addrfile = NULL, *tracefile = NULL;
    double rate = 2000, lrate = 20;
    int secs = 10, per = 10, conns = 4, wait_s = 60, c;
    while ((c = getopt(argc, argv, "a:T:r:d:l:b:c:w:")) != -1) {
        switch (c) {
        case 'a': addrfile = optarg; break;
        case 'T': tracefile = optarg; break;
        case 'r': rate = atof(optarg); break;
        case 'd': secs = atoi(optarg); break;
        case 'l': lrate = atof(optarg); break;
        case 'b': per = atoi(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 'w': wait_s = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: e2e -a ADDRFILE -T TRACEFILE [-r R] [-d D] [-l L] [-b B] [-c C] [-w W]\n");
            return 2;
        }
    }
    if (!addrfile || !tracefile || rate <= 0 || lrate <= 0 || secs <= 0 || per <= 0 || conns <= 0) {
        fprintf(stderr, "e2e: -a and -T are required; rates, -d, -b, -c positive\n");
        return 2;
    }
    /* The background: world events, in world (event-time) order. */
    int batches = (int)(rate * secs / per);
    int64_t end = cs_now_us() - 3600LL * 1000000;
    cs_world_opts wo = {.seed = 42, .accounts = 500, .days = 2, .end_us = end};
    cs_world *w = cs_world_new(&wo);
    cs_wevent ev;
    memset(&ev, 0, sizeof ev);
    cs_buf_init(&ev.json);
    char **bodies = calloc((size_t)batches, sizeof *bodies);
    cs_buf b;
    cs_buf_init(&b);
    int have = 0, k = 0;
    int64_t world0 = 0, world1 = 0;
    while (k < batches) {
        if (cs_world_next(w, &ev) != 0) { /* the world ended: another one, same span */
            cs_world_free(w);
            wo.seed++;
            w = cs_world_new(&wo);
            continue;
        }
        if (ev.is_lead || ev.invalid || ev.duplicate || ev.late) continue;
        if (!world0) world0 = ev.ts_us;
        world1 = ev.ts_us;
        cs_buf_adds(&b, have ? "," : "[");
        cs_buf_add(&b, ev.json.data, ev.json.len);
        if (++have == per) {
            cs_buf_adds(&b, "]");
            bodies[k++] = cs_buf_steal(&b);
            cs_buf_init(&b);
            have = 0;
        }
    }
    cs_world_free(w);
    cs_buf_free(&ev.json);
    if (world1 <= world0) world1 = world0 + 1;

    char target[160];
    if (read_target(addrfile, target, sizeof target, 60)) {
        fprintf(stderr, "e2e: no server address in %s\n", addrfile);
        return 1;
    }
    cs_httpc probe;
    cs_httpc_init(&probe, target);
    for (int i = 0; i < 3000 && !caught_up(&probe); i++) usleep(10000);

    int nleads = (int)(lrate * secs);
    lead_run lr = {target, nleads, lrate, 0, world0, world1 - world0, (int64_t)secs * 1000000,
                   calloc((size_t)nleads, sizeof(int64_t)), calloc((size_t)nleads, sizeof(int64_t))};
    atomic_long acked = 0, failed = 0;
    double *ack_ms = calloc((size_t)batches, sizeof *ack_ms);
    bg *bgs = calloc((size_t)conns, sizeof *bgs);
    pthread_t *th = calloc((size_t)conns + 1, sizeof *th);
    int64_t t0 = cs_now_us() + 200000;
    lr.t0 = t0;
    for (int i = 0; i < conns; i++) {
        bgs[i] = (bg){target, i, conns, batches, per, rate, t0, bodies, &acked, &failed, ack_ms};
        pthread_create(&th[i], NULL, bg_loop, &bgs[i]);
    }
    pthread_create(&th[conns], NULL, lead_loop, &lr);
    for (int i = 0; i <= conns; i++) pthread_join(th[i], NULL);
    double took_s = (double)(cs_now_us() - t0) / 1e6;
    int64_t deadline = cs_now_us() + (int64_t)wait_s * 1000000;
    while (!caught_up(&probe) && cs_now_us() < deadline) usleep(10000);
    usleep(100000); /* the trace is written right after the commit the lag reflects; let the line land */

    /* Match the routed samples to the lead requests. */
    FILE *tf = fopen(tracefile, "r");
    if (!tf) {
        fprintf(stderr, "e2e: cannot read %s\n", tracefile);
        return 1;
    }
    double *delay = calloc((size_t)nleads, sizeof *delay), *a2c = calloc((size_t)nleads, sizeof *a2c);
    int *hit = calloc((size_t)nleads, sizeof *hit);
    int matched = 0, unmatched = 0, twice = 0, before_ack = 0;
    char line[512];
    while (fgets(line, sizeof line, tf)) {
        if (strncmp(line, "stage=\"routed\" ", 15) != 0) continue;
        double v;
        long long wall;
        if (sscanf(line + 15, "%lf %lld", &v, &wall) != 2) continue;
        int64_t arrival = (int64_t)wall - (int64_t)(v * 1e6);
        int lo = 0, hi = nleads - 1, at = -1; /* last lead sent at or before the arrival */
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (lr.send_us[mid] && lr.send_us[mid] <= arrival) at = mid, lo = mid + 1;
            else hi = mid - 1;
        }
        if (at < 0 || !lr.ack_us[at]) {
            unmatched++;
            continue;
        }
        if (hit[at]++) {
            twice++;
            continue;
        }
        double d = (double)((int64_t)wall - lr.ack_us[at]) / 1000.0;
        if (d < 0) before_ack++, d = 0;
        delay[matched] = d;
        a2c[matched] = v * 1000.0;
        matched++;
    }
    fclose(tf);
    int acked_leads = 0;
    for (int i = 0; i < nleads; i++) acked_leads += lr.ack_us[i] != 0;
    qsort(delay, (size_t)matched, sizeof *delay, cmpd);
    qsort(a2c, (size_t)matched, sizeof *a2c, cmpd);
    int nack = 0;
    for (int i = 0; i < batches; i++)
        if (ack_ms[i] >= 0) ack_ms[nack++] = ack_ms[i];
    qsort(ack_ms, (size_t)nack, sizeof *ack_ms, cmpd);

    double p50 = pct(delay, matched, 0.50), p99 = pct(delay, matched, 0.99), p999 = pct(delay, matched, 0.999);
    int met = matched > 0 && p50 <= 1.0 && p99 <= 5.0;
    fprintf(stderr, "background: %ld events acked, %ld failed, in %.1f s (%.0f/s offered, batches of %d)\n",
            (long)atomic_load(&acked), (long)atomic_load(&failed), took_s, rate, per);
    fprintf(stderr, "leads: %d sent, %d acked, %d measured (%d unmatched samples, %d twice, %d committed before the ack was read)\n",
            nleads, acked_leads, matched, unmatched, twice, before_ack);
    fprintf(stderr, "ack -> routed row committed: p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms (targets p50 <= 1, p99 <= 5: %s)\n",
            p50, p99, p999, met ? "met" : "NOT met");
    fprintf(stderr, "request arrival -> committed (server-side): p50 %.3f ms, p99 %.3f ms, p99.9 %.3f ms\n",
            pct(a2c, matched, 0.5), pct(a2c, matched, 0.99), pct(a2c, matched, 0.999));
    printf("{\"rate_per_s\":%.0f,\"seconds\":%d,\"batch_events\":%d,\"events_acked\":%ld,\"events_failed\":%ld,"
           "\"leads_sent\":%d,\"leads_acked\":%d,\"leads_measured\":%d,\"committed_before_ack\":%d,"
           "\"routed_p50_ms\":%.3f,\"routed_p99_ms\":%.3f,\"routed_p999_ms\":%.3f,"
           "\"arrival_to_commit_p50_ms\":%.3f,\"arrival_to_commit_p99_ms\":%.3f,\"arrival_to_commit_p999_ms\":%.3f,"
           "\"background_ack_p50_ms\":%.3f,\"background_ack_p99_ms\":%.3f,"
           "\"target_p50_ms\":1,\"target_p99_ms\":5,\"targets_met\":%s,"
           "\"measured_from\":\"ingest_ack\",\"measured_to\":\"routed_row_committed\"}\n",
           rate, secs, per, (long)atomic_load(&acked), (long)atomic_load(&failed), nleads, acked_leads, matched,
           before_ack, p50, p99, p999, pct(a2c, matched, 0.5), pct(a2c, matched, 0.99), pct(a2c, matched, 0.999),
           pct(ack_ms, nack, 0.5), pct(ack_ms, nack, 0.99), met ? "true" : "false");
    cs_httpc_close(&probe);
    return matched == nleads && matched > 0 ? 0 : 1;
}
