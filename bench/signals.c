/*
 * bench/signals — the signals engine (src/signals/signals.h): updates per
 * second per core with events pre-decoded (parsing excluded), bytes per
 * account, the daily sweep's cost, snapshot size and time, and replay
 * throughput with parsing included, each beside its peer in the same run:
 *   - updates: a naive engine that keeps every account's events in a list and
 *     recomputes the 7-day / 28-day windows and the decayed score by
 *     rescanning it on every event (what "recompute on read" designs do);
 *   - replay: read from an embedded log (src/log, written before the clock
 *     starts, page cache warm) + the fast decoder (cs_sig_decode_json) +
 *     batched apply (cs_sig_feed), the rebuild path; beside it the same from
 *     memory, the cJSON path (cJSON_Parse + cs_sig_decode + one apply per
 *     event) and cJSON parse alone, the ceiling any cJSON replay can reach.
 *
 *   signals [-a accounts,...] [-n events] [-d days] [-r replay_events]
 *           [-t replay_threads] [-N naive_events]
 *
 * -a takes a comma list (default 100000,1000000); each size gets a run of -n
 * events (default 10,000,000) spread uniformly over the accounts and over -d
 * days (default 30) of event time, in event-time order with jitter inside
 * the allowed lateness. Every account gets one event first (untimed), so the
 * timed loop measures updates of existing accounts, as a steady state does.
 * Event generation happens before the clock starts; the timed loop is
 * cs_sig_apply_batch over batches of 500 events on one thread (one core: an
 * engine is one partition), collecting the changes; the first size is also
 * run with one cs_sig_apply call per event (no prefetching) for reference.
 *
 * Each size also times a snapshot of its engine (cs_sig_snapshot) and its
 * restore (cs_sig_restore), and prints the snapshot's bytes per account.
 *
 * Replay: -r canonical JSON events (default 2,000,000, the simulator's
 * shapes, ~280 bytes) over the first accounts size; from the log on 1
 * thread, then on -t threads (default 2) over a topic of -t partitions
 * keyed by account (partitions are shared-nothing: each thread replays its
 * partition into its own engine, as a rebuild does); replay_events_per_s is
 * the -t thread figure.
 *
 * Output: a table on stdout; the last line is one JSON object.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "core/config.h"
#include "log/log.h"
#include "signals/decode.h"
#include "signals/feed.h"
#include "signals/signals.h"

#define DAY_US  86400000000LL
#define T_START (20454LL * DAY_US) /* 2026-01-01 */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 12345;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *const features[] = {"reports", "export_csv", "dashboards", "api", "sso", "alerts",
                                       "integrations", "billing"};
static const char *const tiers[] = {"free", "trial", "starter", "pro", "enterprise"};

/* ---- accounts and pre-decoded events ---------------------------------- */

typedef struct ids {
    char  *arena;
    size_t n;
    int   *len;
} ids;

static ids make_ids(size_t n)
{
    ids x = {cs_malloc(n * 16), n, cs_malloc(n * sizeof(int))};
    for (size_t i = 0; i < n; i++) x.len[i] = snprintf(x.arena + i * 16, 16, "acc_%07zu", i);
    return x;
}

static uint64_t uh[64], fh[8];

static void fill_event(cs_sig_event *e, const ids *x, size_t acc, int64_t ts)
{
    memset(e, 0, sizeof *e);
    e->account_id = x->arena + acc * 16;
    e->account_len = (size_t)x->len[acc];
    e->account_hash = cs_sig_hash(e->account_id, e->account_len); /* what decode computes */
    e->ts_us = ts;
    e->renewal_day = CS_SIG_NO_DAY;
    uint64_t r = rnd();
    unsigned pick = (unsigned)(r % 100);
    e->type = pick < 80   ? CS_SIG_EV_FEATURE_USED
              : pick < 85 ? CS_SIG_EV_TRIAL_ACTIVATED
              : pick < 89 ? CS_SIG_EV_SUBSCRIPTION_UPGRADED
              : pick < 95 ? CS_SIG_EV_SUPPORT_ESCALATED
                          : CS_SIG_EV_OTHER;
    e->user_hash = uh[(r >> 8) % 64];
    e->feature_hash = fh[(r >> 16) % 8];
    e->count = 1 + (uint32_t)((r >> 24) % 5);
    e->plan_tier = (enum cs_sig_tier)(1 + (acc % 5));
    if ((r >> 32) % 50 == 0) e->renewal_day = (int32_t)(ts / DAY_US) + (int32_t)((r >> 40) % 90);
}

/* n events over days of event time, in order, jitter < 30 min behind. */
static cs_sig_event *make_events(const ids *x, size_t n, int days)
{
    cs_sig_event *ev = cs_malloc(n * sizeof *ev);
    double span = (double)days * DAY_US;
    for (size_t i = 0; i < n; i++) {
        int64_t ts = T_START + DAY_US + (int64_t)(span * (double)i / (double)n) - (int64_t)(rnd() % 1800000000ull);
        fill_event(&ev[i], x, rnd() % x->n, ts);
    }
    return ev;
}

/* ---- the naive peer ------------------------------------------------------ */

typedef struct nrec {
    int32_t  day;
    uint16_t units;
} nrec;
typedef struct nacct {
    nrec    *v;
    uint32_t n, cap;
} nacct;

/* Recompute 7-day, 28-day baseline and decayed usage from the whole list. */
static double naive_apply(nacct *a, int32_t day, uint16_t units, double r1)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 8;
        a->v = cs_realloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = (nrec){day, units};
    int32_t asof = day;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->v[i].day > asof) asof = a->v[i].day;
    double u = 0;
    uint32_t u7 = 0, b28 = 0;
    for (uint32_t i = 0; i < a->n; i++) {
        int32_t age = asof - a->v[i].day;
        u += a->v[i].units * pow(r1, age);
        if (age < 7) u7 += a->v[i].units;
        else if (age < 35) b28 += a->v[i].units;
    }
    return 100 * u / (u + 20) + (u7 < b28 / 8.0);
}

static double bench_naive(const ids *x, const cs_sig_event *ev, size_t n)
{
    nacct *acc = cs_calloc(x->n, sizeof *acc);
    double r1 = pow(2.0, -1.0 / 7), sink = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        size_t a = (size_t)(ev[i].account_id - x->arena) / 16;
        sink += naive_apply(&acc[a], (int32_t)(ev[i].ts_us / DAY_US),
                            (uint16_t)(ev[i].type == CS_SIG_EV_FEATURE_USED ? ev[i].count : 0), r1);
    }
    double t = now_s() - t0;
    for (size_t i = 0; i < x->n; i++) free(acc[i].v);
    free(acc);
    if (sink == 42.4242) printf("#");
    return (double)n / t;
}

/* ---- canonical JSON for replay ------------------------------------------- */

static char **make_json(const ids *x, size_t n, int days, size_t *bytes)
{
    char **js = cs_malloc(n * sizeof *js);
    cs_buf b;
    cs_buf_init(&b);
    *bytes = 0;
    double span = (double)days * DAY_US;
    for (size_t i = 0; i < n; i++) {
        cs_buf_reset(&b);
        size_t acc = rnd() % x->n;
        uint64_t r = rnd();
        int64_t ts = T_START + DAY_US + (int64_t)(span * (double)i / (double)n) - (int64_t)(rnd() % 1800000000ull);
        char t[40];
        cs_fmt_time_ms(ts, t, sizeof t);
        unsigned pick = (unsigned)(r % 100);
        const char *type = pick < 80 ? "FeatureUsed" : pick < 85 ? "TrialActivated" : pick < 89 ? "SubscriptionUpgraded"
                                                     : pick < 95 ? "SupportCaseEscalated" : "PageViewed";
        cs_buf_printf(&b, "{\"event_id\":\"evt_%zu\",\"type\":\"%s\",\"account_id\":\"%s\",\"user_id\":\"u_%zu_%d\","
                          "\"timestamp\":\"%s\",\"plan_tier\":\"%s\"",
                      i, type, x->arena + acc * 16, acc, (int)((r >> 8) % 7), t, tiers[acc % 5]);
        if (pick < 80) {
            const char *f = features[(r >> 16) % 8];
            cs_buf_printf(&b, ",\"product_area\":\"%s\",\"properties\":{\"feature\":\"%s\",\"count\":%d}", f, f,
                          1 + (int)((r >> 24) % 5));
        } else if (pick < 85) {
            cs_buf_printf(&b, ",\"properties\":{\"trial_days\":14}");
        } else if (pick < 89) {
            cs_buf_printf(&b, ",\"properties\":{\"plan_tier\":\"%s\",\"mrr\":%d}", tiers[2 + (r >> 32) % 3],
                          100 * (1 + (int)((r >> 40) % 50)));
        } else if (pick < 95) {
            cs_buf_printf(&b, ",\"properties\":{\"case_id\":\"case-%zu\",\"severity\":\"high\"}", i);
        }
        cs_buf_printf(&b, ",\"source\":\"native\",\"received_at\":\"%s\"}", t);
        *bytes += b.len;
        js[i] = cs_strdup(b.data);
    }
    cs_buf_free(&b);
    return js;
}

/* Replay modes: the cJSON path (parse a tree, cs_sig_decode, one apply per
 * event: the peer), cJSON parse alone (the ceiling of any cJSON replay), and
 * the fast path from memory (cs_sig_feed: cs_sig_decode_json + batched apply). */
enum { R_CJSON, R_PARSE_ONLY, R_FEED };

struct rjob {
    char         **js;
    size_t         n;
    int            part, parts;
    int            mode;
    uint64_t       done;
};

static int part_of(const char *s, int parts)
{
    const char *a = strstr(s, "\"account_id\":\"") + 14;
    const char *end = strchr(a, '"');
    return (int)(cs_sig_hash(a, (size_t)(end - a)) % (uint64_t)parts);
}

static void *replay_thread(void *arg)
{
    struct rjob *j = arg;
    cs_sig_config cfg;
    cs_sig_config_defaults(&cfg);
    char err[200];
    cs_sig_engine *e = j->mode == R_PARSE_ONLY ? NULL : cs_sig_engine_new(&cfg, err, sizeof err);
    cs_sig_changes ch;
    cs_sig_changes_init(&ch);
    cs_sig_feed f;
    if (j->mode == R_FEED) cs_sig_feed_init(&f, e);
    for (size_t i = 0; i < j->n; i++) {
        const char *s = j->js[i];
        /* this thread's partitions: the account id decides, as the bus key does */
        if (j->parts > 1 && part_of(s, j->parts) != j->part) continue;
        if (j->mode == R_FEED) {
            cs_sig_feed_add(&f, s, strlen(s));
            continue;
        }
        cJSON *o = cJSON_Parse(s);
        if (j->mode == R_CJSON) {
            cs_sig_event ev;
            if (cs_sig_decode(o, &ev) == 0 && cs_sig_apply(e, &ev, &ch) == CS_SIG_OK) j->done++;
            if (ch.n > 4096) cs_sig_changes_reset(&ch);
        } else {
            j->done += o != NULL;
        }
        cJSON_Delete(o);
    }
    if (j->mode == R_FEED) {
        cs_sig_feed_flush(&f, NULL);
        j->done = f.applied;
        cs_sig_feed_free(&f);
    }
    cs_sig_changes_free(&ch);
    cs_sig_engine_free(e);
    return NULL;
}

/* Events per second over threads; *applied gets the events applied. */
static double replay(char **js, size_t n, int threads, int mode, uint64_t *applied)
{
    pthread_t th[64];
    struct rjob jobs[64];
    double t0 = now_s();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct rjob){js, n, t, threads, mode, 0};
        pthread_create(&th[t], NULL, replay_thread, &jobs[t]);
    }
    uint64_t done = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        done += jobs[t].done;
    }
    double secs = now_s() - t0;
    if (applied) *applied = done;
    return (double)n / secs;
}

/* ---- replay from the embedded log: read + fast decode + batched apply ------ */

struct ljob {
    cs_topic *lg;
    int       part;
    uint64_t  done;
    double    cpu_s;  /* the thread's CPU time: load-independent where wall time is not */
};

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int on_log_rec(const cs_rec *rec, void *arg)
{
    cs_sig_feed_add(arg, rec->value, rec->value_len);
    return 0;
}

static void *log_thread(void *arg)
{
    struct ljob *j = arg;
    cs_sig_config cfg;
    cs_sig_config_defaults(&cfg);
    char err[200];
    cs_sig_engine *e = cs_sig_engine_new(&cfg, err, sizeof err);
    cs_sig_feed f;
    cs_sig_feed_init(&f, e);
    double c0 = thread_cpu_s();
    int64_t from = 0, end = cs_topic_end(j->lg, j->part);
    while (from < end) {
        int n = cs_topic_read(j->lg, j->part, from, 4096, on_log_rec, &f);
        if (n <= 0) break;
        from += n;
    }
    cs_sig_feed_flush(&f, NULL);
    j->cpu_s = thread_cpu_s() - c0;
    j->done = f.applied;
    cs_sig_feed_free(&f);
    cs_sig_engine_free(e);
    return NULL;
}

/* Writes the events into a new topic of `threads` partitions (keyed by
 * account, before the clock), then replays each partition on its thread. */
static double replay_log(char **js, size_t n, int threads, uint64_t *applied, double *log_mb, double *per_cpu_s)
{
    char dir[] = "/tmp/crmstream-bench-signals-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.partitions = threads;
    o.fsync_policy = CS_FSYNC_NEVER;
    o.preallocate = 0;
    char err[256];
    cs_topic *lg = cs_topic_open(dir, &o, err, sizeof err);
    if (!lg) {
        fprintf(stderr, "signals: %s\n", err);
        exit(1);
    }
    enum { B = 512 };
    cs_rec *batch[64];
    size_t nb[64] = {0};
    for (int t = 0; t < threads; t++) batch[t] = cs_calloc(B, sizeof(cs_rec));
    size_t bytes = 0;
    for (size_t i = 0; i <= n; i++) {
        for (int t = 0; t < threads; t++)
            if (nb[t] && (nb[t] == B || i == n)) {
                if (cs_topic_append(lg, t, batch[t], nb[t])) {
                    fprintf(stderr, "signals: append failed\n");
                    exit(1);
                }
                nb[t] = 0;
            }
        if (i == n) break;
        int t = threads > 1 ? part_of(js[i], threads) : 0;
        size_t len = strlen(js[i]);
        batch[t][nb[t]++] = (cs_rec){.ts_us = 0, .key = "k", .key_len = 1, .value = js[i], .value_len = len};
        bytes += len;
    }
    for (int t = 0; t < threads; t++) free(batch[t]);
    *log_mb = (double)bytes / 1e6;
    pthread_t th[64];
    struct ljob jobs[64];
    double t0 = now_s();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct ljob){lg, t, 0, 0};
        pthread_create(&th[t], NULL, log_thread, &jobs[t]);
    }
    uint64_t done = 0;
    double cpu = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        done += jobs[t].done;
        cpu += jobs[t].cpu_s;
    }
    double secs = now_s() - t0;
    *per_cpu_s = cpu > 0 ? (double)n / cpu : 0;
    cs_topic_close(lg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -r '%s'", dir); /* our own mkdtemp directory */
    if (system(cmd) != 0) fprintf(stderr, "signals: could not remove %s\n", dir);
    *applied = done;
    return (double)n / secs;
}

/* ---- main ---------------------------------------------------------------- */

int main(int argc, char **argv)
{
    char sizes[256] = "100000,1000000";
    size_t nev = 10000000, nreplay = 2000000, nnaive = 0;
    int days = 30, threads = 2, opt;
    while ((opt = getopt(argc, argv, "a:n:d:r:t:N:")) != -1) {
        switch (opt) {
        case 'a': snprintf(sizes, sizeof sizes, "%s", optarg); break;
        case 'n': nev = strtoull(optarg, NULL, 10); break;
        case 'd': days = atoi(optarg); break;
        case 'r': nreplay = strtoull(optarg, NULL, 10); break;
        case 't': threads = atoi(optarg); break;
        case 'N': nnaive = strtoull(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: signals [-a n,n] [-n events] [-d days] [-r replay] [-t threads] [-N naive]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || days < 1 || nev < 1) return 2;
    for (int i = 0; i < 64; i++) {
        char u[16];
        int l = snprintf(u, sizeof u, "u_%d", i);
        uh[i] = cs_sig_hash(u, (size_t)l);
    }
    for (int i = 0; i < 8; i++) fh[i] = cs_sig_hash(features[i], strlen(features[i]));

    cs_sig_config cfg;
    cs_sig_config_defaults(&cfg);
    char err[200];
    double ups_min = 0, bytes_pa = 0, naive_ups = 0, ups_first = 0, single_ups = 0;
    size_t first_accounts = 0, last_accounts = 0, snap_at = 0;
    double snap_bpa = 0, snap_save_ms = 0, snap_restore_ms = 0;
    printf("%-10s %12s %14s %12s %12s %14s %10s\n", "accounts", "events", "updates/s", "ns/update", "bytes/acct",
           "sweep ns/acct", "changes/ev");
    char *save = NULL;
    for (char *tok = strtok_r(sizes, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t na = strtoull(tok, NULL, 10);
        if (na < 1) continue;
        ids x = make_ids(na);
        cfg.max_accounts = (uint32_t)na;
        cs_sig_engine *e = cs_sig_engine_new(&cfg, err, sizeof err);
        if (!e) {
            fprintf(stderr, "signals: %s\n", err);
            return 1;
        }
        cs_sig_changes ch;
        cs_sig_changes_init(&ch);
        /* every account once (untimed), at the start of event time */
        for (size_t i = 0; i < na; i++) {
            cs_sig_event ev;
            fill_event(&ev, &x, i, T_START + (int64_t)((double)i / (double)na * 3600e6));
            cs_sig_apply(e, &ev, &ch);
            if (ch.n > 4096) cs_sig_changes_reset(&ch);
        }
        cs_sig_changes_reset(&ch);
        cs_sig_event *ev = make_events(&x, nev, days);
        cs_sig_stats s0;
        cs_sig_stats_get(e, &s0);
        /* batches of 500 (pipeline.batch_max_events), as the pipeline applies them */
        static int rc[500];
        double t0 = now_s();
        uint64_t changes = 0;
        for (size_t i = 0; i < nev; i += 500) {
            size_t k = nev - i < 500 ? nev - i : 500;
            cs_sig_apply_batch(e, &ev[i], k, rc, &ch);
            changes += ch.n;
            cs_sig_changes_reset(&ch);
        }
        double secs = now_s() - t0;
        double ups = (double)nev / secs;
        /* the sweep of one day over every account */
        double ts0 = now_s();
        size_t due = cs_sig_sweep_due(e);
        while (cs_sig_sweep(e, 65536, &ch)) cs_sig_changes_reset(&ch);
        double sweep_ns = due ? (now_s() - ts0) * 1e9 / (double)due : 0;
        cs_sig_stats s;
        cs_sig_stats_get(e, &s);
        double bpa = (double)s.bytes / (double)s.accounts;
        printf("%-10zu %12zu %14.0f %12.1f %12.1f %14.1f %10.3f\n", na, nev, ups, 1e9 / ups, bpa, sweep_ns,
               (double)changes / (double)nev);
        if (s.late) printf("  (%llu late events)\n", (unsigned long long)s.late);
        /* snapshot (restart): encode, restore, per account */
        {
            cs_buf sb;
            cs_buf_init(&sb);
            double tq0 = now_s();
            cs_sig_snapshot(e, &sb);
            double tq1 = now_s();
            int rrc;
            cs_sig_engine *re = cs_sig_restore(&cfg, sb.data, sb.len, &rrc, err, sizeof err);
            double tq2 = now_s();
            if (!re || cs_sig_state_hash(re) != cs_sig_state_hash(e)) printf("  WARNING: restore differs: %s\n", err);
            snap_bpa = (double)sb.len / (double)s.accounts;
            snap_save_ms = (tq1 - tq0) * 1e3;
            snap_restore_ms = (tq2 - tq1) * 1e3;
            snap_at = na;
            printf("  snapshot: %.1f bytes/account (%.1f MB), encode %.0f ms, restore %.0f ms\n", snap_bpa,
                   (double)sb.len / 1e6, snap_save_ms, snap_restore_ms);
            cs_sig_engine_free(re);
            cs_buf_free(&sb);
        }
        if (!ups_min || ups < ups_min) ups_min = ups;
        if (!first_accounts) {
            first_accounts = na;
            ups_first = ups;
            size_t nn = nnaive ? nnaive : nev;
            if (nn > nev) nn = nev;
            naive_ups = bench_naive(&x, ev, nn);
            /* the same events through one cs_sig_apply call each, on a fresh engine */
            cs_sig_engine *e1 = cs_sig_engine_new(&cfg, err, sizeof err);
            for (size_t i = 0; i < na; i++) {
                cs_sig_event w;
                fill_event(&w, &x, i, T_START + (int64_t)((double)i / (double)na * 3600e6));
                cs_sig_apply(e1, &w, &ch);
                if (ch.n > 4096) cs_sig_changes_reset(&ch);
            }
            cs_sig_changes_reset(&ch);
            double t1 = now_s();
            for (size_t i = 0; i < nev; i++) {
                cs_sig_apply(e1, &ev[i], &ch);
                if (ch.n > 4096) cs_sig_changes_reset(&ch);
            }
            single_ups = (double)nev / (now_s() - t1);
            cs_sig_changes_reset(&ch);
            cs_sig_engine_free(e1);
            printf("%-10s %12zu %14.0f %12.1f   (one cs_sig_apply call per event, no prefetch)\n", "  single", nev,
                   single_ups, 1e9 / single_ups);
            printf("%-10s %12zu %14.0f %12.1f   (naive peer: rescan a per-account event list)\n", "  naive", nn,
                   naive_ups, 1e9 / naive_ups);
        }
        last_accounts = na;
        bytes_pa = bpa;
        cs_sig_changes_free(&ch);
        cs_sig_engine_free(e);
        free(ev);
        free(x.arena);
        free(x.len);
    }

    /* replay with JSON parsing, over the first size's accounts */
    ids x = make_ids(first_accounts ? first_accounts : 100000);
    size_t jbytes;
    char **js = make_json(&x, nreplay, days, &jbytes);
    uint64_t appliedC, appliedF, applied1, appliedT;
    double parse1 = replay(js, nreplay, 1, R_PARSE_ONLY, NULL);
    double cjson1 = replay(js, nreplay, 1, R_CJSON, &appliedC);
    double feed1 = replay(js, nreplay, 1, R_FEED, &appliedF);
    double log_mb;
    double cpu1, cpuT;
    double rep1 = replay_log(js, nreplay, 1, &applied1, &log_mb, &cpu1);
    double repT = replay_log(js, nreplay, threads, &appliedT, &log_mb, &cpuT);
    printf("replay with parsing, %zu events of %.0f bytes avg over %zu accounts:\n", nreplay,
           (double)jbytes / (double)nreplay, x.n);
    printf("  log read + fast decode + batched apply, 1 thread  %12.0f events/s\n", rep1);
    printf("  log read + fast decode + batched apply, %d threads %12.0f events/s (a partition per thread)\n",
           threads, repT);
    printf("  log read + fast decode + batched apply, per CPU-second of a thread %.0f events (1 thread), %.0f (%d)\n",
           cpu1, cpuT, threads);
    printf("  memory, fast decode + batched apply, 1 thread     %12.0f events/s\n", feed1);
    printf("  memory, cJSON + cs_sig_decode + apply, 1 thread   %12.0f events/s (peer: %.1fx)\n", cjson1,
           cjson1 > 0 ? rep1 / cjson1 : 0);
    printf("  memory, cJSON parse alone, 1 thread               %12.0f events/s (ceiling of any cJSON replay)\n",
           parse1);
    if (appliedC != nreplay || appliedF != nreplay || applied1 != nreplay || appliedT != nreplay)
        printf("  WARNING: applied %llu / %llu / %llu / %llu of %zu\n", (unsigned long long)appliedC,
               (unsigned long long)appliedF, (unsigned long long)applied1, (unsigned long long)appliedT, nreplay);
    for (size_t i = 0; i < nreplay; i++) free(js[i]);
    free(js);
    free(x.arena);
    free(x.len);

    printf("{\"bench\":\"signals\",\"updates_per_s_per_core\":%.0f,\"updates_per_s_per_core_%zu\":%.0f,"
           "\"single_call_updates_per_s_%zu\":%.0f,\"naive_updates_per_s_%zu\":%.0f,\"speedup_vs_naive\":%.1f,\"bytes_per_account\":%.1f,"
           "\"bytes_per_account_at\":%zu,\"account_record_bytes\":%zu,\"replay_events_per_s\":%.0f,"
           "\"replay_threads\":%d,\"replay_events_per_s_1thread\":%.0f,\"replay_events_per_cpu_s\":%.0f,\"replay_mem_fast_per_s\":%.0f,"
           "\"replay_cjson_per_s\":%.0f,\"cjson_parse_only_per_s\":%.0f,"
           "\"snapshot_bytes_per_account\":%.1f,\"snapshot_encode_ms\":%.0f,\"snapshot_restore_ms\":%.0f,"
           "\"snapshot_at\":%zu,\"target_updates\":2000000,\"target_bytes\":512,\"target_replay\":1000000}\n",
           ups_min, first_accounts, ups_first, first_accounts, single_ups, first_accounts, naive_ups, naive_ups > 0 ? ups_first / naive_ups : 0,
           bytes_pa, last_accounts, cs_sig_account_size(), repT, threads, rep1, cpuT, feed1, cjson1, parse1, snap_bpa,
           snap_save_ms, snap_restore_ms, snap_at);
    return 0;
}
