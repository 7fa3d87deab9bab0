/*
 * log/iofault — fault injection and simulated power loss over the real file
 * system (see iofault.h for the model). Test-only; small on purpose.
 */
#include "log/iofault.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

enum { P_WRITE, P_TRUNC };
struct pend {
    int      kind;
    off_t    off;        /* write: position; trunc: new length */
    size_t   len;        /* write: bytes written */
    off_t    old_size;   /* file size before */
    uint8_t *old;        /* bytes replaced (write: [off, min(end, old_size)); trunc: [off, old_size)) */
    size_t   old_len;
};

struct ffile {
    char        *path;
    struct pend *p;
    size_t       n, cap;
};

enum { D_CREATE, D_RENAME, D_UNLINK, D_MKDIR };
struct dop {
    int   kind;
    char *path;    /* create/unlink/mkdir: the name; rename: from */
    char *to;      /* rename */
    char *trash;   /* unlink: where the file is; rename: the overwritten target, or NULL */
    char *dir;     /* the directory whose fsync makes it durable */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct ffile   *fdtab[CS_IOF_MAX_FD];
static struct ffile  **files;
static size_t          nfiles, capfiles;
static struct dop     *dops;
static size_t          ndops, capdops;
static char            trash_dir[1024];
static long            trash_seq;
static long            opcount[12];
static unsigned        fail_mask, crash_mask;
static long            fail_n, fail_k, crash_n, crash_k, short_n, short_k, nfaults;
static int             fail_err, fail_persist, short_persist, crashed;

static void ff_free(struct ffile *f)
{
    for (size_t i = 0; i < f->n; i++) free(f->p[i].old);
    free(f->p);
    free(f->path);
    free(f);
}

static void clear_all(void)
{
    for (size_t i = 0; i < nfiles; i++) ff_free(files[i]);
    free(files);
    files = NULL;
    nfiles = capfiles = 0;
    for (size_t i = 0; i < ndops; i++) {
        free(dops[i].path), free(dops[i].to), free(dops[i].trash), free(dops[i].dir);
    }
    free(dops);
    dops = NULL;
    ndops = capdops = 0;
    memset(fdtab, 0, sizeof fdtab);
}

void cs_iof_reset(const char *tdir)
{
    pthread_mutex_lock(&mu);
    clear_all();
    snprintf(trash_dir, sizeof trash_dir, "%s", tdir);
    mkdir(trash_dir, 0755);
    memset(opcount, 0, sizeof opcount);
    fail_mask = crash_mask = 0;
    fail_n = fail_k = crash_n = crash_k = short_n = short_k = nfaults = 0;
    fail_err = fail_persist = short_persist = crashed = 0;
    pthread_mutex_unlock(&mu);
}

void cs_iof_fail(unsigned mask, long n, int err, int persistent)
{
    pthread_mutex_lock(&mu);
    fail_mask = n ? mask : 0, fail_n = n, fail_k = 0, fail_err = err, fail_persist = persistent;
    pthread_mutex_unlock(&mu);
}

void cs_iof_short_write(long n, int persistent)
{
    pthread_mutex_lock(&mu);
    short_n = n, short_k = 0, short_persist = persistent;
    pthread_mutex_unlock(&mu);
}

void cs_iof_crash_at(unsigned mask, long n)
{
    pthread_mutex_lock(&mu);
    crash_mask = n ? mask : 0, crash_n = n, crash_k = 0;
    pthread_mutex_unlock(&mu);
}

long cs_iof_count(unsigned mask)
{
    long s = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 12; i++)
        if (mask & (1u << i)) s += opcount[i];
    pthread_mutex_unlock(&mu);
    return s;
}

int cs_iof_crashed(void)
{
    pthread_mutex_lock(&mu);
    int c = crashed;
    pthread_mutex_unlock(&mu);
    return c;
}

long cs_iof_faults(void)
{
    pthread_mutex_lock(&mu);
    long n = nfaults;
    pthread_mutex_unlock(&mu);
    return n;
}

/* Count op; return the errno to fail it with, or 0. Called locked. */
static int check(unsigned op)
{
    opcount[__builtin_ctz(op)]++;
    if (crashed) return EIO;
    if ((crash_mask & op) && ++crash_k == crash_n) {
        crashed = 1;
        return EIO;
    }
    if (fail_mask & op) {
        long k = ++fail_k;
        if (k == fail_n || (fail_persist && k > fail_n)) {
            nfaults++;
            return fail_err;
        }
    }
    return 0;
}

static struct ffile *file_by_path(const char *path, int add)
{
    for (size_t i = 0; i < nfiles; i++)
        if (strcmp(files[i]->path, path) == 0) return files[i];
    if (!add) return NULL;
    if (nfiles == capfiles) {
        capfiles = capfiles ? capfiles * 2 : 16;
        files = cs_realloc(files, capfiles * sizeof *files);
    }
    struct ffile *f = cs_calloc(1, sizeof *f);
    f->path = cs_strdup(path);
    files[nfiles++] = f;
    return f;
}

static void file_forget(struct ffile *f)
{
    for (size_t i = 0; i < nfiles; i++)
        if (files[i] == f) {
            files[i] = files[--nfiles];
            break;
        }
    for (int i = 0; i < CS_IOF_MAX_FD; i++)
        if (fdtab[i] == f) fdtab[i] = NULL;
    ff_free(f);
}

static void file_rename(const char *from, const char *to)
{
    struct ffile *f = file_by_path(from, 0);
    if (f) {
        free(f->path);
        f->path = cs_strdup(to);
    }
}

static void pend_push(struct ffile *f, struct pend p)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 16;
        f->p = cs_realloc(f->p, f->cap * sizeof *f->p);
    }
    f->p[f->n++] = p;
}

static char *parent_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? cs_strndup(path, (size_t)(s - path)) : cs_strdup(".");
}

static void dop_push(int kind, const char *path, const char *to, char *trash)
{
    if (ndops == capdops) {
        capdops = capdops ? capdops * 2 : 16;
        dops = cs_realloc(dops, capdops * sizeof *dops);
    }
    dops[ndops++] = (struct dop){kind, cs_strdup(path), to ? cs_strdup(to) : NULL, trash,
                                 parent_of(to ? to : path)};
}

static char *new_trash(void)
{
    char buf[1100];
    snprintf(buf, sizeof buf, "%s/t%ld", trash_dir, ++trash_seq);
    return cs_strdup(buf);
}

static off_t size_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? st.st_size : 0;
}

/* ---------------------------------------------------------------- the ops */

static int f_open(const char *path, int flags, mode_t mode)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_OPEN);
    if (e) {
        pthread_mutex_unlock(&mu);
        errno = e;
        return -1;
    }
    int existed = access(path, F_OK) == 0;
    int fd = open(path, flags | O_CLOEXEC, mode);
    if (fd >= 0) {
        if (fd >= CS_IOF_MAX_FD) abort();
        if (!existed) dop_push(D_CREATE, path, NULL, NULL);
        fdtab[fd] = file_by_path(path, 1);
    }
    e = errno;
    pthread_mutex_unlock(&mu);
    errno = e;
    return fd;
}

static ssize_t f_pread(int fd, void *buf, size_t n, off_t off)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_PREAD);
    pthread_mutex_unlock(&mu);
    if (e) {
        errno = e;
        return -1;
    }
    return pread(fd, buf, n, off);
}

static ssize_t f_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_PWRITE);
    if (e) {
        pthread_mutex_unlock(&mu);
        errno = e;
        return -1;
    }
    size_t len = n;
    if (short_n && (++short_k == short_n || (short_persist && short_k > short_n))) {
        len = n / 2;
        nfaults++;
    }
    struct pend p = {.kind = P_WRITE, .off = off, .len = len, .old_size = size_of(fd)};
    if (off < p.old_size && len > 0) {
        off_t end = off + (off_t)len < p.old_size ? off + (off_t)len : p.old_size;
        p.old_len = (size_t)(end - off);
        p.old = cs_malloc(p.old_len);
        if (pread(fd, p.old, p.old_len, off) != (ssize_t)p.old_len) memset(p.old, 0, p.old_len);
    }
    ssize_t w = len ? pwrite(fd, buf, len, off) : 0;
    e = errno;
    if (w > 0 && fdtab[fd]) {
        p.len = (size_t)w;
        pend_push(fdtab[fd], p);
    } else {
        free(p.old);
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return w;
}

static int f_fdatasync(int fd)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_SYNC);
    int rc = -1;
    if (!e) {
        rc = fdatasync(fd);
        e = errno;
        struct ffile *f = fdtab[fd];
        if (rc == 0 && f) {
            for (size_t i = 0; i < f->n; i++) free(f->p[i].old);
            f->n = 0;
        }
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_ftruncate(int fd, off_t len)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_TRUNC);
    int rc = -1;
    if (!e) {
        struct pend p = {.kind = P_TRUNC, .off = len, .old_size = size_of(fd)};
        if (len < p.old_size) {
            p.old_len = (size_t)(p.old_size - len);
            p.old = cs_malloc(p.old_len);
            if (pread(fd, p.old, p.old_len, len) != (ssize_t)p.old_len) memset(p.old, 0, p.old_len);
        }
        rc = ftruncate(fd, len);
        e = errno;
        if (rc == 0 && fdtab[fd]) pend_push(fdtab[fd], p);
        else free(p.old);
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_fallocate(int fd, off_t off, off_t len)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_FALLOC);
    pthread_mutex_unlock(&mu);
    if (e) {
        errno = e;
        return -1;
    }
    return cs_io_real.fallocate(fd, off, len);
}

static int f_fsize(int fd, off_t *size)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_FSIZE);
    pthread_mutex_unlock(&mu);
    if (e) {
        errno = e;
        return -1;
    }
    return cs_io_real.fsize(fd, size);
}

static int f_close(int fd)
{
    pthread_mutex_lock(&mu);
    check(CS_IOF_CLOSE);
    if (fd >= 0 && fd < CS_IOF_MAX_FD) fdtab[fd] = NULL;
    int rc = close(fd);
    pthread_mutex_unlock(&mu);
    return rc;
}

static int f_rename(const char *from, const char *to)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_RENAME);
    int rc = -1;
    if (!e) {
        char *trash = NULL;
        if (access(to, F_OK) == 0 && access(from, F_OK) == 0) {
            trash = new_trash();
            if (rename(to, trash) != 0) abort();
            file_rename(to, trash);
        }
        rc = rename(from, to);
        e = errno;
        if (rc == 0) {
            file_rename(from, to);
            dop_push(D_RENAME, from, to, trash);
        } else if (trash) {
            rename(trash, to);
            file_rename(trash, to);
            free(trash);
        }
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_unlink(const char *path)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_UNLINK);
    int rc = -1;
    if (!e) {
        if (access(path, F_OK) != 0) {
            e = ENOENT;
        } else {
            char *trash = new_trash();
            rc = rename(path, trash);
            e = errno;
            if (rc == 0) {
                file_rename(path, trash);
                dop_push(D_UNLINK, path, NULL, trash);
            } else {
                free(trash);
            }
        }
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static int f_mkdir(const char *path, mode_t mode)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_MKDIR);
    int rc = -1;
    if (!e) {
        rc = mkdir(path, mode);
        e = errno;
        if (rc == 0) dop_push(D_MKDIR, path, NULL, NULL);
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

/* Make a directory operation permanent: drop what its trash kept. */
static void dop_finalize(struct dop *d)
{
    if (d->trash) {
        struct ffile *f = file_by_path(d->trash, 0);
        if (f) file_forget(f);
        unlink(d->trash);
    }
    free(d->path), free(d->to), free(d->trash), free(d->dir);
}

static int f_fsync_dir(const char *path)
{
    pthread_mutex_lock(&mu);
    int e = check(CS_IOF_DIRSYNC);
    int rc = -1;
    if (!e) {
        rc = cs_io_real.fsync_dir(path);
        e = errno;
        if (rc == 0) {
            size_t k = 0;
            for (size_t i = 0; i < ndops; i++) {
                if (strcmp(dops[i].dir, path) == 0) dop_finalize(&dops[i]);
                else dops[k++] = dops[i];
            }
            ndops = k;
        }
    }
    pthread_mutex_unlock(&mu);
    errno = e;
    return rc;
}

static const cs_io_ops iof_ops = {
    .name = "iofault",
    .open = f_open,
    .pread = f_pread,
    .pwrite = f_pwrite,
    .fdatasync = f_fdatasync,
    .ftruncate = f_ftruncate,
    .fallocate = f_fallocate,
    .fsize = f_fsize,
    .close = f_close,
    .rename = f_rename,
    .unlink = f_unlink,
    .mkdir = f_mkdir,
    .fsync_dir = f_fsync_dir,
};

const cs_io_ops *cs_iof_ops(void) { return &iof_ops; }

/* ---------------------------------------------------------- power loss */

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static void fill(int fd, off_t off, size_t len, int garble)
{
    uint8_t buf[4096];
    while (len > 0) {
        size_t k = len < sizeof buf ? len : sizeof buf;
        for (size_t i = 0; i < k; i++) buf[i] = garble ? (uint8_t)rnd() : 0;
        if (pwrite(fd, buf, k, off) != (ssize_t)k) return;
        off += (off_t)k, len -= k;
    }
}

enum { A_KEEP, A_DROP, A_ZERO, A_GARBLE, A_TEAR };

static long damage_file(struct ffile *f, enum cs_iof_loss mode)
{
    if (f->n == 0 || mode == CS_IOF_LOSE_KEEP) return 0;
    int fd = open(f->path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    long n = 0;
    int tail_drop = 1;
    for (size_t i = f->n; i-- > 0;) {
        struct pend *p = &f->p[i];
        int a = mode == CS_IOF_LOSE_DROP ? A_DROP : mode == CS_IOF_LOSE_ZERO ? A_ZERO
              : mode == CS_IOF_LOSE_GARBLE ? A_GARBLE : (int)(rnd() % 5);
        if (p->kind == P_TRUNC) {
            if (a == A_KEEP) {
                tail_drop = 0;
                continue;
            }
            /* Undo the truncate: the old bytes come back. */
            if (p->old_len) pwrite(fd, p->old, p->old_len, p->off);
            else if (size_of(fd) > p->old_size) ftruncate(fd, p->old_size);
            n++;
            continue;
        }
        off_t end = p->off + (off_t)p->len;
        switch (a) {
        case A_KEEP: tail_drop = 0; continue;
        case A_ZERO: fill(fd, p->off, p->len, 0); tail_drop = 0; break;
        case A_GARBLE: fill(fd, p->off, p->len, 1); tail_drop = 0; break;
        case A_TEAR: {
            size_t keep = p->len ? (size_t)(rnd() % p->len) : 0;
            fill(fd, p->off + (off_t)keep, p->len - keep, 0);
            tail_drop = 0;
            break;
        }
        default: /* A_DROP */
            if (p->old_len) pwrite(fd, p->old, p->old_len, p->off);
            if (end > p->old_size) {
                if (tail_drop && size_of(fd) >= end) ftruncate(fd, p->old_size > p->off ? p->old_size : p->off);
                else {
                    off_t from = p->old_size > p->off ? p->old_size : p->off;
                    fill(fd, from, (size_t)(end - from), 0);
                }
            }
            break;
        }
        n++;
    }
    close(fd);
    return n;
}

long cs_iof_power_loss(enum cs_iof_loss mode, uint64_t seed)
{
    pthread_mutex_lock(&mu);
    rng = seed * 0x9e3779b97f4a7c15ull + 0x1234567;
    if (!rng) rng = 1;
    long n = 0;
    for (size_t i = 0; i < nfiles; i++) n += damage_file(files[i], mode);
    /* Directory operations reach the disk in order (a journal): keep a
     * prefix of them, undo the rest, newest first. */
    size_t keep = mode == CS_IOF_LOSE_KEEP ? ndops : mode == CS_IOF_LOSE_RANDOM ? (size_t)(rnd() % (ndops + 1)) : 0;
    for (size_t i = ndops; i-- > keep;) {
        struct dop *d = &dops[i];
        switch (d->kind) {
        case D_CREATE: unlink(d->path); break;
        case D_MKDIR: rmdir(d->path); break;
        case D_UNLINK: rename(d->trash, d->path); free(d->trash), d->trash = NULL; break;
        case D_RENAME:
            rename(d->to, d->path);
            if (d->trash) rename(d->trash, d->to);
            free(d->trash), d->trash = NULL;
            break;
        }
        n++;
        free(d->path), free(d->to), free(d->dir);
    }
    for (size_t i = 0; i < keep; i++) dop_finalize(&dops[i]);
    ndops = 0;
    clear_all();
    memset(opcount, 0, sizeof opcount);
    fail_mask = crash_mask = 0;
    fail_n = fail_k = crash_n = crash_k = short_n = short_k = 0;
    crashed = 0;
    pthread_mutex_unlock(&mu);
    return n;
}
