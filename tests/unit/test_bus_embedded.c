/*
 * Unit tests for bus/embedded's wakeup (a futex on the produce count): a
 * consumer waiting for records is woken by a produce and by wakeup(), a
 * wait on a count that already moved returns at once, and a wait with
 * nothing produced returns the same count after its timeout. Many waiters
 * and producers at once: nobody misses a wakeup (each wait's 60 s timeout
 * is far beyond the bound asserted, so only a missed wakeup fails it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/config.h"
#include "core/util.h"

struct fx {
    char    dir[64];
    cs_bus *bus;
};

static int setup(void **state)
{
    struct fx *f = cs_calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/cs-bus-emb-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    char err[256];
    f->bus = cs_bus_embedded_open(f->dir, 2, CS_FSYNC_NEVER, 0, err, sizeof err);
    if (!f->bus) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    f->bus->ops->close(f->bus);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

static void produce_one(cs_bus *bus, int i)
{
    char v[32];
    snprintf(v, sizeof v, "{\"i\":%d}", i);
    cs_msg m = {.key = "acc", .key_len = 3, .value = v, .value_len = strlen(v), .ts_us = cs_now_us()};
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, &m, 1), 0);
}

struct waiter {
    cs_bus  *bus;
    uint64_t seen, got;
    int64_t  waited_us;
    int      rounds;     /* wait this many times, each for a new count */
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    int64_t t0 = cs_mono_us();
    uint64_t s = w->seen;
    for (int i = 0; i < w->rounds; i++) s = w->bus->ops->wait(w->bus, s, 60000);
    w->got = s;
    w->waited_us = cs_mono_us() - t0;
    return NULL;
}

static void test_wait_and_wake(void **state)
{
    struct fx *f = *state;
    cs_bus *bus = f->bus;
    /* Nothing produced: the same count back after the timeout. */
    uint64_t s0 = bus->ops->wait(bus, 0, 0);
    assert_int_equal(bus->ops->wait(bus, s0, 20), s0);
    /* A count that already moved: at once, whatever the timeout. */
    produce_one(bus, 1);
    uint64_t s1 = bus->ops->wait(bus, s0, 60000);
    assert_int_not_equal(s1, s0);

    /* A waiter blocked before the produce is woken by it (or, not asleep
     * yet, finds the count moved). */
    struct waiter w = {.bus = bus, .seen = s1, .rounds = 1};
    pthread_t t;
    pthread_create(&t, NULL, wait_thread, &w);
    produce_one(bus, 2);
    pthread_join(t, NULL);
    assert_int_not_equal(w.got, s1);
    assert_true(w.waited_us < 30 * 1000000LL); /* woken, not timed out (60 s) */

    /* wakeup() alone releases a waiter (how a stopping pipeline ends its wait). */
    struct waiter w2 = {.bus = bus, .seen = w.got, .rounds = 1};
    pthread_create(&t, NULL, wait_thread, &w2);
    bus->ops->wakeup(bus);
    pthread_join(t, NULL);
    assert_int_not_equal(w2.got, w.got);
    assert_true(w2.waited_us < 30 * 1000000LL);
}

struct producer {
    cs_bus *bus;
    int     n, base;
};

static void *produce_thread(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < p->n; i++) produce_one(p->bus, p->base + i);
    return NULL;
}

static int64_t total_end(cs_bus *bus)
{
    int64_t n = 0;
    for (int p = 0; p < bus->partitions; p++) n += bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
    return n;
}

struct follower {
    cs_bus *bus;
    int64_t waited_us;
    int     waits;
};

/* Like a pipeline worker: wait for new records until all 400 are there. */
static void *follow_thread(void *arg)
{
    struct follower *f = arg;
    int64_t t0 = cs_mono_us();
    uint64_t s = f->bus->ops->wait(f->bus, 0, 0);
    while (total_end(f->bus) < 400) s = f->bus->ops->wait(f->bus, s, 60000), f->waits++;
    f->waited_us = cs_mono_us() - t0;
    return NULL;
}

/* 4 followers while 2 producers append 400 records one by one: each sees
 * all 400 (a missed wakeup leaves one asleep for its 60 s timeout). */
static void test_many(void **state)
{
    struct fx *f = *state;
    cs_bus *bus = f->bus;
    struct follower w[4];
    pthread_t wt[4], pt[2];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct follower){.bus = bus};
        pthread_create(&wt[i], NULL, follow_thread, &w[i]);
    }
    struct producer p[2] = {{bus, 200, 0}, {bus, 200, 1000}};
    for (int i = 0; i < 2; i++) pthread_create(&pt[i], NULL, produce_thread, &p[i]);
    for (int i = 0; i < 2; i++) pthread_join(pt[i], NULL);
    for (int i = 0; i < 4; i++) {
        pthread_join(wt[i], NULL);
        assert_true(w[i].waited_us < 30 * 1000000LL);
    }
    assert_int_equal(total_end(bus), 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wait_and_wake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
