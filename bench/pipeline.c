/*
 * bench/pipeline — events per second through the pipeline (src/pipeline:
 * decode, signals, rules, leads lane, one SQLite transaction per batch with
 * its offsets) from a pre-filled embedded log of realistic mixed events (the
 * simulator's world, ingested in-process through the real validation),
 * against the raw log read rate of the same log in the same run (the
 * ceiling: no pipeline can apply events faster than it reads them).
 *
 *   pipeline [-a ACCOUNTS] [-d DAYS] [-w WORKERS,..] [-r RUNS] DIR
 *
 * Prints a table; the last line is one JSON object with events_per_s (the
 * best worker count's median), events_per_s_1w, events_per_s_2w,
 * log_read_events_per_s and ratio_vs_log_read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/config.h"
#include "core/logging.h"
#include "core/util.h"
#include "ingest/ingest.h"
#include "pipeline/pipeline.h"
#include "sim/world.h"
#include "store/store.h"

static int on_count(const cs_rec *rec, void *arg)
{
    uint64_t *n = arg;
    *n += rec->value_len > 0;
    return 0;
}

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && v[k] < v[k - 1]; k--) {
            double t = v[k];
            v[k] = v[k - 1];
            v[k - 1] = t;
        }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int accounts = 500, days = 30, runs = 3, c;
    char workers_arg[64] = "1,2";
    while ((c = getopt(argc, argv, "a:d:w:r:")) != -1) {
        if (c == 'a') accounts = atoi(optarg);
        else if (c == 'd') days = atoi(optarg);
        else if (c == 'w') snprintf(workers_arg, sizeof workers_arg, "%s", optarg);
        else if (c == 'r') runs = atoi(optarg);
        else {
            fprintf(stderr, "usage: pipeline [-a ACCOUNTS] [-d DAYS] [-w W1,W2] [-r RUNS] DIR\n");
            return 2;
        }
    }
    if (optind >= argc || runs < 1 || runs > 9) {
        fprintf(stderr, "usage: pipeline [-a ACCOUNTS] [-d DAYS] [-w W1,W2] [-r RUNS] DIR\n");
        return 2;
    }
    const char *dir = argv[optind];
    char err[512], yaml[1024];
    snprintf(yaml, sizeof yaml,
             "data: %s\nlog:\n  partitions: 8\n  fsync: \"interval:50\"\ningest:\n  max_age: 0\nrules: config/rules.yaml\n"
             "routing:\n  reps:\n    - {id: rep_a, name: A, email: a@example.com}\n"
             "    - {id: rep_b, name: B, email: b@example.com}\n    - {id: rep_c, name: C, email: c@example.com}\n",
             dir);
    cs_config cfg;
    cs_config_defaults(&cfg);
    if (cs_config_load_string(&cfg, "bench.yaml", yaml, err, sizeof err)) {
        fprintf(stderr, "pipeline: %s\n", err);
        return 1;
    }
    cs_log_set_level(CS_LOG_WARN);
    cs_bus *bus = cs_bus_embedded_open_cfg(dir, &cfg, err, sizeof err);
    if (!bus) {
        fprintf(stderr, "pipeline: %s\n", err);
        return 1;
    }
    /* Fill the log through real ingest (validation, canonical form, dedupe). */
    cs_ingest ing;
    if (cs_ingest_init(&ing, bus, &cfg, err, sizeof err)) {
        fprintf(stderr, "pipeline: %s\n", err);
        return 1;
    }
    cs_world_opts wo = {.seed = 11, .accounts = accounts, .days = days, .end_us = cs_now_us(), .dup_share = 0.02,
                        .ooo_share = 0.05, .late_share = 0.005, .invalid_share = 0};
    cs_world *w = cs_world_new(&wo);
    cs_wevent ev;
    memset(&ev, 0, sizeof ev);
    cs_buf_init(&ev.json);
    cs_buf body, resp;
    cs_buf_init(&body);
    cs_buf_init(&resp);
    int64_t t0 = cs_mono_us();
    int nb = 0;
    for (int more = 1; more;) {
        more = cs_world_next(w, &ev) == 0;
        if (more && !ev.invalid) {
            cs_buf_adds(&body, nb ? "," : "[");
            cs_buf_add(&body, ev.json.data, ev.json.len);
            nb++;
        }
        if ((nb == 500 || !more) && nb) {
            cs_buf_adds(&body, "]");
            cs_ingest_req rq = {.body = body.data, .len = body.len, .received_us = cs_now_us()};
            int retry = 0;
            cs_buf_reset(&resp);
            int st = cs_ingest_native(&ing, &rq, &resp, &retry);
            if (st != 200) {
                fprintf(stderr, "pipeline: ingest answered %d: %.200s\n", st, resp.data ? resp.data : "");
                return 1;
            }
            cs_buf_reset(&body);
            nb = 0;
        }
    }
    double fill_s = (double)(cs_mono_us() - t0) / 1e6;
    cs_world_free(w);
    cs_buf_free(&ev.json);
    uint64_t events = 0, lane = 0;
    for (int p = 0; p < bus->partitions; p++) events += (uint64_t)bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
    lane = (uint64_t)bus->ops->end_offset(bus, CS_TOPIC_LEADS, 0);
    printf("log: %llu events in %d partitions (+%llu in the leads lane), %d accounts, %d days; filled in %.1f s\n",
           (unsigned long long)events, bus->partitions, (unsigned long long)lane, accounts, days, fill_s);

    /* The ceiling: read every record of the log. */
    double rd[9];
    for (int r = 0; r < runs; r++) {
        uint64_t n = 0;
        int64_t r0 = cs_mono_us();
        for (int p = 0; p < bus->partitions; p++)
            for (int64_t from = 0, end = bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p); from < end;) {
                int k = bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, from, 65536, on_count, &n);
                if (k <= 0) break;
                from += k;
            }
        rd[r] = (double)n / ((double)(cs_mono_us() - r0) / 1e6);
    }
    double read_eps = median(rd, runs);
    printf("%-28s %12.0f events/s (median of %d)\n", "log read (ceiling)", read_eps, runs);

    /* The pipeline, from offset 0 into a fresh store, per worker count. */
    double best = 0, per_w[3] = {0, 0, 0};
    char *save = NULL;
    for (char *tok = strtok_r(workers_arg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int nw = atoi(tok);
        double v[9];
        for (int r = 0; r < runs; r++) {
            char spec[700];
            snprintf(spec, sizeof spec, "sqlite:%s/crm-w%d-r%d.sqlite", dir, nw, r);
            free(cfg.store);
            cfg.store = cs_strdup(spec);
            cfg.pipeline_workers = nw;
            cs_store *st = cs_store_open(cfg.store, dir, err, sizeof err);
            if (!st) {
                fprintf(stderr, "pipeline: %s\n", err);
                return 1;
            }
            int64_t p0 = cs_mono_us();
            cs_pipeline *pl = cs_pipeline_start(bus, st, &cfg, err, sizeof err);
            if (!pl) {
                fprintf(stderr, "pipeline: %s\n", err);
                return 1;
            }
            while (cs_pipeline_lag(pl) > 0) usleep(2000); /* polling the condition, not a timing */
            double s = (double)(cs_mono_us() - p0) / 1e6;
            cs_pipeline_stop(pl);
            st->ops->close(st);
            v[r] = (double)events / s;
        }
        double m = median(v, runs);
        if (nw >= 1 && nw <= 2) per_w[nw] = m;
        if (m > best) best = m;
        printf("pipeline, %d worker%s %12.0f events/s (median of %d)   ratio vs log read %.3f\n", nw, nw > 1 ? "s" : " ",
               m, runs, m / read_eps);
    }
    printf("{\"events\":%llu,\"events_per_s\":%.0f,\"events_per_s_1w\":%.0f,\"events_per_s_2w\":%.0f,"
           "\"log_read_events_per_s\":%.0f,\"ratio_vs_log_read\":%.4f}\n",
           (unsigned long long)events, best, per_w[1], per_w[2], read_eps, best / read_eps);
    cs_ingest_destroy(&ing);
    bus->ops->close(bus);
    cs_config_free(&cfg);
    cs_buf_free(&body);
    cs_buf_free(&resp);
    return 0;
}
