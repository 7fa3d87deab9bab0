/*
 * Unit tests for the log (log/log.h): append/read, recovery of torn and
 * corrupt tails, group commit under concurrent appends, fsync policies,
 * segment roll, the offset/time index, sealed-segment damage, topic
 * metadata, consumer-group offsets, retention and the embedded bus.
 *
 * Every test works in its own mkdtemp directory under /tmp. The first
 * tests use one partition with segments large enough to stay in one file,
 * so they can cut and flip that file's bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "bus/bus.h"
#include "log/log.h"
#include "log/segment.h"

/* ---------------------------------------------------------------- helpers */

struct fx {
    char dir[64];
    char tdir[96];    /* the topic */
    char path[160];   /* partition 0's first segment */
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/cs_test_log_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->tdir, sizeof f->tdir, "%s/t", f->dir);
    snprintf(f->path, sizeof f->path, "%s/p00000/00000000000000000000.seg", f->tdir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

/* The old single-partition API, over a one-partition topic. */
typedef cs_topic cs_plog;
#define CS_PLOG_HDR CS_SEG_BATCH_HDR
#define CS_PLOG_REC_HDR CS_SEG_REC_HDR
#define CS_PLOG_MAX_BATCH CS_SEG_MAX_BATCH
#define cs_plog_append(t, r, n) cs_topic_append(t, 0, r, n)
#define cs_plog_read(t, from, max, cb, arg) cs_topic_read(t, 0, from, max, cb, arg)
#define cs_plog_end(t) cs_topic_end(t, 0)
#define cs_plog_sync(t) cs_topic_sync(t)
#define cs_plog_close(t) cs_topic_close(t)

static int64_t g_segment_bytes = 8 << 20;

static cs_topic *open_topic(const char *dir, int partitions, int policy, int interval_ms, int64_t seg_bytes,
                            char *err, size_t errlen)
{
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.partitions = partitions;
    o.fsync_policy = policy;
    o.fsync_interval_ms = interval_ms;
    o.segment_bytes = seg_bytes;
    o.index_interval = 256;
    o.retention_ms = 0;
    return cs_topic_open(dir, &o, err, errlen);
}

/* path: a segment path "<topic>/p00000/<base>.seg" or a topic dir. */
static cs_plog *open_log(const char *path, int policy, int interval_ms)
{
    char dir[256], err[512] = "";
    snprintf(dir, sizeof dir, "%s", path);
    char *cut = strstr(dir, "/p00000/");
    if (cut) *cut = '\0';
    cs_topic *t = open_topic(dir, 1, policy, interval_ms, g_segment_bytes, err, sizeof err);
    if (!t) fail_msg("cs_topic_open(%s): %s", dir, err);
    return t;
}

static int64_t cs_plog_truncated_bytes(cs_topic *t)
{
    cs_topic_stats st;
    cs_topic_get_stats(t, 0, &st);
    return st.truncated_bytes;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int64_t)st.st_size;
}

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

/* Writing a segment by hand models a crash: no clean-shutdown marker
 * (segment.h) survives it. spill_keep leaves the marker (damage after a
 * clean shutdown). */
static void spill_keep(const char *path, const uint8_t *b, size_t len);
static void spill(const char *path, const uint8_t *b, size_t len)
{
    size_t n = strlen(path);
    if (n > 4 && strcmp(path + n - 4, ".seg") == 0) {
        char marker[300];
        snprintf(marker, sizeof marker, "%.*s/clean", (int)(strrchr(path, '/') - path), path);
        unlink(marker);
    }
    spill_keep(path, b, len);
}

static void spill_keep(const char *path, const uint8_t *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, len), (ssize_t)len);
    close(fd);
}

/* Deterministic content of the record with offset o: the key names the
 * offset; the value has a length that cycles through 0..250 (binary bytes,
 * NULs included); the timestamp is derived from o. */
static size_t gen_value(int64_t o, uint8_t *out)
{
    size_t n = (size_t)((o * 37) % 251);
    uint64_t x = (uint64_t)o * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        out[i] = (uint8_t)x;
    }
    return n;
}

static int64_t gen_ts(int64_t o) { return 1700000000000000LL + o * 1001; }

struct genrec {
    char    key[24];
    uint8_t value[256];
    cs_rec  rec;
};

static void gen_fill(struct genrec *g, int64_t o)
{
    int kl = (o % 11 == 0) ? 0 : snprintf(g->key, sizeof g->key, "acc-%lld", (long long)o);
    g->rec = (cs_rec){0};
    g->rec.ts_us = gen_ts(o);
    g->rec.key = g->key;
    g->rec.key_len = (size_t)kl;
    g->rec.value = (const char *)g->value;
    g->rec.value_len = gen_value(o, g->value);
}

/* Append count generated records starting at offset `first` as one batch. */
static void append_gen(cs_plog *pl, int64_t first, size_t count)
{
    struct genrec *g = calloc(count, sizeof *g);
    cs_rec *recs = calloc(count, sizeof *recs);
    assert_non_null(g);
    assert_non_null(recs);
    for (size_t i = 0; i < count; i++) {
        gen_fill(&g[i], first + (int64_t)i);
        recs[i] = g[i].rec;
        recs[i].offset = -7;
    }
    assert_int_equal(cs_plog_append(pl, recs, count), 0);
    for (size_t i = 0; i < count; i++) assert_int_equal(recs[i].offset, first + (int64_t)i);
    free(recs);
    free(g);
}

/* Read callback state: checks each record against the generator. */
struct check {
    int64_t next;         /* expected offset of the next record */
    int64_t stop_after;   /* return 1 after this many, or -1 */
    int64_t seen;
    int64_t min_append, max_append;
};

static int check_cb(const cs_rec *r, void *arg)
{
    struct check *c = arg;
    struct genrec g;
    gen_fill(&g, r->offset);
    if (r->offset != c->next) fail_msg("read offset %lld, expected %lld", (long long)r->offset, (long long)c->next);
    if (r->ts_us != g.rec.ts_us) fail_msg("offset %lld: ts %lld", (long long)r->offset, (long long)r->ts_us);
    if (r->key_len != g.rec.key_len || memcmp(r->key, g.rec.key, r->key_len) != 0)
        fail_msg("offset %lld: key differs", (long long)r->offset);
    if (r->value_len != g.rec.value_len || memcmp(r->value, g.rec.value, r->value_len) != 0)
        fail_msg("offset %lld: value differs (len %zu vs %zu)", (long long)r->offset, r->value_len,
                 g.rec.value_len);
    if (c->min_append && (r->append_us < c->min_append || r->append_us > c->max_append))
        fail_msg("offset %lld: append time %lld outside [%lld, %lld]", (long long)r->offset,
                 (long long)r->append_us, (long long)c->min_append, (long long)c->max_append);
    c->next++;
    c->seen++;
    return c->stop_after >= 0 && c->seen >= c->stop_after;
}

/* Read [from, end) in one call and check every record. */
static void check_all(cs_plog *pl, int64_t from, int64_t end)
{
    struct check c = {.next = from, .stop_after = -1};
    int n = cs_plog_read(pl, from, (size_t)-1, check_cb, &c);
    assert_int_equal(n, end - from);
    assert_int_equal(c.next, end);
}

static int count_cb(const cs_rec *r, void *arg)
{
    (void)r;
    (*(int64_t *)arg)++;
    return 0;
}

/* ------------------------------------------------------------------ tests */

static void test_empty_log(void **state)
{
    struct fx *f = *state;
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    assert_int_equal(cs_plog_end(pl), 0);
    assert_int_equal(cs_plog_truncated_bytes(pl), 0);
    int64_t n = 0;
    assert_int_equal(cs_plog_read(pl, 0, 100, count_cb, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(cs_plog_append(pl, NULL, 0), 0); /* appending nothing is a no-op */
    assert_int_equal(cs_plog_end(pl), 0);
    assert_int_equal(file_size(f->path), 0);
    cs_plog_close(pl);

    char err[256] = "";
    assert_null(open_topic("/dev/null/x", 1, CS_FSYNC_ALWAYS, 0, 1 << 20, err, sizeof err));
    assert_non_null(strstr(err, "/dev/null/x"));
}

static void test_append_read_round_trip(void **state)
{
    struct fx *f = *state;
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    int64_t t0 = cs_now_us();
    int64_t next = 0, expect_size = 0;
    for (int b = 0; b < 120; b++) {
        size_t count = (size_t)(b % 13) + 1;
        append_gen(pl, next, count);
        for (size_t i = 0; i < count; i++) {
            struct genrec g;
            gen_fill(&g, next + (int64_t)i);
            expect_size += CS_PLOG_REC_HDR + (int64_t)(g.rec.key_len + g.rec.value_len);
        }
        expect_size += CS_PLOG_HDR;
        next += (int64_t)count;
        assert_int_equal(cs_plog_end(pl), next);
    }
    int64_t t1 = cs_now_us();
    /* The file holds exactly the batches the format describes. */
    assert_int_equal(file_size(f->path), expect_size);

    /* Everything in one read, append times within the test's window. */
    struct check c = {.next = 0, .stop_after = -1, .min_append = t0, .max_append = t1};
    assert_int_equal(cs_plog_read(pl, 0, (size_t)-1, check_cb, &c), next);
    assert_int_equal(c.next, next);

    /* From every offset, in reads of varying size. */
    for (int64_t from = 0; from < next; from += 1 + from % 5) {
        size_t max = (size_t)(from % 17) + 1;
        struct check cc = {.next = from, .stop_after = -1};
        int n = cs_plog_read(pl, from, max, check_cb, &cc);
        int64_t want = next - from < (int64_t)max ? next - from : (int64_t)max;
        assert_int_equal(n, want);
    }
    /* Past the end, at the end and with max 0: nothing. Negative: from 0. */
    int64_t cnt = 0;
    assert_int_equal(cs_plog_read(pl, next, 10, count_cb, &cnt), 0);
    assert_int_equal(cs_plog_read(pl, next + 1000, 10, count_cb, &cnt), 0);
    assert_int_equal(cs_plog_read(pl, 3, 0, count_cb, &cnt), 0);
    assert_int_equal(cnt, 0);
    struct check neg = {.next = 0, .stop_after = -1};
    assert_int_equal(cs_plog_read(pl, -5, 4, check_cb, &neg), 4);
    cs_plog_close(pl);
}

static void test_read_middle_of_batch(void **state)
{
    struct fx *f = *state;
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    append_gen(pl, 0, 10);  /* offsets 0..9 */
    append_gen(pl, 10, 10); /* 10..19 */
    append_gen(pl, 20, 1);  /* 20 */
    append_gen(pl, 21, 30); /* 21..50 */

    struct check c = {.next = 5, .stop_after = -1};
    assert_int_equal(cs_plog_read(pl, 5, 3, check_cb, &c), 3);
    assert_int_equal(c.next, 8);

    c = (struct check){.next = 15, .stop_after = -1};
    assert_int_equal(cs_plog_read(pl, 15, 100, check_cb, &c), 36);
    assert_int_equal(c.next, 51);

    /* Across batch boundaries. */
    c = (struct check){.next = 9, .stop_after = -1};
    assert_int_equal(cs_plog_read(pl, 9, 13, check_cb, &c), 13);
    assert_int_equal(c.next, 22);

    /* The last record of the last batch. */
    c = (struct check){.next = 50, .stop_after = -1};
    assert_int_equal(cs_plog_read(pl, 50, 10, check_cb, &c), 1);

    /* The callback stops the read early. */
    c = (struct check){.next = 7, .stop_after = 2};
    assert_int_equal(cs_plog_read(pl, 7, 100, check_cb, &c), 2);
    assert_int_equal(c.next, 9);
    c = (struct check){.next = 18, .stop_after = 5};
    assert_int_equal(cs_plog_read(pl, 18, 100, check_cb, &c), 5);
    assert_int_equal(c.next, 23);
    cs_plog_close(pl);
}

static void test_reopen_recovers_end(void **state)
{
    struct fx *f = *state;
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    int64_t next = 0;
    for (int b = 0; b < 40; b++) {
        append_gen(pl, next, (size_t)(b % 4) + 1);
        next += b % 4 + 1;
    }
    int64_t size = file_size(f->path);
    cs_plog_close(pl);

    for (int round = 0; round < 3; round++) {
        pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
        assert_int_equal(cs_plog_end(pl), next);
        assert_int_equal(cs_plog_truncated_bytes(pl), 0);
        assert_int_equal(file_size(f->path), size);
        check_all(pl, 0, next);
        /* Appends continue the offsets. */
        append_gen(pl, next, 3);
        next += 3;
        size = file_size(f->path);
        check_all(pl, 0, next);
        cs_plog_close(pl);
    }
}

/* Build a log of several batches; returns the file bytes and where the last
 * batch starts (and the end offset before it). */
static uint8_t *build_log(const char *path, int nbatches, size_t last_count, int64_t *prev_end, int64_t *prev_size,
                          int64_t *end, size_t *len)
{
    cs_plog *pl = open_log(path, CS_FSYNC_NEVER, 0);
    int64_t next = 0;
    for (int b = 0; b < nbatches - 1; b++) {
        append_gen(pl, next, (size_t)b % 3 + 1);
        next += b % 3 + 1;
    }
    *prev_end = next;
    *prev_size = file_size(path);
    append_gen(pl, next, last_count);
    *end = next + (int64_t)last_count;
    cs_plog_close(pl);
    return slurp(path, len);
}

static void test_truncate_every_byte_of_last_batch(void **state)
{
    struct fx *f = *state;
    int64_t prev_end, prev_size, end;
    size_t len;
    /* Last batch: offsets 9.. (value lengths 80, 117, 154 and keys). */
    uint8_t *img = build_log(f->path, 6, 3, &prev_end, &prev_size, &end, &len);
    assert_true((int64_t)len - prev_size > 300);

    for (int64_t cut = prev_size; cut < (int64_t)len; cut++) {
        spill(f->path, img, (size_t)cut);
        cs_plog *pl = open_log(f->path, CS_FSYNC_NEVER, 0);
        if (cs_plog_end(pl) != prev_end || cs_plog_truncated_bytes(pl) != cut - prev_size)
            fail_msg("file cut at %lld: end %lld (want %lld), truncated %lld (want %lld)", (long long)cut,
                     (long long)cs_plog_end(pl), (long long)prev_end, (long long)cs_plog_truncated_bytes(pl),
                     (long long)(cut - prev_size));
        assert_int_equal(file_size(f->path), prev_size);
        check_all(pl, 0, prev_end);
        int64_t n = 0;
        assert_int_equal(cs_plog_read(pl, prev_end, 100, count_cb, &n), 0);
        /* The log is usable: the next append takes the first lost offset. */
        append_gen(pl, prev_end, 1);
        check_all(pl, 0, prev_end + 1);
        cs_plog_close(pl);
    }
    /* The untouched file recovers completely. */
    spill(f->path, img, len);
    cs_plog *pl = open_log(f->path, CS_FSYNC_NEVER, 0);
    assert_int_equal(cs_plog_end(pl), end);
    assert_int_equal(cs_plog_truncated_bytes(pl), 0);
    check_all(pl, 0, end);
    cs_plog_close(pl);
    free(img);
}

static void test_bitflips_in_last_batch(void **state)
{
    struct fx *f = *state;
    int64_t prev_end, prev_size, end;
    size_t len;
    uint8_t *img = build_log(f->path, 5, 2, &prev_end, &prev_size, &end, &len);
    uint8_t *bad = malloc(len);
    assert_non_null(bad);
    int64_t last = (int64_t)len - prev_size;
    assert_true(last > 100);

    /* Every bit of the last batch. */
    for (int64_t bit = prev_size * 8; bit < (int64_t)len * 8; bit++) {
        memcpy(bad, img, len);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        spill(f->path, bad, len);
        cs_plog *pl = open_log(f->path, CS_FSYNC_NEVER, 0);
        if (cs_plog_end(pl) != prev_end || cs_plog_truncated_bytes(pl) != last)
            fail_msg("bit %lld of the file flipped: end %lld (want %lld), truncated %lld (want %lld)",
                     (long long)bit, (long long)cs_plog_end(pl), (long long)prev_end,
                     (long long)cs_plog_truncated_bytes(pl), (long long)last);
        assert_int_equal(file_size(f->path), prev_size);
        /* Reads serve exactly the intact records, never the flipped batch. */
        check_all(pl, 0, prev_end);
        int64_t n = 0;
        assert_int_equal(cs_plog_read(pl, prev_end, 100, count_cb, &n), 0);
        assert_int_equal(n, 0);
        cs_plog_close(pl);
    }
    free(bad);
    free(img);
}

struct batch_pos {
    int64_t pos, base;
};

static void test_clean_shutdown_marker(void **state)
{
    struct fx *f = *state;
    int64_t prev_end, prev_size, end;
    size_t len;
    uint8_t *img = build_log(f->path, 5, 3, &prev_end, &prev_size, &end, &len);
    char marker[200];
    snprintf(marker, sizeof marker, "%s/p00000/clean", f->tdir);
    assert_int_equal(access(marker, F_OK), 0);
    uint8_t *bad = malloc(len);
    assert_non_null(bad);
    /* After a clean shutdown, the last batch was acknowledged: damage in it
     * (a flip, or the file cut short) is a named error, never a cut. */
    for (int64_t at = prev_size; at < (int64_t)len; at += 7) {
        memcpy(bad, img, len);
        bad[at] ^= 0x04;
        spill_keep(f->path, bad, len);
        char err[512] = "";
        cs_topic *t = open_topic(f->tdir, 1, CS_FSYNC_NEVER, 0, g_segment_bytes, err, sizeof err);
        if (t) fail_msg("flip at %lld after a clean shutdown: opened", (long long)at);
        if (!strstr(err, f->path) || !strstr(err, "clean shutdown")) fail_msg("flip at %lld: %s", (long long)at, err);
        assert_int_equal(access(marker, F_OK), 0); /* kept: still the truth */
    }
    spill_keep(f->path, img, len - 1);
    char err[512] = "";
    assert_null(open_topic(f->tdir, 1, CS_FSYNC_NEVER, 0, g_segment_bytes, err, sizeof err));
    assert_non_null(strstr(err, "acknowledged data missing"));
    /* Intact: opens, and the marker is gone until the next clean close. */
    spill_keep(f->path, img, len);
    cs_plog *pl = open_log(f->path, CS_FSYNC_NEVER, 0);
    assert_int_equal(access(marker, F_OK), -1);
    check_all(pl, 0, end);
    cs_plog_close(pl);
    assert_int_equal(access(marker, F_OK), 0);
    /* Without the marker (a crash), the same damage is a torn tail: cut. */
    memcpy(bad, img, len);
    bad[len - 2] ^= 0x04;
    spill(f->path, bad, len);
    pl = open_log(f->path, CS_FSYNC_NEVER, 0);
    assert_int_equal(cs_plog_end(pl), prev_end);
    cs_plog_close(pl);
    free(bad);
    free(img);
}

static void test_bitflip_in_earlier_batch(void **state)
{
    struct fx *f = *state;
    /* Five batches of 4 records, each acknowledged after its fsync;
     * remember where each starts. */
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    struct batch_pos bp[6];
    for (int b = 0; b < 5; b++) {
        bp[b].pos = file_size(f->path);
        bp[b].base = b * 4;
        append_gen(pl, b * 4, 4);
    }
    bp[5].pos = file_size(f->path);
    bp[5].base = 20;
    cs_plog_close(pl);
    size_t len;
    uint8_t *img = slurp(f->path, &len);
    uint8_t *bad = malloc(len);
    assert_non_null(bad);

    /* Flip bits in batch 2 (of 0..4): magic, crc, total_len, count, base,
     * append time, durable offset, a record header and record bytes. The
     * later batches say batch 2 was durable (their durable_offset), so this
     * is damage inside acknowledged data: never cut, a named error. */
    const int victim = 2;
    int64_t p = bp[victim].pos, blen = bp[victim + 1].pos - p;
    int64_t offs[] = {0, 3, 4, 7, 8, 11, 12, 16, 23, 24, 31, 32, 39, 40, 44, 52, blen / 2, blen - 1};
    char want[64];
    snprintf(want, sizeof want, "position %lld:", (long long)p);
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        for (int bitn = 0; bitn < 8; bitn += 3) {
            memcpy(bad, img, len);
            bad[p + offs[i]] ^= (uint8_t)(1u << bitn);
            spill(f->path, bad, len);
            char err[512] = "";
            cs_topic *t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, g_segment_bytes, err, sizeof err);
            if (t) fail_msg("byte %lld bit %d of batch %d: opened (end %lld) instead of a named error", (long long)offs[i],
                            bitn, victim, (long long)cs_topic_end(t, 0));
            if (!strstr(err, f->path) || !strstr(err, want) || !strstr(err, "acknowledged"))
                fail_msg("byte %lld bit %d: error does not name file and position: %s", (long long)offs[i], bitn, err);
            /* Nothing was cut. */
            assert_int_equal(file_size(f->path), (int64_t)len);
        }
    }
    /* A flip in the very first batch: the same. */
    memcpy(bad, img, len);
    bad[44] ^= 0x10;
    spill(f->path, bad, len);
    char err[512] = "";
    assert_null(open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, g_segment_bytes, err, sizeof err));
    assert_non_null(strstr(err, "position 0:"));
    /* Restored, it opens whole. */
    spill(f->path, img, len);
    pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    check_all(pl, 0, 20);
    cs_plog_close(pl);
    free(bad);
    free(img);
}

static void test_garbage_tail(void **state)
{
    struct fx *f = *state;
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    append_gen(pl, 0, 5);
    cs_plog_close(pl);
    size_t len;
    uint8_t *img = slurp(f->path, &len);
    /* A zero-filled tail (preallocated or unwritten pages) and a copy of a
     * valid batch with a stale base offset are both cut. */
    size_t tails[] = {1, 31, 32, 48, 4096};
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        uint8_t *z = calloc(1, len + tails[i]);
        assert_non_null(z);
        memcpy(z, img, len);
        spill(f->path, z, len + tails[i]);
        free(z);
        pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
        assert_int_equal(cs_plog_end(pl), 5);
        assert_int_equal(cs_plog_truncated_bytes(pl), (int64_t)tails[i]);
        check_all(pl, 0, 5);
        cs_plog_close(pl);
    }
    /* (The copy says "durable up to 0": no claim on offsets >= 5.) */
    uint8_t *dup = malloc(2 * len);
    assert_non_null(dup);
    memcpy(dup, img, len);
    memcpy(dup + len, img, len); /* valid CRC, but base_offset 0 instead of 5 */
    spill(f->path, dup, 2 * len);
    pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    assert_int_equal(cs_plog_end(pl), 5);
    assert_int_equal(cs_plog_truncated_bytes(pl), (int64_t)len);
    check_all(pl, 0, 5);
    cs_plog_close(pl);
    free(dup);
    free(img);
}

/* ---- the on-disk format, from plog.h, encoded independently */

static void put32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64le(const uint8_t *p) { return (uint64_t)get32le(p) | (uint64_t)get32le(p + 4) << 32; }

enum craft { CRAFT_OK, CRAFT_SLACK, CRAFT_SHORT_REC, CRAFT_KEY_TOO_LONG, CRAFT_COUNT_HIGH, CRAFT_COUNT_LOW,
             CRAFT_COUNT_ZERO, CRAFT_BAD_MAGIC, CRAFT_DURABLE_AHEAD };

/* Encode a batch of the generated records [base, base+count) with a valid
 * CRC, damaged as asked in a way only the structural checks can see. */
static size_t craft_batch(uint8_t *out, int64_t base, uint32_t count, int64_t append_us, enum craft how)
{
    size_t pos = 40;
    for (uint32_t i = 0; i < count; i++) {
        struct genrec g;
        gen_fill(&g, base + (int64_t)i);
        uint32_t rl = (uint32_t)(12 + g.rec.key_len + g.rec.value_len);
        uint32_t kl = (uint32_t)g.rec.key_len;
        if (i == count - 1 && how == CRAFT_SHORT_REC) {
            /* rec_len 8 (< 12): just a timestamp, and the batch ends there. */
            put32le(out + pos, 8);
            put64le(out + pos + 4, (uint64_t)g.rec.ts_us);
            pos += 12;
            break;
        }
        if (i == count - 1 && how == CRAFT_KEY_TOO_LONG) kl = rl - 11;
        put32le(out + pos, rl);
        put64le(out + pos + 4, (uint64_t)g.rec.ts_us);
        put32le(out + pos + 12, kl);
        memcpy(out + pos + 16, g.rec.key, g.rec.key_len);
        memcpy(out + pos + 16 + g.rec.key_len, g.rec.value, g.rec.value_len);
        pos += 16 + g.rec.key_len + g.rec.value_len;
    }
    if (how == CRAFT_SLACK) memset(out + pos, 0, 8), pos += 8;
    uint32_t n = how == CRAFT_COUNT_HIGH ? count + 1 : how == CRAFT_COUNT_LOW ? count - 1
                 : how == CRAFT_COUNT_ZERO ? 0 : count;
    put32le(out, how == CRAFT_BAD_MAGIC ? 0x31425343u : 0x32425343u);
    put32le(out + 8, (uint32_t)pos);
    put32le(out + 12, n);
    put64le(out + 16, (uint64_t)base);
    put64le(out + 24, (uint64_t)append_us);
    put64le(out + 32, how == CRAFT_DURABLE_AHEAD ? (uint64_t)base + 1 : (uint64_t)base);
    put32le(out + 4, cs_crc32c(0, out + 8, pos - 8));
    return pos;
}

static void test_on_disk_format(void **state)
{
    struct fx *f = *state;
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    int64_t t0 = cs_now_us();
    append_gen(pl, 0, 2);
    append_gen(pl, 2, 3);
    int64_t t1 = cs_now_us();
    cs_plog_close(pl);
    size_t len;
    uint8_t *img = slurp(f->path, &len);

    /* What the writer produced decodes by the documented layout. */
    size_t pos = 0;
    int64_t next = 0, prev_time = 0;
    while (pos < len) {
        assert_true(len - pos >= 56);
        const uint8_t *b = img + pos;
        uint32_t total = get32le(b + 8), count = get32le(b + 12);
        assert_int_equal(get32le(b), 0x32425343u);
        assert_true(total >= 56 && pos + total <= len);
        assert_int_equal(get32le(b + 4), cs_crc32c(0, b + 8, total - 8));
        assert_int_equal((int64_t)get64le(b + 16), next);
        int64_t at = (int64_t)get64le(b + 24);
        assert_true(at >= t0 && at <= t1 && at >= prev_time);
        prev_time = at;
        /* fsync=always: everything before this batch was durable. */
        assert_int_equal((int64_t)get64le(b + 32), next);
        size_t rp = 40;
        for (uint32_t i = 0; i < count; i++) {
            struct genrec g;
            gen_fill(&g, next + (int64_t)i);
            uint32_t rl = get32le(b + rp), kl = get32le(b + rp + 12);
            assert_int_equal(rl, 12 + g.rec.key_len + g.rec.value_len);
            assert_int_equal((int64_t)get64le(b + rp + 4), g.rec.ts_us);
            assert_int_equal(kl, g.rec.key_len);
            assert_memory_equal(b + rp + 16, g.rec.key, kl);
            if (g.rec.value_len) assert_memory_equal(b + rp + 16 + kl, g.rec.value, g.rec.value_len);
            rp += 4 + rl;
        }
        assert_int_equal(rp, total);
        next += count;
        pos += total;
    }
    assert_int_equal(next, 5);

    /* A batch encoded here from the spec is accepted and read back. */
    uint8_t *buf = malloc(len + 2 * 4096);
    assert_non_null(buf);
    memcpy(buf, img, len);
    int64_t tc = t1 + 1000;
    size_t good = craft_batch(buf + len, 5, 4, tc, CRAFT_OK);
    spill(f->path, buf, len + good);
    pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    assert_int_equal(cs_plog_end(pl), 9);
    assert_int_equal(cs_plog_truncated_bytes(pl), 0);
    check_all(pl, 0, 9);
    struct check c = {.next = 5, .stop_after = -1, .min_append = tc, .max_append = tc};
    assert_int_equal(cs_plog_read(pl, 5, 10, check_cb, &c), 4);
    append_gen(pl, 9, 1);
    cs_plog_close(pl);

    /* Batches with a valid CRC but a broken structure are cut. */
    static const enum craft bad[] = {CRAFT_SLACK,     CRAFT_SHORT_REC,  CRAFT_KEY_TOO_LONG, CRAFT_COUNT_HIGH,
                                     CRAFT_COUNT_LOW, CRAFT_COUNT_ZERO, CRAFT_BAD_MAGIC,    CRAFT_DURABLE_AHEAD};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t blen = craft_batch(buf + len + good, 9, 6, tc, bad[i]); /* the largest batch */
        spill(f->path, buf, len + good + blen);
        pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
        if (cs_plog_end(pl) != 9 || cs_plog_truncated_bytes(pl) != (int64_t)blen)
            fail_msg("crafted damage %d: end %lld, truncated %lld of %zu", (int)bad[i], (long long)cs_plog_end(pl),
                     (long long)cs_plog_truncated_bytes(pl), blen);
        check_all(pl, 0, 9);
        cs_plog_close(pl);
    }
    /* A base offset that skips ahead is cut too, and so is an append time
     * that goes back. */
    size_t blen = craft_batch(buf + len + good, 10, 2, tc, CRAFT_OK);
    spill(f->path, buf, len + good + blen);
    pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    assert_int_equal(cs_plog_end(pl), 9);
    assert_int_equal(cs_plog_truncated_bytes(pl), (int64_t)blen);
    cs_plog_close(pl);
    blen = craft_batch(buf + len + good, 9, 2, tc - 1, CRAFT_OK);
    spill(f->path, buf, len + good + blen);
    pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    assert_int_equal(cs_plog_end(pl), 9);
    assert_int_equal(cs_plog_truncated_bytes(pl), (int64_t)blen);
    cs_plog_close(pl);
    free(buf);
    free(img);
}

static void test_oversized_batch_rejected(void **state)
{
    struct fx *f = *state;
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    append_gen(pl, 0, 2);
    /* The size check happens before any byte is read or written. */
    cs_rec r = {.key = "k", .key_len = 1, .value = "v", .value_len = CS_PLOG_MAX_BATCH};
    errno = 0;
    assert_int_equal(cs_plog_append(pl, &r, 1), -1);
    assert_int_equal(errno, EMSGSIZE);
    assert_int_equal(cs_plog_end(pl), 2);
    append_gen(pl, 2, 1);
    check_all(pl, 0, 3);
    cs_plog_close(pl);
}

/* ---- concurrency */

#define NTHREADS 4
#define BATCHES_PER_THREAD 150

struct writer {
    cs_plog *pl;
    int      id;
    int64_t *offsets;   /* per (batch, index) */
    int      nrecs;
};

/* Record content self-describes: "w<id>:<seq>:" + filler derived from both. */
static size_t writer_value(int id, int seq, char *out)
{
    int n = sprintf(out, "w%d:%d:", id, seq);
    size_t fill = (size_t)((id * 131 + seq * 7) % 90);
    for (size_t i = 0; i < fill; i++) out[n + (int)i] = (char)('a' + (id + seq + (int)i) % 26);
    return (size_t)n + fill;
}

static int batch_size(int id, int b) { return (id + b) % 3 + 1; }

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    char vals[3][128], keys[3][16];
    int seq = 0;
    for (int b = 0; b < BATCHES_PER_THREAD; b++) {
        int n = batch_size(w->id, b);
        cs_rec recs[3];
        for (int i = 0; i < n; i++) {
            memset(&recs[i], 0, sizeof recs[i]);
            recs[i].ts_us = w->id * 1000000 + seq + i;
            recs[i].key_len = (size_t)snprintf(keys[i], sizeof keys[i], "t%d", w->id);
            recs[i].key = keys[i];
            recs[i].value_len = writer_value(w->id, seq + i, vals[i]);
            recs[i].value = vals[i];
        }
        if (cs_plog_append(w->pl, recs, (size_t)n) != 0) return (void *)1;
        /* Durable (fsync=always) means visible: end covers this batch. */
        if (cs_plog_end(w->pl) < recs[n - 1].offset + 1) return (void *)2;
        for (int i = 0; i < n; i++) {
            if (i > 0 && recs[i].offset != recs[i - 1].offset + 1) return (void *)3;
            w->offsets[seq + i] = recs[i].offset;
        }
        seq += n;
    }
    w->nrecs = seq;
    return NULL;
}

/* A concurrent reader follows the log while writers append; it must only
 * ever see complete, correct records at dense offsets. */
struct follower {
    cs_plog *pl;
    int64_t  total;
    int64_t  next;
    int      bad;
    int      writers_done; /* atomic */
};

/* Parse "w<id>:<seq>:" from a (not NUL-terminated) record value. */
static int parse_value(const cs_rec *r, int *id, int *seq)
{
    char tmp[32];
    size_t n = r->value_len < sizeof tmp - 1 ? r->value_len : sizeof tmp - 1;
    memcpy(tmp, r->value, n);
    tmp[n] = '\0';
    int used = 0;
    if (sscanf(tmp, "w%d:%d:%n", id, seq, &used) != 2 || used == 0) return -1;
    return 0;
}

static int follow_cb(const cs_rec *r, void *arg)
{
    struct follower *fo = arg;
    int id, seq;
    char want[128];
    if (r->offset != fo->next) fo->bad = 1;
    if (parse_value(r, &id, &seq) != 0 || id < 0 || id >= NTHREADS || seq < 0) {
        fo->bad = 2;
    } else {
        size_t wl = writer_value(id, seq, want);
        if (wl != r->value_len || memcmp(want, r->value, wl) != 0) fo->bad = 3;
        if (r->ts_us != id * 1000000 + seq) fo->bad = 4;
    }
    fo->next++;
    return fo->bad != 0;
}

static void *follower_main(void *arg)
{
    struct follower *fo = arg;
    while (fo->next < fo->total && !fo->bad) {
        /* Read the flag before reading: when it is set, this read sees every
         * append, so an empty read then means the writers stopped short. */
        int done = __atomic_load_n(&fo->writers_done, __ATOMIC_ACQUIRE);
        int n = cs_plog_read(fo->pl, fo->next, 64, follow_cb, fo);
        if (n < 0) fo->bad = 5;
        /* The durable end only grows, so a record delivered at or past the
         * end measured after the read was not durable when read. */
        if (n > 0 && fo->next > cs_plog_end(fo->pl)) fo->bad = 6;
        if (n == 0) {
            if (done) break;
            sched_yield();
        }
    }
    return NULL;
}

struct owner {
    int16_t thread;
    int32_t seq;
};

static void verify_concurrent(cs_plog *pl, struct writer *w, int64_t total)
{
    assert_int_equal(cs_plog_end(pl), total);
    /* Offsets are exactly 0..total-1, each owned by one (thread, seq). */
    struct owner *own = calloc((size_t)total, sizeof *own);
    assert_non_null(own);
    for (int64_t i = 0; i < total; i++) own[i].thread = -1;
    for (int t = 0; t < NTHREADS; t++) {
        int64_t prev = -1;
        for (int s = 0; s < w[t].nrecs; s++) {
            int64_t o = w[t].offsets[s];
            assert_true(o >= 0 && o < total);
            if (own[o].thread != -1) fail_msg("offset %lld given twice", (long long)o);
            own[o] = (struct owner){(int16_t)t, s};
            assert_true(o > prev); /* a thread's appends are ordered */
            prev = o;
        }
    }
    for (int64_t i = 0; i < total; i++)
        if (own[i].thread == -1) fail_msg("offset %lld never given", (long long)i);
    /* Every record reads back with its exact bytes. */
    struct follower fo = {.pl = pl, .total = total};
    assert_int_equal(cs_plog_read(pl, 0, (size_t)-1, follow_cb, &fo), total);
    assert_int_equal(fo.bad, 0);
    free(own);
}

/* Reads every record and checks it is the one its writer was told it got. */
struct owned_check {
    struct writer *w;
    int64_t        n;
    int            bad;
};

static int owned_cb(const cs_rec *r, void *arg)
{
    struct owned_check *oc = arg;
    int id, seq;
    if (parse_value(r, &id, &seq) != 0 || id < 0 || id >= NTHREADS || seq < 0 ||
        seq >= oc->w[id].nrecs || oc->w[id].offsets[seq] != r->offset)
        oc->bad = 1;
    oc->n++;
    return 0;
}

static void test_concurrent_appends_group_commit(void **state)
{
    struct fx *f = *state;
    cs_plog *pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    struct writer w[NTHREADS];
    pthread_t th[NTHREADS], fth;
    int64_t total = 0;
    for (int t = 0; t < NTHREADS; t++) {
        w[t] = (struct writer){.pl = pl, .id = t};
        w[t].offsets = calloc(BATCHES_PER_THREAD * 3, sizeof *w[t].offsets);
        assert_non_null(w[t].offsets);
        for (int b = 0; b < BATCHES_PER_THREAD; b++) total += batch_size(t, b);
    }
    struct follower fo = {.pl = pl, .total = total};
    assert_int_equal(pthread_create(&fth, NULL, follower_main, &fo), 0);
    for (int t = 0; t < NTHREADS; t++) assert_int_equal(pthread_create(&th[t], NULL, writer_main, &w[t]), 0);
    intptr_t wfail[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        void *rv;
        assert_int_equal(pthread_join(th[t], &rv), 0);
        wfail[t] = (intptr_t)rv;
    }
    __atomic_store_n(&fo.writers_done, 1, __ATOMIC_RELEASE);
    assert_int_equal(pthread_join(fth, NULL), 0);
    for (int t = 0; t < NTHREADS; t++)
        if (wfail[t]) fail_msg("writer %d failed with code %d", t, (int)wfail[t]);
    if (fo.bad) fail_msg("concurrent reader saw a bad record (code %d) at offset %lld", fo.bad, (long long)fo.next - 1);
    assert_int_equal(fo.next, total);

    verify_concurrent(pl, w, total);
    struct owned_check oc = {.w = w};
    assert_int_equal(cs_plog_read(pl, 0, (size_t)-1, owned_cb, &oc), total);
    assert_int_equal(oc.bad, 0);
    cs_plog_close(pl);

    /* And after a reopen. */
    pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    assert_int_equal(cs_plog_truncated_bytes(pl), 0);
    verify_concurrent(pl, w, total);
    oc = (struct owned_check){.w = w};
    assert_int_equal(cs_plog_read(pl, 0, (size_t)-1, owned_cb, &oc), total);
    assert_int_equal(oc.bad, 0);
    cs_plog_close(pl);
    for (int t = 0; t < NTHREADS; t++) free(w[t].offsets);
}

/* ---- policies */

static void policy_round_trip(const char *path, int policy, int interval_ms)
{
    cs_plog *pl = open_log(path, policy, interval_ms);
    int64_t next = 0;
    for (int b = 0; b < 60; b++) {
        append_gen(pl, next, (size_t)(b % 5) + 1);
        next += b % 5 + 1;
        /* Weaker policies make a batch visible at once. */
        assert_int_equal(cs_plog_end(pl), next);
    }
    check_all(pl, 0, next);
    assert_int_equal(cs_plog_sync(pl), 0);
    assert_int_equal(cs_plog_end(pl), next);
    append_gen(pl, next, 2);
    next += 2;
    cs_plog_close(pl); /* syncs */

    pl = open_log(path, policy, interval_ms);
    assert_int_equal(cs_plog_end(pl), next);
    assert_int_equal(cs_plog_truncated_bytes(pl), 0);
    check_all(pl, 0, next);
    struct check c = {.next = 17, .stop_after = -1};
    assert_int_equal(cs_plog_read(pl, 17, 9, check_cb, &c), 9);
    cs_plog_close(pl);
}

static void test_policy_never(void **state)
{
    struct fx *f = *state;
    policy_round_trip(f->path, CS_FSYNC_NEVER, 0);
}

static void test_policy_interval(void **state)
{
    struct fx *f = *state;
    /* 1 ms: appends regularly trigger the interval sync path. */
    policy_round_trip(f->path, CS_FSYNC_INTERVAL, 1);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->tdir);
    assert_int_equal(system(cmd), 0);
    policy_round_trip(f->path, CS_FSYNC_INTERVAL, 60000);
}

/* ---- segments, indexes, metadata, groups, retention, bus */

#define SMALL_SEG 4096

/* Append nb batches of 1..4 generated records to partition p of t. */
static int64_t fill_topic(cs_topic *t, int part, int64_t next, int nb)
{
    for (int b = 0; b < nb; b++) {
        size_t count = (size_t)(b % 4) + 1;
        struct genrec g[4];
        cs_rec recs[4];
        for (size_t i = 0; i < count; i++) {
            gen_fill(&g[i], next + (int64_t)i);
            recs[i] = g[i].rec;
        }
        assert_int_equal(cs_topic_append(t, part, recs, count), 0);
        assert_int_equal(recs[0].offset, next);
        next += (int64_t)count;
    }
    return next;
}

static void check_topic(cs_topic *t, int part, int64_t from, int64_t end)
{
    struct check c = {.next = from, .stop_after = -1};
    int n = cs_topic_read(t, part, from, (size_t)(end - from), check_cb, &c);
    if (n != end - from) fail_msg("partition %d: read %d from %lld, want %lld (%s)", part, n, (long long)from,
                                  (long long)(end - from), cs_topic_errmsg(t));
    assert_int_equal(c.next, end);
}

static int count_files(const char *dir, const char *ext)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '\\.%s$'", dir, ext);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static void seg_name(const struct fx *f, int part, int64_t base, const char *ext, char *out, size_t len)
{
    snprintf(out, len, "%s/p%05d/%020lld.%s", f->tdir, part, (long long)base, ext);
}

/* The bases of partition part's segments, from the directory. */
static int list_bases(const struct fx *f, int part, int64_t *bases, int max)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s/p%05d | grep '\\.seg$' | sort", f->tdir, part);
    FILE *p = popen(cmd, "r");
    int n = 0;
    long long b;
    while (p && n < max && fscanf(p, "%lld.seg", &b) == 1) bases[n++] = b;
    if (p) pclose(p);
    return n;
}

static void test_segment_roll(void **state)
{
    struct fx *f = *state;
    char err[512] = "", pdir[200];
    snprintf(pdir, sizeof pdir, "%s/p00000", f->tdir);
    cs_topic *t = open_topic(f->tdir, 2, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    int64_t end = fill_topic(t, 0, 0, 300);
    int64_t end1 = fill_topic(t, 1, 0, 7);
    cs_topic_stats st;
    cs_topic_get_stats(t, 0, &st);
    assert_true(st.segments >= 10);
    /* Sealed segments have an index; the active one not yet. */
    assert_int_equal(count_files(pdir, "seg"), st.segments);
    assert_int_equal(count_files(pdir, "idx"), st.segments - 1);
    check_topic(t, 0, 0, end);
    check_topic(t, 1, 0, end1);
    /* Reads from every offset, across segment boundaries. */
    for (int64_t from = 0; from < end; from += 7) {
        struct check c = {.next = from, .stop_after = -1};
        int64_t want = end - from < 40 ? end - from : 40;
        assert_int_equal(cs_topic_read(t, 0, from, 40, check_cb, &c), want);
    }
    /* No segment is much above the limit (one batch at most). */
    int64_t bases[256];
    int nb = list_bases(f, 0, bases, 256);
    assert_int_equal(nb, st.segments);
    for (int i = 0; i + 1 < nb; i++) {
        char path[256];
        seg_name(f, 0, bases[i], "seg", path, sizeof path);
        assert_true(file_size(path) <= SMALL_SEG);
        assert_true(file_size(path) > SMALL_SEG / 2);
    }
    cs_topic_close(t);

    /* Reopen: same content; offsets continue. */
    t = open_topic(f->tdir, 2, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    cs_topic_get_stats(t, 0, &st);
    assert_int_equal(st.truncated_bytes, 0);
    assert_int_equal(st.indexes_rebuilt, 0);
    assert_int_equal(cs_topic_end(t, 0), end);
    assert_int_equal(cs_topic_end(t, 1), end1);
    end = fill_topic(t, 0, end, 20);
    check_topic(t, 0, 0, end);
    check_topic(t, 1, 0, end1);
    cs_topic_close(t);

    /* A different partition count is refused, with both counts named. */
    assert_null(open_topic(f->tdir, 3, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err));
    assert_non_null(strstr(err, "2 partitions but 3"));
    /* Metadata lost: rewritten from the two partition directories. */
    char meta[200];
    snprintf(meta, sizeof meta, "%s/meta", f->tdir);
    unlink(meta);
    assert_null(open_topic(f->tdir, 4, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err));
    t = open_topic(f->tdir, 2, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    check_topic(t, 0, 0, end);
    cs_topic_close(t);
}

struct times {
    int64_t off[4096], at[4096];
    int     n;
};

static int times_cb(const cs_rec *r, void *arg)
{
    struct times *tm = arg;
    if (tm->n < 4096) tm->off[tm->n] = r->offset, tm->at[tm->n] = r->append_us, tm->n++;
    return 0;
}

static void test_time_index(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    cs_topic *t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    int64_t t_before = cs_now_us() - 1;
    assert_int_equal(cs_topic_offset_for_time(t, 0, t_before), 0); /* empty: the end */
    int64_t end = 0;
    for (int k = 0; k < 60; k++) {
        end = fill_topic(t, 0, end, 3);
        /* Let the clock move so batches get distinct append times. */
        int64_t t0 = cs_now_us();
        while (cs_now_us() == t0) {
        }
    }
    struct times *tm = calloc(1, sizeof *tm);
    assert_non_null(tm);
    for (int pass = 0; pass < 2; pass++) {
        tm->n = 0;
        assert_int_equal(cs_topic_read(t, 0, 0, (size_t)-1, times_cb, tm), end);
        for (int i = 1; i < tm->n; i++) assert_true(tm->at[i] >= tm->at[i - 1]);
        /* For every record's append time, and one microsecond after it:
         * the first offset with append time >= ts. */
        for (int i = 0; i < tm->n; i++) {
            for (int d = 0; d < 2; d++) {
                int64_t ts = tm->at[i] + d;
                int64_t want = end;
                for (int j = 0; j < tm->n; j++)
                    if (tm->at[j] >= ts) {
                        want = tm->off[j];
                        break;
                    }
                int64_t got = cs_topic_offset_for_time(t, 0, ts);
                if (got != want) fail_msg("pass %d: time %lld: offset %lld, want %lld", pass, (long long)ts,
                                          (long long)got, (long long)want);
            }
        }
        assert_int_equal(cs_topic_offset_for_time(t, 0, t_before), 0);
        assert_int_equal(cs_topic_offset_for_time(t, 0, tm->at[tm->n - 1] + 1), end);
        /* Again after a reopen (sealed indexes read from disk). */
        cs_topic_close(t);
        t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
        assert_non_null(t);
    }
    free(tm);
    cs_topic_close(t);
}

static void test_index_rebuild_and_sealed_damage(void **state)
{
    struct fx *f = *state;
    char err[512] = "", path[256], ipath[256];
    cs_topic *t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    int64_t end = fill_topic(t, 0, 0, 120);
    cs_topic_close(t);
    int64_t bases[256];
    int nb = list_bases(f, 0, bases, 256);
    assert_true(nb >= 4);

    /* 1. A missing index and a damaged one: rebuilt at open, data intact. */
    seg_name(f, 0, bases[1], "idx", ipath, sizeof ipath);
    unlink(ipath);
    seg_name(f, 0, bases[2], "idx", ipath, sizeof ipath);
    size_t ilen;
    uint8_t *ib = slurp(ipath, &ilen);
    ib[20] ^= 1; /* header: caught at open */
    spill(ipath, ib, ilen);
    ib[20] ^= 1;
    t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    cs_topic_stats st;
    cs_topic_get_stats(t, 0, &st);
    assert_int_equal(st.indexes_rebuilt, 2);
    check_topic(t, 0, 0, end);
    cs_topic_close(t);
    /* An entry flipped (only the entries CRC sees it): rebuilt on first read. */
    ib[ilen - 3] ^= 0x40;
    spill(ipath, ib, ilen);
    free(ib);
    t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    check_topic(t, 0, 0, end);
    cs_topic_get_stats(t, 0, &st);
    assert_int_equal(st.indexes_rebuilt, 1);
    cs_topic_close(t);

    /* 2. A flipped byte in a sealed segment: open stays fast (no scan) and
     * succeeds; reading it is a named error (file, position), never data. */
    seg_name(f, 0, bases[1], "seg", path, sizeof path);
    size_t slen;
    uint8_t *sb = slurp(path, &slen);
    sb[slen / 2] ^= 0x08;
    spill(path, sb, slen);
    t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    int64_t n = 0;
    assert_int_equal(cs_topic_read(t, 0, bases[1], (size_t)-1, count_cb, &n), -1);
    const char *em = cs_topic_errmsg(t);
    if (!strstr(em, path) || !strstr(em, "position ") || !strstr(em, "sealed"))
        fail_msg("error does not name the sealed segment: %s", em);
    /* Records before the damaged batch were delivered and are correct; the
     * segments before and after read fine. */
    check_topic(t, 0, 0, bases[1]);
    check_topic(t, 0, bases[2], end);
    cs_topic_get_stats(t, 0, &st);
    assert_true(st.read_errors >= 1);
    cs_topic_close(t);
    sb[slen / 2] ^= 0x08;

    /* 3. A sealed segment cut short: open stays fast; the read names it. */
    spill(path, sb, slen - 10);
    t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    if (t) {
        n = 0;
        assert_int_equal(cs_topic_read(t, 0, 0, (size_t)-1, count_cb, &n), -1);
        assert_non_null(strstr(cs_topic_errmsg(t), path));
        cs_topic_close(t);
    } else {
        assert_non_null(strstr(err, path)); /* the size check at open caught it */
    }
    spill(path, sb, slen);
    free(sb);

    /* 4. A missing middle segment: a clear error naming the offsets. */
    char moved[300];
    snprintf(moved, sizeof moved, "%s/moved.seg.bak", f->dir);
    assert_int_equal(rename(path, moved), 0);
    assert_null(open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err));
    char want[100];
    snprintf(want, sizeof want, "offsets %lld..%lld are missing", (long long)bases[1], (long long)bases[2] - 1);
    if (!strstr(err, want)) fail_msg("missing segment: %s", err);
    assert_int_equal(rename(moved, path), 0);

    /* 5. The active segment missing while its predecessor is sealed. */
    seg_name(f, 0, bases[nb - 1], "seg", path, sizeof path);
    assert_int_equal(rename(path, moved), 0);
    assert_null(open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err));
    assert_non_null(strstr(err, "is missing"));
    assert_int_equal(rename(moved, path), 0);

    /* 6. Stray temp files are removed; everything reads back. */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s/p00000/00000000000000000000.idx.tmp", f->tdir);
    spill(tmp, (const uint8_t *)"partial", 7);
    snprintf(tmp, sizeof tmp, "%s/meta.tmp", f->tdir);
    spill(tmp, (const uint8_t *)"partial", 7);
    t = open_topic(f->tdir, 1, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    cs_topic_get_stats(t, 0, &st);
    assert_int_equal(st.temp_removed, 1);
    assert_int_equal(access(tmp, F_OK), -1);
    check_topic(t, 0, 0, end);
    cs_topic_close(t);
}

static void test_consumer_groups(void **state)
{
    struct fx *f = *state;
    char err[512] = "", path[256];
    cs_topic *t = open_topic(f->tdir, 3, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(cs_topic_group_committed(t, "pipeline", 0), -1);
    assert_int_equal(cs_topic_group_register(t, "pipeline"), 0);
    for (int p = 0; p < 3; p++) assert_int_equal(cs_topic_group_committed(t, "pipeline", p), 0);
    assert_int_equal(cs_topic_group_commit(t, "warehouse", 2, 77), 0); /* registers */
    assert_int_equal(cs_topic_group_commit(t, "pipeline", 1, 10), 0);
    assert_int_equal(cs_topic_group_commit(t, "pipeline", 1, 11), 0);
    assert_int_equal(cs_topic_group_commit(t, "pipeline", 0, 5), 0);
    assert_int_equal(cs_topic_group_committed(t, "pipeline", 1), 11);
    assert_int_equal(cs_topic_group_committed(t, "warehouse", 2), 77);
    assert_int_equal(cs_topic_group_commit(t, "bad/name", 0, 1), -1);
    assert_int_equal(cs_topic_group_commit(t, "", 0, 1), -1);
    assert_int_equal(cs_topic_group_commit(t, "pipeline", 3, 1), -1);
    assert_int_equal(cs_topic_group_commit(t, "pipeline", 0, -1), -1);
    cs_topic_close(t);

    t = open_topic(f->tdir, 3, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(cs_topic_group_committed(t, "pipeline", 0), 5);
    assert_int_equal(cs_topic_group_committed(t, "pipeline", 1), 11);
    assert_int_equal(cs_topic_group_committed(t, "warehouse", 2), 77);
    cs_topic_close(t);

    /* Two generations: the newest slot torn (any byte) falls back to the
     * previous commit; the older slot damaged changes nothing. */
    snprintf(path, sizeof path, "%s/groups/pipeline.off", f->tdir);
    size_t len;
    uint8_t *img = slurp(path, &len);
    assert_int_equal(len, 1024); /* 2 slots of 512 */
    /* Generation 4 (the last commit, partition 0 = 5) lives in slot 0. */
    assert_int_equal(get64le(img + 8), 4);
    for (size_t at = 0; at < 32 + 24; at += 5) {
        uint8_t *b = malloc(len);
        assert_non_null(b);
        memcpy(b, img, len);
        b[at] ^= 0x21;
        spill(path, b, len);
        t = open_topic(f->tdir, 3, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
        assert_non_null(t);
        assert_int_equal(cs_topic_group_committed(t, "pipeline", 0), 0); /* generation 3 */
        assert_int_equal(cs_topic_group_committed(t, "pipeline", 1), 11);
        /* The next commit goes on from there and is durable. */
        assert_int_equal(cs_topic_group_commit(t, "pipeline", 2, 9), 0);
        cs_topic_close(t);
        t = open_topic(f->tdir, 3, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
        assert_int_equal(cs_topic_group_committed(t, "pipeline", 2), 9);
        cs_topic_close(t);
        memcpy(b, img, len);
        b[512 + at] ^= 0x21;
        spill(path, b, len);
        t = open_topic(f->tdir, 3, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
        assert_int_equal(cs_topic_group_committed(t, "pipeline", 0), 5);
        cs_topic_close(t);
        free(b);
    }
    /* Both slots damaged: a named error is logged and the group restarts
     * from the start (nothing skipped), still registered. */
    memset(img + 4, 0xee, 8);
    memset(img + 512 + 4, 0xee, 8);
    spill(path, img, len);
    t = open_topic(f->tdir, 3, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(cs_topic_group_committed(t, "pipeline", 1), 0);
    assert_non_null(strstr(cs_topic_errmsg(t), "pipeline.off"));
    cs_topic_close(t);
    /* The offsets file missing: the group is simply not registered. */
    unlink(path);
    t = open_topic(f->tdir, 3, CS_FSYNC_ALWAYS, 0, SMALL_SEG, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(cs_topic_group_committed(t, "pipeline", 1), -1);
    assert_int_equal(cs_topic_group_committed(t, "warehouse", 2), 77);
    cs_topic_close(t);
    free(img);
}

static void test_retention(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.partitions = 1;
    o.segment_bytes = SMALL_SEG;
    o.index_interval = 256;
    o.retention_ms = 60 * 1000;
    o.retention_bytes = 0;
    cs_topic *t = cs_topic_open(f->tdir, &o, err, sizeof err);
    assert_non_null(t);
    int64_t end = fill_topic(t, 0, 0, 150);
    cs_topic_stats st;
    cs_topic_get_stats(t, 0, &st);
    int64_t nseg = st.segments;
    assert_true(nseg >= 5);
    /* Young segments stay. */
    assert_int_equal(cs_topic_retain(t, cs_now_us()), 0);
    /* An hour later everything sealed is too old: with no registered
     * group, every sealed segment goes; the active one stays. */
    int64_t later = cs_now_us() + 3600LL * 1000000;
    cs_topic_group_register(t, "pipeline");
    cs_topic_group_commit(t, "pipeline", 0, 30);
    /* Only segments entirely below the group's position go. */
    int k = cs_topic_retain(t, later);
    assert_true(k >= 1);
    int64_t start = cs_topic_start(t, 0);
    assert_true(start <= 30 && start > 0);
    check_topic(t, 0, start, end);
    /* Reading below the start starts at the start. */
    struct check c = {.next = start, .stop_after = -1};
    assert_int_equal(cs_topic_read(t, 0, 0, 5, check_cb, &c), 5);
    assert_int_equal(cs_topic_offset_for_time(t, 0, 0), start);
    cs_topic_group_commit(t, "pipeline", 0, end);
    assert_int_equal(cs_topic_retain(t, later), nseg - 1 - k);
    cs_topic_get_stats(t, 0, &st);
    assert_int_equal(st.segments, 1);
    assert_int_equal(st.lost_events, 0);
    cs_topic_close(t);
    t = cs_topic_open(f->tdir, &o, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(cs_topic_end(t, 0), end);
    check_topic(t, 0, cs_topic_start(t, 0), end);
    /* A byte budget deletes unconsumed segments: counted as lost. */
    cs_topic_close(t);
    o.retention_ms = 0;
    o.retention_bytes = 3 * SMALL_SEG;
    t = cs_topic_open(f->tdir, &o, err, sizeof err);
    assert_non_null(t);
    int64_t end2 = fill_topic(t, 0, end, 200); /* the group stays at `end` */
    cs_topic_retain(t, cs_now_us());
    cs_topic_get_stats(t, 0, &st);
    assert_true(st.bytes <= 3 * SMALL_SEG);
    assert_true(st.lost_events > 0);
    assert_int_equal(st.lost_events, cs_topic_start(t, 0) - end);
    check_topic(t, 0, cs_topic_start(t, 0), end2);
    cs_topic_close(t);
}

/* ---------------------------------------------------------- compression */

static size_t json_value(int64_t o, char *out)
{
    return (size_t)sprintf(out,
                           "{\"event_id\":\"e-%lld\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_%05lld\","
                           "\"properties\":{\"feature\":\"reports\",\"count\":%lld,\"browser\":\"firefox\"}}",
                           (long long)o, (long long)(o % 500), (long long)(o % 3));
}

static void append_json(cs_topic *t, int64_t first, int n)
{
    char vals[10][200];
    cs_rec recs[10];
    for (int i = 0; i < n; i++) {
        memset(&recs[i], 0, sizeof recs[i]);
        recs[i].key = "acc";
        recs[i].key_len = 3;
        recs[i].value = vals[i];
        recs[i].value_len = json_value(first + i, vals[i]);
        recs[i].ts_us = gen_ts(first + i);
    }
    assert_int_equal(cs_topic_append(t, 0, recs, (size_t)n), 0);
    assert_int_equal(recs[0].offset, first);
}

struct jcheck {
    int64_t next;
};

static int json_cb(const cs_rec *r, void *arg)
{
    struct jcheck *c = arg;
    char want[200];
    size_t n = json_value(c->next, want);
    if (r->offset != c->next || r->value_len != n || memcmp(r->value, want, n) != 0 || r->key_len != 3 ||
        memcmp(r->key, "acc", 3) != 0 || r->ts_us != gen_ts(c->next))
        fail_msg("record %lld read back wrong", (long long)c->next);
    c->next++;
    return 0;
}

static cs_topic *open_z(const char *dir, int compression)
{
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.partitions = 1;
    o.retention_ms = 0;
    o.compression = compression;
    o.compression_level = 1;
    char err[512];
    cs_topic *t = cs_topic_open(dir, &o, err, sizeof err);
    if (!t) fail_msg("open: %s", err);
    return t;
}

/* log.compression: zstd batches (segment.h "CSB3") are written when they
 * are smaller, read back exactly, mix with plain ones in one partition
 * (the setting changed between runs), and a frame that does not decompress
 * to its raw_len is a named error. */
static void test_compression(void **state)
{
    struct fx *f = *state;
    /* Random values do not shrink: the batch stays plain. */
    struct genrec g[4];
    cs_rec recs[4];
    for (int i = 0; i < 4; i++) gen_fill(&g[i], 100 + i), recs[i] = g[i].rec;
    size_t total = cs_seg_batch_size(recs, 4);
    uint8_t *b = malloc(total), *z = NULL;
    cs_seg_batch_encode(b, total, recs, 4);
    assert_int_equal(cs_seg_batch_compress(b, total, 1, &z), 0);
    free(b);

    /* JSON events do: 10 of them, compressed, checked, damaged. */
    char vals[10][200];
    cs_rec jr[10];
    for (int i = 0; i < 10; i++) {
        memset(&jr[i], 0, sizeof jr[i]);
        jr[i].value = vals[i];
        jr[i].value_len = json_value(i, vals[i]);
    }
    total = cs_seg_batch_size(jr, 10);
    b = malloc(total);
    cs_seg_batch_encode(b, total, jr, 10);
    size_t zt = cs_seg_batch_compress(b, total, 1, &z);
    assert_true(zt > 0 && zt * 2 < total);
    assert_int_equal(get32le(z), CS_SEG_ZBATCH_MAGIC);
    assert_int_equal(get32le(z + 8), zt);
    assert_int_equal(get32le(z + 40), total - CS_SEG_BATCH_HDR);
    cs_seg_batch_seal(z, 7, 1000, 0);
    cs_segbuf sb = {0};
    cs_batch_err e;
    const uint8_t *rr;
    size_t rl;
    assert_int_equal(cs_seg_batch_check(z, zt, 7, 0, &e, &sb, &rr, &rl), 1);
    assert_int_equal(rl, total - CS_SEG_BATCH_HDR);
    assert_memory_equal(rr, b + CS_SEG_BATCH_HDR, rl);
    put32le(z + 40, (uint32_t)rl + 1); /* a raw_len the frame does not fill (CRC made good) */
    cs_seg_batch_seal(z, 7, 1000, 0);
    assert_int_equal(cs_seg_batch_check(z, zt, 7, 0, &e, &sb, NULL, NULL), 0);
    assert_string_equal(e.what, "zstd_frame");
    put32le(z + 40, (uint32_t)rl);
    z[zt - 1] ^= 0xff; /* the CRC catches a flip before zstd sees it */
    assert_int_equal(cs_seg_batch_check(z, zt, 7, 0, &e, &sb, NULL, NULL), 0);
    assert_string_equal(e.what, "crc");
    cs_segbuf_free(&sb);
    free(z);
    free(b);

    /* A partition written compressed, then plain, then compressed again. */
    cs_topic *t = open_z(f->tdir, 1);
    for (int i = 0; i < 5; i++) append_json(t, i * 10, 10);
    cs_topic_close(t);
    t = open_z(f->tdir, 0);
    for (int i = 5; i < 10; i++) append_json(t, i * 10, 10);
    cs_topic_close(t);
    t = open_z(f->tdir, 1);
    int64_t t_mid = cs_now_us(); /* append times: batches 0-9 before it, 10-14 after */
    for (int i = 10; i < 15; i++) append_json(t, i * 10, 10);
    size_t len;
    uint8_t *seg = slurp(f->path, &len);
    size_t pos = 0;
    int kinds[15];
    for (int i = 0; i < 15; i++) {
        assert_true(pos + CS_SEG_BATCH_HDR <= len);
        kinds[i] = get32le(seg + pos) == CS_SEG_ZBATCH_MAGIC;
        pos += get32le(seg + pos + 8);
    }
    assert_int_equal(pos, len);
    for (int i = 0; i < 15; i++) assert_int_equal(kinds[i], i < 5 || i >= 10);
    free(seg);
    for (int64_t from = 0; from < 150; from += 7) { /* also from inside a batch */
        struct jcheck c = {.next = from};
        assert_int_equal(cs_topic_read(t, 0, from, 1000, json_cb, &c), 150 - from);
        assert_int_equal(c.next, 150);
    }
    assert_int_equal(cs_topic_offset_for_time(t, 0, t_mid), 100); /* the time search reads both kinds */
    cs_topic_close(t);
    /* Recovery scans the active segment through both kinds. */
    t = open_z(f->tdir, 0);
    assert_int_equal(cs_topic_end(t, 0), 150);
    struct jcheck c = {.next = 0};
    assert_int_equal(cs_topic_read(t, 0, 0, 1000, json_cb, &c), 150);
    cs_topic_close(t);
}

static void test_bus_embedded(void **state)
{
    struct fx *f = *state;
    char err[512] = "";
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.partitions = 4;
    o.segment_bytes = SMALL_SEG;
    cs_bus *bus = cs_bus_embedded_open_opts(f->dir, &o, err, sizeof err);
    if (!bus) fail_msg("%s", err);
    assert_non_null(cs_bus_embedded_topic(bus, CS_TOPIC_EVENTS));
    int64_t t0 = cs_now_us();
    char keys[200][16], vals[200][32];
    cs_msg m[200];
    for (int i = 0; i < 200; i++) {
        snprintf(keys[i], sizeof keys[i], "acc_%d", i % 37);
        snprintf(vals[i], sizeof vals[i], "v%d", i);
        m[i] = (cs_msg){.key = keys[i], .key_len = strlen(keys[i]), .value = vals[i], .value_len = strlen(vals[i]),
                        .ts_us = i};
    }
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, m, 200), 0);
    int64_t total = 0;
    for (int p = 0; p < 4; p++) {
        total += bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
        assert_int_equal(bus->ops->start_offset(bus, CS_TOPIC_EVENTS, p), 0);
        assert_int_equal(bus->ops->offset_for_time(bus, CS_TOPIC_EVENTS, p, t0 - 1), 0);
        assert_int_equal(bus->ops->offset_for_time(bus, CS_TOPIC_EVENTS, p, cs_now_us() + 1000000),
                         bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p));
    }
    assert_int_equal(total, 200);
    for (int i = 0; i < 200; i++) assert_int_equal(m[i].partition, cs_partition_for(keys[i], strlen(keys[i]), 4));
    /* The pipeline group is registered at open. */
    assert_int_equal(bus->ops->committed(bus, "pipeline", CS_TOPIC_EVENTS, 0), 0);
    assert_int_equal(bus->ops->commit(bus, "pipeline", CS_TOPIC_EVENTS, 2, 3), 0);
    assert_int_equal(bus->ops->committed(bus, "pipeline", CS_TOPIC_EVENTS, 2), 3);
    assert_int_equal(bus->ops->committed(bus, "nobody", CS_TOPIC_EVENTS, 2), -1);
    assert_int_equal(bus->ops->commit(bus, "pipeline", "nope", 2, 3), -1);
    bus->ops->close(bus);
    /* The wrapper with the old signature opens the same topic. */
    bus = cs_bus_embedded_open(f->dir, 4, CS_FSYNC_ALWAYS, 0, err, sizeof err);
    assert_non_null(bus);
    assert_int_equal(bus->ops->committed(bus, "pipeline", CS_TOPIC_EVENTS, 2), 3);
    bus->ops->close(bus);
    assert_null(cs_bus_embedded_open(f->dir, 5, CS_FSYNC_ALWAYS, 0, err, sizeof err));
    assert_non_null(strstr(err, "4 partitions but 5"));
}

int main(void)
{
    /* Recovery logs a warning per cut; the loops below cut on purpose. */
    cs_log_set_level(CS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_log, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_compression, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_append_read_round_trip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_middle_of_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_recovers_end, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_truncate_every_byte_of_last_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bitflips_in_last_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bitflip_in_earlier_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_clean_shutdown_marker, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_tail, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_on_disk_format, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_oversized_batch_rejected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends_group_commit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_policy_never, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_policy_interval, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_segment_roll, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_time_index, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_index_rebuild_and_sealed_damage, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_consumer_groups, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_retention, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bus_embedded, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
