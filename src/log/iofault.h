/*
 * log/iofault — a test implementation of the log's I/O table (log/io.h):
 * fault injection and simulated power loss, in the style of SQLite's
 * src/test6.c. Used by the unit and fault tests; the product never installs
 * it.
 *
 * Operations pass through to the real file system (a test's temp dir) while
 * the layer remembers what is not yet durable:
 *   - per file, every write and truncate since its last fdatasync, with the
 *     bytes it replaced (a pre-image), so a power loss can undo it;
 *   - per directory, every create, rename, unlink and mkdir since the last
 *     fsync_dir of that directory. Unlinked and overwritten files are kept in
 *     a trash directory until then, so a power loss can bring them back.
 *
 * Faults: the Nth operation matching a mask fails with an errno (once or
 * from then on), or a pwrite is short (writes half, returns half).
 * Crash: at the Nth operation matching a mask the machine "stops": that and
 * every later operation fails with EIO (close still closes). The test then
 * closes its objects and calls cs_iof_power_loss(), which damages the real
 * files the way a power cut may: each unsynced write is kept, dropped,
 * zeroed, garbled or torn; unsynced directory operations are undone (or, in
 * KEEP mode, kept). After that the directory holds exactly what a real disk
 * could hold after the cut, and the test reopens it with cs_io_real.
 *
 * One global state guarded by a mutex (tests are single-process). Never used
 * with more than CS_IOF_MAX_FD file descriptors.
 */
#ifndef CS_LOG_IOFAULT_H
#define CS_LOG_IOFAULT_H

#include <stdint.h>

#include "log/io.h"

#define CS_IOF_MAX_FD 4096

enum cs_iof_op {
    CS_IOF_OPEN = 1 << 0,
    CS_IOF_PREAD = 1 << 1,
    CS_IOF_PWRITE = 1 << 2,
    CS_IOF_SYNC = 1 << 3,       /* fdatasync */
    CS_IOF_TRUNC = 1 << 4,
    CS_IOF_FALLOC = 1 << 5,
    CS_IOF_FSIZE = 1 << 6,
    CS_IOF_CLOSE = 1 << 7,
    CS_IOF_RENAME = 1 << 8,
    CS_IOF_UNLINK = 1 << 9,
    CS_IOF_MKDIR = 1 << 10,
    CS_IOF_DIRSYNC = 1 << 11,
    /* Operations that change the disk: what "every I/O operation" of a crash
     * enumeration walks through. */
    CS_IOF_MUTATING = CS_IOF_OPEN | CS_IOF_PWRITE | CS_IOF_SYNC | CS_IOF_TRUNC | CS_IOF_FALLOC |
                      CS_IOF_RENAME | CS_IOF_UNLINK | CS_IOF_MKDIR | CS_IOF_DIRSYNC,
    CS_IOF_ALL = (1 << 12) - 1,
};

/* How a power loss treats each unsynced write. */
enum cs_iof_loss {
    CS_IOF_LOSE_KEEP,     /* the write reached the disk (dir ops kept too) */
    CS_IOF_LOSE_DROP,     /* the write never happened */
    CS_IOF_LOSE_ZERO,     /* the written range reads as zeros */
    CS_IOF_LOSE_GARBLE,   /* the written range holds random bytes */
    CS_IOF_LOSE_RANDOM,   /* each write independently: keep, drop, zero, garble or torn */
};

/* Reset all state (faults, counters, pending operations). trash_dir must be
 * on the same file system as the files under test; it is created. */
void cs_iof_reset(const char *trash_dir);
/* The I/O table to pass to the log. */
const cs_io_ops *cs_iof_ops(void);

/* Fail the nth (1-based) operation matching mask with err; when persistent,
 * every later matching operation fails too. n = 0 clears the rule. */
void cs_iof_fail(unsigned mask, long n, int err, int persistent);
/* Make the nth pwrite (1-based) short: half the bytes land, half is
 * returned. When persistent, every later pwrite too. */
void cs_iof_short_write(long n, int persistent);
/* Crash at the nth operation matching mask (n = 0 clears). */
void cs_iof_crash_at(unsigned mask, long n);
/* Operations seen so far that match mask. */
long cs_iof_count(unsigned mask);
/* 1 once a crash point was reached. */
int cs_iof_crashed(void);
/* Faults injected so far (failed or short operations). */
long cs_iof_faults(void);

/* Apply a power loss now (call after closing every fd of the objects under
 * test): damage unsynced writes per mode (seeded), undo unsynced directory
 * operations unless mode is KEEP, then reset the state. Returns the number
 * of unsynced operations that were damaged or undone. */
long cs_iof_power_loss(enum cs_iof_loss mode, uint64_t seed);

#endif
