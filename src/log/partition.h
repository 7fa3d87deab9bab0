/*
 * log/partition — one partition: its segments, appends with group commit,
 * segment roll, recovery, reads, time lookup and segment deletion.
 * Internal to src/log (log.c drives it); the format is in segment.h.
 */
#ifndef CS_LOG_PARTITION_H
#define CS_LOG_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "log/log.h"

typedef struct cs_part cs_part;

cs_part *cs_part_open(const char *dir, int id, const cs_topic_opts *o, char *err, size_t errlen);
void cs_part_close(cs_part *p);
int cs_part_append(cs_part *p, cs_rec *recs, size_t n);

/* The journal's path (log/journal.h): write a batch encoded by
 * cs_seg_batch_encode (sealed here: base, append time, durable claim) at the
 * end of the partition, neither durable nor visible yet; then, once the
 * journal holds it durably, publish it to readers. cs_part_sync makes
 * everything written durable and visible (the journal's checkpoint). */
typedef struct cs_part_wr {
    int64_t base;       /* first offset of the batch */
    int64_t pos, next;  /* active segment position and offset after it */
    int64_t time;       /* its append time */
} cs_part_wr;
int cs_part_write(cs_part *p, uint8_t *b, size_t total, size_t n, int64_t now_us, cs_part_wr *w);
void cs_part_publish(cs_part *p, const cs_part_wr *w);
/* Recovery: append a sealed batch from the journal when the partition ends
 * where it starts; nothing when the partition already has it; -1 with a
 * named error in err when offsets between are missing. */
int cs_part_replay(cs_part *p, uint8_t *b, size_t len, char *err, size_t errlen);
int cs_part_read(cs_part *p, int64_t from, size_t max, cs_rec_cb cb, void *arg);
int64_t cs_part_end(cs_part *p);
int64_t cs_part_start(cs_part *p);
int64_t cs_part_offset_for_time(cs_part *p, int64_t ts_us);
int cs_part_sync(cs_part *p);
/* Delete sealed segments per the options; min_consumed: the lowest next
 * offset over registered groups, or -1 when there are none. */
int cs_part_retain(cs_part *p, int64_t now_us, int64_t min_consumed);
/* 1 when retention may have work (cheap, for the append path). */
int cs_part_retention_due(cs_part *p, int64_t now_us);
void cs_part_stats(cs_part *p, cs_topic_stats *st);
/* Copy the last named error into buf (empty when none). */
void cs_part_errmsg(cs_part *p, char *buf, size_t len);

#endif
