/*
 * log/segment — the on-disk format of the embedded log, and the functions
 * that encode, validate and scan it. Everything that touches bytes on disk
 * is specified here, so the format can be reviewed without the code.
 *
 * Owns the byte layout only; never decides policy (partition.c, log.c do).
 * All integers little-endian. CRC = CRC-32C (Castagnoli, core/hash.h).
 *
 * DIRECTORY LAYOUT (one topic)
 *
 *   <topic>/meta                   topic metadata (partition count)
 *   <topic>/p00000/ ... pNNNNN/    one directory per partition
 *   <topic>/pNNNNN/<base>.seg      a segment: batches, base offset = the
 *                                  offset of its first record, 20 digits
 *   <topic>/pNNNNN/<base>.idx      the segment's index, written when the
 *                                  segment is sealed (rebuildable)
 *   <topic>/groups/<group>.off     a consumer group's committed offsets
 *   <topic>/journal-0, journal-1   the shared commit file (format and recovery
 *                                  in log/journal.h)
 *   *.tmp                          a file being written; removed at open
 *
 *   The last segment of a partition (highest base) is the ACTIVE one: the
 *   only file appended to. Every other segment is SEALED: immutable, and
 *   fully durable before the next segment was created. Segment n's records
 *   are exactly the offsets [base_n, base_{n+1}).
 *
 * BATCH (segment files are a sequence of batches, each one pwrite)
 *
 *     off  size  field
 *       0     4  magic           0x32425343 ("CSB2")
 *       4     4  crc             CRC-32C of bytes [8, total_len)
 *       8     4  total_len       whole batch, header included (56 .. 64 MiB)
 *      12     4  record_count    >= 1
 *      16     8  base_offset     offset of the first record
 *      24     8  append_time     log-append time, microseconds since the
 *                                epoch; never decreases within a partition
 *      32     8  durable_offset  the partition's offset up to which records
 *                                were known durable (fsynced) when this batch
 *                                was written
 *      40     .  records, record_count times:
 *                  4  rec_len    bytes after this field (>= 12)
 *                  8  timestamp  microseconds since the epoch (ingest time)
 *                  4  key_len    (<= rec_len - 12)
 *                  .  key        key_len bytes
 *                  .  value      rec_len - 12 - key_len bytes
 *
 *   COMPRESSED BATCH (log.compression: zstd; Kafka's batch compression):
 *   magic 0x33425343 ("CSB3"), the same 40-byte header (total_len and the
 *   CRC cover the compressed bytes), then
 *      40     4  raw_len         bytes of the records above, uncompressed
 *      44     .  one zstd frame  the records, exactly as in a CSB2 batch
 *   Written only when at least 1/8 smaller than the CSB2 form (random
 *   bytes stay plain: not worth decompressing); a partition may hold both
 *   kinds (the setting can change between runs). Readers decompress; every
 *   check below applies to the decompressed records, and a frame that does
 *   not decompress to exactly raw_len bytes is invalid ("zstd_frame").
 *
 *   A batch is VALID when the magic matches, total_len is in range and lies
 *   inside the file, the CRC matches, the records exactly fill total_len,
 *   base_offset continues the previous batch (the segment's base for the
 *   first), append_time is not below the previous batch's and
 *   durable_offset <= base_offset.
 *
 * INDEX (<base>.idx; one file serves offset and time lookups)
 *
 *     off  size  field
 *       0     4  magic           0x58495343 ("CSIX")
 *       4     4  header_crc      CRC-32C of bytes [8, 64)
 *       8     4  version         1
 *      12     4  entry_count     n
 *      16     8  base_offset     the segment's base
 *      24     8  next_offset     offset after the segment's last record
 *      32     8  segment_size    bytes of the .seg file
 *      40     8  first_time      append_time of the first batch
 *      48     8  last_time       append_time of the last batch
 *      56     4  interval        index interval in bytes
 *      60     4  entries_crc     CRC-32C of the n entries
 *      64  16*n  entries: rel_offset u32 (batch base - segment base),
 *                position u32, append_time i64 of that batch
 *
 *   An entry is kept for the first batch and for each batch starting at
 *   least `interval` bytes after the previous entry. Since append times
 *   never decrease, the same entries answer "batch holding offset o" and
 *   "first batch with append_time >= t" by binary search.
 *
 * TOPIC METADATA (meta, 32 bytes)
 *
 *       0  4 magic 0x4d545343 ("CSTM")   4  4 crc of [8, 32)
 *       8  4 version 1                  12  4 partitions
 *      16  8 created (us)               24  8 reserved (0)
 *
 * GROUP OFFSETS (groups/<group>.off: two slots of S = roundup(32 + 8P, 512)
 * bytes at positions 0 and S; a commit writes the slot of generation g at
 * (g % 2) * S and fdatasyncs, so a torn write damages only the slot being
 * written and the other still holds the previous generation)
 *
 *       0  4 magic 0x4f475343 ("CSGO")   4  4 crc of [8, 32 + 8P)
 *       8  8 generation (>= 1)          16  4 partitions
 *      20  4 reserved (0)               24  8 commit time (us)
 *      32 8P next offset to consume, per partition (0 = from the start)
 *
 *   The valid slot with the highest generation wins; none valid = a named
 *   error (the group's file is damaged), never a silent reset to 0.
 *
 * CLEAN-SHUTDOWN MARKER (pNNNNN/clean, 40 bytes; written at a clean close
 * after the last fdatasync, via clean.tmp + fdatasync + rename + directory
 * fsync; removed, durably, at open before the first append)
 *
 *       0  4 magic 0x4c435343 ("CSCL")   4  4 crc of [8, 40)
 *       8  8 base of the active segment  16  8 its size in bytes
 *      24  8 its next offset            32  8 reserved (0)
 *
 * RECOVERY (at open, per partition)
 *
 *   1. Remove *.tmp (interrupted index or metadata writes) and .idx files
 *      with no segment (an interrupted retention delete).
 *   2. Sealed segments are NOT scanned (restart stays fast): their index
 *      header gives next_offset and size. A missing or damaged index, or one
 *      whose segment_size differs from the file, is rebuilt by scanning the
 *      segment; if that scan does not end exactly at the file end and at the
 *      next segment's base, it is a named error (file, position). A gap
 *      between segments is a named error. Batches of sealed segments are
 *      checked (CRC and structure) when read: a bad one is a named error.
 *   3. The active segment is scanned batch by batch. At the first invalid
 *      batch the rest of the file is searched for a later valid batch whose
 *      durable_offset is above the invalid batch's offsets: if one exists
 *      the damage is inside acknowledged data and the open fails with a
 *      named error; otherwise the bytes from the invalid batch on are a torn
 *      or unsynced tail: they are cut (ftruncate + fdatasync) and the count
 *      is logged.
 *      With a valid clean-shutdown marker for the active segment, every
 *      byte up to its recorded size was acknowledged: an invalid batch or a
 *      shorter file there is a named error, never a cut.
 *   4. The active segment's index lives in memory; it is written at seal.
 */
#ifndef CS_LOG_SEGMENT_H
#define CS_LOG_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "log/io.h"
#include "log/record.h"

#define CS_SEG_BATCH_MAGIC   0x32425343u
#define CS_SEG_ZBATCH_MAGIC  0x33425343u
#define CS_SEG_BATCH_HDR     40
#define CS_SEG_ZBATCH_HDR    44
#define CS_SEG_REC_HDR       16
#define CS_SEG_MAX_BATCH     (64u << 20)
#define CS_SEG_MIN_BATCH     (CS_SEG_BATCH_HDR + CS_SEG_REC_HDR)

#define CS_SEG_IDX_MAGIC     0x58495343u
#define CS_SEG_IDX_HDR       64
#define CS_SEG_IDX_ENTRY     16

#define CS_SEG_META_MAGIC    0x4d545343u
#define CS_SEG_META_SIZE     32

#define CS_SEG_CLEAN_MAGIC   0x4c435343u
#define CS_SEG_CLEAN_SIZE    40

#define CS_SEG_GROUP_MAGIC   0x4f475343u
#define CS_SEG_GROUP_HDR     32

/* One index entry in memory. */
typedef struct cs_ixent {
    int64_t offset;     /* batch base offset */
    int64_t pos;        /* file position */
    int64_t time;       /* batch append time */
} cs_ixent;

/* A segment's index in memory (bytes: 24 per entry). */
typedef struct cs_segix {
    cs_ixent *e;
    size_t    n, cap;
    int64_t   last_pos;     /* position of the last entry (for the interval) */
} cs_segix;

/* What an index header (or a scan) says about a sealed segment. */
typedef struct cs_seginfo {
    int64_t base, next, size, first_time, last_time;
    uint32_t nentries, interval, entries_crc;
} cs_seginfo;

static inline void cs_put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void cs_put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline uint32_t cs_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t cs_get64(const uint8_t *p) { return (uint64_t)cs_get32(p) | (uint64_t)cs_get32(p + 4) << 32; }

/* Size of the batch encoding recs[0..n). 0 when over CS_SEG_MAX_BATCH. */
size_t cs_seg_batch_size(const cs_rec *recs, size_t n);
/* Encode records into out (cs_seg_batch_size bytes); the header fields that
 * depend on the partition's state are set by cs_seg_batch_seal. */
void cs_seg_batch_encode(uint8_t *out, size_t total, const cs_rec *recs, size_t n);
void cs_seg_batch_seal(uint8_t *b, int64_t base, int64_t append_us, int64_t durable);

/* The CSB3 form of the encoded (sealed or not) CSB2 batch b of total bytes,
 * compressed at zstd `level`: its size, with *out a new buffer (the
 * caller's to free; seal it like any batch). 0 when compression would not
 * save 1/8 (or the batch is too small to try): keep b. */
size_t cs_seg_batch_compress(const uint8_t *b, size_t total, int level, uint8_t **out);

/* Decoding untrusted bytes: every field is bounds-checked; on failure the
 * checker names the field and the byte position relative to the batch. */
typedef struct cs_batch_err {
    const char *what;   /* "magic", "crc", "record", ... */
    size_t      at;     /* byte within the batch */
} cs_batch_err;

/* A reader's scratch for decompressed records (grows to the largest batch
 * read; at most CS_SEG_MAX_BATCH) and its zstd context. Zero-initialize. */
typedef struct cs_segbuf {
    uint8_t *p;
    size_t   cap;
    void    *dctx;
} cs_segbuf;
void cs_segbuf_free(cs_segbuf *sb);

/* Validate a complete batch of `total` bytes in b (header included). base:
 * the expected base offset, or -1 for any. min_time: the append time it may
 * not be below. Returns 1 valid, 0 invalid (with *e set). cs_seg_batch_check
 * also sets *recs and *rlen (when recs is not NULL) to the records, which for a
 * compressed batch live in sb until its next use. */
int cs_seg_batch_check(const uint8_t *b, size_t total, int64_t base, int64_t min_time, cs_batch_err *e,
                       cs_segbuf *sb, const uint8_t **recs, size_t *rlen);
int cs_seg_batch_valid(const uint8_t *b, size_t total, int64_t base, int64_t min_time, cs_batch_err *e);
/* A batch's magic: CSB2 (plain) or CSB3 (compressed). */
static inline int cs_seg_batch_magic(uint32_t m) { return m == CS_SEG_BATCH_MAGIC || m == CS_SEG_ZBATCH_MAGIC; }
/* Header fields of a validated batch. */
static inline uint32_t cs_seg_batch_len(const uint8_t *b) { return cs_get32(b + 8); }
static inline uint32_t cs_seg_batch_count(const uint8_t *b) { return cs_get32(b + 12); }
static inline int64_t cs_seg_batch_base(const uint8_t *b) { return (int64_t)cs_get64(b + 16); }
static inline int64_t cs_seg_batch_time(const uint8_t *b) { return (int64_t)cs_get64(b + 24); }
static inline int64_t cs_seg_batch_durable(const uint8_t *b) { return (int64_t)cs_get64(b + 32); }

/* Call cb for each record of a valid batch b, whose records are recs (from
 * cs_seg_batch_check), with offset >= from; stops when cb returns non-zero
 * or *left reaches 0. Returns records delivered, and sets *stopped when cb
 * asked to stop. */
size_t cs_seg_batch_deliver(const uint8_t *b, const uint8_t *recs, int64_t from, size_t *left, cs_rec_cb cb,
                            void *arg, int *stopped);

/* Index in memory. */
void cs_segix_add(cs_segix *ix, int64_t offset, int64_t pos, int64_t time, uint32_t interval);
void cs_segix_free(cs_segix *ix);
/* Entry of the batch holding offset o (the last with offset <= o); 0 when empty. */
const cs_ixent *cs_segix_find_offset(const cs_segix *ix, int64_t o);
/* The last entry with time < t, or the first entry; NULL when empty. */
const cs_ixent *cs_segix_find_time(const cs_segix *ix, int64_t t);

/* Result of scanning a segment file from position 0. */
typedef struct cs_segscan {
    int64_t  valid_end;      /* bytes of valid batches */
    int64_t  next;           /* offset after the last valid batch */
    int64_t  first_time, last_time;
    int64_t  file_size;
    int64_t  bad_pos;        /* first invalid batch, or -1 */
    const char *bad_what;
    int64_t  durable_claim;  /* highest durable_offset of a valid batch found after bad_pos, or -1 */
} cs_segscan;

/* Scan fd (a segment with base offset base) batch by batch, filling ix (may
 * be NULL). min_time: append time the first batch may not be below. -1 on an
 * I/O error (errno set), else 0 with *r filled. When look_past_damage, the
 * bytes after an invalid batch are searched for a valid batch (see
 * RECOVERY step 3) to set durable_claim. */
int cs_seg_scan(const cs_io_ops *io, int fd, int64_t base, int64_t min_time, uint32_t interval, cs_segix *ix,
                int look_past_damage, cs_segscan *r);

/* Where a reader found a damaged batch. */
typedef struct cs_segbad {
    int64_t     pos;
    const char *what;   /* the failing field, or "read" */
    int         err;    /* errno of a failed read, else 0 */
} cs_segbad;

/* Read and deliver the batches in [pos, limit) of fd; *expect is the base
 * offset of the batch at pos (advanced past each batch read), tmin the
 * lowest append time allowed. Delivers records >= from while *left > 0.
 * Returns records delivered, or -1 with *bad set. */
int cs_seg_read(const cs_io_ops *io, int fd, int64_t pos, int64_t limit, int64_t *expect, int64_t tmin, int64_t from,
                size_t *left, cs_rec_cb cb, void *arg, int *stopped, cs_segbad *bad);
/* From the batch at pos (base offset expect), the first batch whose append
 * time is >= ts: 1 and *off = its base; 0 and *off = the offset after the
 * last batch when none; -1 with *bad on a damaged batch. */
int cs_seg_find_time(const cs_io_ops *io, int fd, int64_t pos, int64_t limit, int64_t expect, int64_t ts,
                     int64_t *off, cs_segbad *bad);

/* Index files. write: tmp + fdatasync + rename (the caller fsyncs the dir).
 * read_header: 0 valid, -1 I/O error or missing (errno), 1 damaged.
 * read_entries: 0, -1 I/O, 1 damaged. */
int cs_seg_index_write(const cs_io_ops *io, const char *path, const cs_seginfo *si, const cs_segix *ix);
int cs_seg_index_read_header(const cs_io_ops *io, const char *path, cs_seginfo *si);
int cs_seg_index_read_entries(const cs_io_ops *io, const char *path, const cs_seginfo *si, cs_segix *ix);

#endif
