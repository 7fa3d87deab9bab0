/*
 * log/partition — one partition of a topic: segments, group commit, roll,
 * recovery, reads, time lookup and retention deletes. The format and the
 * recovery algorithm are specified in segment.h.
 *
 * Concurrency: one mutex per partition. Writers pwrite under it (so batches
 * are contiguous and offsets dense); the group-commit leader releases it
 * during fdatasync. Readers take it only to find a segment and pin it
 * (refs), then read unlocked. A roll happens only when no sync is in flight
 * and fdatasyncs the old segment first, so every sealed segment is durable.
 */
#include "log/partition.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "log/segment.h"

struct seg {
    int64_t  base;
    int64_t  next;        /* sealed: offset after its last record */
    int64_t  size;        /* sealed: file bytes */
    int64_t  first_time, last_time;
    int      fd;          /* -1 when closed (sealed and cold) */
    int      refs;        /* readers inside it */
    int      sealed;
    int      deleted;     /* removed by retention; freed at refs 0 */
    int      ix_loaded;   /* sealed: ix holds the index */
    uint64_t used;        /* LRU tick of the index cache */
    cs_seginfo hdr;       /* sealed: the index header */
    cs_segix ix;
};

struct cs_part {
    char           *dir;
    int             id;
    cs_topic_opts     o;
    const cs_io_ops *io;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    struct seg    **segs;        /* by base; the last is active */
    size_t          nseg, capseg;
    int             syncing;     /* a group-commit leader is in fdatasync */
    int             dead;        /* a fatal error happened: refuse appends */
    int             prealloc_ok;
    int64_t         wpos, wnext, wtime;   /* written (active segment) */
    int64_t         dpos, dnext, dtime;   /* visible to readers (durable under the policy) */
    int64_t         snext;                /* offset up to which an fdatasync succeeded */
    int64_t         last_sync_us;
    int64_t         last_retain_us;
    int             rolled;
    uint64_t        tick;
    int             opened;      /* open completed (close may write the marker) */
    cs_topic_stats  st;
    char            err[512];
};

static void seg_path(const cs_part *p, int64_t base, const char *ext, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%020lld.%s", p->dir, (long long)base, ext);
}

static struct seg *seg_new(int64_t base)
{
    struct seg *s = cs_calloc(1, sizeof *s);
    s->base = s->next = base;
    s->fd = -1;
    return s;
}

static void seg_free(cs_part *p, struct seg *s)
{
    if (!s) return;
    if (s->fd >= 0) p->io->close(s->fd);
    cs_segix_free(&s->ix);
    free(s);
}

static struct seg *active(cs_part *p) { return p->segs[p->nseg - 1]; }

static void push_seg(cs_part *p, struct seg *s)
{
    if (p->nseg == p->capseg) {
        p->capseg = p->capseg ? p->capseg * 2 : 16;
        p->segs = cs_realloc(p->segs, p->capseg * sizeof *p->segs);
    }
    p->segs[p->nseg++] = s;
}

/* Record a named error (file, position, why) and log it. Called locked or
 * not: err is only a diagnostic copy. */
static void named_error(cs_part *p, const char *file, int64_t pos, const char *why)
{
    snprintf(p->err, sizeof p->err, "%.200s: position %lld: %.280s", file, (long long)pos, why);
    cs_error("log", "damaged log data", "\"partition\":%d,\"file\":\"%s\",\"position\":%lld,\"error\":\"%s\"", p->id,
             file, (long long)pos, why);
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err) snprintf(err, errlen, "%s", msg);
}

/* --------------------------------------------------------------- open */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Parse "<20 digits>.<ext>"; returns the base or -1. */
static int64_t parse_name(const char *name, const char *ext)
{
    size_t n = strlen(name), el = strlen(ext);
    if (n != 21 + el || name[20] != '.' || strcmp(name + 21, ext) != 0) return -1;
    int64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

static int prealloc(cs_part *p, struct seg *s)
{
    if (!p->o.preallocate) return 0;
    int64_t want = p->o.segment_bytes > p->wpos ? p->o.segment_bytes : p->wpos;
    if (p->io->fallocate(s->fd, 0, want) != 0) {
        if (errno == EOPNOTSUPP || errno == ENOSYS) return 0;
        return -1;
    }
    return 0;
}

/* Sealed segment i: from its index header, or rebuilt by a scan. */
static int open_sealed(cs_part *p, struct seg *s, char *err, size_t errlen)
{
    char spath[4200], ipath[4200], msg[4600];
    seg_path(p, s->base, "seg", spath, sizeof spath);
    seg_path(p, s->base, "idx", ipath, sizeof ipath);
    int fd = p->io->open(spath, O_RDONLY, 0);
    off_t size;
    if (fd < 0 || p->io->fsize(fd, &size) != 0) {
        snprintf(msg, sizeof msg, "%s: open: %s", spath, strerror(errno));
        set_err(err, errlen, msg);
        if (fd >= 0) p->io->close(fd);
        return -1;
    }
    cs_seginfo si;
    int h = cs_seg_index_read_header(p->io, ipath, &si);
    if (h == 0 && si.base == s->base && si.size == size) {
        s->hdr = si;
        s->next = si.next, s->size = si.size, s->first_time = si.first_time, s->last_time = si.last_time;
        p->io->close(fd);
        return 0;
    }
    /* Missing, damaged or stale: rebuild from the segment, which must be
     * wholly valid (it is sealed: acknowledged and durable). */
    cs_segix ix = {0};
    cs_segscan r;
    if (cs_seg_scan(p->io, fd, s->base, INT64_MIN, p->o.index_interval, &ix, 0, &r) != 0) {
        snprintf(msg, sizeof msg, "%s: read: %s", spath, strerror(errno));
        set_err(err, errlen, msg);
        p->io->close(fd);
        cs_segix_free(&ix);
        return -1;
    }
    p->io->close(fd);
    if (r.bad_pos >= 0) {
        snprintf(msg, sizeof msg, "damaged batch (%s) in a sealed segment: offsets from %lld unreadable",
                 r.bad_what, (long long)r.next);
        named_error(p, spath, r.bad_pos, msg);
        set_err(err, errlen, p->err);
        cs_segix_free(&ix);
        return -1;
    }
    cs_warn("log", "segment index missing or damaged: rebuilt",
            "\"partition\":%d,\"file\":\"%s\",\"state\":\"%s\"", p->id, ipath, h < 0 ? "missing" : "damaged");
    si = (cs_seginfo){.base = s->base, .next = r.next, .size = r.file_size, .first_time = r.first_time,
                      .last_time = r.last_time, .interval = p->o.index_interval, .nentries = (uint32_t)ix.n};
    if (cs_seg_index_write(p->io, ipath, &si, &ix) != 0)
        cs_warn("log", "cannot write a rebuilt index (kept in memory)", "\"file\":\"%s\",\"error\":\"%s\"", ipath,
                strerror(errno));
    p->st.indexes_rebuilt++;
    s->hdr = si;
    s->next = r.next, s->size = r.file_size, s->first_time = r.first_time, s->last_time = r.last_time;
    s->ix = ix;
    s->ix_loaded = 1;
    return 0;
}

/* The clean-shutdown marker (segment.h, CLEAN): what the active segment
 * held, durably, when the partition was last closed cleanly. */
struct clean {
    int     valid;
    int64_t base, size, next;
};

static void clean_path(const cs_part *p, char *buf, size_t len) { snprintf(buf, len, "%s/clean", p->dir); }

static void read_clean(cs_part *p, struct clean *c)
{
    char path[4200];
    clean_path(p, path, sizeof path);
    memset(c, 0, sizeof *c);
    int fd = p->io->open(path, O_RDONLY, 0);
    if (fd < 0) return;
    uint8_t b[CS_SEG_CLEAN_SIZE];
    off_t size = 0;
    int ok = p->io->fsize(fd, &size) == 0 && size == CS_SEG_CLEAN_SIZE && cs_io_read_all(p->io, fd, b, sizeof b, 0) == 0;
    p->io->close(fd);
    c->valid = 2; /* present */
    if (!ok || cs_get32(b) != CS_SEG_CLEAN_MAGIC || cs_get32(b + 4) != cs_crc32c(0, b + 8, CS_SEG_CLEAN_SIZE - 8))
        return;
    c->valid = 1;
    c->base = (int64_t)cs_get64(b + 8);
    c->size = (int64_t)cs_get64(b + 16);
    c->next = (int64_t)cs_get64(b + 24);
}

static void write_clean(cs_part *p)
{
    uint8_t b[CS_SEG_CLEAN_SIZE] = {0};
    cs_put32(b, CS_SEG_CLEAN_MAGIC);
    cs_put64(b + 8, (uint64_t)active(p)->base);
    cs_put64(b + 16, (uint64_t)p->wpos);
    cs_put64(b + 24, (uint64_t)p->wnext);
    cs_put32(b + 4, cs_crc32c(0, b + 8, CS_SEG_CLEAN_SIZE - 8));
    char path[4200], tmp[4300];
    clean_path(p, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = p->io->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    int ok = cs_io_write_all(p->io, fd, b, sizeof b, 0) == 0 && p->io->fdatasync(fd) == 0;
    p->io->close(fd);
    if (!ok || p->io->rename(tmp, path) != 0) {
        p->io->unlink(tmp);
        return;
    }
    p->io->fsync_dir(p->dir);
}

static int open_active(cs_part *p, struct seg *s, int64_t min_time, const struct clean *cl, char *err, size_t errlen)
{
    char spath[4200], msg[4600];
    seg_path(p, s->base, "seg", spath, sizeof spath);
    s->fd = p->io->open(spath, O_RDWR | O_CREAT, 0644);
    cs_segscan r;
    if (s->fd < 0 || cs_seg_scan(p->io, s->fd, s->base, min_time, p->o.index_interval, &s->ix, 1, &r) != 0) {
        snprintf(msg, sizeof msg, "%s: %s", spath, strerror(errno));
        set_err(err, errlen, msg);
        return -1;
    }
    /* After a clean shutdown every byte up to the recorded size was
     * acknowledged and durable: nothing of it may be cut. */
    if (cl->valid == 1 && cl->base == s->base && r.file_size <= cl->size) {
        if (r.file_size < cl->size || (r.bad_pos >= 0 && r.bad_pos < cl->size)) {
            if (r.file_size < cl->size)
                snprintf(msg, sizeof msg, "segment is %lld bytes but held %lld (offsets up to %lld) at the last clean "
                         "shutdown: acknowledged data missing", (long long)r.file_size, (long long)cl->size,
                         (long long)cl->next - 1);
            else
                snprintf(msg, sizeof msg, "damaged batch (%s) inside acknowledged data (the last clean shutdown "
                         "recorded %lld bytes, offsets up to %lld)", r.bad_what, (long long)cl->size,
                         (long long)cl->next - 1);
            named_error(p, spath, r.file_size < cl->size ? r.file_size : r.bad_pos, msg);
            set_err(err, errlen, p->err);
            return -1;
        }
    }
    if (r.bad_pos >= 0) {
        if (r.durable_claim > r.next) {
            snprintf(msg, sizeof msg,
                     "damaged batch (%s) inside acknowledged data: offsets %lld..%lld were durable (a later batch "
                     "says so); refusing to cut them",
                     r.bad_what, (long long)r.next, (long long)r.durable_claim - 1);
            named_error(p, spath, r.bad_pos, msg);
            set_err(err, errlen, p->err);
            return -1;
        }
        int64_t cut = r.file_size - r.valid_end;
        cs_warn("log", "recovery cut a torn or unsynced tail",
                "\"partition\":%d,\"file\":\"%s\",\"valid_bytes\":%lld,\"truncated_bytes\":%lld,\"next_offset\":%lld,"
                "\"reason\":\"%s\"",
                p->id, spath, (long long)r.valid_end, (long long)cut, (long long)r.next, r.bad_what);
        if (p->io->ftruncate(s->fd, r.valid_end) != 0 || p->io->fdatasync(s->fd) != 0) {
            snprintf(msg, sizeof msg, "%s: cutting the torn tail: %s", spath, strerror(errno));
            set_err(err, errlen, msg);
            return -1;
        }
        p->st.truncated_bytes += cut;
    }
    p->wpos = p->dpos = r.valid_end;
    p->wnext = p->dnext = p->snext = r.next;
    p->wtime = p->dtime = r.valid_end > 0 ? r.last_time : min_time == INT64_MIN ? 0 : min_time;
    s->first_time = r.first_time;
    s->last_time = p->dtime;
    p->prealloc_ok = prealloc(p, s) == 0;
    if (!p->prealloc_ok)
        cs_warn("log", "cannot preallocate the active segment (appends will fail until space returns)",
                "\"file\":\"%s\",\"error\":\"%s\"", spath, strerror(errno));
    return 0;
}

cs_part *cs_part_open(const char *dir, int id, const cs_topic_opts *o, char *err, size_t errlen)
{
    cs_part *p = cs_calloc(1, sizeof *p);
    p->dir = cs_strdup(dir);
    p->id = id;
    p->o = *o;
    p->io = o->io ? o->io : &cs_io_real;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    char path[4200], msg[4600];
    int64_t *segb = NULL, *idxb = NULL;
    size_t nsegb = 0, nidxb = 0, cap1 = 0, cap2 = 0;
    int dirty = 0;

    DIR *d = opendir(dir);
    if (!d) {
        snprintf(msg, sizeof msg, "%s: %s", dir, strerror(errno));
        set_err(err, errlen, msg);
        goto fail;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || strcmp(nm, "clean") == 0) continue;
        size_t n = strlen(nm);
        int64_t b;
        if (n > 4 && strcmp(nm + n - 4, ".tmp") == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, nm);
            if (p->io->unlink(path) == 0) p->st.temp_removed++, dirty = 1;
            cs_warn("log", "removed a stray temp file", "\"file\":\"%s\"", path);
        } else if ((b = parse_name(nm, "seg")) >= 0) {
            if (nsegb == cap1) cap1 = cap1 ? cap1 * 2 : 16, segb = cs_realloc(segb, cap1 * sizeof *segb);
            segb[nsegb++] = b;
        } else if ((b = parse_name(nm, "idx")) >= 0) {
            if (nidxb == cap2) cap2 = cap2 ? cap2 * 2 : 16, idxb = cs_realloc(idxb, cap2 * sizeof *idxb);
            idxb[nidxb++] = b;
        } else {
            cs_warn("log", "unknown file in a partition directory (left alone)", "\"dir\":\"%s\",\"file\":\"%s\"", dir,
                    nm);
        }
    }
    closedir(d);
    if (nsegb) qsort(segb, nsegb, sizeof *segb, cmp_i64);
    /* Index files of absent segments (an interrupted delete), and the
     * active segment's (rewritten at seal): removed. */
    for (size_t i = 0; i < nidxb; i++) {
        int found = 0;
        for (size_t j = 0; j + 1 < nsegb && !found; j++) found = segb[j] == idxb[i];
        if (found) continue;
        seg_path(p, idxb[i], "idx", path, sizeof path);
        if (nsegb && idxb[i] == segb[nsegb - 1]) {
            /* The last segment has a complete index: it was sealed, so the
             * segment after it existed durably and is now missing. */
            cs_seginfo si;
            char sp[4200];
            seg_path(p, idxb[i], "seg", sp, sizeof sp);
            int fd = p->io->open(sp, O_RDONLY, 0);
            off_t sz = -1;
            if (fd >= 0) p->io->fsize(fd, &sz), p->io->close(fd);
            if (cs_seg_index_read_header(p->io, path, &si) == 0 && si.base == idxb[i] && si.size == sz) {
                snprintf(msg, sizeof msg,
                         "sealed segment (its index is complete) but the segment after it (offsets from %lld) is "
                         "missing",
                         (long long)si.next);
                named_error(p, sp, sz, msg);
                set_err(err, errlen, p->err);
                goto fail;
            }
        }
        int below = nsegb == 0 || idxb[i] < segb[0] || idxb[i] == segb[nsegb - 1];
        if (!below) {
            /* Not from an interrupted delete (retention deletes from the
             * front): evidence of a missing segment, reported below. */
            cs_warn("log", "index file without its segment (left alone)", "\"file\":\"%s\"", path);
            continue;
        }
        if (p->io->unlink(path) == 0) dirty = 1;
    }
    if (nsegb == 0) {
        seg_path(p, 0, "seg", path, sizeof path);
        int fd = p->io->open(path, O_RDWR | O_CREAT, 0644);
        if (fd < 0) {
            snprintf(msg, sizeof msg, "%s: create: %s", path, strerror(errno));
            set_err(err, errlen, msg);
            goto fail;
        }
        p->io->close(fd);
        segb = cs_realloc(segb, sizeof *segb);
        segb[nsegb++] = 0;
        dirty = 1;
    }
    if (dirty && p->io->fsync_dir(dir) != 0) {
        snprintf(msg, sizeof msg, "%s: fsync: %s", dir, strerror(errno));
        set_err(err, errlen, msg);
        goto fail;
    }
    for (size_t i = 0; i < nsegb; i++) push_seg(p, seg_new(segb[i]));
    for (size_t i = 0; i + 1 < p->nseg; i++) {
        struct seg *s = p->segs[i];
        s->sealed = 1;
        if (open_sealed(p, s, err, errlen) != 0) goto fail;
    }
    for (size_t i = 0; i + 1 < p->nseg; i++) {
        int64_t a = p->segs[i]->next, b = p->segs[i + 1]->base;
        if (a == b) continue;
        seg_path(p, p->segs[i]->base, "seg", path, sizeof path);
        if (a < b)
            snprintf(msg, sizeof msg, "offsets %lld..%lld are missing: no segment holds them (next segment %020lld.seg)",
                     (long long)a, (long long)b - 1, (long long)b);
        else
            snprintf(msg, sizeof msg, "segment overlaps the next one (%020lld.seg): ends at offset %lld",
                     (long long)b, (long long)a);
        named_error(p, path, p->segs[i]->size, msg);
        set_err(err, errlen, p->err);
        goto fail;
    }
    int64_t min_time = p->nseg > 1 ? p->segs[p->nseg - 2]->last_time : INT64_MIN;
    struct clean cl;
    read_clean(p, &cl);
    if (open_active(p, active(p), min_time, &cl, err, errlen) != 0) goto fail;
    if (cl.valid) {
        /* The marker describes the past from now on: it must go before the
         * first append, or a later crash could be judged against it. */
        clean_path(p, path, sizeof path);
        if (p->io->unlink(path) != 0 || p->io->fsync_dir(dir) != 0) {
            snprintf(msg, sizeof msg, "%s: remove: %s", path, strerror(errno));
            set_err(err, errlen, msg);
            goto fail;
        }
    }
    p->opened = 1;
    p->last_sync_us = cs_mono_us();
    free(segb);
    free(idxb);
    return p;
fail:
    free(segb);
    free(idxb);
    cs_part_close(p);
    return NULL;
}

void cs_part_close(cs_part *p)
{
    if (!p) return;
    if (p->opened && !p->dead && (p->o.fsync_policy == CS_FSYNC_ALWAYS || cs_part_sync(p) == 0) &&
        p->dnext == p->wnext && !p->dead)
        write_clean(p);
    for (size_t i = 0; i < p->nseg; i++) seg_free(p, p->segs[i]);
    free(p->segs);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->dir);
    free(p);
}

/* -------------------------------------------------------------- writes */

/* Kill the partition after a fatal error (the hook returned: tests). */
static void die(cs_part *p)
{
    p->dead = 1;
    pthread_cond_broadcast(&p->cv);
}

/* Seal the active segment and start a new one. Locked, no sync in flight. */
static int roll(cs_part *p)
{
    struct seg *old = active(p);
    char spath[4200], ipath[4200], npath[4200];
    seg_path(p, old->base, "seg", spath, sizeof spath);
    seg_path(p, old->base, "idx", ipath, sizeof ipath);
    seg_path(p, p->wnext, "seg", npath, sizeof npath);
    if (p->io->fdatasync(old->fd) != 0) {
        int e = errno;
        cs_io_fatal("fdatasync before a segment roll", spath, e);
        die(p);
        errno = EIO;
        return -1;
    }
    p->dpos = p->wpos, p->dnext = p->snext = p->wnext, p->dtime = p->wtime;
    pthread_cond_broadcast(&p->cv);
    cs_seginfo si = {.base = old->base, .next = p->wnext, .size = p->wpos, .first_time = old->ix.n ? old->ix.e[0].time : 0,
                     .last_time = p->wtime, .interval = p->o.index_interval, .nentries = (uint32_t)old->ix.n};
    /* The new segment first, durably: an index on the last segment then
     * always means its successor existed (segment.h, RECOVERY). */
    struct seg *s = seg_new(p->wnext);
    s->fd = p->io->open(npath, O_RDWR | O_CREAT, 0644);
    int e = errno;
    if (s->fd >= 0 && p->o.preallocate && p->io->fallocate(s->fd, 0, p->o.segment_bytes) != 0 && errno != EOPNOTSUPP &&
        errno != ENOSYS) {
        e = errno;
        p->io->close(s->fd);
        s->fd = -1;
        p->io->unlink(npath);
    }
    if (s->fd < 0) {
        seg_free(p, s);
        p->io->fsync_dir(p->dir);
        cs_warn("log", "cannot create a new segment: appends fail until space returns",
                "\"partition\":%d,\"file\":\"%s\",\"error\":\"%s\"", p->id, npath, strerror(e));
        errno = e == EIO ? EIO : ENOSPC;
        return -1;
    }
    if (p->io->fsync_dir(p->dir) != 0) {
        e = errno;
        cs_io_fatal("directory fsync after creating a segment", p->dir, e);
        seg_free(p, s);
        die(p);
        errno = EIO;
        return -1;
    }
    if (cs_seg_index_write(p->io, ipath, &si, &old->ix) != 0 || p->io->fsync_dir(p->dir) != 0)
        cs_warn("log", "cannot write a segment index (rebuilt at next open)", "\"file\":\"%s\",\"error\":\"%s\"", ipath,
                strerror(errno));
    old->sealed = 1;
    old->hdr = si;
    old->next = si.next, old->size = si.size, old->first_time = si.first_time, old->last_time = si.last_time;
    old->ix_loaded = 1;
    old->used = ++p->tick;
    push_seg(p, s);
    p->wpos = p->dpos = 0;
    p->prealloc_ok = 1;
    p->rolled = 1;
    return 0;
}

int cs_part_sync(cs_part *p)
{
    pthread_mutex_lock(&p->mu);
    while (p->syncing) pthread_cond_wait(&p->cv, &p->mu);
    if (p->dead) {
        pthread_mutex_unlock(&p->mu);
        errno = EIO;
        return -1;
    }
    if (p->snext == p->wnext && p->dnext == p->wnext) {
        pthread_mutex_unlock(&p->mu); /* nothing written since the last sync */
        return 0;
    }
    int64_t pos = p->wpos, next = p->wnext, t = p->wtime;
    int fd = active(p)->fd;
    p->syncing = 1;
    pthread_mutex_unlock(&p->mu);
    int rc = p->io->fdatasync(fd);
    int e = errno;
    if (rc != 0) cs_io_fatal("fdatasync", p->dir, e);
    pthread_mutex_lock(&p->mu);
    p->syncing = 0;
    if (rc != 0) die(p);
    else {
        if (next >= p->dnext) p->dpos = pos, p->dnext = next, p->dtime = t;
        if (next > p->snext) p->snext = next;
    }
    p->last_sync_us = cs_mono_us();
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    errno = e;
    return rc == 0 ? 0 : -1;
}

/* Write one encoded batch at the end of the active segment (rolling first
 * when it would not fit). Locked. When reseal, the header's base, time and
 * durable claim are set here; otherwise (journal replay) the batch must
 * already start at wnext. Fills *w; the batch is written, not yet durable
 * nor visible. 0, or -1 with errno (nothing of the batch kept). */
static int write_locked(cs_part *p, uint8_t *b, size_t total, size_t n, int reseal, int64_t now, cs_part_wr *w)
{
    for (;;) {
        if (p->dead) {
            errno = EIO;
            return -1;
        }
        if (!(p->wpos > 0 && p->wpos + (int64_t)total > p->o.segment_bytes)) break;
        if (p->syncing) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        if (roll(p) != 0) return -1;
    }
    struct seg *s = active(p);
    if (!p->prealloc_ok) {
        if (prealloc(p, s) != 0) {
            errno = ENOSPC;
            return -1;
        }
        p->prealloc_ok = 1;
    }
    int64_t base = p->wnext, at = p->wpos;
    int64_t t;
    if (reseal) {
        t = now > p->wtime ? now : p->wtime;
        cs_seg_batch_seal(b, base, t, p->snext);
    } else {
        t = cs_seg_batch_time(b);
        if (cs_seg_batch_base(b) != base || t < p->wtime) {
            errno = EILSEQ;
            return -1;
        }
    }
    if (cs_io_write_all(p->io, s->fd, b, total, at) != 0) {
        int e = errno;
        /* Nothing of the batch may stay: cut back to where it started. */
        if (p->io->ftruncate(s->fd, at) != 0) {
            char spath[4200];
            seg_path(p, s->base, "seg", spath, sizeof spath);
            cs_io_fatal("cutting a failed write", spath, errno);
            die(p);
        }
        errno = e;
        return -1;
    }
    p->wpos = at + (int64_t)total;
    p->wnext = base + (int64_t)n;
    p->wtime = t;
    if (s->ix.n == 0) s->first_time = t;
    cs_segix_add(&s->ix, base, at, t, p->o.index_interval);
    *w = (cs_part_wr){.base = base, .pos = p->wpos, .next = p->wnext, .time = t};
    return 0;
}

int cs_part_append(cs_part *p, cs_rec *recs, size_t n)
{
    if (n == 0) return 0;
    size_t total = cs_seg_batch_size(recs, n);
    if (total == 0 || n > UINT32_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    uint8_t *b = cs_malloc(total), *z;
    cs_seg_batch_encode(b, total, recs, n);
    size_t zt = p->o.compression ? cs_seg_batch_compress(b, total, p->o.compression_level, &z) : 0;
    if (zt) free(b), b = z, total = zt;
    int64_t now = cs_now_us();

    pthread_mutex_lock(&p->mu);
    int e = 0;
    cs_part_wr w;
    if (write_locked(p, b, total, n, 1, now, &w) != 0) {
        e = errno;
        goto out;
    }
    int64_t base = w.base, mine = w.next;

    if (p->o.fsync_policy == CS_FSYNC_ALWAYS) {
        while (p->dnext < mine && !p->dead) {
            if (p->syncing) {
                pthread_cond_wait(&p->cv, &p->mu);
                continue;
            }
            /* Become the leader: one fdatasync covers every batch written so far. */
            int64_t spos = p->wpos, snext = p->wnext, stime = p->wtime;
            int fd = active(p)->fd;
            p->syncing = 1;
            pthread_mutex_unlock(&p->mu);
            int rc = p->io->fdatasync(fd);
            if (rc != 0) cs_io_fatal("fdatasync", p->dir, errno);
            pthread_mutex_lock(&p->mu);
            p->syncing = 0;
            if (rc != 0) die(p);
            else if (snext > p->dnext) p->dpos = spos, p->dnext = p->snext = snext, p->dtime = stime;
            pthread_cond_broadcast(&p->cv);
        }
        if (p->dnext < mine) {
            e = EIO; /* dead: the fsync failed; nothing acknowledged */
            goto out;
        }
        pthread_mutex_unlock(&p->mu);
    } else {
        /* Weaker policies: visible at once, synced by interval or close. */
        p->dpos = p->wpos, p->dnext = p->wnext, p->dtime = p->wtime;
        int due = p->o.fsync_policy == CS_FSYNC_INTERVAL &&
                  cs_mono_us() - p->last_sync_us >= (int64_t)p->o.fsync_interval_ms * 1000;
        pthread_mutex_unlock(&p->mu);
        if (due) cs_part_sync(p);
    }
    free(b);
    for (size_t i = 0; i < n; i++) recs[i].offset = base + (int64_t)i;
    return 0;
out:
    pthread_mutex_unlock(&p->mu);
    free(b);
    errno = e;
    return -1;
}

int cs_part_write(cs_part *p, uint8_t *b, size_t total, size_t n, int64_t now, cs_part_wr *w)
{
    pthread_mutex_lock(&p->mu);
    int rc = write_locked(p, b, total, n, 1, now, w);
    int e = errno;
    pthread_mutex_unlock(&p->mu);
    errno = e;
    return rc;
}

void cs_part_publish(cs_part *p, const cs_part_wr *w)
{
    pthread_mutex_lock(&p->mu);
    /* A roll or a partition sync since the write already covered it. */
    if (w->next > p->dnext && !p->dead) {
        p->dpos = w->pos, p->dnext = w->next, p->dtime = w->time;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

int cs_part_replay(cs_part *p, uint8_t *b, size_t len, char *err, size_t errlen)
{
    int64_t base = cs_seg_batch_base(b), n = cs_seg_batch_count(b);
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    if (base + n <= p->wnext) goto out; /* the segment has it */
    if (base != p->wnext) {
        snprintf(err, errlen,
                 "%s: the journal holds offsets %lld..%lld but the partition ends at %lld: offsets %lld..%lld were "
                 "acknowledged and are in neither",
                 p->dir, (long long)base, (long long)(base + n - 1), (long long)p->wnext, (long long)p->wnext,
                 (long long)base - 1);
        rc = -1;
        goto out;
    }
    cs_part_wr w;
    if (write_locked(p, b, len, (size_t)n, 0, 0, &w) != 0) {
        snprintf(err, errlen, "%s: replaying the journal at offset %lld: %s", p->dir, (long long)base,
                 strerror(errno));
        rc = -1;
        goto out;
    }
    p->st.journal_replayed += n;
out:
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* -------------------------------------------------------------- reads */

static size_t find_seg(cs_part *p, int64_t off)
{
    size_t lo = 0, hi = p->nseg;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (p->segs[mid]->base <= off) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Make a sealed segment readable: fd open, index loaded (rebuilt when
 * damaged). Keeps at most CS_LOG_IX_CACHE sealed segments hot. Locked. */
static int seg_hot(cs_part *p, struct seg *s)
{
    char spath[4200], ipath[4200], msg[4600];
    seg_path(p, s->base, "seg", spath, sizeof spath);
    seg_path(p, s->base, "idx", ipath, sizeof ipath);
    s->used = ++p->tick;
    if (s->fd < 0) {
        s->fd = p->io->open(spath, O_RDONLY, 0);
        if (s->fd < 0) {
            snprintf(msg, sizeof msg, "open: %s", strerror(errno));
            named_error(p, spath, 0, msg);
            return -1;
        }
    }
    if (!s->ix_loaded) {
        int r = cs_seg_index_read_entries(p->io, ipath, &s->hdr, &s->ix);
        if (r != 0) {
            /* Damaged or gone since open: rebuild from the segment. */
            cs_segix_free(&s->ix);
            cs_segscan sc;
            if (cs_seg_scan(p->io, s->fd, s->base, INT64_MIN, p->o.index_interval, &s->ix, 0, &sc) != 0) {
                snprintf(msg, sizeof msg, "read: %s", strerror(errno));
                named_error(p, spath, 0, msg);
                return -1;
            }
            if (sc.bad_pos >= 0 || sc.next != s->next) {
                snprintf(msg, sizeof msg, "damaged batch (%s) in a sealed segment: offsets %lld..%lld unreadable",
                         sc.bad_pos >= 0 ? sc.bad_what : "length", (long long)sc.next, (long long)s->next - 1);
                named_error(p, spath, sc.bad_pos >= 0 ? sc.bad_pos : sc.valid_end, msg);
                cs_segix_free(&s->ix);
                p->st.read_errors++;
                return -1;
            }
            cs_warn("log", "segment index damaged: rebuilt", "\"partition\":%d,\"file\":\"%s\"", p->id, ipath);
            s->hdr.nentries = (uint32_t)s->ix.n;
            s->hdr.interval = p->o.index_interval;
            if (cs_seg_index_write(p->io, ipath, &s->hdr, &s->ix) == 0) p->io->fsync_dir(p->dir);
            p->st.indexes_rebuilt++;
        }
        s->ix_loaded = 1;
    }
    /* Evict the least recently used other hot sealed segment. */
    size_t hot = 0;
    struct seg *lru = NULL;
    for (size_t i = 0; i + 1 < p->nseg; i++) {
        struct seg *x = p->segs[i];
        if (!x->ix_loaded) continue;
        hot++;
        if (x != s && x->refs == 0 && (!lru || x->used < lru->used)) lru = x;
    }
    if (hot > CS_LOG_IX_CACHE && lru) {
        cs_segix_free(&lru->ix);
        lru->ix_loaded = 0;
        if (lru->fd >= 0) p->io->close(lru->fd), lru->fd = -1;
    }
    return 0;
}

static void unpin(cs_part *p, struct seg *s)
{
    pthread_mutex_lock(&p->mu);
    if (--s->refs == 0 && s->deleted) seg_free(p, s);
    pthread_mutex_unlock(&p->mu);
}

int cs_part_read(cs_part *p, int64_t from, size_t max, cs_rec_cb cb, void *arg)
{
    int delivered = 0;
    size_t left = max;
    while (left > 0) {
        pthread_mutex_lock(&p->mu);
        int64_t end = p->dnext, start = p->segs[0]->base;
        if (from < start) from = start;
        if (from >= end) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        size_t i = find_seg(p, from);
        struct seg *s = p->segs[i];
        int is_active = i + 1 == p->nseg;
        if (!is_active && seg_hot(p, s) != 0) {
            pthread_mutex_unlock(&p->mu);
            return -1;
        }
        int64_t limit = is_active ? p->dpos : s->size, seg_end = is_active ? p->dnext : s->next;
        const cs_ixent *e = cs_segix_find_offset(&s->ix, from);
        int64_t pos = e ? e->pos : 0, expect = e ? e->offset : s->base, tmin = e ? e->time : INT64_MIN;
        int fd = s->fd;
        s->refs++;
        pthread_mutex_unlock(&p->mu);

        int stopped = 0;
        cs_segbad bad;
        int k = cs_seg_read(p->io, fd, pos, limit, &expect, tmin, from, &left, cb, arg, &stopped, &bad);
        if (k < 0 || (!stopped && left > 0 && expect != seg_end)) {
            char spath[4200], msg[300];
            seg_path(p, s->base, "seg", spath, sizeof spath);
            if (k < 0)
                snprintf(msg, sizeof msg, "damaged batch (%s%s%s) in a %s segment: offsets from %lld unreadable",
                         bad.what, bad.err ? ": " : "", bad.err ? strerror(bad.err) : "",
                         is_active ? "active" : "sealed", (long long)expect);
            else
                snprintf(msg, sizeof msg, "segment ends at offset %lld, expected %lld", (long long)expect,
                         (long long)seg_end);
            pthread_mutex_lock(&p->mu);
            named_error(p, spath, k < 0 ? bad.pos : limit, msg);
            p->st.read_errors++;
            pthread_mutex_unlock(&p->mu);
            unpin(p, s);
            return -1;
        }
        unpin(p, s);
        delivered += k;
        if (stopped) break;
        from = expect;
    }
    return delivered;
}

int64_t cs_part_end(cs_part *p)
{
    pthread_mutex_lock(&p->mu);
    int64_t e = p->dnext;
    pthread_mutex_unlock(&p->mu);
    return e;
}

int64_t cs_part_start(cs_part *p)
{
    pthread_mutex_lock(&p->mu);
    int64_t s = p->segs[0]->base;
    pthread_mutex_unlock(&p->mu);
    return s;
}

int64_t cs_part_offset_for_time(cs_part *p, int64_t ts)
{
    pthread_mutex_lock(&p->mu);
    size_t i = 0;
    for (; i < p->nseg; i++) {
        struct seg *s = p->segs[i];
        int is_active = i + 1 == p->nseg;
        int64_t last = is_active ? p->dtime : s->last_time;
        int empty = is_active ? p->dnext == s->base : s->next == s->base;
        if (!empty && last >= ts) break;
    }
    if (i == p->nseg) {
        int64_t e = p->dnext;
        pthread_mutex_unlock(&p->mu);
        return e;
    }
    struct seg *s = p->segs[i];
    int is_active = i + 1 == p->nseg;
    if (!is_active && seg_hot(p, s) != 0) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    const cs_ixent *e = cs_segix_find_time(&s->ix, ts);
    int64_t pos = e ? e->pos : 0, expect = e ? e->offset : s->base;
    int64_t limit = is_active ? p->dpos : s->size;
    int fd = s->fd;
    s->refs++;
    pthread_mutex_unlock(&p->mu);
    int64_t off = -1;
    cs_segbad bad;
    int r = cs_seg_find_time(p->io, fd, pos, limit, expect, ts, &off, &bad);
    if (r < 0) {
        char spath[4200];
        seg_path(p, s->base, "seg", spath, sizeof spath);
        pthread_mutex_lock(&p->mu);
        named_error(p, spath, bad.pos, "damaged batch during a time lookup");
        p->st.read_errors++;
        pthread_mutex_unlock(&p->mu);
        off = -1;
    }
    unpin(p, s);
    return off;
}

/* ---------------------------------------------------------- retention */

int cs_part_retention_due(cs_part *p, int64_t now_us)
{
    pthread_mutex_lock(&p->mu);
    int due = p->nseg > 1 && (p->rolled || now_us - p->last_retain_us >= 10 * 1000000LL);
    pthread_mutex_unlock(&p->mu);
    return due;
}

int cs_part_retain(cs_part *p, int64_t now_us, int64_t min_consumed)
{
    pthread_mutex_lock(&p->mu);
    p->rolled = 0;
    p->last_retain_us = now_us;
    int64_t total = p->wpos;
    for (size_t i = 0; i + 1 < p->nseg; i++) total += p->segs[i]->size;
    int deleted = 0, rc = 0;
    while (p->nseg > 1) {
        struct seg *s = p->segs[0];
        int by_age = p->o.retention_ms > 0 && s->last_time < now_us - p->o.retention_ms * 1000;
        int by_bytes = p->o.retention_bytes > 0 && total > p->o.retention_bytes;
        if (!by_age && !by_bytes) break;
        int consumed = min_consumed < 0 || min_consumed >= s->next;
        if (!consumed && !by_bytes) break; /* age alone never deletes unconsumed events */
        char spath[4200], ipath[4200];
        seg_path(p, s->base, "seg", spath, sizeof spath);
        seg_path(p, s->base, "idx", ipath, sizeof ipath);
        if (p->io->unlink(spath) != 0) {
            cs_error("log", "retention cannot delete a segment", "\"file\":\"%s\",\"error\":\"%s\"", spath,
                     strerror(errno));
            rc = -1;
            break;
        }
        p->io->unlink(ipath);
        if (!consumed) {
            int64_t lost = s->next - (min_consumed > s->base ? min_consumed : s->base);
            p->st.lost_events += lost;
            cs_error("log", "ALERT: the disk budget forced retention to delete events a consumer group has not consumed",
                     "\"partition\":%d,\"file\":\"%s\",\"lost_events\":%lld,\"group_position\":%lld,"
                     "\"retention_bytes\":%lld",
                     p->id, spath, (long long)lost, (long long)min_consumed, (long long)p->o.retention_bytes);
        }
        memmove(p->segs, p->segs + 1, (p->nseg - 1) * sizeof *p->segs);
        p->nseg--;
        total -= s->size;
        p->st.segments_deleted++;
        deleted++;
        s->deleted = 1;
        if (s->refs == 0) seg_free(p, s);
    }
    if (deleted && p->io->fsync_dir(p->dir) != 0) rc = -1;
    pthread_mutex_unlock(&p->mu);
    return rc < 0 ? -1 : deleted;
}

void cs_part_stats(cs_part *p, cs_topic_stats *st)
{
    pthread_mutex_lock(&p->mu);
    *st = p->st;
    st->segments = (int64_t)p->nseg;
    st->bytes = p->wpos;
    for (size_t i = 0; i + 1 < p->nseg; i++) st->bytes += p->segs[i]->size;
    pthread_mutex_unlock(&p->mu);
}

void cs_part_errmsg(cs_part *p, char *buf, size_t len)
{
    pthread_mutex_lock(&p->mu);
    snprintf(buf, len, "%s", p->err);
    pthread_mutex_unlock(&p->mu);
}
