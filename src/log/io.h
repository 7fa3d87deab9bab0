/*
 * log/io — the one table of file operations the log uses.
 *
 * Every file operation of the log (segments, indexes, topic metadata,
 * consumer-group offsets) goes through a cs_io_ops table, so that tests can
 * replace it: src/log/iofault.h fails operation N (EIO, ENOSPC, short
 * writes) or simulates a power loss at operation N, the way SQLite's test6.c
 * does. cs_io_real is the POSIX implementation. Never buffers, never retries:
 * each call is exactly one system call (fsync_dir: open + fsync + close).
 *
 * A failed fdatasync is fatal (DESIGN-BRIEF §3.4, PostgreSQL's rule): the
 * log calls cs_io_fatal(), which logs and _exit(70)s. Tests install a hook
 * instead; when the hook returns, the caller must treat the object as dead
 * (acknowledge nothing, fail every later call).
 */
#ifndef CS_LOG_IO_H
#define CS_LOG_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct cs_io_ops {
    const char *name;
    /* open(2); returns an fd or -1 with errno. */
    int (*open)(const char *path, int flags, mode_t mode);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    /* May write fewer than n bytes (a short write); callers check. */
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    int (*fdatasync)(int fd);
    int (*ftruncate)(int fd, off_t len);
    /* Reserve [off, off+len) without changing the file size
     * (fallocate FALLOC_FL_KEEP_SIZE). -1 with errno; EOPNOTSUPP when the
     * file system cannot, which callers may ignore. */
    int (*fallocate)(int fd, off_t off, off_t len);
    /* Size of an open file. */
    int (*fsize)(int fd, off_t *size);
    int (*close)(int fd);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
    int (*mkdir)(const char *path, mode_t mode);
    /* Make the directory's entries (creations, renames, unlinks) durable. */
    int (*fsync_dir)(const char *path);
} cs_io_ops;

extern const cs_io_ops cs_io_real;

/* Full write of n bytes at off: 0, or -1 with errno (ENOSPC for a short
 * write that reports no error). */
int cs_io_write_all(const cs_io_ops *io, int fd, const void *buf, size_t n, off_t off);
/* Full read: 0, or -1 with errno (EIO for a short read). */
int cs_io_read_all(const cs_io_ops *io, int fd, void *buf, size_t n, off_t off);

/* Fatal I/O error (a failed fdatasync, a failed cut of a failed write):
 * logs "what" with the file and errno, then calls the hook if one is set,
 * else _exit(70). Returns only when a test hook returns. */
void cs_io_fatal(const char *what, const char *file, int err);
/* Install a hook (tests); NULL restores _exit. Returns the previous one. */
typedef void (*cs_io_fatal_fn)(const char *what, const char *file, int err);
cs_io_fatal_fn cs_io_set_fatal_hook(cs_io_fatal_fn fn);

#endif
