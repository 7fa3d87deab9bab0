/*
 * bus — the interface between producers (ingest) and consumers (pipeline)
 * of partitioned topics, declared as a struct of function pointers so the
 * embedded log and Apache Kafka are interchangeable.
 *
 * Owns nothing itself; a backend owns its storage. Nothing above this
 * interface may know which backend runs. Keys are partitioned with Kafka's
 * murmur2 (core/hash.h), so backends agree on partitions.
 */
#ifndef CS_BUS_BUS_H
#define CS_BUS_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "log/log.h"
#include "log/record.h"

/* Topics the product uses. */
#define CS_TOPIC_EVENTS "events"
/* The leads lane: lead and signup events in ingest order, one partition
 * (DESIGN-BRIEF §3.5). Ingest appends them here before "events". */
#define CS_TOPIC_LEADS "leads"
/* Dead letters of events (Kafka bus: a topic with the events' partition
 * count; the embedded bus keeps them in the store). */
#define CS_TOPIC_DLQ "events.dlq"

typedef struct cs_bus cs_bus;

/* A message to produce: key, value, ingest time. produce() sets partition
 * and offset. */
typedef struct cs_msg {
    const char *key;
    size_t      key_len;
    const char *value;
    size_t      value_len;
    int64_t     ts_us;
    int         partition;   /* out */
    int64_t     offset;      /* out */
} cs_msg;

struct cs_bus_ops {
    const char *name;
    /* Append msgs durably (per the fsync policy); 0, or -1 with errno
     * (nothing of a failed partition's batch is kept). */
    int (*produce)(cs_bus *bus, const char *topic, cs_msg *msgs, size_t n);
    /* Deliver up to max records of topic/partition from offset `from`.
     * Returns the count, or -1 on a read error. */
    int (*fetch)(cs_bus *bus, const char *topic, int partition, int64_t from, size_t max,
                 cs_rec_cb cb, void *arg);
    /* Next offset to be written (the high watermark). */
    int64_t (*end_offset)(cs_bus *bus, const char *topic, int partition);
    /* Block until something is produced after `seen` (a value returned by an
     * earlier call; start with 0) or timeout; returns the new sequence. */
    uint64_t (*wait)(cs_bus *bus, uint64_t seen, int timeout_ms);
    /* Wake every waiter (shutdown). */
    void (*wakeup)(cs_bus *bus);
    void (*close)(cs_bus *bus);
    /* First offset whose log-append time is >= ts_us (Kafka's
     * ListOffsets by timestamp); the end offset when nothing is that new;
     * -1 on error. */
    int64_t (*offset_for_time)(cs_bus *bus, const char *topic, int partition, int64_t ts_us);
    /* Durably store consumer group `group`'s next offset to consume on
     * topic/partition (registering the group); 0, or -1 with errno. */
    int (*commit)(cs_bus *bus, const char *group, const char *topic, int partition, int64_t next);
    /* The group's committed next offset; -1 when the group has none. */
    int64_t (*committed)(cs_bus *bus, const char *group, const char *topic, int partition);
    /* First offset still kept (retention moves it; fetch below it starts
     * there). */
    int64_t (*start_offset)(cs_bus *bus, const char *topic, int partition);

    /* Consumer-group membership (optional: NULL on the embedded bus, where
     * the one process owns every partition; callers then own them all).
     *
     * join() makes this process a member of consumer group `group` (the
     * Kafka group "<kafka.group_prefix><group>") on `topic` and returns at
     * once (0, or -1 with errno: EINVAL unknown topic, EEXIST already
     * joined to `group`, ENOMEM, EIO). From then on on_change(arg, owned,
     * n) tells the caller the full set of partitions it owns, ascending,
     * each time the set changes (the first call comes once the group has
     * assigned; n may be 0). The owned array is valid during the call only.
     *
     * The contract that keeps two members from ever processing a partition
     * at once:
     *  - on_change runs on the bus's group thread (or, for the final call,
     *    on the thread calling leave() or close()), never concurrently with
     *    itself, and never while a bus lock is held: the caller may call any
     *    bus operation from it (fetch, commit, ...) except leave() and
     *    close(), which wait for the group thread.
     *  - When partitions are taken away, on_change is called with the
     *    smaller set BEFORE the group is told they are released, and the
     *    group hands them to another member only after on_change returns. So
     *    on_change must return only once the caller has stopped using the
     *    revoked partitions: finish (or abandon) the in-flight batch, commit
     *    it to the store, then return. The group waits for it up to
     *    kafka.rebalance_timeout_ms; past that this member is expelled.
     *  - New partitions are added after the group has assigned them; the
     *    caller restores their state from its own offsets (the store); the
     *    group's Kafka offsets are for lag monitoring only (commit()).
     *  - A member that stops heartbeating (killed, stalled, network cut)
     *    for kafka.session_timeout_ms loses its partitions to the others. If
     *    this process notices it was expelled (its partitions were already
     *    given away, "lost"), on_change is still called with the smaller set.
     *    Between the expulsion and that call a stalled member may still
     *    commit a batch: the caller must fence in the store, i.e. its
     *    transaction checks that the partition's stored next offset is still
     *    the one the batch started from (row locked), else rolls back.
     * Partition assignment is cooperative-sticky: a rebalance moves only
     * the partitions that change owner; the others keep being processed.
     * Fetch stays by explicit offset (fetch()); membership only says which
     * partitions to fetch.
     *
     * leave() revokes everything (one last on_change with n = 0, on the
     * calling thread) and leaves the group at once, so the others take over
     * without waiting for the session timeout. close() leaves every group
     * still joined. */
    int (*join)(cs_bus *bus, const char *group, const char *topic,
                void (*on_change)(void *arg, const int *owned, int n), void *arg);
    void (*leave)(cs_bus *bus, const char *group);
};

struct cs_bus {
    const struct cs_bus_ops *ops;
    int   partitions;
    void *impl;
};

/* The embedded backend (src/log): topic directories under data_dir/log.
 * Registers the consumer group "pipeline", so retention keeps what it has
 * not committed. open_cfg takes every log.* key from cfg; open_opts takes
 * log options directly (tests: tiny segments, an I/O table); open keeps the
 * older signature with default segment and retention settings. NULL with a
 * named error in err. */
cs_bus *cs_bus_embedded_open_cfg(const char *data_dir, const cs_config *cfg, char *err, size_t errlen);
cs_bus *cs_bus_embedded_open_opts(const char *data_dir, const cs_topic_opts *o, char *err, size_t errlen);
cs_bus *cs_bus_embedded_open(const char *data_dir, int partitions, int fsync_policy,
                             int fsync_interval_ms, char *err, size_t errlen);
/* The embedded backend's topic (stats, tests); NULL for another backend. */
cs_topic *cs_bus_embedded_topic(cs_bus *bus, const char *topic);

/* The Apache Kafka backend (bus/kafka.c, librdkafka): url is
 * kafka://host:port[,host:port] (or the bare broker list). Topics
 * "<kafka.topic_prefix>events" and "<kafka.topic_prefix>events.dlq" with
 * log.partitions partitions and "<kafka.topic_prefix>leads" with 1 are
 * created if missing; one with another partition count is refused. Group offsets go to
 * Kafka group "<kafka.group_prefix><group>". NULL with a named error in err
 * (broker unreachable within kafka.timeout_ms, partition count mismatch). */
cs_bus *cs_bus_kafka_open(const char *url, const cs_config *cfg, char *err, size_t errlen);

/* Partition count of a topic of this bus: 1 for CS_TOPIC_LEADS,
 * bus->partitions for CS_TOPIC_EVENTS and CS_TOPIC_DLQ, 0 for an unknown
 * topic (bus/bus.c). */
int cs_bus_topic_partitions(const cs_bus *bus, const char *topic);

/* Partition of a key on this bus (of the "events" topic). */
int cs_bus_partition(const cs_bus *bus, const char *key, size_t len);

#endif
