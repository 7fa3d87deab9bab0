/*
 * log/plog — partition file: append with group commit, recovery, reads.
 * The format is specified in plog.h.
 */
#include "log/plog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"

struct batch_ix {
    int64_t base;   /* first offset */
    int64_t pos;    /* file position */
    uint32_t len;   /* total_len */
    uint32_t count;
};

struct cs_plog {
    char           *path;
    int             fd;
    int             policy;
    int             interval_ms;
    pthread_mutex_t mu;
    pthread_cond_t  synced;
    int             syncing;        /* a leader is in fdatasync */
    int64_t         written_pos;    /* file bytes written */
    int64_t         written_next;   /* next offset, written */
    int64_t         durable_pos;    /* file bytes known durable */
    int64_t         durable_next;   /* next offset, durable (visible to readers) */
    int64_t         last_sync_us;
    int64_t         truncated;
    struct batch_ix *ix;            /* one entry per batch */
    size_t          nix, capix;
};

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "format is little-endian; add swaps");

static void ix_push(cs_plog *pl, int64_t base, int64_t pos, uint32_t len, uint32_t count)
{
    if (pl->nix == pl->capix) {
        pl->capix = pl->capix ? pl->capix * 2 : 1024;
        pl->ix = cs_realloc(pl->ix, pl->capix * sizeof *pl->ix);
    }
    pl->ix[pl->nix++] = (struct batch_ix){base, pos, len, count};
}

/* Check the records of a batch body exactly fill it. */
static int records_ok(const uint8_t *b, uint32_t total, uint32_t count)
{
    uint32_t pos = CS_PLOG_HDR;
    for (uint32_t i = 0; i < count; i++) {
        if (total - pos < 4) return 0;
        uint32_t rl = get32(b + pos);
        if (rl < 12 || rl > total - pos - 4) return 0;
        uint32_t kl = get32(b + pos + 12);
        if (kl > rl - 12) return 0;
        pos += 4 + rl;
    }
    return pos == total;
}

/* Validate the batch in b (len bytes read at file position pos). */
static int batch_valid(const uint8_t *b, uint32_t total, int64_t expect_base)
{
    if (get32(b) != CS_PLOG_MAGIC) return 0;
    if (get32(b + 8) != total) return 0;
    if (cs_crc32c(0, b + 8, total - 8) != get32(b + 4)) return 0;
    if ((int64_t)get64(b + 16) != expect_base) return 0;
    uint32_t count = get32(b + 12);
    return count >= 1 && records_ok(b, total, count);
}

static int recover(cs_plog *pl, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(pl->fd, &st) != 0) {
        snprintf(err, errlen, "%s: stat: %s", pl->path, strerror(errno));
        return -1;
    }
    int64_t size = st.st_size, pos = 0, next = 0;
    uint8_t hdr[CS_PLOG_HDR];
    uint8_t *buf = NULL;
    size_t bufcap = 0;
    while (size - pos >= CS_PLOG_HDR) {
        if (pread(pl->fd, hdr, CS_PLOG_HDR, pos) != CS_PLOG_HDR) break;
        uint32_t total = get32(hdr + 8);
        if (get32(hdr) != CS_PLOG_MAGIC || total < CS_PLOG_HDR + CS_PLOG_REC_HDR ||
            total > CS_PLOG_MAX_BATCH || total > size - pos)
            break;
        if (total > bufcap) {
            bufcap = total;
            buf = cs_realloc(buf, bufcap);
        }
        if (pread(pl->fd, buf, total, pos) != (ssize_t)total) break;
        if (!batch_valid(buf, total, next)) break;
        uint32_t count = get32(buf + 12);
        ix_push(pl, next, pos, total, count);
        next += count;
        pos += total;
    }
    free(buf);
    if (pos < size) {
        pl->truncated = size - pos;
        cs_warn("log", "recovery cut an invalid or torn tail",
                "\"file\":\"%s\",\"valid_bytes\":%lld,\"truncated_bytes\":%lld,\"next_offset\":%lld",
                pl->path, (long long)pos, (long long)(size - pos), (long long)next);
        if (ftruncate(pl->fd, pos) != 0 || fdatasync(pl->fd) != 0) {
            snprintf(err, errlen, "%s: truncating torn tail: %s", pl->path, strerror(errno));
            return -1;
        }
    }
    pl->written_pos = pl->durable_pos = pos;
    pl->written_next = pl->durable_next = next;
    return 0;
}

cs_plog *cs_plog_open(const char *path, int policy, int interval_ms, char *err, size_t errlen)
{
    cs_plog *pl = cs_calloc(1, sizeof *pl);
    pl->path = cs_strdup(path);
    pl->policy = policy;
    pl->interval_ms = interval_ms;
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->synced, NULL);
    pl->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (pl->fd < 0) {
        snprintf(err, errlen, "%s: open: %s", path, strerror(errno));
        cs_plog_close(pl);
        return NULL;
    }
    if (recover(pl, err, errlen) != 0) {
        cs_plog_close(pl);
        return NULL;
    }
    pl->last_sync_us = cs_mono_us();
    return pl;
}

void cs_plog_close(cs_plog *pl)
{
    if (!pl) return;
    if (pl->fd >= 0) {
        if (pl->policy != CS_FSYNC_ALWAYS) cs_plog_sync(pl);
        close(pl->fd);
    }
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->synced);
    free(pl->ix);
    free(pl->path);
    free(pl);
}

static void fatal_sync(cs_plog *pl)
{
    cs_error("log", "fdatasync failed: stopping without acknowledging the batch",
             "\"file\":\"%s\",\"error\":\"%s\"", pl->path, strerror(errno));
    _exit(70);
}

int cs_plog_sync(cs_plog *pl)
{
    pthread_mutex_lock(&pl->mu);
    while (pl->syncing) pthread_cond_wait(&pl->synced, &pl->mu);
    int64_t pos = pl->written_pos, next = pl->written_next;
    pl->syncing = 1;
    pthread_mutex_unlock(&pl->mu);
    if (fdatasync(pl->fd) != 0) fatal_sync(pl);
    pthread_mutex_lock(&pl->mu);
    /* Only forward: under never/interval, appends publish their own end
     * while this sync ran unlocked. */
    if (next > pl->durable_next) {
        pl->durable_pos = pos;
        pl->durable_next = next;
    }
    pl->syncing = 0;
    pl->last_sync_us = cs_mono_us();
    pthread_cond_broadcast(&pl->synced);
    pthread_mutex_unlock(&pl->mu);
    return 0;
}

int cs_plog_append(cs_plog *pl, cs_rec *recs, size_t n)
{
    if (n == 0) return 0;
    size_t total = CS_PLOG_HDR;
    for (size_t i = 0; i < n; i++) total += CS_PLOG_REC_HDR + recs[i].key_len + recs[i].value_len;
    if (total > CS_PLOG_MAX_BATCH || n > UINT32_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    uint8_t *b = cs_malloc(total);
    int64_t now = cs_now_us();
    size_t pos = CS_PLOG_HDR;
    for (size_t i = 0; i < n; i++) {
        put32(b + pos, (uint32_t)(12 + recs[i].key_len + recs[i].value_len));
        put64(b + pos + 4, (uint64_t)recs[i].ts_us);
        put32(b + pos + 12, (uint32_t)recs[i].key_len);
        pos += CS_PLOG_REC_HDR;
        memcpy(b + pos, recs[i].key, recs[i].key_len);
        pos += recs[i].key_len;
        memcpy(b + pos, recs[i].value, recs[i].value_len);
        pos += recs[i].value_len;
    }
    put32(b, CS_PLOG_MAGIC);
    put32(b + 8, (uint32_t)total);
    put32(b + 12, (uint32_t)n);
    put64(b + 24, (uint64_t)now);

    pthread_mutex_lock(&pl->mu);
    int64_t base = pl->written_next, at = pl->written_pos;
    put64(b + 16, (uint64_t)base);
    put32(b + 4, cs_crc32c(0, b + 8, total - 8));
    ssize_t w = pwrite(pl->fd, b, total, at);
    free(b);
    if (w != (ssize_t)total) {
        int e = w < 0 ? errno : ENOSPC;
        /* Nothing of the batch may stay: cut back to where it started. */
        if (ftruncate(pl->fd, at) != 0) {
            cs_error("log", "cannot cut a failed write", "\"file\":\"%s\"", pl->path);
            _exit(70);
        }
        pthread_mutex_unlock(&pl->mu);
        errno = e;
        return -1;
    }
    pl->written_pos = at + (int64_t)total;
    pl->written_next = base + (int64_t)n;
    ix_push(pl, base, at, (uint32_t)total, (uint32_t)n);
    int64_t my_next = pl->written_next;

    if (pl->policy == CS_FSYNC_ALWAYS) {
        while (pl->durable_next < my_next) {
            if (pl->syncing) {
                pthread_cond_wait(&pl->synced, &pl->mu);
                continue;
            }
            /* Become the leader: one fdatasync covers every batch written so far. */
            int64_t spos = pl->written_pos, snext = pl->written_next;
            pl->syncing = 1;
            pthread_mutex_unlock(&pl->mu);
            if (fdatasync(pl->fd) != 0) fatal_sync(pl);
            pthread_mutex_lock(&pl->mu);
            pl->durable_pos = spos;
            pl->durable_next = snext;
            pl->syncing = 0;
            pthread_cond_broadcast(&pl->synced);
        }
        pthread_mutex_unlock(&pl->mu);
    } else {
        /* Weaker policies: visible at once, synced by cs_plog_sync's timer. */
        pl->durable_pos = pl->written_pos;
        pl->durable_next = pl->written_next;
        int due = pl->policy == CS_FSYNC_INTERVAL &&
                  cs_mono_us() - pl->last_sync_us >= (int64_t)pl->interval_ms * 1000;
        pthread_mutex_unlock(&pl->mu);
        if (due) cs_plog_sync(pl);
    }
    for (size_t i = 0; i < n; i++) recs[i].offset = base + (int64_t)i;
    return 0;
}

int64_t cs_plog_end(cs_plog *pl)
{
    pthread_mutex_lock(&pl->mu);
    int64_t e = pl->durable_next;
    pthread_mutex_unlock(&pl->mu);
    return e;
}

int64_t cs_plog_truncated_bytes(cs_plog *pl)
{
    return pl->truncated;
}

int cs_plog_read(cs_plog *pl, int64_t from, size_t max, cs_rec_cb cb, void *arg)
{
    pthread_mutex_lock(&pl->mu);
    int64_t end = pl->durable_next;
    if (from < 0) from = 0;
    if (from >= end || max == 0) {
        pthread_mutex_unlock(&pl->mu);
        return 0;
    }
    /* Binary search the batch holding `from`. */
    size_t lo = 0, hi = pl->nix;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (pl->ix[mid].base <= from) lo = mid;
        else hi = mid;
    }
    size_t first = lo;
    pthread_mutex_unlock(&pl->mu);

    int delivered = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    for (size_t bi = first; (size_t)delivered < max; bi++) {
        pthread_mutex_lock(&pl->mu);
        if (bi >= pl->nix || pl->ix[bi].base >= end) {
            pthread_mutex_unlock(&pl->mu);
            break;
        }
        struct batch_ix e = pl->ix[bi];
        pthread_mutex_unlock(&pl->mu);
        if (e.len > cap) {
            cap = e.len;
            buf = cs_realloc(buf, cap);
        }
        if (pread(pl->fd, buf, e.len, e.pos) != (ssize_t)e.len || !batch_valid(buf, e.len, e.base)) {
            cs_error("log", "batch failed its checksum on read",
                     "\"file\":\"%s\",\"base_offset\":%lld,\"position\":%lld", pl->path,
                     (long long)e.base, (long long)e.pos);
            free(buf);
            return -1;
        }
        int64_t append_us = (int64_t)get64(buf + 24);
        size_t pos = CS_PLOG_HDR;
        for (uint32_t i = 0; i < e.count && (size_t)delivered < max; i++) {
            uint32_t rl = get32(buf + pos);
            cs_rec r;
            r.offset = e.base + i;
            r.ts_us = (int64_t)get64(buf + pos + 4);
            r.append_us = append_us;
            r.key_len = get32(buf + pos + 12);
            r.key = (const char *)buf + pos + CS_PLOG_REC_HDR;
            r.value = r.key + r.key_len;
            r.value_len = rl - 12 - r.key_len;
            pos += 4 + rl;
            if (r.offset < from) continue;
            delivered++;
            if (cb(&r, arg)) {
                free(buf);
                return delivered;
            }
        }
    }
    free(buf);
    return delivered;
}
