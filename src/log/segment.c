/*
 * log/segment — encode, validate and scan batches; segment index files. The
 * format is specified in segment.h. Every field read from disk is bounds-
 * checked before use (librdkafka's rdkafka_buf.h pattern: one failure exit
 * that names the field and the byte).
 */
#include "log/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "core/hash.h"
#include "core/util.h"


/* ------------------------------------------------------------- batches */

size_t cs_seg_batch_size(const cs_rec *recs, size_t n)
{
    uint64_t total = CS_SEG_BATCH_HDR;
    for (size_t i = 0; i < n; i++) {
        total += CS_SEG_REC_HDR + (uint64_t)recs[i].key_len + (uint64_t)recs[i].value_len;
        if (total > CS_SEG_MAX_BATCH) return 0;
    }
    return (size_t)total;
}

void cs_seg_batch_encode(uint8_t *b, size_t total, const cs_rec *recs, size_t n)
{
    size_t pos = CS_SEG_BATCH_HDR;
    for (size_t i = 0; i < n; i++) {
        cs_put32(b + pos, (uint32_t)(12 + recs[i].key_len + recs[i].value_len));
        cs_put64(b + pos + 4, (uint64_t)recs[i].ts_us);
        cs_put32(b + pos + 12, (uint32_t)recs[i].key_len);
        pos += CS_SEG_REC_HDR;
        if (recs[i].key_len) memcpy(b + pos, recs[i].key, recs[i].key_len);
        pos += recs[i].key_len;
        if (recs[i].value_len) memcpy(b + pos, recs[i].value, recs[i].value_len);
        pos += recs[i].value_len;
    }
    cs_put32(b, CS_SEG_BATCH_MAGIC);
    cs_put32(b + 8, (uint32_t)total);
    cs_put32(b + 12, (uint32_t)n);
}

void cs_seg_batch_seal(uint8_t *b, int64_t base, int64_t append_us, int64_t durable)
{
    cs_put64(b + 16, (uint64_t)base);
    cs_put64(b + 24, (uint64_t)append_us);
    cs_put64(b + 32, (uint64_t)durable);
    cs_put32(b + 4, cs_crc32c(0, b + 8, cs_get32(b + 8) - 8));
}

/* Compression contexts: a small pool shared by the appenders (each
 * compresses outside every lock). At most CCTX_POOL idle contexts are kept,
 * none above CCTX_KEEP bytes (a context grows with the largest batch it
 * compressed: ~80 KB for a request's 5 KB batch at level -1, ~270 KB for
 * 60 KB); more concurrent appenders make temporary ones. */
#define CCTX_POOL 8
#define CCTX_KEEP (1u << 20)
static pthread_mutex_t cctx_mu = PTHREAD_MUTEX_INITIALIZER;
static ZSTD_CCtx *cctx_pool[CCTX_POOL];
static int cctx_n;

static ZSTD_CCtx *cctx_get(void)
{
    pthread_mutex_lock(&cctx_mu);
    ZSTD_CCtx *c = cctx_n ? cctx_pool[--cctx_n] : NULL;
    pthread_mutex_unlock(&cctx_mu);
    return c ? c : ZSTD_createCCtx();
}

static void cctx_put(ZSTD_CCtx *c)
{
    if (ZSTD_sizeof_CCtx(c) <= CCTX_KEEP) {
        pthread_mutex_lock(&cctx_mu);
        if (cctx_n < CCTX_POOL) cctx_pool[cctx_n++] = c, c = NULL;
        pthread_mutex_unlock(&cctx_mu);
    }
    ZSTD_freeCCtx(c);
}

size_t cs_seg_batch_compress(const uint8_t *b, size_t total, int level, uint8_t **out)
{
    size_t raw = total - CS_SEG_BATCH_HDR;
    if (cs_get32(b) != CS_SEG_BATCH_MAGIC || raw < 64) return 0; /* a record or two: not worth a frame */
    ZSTD_CCtx *c = cctx_get();
    if (!c) return 0;
    size_t cap = CS_SEG_ZBATCH_HDR + ZSTD_compressBound(raw);
    uint8_t *z = cs_malloc(cap);
    size_t n = ZSTD_compressCCtx(c, z + CS_SEG_ZBATCH_HDR, cap - CS_SEG_ZBATCH_HDR, b + CS_SEG_BATCH_HDR, raw, level);
    cctx_put(c);
    size_t zt = CS_SEG_ZBATCH_HDR + n;
    if (ZSTD_isError(n) || zt > total - total / 8 || zt < CS_SEG_MIN_BATCH) { /* < 1/8 saved: not worth a frame */
        free(z);
        return 0;
    }
    memcpy(z, b, CS_SEG_BATCH_HDR);
    cs_put32(z, CS_SEG_ZBATCH_MAGIC);
    cs_put32(z + 8, (uint32_t)zt);
    cs_put32(z + 40, (uint32_t)raw);
    *out = z;
    return zt;
}

void cs_segbuf_free(cs_segbuf *sb)
{
    free(sb->p);
    ZSTD_freeDCtx(sb->dctx);
    memset(sb, 0, sizeof *sb);
}

#define BAD(field, pos_) \
    do {                 \
        e->what = field; \
        e->at = (pos_);  \
        return 0;        \
    } while (0)

int cs_seg_batch_check(const uint8_t *b, size_t total, int64_t base, int64_t min_time, cs_batch_err *e,
                       cs_segbuf *sb, const uint8_t **recs, size_t *rlen)
{
    if (total < CS_SEG_MIN_BATCH) BAD("total_len", 8);
    uint32_t magic = cs_get32(b);
    if (!cs_seg_batch_magic(magic)) BAD("magic", 0);
    if (cs_get32(b + 8) != total) BAD("total_len", 8);
    if (cs_crc32c(0, b + 8, total - 8) != cs_get32(b + 4)) BAD("crc", 4);
    uint32_t count = cs_get32(b + 12);
    if (count == 0) BAD("record_count", 12);
    int64_t bbase = (int64_t)cs_get64(b + 16);
    if (bbase < 0 || (base >= 0 && bbase != base)) BAD("base_offset", 16);
    if ((int64_t)cs_get64(b + 24) < min_time) BAD("append_time", 24);
    int64_t dur = (int64_t)cs_get64(b + 32);
    if (dur < 0 || dur > bbase) BAD("durable_offset", 32);
    const uint8_t *r = b + CS_SEG_BATCH_HDR;
    size_t len = total - CS_SEG_BATCH_HDR;
    if (magic == CS_SEG_ZBATCH_MAGIC) {
        size_t raw = cs_get32(b + 40);
        if (raw < CS_SEG_REC_HDR || raw > CS_SEG_MAX_BATCH - CS_SEG_BATCH_HDR) BAD("raw_len", 40);
        if (raw > sb->cap) {
            free(sb->p);
            sb->p = cs_malloc(raw);
            sb->cap = raw;
        }
        if (!sb->dctx && !(sb->dctx = ZSTD_createDCtx())) BAD("zstd_context", 44);
        size_t n = ZSTD_decompressDCtx(sb->dctx, sb->p, raw, b + CS_SEG_ZBATCH_HDR, total - CS_SEG_ZBATCH_HDR);
        if (ZSTD_isError(n) || n != raw) BAD("zstd_frame", 44);
        r = sb->p, len = raw;
    }
    /* Positions below are those of the uncompressed batch (header + records). */
    size_t pos = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < CS_SEG_REC_HDR) BAD("record", CS_SEG_BATCH_HDR + pos);
        uint32_t rl = cs_get32(r + pos);
        if (rl < 12 || rl > len - pos - 4) BAD("rec_len", CS_SEG_BATCH_HDR + pos);
        uint32_t kl = cs_get32(r + pos + 12);
        if (kl > rl - 12) BAD("key_len", CS_SEG_BATCH_HDR + pos + 12);
        pos += 4 + (size_t)rl;
    }
    if (pos != len) BAD("records", CS_SEG_BATCH_HDR + pos);
    if (recs) *recs = r, *rlen = len;
    return 1;
}

int cs_seg_batch_valid(const uint8_t *b, size_t total, int64_t base, int64_t min_time, cs_batch_err *e)
{
    cs_segbuf sb = {0};
    int ok = cs_seg_batch_check(b, total, base, min_time, e, &sb, NULL, NULL);
    cs_segbuf_free(&sb);
    return ok;
}

size_t cs_seg_batch_deliver(const uint8_t *b, const uint8_t *recs, int64_t from, size_t *left, cs_rec_cb cb,
                            void *arg, int *stopped)
{
    uint32_t count = cs_get32(b + 12);
    int64_t base = (int64_t)cs_get64(b + 16), append_us = (int64_t)cs_get64(b + 24);
    size_t pos = 0, n = 0;
    for (uint32_t i = 0; i < count && *left > 0; i++) {
        uint32_t rl = cs_get32(recs + pos);
        cs_rec r;
        r.offset = base + i;
        r.ts_us = (int64_t)cs_get64(recs + pos + 4);
        r.append_us = append_us;
        r.key_len = cs_get32(recs + pos + 12);
        r.key = (const char *)recs + pos + CS_SEG_REC_HDR;
        r.value = r.key + r.key_len;
        r.value_len = rl - 12 - r.key_len;
        pos += 4 + (size_t)rl;
        if (r.offset < from) continue;
        n++;
        (*left)--;
        if (cb(&r, arg)) {
            *stopped = 1;
            break;
        }
    }
    return n;
}

/* --------------------------------------------------------------- index */

void cs_segix_add(cs_segix *ix, int64_t offset, int64_t pos, int64_t time, uint32_t interval)
{
    if (ix->n > 0 && pos - ix->last_pos < (int64_t)interval) return;
    if (ix->n == ix->cap) {
        ix->cap = ix->cap ? ix->cap * 2 : 64;
        ix->e = cs_realloc(ix->e, ix->cap * sizeof *ix->e);
    }
    ix->e[ix->n++] = (cs_ixent){offset, pos, time};
    ix->last_pos = pos;
}

void cs_segix_free(cs_segix *ix)
{
    free(ix->e);
    memset(ix, 0, sizeof *ix);
}

const cs_ixent *cs_segix_find_offset(const cs_segix *ix, int64_t o)
{
    if (ix->n == 0) return NULL;
    size_t lo = 0, hi = ix->n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ix->e[mid].offset <= o) lo = mid;
        else hi = mid;
    }
    return &ix->e[lo];
}

const cs_ixent *cs_segix_find_time(const cs_segix *ix, int64_t t)
{
    if (ix->n == 0) return NULL;
    size_t lo = 0, hi = ix->n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (ix->e[mid].time < t) lo = mid;
        else hi = mid;
    }
    return &ix->e[lo];
}

/* ---------------------------------------------------------------- scan */

/* A window over a file for sequential parsing: one pread per megabyte. */
struct win {
    const cs_io_ops *io;
    int      fd;
    int64_t  size;
    uint8_t *buf;
    size_t   cap;
    int64_t  at;     /* file position of buf[0] */
    size_t   len;
};

#define WIN_CHUNK (1u << 20)

/* Make [pos, pos+n) available; returns a pointer or NULL (errno; EIO past end). */
static const uint8_t *win_get(struct win *w, int64_t pos, size_t n)
{
    if (pos >= w->at && pos + (int64_t)n <= w->at + (int64_t)w->len) return w->buf + (pos - w->at);
    if (pos + (int64_t)n > w->size) {
        errno = EIO;
        return NULL;
    }
    size_t want = n > WIN_CHUNK ? n : WIN_CHUNK;
    if ((int64_t)want > w->size - pos) want = (size_t)(w->size - pos);
    if (want > w->cap) {
        w->cap = want;
        w->buf = cs_realloc(w->buf, w->cap);
    }
    if (cs_io_read_all(w->io, w->fd, w->buf, want, pos) != 0) {
        w->len = 0;
        return NULL;
    }
    w->at = pos;
    w->len = want;
    return w->buf;
}

/* Search (pos, size) for a later valid batch; the highest durable claim. */
static int64_t claim_past(struct win *w, int64_t pos, cs_segbuf *sb)
{
    int64_t best = -1;
    for (int64_t p = pos + 1; p + CS_SEG_MIN_BATCH <= w->size;) {
        const uint8_t *h = win_get(w, p, CS_SEG_BATCH_HDR);
        if (!h) break;
        uint32_t total = cs_get32(h + 8);
        cs_batch_err e;
        if (cs_seg_batch_magic(cs_get32(h)) && total >= CS_SEG_MIN_BATCH && total <= CS_SEG_MAX_BATCH &&
            total <= w->size - p) {
            const uint8_t *b = win_get(w, p, total);
            if (b && cs_seg_batch_check(b, total, -1, INT64_MIN, &e, sb, NULL, NULL)) {
                int64_t d = cs_seg_batch_durable(b);
                if (d > best) best = d;
                p += total;
                continue;
            }
        }
        p++;
    }
    return best;
}

int cs_seg_scan(const cs_io_ops *io, int fd, int64_t base, int64_t min_time, uint32_t interval, cs_segix *ix,
                int look_past_damage, cs_segscan *r)
{
    off_t size;
    if (io->fsize(fd, &size) != 0) return -1;
    memset(r, 0, sizeof *r);
    r->file_size = size;
    r->bad_pos = -1;
    r->durable_claim = -1;
    r->first_time = r->last_time = 0;
    struct win w = {.io = io, .fd = fd, .size = size};
    cs_segbuf sb = {0};
    int64_t pos = 0, next = base, tmin = min_time;
    int rc = 0;
    while (pos < size) {
        cs_batch_err e = {"total_len", 8};
        const uint8_t *h = size - pos >= CS_SEG_BATCH_HDR ? win_get(&w, pos, CS_SEG_BATCH_HDR) : NULL;
        if (!h && size - pos >= CS_SEG_BATCH_HDR) {
            rc = -1;
            break;
        }
        uint32_t total = h ? cs_get32(h + 8) : 0;
        const uint8_t *b = NULL;
        if (h && !cs_seg_batch_magic(cs_get32(h))) e = (cs_batch_err){"magic", 0};
        else if (h && total >= CS_SEG_MIN_BATCH && total <= CS_SEG_MAX_BATCH && total <= size - pos) {
            b = win_get(&w, pos, total);
            if (!b) {
                rc = -1;
                break;
            }
        }
        if (!b || !cs_seg_batch_check(b, total, next, tmin, &e, &sb, NULL, NULL)) {
            r->bad_pos = pos;
            r->bad_what = e.what;
            if (look_past_damage) r->durable_claim = claim_past(&w, pos, &sb);
            break;
        }
        int64_t t = cs_seg_batch_time(b);
        if (pos == 0) r->first_time = t;
        r->last_time = t;
        tmin = t;
        if (ix) cs_segix_add(ix, next, pos, t, interval);
        next += cs_seg_batch_count(b);
        pos += total;
    }
    free(w.buf);
    cs_segbuf_free(&sb);
    r->valid_end = pos;
    r->next = next;
    return rc;
}

/* --------------------------------------------------------- index files */

int cs_seg_index_write(const cs_io_ops *io, const char *path, const cs_seginfo *si, const cs_segix *ix)
{
    size_t len = CS_SEG_IDX_HDR + ix->n * CS_SEG_IDX_ENTRY;
    uint8_t *b = cs_calloc(1, len);
    for (size_t i = 0; i < ix->n; i++) {
        uint8_t *p = b + CS_SEG_IDX_HDR + i * CS_SEG_IDX_ENTRY;
        cs_put32(p, (uint32_t)(ix->e[i].offset - si->base));
        cs_put32(p + 4, (uint32_t)ix->e[i].pos);
        cs_put64(p + 8, (uint64_t)ix->e[i].time);
    }
    cs_put32(b, CS_SEG_IDX_MAGIC);
    cs_put32(b + 8, 1);
    cs_put32(b + 12, (uint32_t)ix->n);
    cs_put64(b + 16, (uint64_t)si->base);
    cs_put64(b + 24, (uint64_t)si->next);
    cs_put64(b + 32, (uint64_t)si->size);
    cs_put64(b + 40, (uint64_t)si->first_time);
    cs_put64(b + 48, (uint64_t)si->last_time);
    cs_put32(b + 56, si->interval);
    cs_put32(b + 60, cs_crc32c(0, b + CS_SEG_IDX_HDR, len - CS_SEG_IDX_HDR));
    cs_put32(b + 4, cs_crc32c(0, b + 8, CS_SEG_IDX_HDR - 8));
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = io->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    int rc = -1, e = 0;
    if (fd >= 0) {
        if (cs_io_write_all(io, fd, b, len, 0) == 0 && io->fdatasync(fd) == 0) rc = 0;
        e = errno;
        io->close(fd);
        if (rc == 0 && io->rename(tmp, path) != 0) rc = -1, e = errno;
        if (rc != 0) io->unlink(tmp);
    } else {
        e = errno;
    }
    free(b);
    errno = e;
    return rc;
}

int cs_seg_index_read_header(const cs_io_ops *io, const char *path, cs_seginfo *si)
{
    int fd = io->open(path, O_RDONLY, 0);
    if (fd < 0) return -1;
    uint8_t h[CS_SEG_IDX_HDR];
    off_t size = 0;
    int rc = io->fsize(fd, &size) == 0 && size >= CS_SEG_IDX_HDR ? cs_io_read_all(io, fd, h, sizeof h, 0) : 1;
    int e = errno;
    io->close(fd);
    if (rc != 0) {
        errno = e;
        return rc < 0 ? -1 : 1;
    }
    if (cs_get32(h) != CS_SEG_IDX_MAGIC || cs_get32(h + 4) != cs_crc32c(0, h + 8, CS_SEG_IDX_HDR - 8) ||
        cs_get32(h + 8) != 1)
        return 1;
    si->nentries = cs_get32(h + 12);
    si->base = (int64_t)cs_get64(h + 16);
    si->next = (int64_t)cs_get64(h + 24);
    si->size = (int64_t)cs_get64(h + 32);
    si->first_time = (int64_t)cs_get64(h + 40);
    si->last_time = (int64_t)cs_get64(h + 48);
    si->interval = cs_get32(h + 56);
    si->entries_crc = cs_get32(h + 60);
    if (size != CS_SEG_IDX_HDR + (off_t)si->nentries * CS_SEG_IDX_ENTRY || si->next < si->base || si->size < 0)
        return 1;
    return 0;
}

int cs_seg_index_read_entries(const cs_io_ops *io, const char *path, const cs_seginfo *si, cs_segix *ix)
{
    int fd = io->open(path, O_RDONLY, 0);
    if (fd < 0) return -1;
    size_t len = (size_t)si->nentries * CS_SEG_IDX_ENTRY;
    uint8_t *b = cs_malloc(len ? len : 1);
    int rc = cs_io_read_all(io, fd, b, len, CS_SEG_IDX_HDR);
    int e = errno;
    io->close(fd);
    if (rc != 0) {
        free(b);
        errno = e;
        return -1;
    }
    if (cs_crc32c(0, b, len) != si->entries_crc) {
        free(b);
        return 1;
    }
    cs_segix_free(ix);
    ix->cap = si->nentries ? si->nentries : 1;
    ix->e = cs_malloc(ix->cap * sizeof *ix->e);
    int64_t prev_o = -1, prev_p = -1, prev_t = INT64_MIN;
    for (uint32_t i = 0; i < si->nentries; i++) {
        const uint8_t *p = b + (size_t)i * CS_SEG_IDX_ENTRY;
        cs_ixent x = {si->base + cs_get32(p), cs_get32(p + 4), (int64_t)cs_get64(p + 8)};
        /* A valid CRC over nonsense (a bug, not a flip): refuse it too. */
        if (x.offset <= prev_o || x.pos <= prev_p || x.time < prev_t || x.offset >= si->next || x.pos >= si->size) {
            free(b);
            cs_segix_free(ix);
            return 1;
        }
        ix->e[ix->n++] = x;
        prev_o = x.offset, prev_p = x.pos, prev_t = x.time;
    }
    if (ix->n) ix->last_pos = ix->e[ix->n - 1].pos;
    free(b);
    return 0;
}

/* ------------------------------------------------------------ readers */

#define READ_CHUNK (64u << 10)

int cs_seg_read(const cs_io_ops *io, int fd, int64_t pos, int64_t limit, int64_t *expect, int64_t tmin, int64_t from,
                size_t *left, cs_rec_cb cb, void *arg, int *stopped, cs_segbad *bad)
{
    struct win w = {.io = io, .fd = fd, .size = limit};
    cs_segbuf sb = {0};
    int delivered = 0;
    *stopped = 0;
    while (pos < limit && *left > 0 && !*stopped) {
        cs_batch_err e = {"total_len", 8};
        const uint8_t *h = limit - pos >= CS_SEG_BATCH_HDR ? win_get(&w, pos, CS_SEG_BATCH_HDR) : NULL;
        uint32_t total = h ? cs_get32(h + 8) : 0;
        const uint8_t *b = NULL, *recs = NULL;
        size_t rlen = 0;
        if (h && !cs_seg_batch_magic(cs_get32(h))) e = (cs_batch_err){"magic", 0};
        else if (h && total >= CS_SEG_MIN_BATCH && total <= CS_SEG_MAX_BATCH && total <= limit - pos)
            b = win_get(&w, pos, total);
        if (!b || !cs_seg_batch_check(b, total, *expect, tmin, &e, &sb, &recs, &rlen)) {
            bad->pos = pos;
            int rd = (!h && limit - pos >= CS_SEG_BATCH_HDR) ||
                     (h && !b && cs_seg_batch_magic(cs_get32(h)) && total >= CS_SEG_MIN_BATCH &&
                      total <= CS_SEG_MAX_BATCH && total <= limit - pos);
            bad->what = rd ? "read" : e.what;
            bad->err = rd ? errno : 0;
            free(w.buf);
            cs_segbuf_free(&sb);
            return -1;
        }
        delivered += (int)cs_seg_batch_deliver(b, recs, from, left, cb, arg, stopped);
        tmin = cs_seg_batch_time(b);
        *expect += cs_seg_batch_count(b);
        pos += total;
        if (total > READ_CHUNK && w.cap > READ_CHUNK) {
            /* Do not keep a huge batch's buffer for the small ones after it. */
            free(w.buf);
            w.buf = NULL, w.cap = 0, w.len = 0;
        }
        if (sb.cap > READ_CHUNK && rlen <= READ_CHUNK) cs_segbuf_free(&sb); /* same for its records */
    }
    free(w.buf);
    cs_segbuf_free(&sb);
    return delivered;
}

int cs_seg_find_time(const cs_io_ops *io, int fd, int64_t pos, int64_t limit, int64_t expect, int64_t ts,
                     int64_t *off, cs_segbad *bad)
{
    struct win w = {.io = io, .fd = fd, .size = limit};
    cs_segbuf sb = {0};
    int rc = 0;
    *off = expect;
    while (pos < limit) {
        cs_batch_err e = {"total_len", 8};
        const uint8_t *h = limit - pos >= CS_SEG_BATCH_HDR ? win_get(&w, pos, CS_SEG_BATCH_HDR) : NULL;
        uint32_t total = h ? cs_get32(h + 8) : 0;
        const uint8_t *b = NULL;
        if (h && total >= CS_SEG_MIN_BATCH && total <= CS_SEG_MAX_BATCH && total <= limit - pos)
            b = win_get(&w, pos, total);
        if (!b || !cs_seg_batch_check(b, total, expect, INT64_MIN, &e, &sb, NULL, NULL)) {
            bad->pos = pos;
            bad->what = e.what;
            bad->err = 0;
            rc = -1;
            break;
        }
        if (cs_seg_batch_time(b) >= ts) {
            *off = expect;
            rc = 1;
            break;
        }
        expect += cs_seg_batch_count(b);
        *off = expect;
        pos += total;
    }
    free(w.buf);
    cs_segbuf_free(&sb);
    return rc;
}
