/*
 * bus/kafka — the bus over Apache Kafka, through librdkafka (Debian 12:
 * 2.0.2). Same contract as bus/embedded; nothing above bus.h knows which
 * one runs.
 *
 * produce   one idempotent producer (acks=all, partitioner murmur2_random,
 *           so Java, kafkajs and we agree on every key's partition).
 *           produce() returns only after every message's delivery report:
 *           0 when all were acknowledged by the in-sync replicas, -1 (EIO)
 *           when any failed, so the HTTP answer waits for Kafka's
 *           acknowledgement. Messages carry the ingest time in microseconds
 *           in a header (Kafka timestamps are milliseconds).
 * fetch     a legacy per-partition consumer per reading thread (the
 *           pipeline, warehouse destinations and ingest's start-up scan read
 *           at different offsets): consume_start at an explicit offset; a
 *           fetch from another offset than where the partition's queue
 *           stands restarts it there. Reads are served from the prefetched
 *           queue (stopped after 5 s idle); a fetch never waits for records
 *           the end offset does not announce. CRCs are checked (check.crcs).
 * end       high watermarks, refreshed every 100 ms by a watcher thread (one
 *           ListOffsets request for all partitions) and raised at once by our
 *           own delivery reports and reads, so end_offset() never blocks on
 *           the network (ingest calls it on every request for backpressure).
 * wait      a condition variable signalled by delivery reports and by the
 *           watcher when a watermark moves.
 * commit    Kafka group offsets (group "<kafka.group_prefix><group>"),
 *           asynchronous: they are for lag monitoring only; the pipeline's
 *           authoritative offsets are in the store (DESIGN-BRIEF §3.3).
 * topics    "<prefix>events" and "<prefix>events.dlq" with log.partitions
 *           partitions, "<prefix>leads" with 1, created at open with
 *           message.timestamp.type=LogAppendTime (append_us is the broker's
 *           append time, as in the embedded log); an existing topic with
 *           another partition count is refused, since keys would move.
 * join      consumer-group membership (bus.h has the contract): one
 *           high-level consumer per joined group, subscribed with the
 *           cooperative-sticky assignor, polled by its own thread which runs
 *           the rebalance callback. Assigned partitions are paused at once:
 *           the member never consumes through the group; the caller fetches
 *           by explicit offset (the store's). Revocation calls on_change
 *           before incremental_unassign, so the partition reaches its next
 *           owner only after the caller let go of it.
 */
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus/bus.h"
#include "core/logging.h"
#include "core/util.h"
#include "metrics/catalog.h"
#include "metrics/metrics.h"

#define TS_HEADER "cs_ts_us"
#define MAX_GROUPS 8
#define REFRESH_MS 100
#define MAX_READERS 64 /* reading threads: pipeline workers + lane, warehouse destinations, ingest start-up; a reader only prefetches the partitions its thread reads */
#define READER_IDLE_US (5 * 1000000LL) /* stop an idle reader's prefetch */

struct kpart {
    int64_t hw;        /* high watermark: max of what the watcher, our
                          delivery reports and our reads have seen */
};

/* The bus's topics: logical name (bus.h), name in Kafka, partitions. */
enum { T_EVENTS, T_LEADS, T_DLQ, NTOPICS };
static const char *const topic_names[NTOPICS] = {CS_TOPIC_EVENTS, CS_TOPIC_LEADS, CS_TOPIC_DLQ};

struct ktopic {
    const char       *name;
    char             *full;        /* prefix + name */
    int               partitions;
    struct kpart     *parts;
    rd_kafka_topic_t *crkt;        /* on kb->cons */
};

/* A reading thread's consumer (the pipeline, each warehouse destination,
 * ingest's start-up scan read at different offsets: one shared queue per
 * partition would be restarted back and forth). */
struct kcur {
    int     started;   /* consume_start done */
    int64_t pos;       /* offset this reader delivers next (held, else queue) */
    rd_kafka_message_t *held; /* the record a callback stopped at without
                                 taking it (the pipeline's time budget): the
                                 next fetch from its offset starts with it,
                                 no restart of the queue */
};

/* Stop a reader's partition consumer (and drop a held record first:
 * librdkafka waits for every message of a handle to be destroyed). */
static void cur_stop(rd_kafka_topic_t *rkt, struct kcur *kp, int p)
{
    if (kp->held) rd_kafka_message_destroy(kp->held), kp->held = NULL;
    if (kp->started) rd_kafka_consume_stop(rkt, p);
    kp->started = 0;
}

struct kreader {
    int               used;
    pthread_t         owner;
    pthread_mutex_t   mu;
    rd_kafka_t       *rk;
    rd_kafka_topic_t *rkt[NTOPICS];
    struct kcur      *cur[NTOPICS];
    int64_t           last_us;   /* last fetch (mono) */
};

struct kgroup {
    char       *name;
    rd_kafka_t *rk;
};

/* A joined consumer group (k_join). */
struct kjoin {
    char          *name;         /* the caller's group name */
    cs_bus        *bus;
    struct ktopic *t;
    rd_kafka_t    *rk;           /* high-level consumer, member of the group */
    pthread_t      thr;
    int            stop;
    unsigned char *owned;        /* per partition of t */
    void         (*on_change)(void *arg, const int *owned, int n);
    void          *arg;
};

struct kbus {
    char            *brokers;
    struct ktopic    topics[NTOPICS];
    int              timeout_ms, session_ms, rebalance_ms;
    rd_kafka_t      *prod;         /* producer, admin, metadata */
    rd_kafka_t      *cons;         /* metadata, watermarks, offsets by time */

    pthread_mutex_t  mu;           /* hw, seq, stopping, delivery state */
    pthread_cond_t   cond;         /* seq moved, a produce call completed */
    uint64_t         seq;
    int              stopping;

    pthread_mutex_t  readers_mu;   /* slots of readers[] */
    struct kreader   readers[MAX_READERS];
    pthread_mutex_t  group_mu;
    struct kgroup    groups[MAX_GROUPS];
    struct kjoin    *joins[MAX_GROUPS];
    char            *group_prefix;

    pthread_t        poller, watcher;
    int              threads;
    int              stop;
};

/* One produce() call: the delivery reports count it down. */
struct pcall {
    struct ktopic *t;
    cs_msg *msgs;
    size_t  pending;
    rd_kafka_resp_err_t err;
};

struct pslot {
    struct pcall *call;
    size_t        idx;
};

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Enough JSON escaping for librdkafka's messages in our log fields. */
static void esc(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') out[o++] = '\\', out[o++] = (char)ch;
        else if (ch < 0x20) o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        else out[o++] = (char)ch;
    }
    out[o] = 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (strcmp(fac, "FAIL") == 0) return; /* the same event reaches error_cb */
    char m[1024], f[64];
    esc(m, sizeof m, buf);
    esc(f, sizeof f, fac);
    enum cs_log_level l = level <= 3 ? CS_LOG_ERROR : level == 4 ? CS_LOG_WARN : level <= 6 ? CS_LOG_INFO : CS_LOG_DEBUG;
    cs_log(l, "kafka", "librdkafka", "\"facility\":\"%s\",\"detail\":\"%s\"", f, m);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    char m[1024];
    esc(m, sizeof m, reason);
    int fatal = err == RD_KAFKA_RESP_ERR__FATAL;
    char fr[512] = "";
    if (fatal) {
        char why[400];
        rd_kafka_fatal_error(rk, why, sizeof why);
        esc(fr, sizeof fr, why);
    }
    cs_log(fatal ? CS_LOG_ERROR : CS_LOG_WARN, "kafka", fatal ? "fatal client error: produce fails from now on" : "client error",
           "\"client\":\"%s\",\"error\":\"%s\",\"detail\":\"%s\"%s%s%s", rd_kafka_name(rk),
           rd_kafka_err2name((rd_kafka_resp_err_t)err), m, fatal ? ",\"fatal\":\"" : "", fr, fatal ? "\"" : "");
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct kbus *kb = opaque;
    struct pslot *s = m->_private;
    if (!s) return;
    pthread_mutex_lock(&kb->mu);
    struct pcall *c = s->call;
    if (m->err) {
        if (!c->err) c->err = m->err;
    } else {
        cs_msg *msg = &c->msgs[s->idx];
        msg->partition = m->partition;
        msg->offset = m->offset;
        if (m->partition >= 0 && m->partition < c->t->partitions && m->offset >= 0)
            c->t->parts[m->partition].hw = max64(c->t->parts[m->partition].hw, m->offset + 1);
    }
    if (--c->pending == 0) pthread_cond_broadcast(&kb->cond);
    pthread_mutex_unlock(&kb->mu);
}

static int set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    char e[256];
    if (rd_kafka_conf_set(conf, k, v, e, sizeof e) != RD_KAFKA_CONF_OK) {
        if (snprintf(err, errlen, "librdkafka %s=%s: %s", k, v, e) < 0) err[0] = 0;
        return -1;
    }
    return 0;
}

static rd_kafka_conf_t *base_conf(struct kbus *kb, const char *client_id, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, kb);
    if (set(conf, "bootstrap.servers", kb->brokers, err, errlen) || set(conf, "client.id", client_id, err, errlen) ||
        /* idle connections closed by the broker are normal: not a warning */
        set(conf, "log.connection.close", "false", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

/* ---- watermarks ---------------------------------------------------------- */

/* The topic of a Kafka topic name; NULL if not ours. */
static struct ktopic *by_full(struct kbus *kb, const char *full)
{
    for (int i = 0; i < NTOPICS; i++)
        if (kb->topics[i].full && strcmp(kb->topics[i].full, full) == 0) return &kb->topics[i];
    return NULL;
}

/* One ListOffsets(LATEST) for every partition of every topic; raises hw,
 * bumps seq when anything moved. 0, or -1 with the error in err. */
static int refresh(cs_bus *bus, int timeout_ms, char *err, size_t errlen)
{
    struct kbus *kb = bus->impl;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(bus->partitions * 2 + 1);
    for (int i = 0; i < NTOPICS; i++)
        for (int p = 0; p < kb->topics[i].partitions; p++) /* timestamp -1: latest */
            rd_kafka_topic_partition_list_add(l, kb->topics[i].full, p)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(kb->cons, l, timeout_ms);
    int rc = 0, moved = 0;
    if (e) {
        if (err) snprintf(err, errlen, "ListOffsets on topic %s: %s", kb->topics[T_EVENTS].full, rd_kafka_err2str(e));
        rc = -1;
    } else {
        pthread_mutex_lock(&kb->mu);
        for (int i = 0; i < l->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &l->elems[i];
            struct ktopic *t = by_full(kb, tp->topic);
            if (!t || tp->err || tp->partition < 0 || tp->partition >= t->partitions || tp->offset < 0) {
                if (err && tp->err && rc == 0)
                    snprintf(err, errlen, "ListOffsets on %s/%d: %s", tp->topic, tp->partition, rd_kafka_err2str(tp->err));
                if (tp->err) rc = -1;
                continue;
            }
            if (tp->offset > t->parts[tp->partition].hw) t->parts[tp->partition].hw = tp->offset, moved = 1;
        }
        if (moved) {
            kb->seq++;
            pthread_cond_broadcast(&kb->cond);
        }
        pthread_mutex_unlock(&kb->mu);
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

static void *poller_main(void *arg)
{
    struct kbus *kb = arg;
    while (!__atomic_load_n(&kb->stop, __ATOMIC_ACQUIRE)) rd_kafka_poll(kb->prod, 50);
    return NULL;
}

static void *watcher_main(void *arg)
{
    cs_bus *bus = arg;
    struct kbus *kb = bus->impl;
    int64_t last_err_log = 0;
    while (!__atomic_load_n(&kb->stop, __ATOMIC_ACQUIRE)) {
        rd_kafka_poll(kb->cons, 0); /* error and log callbacks of the consumer */
        /* the group handles' asynchronous commit results (else they pile up) */
        int64_t now = cs_mono_us();
        for (int i = 0; i < MAX_READERS; i++) {
            struct kreader *r = &kb->readers[i];
            if (!__atomic_load_n(&r->used, __ATOMIC_ACQUIRE) || pthread_mutex_trylock(&r->mu) != 0) continue;
            rd_kafka_poll(r->rk, 0);
            if (now - r->last_us > READER_IDLE_US)
                for (int t = 0; t < NTOPICS; t++)
                    for (int p = 0; p < kb->topics[t].partitions; p++)
                        cur_stop(r->rkt[t], &r->cur[t][p], p);
            pthread_mutex_unlock(&r->mu);
        }
        if (pthread_mutex_trylock(&kb->group_mu) == 0) { /* committed() may hold it for a round trip */
            for (int i = 0; i < MAX_GROUPS; i++)
                if (kb->groups[i].rk) rd_kafka_poll(kb->groups[i].rk, 0);
            pthread_mutex_unlock(&kb->group_mu);
        }
        char err[512];
        if (refresh(bus, 2000, err, sizeof err) != 0 && cs_mono_us() - last_err_log > 10 * 1000000LL) {
            char m[600];
            esc(m, sizeof m, err);
            cs_warn("kafka", "cannot read high watermarks", "\"error\":\"%s\"", m);
            last_err_log = cs_mono_us();
        }
        struct timespec ts = {0, REFRESH_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---- the bus operations ----------------------------------------------------- */

/* The bus topic named `topic` (bus.h names); NULL when unknown. */
static struct ktopic *topic_of(struct kbus *kb, const char *topic)
{
    for (int i = 0; topic && i < NTOPICS; i++)
        if (strcmp(topic, kb->topics[i].name) == 0) return &kb->topics[i];
    return NULL;
}

/* The topic when partition is one of its partitions; NULL else. */
static struct ktopic *topic_ok(cs_bus *bus, const char *topic, int partition)
{
    struct ktopic *t = topic_of(bus->impl, topic);
    return t && partition >= 0 && partition < t->partitions ? t : NULL;
}

static int k_produce(cs_bus *bus, const char *topic, cs_msg *msgs, size_t n)
{
    struct kbus *kb = bus->impl;
    struct ktopic *t = topic_of(kb, topic);
    if (!t) {
        errno = ENOENT;
        return -1;
    }
    if (n == 0) return 0;
    struct pcall call = {.t = t, .msgs = msgs, .pending = 0, .err = RD_KAFKA_RESP_ERR_NO_ERROR};
    struct pslot *slots = cs_malloc(n * sizeof *slots);
    rd_kafka_resp_err_t qerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    int64_t deadline = cs_mono_us() + (int64_t)kb->timeout_ms * 1000;
    for (size_t i = 0; i < n; i++) {
        slots[i] = (struct pslot){&call, i};
        msgs[i].partition = -1;
        msgs[i].offset = -1;
        unsigned char ts[8];
        for (int b = 0; b < 8; b++) ts[b] = (unsigned char)((uint64_t)msgs[i].ts_us >> (56 - 8 * b));
        pthread_mutex_lock(&kb->mu);
        call.pending++;
        pthread_mutex_unlock(&kb->mu);
        for (;;) {
            qerr = rd_kafka_producev(kb->prod, RD_KAFKA_V_TOPIC(t->full),
                                     RD_KAFKA_V_KEY(msgs[i].key, msgs[i].key_len),
                                     RD_KAFKA_V_VALUE((void *)msgs[i].value, msgs[i].value_len),
                                     RD_KAFKA_V_TIMESTAMP(msgs[i].ts_us / 1000),
                                     RD_KAFKA_V_HEADER(TS_HEADER, ts, 8), RD_KAFKA_V_OPAQUE(&slots[i]),
                                     RD_KAFKA_V_END);
            /* A full local queue drains as the poller serves delivery
             * reports: retry until the produce deadline. */
            if (qerr != RD_KAFKA_RESP_ERR__QUEUE_FULL || cs_mono_us() > deadline) break;
            struct timespec w = {0, 2 * 1000000L};
            nanosleep(&w, NULL);
        }
        if (qerr) {
            pthread_mutex_lock(&kb->mu);
            call.pending--;
            pthread_mutex_unlock(&kb->mu);
            break;
        }
    }
    /* Every enqueued message gets exactly one delivery report (success,
     * or failure at message.timeout.ms at the latest): wait for all of
     * them, even after an enqueue failure, since they point into msgs. */
    pthread_mutex_lock(&kb->mu);
    while (call.pending > 0) pthread_cond_wait(&kb->cond, &kb->mu);
    rd_kafka_resp_err_t derr = call.err;
    if (!qerr && !derr) {
        kb->seq++;
        pthread_cond_broadcast(&kb->cond);
    }
    pthread_mutex_unlock(&kb->mu);
    free(slots);
    if (qerr || derr) {
        char m[300];
        esc(m, sizeof m, rd_kafka_err2str(qerr ? qerr : derr));
        cs_error("kafka", "produce failed; nothing acknowledged", "\"topic\":\"%s\",\"messages\":%zu,\"error\":\"%s\"",
                 t->full, n, m);
        errno = qerr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || derr == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
                    ? EMSGSIZE
                    : EIO;
        return -1;
    }
    return 0;
}

static rd_kafka_t *new_consumer(struct kbus *kb, const char *client_id, char *err, size_t errlen);

/* The calling thread's reader, locked (created on first use; with every
 * slot taken, the least recently used one is taken over). NULL on error. */
static struct kreader *get_reader(cs_bus *bus)
{
    struct kbus *kb = bus->impl;
    pthread_t self = pthread_self();
    pthread_mutex_lock(&kb->readers_mu);
    struct kreader *r = NULL, *lru = NULL, *free_slot = NULL;
    for (int i = 0; i < MAX_READERS && !r; i++) {
        struct kreader *x = &kb->readers[i];
        if (!x->used) {
            if (!free_slot) free_slot = x;
        } else if (pthread_equal(x->owner, self)) {
            r = x;
        } else if (!lru || x->last_us < lru->last_us) {
            lru = x;
        }
    }
    if (!r && free_slot) {
        char err[512], cid[64];
        snprintf(cid, sizeof cid, "crmstream-fetch-%d", (int)(free_slot - kb->readers));
        free_slot->rk = new_consumer(kb, cid, err, sizeof err);
        int ok = free_slot->rk != NULL;
        for (int t = 0; ok && t < NTOPICS; t++) {
            rd_kafka_topic_conf_t *tc = rd_kafka_topic_conf_new();
            rd_kafka_topic_conf_set(tc, "auto.offset.reset", "smallest", err, sizeof err);
            free_slot->rkt[t] = rd_kafka_topic_new(free_slot->rk, kb->topics[t].full, tc);
            if (!free_slot->rkt[t]) ok = 0;
        }
        if (!ok) {
            for (int t = 0; t < NTOPICS; t++)
                if (free_slot->rkt[t]) rd_kafka_topic_destroy(free_slot->rkt[t]), free_slot->rkt[t] = NULL;
            if (free_slot->rk) rd_kafka_destroy(free_slot->rk);
            free_slot->rk = NULL;
            cs_error("kafka", "cannot create a reader", "\"topic\":\"%s\"", kb->topics[T_EVENTS].full);
        } else {
            for (int t = 0; t < NTOPICS; t++)
                free_slot->cur[t] = cs_calloc((size_t)kb->topics[t].partitions, sizeof *free_slot->cur[t]);
            pthread_mutex_init(&free_slot->mu, NULL);
            __atomic_store_n(&free_slot->used, 1, __ATOMIC_RELEASE);
            r = free_slot;
        }
    }
    if (!r) r = lru;
    if (r) r->owner = self;
    pthread_mutex_unlock(&kb->readers_mu);
    if (r) pthread_mutex_lock(&r->mu);
    return r;
}

/* Restart the reader's partition consumer at `from` (caller holds r->mu). */
static int restart_at(struct kbus *kb, struct kreader *r, int ti, int p, int64_t from)
{
    struct kcur *kp = &r->cur[ti][p];
    if (kp->started && kp->pos == from) return 0;
    cur_stop(r->rkt[ti], kp, p);
    if (rd_kafka_consume_start(r->rkt[ti], p, from) != 0) {
        char m[300];
        esc(m, sizeof m, rd_kafka_err2str(rd_kafka_last_error()));
        cs_error("kafka", "consume_start failed", "\"topic\":\"%s\",\"partition\":%d,\"offset\":%" PRId64 ",\"error\":\"%s\"",
                 kb->topics[ti].full, p, from, m);
        return -1;
    }
    kp->started = 1;
    kp->pos = from;
    return 0;
}

static int64_t k_end(cs_bus *bus, const char *topic, int partition)
{
    struct kbus *kb = bus->impl;
    struct ktopic *t = topic_ok(bus, topic, partition);
    if (!t) return -1;
    pthread_mutex_lock(&kb->mu);
    int64_t e = t->parts[partition].hw;
    pthread_mutex_unlock(&kb->mu);
    return e;
}

static int k_fetch(cs_bus *bus, const char *topic, int partition, int64_t from, size_t max, cs_rec_cb cb, void *arg)
{
    struct kbus *kb = bus->impl;
    struct ktopic *t = topic_ok(bus, topic, partition);
    if (!t) return -1;
    int ti = (int)(t - kb->topics);
    if (from < 0) from = 0; /* below the log start: auto.offset.reset=smallest */
    if (max == 0 || from >= k_end(bus, topic, partition)) return 0;
    struct kreader *r = get_reader(bus);
    if (!r) return -1;
    r->last_us = cs_mono_us();
    struct kcur *kp = &r->cur[ti][partition];
    rd_kafka_message_t *first = NULL;
    if (kp->held && kp->started) {
        if (from == kp->held->offset) { /* what the last callback stopped at */
            first = kp->held;
            kp->held = NULL;
        } else if (from == kp->held->offset + 1) { /* the caller took it after all */
            rd_kafka_message_destroy(kp->held);
            kp->held = NULL;
            kp->pos = from; /* where the queue stands */
        }
    }
    if (!first && restart_at(kb, r, ti, partition, from) != 0) {
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    int n = 0;
    int64_t deadline = cs_mono_us() + (int64_t)kb->timeout_ms * 1000;
    while ((size_t)n < max) {
        /* The first record is known to exist (from < end): wait for the
         * prefetcher; after it take only what is already queued. */
        int wait_ms = 0;
        if (n == 0) {
            int64_t left = (deadline - cs_mono_us()) / 1000;
            if (left <= 0) break;
            wait_ms = left > 100 ? 100 : (int)left;
        }
        rd_kafka_message_t *m = first ? first : rd_kafka_consume(r->rkt[ti], partition, wait_ms);
        first = NULL;
        if (!m) {
            if (n == 0 && !__atomic_load_n(&kb->stopping, __ATOMIC_ACQUIRE)) continue;
            break;
        }
        if (m->err) {
            rd_kafka_resp_err_t e = m->err;
            rd_kafka_message_destroy(m);
            if (e == RD_KAFKA_RESP_ERR__PARTITION_EOF) break;
            char msg[300];
            esc(msg, sizeof msg, rd_kafka_err2str(e));
            cs_error("kafka", "fetch failed", "\"topic\":\"%s\",\"partition\":%d,\"offset\":%" PRId64 ",\"error\":\"%s\"",
                     t->full, partition, kp->pos, msg);
            kp->pos = -1; /* restart at the next fetch */
            if (n == 0) n = -1;
            break;
        }
        if (m->offset < from) { /* cannot happen after a restart; be safe */
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_timestamp_type_t tt;
        int64_t ts_ms = rd_kafka_message_timestamp(m, &tt);
        cs_rec rec = {.offset = m->offset, .key = m->key, .key_len = m->key_len, .value = m->payload,
                      .value_len = m->len, .append_us = ts_ms >= 0 ? ts_ms * 1000 : 0};
        rec.ts_us = rec.append_us;
        rd_kafka_headers_t *hdrs;
        const void *hv;
        size_t hs;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(hdrs, TS_HEADER, &hv, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR && hs == 8) {
            uint64_t v = 0;
            for (int b = 0; b < 8; b++) v = v << 8 | ((const unsigned char *)hv)[b];
            rec.ts_us = (int64_t)v;
        }
        if (!rec.key) rec.key = "", rec.key_len = 0;
        if (!rec.value) rec.value = "", rec.value_len = 0;
        kp->pos = m->offset + 1;
        pthread_mutex_lock(&kb->mu);
        t->parts[partition].hw = max64(t->parts[partition].hw, kp->pos);
        pthread_mutex_unlock(&kb->mu);
        n++;
        if (cb(&rec, arg)) {
            /* Stopped: whether the callback took this record shows in the
             * next fetch's offset; keep it for a fetch from its offset. */
            kp->held = m;
            kp->pos = m->offset;
            break;
        }
        rd_kafka_message_destroy(m);
    }
    r->last_us = cs_mono_us();
    pthread_mutex_unlock(&r->mu);
    return n;
}

static uint64_t k_wait(cs_bus *bus, uint64_t seen, int timeout_ms)
{
    struct kbus *kb = bus->impl;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&kb->mu);
    while (kb->seq == seen && !kb->stopping)
        if (pthread_cond_timedwait(&kb->cond, &kb->mu, &ts) == ETIMEDOUT) break;
    uint64_t s = kb->seq;
    pthread_mutex_unlock(&kb->mu);
    return s;
}

/* Every waiter returns (as on the embedded bus: the caller's own stop flag
 * ends its loop, and a pipeline started again later on this bus waits
 * normally). */
static void k_wakeup(cs_bus *bus)
{
    struct kbus *kb = bus->impl;
    pthread_mutex_lock(&kb->mu);
    kb->seq++;
    pthread_cond_broadcast(&kb->cond);
    pthread_mutex_unlock(&kb->mu);
}

/* Closing: waiters return at once and fetches stop waiting for records. */
static void k_stopping(cs_bus *bus)
{
    struct kbus *kb = bus->impl;
    pthread_mutex_lock(&kb->mu);
    kb->stopping = 1;
    pthread_cond_broadcast(&kb->cond);
    pthread_mutex_unlock(&kb->mu);
}

static int64_t k_start(cs_bus *bus, const char *topic, int partition)
{
    struct kbus *kb = bus->impl;
    struct ktopic *t = topic_ok(bus, topic, partition);
    if (!t) return -1;
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(kb->cons, t->full, partition, &lo, &hi, kb->timeout_ms);
    if (e) {
        /* 0 is safe: a fetch below the log start begins at the start. */
        char m[300];
        esc(m, sizeof m, rd_kafka_err2str(e));
        cs_warn("kafka", "cannot read the log start offset; assuming 0", "\"topic\":\"%s\",\"partition\":%d,\"error\":\"%s\"",
                t->full, partition, m);
        return 0;
    }
    return lo;
}

static int64_t k_offset_for_time(cs_bus *bus, const char *topic, int partition, int64_t ts_us)
{
    struct kbus *kb = bus->impl;
    struct ktopic *t = topic_ok(bus, topic, partition);
    if (!t) return -1;
    /* Kafka keeps milliseconds: a record at t_ms is at or after ts_us
     * when t_ms >= ceil(ts_us / 1000). */
    int64_t ts_ms = ts_us <= 0 ? 0 : (ts_us + 999) / 1000;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, t->full, partition)->offset = ts_ms;
    rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(kb->cons, l, kb->timeout_ms);
    int64_t off = -1;
    if (!e && !l->elems[0].err) {
        off = l->elems[0].offset;
        if (off < 0) { /* nothing that new: the end offset */
            int64_t lo, hi;
            e = rd_kafka_query_watermark_offsets(kb->cons, t->full, partition, &lo, &hi, kb->timeout_ms);
            off = e ? -1 : hi;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return off;
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offs, void *opaque)
{
    (void)offs, (void)opaque;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        cs_warn("kafka", "group offset commit failed (lag monitoring only)", "\"client\":\"%s\",\"error\":\"%s\"",
                rd_kafka_name(rk), rd_kafka_err2name(err));
}

/* The handle that commits for `group`: the member's when this process
 * joined the group (Kafka refuses commits from non-members of a group with
 * members), else one created on first use. Caller holds group_mu. */
static rd_kafka_t *group_handle(struct kbus *kb, const char *group)
{
    for (int i = 0; i < MAX_GROUPS; i++)
        if (kb->joins[i] && strcmp(kb->joins[i]->name, group) == 0) return kb->joins[i]->rk;
    for (int i = 0; i < MAX_GROUPS; i++)
        if (kb->groups[i].name && strcmp(kb->groups[i].name, group) == 0) return kb->groups[i].rk;
    int slot = -1;
    for (int i = 0; i < MAX_GROUPS && slot < 0; i++)
        if (!kb->groups[i].name) slot = i;
    if (slot < 0) return NULL;
    char err[512], gid[300], cid[300];
    snprintf(gid, sizeof gid, "%s%s", kb->group_prefix, group);
    snprintf(cid, sizeof cid, "crmstream-group-%s", group);
    rd_kafka_conf_t *conf = base_conf(kb, cid, err, sizeof err);
    if (!conf) return NULL;
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    /* Never joins (no subscribe): it only commits and reads offsets, which
     * Kafka accepts for a group without members. */
    if (set(conf, "group.id", gid, err, sizeof err) || set(conf, "enable.auto.commit", "false", err, sizeof err) ||
        set(conf, "enable.auto.offset.store", "false", err, sizeof err)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    kb->groups[slot].name = cs_strdup(group);
    kb->groups[slot].rk = rk;
    return rk;
}

static int k_commit(cs_bus *bus, const char *group, const char *topic, int partition, int64_t next)
{
    struct kbus *kb = bus->impl;
    struct ktopic *t = topic_ok(bus, topic, partition);
    if (!t || next < 0) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&kb->group_mu);
    rd_kafka_t *rk = group_handle(kb, group);
    int rc = -1;
    if (rk) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, t->full, partition)->offset = next;
        /* Asynchronous: lag monitoring only, and the pipeline must not
         * wait a round trip per partition per batch. */
        rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 1);
        rd_kafka_topic_partition_list_destroy(l);
        rc = e ? -1 : 0;
        if (e) errno = EIO;
    } else {
        errno = ENOMEM;
    }
    pthread_mutex_unlock(&kb->group_mu);
    return rc;
}

static int64_t k_committed(cs_bus *bus, const char *group, const char *topic, int partition)
{
    struct kbus *kb = bus->impl;
    struct ktopic *t = topic_ok(bus, topic, partition);
    if (!t) return -1;
    pthread_mutex_lock(&kb->group_mu);
    rd_kafka_t *rk = group_handle(kb, group);
    int64_t off = -1;
    if (rk) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, t->full, partition);
        rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, kb->timeout_ms);
        if (!e && !l->elems[0].err && l->elems[0].offset >= 0) off = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
    }
    pthread_mutex_unlock(&kb->group_mu);
    return off;
}

/* ---- consumer-group membership (bus.h: join/leave) ------------------------ */

/* Tell the caller its owned set (called without any bus lock held). */
static void notify(struct kjoin *j)
{
    int n = 0;
    int *owned = cs_malloc(((size_t)j->t->partitions + 1) * sizeof *owned);
    for (int p = 0; p < j->t->partitions; p++)
        if (j->owned[p]) owned[n++] = p;
    char l[300];
    snprintf(l, sizeof l, "group=\"%s\"", j->name);
    cs_gauge_set(cs_metric_series(cs_m.bus_group_partitions, l), n);
    cs_info("kafka", "group partitions", "\"group\":\"%s\",\"topic\":\"%s\",\"owned\":%d", j->name, j->t->full, n);
    j->on_change(j->arg, owned, n);
    free(owned);
}

static void count_change(struct kjoin *j, const char *change)
{
    char l[300];
    snprintf(l, sizeof l, "group=\"%s\",change=\"%s\"", j->name, change);
    cs_metric_inc(cs_m.bus_group_changes, l, 1);
}

/* Mark the list's partitions of our topic owned or not; 1 if any changed. */
static int mark(struct kjoin *j, const rd_kafka_topic_partition_list_t *parts, int own)
{
    int changed = 0;
    for (int i = 0; parts && i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (strcmp(tp->topic, j->t->full) != 0 || tp->partition < 0 || tp->partition >= j->t->partitions) continue;
        if (j->owned[tp->partition] != own) j->owned[tp->partition] = (unsigned char)own, changed = 1;
    }
    return changed;
}

static void log_rebalance_error(struct kjoin *j, const char *what, rd_kafka_error_t *e)
{
    if (!e) return;
    char m[300];
    esc(m, sizeof m, rd_kafka_error_string(e));
    cs_error("kafka", what, "\"group\":\"%s\",\"error\":\"%s\"", j->name, m);
    rd_kafka_error_destroy(e);
}

/* Runs on the group thread (rd_kafka_consumer_poll) or in
 * rd_kafka_consumer_close (leave). Cooperative: only moved partitions are
 * listed. Revocation tells the caller first, then releases. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct kjoin *j = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (cooperative) log_rebalance_error(j, "incremental assign failed", rd_kafka_incremental_assign(rk, parts));
        else rd_kafka_assign(rk, parts);
        /* Never consumed through the group: the caller fetches by offset. */
        rd_kafka_pause_partitions(rk, parts);
        count_change(j, "assigned");
        if (mark(j, parts, 1) || parts->cnt == 0) notify(j);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        count_change(j, rd_kafka_assignment_lost(rk) ? "lost" : "revoked");
        if (rd_kafka_assignment_lost(rk))
            cs_warn("kafka", "group partitions lost (session timed out): other members may own them already",
                    "\"group\":\"%s\",\"partitions\":%d", j->name, parts->cnt);
        if (mark(j, parts, 0)) notify(j); /* returns once the caller let go */
        if (cooperative) log_rebalance_error(j, "incremental unassign failed", rd_kafka_incremental_unassign(rk, parts));
        else rd_kafka_assign(rk, NULL);
    } else {
        cs_error("kafka", "group rebalance failed: dropping every partition", "\"group\":\"%s\",\"error\":\"%s\"", j->name,
                 rd_kafka_err2name(err));
        int any = 0;
        for (int p = 0; p < j->t->partitions; p++) any |= j->owned[p], j->owned[p] = 0;
        if (any) notify(j);
        rd_kafka_assign(rk, NULL);
    }
}

static void *join_main(void *arg)
{
    struct kjoin *j = arg;
    while (!__atomic_load_n(&j->stop, __ATOMIC_ACQUIRE)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(j->rk, 100);
        if (!m) continue;
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            char e[300];
            esc(e, sizeof e, rd_kafka_message_errstr(m));
            cs_warn("kafka", "group consumer error", "\"group\":\"%s\",\"error\":\"%s\"", j->name, e);
        }
        rd_kafka_message_destroy(m); /* records are never consumed here */
    }
    return NULL;
}

static int k_join(cs_bus *bus, const char *group, const char *topic,
                  void (*on_change)(void *arg, const int *owned, int n), void *arg)
{
    struct kbus *kb = bus->impl;
    struct ktopic *t = topic_of(kb, topic);
    if (!t || !group || !*group || !on_change) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&kb->group_mu);
    int slot = -1;
    for (int i = 0; i < MAX_GROUPS; i++) {
        if (kb->joins[i] && strcmp(kb->joins[i]->name, group) == 0) {
            pthread_mutex_unlock(&kb->group_mu);
            errno = EEXIST;
            return -1;
        }
        if (!kb->joins[i] && slot < 0) slot = i;
    }
    pthread_mutex_unlock(&kb->group_mu);
    if (slot < 0) {
        errno = ENOMEM;
        return -1;
    }
    cs_metrics_catalog_init();
    struct kjoin *j = cs_calloc(1, sizeof *j);
    j->name = cs_strdup(group);
    j->bus = bus;
    j->t = t;
    j->owned = cs_calloc((size_t)t->partitions, 1);
    j->on_change = on_change;
    j->arg = arg;
    char err[512], gid[300], cid[300], v[32];
    snprintf(gid, sizeof gid, "%s%s", kb->group_prefix, group);
    snprintf(cid, sizeof cid, "crmstream-member-%s", group);
    rd_kafka_conf_t *conf = base_conf(kb, cid, err, sizeof err);
    int ok = conf != NULL;
    if (ok) {
        rd_kafka_conf_set_opaque(conf, j);
        rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
        rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
        ok = !set(conf, "group.id", gid, err, sizeof err) &&
             !set(conf, "partition.assignment.strategy", "cooperative-sticky", err, sizeof err) &&
             !set(conf, "enable.auto.commit", "false", err, sizeof err) &&
             !set(conf, "enable.auto.offset.store", "false", err, sizeof err) &&
             !set(conf, "enable.partition.eof", "false", err, sizeof err) &&
             /* paused at once; keep what slips through small */
             !set(conf, "queued.max.messages.kbytes", "1024", err, sizeof err);
        snprintf(v, sizeof v, "%d", kb->session_ms);
        ok = ok && !set(conf, "session.timeout.ms", v, err, sizeof err);
        snprintf(v, sizeof v, "%d", kb->session_ms / 3 < 3000 ? kb->session_ms / 3 : 3000);
        ok = ok && !set(conf, "heartbeat.interval.ms", v, err, sizeof err);
        snprintf(v, sizeof v, "%d", kb->rebalance_ms);
        ok = ok && !set(conf, "max.poll.interval.ms", v, err, sizeof err);
    }
    if (ok) {
        j->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
        if (!j->rk) ok = 0;
    }
    if (!ok) {
        if (conf && !j->rk) rd_kafka_conf_destroy(conf);
        cs_error("kafka", "cannot create the group member", "\"group\":\"%s\",\"error\":\"%s\"", group, err);
        free(j->owned), free(j->name), free(j);
        errno = EIO;
        return -1;
    }
    rd_kafka_poll_set_consumer(j->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, t->full, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(j->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e || pthread_create(&j->thr, NULL, join_main, j) != 0) {
        cs_error("kafka", "cannot join the group", "\"group\":\"%s\",\"error\":\"%s\"", gid,
                 e ? rd_kafka_err2name(e) : "thread");
        rd_kafka_destroy(j->rk);
        free(j->owned), free(j->name), free(j);
        errno = EIO;
        return -1;
    }
    pthread_mutex_lock(&kb->group_mu);
    kb->joins[slot] = j;
    pthread_mutex_unlock(&kb->group_mu);
    cs_info("kafka", "joined consumer group", "\"group\":\"%s\",\"topic\":\"%s\",\"assignor\":\"cooperative-sticky\"",
            gid, t->full);
    return 0;
}

static void k_leave(cs_bus *bus, const char *group)
{
    struct kbus *kb = bus->impl;
    struct kjoin *j = NULL;
    int slot = -1;
    pthread_mutex_lock(&kb->group_mu);
    for (int i = 0; i < MAX_GROUPS && !j; i++)
        if (kb->joins[i] && strcmp(kb->joins[i]->name, group) == 0) j = kb->joins[i], slot = i;
    pthread_mutex_unlock(&kb->group_mu);
    if (!j) return;
    __atomic_store_n(&j->stop, 1, __ATOMIC_RELEASE);
    pthread_join(j->thr, NULL);
    /* Revokes (rebalance_cb -> on_change on this thread), commits nothing
     * itself, sends LeaveGroup: the others rebalance at once. */
    rd_kafka_resp_err_t e = rd_kafka_consumer_close(j->rk);
    if (e) cs_warn("kafka", "leaving the group", "\"group\":\"%s\",\"error\":\"%s\"", j->name, rd_kafka_err2name(e));
    int any = 0;
    for (int p = 0; p < j->t->partitions; p++) any |= j->owned[p], j->owned[p] = 0;
    if (any) notify(j);
    pthread_mutex_lock(&kb->group_mu);
    kb->joins[slot] = NULL;
    pthread_mutex_unlock(&kb->group_mu);
    rd_kafka_destroy(j->rk);
    cs_info("kafka", "left consumer group", "\"group\":\"%s\"", j->name);
    free(j->owned), free(j->name), free(j);
}

static void k_close(cs_bus *bus)
{
    if (!bus) return;
    struct kbus *kb = bus->impl;
    if (kb) {
        for (int i = 0; i < MAX_GROUPS; i++) {
            pthread_mutex_lock(&kb->group_mu);
            char *g = kb->joins[i] ? cs_strdup(kb->joins[i]->name) : NULL;
            pthread_mutex_unlock(&kb->group_mu);
            if (g) k_leave(bus, g);
            free(g);
        }
        k_stopping(bus);
        if (kb->prod) rd_kafka_flush(kb->prod, kb->timeout_ms);
        __atomic_store_n(&kb->stop, 1, __ATOMIC_RELEASE);
        if (kb->threads > 0) pthread_join(kb->poller, NULL);
        if (kb->threads > 1) pthread_join(kb->watcher, NULL);
        for (int i = 0; i < MAX_READERS; i++) {
            struct kreader *r = &kb->readers[i];
            if (!r->used) continue;
            for (int t = 0; t < NTOPICS; t++) {
                for (int p = 0; p < kb->topics[t].partitions; p++)
                    cur_stop(r->rkt[t], &r->cur[t][p], p);
                rd_kafka_topic_destroy(r->rkt[t]);
                free(r->cur[t]);
            }
            rd_kafka_destroy(r->rk);
            pthread_mutex_destroy(&r->mu);
        }
        for (int t = 0; t < NTOPICS; t++)
            if (kb->topics[t].crkt) rd_kafka_topic_destroy(kb->topics[t].crkt);
        for (int i = 0; i < MAX_GROUPS; i++)
            if (kb->groups[i].rk) {
                rd_kafka_destroy(kb->groups[i].rk);
                free(kb->groups[i].name);
            }
        if (kb->cons) rd_kafka_destroy(kb->cons);
        if (kb->prod) rd_kafka_destroy(kb->prod);
        pthread_mutex_destroy(&kb->mu);
        pthread_mutex_destroy(&kb->readers_mu);
        pthread_mutex_destroy(&kb->group_mu);
        pthread_cond_destroy(&kb->cond);
        for (int t = 0; t < NTOPICS; t++) free(kb->topics[t].parts), free(kb->topics[t].full);
        free(kb->brokers);
        free(kb->group_prefix);
        free(kb);
    }
    free(bus);
}

static const struct cs_bus_ops kafka_ops = {
    .name = "kafka",
    .produce = k_produce,
    .fetch = k_fetch,
    .end_offset = k_end,
    .wait = k_wait,
    .wakeup = k_wakeup,
    .close = k_close,
    .offset_for_time = k_offset_for_time,
    .commit = k_commit,
    .committed = k_committed,
    .start_offset = k_start,
    .join = k_join,
    .leave = k_leave,
};

/* ---- open ------------------------------------------------------------------- */

/* The topic's partition count from the metadata (asked through the
 * consumer handle, which never asks the broker to auto-create a topic; a
 * producer's metadata request would create it with the broker's
 * num.partitions). Waits until every partition has a leader. >0, 0 when the
 * topic does not exist, -1 with why on other errors. */
static int topic_partitions(struct kbus *kb, struct ktopic *t, int timeout_ms, char *why, size_t whylen)
{
    int64_t deadline = cs_mono_us() + (int64_t)timeout_ms * 1000;
    int have = -1;
    snprintf(why, whylen, "no metadata");
    for (;;) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t me = rd_kafka_metadata(kb->cons, 0, t->crkt, &md, timeout_ms < 5000 ? timeout_ms : 5000);
        int ready = 0;
        if (me) {
            snprintf(why, whylen, "%s", rd_kafka_err2str(me));
        } else if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            have = 0, ready = 1;
        } else if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
            have = md->topics[0].partition_cnt;
            ready = 1;
            for (int i = 0; i < md->topics[0].partition_cnt; i++)
                if (md->topics[0].partitions[i].leader < 0) ready = 0;
            if (!ready) snprintf(why, whylen, "partitions without a leader");
        } else if (md->topic_cnt == 1) {
            snprintf(why, whylen, "%s", rd_kafka_err2str(md->topics[0].err));
        }
        if (md) rd_kafka_metadata_destroy(md);
        if (ready) return have;
        if (cs_mono_us() >= deadline) return -1;
        struct timespec w = {0, 100 * 1000000L};
        nanosleep(&w, NULL);
    }
}

/* Create the topic if missing; check the partition count of the one there. */
static int ensure_topic(struct kbus *kb, struct ktopic *t, int rf, char *err, size_t errlen)
{
    char why[300];
    int partitions = t->partitions;
    int have = topic_partitions(kb, t, kb->timeout_ms, why, sizeof why);
    if (have < 0) {
        snprintf(err, errlen, "topic %s at %s: %s", t->full, kb->brokers, why);
        return -1;
    }
    if (have == 0) {
        char e[512];
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(t->full, partitions, rf, e, sizeof e);
        if (!nt) {
            snprintf(err, errlen, "topic %s: %s", t->full, e);
            return -1;
        }
        /* append_us is the broker's append time, as in the embedded log */
        rd_kafka_NewTopic_set_config(nt, "message.timestamp.type", "LogAppendTime");
        rd_kafka_queue_t *q = rd_kafka_queue_new(kb->prod);
        rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(kb->prod, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_request_timeout(ao, kb->timeout_ms, e, sizeof e);
        rd_kafka_AdminOptions_set_operation_timeout(ao, kb->timeout_ms, e, sizeof e);
        rd_kafka_CreateTopics(kb->prod, &nt, 1, ao, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, kb->timeout_ms + 5000);
        int rc = 0;
        if (!ev) {
            snprintf(err, errlen, "CreateTopics %s: no answer from %s", t->full, kb->brokers);
            rc = -1;
        } else if (rd_kafka_event_error(ev)) {
            snprintf(err, errlen, "CreateTopics %s at %s: %s", t->full, kb->brokers, rd_kafka_event_error_string(ev));
            rc = -1;
        } else {
            size_t cnt;
            const rd_kafka_topic_result_t **res =
                rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
            rd_kafka_resp_err_t te = cnt ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR_NO_ERROR;
            if (te == RD_KAFKA_RESP_ERR_NO_ERROR)
                cs_info("kafka", "topic created", "\"topic\":\"%s\",\"partitions\":%d,\"replication_factor\":%d",
                        t->full, partitions, rf);
            else if (te != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) { /* a concurrent creator is fine */
                snprintf(err, errlen, "CreateTopics %s at %s: %s", t->full, kb->brokers,
                         rd_kafka_topic_result_error_string(res[0]));
                rc = -1;
            }
        }
        if (ev) rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(ao);
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy(nt);
        if (rc) return rc;
        /* Metadata trails a fresh CreateTopics by a moment. */
        int64_t deadline = cs_mono_us() + (int64_t)kb->timeout_ms * 1000;
        do {
            have = topic_partitions(kb, t, kb->timeout_ms, why, sizeof why);
            if (have == 0) {
                struct timespec w = {0, 100 * 1000000L};
                nanosleep(&w, NULL);
            }
        } while (have == 0 && cs_mono_us() < deadline);
        if (have <= 0) {
            snprintf(err, errlen, "topic %s at %s: created but not in the metadata: %s", t->full, kb->brokers,
                     have == 0 ? "unknown topic" : why);
            return -1;
        }
    }
    if (have != partitions && t != &kb->topics[T_EVENTS]) {
        snprintf(err, errlen, "topic %s at %s has %d partitions but crmstream needs %d (%s): delete it or use another "
                 "kafka.topic_prefix", t->full, kb->brokers, have, partitions,
                 partitions == 1 ? "one total order" : "as many as the events topic");
        return -1;
    }
    if (have != partitions) {
        snprintf(err, errlen,
                 "topic %s at %s has %d partitions but log.partitions is %d: a key's partition depends on the count, "
                 "so set log.partitions: %d (or use another kafka.topic_prefix)",
                 t->full, kb->brokers, have, partitions, have);
        return -1;
    }
    return 0;
}

/* A legacy (per-partition, explicit offset) consumer; no group.id, so
 * nothing is ever auto-committed. */
static rd_kafka_t *new_consumer(struct kbus *kb, const char *client_id, char *err, size_t errlen)
{
    char e[512];
    rd_kafka_conf_t *cc = base_conf(kb, client_id, err, errlen);
    if (!cc) return NULL;
    if (set(cc, "fetch.wait.max.ms", "100", err, errlen) || set(cc, "queued.max.messages.kbytes", "4096", err, errlen) ||
        set(cc, "check.crcs", "true", err, errlen) || set(cc, "enable.partition.eof", "false", err, errlen)) {
        rd_kafka_conf_destroy(cc);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(cc);
        snprintf(err, errlen, "librdkafka consumer: %s", e);
    }
    return rk;
}

cs_bus *cs_bus_kafka_open(const char *url, const cs_config *cfg, char *err, size_t errlen)
{
    const char *brokers = strncmp(url, "kafka://", 8) == 0 ? url + 8 : url;
    size_t bl = strcspn(brokers, "/?");
    if (bl == 0) {
        snprintf(err, errlen, "%s: expected kafka://host:port[,host:port]", url);
        return NULL;
    }
    cs_bus *bus = cs_calloc(1, sizeof *bus);
    struct kbus *kb = cs_calloc(1, sizeof *kb);
    bus->ops = &kafka_ops;
    bus->impl = kb;
    bus->partitions = cfg->partitions;
    kb->brokers = cs_strdup(brokers);
    kb->brokers[bl] = 0;
    const char *tp = cfg->kafka_topic_prefix ? cfg->kafka_topic_prefix : "";
    for (int t = 0; t < NTOPICS; t++) {
        struct ktopic *kt = &kb->topics[t];
        kt->name = topic_names[t];
        kt->full = cs_malloc(strlen(tp) + strlen(kt->name) + 1);
        strcat(strcpy(kt->full, tp), kt->name);
        kt->partitions = cs_bus_topic_partitions(bus, kt->name);
        kt->parts = cs_calloc((size_t)kt->partitions, sizeof *kt->parts);
    }
    kb->group_prefix = cs_strdup(cfg->kafka_group_prefix ? cfg->kafka_group_prefix : "");
    kb->timeout_ms = cfg->kafka_timeout_ms > 0 ? (int)cfg->kafka_timeout_ms : 30000;
    kb->session_ms = cfg->kafka_session_timeout_ms > 0 ? (int)cfg->kafka_session_timeout_ms : 10000;
    kb->rebalance_ms = cfg->kafka_rebalance_timeout_ms > 0 ? (int)cfg->kafka_rebalance_timeout_ms : 60000;
    pthread_mutex_init(&kb->mu, NULL);
    pthread_mutex_init(&kb->readers_mu, NULL);
    pthread_mutex_init(&kb->group_mu, NULL);
    pthread_cond_init(&kb->cond, NULL);

    char e[512], tmo[32];
    snprintf(tmo, sizeof tmo, "%d", kb->timeout_ms);
    rd_kafka_conf_t *pc = base_conf(kb, "crmstream", err, errlen);
    if (!pc) goto fail;
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    if (set(pc, "enable.idempotence", "true", err, errlen) || set(pc, "acks", "all", err, errlen) ||
        set(pc, "partitioner", "murmur2_random", err, errlen) || set(pc, "linger.ms", "1", err, errlen) ||
        set(pc, "message.timeout.ms", tmo, err, errlen) ||
        /* bounded memory: ingest's requests are far smaller (QUEUE_FULL
         * is retried until the produce deadline) */
        set(pc, "queue.buffering.max.kbytes", "65536", err, errlen)) {
        rd_kafka_conf_destroy(pc);
        goto fail;
    }
    kb->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, e, sizeof e);
    if (!kb->prod) {
        rd_kafka_conf_destroy(pc);
        snprintf(err, errlen, "librdkafka producer: %s", e);
        goto fail;
    }
    kb->cons = new_consumer(kb, "crmstream-meta", err, errlen);
    if (!kb->cons) goto fail;
    if (pthread_create(&kb->poller, NULL, poller_main, kb) != 0) {
        snprintf(err, errlen, "cannot start the kafka delivery thread");
        goto fail;
    }
    kb->threads = 1;
    for (int t = 0; t < NTOPICS; t++) {
        struct ktopic *kt = &kb->topics[t];
        rd_kafka_topic_conf_t *tc = rd_kafka_topic_conf_new();
        rd_kafka_topic_conf_set(tc, "auto.offset.reset", "smallest", e, sizeof e);
        kt->crkt = rd_kafka_topic_new(kb->cons, kt->full, tc);
        if (!kt->crkt) {
            snprintf(err, errlen, "topic %s: %s", kt->full, rd_kafka_err2str(rd_kafka_last_error()));
            goto fail;
        }
        if (ensure_topic(kb, kt, cfg->kafka_replication_factor, err, errlen)) goto fail;
    }
    /* Exact end offsets before anyone asks (the pipeline compares its
     * stored offsets with them at start). */
    char rerr[512];
    int64_t deadline = cs_mono_us() + (int64_t)kb->timeout_ms * 1000;
    int rrc;
    /* A fresh topic's leaders take a moment ("not leader"): retry. */
    while ((rrc = refresh(bus, kb->timeout_ms, rerr, sizeof rerr)) != 0 && cs_mono_us() < deadline) {
        struct timespec w = {0, 100 * 1000000L};
        nanosleep(&w, NULL);
    }
    if (rrc != 0) {
        snprintf(err, errlen, "%s: %s", kb->brokers, rerr);
        goto fail;
    }
    if (pthread_create(&kb->watcher, NULL, watcher_main, bus) != 0) {
        snprintf(err, errlen, "cannot start the kafka watermark thread");
        goto fail;
    }
    kb->threads = 2;
    cs_info("kafka", "bus opened", "\"brokers\":\"%s\",\"topic\":\"%s\",\"partitions\":%d,\"librdkafka\":\"%s\"", kb->brokers,
            kb->topics[T_EVENTS].full, bus->partitions, rd_kafka_version_str());
    return bus;
fail:
    k_close(bus);
    return NULL;
}
