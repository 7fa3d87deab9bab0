/*
 * Fault tests of the log (RELIABILITY.md T2–T7), in-process against the I/O
 * layer (log/iofault.h). Each test prints one JSON line of figures.
 *
 *   T2  simulated power loss at every I/O operation of a small workload
 *   T3  the active segment cut at every byte of its last two batches
 *   T4  200 bit flips in segments, indexes, offsets files and metadata
 *   T5  missing index / middle segment / offsets file / metadata, stray temps
 *   T6  disk full: injected ENOSPC and short writes; a real tmpfs as root
 *   T7  fsync and write errors: the fatal path, nothing acknowledged
 *
 * Records carry their own identity: the record at (partition, offset) has a
 * value derived from both, so a checker can tell a correct record from a
 * damaged or misplaced one without keeping copies.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/logging.h"
#include "core/util.h"
#include "log/iofault.h"
#include "log/log.h"
#include "log/segment.h"

/* ---------------------------------------------------------------- helpers */

static char g_root[64];

static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) fail_msg("command failed: %s", cmd);
}

static int fatal_calls;
static void fatal_hook(const char *what, const char *file, int err)
{
    (void)what, (void)file, (void)err;
    fatal_calls++;
}

static size_t gen_value(int part, int64_t o, char *out)
{
    int n = sprintf(out, "p%d:o%lld:", part, (long long)o);
    size_t fill = (size_t)((o * 37 + part * 11) % 120);
    for (size_t i = 0; i < fill; i++) out[n + (int)i] = (char)('a' + (o + (int64_t)i + part) % 26);
    return (size_t)n + fill;
}

struct expect {
    int     part;
    int64_t end;      /* acked records are [0, end) */
    int64_t bad;      /* records read back wrong */
    int64_t seen;
};

static int expect_cb(const cs_rec *r, void *arg)
{
    struct expect *x = arg;
    char want[200];
    size_t n = gen_value(x->part, r->offset, want);
    if (r->value_len != n || memcmp(r->value, want, n) != 0) x->bad++;
    x->seen++;
    return 0;
}

/* Set by fx_setup_zstd: the same fault runs over compressed batches
 * (segment.h "CSB3"; the test values compress 2-3x). */
static int g_compress;

static cs_topic_opts small_opts(int partitions, const cs_io_ops *io)
{
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.compression = g_compress;
    o.compression_level = 1;
    o.partitions = partitions;
    o.segment_bytes = 2048;
    o.index_interval = 256;
    o.retention_ms = 0;
    o.io = io;
    return o;
}

/* Append one batch of k records at partition p's next offset (guessed as
 * *next): on success check the offsets and advance *next. */
static int append_k(cs_topic *t, int p, int64_t *next, int k)
{
    char vals[8][200];
    cs_rec recs[8];
    for (int i = 0; i < k; i++) {
        memset(&recs[i], 0, sizeof recs[i]);
        recs[i].key = "k";
        recs[i].key_len = 1;
        recs[i].value = vals[i];
        recs[i].value_len = gen_value(p, *next + i, vals[i]);
        recs[i].ts_us = *next + i;
    }
    if (cs_topic_append(t, p, recs, (size_t)k) != 0) return -1;
    if (recs[0].offset != *next) fail_msg("append got offset %lld, expected %lld", (long long)recs[0].offset,
                                          (long long)*next);
    *next += k;
    return 0;
}

/* Every acked record [0, acked) of each partition reads back exactly.
 * Returns records lost or wrong. */
static int64_t verify(cs_topic *t, int partitions, const int64_t *acked)
{
    int64_t lost = 0;
    for (int p = 0; p < partitions; p++) {
        struct expect x = {.part = p};
        int64_t end = cs_topic_end(t, p);
        if (end < acked[p]) lost += acked[p] - end;
        int n = cs_topic_read(t, p, 0, (size_t)acked[p], expect_cb, &x);
        if (n < 0) lost += acked[p];
        lost += x.bad;
        if (n >= 0 && x.seen < acked[p] && end >= acked[p]) lost += acked[p] - x.seen;
    }
    return lost;
}

static int fx_setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/cs_test_logf_XXXXXX");
    if (!mkdtemp(g_root)) return -1;
    cs_io_set_fatal_hook(fatal_hook);
    fatal_calls = 0;
    return 0;
}

static int fx_teardown(void **state)
{
    (void)state;
    sh("rm -rf %s", g_root);
    cs_io_set_fatal_hook(NULL);
    return 0;
}

/* ------------------------------------------------------------------- T2 */

#define W_PARTS 2
#define W_BATCHES 24

struct wres {
    int64_t acked[W_PARTS];
    int64_t committed;     /* last acked group commit (partition 0), -1 none */
    int64_t attempted;     /* last attempted */
    int     opened;
};

/* The workload: open, register a group, append batches to both
 * partitions (rolling 2 KiB segments), commit the group, close. */
static void workload(const char *dir, const cs_io_ops *io, struct wres *w)
{
    memset(w, 0, sizeof *w);
    w->committed = w->attempted = -1;
    cs_topic_opts o = small_opts(W_PARTS, io);
    char err[512];
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    if (!t) return;
    w->opened = 1;
    cs_topic_group_register(t, "g");
    for (int b = 0; b < W_BATCHES; b++) {
        int p = b % W_PARTS;
        int64_t next = w->acked[p];
        if (append_k(t, p, &next, b % 5 + 1) == 0) w->acked[p] = next;
        if (b % 4 == 3) {
            w->attempted = w->acked[0];
            if (cs_topic_group_commit(t, "g", 0, w->acked[0]) == 0) w->committed = w->acked[0];
        }
    }
    cs_topic_close(t);
}

static void test_t2_power_loss_every_op(void **state)
{
    (void)state;
    char dir[128], trash[128];
    snprintf(dir, sizeof dir, "%s/t", g_root);
    snprintf(trash, sizeof trash, "%s/trash", g_root);
    cs_iof_reset(trash);
    struct wres w;
    workload(dir, cs_iof_ops(), &w);
    long nops = cs_iof_count(CS_IOF_MUTATING);
    assert_true(w.opened && w.acked[0] > 0 && nops > 50);
    cs_iof_power_loss(CS_IOF_LOSE_KEEP, 0);
    sh("rm -rf %s", dir);

    static const enum cs_iof_loss modes[] = {CS_IOF_LOSE_DROP, CS_IOF_LOSE_GARBLE, CS_IOF_LOSE_RANDOM};
    long trials = 0, opened = 0, damaged_ops = 0, acked_total = 0, lost = 0, group_bad = 0;
    int64_t truncated = 0;
    int64_t t0 = cs_mono_us();
    for (long n = 1; n <= nops; n++) {
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            cs_iof_reset(trash);
            cs_iof_crash_at(CS_IOF_MUTATING, n);
            workload(dir, cs_iof_ops(), &w);
            damaged_ops += cs_iof_power_loss(modes[m], (uint64_t)(n * 7 + (long)m));
            trials++;
            cs_topic_opts o = small_opts(W_PARTS, NULL);
            char err[512] = "";
            cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
            if (!t) fail_msg("crash at op %ld (mode %d): reopen failed: %s", n, (int)modes[m], err);
            opened++;
            int64_t l = verify(t, W_PARTS, w.acked);
            if (l) fail_msg("crash at op %ld (mode %d): %lld acknowledged records lost", n, (int)modes[m], (long long)l);
            lost += l;
            acked_total += w.acked[0] + w.acked[1];
            int64_t c = cs_topic_group_committed(t, "g", 0);
            if (w.committed >= 0 && c != w.committed && c != w.attempted) {
                group_bad++;
                fail_msg("crash at op %ld: group offset %lld, acked %lld", n, (long long)c, (long long)w.committed);
            }
            cs_topic_stats st;
            cs_topic_get_stats(t, -1, &st);
            truncated += st.truncated_bytes;
            /* The log is usable after recovery. */
            int64_t next = cs_topic_end(t, 1);
            assert_int_equal(append_k(t, 1, &next, 2), 0);
            cs_topic_close(t);
            sh("rm -rf %s", dir);
        }
    }
    printf("{\"test\":\"T2\",\"io_ops\":%ld,\"trials\":%ld,\"opened\":%ld,\"unsynced_ops_damaged\":%ld,"
           "\"acked_records_checked\":%ld,\"lost\":%ld,\"group_offset_wrong\":%ld,\"truncated_bytes\":%lld,"
           "\"fatal_paths\":%d,\"seconds\":%.2f}\n",
           nops, trials, opened, damaged_ops, acked_total, lost, group_bad, (long long)truncated, fatal_calls,
           (double)(cs_mono_us() - t0) / 1e6);
    fflush(stdout);
}

/* ------------------------------------------------------ the journal */

#define J_PARTS 3

/* One request's worth: a batch of k records for every partition, in one
 * multi-partition append. */
static int append_multi_k(cs_topic *t, int parts, int64_t *next, int k)
{
    char vals[J_PARTS * 8][200];
    cs_rec recs[J_PARTS][8];
    cs_topic_batch b[J_PARTS];
    for (int p = 0; p < parts; p++) {
        for (int i = 0; i < k; i++) {
            memset(&recs[p][i], 0, sizeof recs[p][i]);
            recs[p][i].key = "k";
            recs[p][i].key_len = 1;
            recs[p][i].value = vals[p * 8 + i];
            recs[p][i].value_len = gen_value(p, next[p] + i, vals[p * 8 + i]);
            recs[p][i].ts_us = next[p] + i;
        }
        b[p] = (cs_topic_batch){.partition = p, .recs = recs[p], .n = (size_t)k};
    }
    if (cs_topic_append_multi(t, b, (size_t)parts) != 0) return -1;
    for (int p = 0; p < parts; p++) {
        if (recs[p][0].offset != next[p])
            fail_msg("partition %d: offset %lld, expected %lld", p, (long long)recs[p][0].offset, (long long)next[p]);
        next[p] += k;
    }
    return 0;
}

/* A request that spreads over 8 partitions costs one fdatasync with the
 * journal (the journal's), eight without it. */
static void test_journal_one_commit_per_request(void **state)
{
    (void)state;
    char dir[128], trash[128];
    snprintf(trash, sizeof trash, "%s/trash", g_root);
    for (int journal = 1; journal >= 0; journal--) {
        snprintf(dir, sizeof dir, "%s/j%d", g_root, journal);
        cs_iof_reset(trash);
        cs_topic_opts o = small_opts(8, cs_iof_ops());
        o.segment_bytes = 1 << 20;
        o.journal_bytes = journal ? 1 << 20 : 0;
        char err[512];
        cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
        assert_non_null(t);
        char vals[8][64];
        cs_rec recs[8];
        cs_topic_batch b[8];
        for (int round = 0; round < 10; round++) {
            for (int p = 0; p < 8; p++) {
                memset(&recs[p], 0, sizeof recs[p]);
                recs[p].value = vals[p];
                recs[p].value_len = (size_t)snprintf(vals[p], sizeof vals[p], "r%d-p%d", round, p);
                b[p] = (cs_topic_batch){.partition = p, .recs = &recs[p], .n = 1};
            }
            long s0 = cs_iof_count(CS_IOF_SYNC);
            assert_int_equal(cs_topic_append_multi(t, b, 8), 0);
            long syncs = cs_iof_count(CS_IOF_SYNC) - s0;
            assert_int_equal(syncs, journal ? 1 : 8);
            for (int p = 0; p < 8; p++) {
                assert_int_equal(recs[p].offset, round);
                assert_int_equal(cs_topic_end(t, p), round + 1); /* visible once durable */
            }
        }
        cs_topic_stats st;
        cs_topic_get_stats(t, -1, &st);
        assert_int_equal(st.journal_commits, journal ? 10 : 0);
        cs_topic_close(t);
        cs_iof_power_loss(CS_IOF_LOSE_KEEP, 0);
    }
}

/* What the journal acknowledged survives a power loss that drops every
 * unsynced write (the segments' included): it is replayed at open. The
 * replay also happens when the journal is then off (fsync never), and the
 * journal files are removed after it. */
static void test_journal_replay(void **state)
{
    (void)state;
    char dir[128], trash[128], path[200];
    snprintf(dir, sizeof dir, "%s/t", g_root);
    snprintf(trash, sizeof trash, "%s/trash", g_root);
    int64_t next[J_PARTS] = {0};
    for (int off = 0; off < 2; off++) {
        cs_iof_reset(trash);
        cs_topic_opts o = small_opts(J_PARTS, cs_iof_ops());
        o.segment_bytes = 1 << 20;
        char err[512];
        cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
        assert_non_null(t);
        for (int r = 0; r < 20; r++) assert_int_equal(append_multi_k(t, J_PARTS, next, r % 5 + 1), 0);
        /* The machine stops: no close, nothing synced after this. */
        cs_iof_crash_at(CS_IOF_ALL, 1);
        cs_topic_close(t);
        long damaged = cs_iof_power_loss(CS_IOF_LOSE_DROP, 1);
        if (damaged <= 0) fail_msg("round %d: nothing unsynced to drop (%ld)", off, damaged);
        cs_topic_opts ro = small_opts(J_PARTS, NULL);
        ro.segment_bytes = 1 << 20;
        if (off) ro.fsync_policy = CS_FSYNC_NEVER;
        t = cs_topic_open(dir, &ro, err, sizeof err);
        if (!t) fail_msg("reopen: %s", err);
        assert_int_equal(verify(t, J_PARTS, next), 0);
        cs_topic_stats st;
        cs_topic_get_stats(t, -1, &st);
        assert_true(st.journal_replayed > 0);
        for (int p = 0; p < J_PARTS; p++) assert_int_equal(cs_topic_end(t, p), next[p]);
        snprintf(path, sizeof path, "%s/journal-0", dir);
        assert_int_equal(access(path, F_OK) == 0, !off);
        cs_topic_close(t);
    }
}

/* A write larger than a journal file cannot go through it: its partitions
 * are fdatasynced instead (counted as a fallback), and it survives a power
 * loss that drops every unsynced write. */
static void test_journal_fallback_for_large_writes(void **state)
{
    (void)state;
    char dir[128], trash[128];
    snprintf(dir, sizeof dir, "%s/f", g_root);
    snprintf(trash, sizeof trash, "%s/trash", g_root);
    cs_iof_reset(trash);
    cs_topic_opts o = small_opts(2, cs_iof_ops());
    o.segment_bytes = 1 << 20;
    o.journal_bytes = 4096;
    char err[512];
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    static char big[3000];
    memset(big, 'x', sizeof big);
    cs_rec r[2] = {{.value = big, .value_len = sizeof big}, {.value = big, .value_len = sizeof big}};
    cs_topic_batch b[2] = {{.partition = 0, .recs = &r[0], .n = 1}, {.partition = 1, .recs = &r[1], .n = 1}};
    long s0 = cs_iof_count(CS_IOF_SYNC);
    assert_int_equal(cs_topic_append_multi(t, b, 2), 0); /* 6 KB > one 4 KiB journal file */
    assert_int_equal(cs_iof_count(CS_IOF_SYNC) - s0, 2);  /* each partition's own fdatasync */
    cs_topic_stats st;
    cs_topic_get_stats(t, -1, &st);
    assert_int_equal(st.journal_fallbacks, 1);
    assert_int_equal(st.journal_commits, 0);
    /* A small one still goes through the journal. */
    int64_t next[2] = {1, 1};
    char v[2][200];
    cs_rec s[2];
    for (int p = 0; p < 2; p++) {
        memset(&s[p], 0, sizeof s[p]);
        s[p].value = v[p];
        s[p].value_len = gen_value(p, 1, v[p]);
        b[p] = (cs_topic_batch){.partition = p, .recs = &s[p], .n = 1};
    }
    assert_int_equal(cs_topic_append_multi(t, b, 2), 0);
    cs_topic_get_stats(t, -1, &st);
    assert_int_equal(st.journal_commits, 1);
    cs_iof_crash_at(CS_IOF_ALL, 1);
    cs_topic_close(t);
    assert_true(cs_iof_power_loss(CS_IOF_LOSE_DROP, 3) > 0);
    cs_topic_opts ro = small_opts(2, NULL);
    ro.segment_bytes = 1 << 20;
    ro.journal_bytes = 4096;
    t = cs_topic_open(dir, &ro, err, sizeof err);
    if (!t) fail_msg("reopen: %s", err);
    for (int p = 0; p < 2; p++) assert_int_equal(cs_topic_end(t, p), next[p] + 1);
    cs_topic_close(t);
}

/* Concurrent multi-partition appenders through a journal small enough to
 * switch files and checkpoint while others append: every record is there
 * once, offsets are dense, and the commits were shared. */
#define JC_THREADS 4
#define JC_ROUNDS 150
#define JC_PARTS 4
struct jc_arg {
    cs_topic *t;
    int       id;
    int       failed;
};

static void *jc_main(void *arg)
{
    struct jc_arg *a = arg;
    for (int r = 0; r < JC_ROUNDS; r++) {
        char vals[JC_PARTS][2][48];
        cs_rec recs[JC_PARTS][2];
        cs_topic_batch b[JC_PARTS];
        for (int p = 0; p < JC_PARTS; p++) {
            for (int i = 0; i < 2; i++) {
                memset(&recs[p][i], 0, sizeof recs[p][i]);
                recs[p][i].value = vals[p][i];
                recs[p][i].value_len = (size_t)snprintf(vals[p][i], sizeof vals[p][i], "t%d-r%d-p%d-i%d", a->id, r, p, i);
            }
            b[p] = (cs_topic_batch){.partition = p, .recs = recs[p], .n = 2};
        }
        if (cs_topic_append_multi(a->t, b, JC_PARTS) != 0) a->failed++;
        for (int p = 0; p < JC_PARTS; p++)
            if (recs[p][1].offset != recs[p][0].offset + 1 || cs_topic_end(a->t, p) <= recs[p][1].offset) a->failed++;
    }
    return NULL;
}

struct jc_seen {
    int     part;
    int64_t n;
    int     bad;
    uint8_t got[JC_THREADS][JC_ROUNDS][2];
};

static int jc_cb(const cs_rec *r, void *arg)
{
    struct jc_seen *x = arg;
    int id, round, p, i;
    char v[64];
    size_t len = r->value_len < sizeof v - 1 ? r->value_len : sizeof v - 1;
    memcpy(v, r->value, len);
    v[len] = 0;
    if (sscanf(v, "t%d-r%d-p%d-i%d", &id, &round, &p, &i) != 4 || p != x->part || r->offset != x->n || id < 0 ||
        id >= JC_THREADS || round < 0 || round >= JC_ROUNDS || i < 0 || i > 1 || x->got[id][round][i])
        x->bad++;
    else
        x->got[id][round][i] = 1;
    x->n++;
    return 0;
}

static void test_journal_concurrent(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/c", g_root);
    cs_topic_opts o = small_opts(JC_PARTS, NULL);
    o.segment_bytes = 16384;
    o.journal_bytes = 8192;
    char err[512];
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    pthread_t th[JC_THREADS];
    struct jc_arg a[JC_THREADS];
    for (int i = 0; i < JC_THREADS; i++) {
        a[i] = (struct jc_arg){.t = t, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, jc_main, &a[i]), 0);
    }
    for (int i = 0; i < JC_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].failed, 0);
    }
    cs_topic_stats st;
    cs_topic_get_stats(t, -1, &st);
    assert_true(st.journal_checkpoints > 0);
    assert_true(st.journal_commits > 0 && st.journal_commits <= JC_THREADS * JC_ROUNDS);
    for (int reopen = 0; reopen < 2; reopen++) {
        for (int p = 0; p < JC_PARTS; p++) {
            static struct jc_seen x;
            memset(&x, 0, sizeof x);
            x.part = p;
            assert_int_equal(cs_topic_end(t, p), JC_THREADS * JC_ROUNDS * 2);
            assert_int_equal(cs_topic_read(t, p, 0, JC_THREADS * JC_ROUNDS * 2, jc_cb, &x), JC_THREADS * JC_ROUNDS * 2);
            assert_int_equal(x.bad, 0);
        }
        cs_topic_close(t);
        t = reopen ? NULL : cs_topic_open(dir, &o, err, sizeof err);
        if (!reopen) assert_non_null(t);
    }
    printf("{\"test\":\"journal-concurrent\",\"appends\":%d,\"journal_commits\":%lld,\"checkpoints\":%lld}\n",
           JC_THREADS * JC_ROUNDS, (long long)st.journal_commits, (long long)st.journal_checkpoints);
}

/* T2 for the journal: a power loss at every I/O operation of a workload of
 * multi-partition appends through a journal small enough to switch files
 * and checkpoint many times; every acknowledged record survives. */
static void jworkload(const char *dir, const cs_io_ops *io, int64_t *acked)
{
    memset(acked, 0, J_PARTS * sizeof *acked);
    cs_topic_opts o = small_opts(J_PARTS, io);
    o.journal_bytes = 4096;
    char err[512];
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    if (!t) return;
    for (int b = 0; b < 16; b++) {
        int64_t next[J_PARTS];
        memcpy(next, acked, sizeof next);
        if (append_multi_k(t, J_PARTS, next, b % 4 + 1) == 0) memcpy(acked, next, sizeof next);
        else break;
    }
    cs_topic_close(t);
}

static void test_t2_journal_power_loss(void **state)
{
    (void)state;
    char dir[128], trash[128];
    snprintf(dir, sizeof dir, "%s/t", g_root);
    snprintf(trash, sizeof trash, "%s/trash", g_root);
    cs_iof_reset(trash);
    int64_t acked[J_PARTS];
    jworkload(dir, cs_iof_ops(), acked);
    long nops = cs_iof_count(CS_IOF_MUTATING);
    assert_true(acked[0] == 40 && nops > 50);
    cs_iof_power_loss(CS_IOF_LOSE_KEEP, 0);
    /* The workload did switch journal files and checkpoint. */
    {
        cs_topic_opts o = small_opts(J_PARTS, NULL);
        o.journal_bytes = 4096;
        char err[512];
        cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
        assert_non_null(t);
        assert_int_equal(verify(t, J_PARTS, acked), 0);
        cs_topic_close(t);
    }
    sh("rm -rf %s", dir);
    static const enum cs_iof_loss modes[] = {CS_IOF_LOSE_DROP, CS_IOF_LOSE_GARBLE, CS_IOF_LOSE_RANDOM};
    long trials = 0, replayed = 0, acked_total = 0;
    for (long n = 1; n <= nops; n++) {
        for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            cs_iof_reset(trash);
            cs_iof_crash_at(CS_IOF_MUTATING, n);
            jworkload(dir, cs_iof_ops(), acked);
            cs_iof_power_loss(modes[m], (uint64_t)(n * 13 + (long)m));
            trials++;
            cs_topic_opts o = small_opts(J_PARTS, NULL);
            o.journal_bytes = 4096;
            char err[512] = "";
            cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
            if (!t) fail_msg("crash at op %ld (mode %d): reopen failed: %s", n, (int)modes[m], err);
            int64_t l = verify(t, J_PARTS, acked);
            if (l) fail_msg("crash at op %ld (mode %d): %lld acknowledged records lost", n, (int)modes[m], (long long)l);
            cs_topic_stats st;
            cs_topic_get_stats(t, -1, &st);
            replayed += st.journal_replayed;
            for (int p = 0; p < J_PARTS; p++) acked_total += acked[p];
            /* Usable after recovery, through the journal again. */
            int64_t next[J_PARTS];
            for (int p = 0; p < J_PARTS; p++) next[p] = cs_topic_end(t, p);
            assert_int_equal(append_multi_k(t, J_PARTS, next, 2), 0);
            cs_topic_close(t);
            sh("rm -rf %s", dir);
        }
    }
    assert_true(replayed > 0);
    printf("{\"test\":\"T2-journal\",\"io_ops\":%ld,\"trials\":%ld,\"acked_records_checked\":%ld,\"lost\":0,"
           "\"records_replayed_from_journal\":%ld}\n",
           nops, trials, acked_total, replayed);
    fflush(stdout);
}

/* ------------------------------------------------------------------- T3 */

static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    assert_non_null(b);
    assert_int_equal(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static void spill(const char *path, const uint8_t *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, len), (ssize_t)len);
    close(fd);
}

static void test_t3_truncate_every_byte(void **state)
{
    (void)state;
    char dir[128], seg[200];
    snprintf(dir, sizeof dir, "%s/t", g_root);
    snprintf(seg, sizeof seg, "%s/p00000/00000000000000000000.seg", dir);
    cs_topic_opts o = small_opts(1, NULL);
    o.segment_bytes = 1 << 20;
    char err[512];
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    int64_t next = 0, bounds[32], ends[32];
    int nb = 0;
    struct stat st;
    for (int b = 0; b < 12; b++) {
        assert_int_equal(append_k(t, 0, &next, b % 6 + 1), 0);
        assert_int_equal(stat(seg, &st), 0);
        bounds[nb] = st.st_size, ends[nb] = next, nb++;
    }
    cs_topic_close(t);
    size_t len;
    uint8_t *img = slurp(seg, &len);
    int64_t from = bounds[nb - 3]; /* start of the second-to-last batch */
    long trials = 0;
    int64_t cut_total = 0;
    /* A cut tail is what a crash leaves: no clean-shutdown marker. */
    char marker[200];
    snprintf(marker, sizeof marker, "%s/p00000/clean", dir);
    for (int64_t cut = from; cut < (int64_t)len; cut++) {
        unlink(marker);
        spill(seg, img, (size_t)cut);
        t = cs_topic_open(dir, &o, err, sizeof err);
        if (!t) fail_msg("cut at %lld: open failed: %s", (long long)cut, err);
        /* The valid prefix: whole batches up to the cut. */
        int k = 0;
        while (k + 1 < nb && bounds[k + 1] <= cut) k++;
        int64_t want_end = bounds[k] <= cut ? ends[k] : 0, want_size = bounds[k];
        cs_topic_stats s;
        cs_topic_get_stats(t, 0, &s);
        if (cs_topic_end(t, 0) != want_end || s.truncated_bytes != cut - want_size)
            fail_msg("cut at %lld: end %lld (want %lld), truncated %lld (want %lld)", (long long)cut,
                     (long long)cs_topic_end(t, 0), (long long)want_end, (long long)s.truncated_bytes,
                     (long long)(cut - want_size));
        assert_int_equal(stat(seg, &st), 0);
        assert_int_equal(st.st_size, want_size);
        int64_t acked[1] = {want_end};
        assert_int_equal(verify(t, 1, acked), 0);
        int64_t nx = want_end;
        assert_int_equal(append_k(t, 0, &nx, 1), 0);
        cut_total += s.truncated_bytes;
        trials++;
        cs_topic_close(t);
    }
    free(img);
    printf("{\"test\":\"T3\",\"trials\":%ld,\"bytes_cut_total\":%lld,\"reopened\":%ld,\"wrong_end\":0,"
           "\"intact_records_lost\":0}\n",
           trials, (long long)cut_total, trials);
    fflush(stdout);
}

/* ------------------------------------------------------------------- T4 */

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static int list_files(const char *dir, char files[][256], int max)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "cd %s && find . -type f | sort", dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    while (p && n < max && fgets(files[n], 256, p)) {
        files[n][strcspn(files[n], "\n")] = '\0';
        n++;
    }
    if (p) pclose(p);
    return n;
}

static void test_t4_bit_flips(void **state)
{
    (void)state;
    char tmpl[128], dir[128];
    snprintf(tmpl, sizeof tmpl, "%s/tmpl", g_root);
    snprintf(dir, sizeof dir, "%s/t", g_root);
    cs_topic_opts o = small_opts(2, NULL);
    char err[512];
    cs_topic *t = cs_topic_open(tmpl, &o, err, sizeof err);
    assert_non_null(t);
    int64_t acked[2] = {0, 0};
    for (int b = 0; b < 60; b++) {
        int p = b % 2;
        assert_int_equal(append_k(t, p, &acked[p], b % 5 + 1), 0);
        if (b % 10 == 9) {
            assert_int_equal(cs_topic_group_commit(t, "g", 0, acked[0] / 2), 0);
            assert_int_equal(cs_topic_group_commit(t, "g", 1, acked[1] / 2), 0);
        }
    }
    int64_t g_last[2] = {acked[0] / 2, acked[1] / 2};
    cs_topic_close(t);
    static char files[256][256];
    int nf = list_files(tmpl, files, 256);
    assert_true(nf > 10);

    long trials = 0, harmless = 0, repaired = 0, detected_open = 0, detected_read = 0, cut_logged = 0,
         acked_tail_cut = 0, silent = 0;
    long by_kind[4] = {0}; /* seg, idx, off, meta */
    for (int i = 0; i < 200; i++) {
        sh("rm -rf %s && cp -a %s %s", dir, tmpl, dir);
        const char *rel = files[rnd() % (uint64_t)nf];
        char path[400];
        snprintf(path, sizeof path, "%s/%s", dir, rel);
        size_t len;
        uint8_t *b = slurp(path, &len);
        if (len == 0) {
            free(b);
            i--;
            continue;
        }
        uint64_t bit = rnd() % (len * 8);
        b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        spill(path, b, len);
        free(b);
        int kind = strstr(rel, ".seg") ? 0 : strstr(rel, ".idx") ? 1 : strstr(rel, ".off") ? 2 : 3;
        by_kind[kind]++;
        trials++;
        err[0] = '\0';
        t = cs_topic_open(dir, &o, err, sizeof err);
        if (!t) {
            /* Refusing to open is detection only when the error names the file. */
            if (!strstr(err, rel + 2)) {
                silent++;
                fail_msg("flip in %s bit %llu: open failed without naming it: %s", rel, (unsigned long long)bit, err);
            }
            detected_open++;
            continue;
        }
        int read_err = 0;
        int64_t wrong = 0, missing = 0;
        for (int p = 0; p < 2; p++) {
            struct expect x = {.part = p};
            int n = cs_topic_read(t, p, 0, (size_t)acked[p], expect_cb, &x);
            if (n < 0) read_err = 1;
            wrong += x.bad;
            if (n >= 0) missing += acked[p] - x.seen;
        }
        cs_topic_stats st;
        cs_topic_get_stats(t, -1, &st);
        if (wrong) {
            silent++;
            fail_msg("flip in %s bit %llu: %lld records returned wrong", rel, (unsigned long long)bit, (long long)wrong);
        }
        /* Group offsets: the latest or the previous generation, or (both
         * slots gone) a logged restart from 0. */
        for (int p = 0; p < 2 && kind == 2; p++) {
            int64_t c = cs_topic_group_committed(t, "g", p);
            int64_t prev = p == 0 ? g_last[0] : g_last[1];
            (void)prev;
            if (c != g_last[p] && c != 0 && c != -1) {
                /* the previous generation changed only the other partition */
                int64_t c0 = cs_topic_group_committed(t, "g", 0), c1 = cs_topic_group_committed(t, "g", 1);
                if (!(c0 == g_last[0] || c1 == g_last[1])) {
                    silent++;
                    fail_msg("flip in %s: group offset %lld is neither generation", rel, (long long)c);
                }
            }
        }
        if (read_err) {
            if (!strstr(cs_topic_errmsg(t), rel + 2)) {
                silent++;
                fail_msg("flip in %s: read error without naming it: %s", rel, cs_topic_errmsg(t));
            }
            detected_read++;
        } else if (missing) {
            if (st.truncated_bytes == 0) {
                silent++;
                fail_msg("flip in %s bit %llu: %lld records missing, nothing logged", rel, (unsigned long long)bit,
                         (long long)missing);
            }
            cut_logged++;
            acked_tail_cut++; /* every record here was acknowledged */
        } else if (st.indexes_rebuilt || (kind == 2 && cs_topic_errmsg(t)[0]) || kind == 3) {
            repaired++;
        } else {
            harmless++;
            if (getenv("CS_TEST_VERBOSE")) printf("# no effect: %s bit %llu\n", rel, (unsigned long long)bit);
        }
        cs_topic_close(t);
    }
    printf("{\"test\":\"T4\",\"trials\":%ld,\"in_segments\":%ld,\"in_indexes\":%ld,\"in_offsets\":%ld,"
           "\"in_meta_or_markers\":%ld,\"detected_at_open\":%ld,\"detected_at_read\":%ld,\"repaired\":%ld,"
           "\"cut_as_torn_tail_logged\":%ld,\"acked_tail_cut\":%ld,\"no_effect\":%ld,\"silent_corruption\":%ld}\n",
           trials, by_kind[0], by_kind[1], by_kind[2], by_kind[3], detected_open, detected_read, repaired, cut_logged,
           acked_tail_cut, harmless, silent);
    fflush(stdout);
}

/* ------------------------------------------------------------------- T5 */

static void test_t5_missing_files(void **state)
{
    (void)state;
    char dir[128], path[600], err[512];
    snprintf(dir, sizeof dir, "%s/t", g_root);
    cs_topic_opts o = small_opts(2, NULL);
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    int64_t acked[2] = {0, 0};
    for (int b = 0; b < 40; b++) assert_int_equal(append_k(t, b % 2, &acked[b % 2], 3), 0);
    assert_int_equal(cs_topic_group_commit(t, "g", 1, 7), 0);
    cs_topic_close(t);
    static char files[256][256];
    int nf = list_files(dir, files, 256);
    int idx_missing = 0, idx_rebuilt = 0, seg_missing_errors = 0, offsets_missing = 0, temps = 0, meta_rewritten = 0;

    /* Every sealed index missing at once: all rebuilt, data intact. */
    for (int i = 0; i < nf; i++)
        if (strstr(files[i], ".idx")) {
            snprintf(path, sizeof path, "%s/%.250s", dir, files[i]);
            unlink(path);
            idx_missing++;
        }
    t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    cs_topic_stats st;
    cs_topic_get_stats(t, -1, &st);
    idx_rebuilt = (int)st.indexes_rebuilt;
    assert_int_equal(idx_rebuilt, idx_missing);
    assert_int_equal(verify(t, 2, acked), 0);
    cs_topic_close(t);

    /* Each middle segment missing in turn: a clear error naming the gap,
     * the same on every attempt (no crash loop, nothing cut). */
    nf = list_files(dir, files, 256);
    for (int i = 0; i < nf; i++) {
        if (!strstr(files[i], "p00001/") || !strstr(files[i], ".seg")) continue;
        if (strstr(files[i], "/00000000000000000000.seg")) continue; /* the first: retention-like, fine */
        snprintf(path, sizeof path, "%s/%.250s", dir, files[i]);
        char moved[300];
        snprintf(moved, sizeof moved, "%s/moved", g_root);
        assert_int_equal(rename(path, moved), 0);
        for (int k = 0; k < 2; k++) {
            cs_topic *t2 = cs_topic_open(dir, &o, err, sizeof err);
            if (t2) fail_msg("%s missing: opened (end %lld)", files[i], (long long)cs_topic_end(t2, 1));
            if (!strstr(err, "missing")) fail_msg("missing %s: %s", files[i], err);
        }
        seg_missing_errors++;
        assert_int_equal(rename(moved, path), 0);
    }
    assert_true(seg_missing_errors >= 2);

    /* Offsets file missing: the group is unregistered, the data intact. */
    snprintf(path, sizeof path, "%s/groups/g.off", dir);
    assert_int_equal(unlink(path), 0);
    offsets_missing = 1;
    /* Stray temp files everywhere, and the metadata missing. */
    const char *tmps[] = {"meta.tmp", "groups/h.off.tmp", "p00000/00000000000000000000.idx.tmp",
                          "p00001/00000000000000000099.seg.tmp"};
    for (size_t i = 0; i < sizeof tmps / sizeof tmps[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, tmps[i]);
        spill(path, (const uint8_t *)"x", 1);
        temps++;
    }
    snprintf(path, sizeof path, "%s/meta", dir);
    unlink(path);
    t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    meta_rewritten = access(path, F_OK) == 0;
    assert_true(meta_rewritten);
    assert_int_equal(cs_topic_group_committed(t, "g", 1), -1);
    assert_int_equal(verify(t, 2, acked), 0);
    cs_topic_close(t);
    nf = list_files(dir, files, 256);
    for (int i = 0; i < nf; i++)
        if (strstr(files[i], ".tmp")) fail_msg("temp file left: %s", files[i]);
    printf("{\"test\":\"T5\",\"indexes_missing\":%d,\"indexes_rebuilt\":%d,\"middle_segments_missing\":%d,"
           "\"named_errors\":%d,\"offsets_file_missing\":%d,\"temp_files\":%d,\"temp_files_left\":0,"
           "\"meta_rewritten\":%d,\"acked_lost\":0}\n",
           idx_missing, idx_rebuilt, seg_missing_errors, seg_missing_errors, offsets_missing, temps, meta_rewritten);
    fflush(stdout);
}

/* ------------------------------------------------------------------- T6 */

static void test_t6_disk_full(void **state)
{
    (void)state;
    char dir[128], trash[128], err[512];
    snprintf(dir, sizeof dir, "%s/t", g_root);
    snprintf(trash, sizeof trash, "%s/trash", g_root);
    cs_iof_reset(trash);
    cs_topic_opts o = small_opts(1, cs_iof_ops());
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    int64_t acked = 0, next;
    long failed_appends = 0, acked_after_failure = 0, rounds = 0;
    /* a) No room for the next segment (fallocate ENOSPC), for a while. */
    cs_iof_fail(CS_IOF_FALLOC, 1, ENOSPC, 1);
    for (int i = 0; i < 200; i++) {
        next = acked;
        if (append_k(t, 0, &next, 4) == 0) {
            acked = next;
            if (failed_appends) acked_after_failure++;
        } else {
            assert_int_equal(errno, ENOSPC);
            failed_appends++;
        }
    }
    assert_true(failed_appends > 100);
    assert_int_equal(acked_after_failure, 0);
    assert_int_equal(cs_topic_end(t, 0), acked);
    rounds++;
    /* Space returns: appends go on. */
    cs_iof_fail(0, 0, 0, 0);
    for (int i = 0; i < 20; i++) assert_int_equal(append_k(t, 0, &acked, 4), 0);
    /* b) ENOSPC on the write itself, then c) short writes: each fails
     * alone, cut back, never visible. */
    cs_iof_fail(CS_IOF_PWRITE, 1, ENOSPC, 1);
    for (int i = 0; i < 10; i++) {
        next = acked;
        assert_int_equal(append_k(t, 0, &next, 3), -1);
        failed_appends++;
    }
    cs_iof_fail(0, 0, 0, 0);
    cs_iof_short_write(1, 1);
    for (int i = 0; i < 10; i++) {
        next = acked;
        assert_int_equal(append_k(t, 0, &next, 3), -1);
        failed_appends++;
    }
    cs_iof_short_write(0, 0);
    rounds += 2;
    assert_int_equal(cs_topic_end(t, 0), acked);
    int64_t before = acked;
    assert_int_equal(append_k(t, 0, &acked, 2), 0);
    assert_int_equal(verify(t, 1, &acked), 0);
    assert_int_equal(fatal_calls, 0);
    cs_topic_close(t);
    cs_iof_power_loss(CS_IOF_LOSE_KEEP, 0);
    o.io = NULL;
    t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    cs_topic_stats st;
    cs_topic_get_stats(t, -1, &st);
    assert_int_equal(st.truncated_bytes, 0); /* no partial batch was left */
    assert_int_equal(cs_topic_end(t, 0), acked);
    assert_int_equal(verify(t, 1, &acked), 0);
    cs_topic_close(t);
    (void)before;

    /* d) A real small tmpfs (root only). */
    char mnt[128], why[200] = "";
    long tmpfs_acked = 0, tmpfs_failed = 0, tmpfs_after = 0, tmpfs_resumed = 0;
    int tmpfs_ran = 0;
    snprintf(mnt, sizeof mnt, "%s/mnt", g_root);
    mkdir(mnt, 0755);
    if (geteuid() != 0) snprintf(why, sizeof why, "not root");
    else if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0)
        snprintf(why, sizeof why, "mount tmpfs: %s", strerror(errno));
    if (!why[0]) {
        tmpfs_ran = 1;
        char tdir[200], filler[200];
        snprintf(tdir, sizeof tdir, "%s/t", mnt);
        snprintf(filler, sizeof filler, "%s/filler", mnt);
        o = small_opts(1, NULL);
        o.segment_bytes = 128 << 10;
        t = cs_topic_open(tdir, &o, err, sizeof err);
        assert_non_null(t);
        /* Fill the disk: appends succeed until a segment cannot be reserved. */
        int64_t a = 0;
        for (int i = 0; i < 4000; i++) {
            next = a;
            if (append_k(t, 0, &next, 8) == 0) {
                a = next;
                if (tmpfs_failed) tmpfs_after++;
            } else {
                if (errno != ENOSPC) fail_msg("tmpfs: append failed with %s, not ENOSPC", strerror(errno));
                tmpfs_failed++;
            }
        }
        assert_true(tmpfs_failed > 0);
        assert_int_equal(tmpfs_after, 0);
        tmpfs_acked = a;
        assert_int_equal(cs_topic_end(t, 0), a);
        assert_int_equal(verify(t, 1, &a), 0);
        cs_topic_close(t);
        /* Recovery on a full disk is clean, and once space returns
         * (the oldest segment removed, as retention would), appends resume. */
        t = cs_topic_open(tdir, &o, err, sizeof err);
        assert_non_null(t);
        cs_topic_get_stats(t, -1, &st);
        assert_int_equal(st.truncated_bytes, 0);
        assert_int_equal(verify(t, 1, &a), 0);
        cs_topic_close(t);
        o.retention_bytes = 4 * o.segment_bytes;
        t = cs_topic_open(tdir, &o, err, sizeof err);
        assert_non_null(t);
        for (int i = 0; i < 50; i++)
            if (append_k(t, 0, &a, 8) == 0) tmpfs_resumed++;
        assert_true(tmpfs_resumed > 0);
        cs_topic_close(t);
        umount2(mnt, MNT_DETACH);
    }
    printf("{\"test\":\"T6\",\"injected_rounds\":%ld,\"failed_appends\":%ld,\"acked_after_failure\":%ld,"
           "\"partial_batches_visible\":0,\"recovery_truncated_bytes\":0,\"tmpfs\":%s%s%s,\"tmpfs_acked\":%ld,"
           "\"tmpfs_enospc_appends\":%ld,\"tmpfs_acked_after_failure\":%ld,\"tmpfs_resumed_appends\":%ld}\n",
           rounds, failed_appends, acked_after_failure, tmpfs_ran ? "true" : "\"skipped: ", tmpfs_ran ? "" : why,
           tmpfs_ran ? "" : "\"", tmpfs_acked, tmpfs_failed, tmpfs_after, tmpfs_resumed);
    fflush(stdout);
}

/* ------------------------------------------------------------------- T7 */

#include <pthread.h>

struct t7w {
    cs_topic *t;
    int       part;
    long      ok, failed, ok_after_fail;
};

static void *t7_writer(void *arg)
{
    struct t7w *w = arg;
    for (int i = 0; i < 200; i++) {
        char val[16] = "x";
        cs_rec r = {.key = "k", .key_len = 1, .value = val, .value_len = 1};
        if (cs_topic_append(w->t, w->part, &r, 1) == 0) {
            if (w->failed) w->ok_after_fail++;
            w->ok++;
        } else {
            w->failed++;
        }
    }
    return NULL;
}

static void test_t7_fsync_and_write_errors(void **state)
{
    (void)state;
    char dir[128], trash[128], err[512];
    snprintf(dir, sizeof dir, "%s/t", g_root);
    snprintf(trash, sizeof trash, "%s/trash", g_root);
    long fsync_fail_trials = 0, acked_after_fatal = 0, write_errors = 0, short_writes = 0, nonfatal = 0;
    int fatal_before = fatal_calls;

    /* a) The nth fdatasync fails (EIO), for n = 1..12 (creation, appends,
     * rolls, group commits): the fatal path runs, the failing append and
     * every later one are refused, and a reopen holds every acked record. */
    for (long n = 1; n <= 12; n++) {
        sh("rm -rf %s", dir);
        cs_iof_reset(trash);
        cs_topic_opts o = small_opts(1, cs_iof_ops());
        cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
        assert_non_null(t);
        cs_iof_fail(CS_IOF_SYNC, n, EIO, 0);
        int f0 = fatal_calls;
        int64_t acked = 0, next;
        int failed = 0;
        for (int i = 0; i < 40; i++) {
            next = acked;
            int dead = fatal_calls > f0;
            if (append_k(t, 0, &next, 3) == 0) {
                acked = next;
                if (dead) acked_after_fatal++;
            } else {
                failed = 1;
                assert_int_equal(errno, EIO);
            }
            if (i % 7 == 6 && cs_topic_group_commit(t, "g", 0, acked) != 0) failed = 1;
        }
        /* A failed fdatasync of data or offsets is fatal; one of a file not
         * yet in use (a new index, a new group file) fails that operation
         * only, and nothing depends on it. */
        if (fatal_calls > f0) assert_true(failed);
        else nonfatal++;
        assert_int_equal(acked_after_fatal, 0);
        cs_topic_close(t);
        /* What a failed fsync may have lost: the page cache is gone too. */
        cs_iof_power_loss(CS_IOF_LOSE_DROP, (uint64_t)n);
        o.io = NULL;
        t = cs_topic_open(dir, &o, err, sizeof err);
        if (!t) fail_msg("fsync failure %ld: reopen: %s", n, err);
        assert_int_equal(verify(t, 1, &acked), 0);
        cs_topic_close(t);
        fsync_fail_trials++;
    }

    /* b) Concurrent appenders sharing a failing group commit: none of the
     * batches in it is acknowledged. */
    sh("rm -rf %s", dir);
    cs_iof_reset(trash);
    cs_topic_opts o = small_opts(1, cs_iof_ops());
    o.segment_bytes = 1 << 20;
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    cs_iof_fail(CS_IOF_SYNC, 30, EIO, 0);
    struct t7w w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct t7w){.t = t, .part = 0};
        pthread_create(&th[i], NULL, t7_writer, &w[i]);
    }
    long ok = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
        acked_after_fatal += w[i].ok_after_fail;
    }
    assert_int_equal(acked_after_fatal, 0);
    /* Every acked record was covered by a successful fsync: at most the
     * records synced before the failure. */
    int64_t end = cs_topic_end(t, 0);
    assert_int_equal(end, ok);
    cs_topic_close(t);
    cs_iof_power_loss(CS_IOF_LOSE_DROP, 1);
    o.io = NULL;
    t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    assert_true(cs_topic_end(t, 0) >= ok);
    cs_topic_close(t);

    /* c) Write errors and short writes: the batch fails alone, is cut, and
     * the next append works without any fatal path. */
    sh("rm -rf %s", dir);
    cs_iof_reset(trash);
    o = small_opts(1, cs_iof_ops());
    o.segment_bytes = 1 << 20; /* no roll: the only pwrite is the batch's */
    t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    int fb = fatal_calls;
    int64_t acked = 0, next;
    for (int i = 0; i < 30; i++) {
        if (i % 3 == 1) cs_iof_fail(CS_IOF_PWRITE, 1, EIO, 0), write_errors++;
        if (i % 3 == 2) cs_iof_short_write(1, 0), short_writes++;
        next = acked;
        int rc = append_k(t, 0, &next, 2);
        if (i % 3 == 0) assert_int_equal(rc, 0), acked = next;
        else assert_int_equal(rc, -1);
        cs_iof_fail(0, 0, 0, 0);
        cs_iof_short_write(0, 0);
    }
    assert_int_equal(fatal_calls, fb);
    assert_int_equal(verify(t, 1, &acked), 0);
    /* d) If the failed write cannot even be cut, that is fatal too. */
    cs_iof_fail(CS_IOF_PWRITE | CS_IOF_TRUNC, 1, EIO, 1);
    next = acked;
    assert_int_equal(append_k(t, 0, &next, 2), -1);
    assert_int_equal(fatal_calls, fb + 1);
    cs_iof_fail(0, 0, 0, 0);
    next = acked;
    assert_int_equal(append_k(t, 0, &next, 2), -1); /* dead */
    cs_topic_close(t);
    cs_iof_power_loss(CS_IOF_LOSE_KEEP, 0);
    o.io = NULL;
    t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(cs_topic_end(t, 0), acked);
    assert_int_equal(verify(t, 1, &acked), 0);
    cs_topic_close(t);

    printf("{\"test\":\"T7\",\"fsync_failure_trials\":%ld,\"sync_failures_of_unused_files\":%ld,\"fatal_paths\":%d,\"acked_after_fatal\":%ld,"
           "\"group_commit_threads\":4,\"group_commit_acked_unsynced\":0,\"write_errors\":%ld,\"short_writes\":%ld,"
           "\"acked_lost\":0}\n",
           fsync_fail_trials, nonfatal, fatal_calls - fatal_before, acked_after_fatal, write_errors, short_writes);
    fflush(stdout);
}

static int fx_setup_zstd(void **state)
{
    g_compress = 1;
    return fx_setup(state);
}

static int fx_teardown_zstd(void **state)
{
    g_compress = 0;
    return fx_teardown(state);
}

/* The fault runs below really meet compressed batches: with g_compress every
 * segment file starts with a CSB3 batch (small_opts: 2 KiB segments, so a
 * partition rolls over several). */
static void test_zstd_segments_are_compressed(void **state)
{
    (void)state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/z", g_root);
    cs_topic_opts o = small_opts(2, NULL);
    char err[512];
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    assert_non_null(t);
    int64_t next[2] = {0, 0};
    for (int b = 0; b < 80; b++) assert_int_equal(append_k(t, b % 2, &next[b % 2], 5), 0);
    assert_int_equal(verify(t, 2, next), 0);
    cs_topic_close(t);
    static char files[256][256];
    int nf = list_files(dir, files, 256), segs = 0;
    for (int i = 0; i < nf; i++) {
        size_t n = strlen(files[i]);
        if (n < 4 || strcmp(files[i] + n - 4, ".seg") != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        size_t len;
        uint8_t *b = slurp(path, &len);
        if (len >= 4) assert_int_equal(cs_get32(b), CS_SEG_ZBATCH_MAGIC);
        segs += len >= 4;
        free(b);
    }
    assert_true(segs >= 4);
}

int main(void)
{
    /* The fault loops log an error per injected failure on purpose: quiet
     * unless CS_TEST_VERBOSE is set. */
    cs_log_set_level(getenv("CS_TEST_VERBOSE") ? CS_LOG_DEBUG : (enum cs_log_level)(CS_LOG_ERROR + 1));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_t2_power_loss_every_op, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_journal_one_commit_per_request, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_journal_replay, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_journal_concurrent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_journal_fallback_for_large_writes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_t2_journal_power_loss, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_t3_truncate_every_byte, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_t4_bit_flips, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_t5_missing_files, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_t6_disk_full, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_t7_fsync_and_write_errors, fx_setup, fx_teardown),
        /* The same power losses, truncations and bit flips over compressed batches. */
        cmocka_unit_test_setup_teardown(test_zstd_segments_are_compressed, fx_setup_zstd, fx_teardown_zstd),
        cmocka_unit_test_setup_teardown(test_journal_concurrent, fx_setup_zstd, fx_teardown_zstd), /* appenders sharing the context pool */
        cmocka_unit_test_setup_teardown(test_t2_power_loss_every_op, fx_setup_zstd, fx_teardown_zstd),
        cmocka_unit_test_setup_teardown(test_t2_journal_power_loss, fx_setup_zstd, fx_teardown_zstd),
        cmocka_unit_test_setup_teardown(test_t3_truncate_every_byte, fx_setup_zstd, fx_teardown_zstd),
        cmocka_unit_test_setup_teardown(test_t4_bit_flips, fx_setup_zstd, fx_teardown_zstd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
