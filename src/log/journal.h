/*
 * log/journal — one commit file shared by a topic's partitions, so that a
 * write that touches many partitions (an ingest request spreads its events
 * over all of them) is made durable by ONE fdatasync instead of one per
 * partition file. Used with log.fsync always and more than one partition
 * (log.journal_bytes > 0); measured in docs/BENCHMARKS.md "ingest".
 *
 * HOW. Under the journal lock each batch is written to its partition's
 * active segment (page cache only) and a copy appended to the journal; a
 * group commit fdatasyncs the journal (one sync for every batch of every
 * partition written meanwhile); then the batches are published to readers.
 * The segments are synced later, at a CHECKPOINT: two journal files
 * alternate; when the current one is full the appender that finds it so
 * syncs it, switches to the other (waiting, if need be, until that one's
 * checkpoint is done: the bound on unsynced segment data is two files) and
 * then fdatasyncs every partition, after which the full file is free.
 * When a write cannot go through the journal (a request larger than a
 * file, a failed journal write), its partitions are fdatasynced instead:
 * the journal is a faster path to the same guarantee, never a weaker one.
 *
 * FORMAT  <topic>/journal-0 and <topic>/journal-1, little-endian, CRC-32C:
 *   header, 64 bytes at offset 0:
 *      0  4  magic       0x4a4a5343 ("CSJJ")
 *      4  4  crc         of bytes [8, 64)
 *      8  4  version     1
 *     12  4  partitions  the topic's partition count
 *     16  8  generation  higher = newer; the two files never share one
 *     24  8  salt        fresh for every generation
 *   records from offset 64, back to back:
 *      0  4  magic       0x524a5343 ("CSJR")
 *      4  4  crc         of bytes [8, 24 + len)
 *      8  8  salt        the header's salt
 *     16  4  partition
 *     20  4  len         bytes of the batch that follows
 *     24  .  batch       exactly as written to the segment (segment.h)
 *   A file's records end at the first one whose magic, salt, length,
 *   partition or CRC does not match: the zeros written ahead of the end
 *   (so that appends do not change the file size, which would cost each
 *   fdatasync a metadata write), a torn write, or an older generation's
 *   records left behind when the file was reused.
 *
 * RECOVERY (cs_journal_open, after every partition recovered its own
 * segments, cutting torn tails): the files with a valid header, older
 * generation first, records in order. A batch the partition already has is
 * skipped; a batch that starts where the partition ends is appended; a
 * batch beyond that is a named error (acknowledged offsets in neither
 * place). Then every partition is fdatasynced and file 0 starts a new
 * generation. The files exist only when the journal was used; when the
 * journal is off they are still replayed, then removed.
 */
#ifndef CS_LOG_JOURNAL_H
#define CS_LOG_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "log/io.h"
#include "log/partition.h"

#define CS_JOURNAL_HDR 64
#define CS_JOURNAL_REC_HDR 24

typedef struct cs_journal cs_journal;

/* Recover from the journal files in dir (if any) into parts. enabled:
 * keep a journal of file_bytes per file for appends (returns it); when 0,
 * the files are removed after recovery and NULL is returned with err "".
 * NULL with a named error in err on failure. */
cs_journal *cs_journal_open(const char *dir, const cs_io_ops *io, cs_part **parts, int nparts, int enabled,
                            int64_t file_bytes, char *err, size_t errlen);
/* The caller synced every partition first (cs_part_sync). */
void cs_journal_close(cs_journal *j);

/* One partition's share of a write: an encoded batch (cs_seg_batch_encode). */
typedef struct cs_jbatch {
    int        partition;
    uint8_t   *b;
    size_t     total, n;
    cs_part_wr w;        /* out: where it went */
    int        written;  /* out: 1 when it is durable (even if a later batch failed) */
} cs_jbatch;

/* Write every batch and return when they are durable and visible: 0, or
 * -1 with errno of the first batch that failed (earlier ones are durable,
 * later ones not written). */
int cs_journal_append(cs_journal *j, cs_jbatch *bs, size_t nb);

typedef struct cs_journal_stats {
    int64_t commits;      /* journal fdatasyncs (group commits) */
    int64_t records;      /* batches written to the journal */
    int64_t checkpoints;  /* full files whose partitions were synced */
    int64_t fallbacks;    /* writes made durable by partition syncs instead */
    int64_t file_bytes;   /* the size of each of the two files */
} cs_journal_stats;
void cs_journal_get_stats(cs_journal *j, cs_journal_stats *st);

#endif
