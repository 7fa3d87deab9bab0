/*
 * Unit tests for log/plog: append/read, recovery of torn and corrupt tails,
 * group commit under concurrent appends, fsync policies.
 *
 * Every test works in its own mkdtemp directory under /tmp.
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
#include "log/plog.h"

/* ---------------------------------------------------------------- helpers */

struct fx {
    char dir[64];
    char path[128];
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
    snprintf(f->path, sizeof f->path, "%s/events-0.log", f->dir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static cs_plog *open_log(const char *path, int policy, int interval_ms)
{
    char err[256] = "";
    cs_plog *pl = cs_plog_open(path, policy, interval_ms, err, sizeof err);
    if (!pl) fail_msg("cs_plog_open(%s): %s", path, err);
    return pl;
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

static void spill(const char *path, const uint8_t *b, size_t len)
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
    assert_null(cs_plog_open("/nonexistent-dir-cs/x.log", CS_FSYNC_ALWAYS, 0, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent-dir-cs/x.log"));
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

static void test_bitflip_in_earlier_batch(void **state)
{
    struct fx *f = *state;
    /* Five batches of 4 records; remember where each starts. */
    cs_plog *pl = open_log(f->path, CS_FSYNC_NEVER, 0);
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
     * append time, a record header and record bytes. */
    const int victim = 2;
    int64_t p = bp[victim].pos, blen = bp[victim + 1].pos - p;
    int64_t offs[] = {0, 3, 4, 7, 8, 11, 12, 16, 23, 24, 31, 32, 36, 44, blen / 2, blen - 1};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        for (int bitn = 0; bitn < 8; bitn += 3) {
            memcpy(bad, img, len);
            bad[p + offs[i]] ^= (uint8_t)(1u << bitn);
            spill(f->path, bad, len);
            pl = open_log(f->path, CS_FSYNC_NEVER, 0);
            /* Recovery stops at the corrupt batch: it and every later
             * (intact) batch are cut, and the cut is reported. */
            if (cs_plog_end(pl) != bp[victim].base || cs_plog_truncated_bytes(pl) != (int64_t)len - p)
                fail_msg("byte %lld bit %d of batch %d: end %lld (want %lld), truncated %lld (want %lld)",
                         (long long)offs[i], bitn, victim, (long long)cs_plog_end(pl), (long long)bp[victim].base,
                         (long long)cs_plog_truncated_bytes(pl), (long long)((int64_t)len - p));
            assert_int_equal(file_size(f->path), p);
            check_all(pl, 0, bp[victim].base);
            int64_t n = 0;
            assert_int_equal(cs_plog_read(pl, bp[victim].base, 100, count_cb, &n), 0);
            assert_int_equal(cs_plog_read(pl, bp[victim + 2].base, 100, count_cb, &n), 0);
            assert_int_equal(n, 0);
            /* New appends reuse the offsets from the corrupt batch on. */
            append_gen(pl, bp[victim].base, 2);
            check_all(pl, 0, bp[victim].base + 2);
            cs_plog_close(pl);
        }
    }
    /* A flip in the very first batch leaves an empty log. */
    memcpy(bad, img, len);
    bad[40] ^= 0x10;
    spill(f->path, bad, len);
    pl = open_log(f->path, CS_FSYNC_NEVER, 0);
    assert_int_equal(cs_plog_end(pl), 0);
    assert_int_equal(cs_plog_truncated_bytes(pl), (int64_t)len);
    assert_int_equal(file_size(f->path), 0);
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
             CRAFT_COUNT_ZERO, CRAFT_BAD_MAGIC };

/* Encode a batch of the generated records [base, base+count) with a valid
 * CRC, damaged as asked in a way only the structural checks can see. */
static size_t craft_batch(uint8_t *out, int64_t base, uint32_t count, int64_t append_us, enum craft how)
{
    size_t pos = 32;
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
    put32le(out, how == CRAFT_BAD_MAGIC ? 0x32425343u : 0x31425343u);
    put32le(out + 8, (uint32_t)pos);
    put32le(out + 12, n);
    put64le(out + 16, (uint64_t)base);
    put64le(out + 24, (uint64_t)append_us);
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
    int64_t next = 0;
    while (pos < len) {
        assert_true(len - pos >= 48);
        const uint8_t *b = img + pos;
        uint32_t total = get32le(b + 8), count = get32le(b + 12);
        assert_int_equal(get32le(b), 0x31425343u);
        assert_true(total >= 48 && pos + total <= len);
        assert_int_equal(get32le(b + 4), cs_crc32c(0, b + 8, total - 8));
        assert_int_equal((int64_t)get64le(b + 16), next);
        assert_true((int64_t)get64le(b + 24) >= t0 && (int64_t)get64le(b + 24) <= t1);
        size_t rp = 32;
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
    size_t good = craft_batch(buf + len, 5, 4, 1234567, CRAFT_OK);
    spill(f->path, buf, len + good);
    pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
    assert_int_equal(cs_plog_end(pl), 9);
    assert_int_equal(cs_plog_truncated_bytes(pl), 0);
    check_all(pl, 0, 9);
    struct check c = {.next = 5, .stop_after = -1, .min_append = 1234567, .max_append = 1234567};
    assert_int_equal(cs_plog_read(pl, 5, 10, check_cb, &c), 4);
    append_gen(pl, 9, 1);
    cs_plog_close(pl);

    /* Batches with a valid CRC but a broken structure are cut. */
    static const enum craft bad[] = {CRAFT_SLACK,      CRAFT_SHORT_REC, CRAFT_KEY_TOO_LONG, CRAFT_COUNT_HIGH,
                                     CRAFT_COUNT_LOW,  CRAFT_COUNT_ZERO, CRAFT_BAD_MAGIC};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t blen = craft_batch(buf + len + good, 9, 6, 1, bad[i]); /* the largest batch */
        spill(f->path, buf, len + good + blen);
        pl = open_log(f->path, CS_FSYNC_ALWAYS, 0);
        if (cs_plog_end(pl) != 9 || cs_plog_truncated_bytes(pl) != (int64_t)blen)
            fail_msg("crafted damage %d: end %lld, truncated %lld of %zu", (int)bad[i], (long long)cs_plog_end(pl),
                     (long long)cs_plog_truncated_bytes(pl), blen);
        check_all(pl, 0, 9);
        cs_plog_close(pl);
    }
    /* A base offset that skips ahead is cut too. */
    size_t blen = craft_batch(buf + len + good, 10, 2, 1, CRAFT_OK);
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
    unlink(f->path);
    policy_round_trip(f->path, CS_FSYNC_INTERVAL, 60000);
}

int main(void)
{
    /* Recovery logs a warning per cut; the loops below cut on purpose. */
    cs_log_set_level(CS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty_log, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_append_read_round_trip, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_middle_of_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reopen_recovers_end, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_truncate_every_byte_of_last_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bitflips_in_last_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bitflip_in_earlier_batch, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_tail, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_on_disk_format, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_oversized_batch_rejected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends_group_commit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_policy_never, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_policy_interval, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
