/*
 * Integration: the Kafka bus against a REAL Apache Kafka broker, started by
 * this test from the Maven jars (tests/kafka/broker.sh: one KRaft node,
 * broker + controller, free 127.0.0.1 ports, storage in a temp dir, stopped
 * at the end).
 *
 *  - `crmstream serve` with `bus: kafka://…` accepts LeadCreated events and
 *    routes them; SIGKILL mid-stream and a restart lose no acknowledged
 *    event and duplicate no lead; re-sent events are duplicates (the dedupe
 *    window is rebuilt from Kafka).
 *  - the bus creates its topic with log.partitions, refuses another count,
 *    looks offsets up by (log-append) time and commits group offsets.
 *  - consumer-group membership (join/leave): two members share 8
 *    partitions without overlap; one leaves, the other owns all 8.
 *  - Kafka's own Java producer and kafkajs (default partitioners) and
 *    crmstream put every key in the same partition, and crmstream reads
 *    what Java wrote.
 *
 * Without Java or the jars (`make deps` fetches them) it prints one
 * `ok 1 # SKIP <reason>` line and exits 0.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.c"

#include "bus/bus.h"
#include "core/config.h"
#include "core/hash.h"
#include "core/logging.h"

#include "kafkaserver.c"

static tkafka broker;
static char *kdir = broker.dir;
static char *bootstrap = broker.bootstrap;

static int start_broker(char *why, size_t whylen)
{
    return tkafka_start(&broker, why, whylen);
}

static void stop_broker(void)
{
    tkafka_stop(&broker);
}

static void dump_log(th_server *s)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -n 30 '%s/serve.log' | sed 's/^/# /' >&2", s->dir);
    if (system(cmd) != 0) fprintf(stderr, "# no serve.log\n");
}

/* ---- serve on Kafka ------------------------------------------------------ */

static char *lead_batch(const char *prefix, int first, int n)
{
    cs_buf b;
    cs_buf_init(&b);
    char ts[40];
    cs_fmt_time_ms(cs_now_us() / 86400000000LL * 86400000000LL, ts, sizeof ts);
    cs_buf_adds(&b, "[");
    for (int i = 0; i < n; i++)
        cs_buf_printf(&b,
                      "%s{\"event_id\":\"%s-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%d\","
                      "\"timestamp\":\"%s\",\"properties\":{\"email\":\"p%d@co%d.example\",\"company\":\"Co %d\"}}",
                      i ? "," : "", prefix, first + i, (first + i) % 17, ts, first + i, (first + i) % 17,
                      (first + i) % 17);
    cs_buf_adds(&b, "]");
    return cs_buf_steal(&b);
}

/* "accepted" of a 200 answer, "duplicates" when dup is set; -status else. */
static int post_count(th_server *s, const char *body, int dup)
{
    cJSON *j;
    int st = th_req(s, "POST", "/v1/events", body, &j);
    int n = -st;
    if (st == 200) {
        cJSON *v = cJSON_GetObjectItem(j, dup ? "duplicates" : "accepted");
        n = cJSON_IsNumber(v) ? (int)v->valuedouble : -1;
    }
    cJSON_Delete(j);
    return n;
}

struct producer {
    th_server *s;
    int        acked_upto; /* batches acknowledged */
    int        stop;
};

static void *produce_loop(void *arg)
{
    struct producer *p = arg;
    cs_httpc c;
    cs_httpc_init(&c, p->s->target);
    cs_buf resp;
    cs_buf_init(&resp);
    for (int b = 0; !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE) && b < 100000; b++) {
        char *body = lead_batch("k9", b * 10, 10);
        int st;
        int rc = cs_httpc_request(&c, "POST", "/v1/events", NULL, body, strlen(body), &st, &resp);
        free(body);
        if (rc != 0 || st != 200) break; /* server gone: this batch is unknown, not acked */
        __atomic_store_n(&p->acked_upto, b + 1, __ATOMIC_RELEASE);
    }
    cs_buf_free(&resp);
    cs_httpc_close(&c);
    return NULL;
}

/* Which k9-<n> ids have a lead; fails on a lead twice. Returns the count. */
static long k9_seen(th_server *s, unsigned char *seen, int max)
{
    char path[128], cursor[64] = "";
    long n = 0;
    memset(seen, 0, (size_t)max);
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/leads?limit=1000%s%s", *cursor ? "&cursor=" : "", cursor);
        cJSON *j;
        assert_int_equal(th_req(s, "GET", path, NULL, &j), 200);
        for (cJSON *it = cJSON_GetObjectItem(j, "items")->child; it; it = it->next) {
            const char *eid = cJSON_GetObjectItem(it, "event_id")->valuestring;
            if (strncmp(eid, "k9-", 3) != 0) continue;
            int k = atoi(eid + 3);
            assert_true(k >= 0 && k < max);
            assert_int_equal(seen[k], 0); /* no lead twice */
            seen[k] = 1;
            n++;
        }
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        int more = cJSON_IsString(nc);
        if (more) snprintf(cursor, sizeof cursor, "%s", nc->valuestring);
        cJSON_Delete(j);
        if (!more) return n;
    }
}

/* The server of the serve test: a failed assertion leaves the test by
 * longjmp, and the teardown still stops and removes it. */
static th_server srv;

static int serve_teardown(void **state)
{
    (void)state;
    if (srv.dir[0]) th_cleanup(&srv);
    memset(&srv, 0, sizeof srv);
    return 0;
}

static void test_serve_on_kafka_survives_sigkill(void **state)
{
    (void)state;
    char yaml[400];
    snprintf(yaml, sizeof yaml, "bus: kafka://%s\nkafka:\n  topic_prefix: serve-\n  timeout_ms: 15000\n", bootstrap);
    th_init(&srv, yaml);
    if (th_start(&srv) != 0) dump_log(&srv);
    assert_int_equal(srv.pid > 0 && *srv.target ? 0 : -1, 0);

    /* Accepted and routed: leads appear through the API. */
    char *body = lead_batch("a", 0, 50);
    assert_int_equal(post_count(&srv, body, 0), 50);
    assert_int_equal(th_wait_leads(&srv, 50, 30000), 50);
    assert_int_equal(post_count(&srv, body, 1), 50); /* a retry: duplicates */
    free(body);
    cJSON *j;
    assert_int_equal(th_req(&srv, "GET", "/api/v1/leads?limit=1", NULL, &j), 200);
    cJSON *it = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "items"), 0);
    assert_non_null(it);
    const char *rep = cJSON_GetStringValue(cJSON_GetObjectItem(it, "owner"));
    assert_non_null(rep); /* routed to one of the reps */
    assert_non_null(strstr("rep_a rep_b rep_c", rep));
    cJSON_Delete(j);

    /* SIGKILL while a client streams batches, twice; restart each time. */
    enum { MAXID = 200000 };
    unsigned char *seen = calloc(MAXID, 1);
    int acked = 0, possible = 0;
    for (int round = 0; round < 2; round++) {
        struct producer p = {&srv, 0, 0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, produce_loop, &p), 0);
        usleep(1200000 + 300000 * round);
        th_stop(&srv, SIGKILL);
        __atomic_store_n(&p.stop, 1, __ATOMIC_RELEASE);
        pthread_join(t, NULL);
        int up = __atomic_load_n(&p.acked_upto, __ATOMIC_ACQUIRE);
        /* each round re-sends from batch 0: ids repeat, acked ones are dups */
        if (up * 10 > acked) acked = up * 10;
        if ((up + 1) * 10 > possible) possible = (up + 1) * 10;
        if (th_start(&srv) != 0) dump_log(&srv);
        assert_true(*srv.target);
    }
    assert_true(acked > 0);
    /* Every acknowledged event has exactly one lead (k9_seen fails on two),
     * none beyond what was possibly sent. */
    long n = 0;
    for (int i = 0; i < 300; i++) {
        n = k9_seen(&srv, seen, MAXID);
        int missing = 0;
        for (int k = 0; k < acked; k++) missing += !seen[k];
        if (!missing) break;
        usleep(100000);
    }
    for (int k = 0; k < acked; k++)
        if (!seen[k]) fail_msg("acknowledged event k9-%d has no lead after restart", k);
    assert_true(n >= acked && n <= possible);
    /* The dedupe window was rebuilt from Kafka: re-sent acked events are
     * duplicates and create nothing. */
    int resend = acked < 500 ? acked : 500;
    char *again = lead_batch("k9", 0, resend);
    assert_int_equal(post_count(&srv, again, 1), resend);
    free(again);
    char *marker = lead_batch("marker", 0, 1);
    assert_int_equal(post_count(&srv, marker, 0), 1);
    free(marker);
    /* The marker is routed; the pipeline settles (unacknowledged events
     * that reached Kafka before the kill may still be applied: allowed). */
    long total = th_wait_leads(&srv, 50 + n + 1, 30000), prev = -1;
    for (int i = 0; i < 100 && total != prev; i++) {
        usleep(300000);
        prev = total;
        total = th_count_leads(&srv);
    }
    n = k9_seen(&srv, seen, MAXID);
    assert_true(n >= acked && n <= possible);
    assert_int_equal(total, 50 + n + 1);
    fprintf(stderr, "# acknowledged %d, possibly sent %d, leads %ld: none lost, none twice\n", acked, possible, n);
    free(seen);
    th_stop(&srv, SIGTERM);
}

/* ---- the bus on a real broker -------------------------------------------- */

static cs_bus *open_bus(const char *prefix, int partitions, cs_config *cfg, char *err, size_t errlen)
{
    cs_config_defaults(cfg);
    cfg->partitions = partitions;
    free(cfg->kafka_topic_prefix);
    cfg->kafka_topic_prefix = cs_strdup(prefix);
    cfg->kafka_timeout_ms = 15000;
    char url[200];
    snprintf(url, sizeof url, "kafka://%s", bootstrap);
    return cs_bus_kafka_open(url, cfg, err, errlen);
}

struct first {
    int64_t offset;
    int64_t append_us;
    int     n;
    char    value[64];
};

static int on_first(const cs_rec *r, void *arg)
{
    struct first *f = arg;
    if (f->n++ == 0) {
        f->offset = r->offset;
        f->append_us = r->append_us;
        snprintf(f->value, sizeof f->value, "%.*s", (int)r->value_len, r->value);
    }
    return 0;
}

static void test_bus_topic_time_and_groups(void **state)
{
    (void)state;
    char err[1024] = "";
    cs_config cfg;
    cs_bus *bus = open_bus("bus-", 6, &cfg, err, sizeof err);
    if (!bus) fprintf(stderr, "# %s\n", err);
    assert_non_null(bus); /* created with 6 partitions */
    cs_msg m = {.key = "acc_time", .key_len = 8, .value = "before", .value_len = 6, .ts_us = cs_now_us()};
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, &m, 1), 0);
    int p = m.partition;
    assert_int_equal(p, cs_partition_for("acc_time", 8, 6));
    usleep(50000);
    int64_t between = cs_now_us();
    usleep(50000);
    cs_msg m2 = {.key = "acc_time", .key_len = 8, .value = "after", .value_len = 5, .ts_us = cs_now_us()};
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, &m2, 1), 0);
    assert_int_equal(m2.offset, m.offset + 1);
    assert_int_equal(bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p), m2.offset + 1);
    /* Log-append time: the broker's clock (LogAppendTime) is this machine's. */
    assert_int_equal(bus->ops->offset_for_time(bus, CS_TOPIC_EVENTS, p, between), m2.offset);
    assert_int_equal(bus->ops->offset_for_time(bus, CS_TOPIC_EVENTS, p, 0), 0);
    assert_int_equal(bus->ops->offset_for_time(bus, CS_TOPIC_EVENTS, p, cs_now_us() + 3600000000LL), m2.offset + 1);
    struct first f = {0};
    assert_int_equal(bus->ops->fetch(bus, CS_TOPIC_EVENTS, p, m2.offset, 10, on_first, &f), 1);
    assert_string_equal(f.value, "after");
    assert_true(f.append_us >= between - 1000 && f.append_us <= cs_now_us());
    assert_int_equal(bus->ops->start_offset(bus, CS_TOPIC_EVENTS, p), 0);

    /* Group offsets on Kafka's group coordinator. */
    assert_int_equal(bus->ops->commit(bus, "pipeline", CS_TOPIC_EVENTS, p, 2), 0);
    int64_t got = -1;
    for (int i = 0; i < 100 && got != 2; i++) {
        got = bus->ops->committed(bus, "pipeline", CS_TOPIC_EVENTS, p);
        if (got != 2) usleep(50000);
    }
    assert_int_equal(got, 2);
    bus->ops->close(bus);
    cs_config_free(&cfg);

    /* Another partition count for the same topic: refused by name. */
    assert_null(open_bus("bus-", 4, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "bus-events"));
    assert_non_null(strstr(err, "has 6 partitions but log.partitions is 4"));
    cs_config_free(&cfg);
}

/* Keys for the client tests: account ids and email-domain keys. */
enum { CP = 6, CN = 400 };
static char ckeys[CN][48];

static void write_keys(const char *path)
{
    FILE *kf = fopen(path, "w");
    assert_non_null(kf);
    for (int i = 0; i < CN; i++) {
        if (i % 2) snprintf(ckeys[i], sizeof ckeys[i], "acc_%d", i * 7919);
        else snprintf(ckeys[i], sizeof ckeys[i], "domain:company%d.example", i);
        fprintf(kf, "%s\n", ckeys[i]);
    }
    fclose(kf);
}

/* Run a client that prints "partition<TAB>offset<TAB>key" per key; fill
 * parts and check each against Kafka's formula as cs_partition_for has it. */
static void client_partitions(const char *name, const char *cmd_fmt, int *parts)
{
    char keyfile[400], outfile[400], cmd[3400];
    snprintf(keyfile, sizeof keyfile, "%s/keys.txt", kdir);
    snprintf(outfile, sizeof outfile, "%s/%s.out", kdir, name);
    write_keys(keyfile);
    char run[1600];
    snprintf(run, sizeof run, cmd_fmt, bootstrap, "clients-events");
    snprintf(cmd, sizeof cmd, "%s < '%s' > '%s' 2>'%s/%s.err'", run, keyfile, outfile, kdir, name);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s/%s.err' | sed 's/^/# /' >&2", kdir, name);
        if (system(cmd) != 0) fprintf(stderr, "# no %s.err\n", name);
    }
    assert_int_equal(rc, 0);
    FILE *of = fopen(outfile, "r");
    assert_non_null(of);
    int rows = 0;
    char line[200];
    while (fgets(line, sizeof line, of) && rows < CN) {
        int part;
        long long off;
        char key[100];
        assert_int_equal(sscanf(line, "%d\t%lld\t%99s", &part, &off, key), 3);
        assert_string_equal(key, ckeys[rows]);
        parts[rows] = part;
        /* the client's partition == Kafka's murmur2 formula == ours */
        assert_int_equal(part, cs_partition_for(ckeys[rows], strlen(ckeys[rows]), CP));
        rows++;
    }
    fclose(of);
    assert_int_equal(rows, CN);
}

/* crmstream (librdkafka, murmur2_random) puts the keys where the client
 * did, and reads the client's records back from offset 0. */
static void crmstream_agrees(const int *parts, const char *value_prefix)
{
    char err[1024] = "";
    cs_config cfg;
    cs_bus *bus = open_bus("clients-", CP, &cfg, err, sizeof err);
    if (!bus) fprintf(stderr, "# %s\n", err);
    assert_non_null(bus);
    static cs_msg msgs[CN];
    for (int i = 0; i < CN; i++)
        msgs[i] = (cs_msg){.key = ckeys[i], .key_len = strlen(ckeys[i]), .value = "c", .value_len = 1, .ts_us = cs_now_us()};
    assert_int_equal(bus->ops->produce(bus, CS_TOPIC_EVENTS, msgs, CN), 0);
    for (int i = 0; i < CN; i++) assert_int_equal(msgs[i].partition, parts[i]);
    struct first f = {0};
    int64_t end = bus->ops->end_offset(bus, CS_TOPIC_EVENTS, parts[0]);
    assert_true(end > 0);
    assert_true(bus->ops->fetch(bus, CS_TOPIC_EVENTS, parts[0], 0, (size_t)end, on_first, &f) > 0);
    assert_int_equal(f.offset, 0);
    assert_int_equal(strncmp(f.value, value_prefix, strlen(value_prefix)), 0);
    bus->ops->close(bus);
    cs_config_free(&cfg);
}

/* Kafka's own Java producer: the reference partitioner. */
static void test_java_producer_partitions_agree(void **state)
{
    (void)state;
    /* the topic first, with CP partitions (a client would auto-create it
     * with the broker's num.partitions) */
    char err[1024] = "";
    cs_config cfg;
    cs_bus *bus = open_bus("clients-", CP, &cfg, err, sizeof err);
    assert_non_null(bus);
    bus->ops->close(bus);
    cs_config_free(&cfg);
    static int parts[CN];
    client_partitions("java",
                      "java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
                      "-Dlog4j2.configurationFile=tests/kafka/log4j2.properties "
                      "-cp \"$(cat tests/kafka/classpath.txt)\" tests/kafka/KeyPartitions.java %s %s",
                      parts);
    crmstream_agrees(parts, "java:");
}

/* kafkajs 2.2.4 (tests/kafka/node_modules, `make deps`). */
static void test_kafkajs_producer_partitions_agree(void **state)
{
    (void)state;
    if (access("tests/kafka/node_modules/kafkajs/package.json", R_OK) != 0) skip();
    static int parts[CN];
    client_partitions("kafkajs", "node tests/kafka/kafkajs_keys.js %s %s", parts);
    for (int i = 0; i < CN; i++) assert_int_equal(parts[i], cs_partition_for(ckeys[i], strlen(ckeys[i]), CP));
}


/* ---- consumer-group membership on the real broker -------------------------- */

enum { GP = 8 };
static pthread_mutex_t own_mu = PTHREAD_MUTEX_INITIALIZER;
static int owner[GP], overlaps;

struct member {
    int     id;
    cs_bus *bus;
    cs_config cfg;
};

/* Ownership as the members' on_change calls report it; a revoked partition
 * is "in use" for 200 ms more (the in-flight batch) before it is let go. */
static void on_change(void *arg, const int *owned, int n)
{
    struct member *m = arg;
    int mine[GP] = {0};
    for (int i = 0; i < n; i++) mine[owned[i]] = 1;
    pthread_mutex_lock(&own_mu);
    int revoked = 0;
    for (int p = 0; p < GP; p++) revoked |= owner[p] == m->id && !mine[p];
    pthread_mutex_unlock(&own_mu);
    if (revoked) usleep(200000);
    pthread_mutex_lock(&own_mu);
    for (int p = 0; p < GP; p++) {
        if (owner[p] == m->id && !mine[p]) owner[p] = -1;
        if (mine[p]) {
            if (owner[p] != -1 && owner[p] != m->id) overlaps++;
            owner[p] = m->id;
        }
    }
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

static int wait_owned(int a, int na, int b, int nb)
{
    for (int i = 0; i < 1200; i++) {
        if (owned_by(a) == na && owned_by(b) == nb) return 1;
        usleep(50000);
    }
    fprintf(stderr, "# member %d owns %d (want %d), member %d owns %d (want %d)\n", a, owned_by(a), na, b, owned_by(b),
            nb);
    return 0;
}

/* librdkafka 2.0.2's classic consumer group (cooperative-sticky) on Kafka
 * 4.4.0: two members share 8 partitions 4 + 4, never one partition twice;
 * one leaves and the other owns all 8. */
static void test_group_membership(void **state)
{
    (void)state;
    for (int p = 0; p < GP; p++) owner[p] = -1;
    static struct member a = {.id = 1}, b = {.id = 2};
    char err[1024] = "";
    a.bus = open_bus("grp-", GP, &a.cfg, err, sizeof err);
    if (!a.bus) fprintf(stderr, "# %s\n", err);
    assert_non_null(a.bus);
    b.bus = open_bus("grp-", GP, &b.cfg, err, sizeof err);
    assert_non_null(b.bus);
    int64_t t0 = cs_mono_us();
    assert_int_equal(a.bus->ops->join(a.bus, "pipeline", CS_TOPIC_EVENTS, on_change, &a), 0);
    assert_true(wait_owned(1, GP, 2, 0));
    assert_int_equal(b.bus->ops->join(b.bus, "pipeline", CS_TOPIC_EVENTS, on_change, &b), 0);
    assert_true(wait_owned(1, GP / 2, 2, GP / 2));
    fprintf(stderr, "# two members own 4 + 4 after %.1f s\n", (double)(cs_mono_us() - t0) / 1e6);
    /* Group offsets through the member (the group has members now). */
    assert_int_equal(a.bus->ops->commit(a.bus, "pipeline", CS_TOPIC_EVENTS, 0, 0), 0);
    t0 = cs_mono_us();
    b.bus->ops->leave(b.bus, "pipeline");
    assert_int_equal(owned_by(2), 0);
    assert_true(wait_owned(1, GP, 2, 0));
    fprintf(stderr, "# after leave the survivor owns all 8 in %.1f s\n", (double)(cs_mono_us() - t0) / 1e6);
    assert_int_equal(overlaps, 0);
    b.bus->ops->close(b.bus);
    cs_config_free(&b.cfg);
    a.bus->ops->close(a.bus);
    cs_config_free(&a.cfg);
}

static int group_setup(void **state)
{
    (void)state;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    stop_broker();
    return 0;
}

int main(void)
{
    cs_log_set_level(CS_LOG_WARN);
    char why[512] = "";
    int64_t t0 = cs_mono_us();
    if (start_broker(why, sizeof why) != 0) {
        stop_broker();
        printf("1..1\nok 1 - kafka real-broker tests # SKIP %s\n", why);
        return 0;
    }
    fprintf(stderr, "# kafka broker at %s, started in %.1f s\n", bootstrap, (double)(cs_mono_us() - t0) / 1e6);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_topic_time_and_groups),
        cmocka_unit_test(test_group_membership),
        cmocka_unit_test(test_java_producer_partitions_agree),
        cmocka_unit_test(test_kafkajs_producer_partitions_agree),
        cmocka_unit_test_teardown(test_serve_on_kafka_survives_sigkill, serve_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
