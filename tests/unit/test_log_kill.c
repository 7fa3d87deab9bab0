/*
 * T1 (RELIABILITY.md): kill -9 during concurrent appends, 30 cycles.
 *
 * Each cycle forks a child that opens the log and runs 4 appender threads
 * (fsync always). After each acknowledged append a thread writes one fixed
 * record (partition, offset, count, who) to a pipe: a write under PIPE_BUF
 * is atomic, so the parent sees exactly the acknowledgements that happened.
 * The parent SIGKILLs the child after a varying number of acknowledgements
 * (synchronised by the pipe, not by sleeping), reopens the log to check
 * that it recovers, and goes on. At the end every acknowledged record must
 * read back exactly (lost 0), and offsets must be unique and, per thread
 * and partition, increasing. Prints one JSON line of figures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/logging.h"
#include "core/util.h"
#include "log/log.h"

#define CYCLES 30
#define PARTS 4
#define THREADS 4

struct ack {
    int32_t part, count, cycle, thread;
    int64_t offset, seq;
};

static char g_dir[64];
static int g_pipe = -1;
static cs_topic *g_topic;
static int g_cycle;

static cs_topic_opts opts(void)
{
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.partitions = PARTS;
    o.segment_bytes = 16 << 10; /* rolls happen while being killed */
    o.index_interval = 512;
    o.retention_ms = 0;
    return o;
}

static size_t value_of(int cycle, int thread, int64_t seq, int i, char *out)
{
    return (size_t)sprintf(out, "c%d-t%d-s%lld-i%d-%.*s", cycle, thread, (long long)seq, i, (int)(seq % 40),
                           "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

static void *appender(void *arg)
{
    int thread = (int)(intptr_t)arg;
    uint64_t x = (uint64_t)(g_cycle * 131 + thread * 7 + 1);
    for (int64_t seq = 0;; seq++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int part = (int)(x % PARTS), n = (int)(x / PARTS % 5) + 1;
        char vals[5][128];
        cs_rec recs[5];
        for (int i = 0; i < n; i++) {
            memset(&recs[i], 0, sizeof recs[i]);
            recs[i].key = "acc";
            recs[i].key_len = 3;
            recs[i].value = vals[i];
            recs[i].value_len = value_of(g_cycle, thread, seq, i, vals[i]);
        }
        if (cs_topic_append(g_topic, part, recs, (size_t)n) != 0) _exit(3);
        struct ack a = {part, n, g_cycle, thread, recs[0].offset, seq};
        if (write(g_pipe, &a, sizeof a) != (ssize_t)sizeof a) _exit(4);
    }
    return NULL;
}

static void child(void)
{
    char err[512];
    cs_topic_opts o = opts();
    g_topic = cs_topic_open(g_dir, &o, err, sizeof err);
    if (!g_topic) _exit(2);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, appender, (void *)(intptr_t)i);
    for (;;) pause();
}

struct verify {
    const struct ack *a;
    int bad;
};

static int verify_cb(const cs_rec *r, void *arg)
{
    struct verify *v = arg;
    char want[128];
    int i = (int)(r->offset - v->a->offset);
    size_t n = value_of(v->a->cycle, v->a->thread, v->a->seq, i, want);
    if (r->value_len != n || memcmp(r->value, want, n) != 0) v->bad = 1;
    return 0;
}

static int cmp_ack(const void *pa, const void *pb)
{
    const struct ack *a = pa, *b = pb;
    if (a->part != b->part) return a->part - b->part;
    return a->offset < b->offset ? -1 : a->offset > b->offset;
}

static void test_t1_kill9_cycles(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/cs_test_kill_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    size_t nacks = 0, cap = 4096;
    struct ack *acks = malloc(cap * sizeof *acks);
    assert_non_null(acks);
    int64_t truncated = 0, max_open_us = 0;
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (g_cycle = 0; g_cycle < CYCLES; g_cycle++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            g_pipe = fds[1];
            child();
        }
        close(fds[1]);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t kill_after = 10 + (size_t)(x % 400), seen = 0;
        int killed = 0;
        struct ack a;
        for (;;) {
            ssize_t r = read(fds[0], &a, sizeof a);
            if (r == 0) break;
            if (r < 0 && errno == EINTR) continue;
            assert_int_equal(r, (ssize_t)sizeof a);
            if (nacks == cap) {
                cap *= 2;
                acks = realloc(acks, cap * sizeof *acks);
                assert_non_null(acks);
            }
            acks[nacks++] = a;
            if (++seen == kill_after && !killed) {
                kill(pid, SIGKILL);
                killed = 1;
            }
        }
        close(fds[0]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status)) fail_msg("cycle %d: child exited with %d before the kill", g_cycle, WEXITSTATUS(status));
        /* Recovery after each kill: opens, and reports what it cut. */
        char err[512];
        cs_topic_opts o = opts();
        int64_t t0 = cs_mono_us();
        cs_topic *t = cs_topic_open(g_dir, &o, err, sizeof err);
        if (!t) fail_msg("cycle %d: reopen after kill -9: %s", g_cycle, err);
        int64_t dt = cs_mono_us() - t0;
        if (dt > max_open_us) max_open_us = dt;
        cs_topic_stats st;
        cs_topic_get_stats(t, -1, &st);
        truncated += st.truncated_bytes;
        cs_topic_close(t);
    }

    /* Every acknowledged batch reads back exactly. */
    char err[512];
    cs_topic_opts o = opts();
    cs_topic *t = cs_topic_open(g_dir, &o, err, sizeof err);
    assert_non_null(t);
    int64_t lost = 0, records = 0, dup = 0, nonmono = 0;
    for (size_t i = 0; i < nacks; i++) {
        struct verify v = {.a = &acks[i]};
        int n = cs_topic_read(t, acks[i].part, acks[i].offset, (size_t)acks[i].count, verify_cb, &v);
        if (n != acks[i].count || v.bad) lost += acks[i].count;
        records += acks[i].count;
    }
    /* Per thread and cycle, a partition's offsets increase. */
    for (size_t i = 0; i < nacks; i++)
        for (size_t j = i + 1; j < nacks && j < i + 64; j++)
            if (acks[j].cycle == acks[i].cycle && acks[j].thread == acks[i].thread && acks[j].part == acks[i].part &&
                acks[j].seq > acks[i].seq && acks[j].offset <= acks[i].offset)
                nonmono++;
    /* Offsets unique: acknowledged ranges never overlap. */
    qsort(acks, nacks, sizeof *acks, cmp_ack);
    for (size_t i = 1; i < nacks; i++)
        if (acks[i].part == acks[i - 1].part && acks[i].offset < acks[i - 1].offset + acks[i - 1].count) dup++;
    int64_t ends[PARTS];
    for (int p = 0; p < PARTS; p++) ends[p] = cs_topic_end(t, p);
    cs_topic_close(t);
    printf("{\"test\":\"T1\",\"cycles\":%d,\"acked_batches\":%zu,\"acked_records\":%lld,\"lost\":%lld,"
           "\"duplicate_offsets\":%lld,\"non_monotonic\":%lld,\"truncated_bytes\":%lld,\"max_recovery_ms\":%.1f,"
           "\"log_end_total\":%lld}\n",
           CYCLES, nacks, (long long)records, (long long)lost, (long long)dup, (long long)nonmono, (long long)truncated,
           (double)max_open_us / 1000.0, (long long)(ends[0] + ends[1] + ends[2] + ends[3]));
    fflush(stdout);
    assert_int_equal(lost, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(nonmono, 0);
    assert_true(nacks > CYCLES * 10);
    free(acks);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    cs_log_set_level((enum cs_log_level)(CS_LOG_ERROR + 1));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_t1_kill9_cycles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
