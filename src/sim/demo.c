/*
 * sim/demo — `crmstream demo`: start `crmstream serve` as a child on a free
 * port with a fresh data directory, simulate traffic against it, wait for
 * the pipeline to route every acknowledged lead, and print a summary.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/app.h"
#include "core/util.h"
#include "sim/httpc.h"
#include "sim/sim.h"

static const char demo_usage[] =
    "usage: crmstream demo [--days D] [--rate EPS] [--duration S] [--seed S] [--accounts N] [--batch N]\n"
    "\n"
    "Start `crmstream serve` on a free port with a fresh data directory under ./data;\n"
    "send it a simulated month of a B2B SaaS world (D days of event time, with\n"
    "planted churners, ticket spikes before renewal, product-qualified trials and\n"
    "signup-abuse bursts beside decoys), then live traffic (default 20 s at 1000\n"
    "events/s); wait until every acknowledged lead is routed and print a summary:\n"
    "events, leads per rep, ingest-to-routed latency of the live traffic, the\n"
    "detection quality per planted pattern and the routing correctness (crmstream\n"
    "evaluate), end-to-end latency percentiles from /metrics, where to look next, and\n"
    "where the data and logs are. Uses the reps of config/crmstream.yaml and\n"
    "config/rules.yaml.\n"
    "\n"
    "  --days D        days of simulated world before the live traffic (default 30; 0: none)\n"
    "  --rate EPS      events per second (default 1000)\n"
    "  --duration S    seconds of traffic (default 20)\n"
    "  --seed S        world seed (default 1)\n"
    "  --accounts N    accounts (default 200)\n"
    "  --batch N       most events per request (default 20)\n"
    "  --segment-share F, --duplicates F, --out-of-order F, --late F, --invalid F\n"
    "                  the world's traffic mix, as for `crmstream simulate` (defaults 0.5,\n"
    "                  0.02, 0.05, 0.005, 0.005)\n"
    "  -h, --help      this help\n";

struct rep_count {
    char    owner[160];
    int64_t n;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Read every lead through the API; fills latencies and per-owner counts. */
static int64_t collect(cs_httpc *c, double **lat, int64_t *nlat, struct rep_count *reps, int *nreps, int max_reps)
{
    char path[128];
    cs_buf resp;
    cs_buf_init(&resp);
    int64_t n = 0;
    size_t cap = 0;
    char cursor[64] = "";
    *nreps = 0;
    *nlat = 0;
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/leads?limit=1000%s%s", *cursor ? "&cursor=" : "", cursor);
        int status;
        if (cs_httpc_request(c, "GET", path, NULL, NULL, 0, &status, &resp) || status != 200) {
            n = -1;
            break;
        }
        cJSON *j = cJSON_Parse(resp.data);
        for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next) {
            /* Latency of the live traffic only: the world's month is a backfill
             * that queues behind itself by design. */
            const char *eid = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event_id"));
            if (eid && strncmp(eid, "sim-", 4) == 0) {
                if ((size_t)*nlat == cap) cap = cap ? cap * 2 : 1024, *lat = cs_realloc(*lat, cap * sizeof **lat);
                (*lat)[(*nlat)++] = cJSON_GetObjectItem(it, "route_latency_ms")->valuedouble;
            }
            n++;
            cJSON *o = cJSON_GetObjectItem(it, "owner");
            const char *owner = cJSON_IsString(o) ? o->valuestring : "(unassigned)";
            int k;
            for (k = 0; k < *nreps; k++)
                if (strcmp(reps[k].owner, owner) == 0) break;
            if (k == *nreps && k < max_reps) snprintf(reps[(*nreps)++].owner, sizeof reps[k].owner, "%s", owner);
            if (k < max_reps) reps[k].n++;
        }
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        int more = cJSON_IsString(nc);
        if (more) snprintf(cursor, sizeof cursor, "%s", nc->valuestring);
        cJSON_Delete(j);
        if (!more) break;
    }
    cs_buf_free(&resp);
    return n;
}

/* The demo server's config: the reps of config/crmstream.yaml, the rules of
 * config/rules.yaml, and ingest.max_age 0 so the simulated month (event time
 * in the past) is taken as a backfill. */
static int write_demo_config(const char *path, cs_buf *reps_csv)
{
    cs_config cfg;
    if (cs_app_load_config(&cfg, NULL)) return -1;
    FILE *f = fopen(path, "w");
    if (!f) {
        cs_config_free(&cfg);
        return -1;
    }
    fprintf(f, "log:\n  partitions: %d\ningest:\n  max_age: 0\n  dedupe_max_ids: 2097152\npipeline:\n  max_lag: 0\n",
            cfg.partitions);
    if (access("config/rules.yaml", R_OK) == 0) fprintf(f, "rules: config/rules.yaml\n");
    if (cfg.nreps) fprintf(f, "routing:\n  reps:\n");
    for (size_t i = 0; i < cfg.nreps; i++) {
        fprintf(f, "    - {id: \"%s\", name: \"%s\", email: \"%s\"}\n", cfg.reps[i].id, cfg.reps[i].name,
                cfg.reps[i].email);
        cs_buf_printf(reps_csv, "%s%s", i ? "," : "", cfg.reps[i].id);
    }
    cs_config_free(&cfg);
    return fclose(f);
}

/* Poll /readyz until the pipeline has applied everything (bounded). */
static int wait_caught_up(cs_httpc *c, int timeout_s)
{
    cs_buf resp;
    cs_buf_init(&resp);
    int64_t deadline = cs_mono_us() + (int64_t)timeout_s * 1000000;
    int ok = 0;
    while (!ok && cs_mono_us() < deadline) {
        int st;
        if (cs_httpc_request(c, "GET", "/readyz", NULL, NULL, 0, &st, &resp) == 0) {
            cJSON *j = cJSON_Parse(resp.data);
            cJSON *lag = cJSON_GetObjectItem(j, "pipeline_lag");
            ok = st == 200 && cJSON_IsNumber(lag) && lag->valuedouble == 0;
            cJSON_Delete(j);
        }
        if (!ok) usleep(100000);
    }
    cs_buf_free(&resp);
    return ok ? 0 : -1;
}

/* One crmstream_e2e_latency_seconds series, read from /metrics. */
struct hist {
    double le[64], cum[64];
    int    n;
    double count;
};

/* hs[0]: stage="routed", hs[1]: stage="signal". */
static void read_e2e(const char *target, struct hist hs[2])
{
    cs_httpc c;
    cs_buf resp;
    cs_buf_init(&resp);
    int st;
    memset(hs, 0, 2 * sizeof *hs);
    if (cs_httpc_init(&c, target) == 0 && cs_httpc_request(&c, "GET", "/metrics", NULL, NULL, 0, &st, &resp) == 0 &&
        st == 200) {
        static const char *const stage[2] = {"stage=\"routed\"", "stage=\"signal\""};
        for (char *line = resp.data; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            if (strncmp(line, "crmstream_e2e_latency_seconds_", 30) != 0) continue;
            for (int k = 0; k < 2; k++) {
                char *eol = strchr(line, '\n');
                char *lab = strstr(line, stage[k]);
                if (!lab || (eol && lab > eol)) continue;
                struct hist *h = &hs[k];
                if (strncmp(line + 30, "bucket{", 7) == 0 && h->n < 64) {
                    char *le = strstr(line, "le=\"");
                    char *val = strstr(line, "} ");
                    if (!le || !val) continue;
                    h->le[h->n] = strncmp(le + 4, "+Inf", 4) == 0 ? INFINITY : strtod(le + 4, NULL);
                    h->cum[h->n++] = strtod(val + 2, NULL);
                } else if (strncmp(line + 30, "count{", 6) == 0) {
                    char *val = strstr(line, "} ");
                    if (val) h->count = strtod(val + 2, NULL);
                }
            }
        }
    }
    cs_httpc_close(&c);
    cs_buf_free(&resp);
}

/* Quantile q of the observations in b minus those in a (a may be zero),
 * linear within a bucket (Prometheus' histogram_quantile); seconds. */
static double quantile(const struct hist *a, const struct hist *b, double q, double *n)
{
    *n = b->count - a->count;
    if (*n <= 0 || b->n == 0) return NAN;
    double want = q * *n, prev_le = 0, prev_cum = 0;
    for (int i = 0; i < b->n; i++) {
        double cum = b->cum[i] - (i < a->n ? a->cum[i] : 0);
        if (cum >= want) {
            if (isinf(b->le[i])) return prev_le; /* beyond the last bound: at least that */
            double in = cum - prev_cum;
            return prev_le + (b->le[i] - prev_le) * (in > 0 ? (want - prev_cum) / in : 1);
        }
        prev_le = b->le[i], prev_cum = cum;
    }
    return prev_le;
}

static void print_e2e(const struct hist world[2], const struct hist all[2])
{
    static const struct hist zero;
    static const char *const what[2] = {"ingest -> lead routed", "ingest -> signal written"};
    printf("\nend-to-end latency (crmstream_e2e_latency_seconds from /metrics: HTTP request arrival to the effect\n"
           "committed; percentiles interpolated within the histogram's buckets)\n");
    printf("  %-26s %-9s %10s %10s %10s %10s\n", "stage", "phase", "p50 ms", "p99 ms", "p99.9 ms", "samples");
    for (int k = 0; k < 2; k++) {
        for (int ph = 0; ph < 2; ph++) {
            const struct hist *a = ph ? &world[k] : &zero, *b = ph ? &all[k] : &world[k];
            double n, p50 = quantile(a, b, 0.5, &n), p99 = quantile(a, b, 0.99, &n), p999 = quantile(a, b, 0.999, &n);
            if (n <= 0) {
                printf("  %-26s %-9s %10s %10s %10s %10.0f\n", what[k], ph ? "live" : "backfill", "-", "-", "-", 0.0);
                continue;
            }
            printf("  %-26s %-9s %10.2f %10.2f %10.2f %10.0f\n", what[k], ph ? "live" : "backfill", p50 * 1e3,
                   p99 * 1e3, p999 * 1e3, n);
        }
    }
    printf("  (backfill: the simulated month sent as fast as the server takes it, so it queues behind itself;\n"
           "   live: the paced traffic after it)\n");
}

int cs_cmd_demo(int argc, char **argv)
{
    cs_sim_opts o = {.rate = 1000, .duration = 20, .seed = 1, .accounts = 0, .batch = 20,
                     .progress = isatty(STDERR_FILENO), .days = 30, .dup_share = 0.02, .ooo_share = 0.05,
                     .late_share = 0.005, .invalid_share = 0.005, .segment_share = 0.5};
    cs_sim_parse(argc, argv, &o, "demo", demo_usage);
    int world_days = o.days, world_accounts = o.accounts ? o.accounts : 500;
    o.days = 0; /* the live phase */
    if (!o.accounts) o.accounts = 200;

    char dir[512], logpath[600], addrpath[600], self[4096];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    snprintf(dir, sizeof dir, "data/demo-%04d%02d%02d-%02d%02d%02d-%d", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)getpid());
    if (cs_mkdirs(dir, 0755) != 0) {
        cs_fail(dir, strerror(errno));
        return 1;
    }
    snprintf(logpath, sizeof logpath, "%s/serve.log", dir);
    snprintf(addrpath, sizeof addrpath, "%s/http.addr", dir);
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        cs_fail("demo", "cannot find its own executable");
        return 1;
    }
    self[sl] = '\0';
    char cfgpath[600], truthpath[600];
    snprintf(cfgpath, sizeof cfgpath, "%s/demo.yaml", dir);
    snprintf(truthpath, sizeof truthpath, "%s/truth.jsonl", dir);
    cs_buf reps_csv;
    cs_buf_init(&reps_csv);
    cs_buf_adds(&reps_csv, "");
    if (write_demo_config(cfgpath, &reps_csv) != 0) {
        cs_fail(cfgpath, "cannot write the demo configuration");
        return 1;
    }

    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, STDOUT_FILENO), dup2(fd, STDERR_FILENO), close(fd);
        execl(self, self, "serve", "--config", cfgpath, "--data", dir, "--http", "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    printf("crmstream demo: starting the server (data in %s, log in %s)\n", dir, logpath);
    fflush(stdout);

    /* Wait for the server to publish its address (it does so once ready). */
    char addr[300] = "";
    for (int waited = 0; waited < 30000; waited += 20) {
        FILE *f = fopen(addrpath, "r");
        if (f) {
            if (fgets(addr, sizeof addr, f)) addr[strcspn(addr, "\n")] = '\0';
            fclose(f);
            if (*addr) break;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "crmstream: demo: the server exited during start; see %s\n", logpath);
            return 1;
        }
        usleep(20000);
    }
    if (!*addr) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fprintf(stderr, "crmstream: demo: the server did not become ready in 30 s; see %s\n", logpath);
        return 1;
    }
    char target[340];
    snprintf(target, sizeof target, "http://%s", addr);
    o.target = target;
    cs_sim_result wr = {0};
    int rc = 0;
    if (world_days > 0) {
        printf("crmstream demo: serving on %s; sending %d days of a %d-account world (seed %llu, truth in %s)\n",
               target, world_days, world_accounts, (unsigned long long)o.seed, truthpath);
        fflush(stdout);
        cs_sim_opts wo = o;
        wo.days = world_days;
        wo.accounts = world_accounts;
        wo.truth = truthpath;
        wo.rate = 1e7;
        wo.batch = 500;
        wo.duration_set = 0;
        wo.reps = reps_csv.data;
        rc = cs_sim_run(&wo, &wr);
        cs_httpc wc;
        cs_httpc_init(&wc, target);
        if (rc == 0 && wait_caught_up(&wc, 120) != 0) fprintf(stderr, "crmstream: demo: the pipeline is still behind\n");
        cs_httpc_close(&wc);
    }
    struct hist h_world[2], h_all[2];
    memset(h_world, 0, sizeof h_world), memset(h_all, 0, sizeof h_all);
    read_e2e(target, h_world);
    printf("crmstream demo: live traffic, %.0f s at %.0f events/s\n", o.duration, o.rate);
    fflush(stdout);
    cs_sim_result r;
    if (rc == 0) rc = cs_sim_run(&o, &r);
    else memset(&r, 0, sizeof r);
    r.leads_acked += wr.leads_acked;
    cs_httpc c;
    cs_httpc_init(&c, target);
    double *lat = NULL;
    struct rep_count reps[64];
    int nreps = 0;
    int64_t leads = -1, nlat = 0;
    /* Wait for the pipeline to route every acknowledged lead (bounded). */
    int64_t deadline = cs_mono_us() + 60 * 1000000LL;
    while (rc == 0) {
        leads = collect(&c, &lat, &nlat, reps, &nreps, 64);
        if (leads < 0 || leads >= (int64_t)r.leads_acked || cs_mono_us() > deadline) break;
        usleep(100000);
    }
    cs_buf quality;
    cs_buf_init(&quality);
    if (rc == 0 && world_days > 0) {
        char *qt = NULL;
        size_t ql = 0;
        FILE *qf = open_memstream(&qt, &ql);
        cs_evaluate(target, truthpath, 0, qf);
        fclose(qf);
        cs_buf_add(&quality, qt, ql);
        free(qt);
    }
    cs_httpc_close(&c);
    read_e2e(target, h_all);
    kill(pid, SIGTERM);
    int wst = 0;
    waitpid(pid, &wst, 0);

    if (rc != 0 || leads < 0) {
        fprintf(stderr, "crmstream: demo: lost contact with the server; see %s\n", logpath);
        free(lat);
        return 1;
    }
    qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] : 0.0)
    printf("\n== crmstream demo summary ==\n");
    if (world_days > 0) {
        printf("world events sent    %llu in %.1f s (%.0f/s): acknowledged %llu, duplicates %llu, rejected %llu "
               "(%llu invalid on purpose)\n",
               (unsigned long long)wr.sent, wr.elapsed_s, (double)wr.sent / (wr.elapsed_s > 0 ? wr.elapsed_s : 1),
               (unsigned long long)wr.acked, (unsigned long long)wr.duplicates, (unsigned long long)wr.rejected,
               (unsigned long long)wr.sent_invalid);
        printf("  doors              native /v1/events %llu (%llu requests), Segment /v1/batch %llu (%llu requests)\n",
               (unsigned long long)wr.sent_native, (unsigned long long)wr.requests_native,
               (unsigned long long)wr.sent_segment, (unsigned long long)wr.requests_segment);
        printf("  perturbed          duplicates %llu, out of order %llu, late %llu, invalid %llu\n",
               (unsigned long long)wr.sent_duplicate, (unsigned long long)wr.sent_ooo,
               (unsigned long long)wr.sent_late, (unsigned long long)wr.sent_invalid);
        if (wr.lead_waits)
            printf("  lead ordering      %llu waits for the previous lead's routing (%.1f s)\n",
                   (unsigned long long)wr.lead_waits, wr.lead_wait_s);
    }
    printf("events sent          %llu in %.1f s (%.0f/s)\n", (unsigned long long)r.sent, r.elapsed_s,
           (double)r.sent / r.elapsed_s);
    printf("events acknowledged  %llu (rejected %llu, failed %llu)\n", (unsigned long long)r.acked,
           (unsigned long long)r.rejected, (unsigned long long)r.failed);
    printf("leads acknowledged   %llu\n", (unsigned long long)r.leads_acked);
    printf("leads routed         %lld\n", (long long)leads);
    for (int k = 0; k < nreps; k++) printf("  %-22s %lld\n", reps[k].owner, (long long)reps[k].n);
    printf("ingest -> routed     p50 %.2f ms   p99 %.2f ms   p99.9 %.2f ms   max %.2f ms   (%lld live leads, exact: "
           "route_latency_ms)\n",
           PCT(0.50), PCT(0.99), PCT(0.999), nlat ? lat[nlat - 1] : 0.0, (long long)nlat);
    if (quality.len) printf("\ndetection quality (crmstream evaluate --truth %s):\n%s\n", truthpath, quality.data);
    cs_buf_free(&quality);
    print_e2e(h_world, h_all);
    printf("\nwhere to look next (the server is stopped; `crmstream serve --config %s --data %s` brings it back):\n",
           cfgpath, dir);
    printf("  %-36s %s\n", "GET /metrics", "Prometheus metrics (docs/METRICS.md), e.g. crmstream_e2e_latency_seconds");
    printf("  %-36s %s\n", "GET /api/v1/leads", "leads with owner, route_reason and route_latency_ms");
    printf("  %-36s %s\n", "GET /api/v1/alerts", "the alerts evaluated above");
    printf("  %-36s %s\n", "crmstream status", "pipeline lag, partitions, DLQ sizes");
    printf("  %-36s %s\n", "crmstream dlq list --kind event", "dead-lettered events (late_event, undecodable)");
    printf("  %-36s %s\n", "crmstream evaluate --truth FILE", "this quality table again (truth above)");
    printf("  %-36s %s\n", "docs", "docs/ARCHITECTURE.md, docs/API.md, docs/SIGNALS.md, docs/RULES.md");
    printf("data                 %s (log: %s/log, store: %s/crm.sqlite)\n", dir, dir, dir);
    printf("server log           %s\n", logpath);
    cs_buf_free(&reps_csv);
    free(lat);
    int ok = leads == (int64_t)r.leads_acked && r.request_errors == 0 && WIFEXITED(wst) && WEXITSTATUS(wst) == 0;
    if (!ok) fprintf(stderr, "crmstream: demo: %lld of %llu acknowledged leads routed; see %s\n", (long long)leads,
                     (unsigned long long)r.leads_acked, logpath);
    return ok ? 0 : 1;
}
