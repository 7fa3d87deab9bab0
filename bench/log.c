/*
 * bench/log_append — durable append throughput and latency of one log
 * partition (src/log/plog.h) with fsync policy "always".
 *
 * T threads append concurrently to one cs_plog; each cs_plog_append call
 * carries B records (B = 1: one HTTP request's worth, the group-commit case;
 * B > 1: a client batch). Every record is a ~200-byte JSON event keyed by an
 * account id ("acc_00042"). An append counts when cs_plog_append returned 0,
 * i.e. after the fdatasync that covers it. Records are prepared before the
 * clock starts; the timed loop is cs_plog_append and two clock_gettime calls.
 *
 *   log_append [-t threads] [-b records_per_append] [-n total_records]
 *              [-d seconds] [-s payload_bytes] [-a accounts] [-D dir] [-p]
 *
 *   -n and -d: stop at whichever comes first (default -n 100000, no -d).
 *   -D: the log file goes in a fresh directory under dir (default $TMPDIR,
 *       else /var/tmp), removed at exit. Put it on the disk under test, not
 *       on tmpfs: there fdatasync costs nothing (the program warns).
 *   -p: print one payload exactly as appended and exit (bench/log_append.sh
 *       gives the same bytes to redis-benchmark).
 *
 * Output: a human-readable summary, then one line
 *   RESULT threads=.. batch=.. records=.. eps=.. p50_us=.. p99_us=.. ...
 * with key=value pairs for scripts. syncs / appends_per_sync / sync_*_us come
 * from counting fdatasync(2) calls: this file defines fdatasync, so the log
 * code linked into this program calls it; it issues the same system call and
 * only counts and times it.
 *
 * After the run the log is closed, reopened (recovery scans every batch and
 * checks its CRC), and its end offset must equal the number of records
 * acknowledged; otherwise the program exits 1. The reopen is timed
 * (recover_ms): it is the partition's share of restart time.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "log/plog.h"

/* ---- fdatasync accounting --------------------------------------------- */

static atomic_uint_fast64_t g_syncs, g_sync_ns, g_sync_max_ns;

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
    uint64_t d = mono_ns() - t0;
    atomic_fetch_add_explicit(&g_syncs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_sync_ns, d, memory_order_relaxed);
    uint_fast64_t m = atomic_load_explicit(&g_sync_max_ns, memory_order_relaxed);
    while (d > m && !atomic_compare_exchange_weak_explicit(&g_sync_max_ns, &m, d,
                                                           memory_order_relaxed,
                                                           memory_order_relaxed)) {
    }
    return rc == 0 ? 0 : -1;
}

/* ---- payloads ----------------------------------------------------------- */

#define KEY_MAX 16
#define PAYLOAD_MAX 4096

struct payload {
    char   key[KEY_MAX];
    size_t key_len;
    char  *value;
    size_t value_len;
};

static const char *const EVENTS[] = {"Pricing Page Viewed", "Signed Up", "Invoice Paid",
                                     "Feature Used", "Seat Added", "Demo Requested"};

/* A Segment-style track event of exactly `size` bytes (padded in
 * properties.ref); size must be >= what the fields need (about 190). */
static int make_payload(struct payload *p, unsigned account, unsigned thread, uint64_t seq,
                        size_t size)
{
    p->key_len = (size_t)snprintf(p->key, sizeof p->key, "acc_%05u", account % 100000u);
    char head[PAYLOAD_MAX];
    int hn = snprintf(head, sizeof head,
                      "{\"type\":\"track\",\"event\":\"%s\",\"accountId\":\"%s\","
                      "\"userId\":\"usr_%07u\",\"messageId\":\"m-%02u-%010llu\","
                      "\"timestamp\":\"2026-11-27T10:00:00.123Z\","
                      "\"properties\":{\"plan\":\"pro\",\"ref\":\"",
                      EVENTS[seq % (sizeof EVENTS / sizeof EVENTS[0])], p->key,
                      (account * 37u + (unsigned)seq) % 10000000u, thread % 100u,
                      (unsigned long long)seq);
    const char *tail = "\"}}";
    size_t need = (size_t)hn + strlen(tail);
    if (hn < 0 || need > size || size >= PAYLOAD_MAX) return -1;
    p->value = malloc(size + 1);
    if (!p->value) return -1;
    memcpy(p->value, head, (size_t)hn);
    for (size_t i = 0; i < size - need; i++) p->value[(size_t)hn + i] = (char)('a' + (seq + i) % 26);
    memcpy(p->value + (size - strlen(tail)), tail, strlen(tail) + 1);
    p->value_len = size;
    return 0;
}

/* ---- worker ------------------------------------------------------------- */

struct shared {
    cs_plog           *pl;
    size_t             batch;
    int64_t            total_appends;   /* appends to claim in all */
    uint64_t           deadline_ns;     /* 0: none */
    atomic_int_fast64_t claimed;
    atomic_int          failed;
    pthread_barrier_t  start;
};

struct worker {
    pthread_t       tid;
    unsigned        id;
    struct shared  *sh;
    struct payload *pool;    /* npool prepared records */
    size_t          npool;
    cs_rec         *recs;    /* batch slots */
    uint64_t       *lat;     /* ns per append */
    size_t          nlat, caplat;
    int64_t         records;
    int             err;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    size_t next = 0;
    pthread_barrier_wait(&sh->start);
    for (;;) {
        if (atomic_fetch_add_explicit(&sh->claimed, 1, memory_order_relaxed) >= sh->total_appends)
            break;
        for (size_t i = 0; i < sh->batch; i++) {
            const struct payload *p = &w->pool[next];
            next = next + 1 == w->npool ? 0 : next + 1;
            w->recs[i].key = p->key;
            w->recs[i].key_len = p->key_len;
            w->recs[i].value = p->value;
            w->recs[i].value_len = p->value_len;
        }
        uint64_t t0 = mono_ns();
        w->recs[0].ts_us = (int64_t)(t0 / 1000); /* ingest time; cheap enough */
        for (size_t i = 1; i < sh->batch; i++) w->recs[i].ts_us = w->recs[0].ts_us;
        int rc = cs_plog_append(sh->pl, w->recs, sh->batch);
        uint64_t t1 = mono_ns();
        if (rc != 0) {
            w->err = errno;
            atomic_store(&sh->failed, 1);
            break;
        }
        if (w->nlat == w->caplat) {
            w->caplat = w->caplat ? w->caplat * 2 : 4096;
            uint64_t *n = realloc(w->lat, w->caplat * sizeof *n);
            if (!n) {
                w->err = ENOMEM;
                atomic_store(&sh->failed, 1);
                break;
            }
            w->lat = n;
        }
        w->lat[w->nlat++] = t1 - t0;
        w->records += (int64_t)sh->batch;
        if (sh->deadline_ns && t1 >= sh->deadline_ns) break;
        if (atomic_load_explicit(&sh->failed, memory_order_relaxed)) break;
    }
    return NULL;
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

static const char *fs_name(long type)
{
    switch ((unsigned long)type) {
    case 0xEF53: return "ext4";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlayfs";
    case 0x2FC12FC1: return "zfs";
    default: return "other";
    }
}

/* Leave no file behind on a setup failure (threads, if any, die with us). */
static _Noreturn void remove_and_exit(const char *path, const char *dir, int code)
{
    unlink(path);
    rmdir(dir);
    exit(code);
}

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [-t threads] [-b records_per_append] [-n total_records] [-d seconds]\n"
            "          [-s payload_bytes] [-a accounts] [-D dir] [-p]\n",
            argv0);
    exit(2);
}

static long parse_num(const char *s, const char *argv0, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) usage(argv0);
    return v;
}

int main(int argc, char **argv)
{
    long threads = 8, batch = 1, total = 100000, payload = 200, accounts = 10000;
    double seconds = 0;
    int print_payload = 0;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/var/tmp";
    int c;
    while ((c = getopt(argc, argv, "t:b:n:d:s:a:D:ph")) != -1) {
        switch (c) {
        case 't': threads = parse_num(optarg, argv[0], 1, 1024); break;
        case 'b': batch = parse_num(optarg, argv[0], 1, 100000); break;
        case 'n': total = parse_num(optarg, argv[0], 1, 1L << 40); break;
        case 'd': {
            char *end;
            seconds = strtod(optarg, &end);
            if (*end || seconds <= 0) usage(argv[0]);
            break;
        }
        case 's': payload = parse_num(optarg, argv[0], 1, PAYLOAD_MAX - 1); break;
        case 'a': accounts = parse_num(optarg, argv[0], 1, 100000); break;
        case 'D': base = optarg; break;
        case 'p': print_payload = 1; break;
        default: usage(argv[0]);
        }
    }
    if (optind != argc) usage(argv[0]);

    {
        /* The longest event name needs the most room: check the size before any setup. */
        struct payload p;
        if (make_payload(&p, 42, 0, 0, (size_t)payload) != 0) {
            fprintf(stderr, "log_append: payload of %ld bytes is too small for the event\n", payload);
            return 2;
        }
        free(p.value);
    }
    if (print_payload) {
        struct payload p;
        if (make_payload(&p, 42, 0, 42, (size_t)payload) != 0) return 2;
        fwrite(p.value, 1, p.value_len, stdout);
        putchar('\n');
        free(p.value);
        return 0;
    }

    /* Fresh directory and file on the disk under test. */
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/cs-log-append.XXXXXX", base);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "log_append: mkdtemp %s: %s\n", dir, strerror(errno));
        return 1;
    }
    snprintf(path, sizeof path, "%s/events-0.log", dir);
    struct statfs sfs;
    const char *fs = statfs(dir, &sfs) == 0 ? fs_name((long)sfs.f_type) : "unknown";
    if (strcmp(fs, "tmpfs") == 0)
        fprintf(stderr, "log_append: WARNING: %s is tmpfs; fdatasync is free there and the "
                        "figures mean nothing for durability (use -D or TMPDIR)\n", dir);

    char err[512];
    cs_plog *pl = cs_plog_open(path, CS_FSYNC_ALWAYS, 0, err, sizeof err);
    if (!pl) {
        fprintf(stderr, "log_append: %s\n", err);
        rmdir(dir);
        return 1;
    }

    struct shared sh = {.pl = pl, .batch = (size_t)batch};
    sh.total_appends = (total + batch - 1) / batch;
    atomic_init(&sh.claimed, 0);
    atomic_init(&sh.failed, 0);
    pthread_barrier_init(&sh.start, NULL, (unsigned)threads + 1);

    /* Prepare every payload before the clock starts. */
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    size_t npool = (size_t)(batch > 256 ? batch : 256);
    uint64_t per_thread = (uint64_t)sh.total_appends / (uint64_t)threads + 1;
    for (long t = 0; t < threads; t++) {
        struct worker *w = &ws[t];
        w->id = (unsigned)t;
        w->sh = &sh;
        w->npool = npool;
        w->pool = calloc(npool, sizeof *w->pool);
        w->recs = calloc((size_t)batch, sizeof *w->recs);
        w->caplat = seconds > 0 ? 4096 : (size_t)(per_thread + per_thread / 2);
        w->lat = malloc(w->caplat * sizeof *w->lat);
        if (!w->pool || !w->recs || !w->lat) {
            fprintf(stderr, "log_append: out of memory\n");
            remove_and_exit(path, dir, 1);
        }
        for (size_t i = 0; i < npool; i++) {
            uint64_t seq = (uint64_t)t * npool + i;
            unsigned acct = (unsigned)((seq * 2654435761u) % (uint64_t)accounts);
            if (make_payload(&w->pool[i], acct, (unsigned)t, seq, (size_t)payload) != 0) {
                fprintf(stderr, "log_append: payload of %ld bytes is too small for the event\n",
                        payload);
                remove_and_exit(path, dir, 2);
            }
        }
    }

    for (long t = 0; t < threads; t++) {
        if (pthread_create(&ws[t].tid, NULL, worker_main, &ws[t]) != 0) {
            fprintf(stderr, "log_append: pthread_create failed\n");
            remove_and_exit(path, dir, 1);
        }
    }
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t syncs0 = atomic_load(&g_syncs), sync_ns0 = atomic_load(&g_sync_ns);
    uint64_t t0 = mono_ns();
    if (seconds > 0) sh.deadline_ns = t0 + (uint64_t)(seconds * 1e9);
    pthread_barrier_wait(&sh.start);
    for (long t = 0; t < threads; t++) pthread_join(ws[t].tid, NULL);
    uint64_t t1 = mono_ns();
    getrusage(RUSAGE_SELF, &ru1);
    uint64_t syncs = atomic_load(&g_syncs) - syncs0;
    uint64_t sync_ns = atomic_load(&g_sync_ns) - sync_ns0;

    int failed = atomic_load(&sh.failed);
    int64_t records = 0;
    size_t nlat = 0;
    for (long t = 0; t < threads; t++) {
        records += ws[t].records;
        nlat += ws[t].nlat;
        if (ws[t].err) fprintf(stderr, "log_append: thread %ld: append failed: %s\n", t,
                               strerror(ws[t].err));
    }
    uint64_t *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    size_t k = 0;
    for (long t = 0; t < threads; t++) {
        memcpy(lat + k, ws[t].lat, ws[t].nlat * sizeof *lat);
        k += ws[t].nlat;
    }
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    double mean_ns = 0;
    for (size_t i = 0; i < nlat; i++) mean_ns += (double)lat[i];
    mean_ns = nlat ? mean_ns / (double)nlat : 0;

    /* Durability check: what was acknowledged must be in the log on reopen. */
    int64_t end_live = cs_plog_end(pl);
    cs_plog_close(pl);
    int verify_ok = 0;
    int64_t end_reopen = -1;
    struct stat st;
    int64_t file_bytes = stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
    uint64_t r0 = mono_ns();
    pl = cs_plog_open(path, CS_FSYNC_ALWAYS, 0, err, sizeof err);
    double recover_ms = (double)(mono_ns() - r0) / 1e6;
    if (pl) {
        end_reopen = cs_plog_end(pl);
        verify_ok = end_live == records && end_reopen == records &&
                    cs_plog_truncated_bytes(pl) == 0;
        cs_plog_close(pl);
    } else {
        fprintf(stderr, "log_append: reopen: %s\n", err);
    }
    unlink(path);
    rmdir(dir);

    double secs = (double)(t1 - t0) / 1e9;
    double cpu_user = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6;
    double cpu_sys = (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                     (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    long vcsw = ru1.ru_nvcsw - ru0.ru_nvcsw, ivcsw = ru1.ru_nivcsw - ru0.ru_nivcsw;
    double eps = secs > 0 ? (double)records / secs : 0;
    double aps = secs > 0 ? (double)nlat / secs : 0;
    double per_sync = syncs ? (double)nlat / (double)syncs : 0;
    double sync_mean_us = syncs ? (double)sync_ns / (double)syncs / 1000.0 : 0;
    double sync_max_us = (double)atomic_load(&g_sync_max_ns) / 1000.0;

    printf("log_append: %ld thread(s) x %ld record(s)/append, %ld-byte payloads, fsync=always, "
           "%s (%s)\n", threads, batch, payload, dir, fs);
    printf("  %lld records in %lld appends in %.3f s: %.0f events/s, %.0f appends/s\n",
           (long long)records, (long long)nlat, secs, eps, aps);
    printf("  append latency us: p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
           pct_us(lat, nlat, 0.50), pct_us(lat, nlat, 0.99), pct_us(lat, nlat, 0.999),
           nlat ? (double)lat[nlat - 1] / 1000.0 : 0, mean_ns / 1000.0);
    printf("  fdatasync: %llu calls, %.1f appends (%.1f records) per call, mean %.1f us, "
           "busy %.0f%% of the run\n", (unsigned long long)syncs, per_sync, per_sync * (double)batch,
           sync_mean_us, secs > 0 ? 100.0 * (double)sync_ns / 1e9 / secs : 0);
    printf("  cpu: user %.2f s, sys %.2f s (%.2f us/record); ctx switches %ld vol, %ld invol\n",
           cpu_user, cpu_sys, records ? (cpu_user + cpu_sys) * 1e6 / (double)records : 0, vcsw,
           ivcsw);
    printf("  verify: %s (end offset %lld live, %lld after reopen, %lld file bytes); reopen "
           "with recovery %.1f ms (%.2f us per batch)\n",
           verify_ok ? "ok" : "FAILED", (long long)end_live, (long long)end_reopen,
           (long long)file_bytes, recover_ms, nlat ? recover_ms * 1000.0 / (double)nlat : 0);
    printf("RESULT threads=%ld batch=%ld payload=%ld records=%lld appends=%lld secs=%.4f "
           "eps=%.0f aps=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f "
           "syncs=%llu appends_per_sync=%.2f sync_mean_us=%.1f sync_max_us=%.1f "
           "cpu_user_s=%.3f cpu_sys_s=%.3f vcsw=%ld ivcsw=%ld recover_ms=%.1f fs=%s verify=%s\n",
           threads, batch, payload, (long long)records, (long long)nlat, secs, eps, aps,
           pct_us(lat, nlat, 0.50), pct_us(lat, nlat, 0.99), pct_us(lat, nlat, 0.999),
           nlat ? (double)lat[nlat - 1] / 1000.0 : 0, mean_ns / 1000.0,
           (unsigned long long)syncs, per_sync, sync_mean_us, sync_max_us, cpu_user, cpu_sys, vcsw,
           ivcsw, recover_ms, fs, verify_ok ? "ok" : "failed");

    for (long t = 0; t < threads; t++) {
        for (size_t i = 0; i < ws[t].npool; i++) free(ws[t].pool[i].value);
        free(ws[t].pool);
        free(ws[t].recs);
        free(ws[t].lat);
    }
    free(ws);
    free(lat);
    pthread_barrier_destroy(&sh.start);
    return failed || !verify_ok ? 1 : 0;
}
