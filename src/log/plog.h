/*
 * log/plog — LEGACY single-file partition, kept only for bench/log_append.c
 * until it moves to log/log.h (the product uses log/log.h; this file does
 * not go through the I/O table of log/io.h). One partition of a topic: an
 * append-only file of CRC-checked record batches with dense 64-bit offsets,
 * group commit and recovery.
 *
 * Owns the partition file and its in-memory batch index. Never interprets
 * record keys or values. Readers only ever see bytes that are durable under
 * the configured fsync policy.
 *
 * ON-DISK FORMAT (all integers little-endian)
 *
 *   The file is a sequence of batches, each written by one pwrite(2):
 *
 *     off  size  field
 *       0     4  magic          0x31425343 ("CSB1")
 *       4     4  crc            CRC-32C of bytes [8, total_len)
 *       8     4  total_len      whole batch, header included (32 .. 64 MiB)
 *      12     4  record_count   >= 1
 *      16     8  base_offset    offset of the first record
 *      24     8  append_time    microseconds since the epoch (log-append time)
 *      32     .  records, record_count times:
 *                  4  rec_len   bytes after this field (>= 12)
 *                  8  timestamp microseconds since the epoch (ingest time)
 *                  4  key_len   (<= rec_len - 12)
 *                  .  key       key_len bytes
 *                  .  value     rec_len - 12 - key_len bytes
 *
 *   Validity: a batch is valid when its magic matches, total_len is in range
 *   and fits in the file, the CRC matches, base_offset equals the previous
 *   batch's base_offset + record_count (0 for the first), and the records
 *   exactly fill total_len.
 *
 *   Recovery: scan from the start; stop at the first invalid batch and
 *   truncate the file there (a torn or unsynced tail after a crash); log the
 *   number of bytes cut. Offsets continue from the last valid batch.
 *
 *   Durability: with fsync=always an append returns only after fdatasync of
 *   its batch. Concurrent appends share one fdatasync (group commit): a
 *   writer that finds a sync in flight waits for the next one, which covers
 *   every batch written before it started. A failed fdatasync is fatal: the
 *   process logs it and exits, acknowledging nothing of that batch.
 */
#ifndef CS_LOG_PLOG_H
#define CS_LOG_PLOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "log/record.h"

#define CS_PLOG_MAGIC       0x31425343u
#define CS_PLOG_HDR         32
#define CS_PLOG_REC_HDR     16
#define CS_PLOG_MAX_BATCH   (64u << 20)

typedef struct cs_plog cs_plog;

/* Open or create path and recover it. Returns NULL with err filled. */
cs_plog *cs_plog_open(const char *path, int fsync_policy, int fsync_interval_ms, char *err,
                      size_t errlen);
void cs_plog_close(cs_plog *pl);

/* Append n records as one batch; on return (0) they are durable under the
 * policy and recs[i].offset is set. -1 with errno on a write error (nothing
 * of the batch is kept). A failed fsync does not return. */
int cs_plog_append(cs_plog *pl, cs_rec *recs, size_t n);

/* Offset the next record will get, counting only durable records. */
int64_t cs_plog_end(cs_plog *pl);
/* Bytes cut from the tail by recovery at open. */
int64_t cs_plog_truncated_bytes(cs_plog *pl);

/* Read records with offset >= from, at most max of them. Returns how many
 * were delivered, or -1 on an I/O or checksum error. */
int cs_plog_read(cs_plog *pl, int64_t from, size_t max, cs_rec_cb cb, void *arg);

/* Flush (for interval/never policies) — called periodically and at close. */
int cs_plog_sync(cs_plog *pl);

#endif
