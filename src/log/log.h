/*
 * log — the embedded durable log: one topic = P partitions of bounded
 * segment files with sparse offset/time indexes, group commit, recovery,
 * retention and consumer-group offsets. The on-disk format and the recovery
 * algorithm are specified in log/segment.h.
 *
 * Owns the files under its topic directory, all accessed through the I/O
 * table of log/io.h. Never interprets record keys or values (the bus picks
 * partitions). Readers only ever see records that are durable under the
 * fsync policy.
 *
 * Memory per partition: one struct per segment (~200 B), the active
 * segment's index (24 B per index entry: segment_bytes / index_interval
 * entries at most, 384 KiB for 64 MiB / 4 KiB) and at most
 * CS_LOG_IX_CACHE sealed indexes loaded for readers (same bound each).
 * File descriptors: the active segment's, plus one per sealed segment that
 * was read since open (closed when retention deletes it).
 *
 * Fsync policies (log.fsync):
 *   always        an append returns after fdatasync of its batch; concurrent
 *                 appenders share one fdatasync (group commit). Loss window 0.
 *                 With more than one partition the fdatasync is of the
 *                 topic's journal (log/journal.h), shared by all partitions.
 *   interval:<ms> appends return after write(2); a sync runs when an append
 *                 finds the last one older than <ms> and at close. Loss
 *                 window: <ms> plus the time to the next append.
 *   never         the OS writes back (~30 s on Linux). Loss window: that.
 * A failed fdatasync is fatal (log/io.h): nothing of its batch is
 * acknowledged.
 */
#ifndef CS_LOG_LOG_H
#define CS_LOG_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "log/io.h"
#include "log/record.h"

#define CS_LOG_IX_CACHE 4
#define CS_LOG_GROUP_NAME_MAX 64

typedef struct cs_topic cs_topic;

typedef struct cs_topic_opts {
    int              partitions;          /* must match the topic's metadata */
    int              fsync_policy;        /* enum cs_fsync_policy (core/config.h) */
    int              fsync_interval_ms;
    int64_t          segment_bytes;       /* roll when the next batch would pass it */
    uint32_t         index_interval;      /* bytes between index entries */
    int64_t          retention_ms;        /* 0: no age limit */
    int64_t          retention_bytes;     /* per partition; 0: no limit */
    int              preallocate;         /* reserve segment_bytes at segment creation */
    int64_t          journal_bytes;       /* fsync always, > 1 partition: the shared commit
                                           * file's size (two of them; log/journal.h); 0: off */
    int              compression;         /* 1: zstd-compress each batch (segment.h "CSB3") */
    int              compression_level;   /* zstd level (negative: faster) */
    const cs_io_ops *io;                  /* NULL: cs_io_real */
} cs_topic_opts;

/* Defaults: 8 partitions, fsync always, 64 MiB segments, 4 KiB index
 * interval, 7 days, no byte limit, preallocate, 32 MiB journal files, no
 * compression (the config's default is zstd: log.compression). */
void cs_topic_opts_default(cs_topic_opts *o);

/* Open (creating when absent) the topic in dir and recover it. NULL with a
 * named error in err ("<file>: <why>") on failure. */
cs_topic *cs_topic_open(const char *dir, const cs_topic_opts *o, char *err, size_t errlen);
/* Syncs (weaker policies) and frees. NULL is fine. */
void cs_topic_close(cs_topic *lg);
int cs_topic_partitions(const cs_topic *lg);

/* Append n records to one partition as one batch. On 0 they are durable
 * under the policy and recs[i].offset is set. -1 with errno: EMSGSIZE (too
 * big), ENOSPC (no room for a new segment or a short write), EIO (the
 * partition is dead after a fatal error), other write errors. Nothing of a
 * failed batch is kept or acknowledged. */
int cs_topic_append(cs_topic *lg, int partition, cs_rec *recs, size_t n);

/* One partition's part of a multi-partition append. */
typedef struct cs_topic_batch {
    int     partition;
    cs_rec *recs;
    size_t  n;
} cs_topic_batch;
/* Append to several partitions at once (distinct partitions, each as one
 * batch) and return when all are durable: with the journal, one commit for
 * all of them. 0, or -1 with errno of the first failure (earlier batches
 * are durable and their offsets set; later ones are not written). */
int cs_topic_append_multi(cs_topic *lg, cs_topic_batch *b, size_t nb);

/* Read records with offset >= from (from the log start if lower), at most
 * max. Returns how many were delivered, or -1 on an I/O error or a damaged
 * batch (a named error is logged and kept in cs_topic_errmsg). */
int cs_topic_read(cs_topic *lg, int partition, int64_t from, size_t max, cs_rec_cb cb, void *arg);

/* Next offset to be given (durable records only), and the first offset
 * still kept (retention moves it). */
int64_t cs_topic_end(cs_topic *lg, int partition);
int64_t cs_topic_start(cs_topic *lg, int partition);
/* First offset whose batch's append time is >= ts_us; the end offset when
 * none is; the start offset when ts_us is before everything. -1 on error. */
int64_t cs_topic_offset_for_time(cs_topic *lg, int partition, int64_t ts_us);

/* fdatasync every partition (interval/never policies, and at close). */
int cs_topic_sync(cs_topic *lg);

/* Consumer groups. Names: [A-Za-z0-9._-], 1..64 chars. A group is
 * registered once its file exists; retention never deletes what a
 * registered group has not consumed, except when the byte budget forces it
 * (an error alert, counted in lost_events). */
int cs_topic_group_register(cs_topic *lg, const char *group);
/* Store `next` (the next offset to consume) durably; -1 with errno. */
int cs_topic_group_commit(cs_topic *lg, const char *group, int partition, int64_t next);
/* The committed next offset; -1 when the group is not registered. */
int64_t cs_topic_group_committed(cs_topic *lg, const char *group, int partition);

/* Apply retention now (also runs after each segment roll). Returns the
 * number of segments deleted, -1 on an I/O error. */
int cs_topic_retain(cs_topic *lg, int64_t now_us);

typedef struct cs_topic_stats {
    int64_t truncated_bytes;    /* cut from torn tails at open */
    int64_t indexes_rebuilt;    /* missing or damaged, rebuilt from segments */
    int64_t temp_removed;       /* stray *.tmp files removed at open */
    int64_t segments;           /* current */
    int64_t bytes;              /* current, segment files */
    int64_t segments_deleted;   /* by retention */
    int64_t lost_events;        /* deleted before a registered group consumed them */
    int64_t read_errors;        /* damaged batches found by readers */
    int64_t journal_replayed;   /* records restored from the journal at open */
    int64_t journal_commits;    /* journal fdatasyncs (topic-wide; 0 without a journal) */
    int64_t journal_checkpoints;/* full journal files whose partitions were synced */
    int64_t journal_fallbacks;  /* writes made durable by partition syncs instead */
} cs_topic_stats;

/* Sum over partitions (partition -1) or one partition. */
void cs_topic_get_stats(cs_topic *lg, int partition, cs_topic_stats *st);
/* The last named error (a reader's damaged batch, a failed open...). */
const char *cs_topic_errmsg(cs_topic *lg);

#endif
