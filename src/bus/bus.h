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
 * kafka://host:port[,host:port] (or the bare broker list). Topic
 * "<kafka.topic_prefix>events" with log.partitions partitions is created if
 * missing; one with another partition count is refused. Group offsets go to
 * Kafka group "<kafka.group_prefix><group>". NULL with a named error in err
 * (broker unreachable within kafka.timeout_ms, partition count mismatch). */
cs_bus *cs_bus_kafka_open(const char *url, const cs_config *cfg, char *err, size_t errlen);

/* Partition of a key on this bus (of the "events" topic). */
int cs_bus_partition(const cs_bus *bus, const char *key, size_t len);
/* Partitions of a topic: 1 for "leads", bus->partitions otherwise. */
int cs_bus_topic_partitions(const cs_bus *bus, const char *topic);

#endif
