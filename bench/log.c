/*
 * bench/log — the embedded log (src/log/log.h, the product's cs_topic) under
 * durable appends, its disk ceiling, and its recovery time. Driven by
 * bench/log.sh, which runs Redis Streams beside it.
 *
 *   log [-t threads] [-b records_per_append] [-n total_records] [-P partitions]
 *       [-f always|interval:MS|never] [-s payload_bytes] [-D dir]     append run
 *   log -O MiB [-D dir]         O_DIRECT sequential-write ceiling (1 MiB writes)
 *   log -R N [-t threads] [-b batch] [-P partitions] [-D dir]
 *                               recovery: a child appends until N events are
 *                               acknowledged and keeps going; it is SIGKILLed;
 *                               the parent times cs_topic_open (recovery)
 *   log -p                      print one payload and exit
 *
 * Append run: T producer threads (in-process; no socket, no parsing) each
 * own the accounts of one partition (thread t -> partition t % P), as a
 * Kafka producer accumulates a batch per partition, and append B records per
 * cs_topic_append call. A record counts once the call returned, i.e. (fsync
 * always) after the fdatasync that covers it; concurrent appenders to one
 * partition share it (group commit). Payloads are realistic canonical
 * FeatureUsed events of exactly -s bytes, built before the clock starts.
 * After the run the topic is closed and reopened, and must hold exactly the
 * acknowledged records, or the program exits 1.
 *
 * Output: a summary, then one line "RESULT key=value ..." for scripts.
 * fdatasync is counted by overriding it in this executable (same system call).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/hash.h"
#include "core/logging.h"
#include "log/log.h"

static atomic_uint_fast64_t g_syncs, g_sync_ns;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Overrides libc's fdatasync for this executable (the log calls it). */
int fdatasync(int fd)
{
    uint64_t t0 = mono_ns();
    long rc = syscall(SYS_fdatasync, fd);
    atomic_fetch_add_explicit(&g_syncs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_sync_ns, mono_ns() - t0, memory_order_relaxed);
    return rc == 0 ? 0 : -1;
}

/* ---- payloads: canonical FeatureUsed events ----------------------------- */

#define KEY_MAX 24
#define PAYLOAD_MAX 4096

struct payload {
    char   key[KEY_MAX];
    size_t key_len;
    char  *value;
    size_t value_len;
};

static const char *const FEATURES[] = {"export_csv", "reports", "sso", "api_keys", "alerts", "dashboards"};
static const char *const TIERS[] = {"trial", "starter", "pro", "enterprise"};

/* An account id whose partition (Kafka's murmur2) is `part` of P. */
static void account_for(unsigned seed, int part, int P, char *key, size_t *len)
{
    for (unsigned i = seed;; i++) {
        *len = (size_t)snprintf(key, KEY_MAX, "acc_%05u", i % 100000u);
        if (cs_partition_for(key, *len, P) == part) return;
    }
}

static int make_payload(struct payload *p, const char *key, size_t key_len, uint64_t seq, size_t size)
{
    memcpy(p->key, key, key_len + 1);
    p->key_len = key_len;
    /* Exactly `size` bytes: the user id's digits are zero-padded to fit. */
    char buf[PAYLOAD_MAX];
    int n = 0;
    unsigned uid = (unsigned)(seq * 7919u % 5000u);
    for (int width = snprintf(NULL, 0, "%u", uid), pass = 0; pass < 2; pass++) {
        n = snprintf(buf, sizeof buf,
                     "{\"event_id\":\"evt_%012llx\",\"type\":\"FeatureUsed\",\"account_id\":\"%s\","
                     "\"user_id\":\"u_%0*u\",\"timestamp\":\"2026-11-27T10:%02u:%02u.%03uZ\",\"plan_tier\":\"%s\","
                     "\"properties\":{\"feature\":\"%s\",\"count\":%u}}",
                     (unsigned long long)(seq * 2654435761ull & 0xffffffffffffull), key, width, uid,
                     (unsigned)(seq / 60 % 60), (unsigned)(seq % 60),
                     (unsigned)(seq * 37 % 1000), TIERS[seq / 4 % 4], FEATURES[seq % 6], 1 + (unsigned)(seq % 3));
        if (n < 0 || (size_t)n > size || size >= PAYLOAD_MAX) return -1;
        width += (int)(size - (size_t)n);
    }
    if ((size_t)n != size) return -1;
    p->value = malloc(size + 1);
    if (!p->value) return -1;
    memcpy(p->value, buf, size + 1);
    p->value_len = size;
    return 0;
}

/* ---- producers ---------------------------------------------------------- */

struct shared {
    cs_topic          *lg;
    int                P;
    size_t             batch;
    int64_t            total_appends;   /* appends to claim; < 0: until stop */
    atomic_int_fast64_t claimed, acked;
    atomic_int         failed, stop;
    pthread_barrier_t *start;
    int                report_fd;       /* recovery child: acked counts go here */
};

struct worker {
    pthread_t       tid;
    int             id;
    struct shared  *sh;
    struct payload *pool;
    size_t          npool;
    cs_rec         *recs;
    uint64_t       *lat;
    size_t          nlat, caplat;
    int64_t         records;
    int             err;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    size_t next = 0;
    int part = w->id % sh->P;
    if (sh->start) pthread_barrier_wait(sh->start);
    for (;;) {
        if (sh->total_appends >= 0 &&
            atomic_fetch_add_explicit(&sh->claimed, 1, memory_order_relaxed) >= sh->total_appends)
            break;
        if (atomic_load_explicit(&sh->stop, memory_order_relaxed)) break;
        uint64_t t0 = mono_ns();
        for (size_t i = 0; i < sh->batch; i++) {
            const struct payload *p = &w->pool[next];
            next = next + 1 == w->npool ? 0 : next + 1;
            w->recs[i] = (cs_rec){.ts_us = (int64_t)(t0 / 1000), .key = p->key, .key_len = p->key_len,
                                  .value = p->value, .value_len = p->value_len};
        }
        int rc = cs_topic_append(sh->lg, part, w->recs, sh->batch);
        uint64_t t1 = mono_ns();
        if (rc != 0) {
            w->err = errno;
            atomic_store(&sh->failed, 1);
            break;
        }
        if (w->lat) {
            if (w->nlat == w->caplat) {
                w->caplat *= 2;
                w->lat = realloc(w->lat, w->caplat * sizeof *w->lat);
                if (!w->lat) abort();
            }
            w->lat[w->nlat++] = t1 - t0;
        }
        w->records += (int64_t)sh->batch;
        int64_t acked = atomic_fetch_add(&sh->acked, (int64_t)sh->batch) + (int64_t)sh->batch;
        if (sh->report_fd >= 0 && acked % 100000 < (int64_t)sh->batch) {
            if (write(sh->report_fd, &acked, sizeof acked) != (ssize_t)sizeof acked) {
            }
        }
        if (atomic_load_explicit(&sh->failed, memory_order_relaxed)) break;
    }
    return NULL;
}

static struct worker *make_workers(struct shared *sh, int threads, size_t payload, int latency)
{
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    size_t npool = sh->batch > 512 ? sh->batch : 512;
    for (int t = 0; t < threads; t++) {
        struct worker *w = &ws[t];
        w->id = t;
        w->sh = sh;
        w->npool = npool;
        w->pool = calloc(npool, sizeof *w->pool);
        w->recs = calloc(sh->batch, sizeof *w->recs);
        if (latency) {
            w->caplat = 1 << 16;
            w->lat = malloc(w->caplat * sizeof *w->lat);
        }
        for (size_t i = 0; i < npool; i++) {
            char key[KEY_MAX];
            size_t kl;
            uint64_t seq = (uint64_t)t * npool + i;
            account_for((unsigned)(seq * 2654435761u % 10000u), t % sh->P, sh->P, key, &kl);
            if (make_payload(&w->pool[i], key, kl, seq, payload) != 0) {
                fprintf(stderr, "log: payload of %zu bytes is too small for the event\n", payload);
                exit(2);
            }
        }
    }
    return ws;
}

static void free_workers(struct worker *ws, int threads)
{
    for (int t = 0; t < threads; t++) {
        for (size_t i = 0; i < ws[t].npool; i++) free(ws[t].pool[i].value);
        free(ws[t].pool);
        free(ws[t].recs);
        free(ws[t].lat);
    }
    free(ws);
}

/* ---- helpers ------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, size_t n, double p)
{
    if (n == 0) return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0;
}

static const char *fs_name(const char *dir)
{
    struct statfs s;
    if (statfs(dir, &s) != 0) return "unknown";
    switch ((unsigned long)s.f_type) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    default: return "other";
    }
}

static void rm_rf(const char *dir)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "log: cannot remove %s\n", dir);
}

static void usage(void)
{
    fprintf(stderr, "usage: log [-t threads] [-b batch] [-n records] [-P partitions] [-f policy] [-s bytes] [-D dir]\n"
                    "       log -O MiB [-D dir] | log -R events [-t threads] [-b batch] [-P partitions] [-D dir] | log -p\n");
    exit(2);
}

static long num(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) usage();
    return v;
}

static void topic_opts(cs_topic_opts *o, int P, const char *policy)
{
    cs_topic_opts_default(o);
    o->partitions = P;
    o->retention_ms = 0;
    if (strcmp(policy, "always") == 0) o->fsync_policy = CS_FSYNC_ALWAYS;
    else if (strcmp(policy, "never") == 0) o->fsync_policy = CS_FSYNC_NEVER;
    else if (strncmp(policy, "interval:", 9) == 0) {
        o->fsync_policy = CS_FSYNC_INTERVAL;
        o->fsync_interval_ms = (int)num(policy + 9, 1, 100000);
    } else usage();
}

/* ---- O_DIRECT ceiling --------------------------------------------------- */

static int run_odirect(const char *base, long mib)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/odirect.XXXXXX", base);
    int fd = mkstemp(path);
    if (fd < 0) return perror("log: mkstemp"), 1;
    close(fd);
    fd = open(path, O_WRONLY | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "log: O_DIRECT not supported on %s: %s\n", base, strerror(errno));
        unlink(path);
        printf("RESULT odirect_mb_s=0\n");
        return 0;
    }
    size_t chunk = 1 << 20;
    void *buf;
    if (posix_memalign(&buf, 4096, chunk)) return 1;
    memset(buf, 'x', chunk);
    uint64_t t0 = mono_ns();
    for (long i = 0; i < mib; i++)
        if (pwrite(fd, buf, chunk, (off_t)i * (off_t)chunk) != (ssize_t)chunk) {
            perror("log: O_DIRECT write");
            unlink(path);
            return 1;
        }
    if (fdatasync(fd) != 0) perror("log: fdatasync");
    double secs = (double)(mono_ns() - t0) / 1e9;
    close(fd);
    unlink(path);
    free(buf);
    double mbs = (double)mib * 1.048576 / secs;
    printf("log: O_DIRECT sequential write, 1 MiB writes, %ld MiB + fdatasync: %.0f MB/s (%.2f s, %s)\n", mib, mbs,
           secs, fs_name(base));
    printf("RESULT odirect_mb_s=%.0f\n", mbs);
    return 0;
}

/* ---- recovery after kill -9 --------------------------------------------- */

static int run_recovery(const char *base, long events, int threads, size_t batch, int P, size_t payload)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/cs-log-recovery.XXXXXX", base);
    if (!mkdtemp(dir)) return perror("log: mkdtemp"), 1;
    int pfd[2];
    if (pipe(pfd) != 0) return 1;
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        cs_topic_opts o;
        /* Filling 10 M events at fsync always takes minutes; the log's shape
         * (batches, segments, no clean-shutdown marker) is what recovery sees. */
        topic_opts(&o, P, "interval:10");
        char err[512];
        cs_topic *lg = cs_topic_open(dir, &o, err, sizeof err);
        if (!lg) {
            fprintf(stderr, "log: child open: %s\n", err);
            _exit(1);
        }
        struct shared sh = {.lg = lg, .P = P, .batch = batch, .total_appends = -1, .report_fd = pfd[1]};
        struct worker *ws = make_workers(&sh, threads, payload, 0);
        for (int t = 0; t < threads; t++) pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]);
        for (int t = 0; t < threads; t++) pthread_join(ws[t].tid, NULL);
        _exit(2); /* only a failed append gets here */
    }
    close(pfd[1]);
    int64_t acked = 0, v;
    uint64_t f0 = mono_ns();
    while (acked < events && read(pfd[0], &v, sizeof v) == (ssize_t)sizeof v)
        if (v > acked) acked = v;
    double fill_s = (double)(mono_ns() - f0) / 1e9;
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    close(pfd[0]);
    if (acked < events) {
        fprintf(stderr, "log: the appending child failed after %lld events\n", (long long)acked);
        rm_rf(dir);
        return 1;
    }
    /* Recovery: the log as a restarting server opens it (page cache warm,
     * as after a process crash; a machine reboot adds the cold reads). */
    cs_topic_opts o;
    topic_opts(&o, P, "always");
    char err[512];
    uint64_t r0 = mono_ns();
    cs_topic *lg = cs_topic_open(dir, &o, err, sizeof err);
    double rec_s = (double)(mono_ns() - r0) / 1e9;
    if (!lg) {
        fprintf(stderr, "log: reopen after kill -9: %s\n", err);
        rm_rf(dir);
        return 1;
    }
    int64_t end = 0;
    for (int p = 0; p < P; p++) end += cs_topic_end(lg, p);
    cs_topic_stats ts;
    cs_topic_get_stats(lg, -1, &ts);
    cs_topic_close(lg);
    rm_rf(dir);
    int ok = end >= acked;
    printf("log: recovery after kill -9: %lld events acknowledged (filled in %.1f s, fsync interval:10), %lld in the "
           "log after reopen, %lld segments, %.0f MB, torn tail cut %lld bytes; reopen %.3f s; %s\n",
           (long long)acked, fill_s, (long long)end, (long long)ts.segments, (double)ts.bytes / 1e6,
           (long long)ts.truncated_bytes, rec_s, ok ? "ok" : "LOST EVENTS");
    printf("RESULT recovery_s=%.3f recovered_events=%lld acked_events=%lld segments=%lld bytes=%lld verify=%s\n",
           rec_s, (long long)end, (long long)acked, (long long)ts.segments, (long long)ts.bytes, ok ? "ok" : "failed");
    return ok ? 0 : 1;
}

/* ---- append run --------------------------------------------------------- */

int main(int argc, char **argv)
{
    long threads = 8, batch = 16, total = 100000, payload = 210, P = 8, odirect = 0, recover = 0;
    const char *policy = "always";
    int print_payload = 0;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/var/tmp";
    int c;
    while ((c = getopt(argc, argv, "t:b:n:P:f:s:D:O:R:ph")) != -1) {
        switch (c) {
        case 't': threads = num(optarg, 1, 1024); break;
        case 'b': batch = num(optarg, 1, 100000); break;
        case 'n': total = num(optarg, 1, 1L << 40); break;
        case 'P': P = num(optarg, 1, 1024); break;
        case 'f': policy = optarg; break;
        case 's': payload = num(optarg, 1, PAYLOAD_MAX - 1); break;
        case 'D': base = optarg; break;
        case 'O': odirect = num(optarg, 1, 1 << 20); break;
        case 'R': recover = num(optarg, 1, 1L << 40); break;
        case 'p': print_payload = 1; break;
        default: usage();
        }
    }
    if (optind != argc) usage();
    cs_log_set_level(CS_LOG_ERROR);
    if (print_payload) {
        struct payload p;
        if (make_payload(&p, "acc_00042", 9, 42, (size_t)payload) != 0) return 2;
        fwrite(p.value, 1, p.value_len, stdout);
        putchar('\n');
        free(p.value);
        return 0;
    }
    if (odirect) return run_odirect(base, odirect);
    if (recover) return run_recovery(base, recover, (int)threads, (size_t)batch, (int)P, (size_t)payload);

    char dir[4200];
    snprintf(dir, sizeof dir, "%s/cs-log.XXXXXX", base);
    if (!mkdtemp(dir)) return perror("log: mkdtemp"), 1;
    const char *fs = fs_name(dir);
    if (strcmp(fs, "tmpfs") == 0) fprintf(stderr, "log: WARNING: %s is tmpfs; fdatasync is free there\n", dir);
    cs_topic_opts o;
    topic_opts(&o, (int)P, policy);
    char err[512];
    cs_topic *lg = cs_topic_open(dir, &o, err, sizeof err);
    if (!lg) {
        fprintf(stderr, "log: %s\n", err);
        rm_rf(dir);
        return 1;
    }
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    struct shared sh = {.lg = lg, .P = (int)P, .batch = (size_t)batch, .start = &start, .report_fd = -1};
    sh.total_appends = (total + batch - 1) / batch;
    struct worker *ws = make_workers(&sh, (int)threads, (size_t)payload, 1);
    for (long t = 0; t < threads; t++) pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t syncs0 = atomic_load(&g_syncs), sync_ns0 = atomic_load(&g_sync_ns);
    uint64_t t0 = mono_ns();
    pthread_barrier_wait(&start);
    for (long t = 0; t < threads; t++) pthread_join(ws[t].tid, NULL);
    uint64_t t1 = mono_ns();
    getrusage(RUSAGE_SELF, &ru1);
    uint64_t syncs = atomic_load(&g_syncs) - syncs0, sync_ns = atomic_load(&g_sync_ns) - sync_ns0;

    int64_t records = 0;
    size_t nlat = 0;
    for (long t = 0; t < threads; t++) {
        records += ws[t].records, nlat += ws[t].nlat;
        if (ws[t].err) fprintf(stderr, "log: thread %ld: append failed: %s\n", t, strerror(ws[t].err));
    }
    uint64_t *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t k = 0;
    for (long t = 0; t < threads; t++) memcpy(lat + k, ws[t].lat, ws[t].nlat * sizeof *lat), k += ws[t].nlat;
    qsort(lat, nlat, sizeof *lat, cmp_u64);

    /* Durability check: exactly what was acknowledged is there on reopen. */
    int64_t end_live = 0, end_reopen = 0;
    for (int p = 0; p < P; p++) end_live += cs_topic_end(lg, p);
    cs_topic_close(lg);
    uint64_t r0 = mono_ns();
    lg = cs_topic_open(dir, &o, err, sizeof err);
    double reopen_ms = (double)(mono_ns() - r0) / 1e6;
    int ok = 0;
    if (lg) {
        for (int p = 0; p < P; p++) end_reopen += cs_topic_end(lg, p);
        cs_topic_stats ts;
        cs_topic_get_stats(lg, -1, &ts);
        ok = end_live == records && end_reopen == records && ts.truncated_bytes == 0;
        cs_topic_close(lg);
    } else {
        fprintf(stderr, "log: reopen: %s\n", err);
    }
    rm_rf(dir);

    double secs = (double)(t1 - t0) / 1e9, eps = secs > 0 ? (double)records / secs : 0;
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                 (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    double per_sync = syncs ? (double)records / (double)syncs : 0;
    printf("log: %ld producer thread(s) x %ld record(s)/append, %ld partition(s), %ld-byte payloads, fsync=%s, %s\n",
           threads, batch, P, payload, policy, fs);
    printf("  %lld records in %.3f s: %.0f events/s, %.1f MB/s of payload\n", (long long)records, secs, eps,
           eps * (double)payload / 1e6);
    printf("  append latency us: p50 %.1f  p99 %.1f  p99.9 %.1f\n", pct_us(lat, nlat, 0.5), pct_us(lat, nlat, 0.99),
           pct_us(lat, nlat, 0.999));
    printf("  fdatasync: %llu calls, %.1f records per call, mean %.1f us; cpu %.2f us/record\n",
           (unsigned long long)syncs, per_sync, syncs ? (double)sync_ns / (double)syncs / 1000.0 : 0,
           records ? cpu * 1e6 / (double)records : 0);
    printf("  verify: %s (%lld acknowledged, %lld after reopen in %.1f ms)\n", ok ? "ok" : "FAILED",
           (long long)records, (long long)end_reopen, reopen_ms);
    printf("RESULT threads=%ld batch=%ld partitions=%ld policy=%s records=%lld secs=%.4f eps=%.0f mb_s=%.2f "
           "p50_us=%.1f p99_us=%.1f p999_us=%.1f syncs=%llu recs_per_sync=%.1f cpu_us_per_rec=%.2f verify=%s\n",
           threads, batch, P, policy, (long long)records, secs, eps, eps * (double)payload / 1e6,
           pct_us(lat, nlat, 0.5), pct_us(lat, nlat, 0.99), pct_us(lat, nlat, 0.999), (unsigned long long)syncs,
           per_sync, records ? cpu * 1e6 / (double)records : 0, ok ? "ok" : "failed");
    free(lat);
    free_workers(ws, (int)threads);
    pthread_barrier_destroy(&start);
    return ok ? 0 : 1;
}
