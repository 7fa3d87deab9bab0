/*
 * sim/demo — `crmstream demo`: start `crmstream serve` as a child on a free
 * port with a fresh data directory, simulate traffic against it, wait for
 * the pipeline to route every acknowledged lead, and print a summary.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
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
    "usage: crmstream demo [--rate EPS] [--duration S] [--seed S] [--accounts N] [--batch N]\n"
    "\n"
    "Start `crmstream serve` on a free port with a fresh data directory under ./data,\n"
    "run the simulator against it (default 20 s at 1000 events/s), wait until every\n"
    "acknowledged lead is routed, and print a summary: events sent and acknowledged,\n"
    "leads per rep, ingest-to-routed latency, and where the data and logs are.\n"
    "Uses config/crmstream.yaml when present (its reps).\n"
    "\n"
    "  --rate EPS      events per second (default 1000)\n"
    "  --duration S    seconds of traffic (default 20)\n"
    "  --seed S        world seed (default 1)\n"
    "  --accounts N    accounts (default 200)\n"
    "  --batch N       most events per request (default 20)\n"
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
static int64_t collect(cs_httpc *c, double **lat, struct rep_count *reps, int *nreps, int max_reps)
{
    char path[128];
    cs_buf resp;
    cs_buf_init(&resp);
    int64_t n = 0;
    size_t cap = 0;
    char cursor[64] = "";
    *nreps = 0;
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/leads?limit=1000%s%s", *cursor ? "&cursor=" : "", cursor);
        int status;
        if (cs_httpc_request(c, "GET", path, NULL, NULL, 0, &status, &resp) || status != 200) {
            n = -1;
            break;
        }
        cJSON *j = cJSON_Parse(resp.data);
        for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next) {
            if ((size_t)n == cap) cap = cap ? cap * 2 : 1024, *lat = cs_realloc(*lat, cap * sizeof **lat);
            (*lat)[n++] = cJSON_GetObjectItem(it, "route_latency_ms")->valuedouble;
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

int cs_cmd_demo(int argc, char **argv)
{
    cs_sim_opts o = {.rate = 1000, .duration = 20, .seed = 1, .accounts = 200, .batch = 20,
                     .progress = isatty(STDERR_FILENO)};
    cs_sim_parse(argc, argv, &o, "demo", demo_usage);

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

    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, STDOUT_FILENO), dup2(fd, STDERR_FILENO), close(fd);
        execl(self, self, "serve", "--data", dir, "--http", "127.0.0.1:0", (char *)NULL);
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
    printf("crmstream demo: serving on %s; simulating %.0f s at %.0f events/s (seed %llu)\n", target, o.duration,
           o.rate, (unsigned long long)o.seed);
    fflush(stdout);

    cs_sim_result r;
    int rc = cs_sim_run(&o, &r);
    cs_httpc c;
    cs_httpc_init(&c, target);
    double *lat = NULL;
    struct rep_count reps[64];
    int nreps = 0;
    int64_t leads = -1;
    /* Wait for the pipeline to route every acknowledged lead (bounded). */
    int64_t deadline = cs_mono_us() + 60 * 1000000LL;
    while (rc == 0) {
        leads = collect(&c, &lat, reps, &nreps, 64);
        if (leads < 0 || leads >= (int64_t)r.leads_acked || cs_mono_us() > deadline) break;
        usleep(100000);
    }
    cs_httpc_close(&c);
    kill(pid, SIGTERM);
    int wst = 0;
    waitpid(pid, &wst, 0);

    if (rc != 0 || leads < 0) {
        fprintf(stderr, "crmstream: demo: lost contact with the server; see %s\n", logpath);
        free(lat);
        return 1;
    }
    qsort(lat, (size_t)leads, sizeof *lat, cmp_double);
#define PCT(p) (leads ? lat[(size_t)((double)(leads - 1) * (p))] : 0.0)
    printf("\n== crmstream demo summary ==\n");
    printf("events sent          %llu in %.1f s (%.0f/s)\n", (unsigned long long)r.sent, r.elapsed_s,
           (double)r.sent / r.elapsed_s);
    printf("events acknowledged  %llu (rejected %llu, failed %llu)\n", (unsigned long long)r.acked,
           (unsigned long long)r.rejected, (unsigned long long)r.failed);
    printf("leads acknowledged   %llu\n", (unsigned long long)r.leads_acked);
    printf("leads routed         %lld\n", (long long)leads);
    for (int k = 0; k < nreps; k++) printf("  %-22s %lld\n", reps[k].owner, (long long)reps[k].n);
    printf("ingest -> routed     p50 %.2f ms   p99 %.2f ms   max %.2f ms\n", PCT(0.50), PCT(0.99),
           leads ? lat[leads - 1] : 0.0);
    printf("data                 %s (log: %s/log, store: %s/crm.sqlite)\n", dir, dir, dir);
    printf("server log           %s\n", logpath);
    free(lat);
    int ok = leads == (int64_t)r.leads_acked && r.request_errors == 0 && WIFEXITED(wst) && WEXITSTATUS(wst) == 0;
    if (!ok) fprintf(stderr, "crmstream: demo: %lld of %llu acknowledged leads routed; see %s\n", (long long)leads,
                     (unsigned long long)r.leads_acked, logpath);
    return ok ? 0 : 1;
}
