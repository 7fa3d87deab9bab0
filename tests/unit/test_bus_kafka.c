/*
 * Unit tests for bus/kafka against librdkafka's mock cluster
 * (rdkafka_mock.h: an in-process Kafka broker, no JVM, no network beyond
 * 127.0.0.1): produce with delivery reports, fetch from explicit offsets,
 * end/start offsets, wait, group commit/committed, topic creation and the
 * partition-count check, and partition agreement with cs_partition_for
 * (Kafka's murmur2) for many keys, the leads topic, and consumer-group
 * membership (join/leave: two members share 8 partitions, never both
 * owning one; one leaves or is SIGKILLed and the other takes all 8). The
 * real-broker test is
 * tests/integration/test_kafka_broker.c.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "bus/bus.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "metrics/metrics.h"

static rd_kafka_t *mock_rk;
static rd_kafka_mock_cluster_t *mock;
static char brokers[512];

static int setup_mock(void **state)
{
    (void)state;
    cs_log_set_level(CS_LOG_WARN);
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!mock_rk) return -1;
    mock = rd_kafka_mock_cluster_new(mock_rk, 1);
    if (!mock) return -1;
    snprintf(brokers, sizeof brokers, "kafka://%s", rd_kafka_mock_cluster_bootstraps(mock));
    return 0;
}

static int teardown_mock(void **state)
{
    (void)state;
    if (mock) rd_kafka_mock_cluster_destroy(mock);
    if (mock_rk) rd_kafka_destroy(mock_rk);
    return 0;
}

static void cfg_for(cs_config *cfg, const char *prefix, int partitions)
{
    cs_config_defaults(cfg);
    cfg->partitions = partitions;
    free(cfg->kafka_topic_prefix);
    cfg->kafka_topic_prefix = cs_strdup(prefix);
    cfg->kafka_replication_factor = 1;
    cfg->kafka_timeout_ms = 10000;
}

static cs_bus *open_bus(const char *prefix, int partitions, cs_config *cfg)
{
    char err[1024] = "", topic[128];
    cfg_for(cfg, prefix, partitions);
    /* librdkafka 2.0.2's mock cluster answers no CreateTopics (no
     * controller): topics are made here, creation is tested against the
     * real broker (tests/integration/test_kafka_broker.c). */
    snprintf(topic, sizeof topic, "%s%s", prefix, CS_TOPIC_EVENTS);
    rd_kafka_mock_topic_create(mock, topic, partitions, 1);
    snprintf(topic, sizeof topic, "%s%s", prefix, CS_TOPIC_DLQ);
    rd_kafka_mock_topic_create(mock, topic, partitions, 1);
    snprintf(topic, sizeof topic, "%s%s", prefix, CS_TOPIC_LEADS);
    rd_kafka_mock_topic_create(mock, topic, 1, 1);
    cs_bus *bus = cs_bus_kafka_open(brokers, cfg, err, sizeof err);
    if (!bus) fprintf(stderr, "# open: %s\n", err);
    return bus;
}

struct collect {
    int64_t offsets[4096];
    char    values[4096][32];
    int64_t ts[4096];
    int     n;
    int     stop_after;
};

static int on_rec(const cs_rec *r, void *arg)
{
    struct collect *c = arg;
    if (c->n < 4096) {
        c->offsets[c->n] = r->offset;
        snprintf(c->values[c->n], sizeof c->values[0], "%.*s", (int)r->value_len, r->value);
        c->ts[c->n] = r->ts_us;
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

/* Fetch every record of partition p from `from`, the way the pipeline does
 * (repeated fetches, next offset = last + 1). */
static int fetch_all(cs_bus *bus, int p, int64_t from, struct collect *c)
{
    int64_t end = bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
    for (int tries = 0; from < end && tries < 100; tries++) {
        int before = c->n;
        int n = bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, from, 1000, on_rec, c);
        if (n < 0) return -1;
        if (c->n > before) from = c->offsets[c->n - 1] + 1;
    }
    return c->n;
}

static void test_produce_fetch_offsets(void **state)
{
    (void)state;
    cs_config cfg;
    cs_bus *bus = open_bus("t1-", 4, &cfg);
    assert_non_null(bus);
    assert_string_equal(bus->ops->name, "kafka");
    assert_int_equal(bus->partitions, 4);
    for (int p = 0; p < 4; p++) {
        assert_int_equal(bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p), 0);
        assert_int_equal(bus->ops->start_offset(bus, CS_TOPIC_EVENTS, p), 0);
    }
    enum { N = 200 };
    static char keys[N][16], vals[N][32];
    cs_msg msgs[N];
    int64_t base_ts = cs_now_us();
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "acc_%d", i % 37);
        snprintf(vals[i], sizeof vals[i], "v%d", i);
        msgs[i] = (cs_msg){.key = keys[i], .key_len = strlen(keys[i]), .value = vals[i], .value_len = strlen(vals[i]),
                           .ts_us = base_ts + i};
    }
    uint64_t seq = bus->ops->wait(bus, 0, 0);
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, msgs, N), 0);
    assert_true(bus->ops->wait(bus, seq, 1000) != seq);
    int64_t count[4] = {0};
    for (int i = 0; i < N; i++) {
        /* librdkafka's murmur2_random partitioner == Kafka's == ours */
        assert_int_equal(msgs[i].partition, cs_partition_for(keys[i], strlen(keys[i]), 4));
        /* one call, one partition: offsets dense and in call order */
        assert_int_equal(msgs[i].offset, count[msgs[i].partition]++);
    }
    for (int p = 0; p < 4; p++) assert_int_equal(bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p), count[p]);

    /* Everything back, in order, with the microsecond ingest time. */
    int total = 0;
    for (int p = 0; p < 4; p++) {
        struct collect *c = cs_calloc(1, sizeof *c);
        assert_int_equal(fetch_all(bus, p, 0, c), count[p]);
        for (int j = 0; j < c->n; j++) {
            assert_int_equal(c->offsets[j], j);
            int i = atoi(c->values[j] + 1);
            assert_int_equal(msgs[i].partition, p);
            assert_int_equal(msgs[i].offset, j);
            assert_int_equal(c->ts[j], base_ts + i);
        }
        total += c->n;
        free(c);
    }
    assert_int_equal(total, N);

    /* From an explicit offset in the middle, backwards, with a max, and a
     * callback that stops early: the next fetch continues exactly. */
    int p = msgs[0].partition;
    struct collect *c = cs_calloc(1, sizeof *c);
    assert_int_equal(bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, 5, 3, on_rec, c), 3);
    assert_int_equal(c->offsets[0], 5);
    assert_int_equal(c->offsets[2], 7);
    memset(c, 0, sizeof *c);
    assert_int_equal(bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, 2, 1, on_rec, c), 1);
    assert_int_equal(c->offsets[0], 2);
    memset(c, 0, sizeof *c);
    c->stop_after = 2;
    assert_int_equal(bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, 3, 100, on_rec, c), 2);
    assert_int_equal(c->offsets[1], 4);
    memset(c, 0, sizeof *c);
    assert_true(bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, 5, 2, on_rec, c) == 2);
    assert_int_equal(c->offsets[0], 5);
    /* At the end: nothing, at once. */
    memset(c, 0, sizeof *c);
    int64_t t0 = cs_mono_us();
    assert_int_equal(bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, count[p], 10, on_rec, c), 0);
    assert_true(cs_mono_us() - t0 < 500000);
    free(c);

    /* Unknown topic and partition. */
    assert_int_equal(bus->ops->end_offset(bus, "nope", 0), -1);
    assert_int_equal(bus->ops->end_offset(bus, CS_TOPIC_EVENTS, 4), -1);
    bus->ops->close(bus);
    cs_config_free(&cfg);
}

static void test_commit_committed(void **state)
{
    (void)state;
    cs_config cfg;
    cs_bus *bus = open_bus("t2-", 3, &cfg);
    assert_non_null(bus);
    assert_int_equal(bus->ops->committed(bus, "pipeline", CS_TOPIC_EVENTS, 1), -1);
    assert_int_equal(bus->ops->commit(bus, "pipeline", CS_TOPIC_EVENTS, 1, 42), 0);
    assert_int_equal(bus->ops->commit(bus, "warehouse", CS_TOPIC_EVENTS, 1, 7), 0);
    /* Commits are asynchronous (lag monitoring only): they land shortly. */
    int64_t got = -1, got2 = -1;
    for (int i = 0; i < 100 && (got != 42 || got2 != 7); i++) {
        got = bus->ops->committed(bus, "pipeline", CS_TOPIC_EVENTS, 1);
        got2 = bus->ops->committed(bus, "warehouse", CS_TOPIC_EVENTS, 1);
        if (got != 42 || got2 != 7) usleep(50000);
    }
    assert_int_equal(got, 42);
    assert_int_equal(got2, 7);
    assert_int_equal(bus->ops->committed(bus, "pipeline", CS_TOPIC_EVENTS, 0), -1);
    assert_int_equal(bus->ops->commit(bus, "pipeline", CS_TOPIC_EVENTS, 1, 43), 0);
    for (int i = 0; i < 100 && got != 43; i++) {
        got = bus->ops->committed(bus, "pipeline", CS_TOPIC_EVENTS, 1);
        if (got != 43) usleep(50000);
    }
    assert_int_equal(got, 43);
    bus->ops->close(bus);
    cs_config_free(&cfg);
}

/* The partition count is part of the data's meaning (a key's partition):
 * reopening an existing topic with another count is refused by name. */
static void test_partition_count_mismatch(void **state)
{
    (void)state;
    cs_config cfg;
    cs_bus *bus = open_bus("t3-", 4, &cfg);
    assert_non_null(bus);
    bus->ops->close(bus);
    cs_config_free(&cfg);
    char err[1024] = "";
    cfg_for(&cfg, "t3-", 6);
    assert_null(cs_bus_kafka_open(brokers, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "t3-events"));
    assert_non_null(strstr(err, "has 4 partitions but log.partitions is 6"));
    cs_config_free(&cfg);
    /* Same count: fine, and the data is still there. */
    bus = open_bus("t3-", 4, &cfg);
    assert_non_null(bus);
    bus->ops->close(bus);
    cs_config_free(&cfg);
}

/* murmur2_random vs cs_partition_for over many keys and odd partition
 * counts (the sign-bit mask matters for about half of all keys). */
static void test_partition_agreement_many_keys(void **state)
{
    (void)state;
    static const int counts[] = {7, 12};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        int P = counts[k];
        char prefix[32];
        snprintf(prefix, sizeof prefix, "t4-%d-", P);
        cs_config cfg;
        cs_bus *bus = open_bus(prefix, P, &cfg);
        assert_non_null(bus);
        enum { N = 3000 };
        static char keys[N][40];
        static cs_msg msgs[N];
        uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(P + 1);
        for (int i = 0; i < N; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* account ids, email-domain keys, odd lengths and bytes >= 0x80 */
            int len = i % 3 == 0   ? snprintf(keys[i], sizeof keys[i], "acc_%llu", (unsigned long long)(x % 1000000))
                      : i % 3 == 1 ? snprintf(keys[i], sizeof keys[i], "domain:ex%llu.com", (unsigned long long)(x % 9973))
                                   : snprintf(keys[i], sizeof keys[i], "k\xc3\xa9%llx", (unsigned long long)x);
            msgs[i] = (cs_msg){.key = keys[i], .key_len = (size_t)len, .value = "{}", .value_len = 2, .ts_us = cs_now_us()};
        }
        assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, msgs, N), 0);
        int disagree = 0;
        for (int i = 0; i < N; i++)
            if (msgs[i].partition != cs_partition_for(msgs[i].key, msgs[i].key_len, P)) disagree++;
        assert_int_equal(disagree, 0);
        assert_int_equal(cs_bus_partition(bus, keys[5], strlen(keys[5])), msgs[5].partition);
        bus->ops->close(bus);
        cs_config_free(&cfg);
    }
}


/* A callback that stops at a record WITHOUT taking it (the pipeline's time
 * budget): the next fetch starts from that record's offset and gets it,
 * then the rest in order, none twice (the reader holds the record rather
 * than restarting its queue). */
struct taker {
    int64_t got[256];
    int     n, in_call, per_call;
};

static int take_some(const cs_rec *r, void *arg)
{
    struct taker *t = arg;
    if (t->in_call == t->per_call) return 1; /* not taken */
    t->in_call++;
    t->got[t->n++] = r->offset;
    return 0;
}

static void test_fetch_stop_without_taking(void **state)
{
    (void)state;
    cs_config cfg;
    cs_bus *bus = open_bus("t9-", 1, &cfg);
    assert_non_null(bus);
    static cs_msg msgs[50];
    for (int i = 0; i < 50; i++)
        msgs[i] = (cs_msg){.key = "k", .key_len = 1, .value = "v", .value_len = 1, .ts_us = cs_now_us()};
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, msgs, 50), 0);
    static struct taker t;
    memset(&t, 0, sizeof t);
    t.per_call = 7;
    int64_t from = 0;
    for (int calls = 0; from < 50 && calls < 100; calls++) {
        t.in_call = 0;
        assert_true(bus->ops->fetch(bus, CS_TOPIC_EVENTS, 0, from, 1000, take_some, &t) >= 0);
        if (t.n) from = t.got[t.n - 1] + 1;
        if (calls == 2) { /* once: the caller took the held record elsewhere */
            from++;
            t.got[t.n++] = from - 1;
        }
    }
    assert_int_equal(t.n, 50);
    for (int i = 0; i < 50; i++) assert_int_equal(t.got[i], i);
    bus->ops->close(bus);
    cs_config_free(&cfg);
}

/* Two threads (the pipeline and a warehouse destination) read one
 * partition at different offsets at the same time: each has its own
 * consumer, so each sees its own exact sequence. */
struct reader_arg {
    cs_bus *bus;
    int     p;
    int64_t from;
    int     ok;
};

static void *reader_main(void *arg)
{
    struct reader_arg *a = arg;
    a->ok = 1;
    for (int round = 0; round < 5; round++) {
        struct collect *c = cs_calloc(1, sizeof *c);
        int64_t end = a->bus->ops->end_offset(a->bus, CS_TOPIC_EVENTS, a->p);
        if (fetch_all(a->bus, a->p, a->from, c) != end - a->from) a->ok = 0;
        for (int j = 0; j < c->n && j < 4096; j++)
            if (c->offsets[j] != a->from + j) a->ok = 0;
        free(c);
    }
    return NULL;
}

static void test_concurrent_readers(void **state)
{
    (void)state;
    cs_config cfg;
    cs_bus *bus = open_bus("t6-", 1, &cfg);
    assert_non_null(bus);
    static cs_msg msgs[300];
    for (int i = 0; i < 300; i++)
        msgs[i] = (cs_msg){.key = "k", .key_len = 1, .value = "v", .value_len = 1, .ts_us = cs_now_us()};
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, msgs, 300), 0);
    struct reader_arg a = {bus, 0, 0, 0}, b = {bus, 0, 150, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, reader_main, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, reader_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_true(a.ok);
    assert_true(b.ok);
    bus->ops->close(bus);
    cs_config_free(&cfg);
}

/* A produce that Kafka does not acknowledge returns -1: ingest answers 503
 * and acknowledges nothing. The bus works again once the broker is back. */
static void test_produce_failure_is_not_acknowledged(void **state)
{
    (void)state;
    cs_config cfg;
    cs_bus *bus = open_bus("t5-", 2, &cfg);
    assert_non_null(bus);
    cs_msg m = {.key = "acc_1", .key_len = 5, .value = "x", .value_len = 1, .ts_us = cs_now_us()};
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, &m, 1), 0);
    bus->ops->close(bus);
    cs_config_free(&cfg);

    cfg_for(&cfg, "t5-", 2);
    cfg.kafka_timeout_ms = 1500; /* message.timeout.ms */
    char err[1024];
    bus = cs_bus_kafka_open(brokers, &cfg, err, sizeof err);
    assert_non_null(bus);
    assert_int_equal(rd_kafka_mock_broker_set_down(mock, 1), 0);
    cs_msg ms[3] = {{.key = "acc_1", .key_len = 5, .value = "a", .value_len = 1, .ts_us = cs_now_us()},
                    {.key = "acc_2", .key_len = 5, .value = "b", .value_len = 1, .ts_us = cs_now_us()},
                    {.key = "acc_3", .key_len = 5, .value = "c", .value_len = 1, .ts_us = cs_now_us()}};
    int64_t t0 = cs_mono_us();
    errno = 0;
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, ms, 3), -1);
    assert_int_equal(errno, EIO);
    assert_true(cs_mono_us() - t0 < 10 * 1000000LL);
    assert_int_equal(rd_kafka_mock_broker_set_up(mock, 1), 0);
    int rc = -1;
    for (int i = 0; i < 5 && rc != 0; i++) rc = bus->ops->produce(bus, CS_TOPIC_EVENTS, ms, 3);
    assert_int_equal(rc, 0);
    for (int i = 0; i < 3; i++) assert_true(ms[i].offset >= 0);
    bus->ops->close(bus);
    cs_config_free(&cfg);
}

static void test_config_bus_key(void **state)
{
    (void)state;
    cs_config cfg;
    char err[512];
    cs_config_defaults(&cfg);
    assert_string_equal(cfg.bus, "embedded");
    assert_int_equal(cs_config_load_string(&cfg, "t.yaml",
                                           "bus: kafka://127.0.0.1:9092,127.0.0.1:9093\n"
                                           "kafka:\n  topic_prefix: crm.\n  group_prefix: g-\n  replication_factor: 3\n"
                                           "  timeout_ms: 5000\n",
                                           err, sizeof err),
                     0);
    assert_string_equal(cfg.bus, "kafka://127.0.0.1:9092,127.0.0.1:9093");
    assert_string_equal(cfg.kafka_topic_prefix, "crm.");
    assert_string_equal(cfg.kafka_group_prefix, "g-");
    assert_int_equal(cfg.kafka_replication_factor, 3);
    assert_int_equal(cfg.kafka_timeout_ms, 5000);
    cs_config_free(&cfg);
    cs_config_defaults(&cfg);
    assert_int_equal(cs_config_load_string(&cfg, "t.yaml", "bus: rabbitmq://x\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "bus: expected embedded or kafka://"));
    cs_config_free(&cfg);
    /* An unreachable broker is a named error, not a hang. */
    cs_config_defaults(&cfg);
    cfg.kafka_timeout_ms = 1500;
    int64_t t0 = cs_mono_us();
    assert_null(cs_bus_kafka_open("kafka://127.0.0.1:1", &cfg, err, sizeof err));
    assert_non_null(strstr(err, "127.0.0.1:1"));
    assert_true(cs_mono_us() - t0 < 15 * 1000000LL);
    cs_config_free(&cfg);
}

/* The leads topic: one partition, its own offsets, readable like events. */
static void test_leads_topic(void **state)
{
    (void)state;
    cs_config cfg;
    cs_bus *bus = open_bus("t7-", 4, &cfg);
    assert_non_null(bus);
    assert_int_equal(cs_bus_topic_partitions(bus, CS_TOPIC_LEADS), 1);
    assert_int_equal(cs_bus_topic_partitions(bus, CS_TOPIC_EVENTS), 4);
    assert_int_equal(cs_bus_topic_partitions(bus, CS_TOPIC_DLQ), 4);
    assert_int_equal(cs_bus_topic_partitions(bus, "nope"), 0);
    cs_msg ms[5];
    const char *keys[5] = {"acc_1", "acc_2", "acc_3", "acc_4", "acc_5"};
    for (int i = 0; i < 5; i++)
        ms[i] = (cs_msg){.key = keys[i], .key_len = 5, .value = keys[i], .value_len = 5, .ts_us = cs_now_us()};
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_LEADS, ms, 5), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ms[i].partition, 0); /* every key: the one partition */
        assert_int_equal(ms[i].offset, i);
    }
    assert_int_equal(bus->ops->end_offset(bus, CS_TOPIC_LEADS, 0), 5);
    assert_int_equal(bus->ops->end_offset(bus, CS_TOPIC_LEADS, 1), -1);
    assert_int_equal(bus->ops->end_offset(bus, CS_TOPIC_EVENTS, 0), 0); /* events untouched */
    struct collect *c = cs_calloc(1, sizeof *c);
    assert_int_equal(bus->ops->fetch(bus, CS_TOPIC_LEADS, 0, 2, 100, on_rec, c), 3);
    assert_string_equal(c->values[0], "acc_3");
    assert_int_equal(c->offsets[2], 4);
    free(c);
    assert_int_equal(bus->ops->commit(bus, "leads", CS_TOPIC_LEADS, 0, 5), 0);
    int64_t got = -1;
    for (int i = 0; i < 100 && got != 5; i++) {
        got = bus->ops->committed(bus, "leads", CS_TOPIC_LEADS, 0);
        if (got != 5) usleep(20000);
    }
    assert_int_equal(got, 5);
    bus->ops->close(bus);
    cs_config_free(&cfg);
    /* Reopened: the one-partition topic is accepted, its data kept. */
    bus = open_bus("t7-", 4, &cfg);
    assert_non_null(bus);
    assert_int_equal(bus->ops->end_offset(bus, CS_TOPIC_LEADS, 0), 5);
    bus->ops->close(bus);
    cs_config_free(&cfg);
    /* A leads topic with another count is refused by name. */
    rd_kafka_mock_topic_create(mock, "t8-leads", 3, 1);
    char err[1024] = "";
    rd_kafka_mock_topic_create(mock, "t8-events", 4, 1);
    rd_kafka_mock_topic_create(mock, "t8-events.dlq", 4, 1);
    cfg_for(&cfg, "t8-", 4);
    assert_null(cs_bus_kafka_open(brokers, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "t8-leads"));
    assert_non_null(strstr(err, "has 3 partitions but crmstream needs 1"));
    cs_config_free(&cfg);
}

/* ---- consumer groups ---------------------------------------------------- */

enum { GP = 8 };

/* Who owns each partition, as the members' on_change calls say; a member
 * "uses" a revoked partition for a while (its in-flight batch) before it
 * lets go, so a bus that handed partitions over before on_change returned
 * would show two owners at once. */
static pthread_mutex_t own_mu = PTHREAD_MUTEX_INITIALIZER;
static int owner[GP];
static int overlaps, changes[3];

struct member {
    int     id;
    cs_bus *bus;
    cs_config cfg;
};

static void on_change(void *arg, const int *owned, int n)
{
    struct member *m = arg;
    int mine[GP] = {0};
    for (int i = 0; i < n; i++) {
        assert_true(owned[i] >= 0 && owned[i] < GP);
        if (i) assert_true(owned[i] > owned[i - 1]); /* ascending */
        mine[owned[i]] = 1;
    }
    pthread_mutex_lock(&own_mu);
    int revoked = 0;
    for (int p = 0; p < GP; p++) revoked |= owner[p] == m->id && !mine[p];
    pthread_mutex_unlock(&own_mu);
    if (revoked) usleep(300000); /* finish and commit the in-flight batch */
    pthread_mutex_lock(&own_mu);
    for (int p = 0; p < GP; p++) {
        if (owner[p] == m->id && !mine[p]) owner[p] = -1;
        if (mine[p]) {
            if (owner[p] != -1 && owner[p] != m->id) overlaps++;
            owner[p] = m->id;
        }
    }
    changes[m->id]++;
    pthread_mutex_unlock(&own_mu);
}

static int owned_by(int id)
{
    pthread_mutex_lock(&own_mu);
    int n = 0;
    for (int p = 0; p < GP; p++) n += owner[p] == id;
    pthread_mutex_unlock(&own_mu);
    return n;
}

/* Wait until member a owns na and b owns nb partitions (deadline 60 s). */
static int wait_owned(int a, int na, int b, int nb)
{
    for (int i = 0; i < 1200; i++) {
        if (owned_by(a) == na && owned_by(b) == nb) return 1;
        usleep(50000);
    }
    fprintf(stderr, "# owned: member %d has %d (want %d), member %d has %d (want %d)\n", a, owned_by(a), na, b,
            owned_by(b), nb);
    return 0;
}

/* The mock coordinator waits up to the session timeout for members to
 * rejoin a rebalance: a short one keeps the test short. */
enum { SESSION_MS = 3000 };

static void member_open(struct member *m, int id)
{
    m->id = id;
    m->bus = open_bus("g-", GP, &m->cfg); /* makes the mock topics */
    assert_non_null(m->bus);
    m->bus->ops->close(m->bus);
    cs_config_free(&m->cfg);
    cfg_for(&m->cfg, "g-", GP);
    m->cfg.kafka_session_timeout_ms = SESSION_MS;
    char err[1024];
    m->bus = cs_bus_kafka_open(brokers, &m->cfg, err, sizeof err);
    assert_non_null(m->bus);
}

static void reset_owners(void)
{
    pthread_mutex_lock(&own_mu);
    for (int p = 0; p < GP; p++) owner[p] = -1;
    overlaps = 0;
    memset(changes, 0, sizeof changes);
    pthread_mutex_unlock(&own_mu);
}

/* Two members share the 8 partitions 4 + 4 (full coverage, no partition
 * owned twice at any moment); one leaves and the other takes all 8 at once
 * (LeaveGroup: no session timeout to wait for). */
static void test_group_share_and_leave(void **state)
{
    (void)state;
    reset_owners();
    static struct member a, b;
    member_open(&a, 1);
    member_open(&b, 2);
    assert_int_equal(a.bus->ops->join(a.bus, "pipeline", CS_TOPIC_EVENTS, on_change, &a), 0);
    assert_true(wait_owned(1, GP, 2, 0)); /* alone: everything */
    errno = 0;
    assert_int_equal(a.bus->ops->join(a.bus, "pipeline", CS_TOPIC_EVENTS, on_change, &a), -1);
    assert_int_equal(errno, EEXIST);
    assert_int_equal(a.bus->ops->join(a.bus, "x", "nope", on_change, &a), -1);
    assert_int_equal(b.bus->ops->join(b.bus, "pipeline", CS_TOPIC_EVENTS, on_change, &b), 0);
    assert_true(wait_owned(1, GP / 2, 2, GP / 2));
    pthread_mutex_lock(&own_mu);
    for (int p = 0; p < GP; p++) assert_true(owner[p] == 1 || owner[p] == 2); /* full coverage */
    pthread_mutex_unlock(&own_mu);
    /* Commits go through the member (Kafka refuses non-members' commits
     * once the group has members). */
    assert_int_equal(a.bus->ops->commit(a.bus, "pipeline", CS_TOPIC_EVENTS, 0, 0), 0);
    int64_t t0 = cs_mono_us();
    b.bus->ops->leave(b.bus, "pipeline");
    assert_int_equal(owned_by(2), 0); /* leave() revoked before it returned */
    assert_true(wait_owned(1, GP, 2, 0));
    fprintf(stderr, "# leave -> survivor owns all %d in %.1f s\n", GP, (double)(cs_mono_us() - t0) / 1e6);
    assert_int_equal(overlaps, 0);
    /* Exported: what this process owns, and the changes. */
    cs_buf mb;
    cs_buf_init(&mb);
    cs_metrics_render(&mb);
    assert_non_null(strstr(mb.data, "crmstream_bus_group_partitions{group=\"pipeline\"} 8\n"));
    assert_non_null(strstr(mb.data, "crmstream_bus_group_changes_total{group=\"pipeline\",change=\"revoked\"}"));
    assert_non_null(strstr(mb.data, "crmstream_bus_group_changes_total{group=\"pipeline\",change=\"assigned\"}"));
    cs_buf_free(&mb);
    b.bus->ops->close(b.bus);
    cs_config_free(&b.cfg);
    a.bus->ops->close(a.bus); /* leaves too: a last on_change with nothing */
    assert_int_equal(owned_by(1), 0);
    cs_config_free(&a.cfg);
}

/* The member in another process is SIGKILLed (stops heartbeating): after
 * kafka.session_timeout_ms the survivor owns all 8 (never both owning one:
 * the killed member's partitions are free only after its session ended). */
static void test_group_member_killed(void **state)
{
    (void)state;
    reset_owners();
    static struct member a;
    member_open(&a, 1);
    assert_int_equal(a.bus->ops->join(a.bus, "killed", CS_TOPIC_EVENTS, on_change, &a), 0);
    assert_true(wait_owned(1, GP, 2, 0));
    /* The other member: this binary re-executed as a member process. */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execl("/proc/self/exe", "test_bus_kafka", "member", brokers, "g-", "killed", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    assert_true(wait_owned(1, GP / 2, 2, 0));
    char line[64] = "";
    FILE *f = fdopen(fds[0], "r");
    int child_owns = -1;
    while (child_owns != GP / 2 && fgets(line, sizeof line, f)) child_owns = atoi(line);
    assert_int_equal(child_owns, GP / 2); /* the child owns the other half */
    int64_t t0 = cs_mono_us();
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fclose(f);
    assert_true(wait_owned(1, GP, 2, 0));
    fprintf(stderr, "# SIGKILL -> survivor owns all %d in %.1f s (session timeout %d ms)\n", GP,
            (double)(cs_mono_us() - t0) / 1e6, SESSION_MS);
    assert_int_equal(overlaps, 0);
    a.bus->ops->close(a.bus);
    cs_config_free(&a.cfg);
}

static void child_change(void *arg, const int *owned, int n)
{
    (void)arg, (void)owned;
    printf("%d\n", n);
    fflush(stdout);
}

/* argv: member BROKERS PREFIX GROUP — join and stay until killed. */
static int member_main(char **argv)
{
    cs_log_set_level(CS_LOG_ERROR);
    cs_config cfg;
    cfg_for(&cfg, argv[3], GP);
    cfg.kafka_session_timeout_ms = SESSION_MS;
    char err[1024];
    cs_bus *bus = cs_bus_kafka_open(argv[2], &cfg, err, sizeof err);
    if (!bus || bus->ops->join(bus, argv[4], CS_TOPIC_EVENTS, child_change, NULL) != 0) {
        fprintf(stderr, "member: %s\n", bus ? "join failed" : err);
        return 1;
    }
    for (;;) pause();
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "member") == 0) return member_main(argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_produce_fetch_offsets),
        cmocka_unit_test(test_commit_committed),
        cmocka_unit_test(test_partition_count_mismatch),
        cmocka_unit_test(test_partition_agreement_many_keys),
        cmocka_unit_test(test_concurrent_readers),
        cmocka_unit_test(test_fetch_stop_without_taking),
        cmocka_unit_test(test_produce_failure_is_not_acknowledged),
        cmocka_unit_test(test_config_bus_key),
        cmocka_unit_test(test_leads_topic),
        cmocka_unit_test(test_group_share_and_leave),
        cmocka_unit_test(test_group_member_killed),
    };
    return cmocka_run_group_tests(tests, setup_mock, teardown_mock);
}
