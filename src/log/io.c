/*
 * log/io — the POSIX implementation of the log's I/O table, and the fatal
 * path shared by every log file.
 */
#include "log/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/logging.h"

static int real_open(const char *path, int flags, mode_t mode) { return open(path, flags | O_CLOEXEC, mode); }
static ssize_t real_pread(int fd, void *buf, size_t n, off_t off) { return pread(fd, buf, n, off); }
static ssize_t real_pwrite(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }
static int real_fdatasync(int fd) { return fdatasync(fd); }
static int real_ftruncate(int fd, off_t len) { return ftruncate(fd, len); }
static int real_fallocate(int fd, off_t off, off_t len) { return fallocate(fd, FALLOC_FL_KEEP_SIZE, off, len); }
static int real_close(int fd) { return close(fd); }
static int real_rename(const char *a, const char *b) { return rename(a, b); }
static int real_unlink(const char *p) { return unlink(p); }
static int real_mkdir(const char *p, mode_t m) { return mkdir(p, m); }

static int real_fsize(int fd, off_t *size)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return -1;
    *size = st.st_size;
    return 0;
}

static int real_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

const cs_io_ops cs_io_real = {
    .name = "posix",
    .open = real_open,
    .pread = real_pread,
    .pwrite = real_pwrite,
    .fdatasync = real_fdatasync,
    .ftruncate = real_ftruncate,
    .fallocate = real_fallocate,
    .fsize = real_fsize,
    .close = real_close,
    .rename = real_rename,
    .unlink = real_unlink,
    .mkdir = real_mkdir,
    .fsync_dir = real_fsync_dir,
};

int cs_io_write_all(const cs_io_ops *io, int fd, const void *buf, size_t n, off_t off)
{
    ssize_t w = io->pwrite(fd, buf, n, off);
    if (w == (ssize_t)n) return 0;
    /* A short write is not retried: the disk is full or failing, and the
     * caller cuts the partial bytes. */
    if (w >= 0) errno = ENOSPC;
    return -1;
}

int cs_io_read_all(const cs_io_ops *io, int fd, void *buf, size_t n, off_t off)
{
    ssize_t r = io->pread(fd, buf, n, off);
    if (r == (ssize_t)n) return 0;
    if (r >= 0) errno = EIO;
    return -1;
}

static cs_io_fatal_fn fatal_hook;

cs_io_fatal_fn cs_io_set_fatal_hook(cs_io_fatal_fn fn)
{
    cs_io_fatal_fn old = fatal_hook;
    fatal_hook = fn;
    return old;
}

void cs_io_fatal(const char *what, const char *file, int err)
{
    cs_error("log", "fatal I/O error: stopping without acknowledging the pending batch",
             "\"what\":\"%s\",\"file\":\"%s\",\"error\":\"%s\"", what, file ? file : "", strerror(err));
    if (fatal_hook) {
        fatal_hook(what, file, err);
        return;
    }
    _exit(70);
}
