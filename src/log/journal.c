/*
 * log/journal — the shared commit file of a topic (format, checkpoints and
 * recovery are specified in journal.h).
 *
 * Concurrency: one mutex. Appenders write their partitions' batches and the
 * journal records under it (so the journal's order is every partition's
 * order), then wait for the group commit; the leader releases the mutex
 * during fdatasync. Lock order: journal, then partition. A checkpoint runs
 * in the appender that switched files, outside the mutex.
 */
#include "log/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "log/segment.h"

#define J_MAGIC 0x4a4a5343u
#define J_REC_MAGIC 0x524a5343u
#define J_FILL_STEP (1 << 20) /* zeros written ahead of the end */

struct cs_journal {
    char            *dir;
    const cs_io_ops *io;
    cs_part        **parts;
    int              nparts;
    int64_t          cap;          /* bytes per file */
    pthread_mutex_t  mu;
    pthread_cond_t   cv;
    int              fd[2];
    int64_t          fill[2];      /* file size (zeros or records up to it) */
    int              pending[2];   /* holds records whose segments are not synced */
    uint64_t         gen;          /* of the current file */
    uint64_t         salt;
    int              cur;
    int64_t          wpos;         /* next record position in the current file */
    uint64_t         wseq, dseq;   /* journal bytes written / durable, over all files */
    int              syncing;
    int              dead;
    int              warned;
    cs_journal_stats st;
};

static void jpath(const char *dir, int i, char *buf, size_t len) { snprintf(buf, len, "%s/journal-%d", dir, i); }

static uint64_t new_salt(uint64_t gen)
{
    uint64_t x = (uint64_t)cs_now_us() ^ (gen * 0x9e3779b97f4a7c15ull) ^ (uint64_t)getpid() << 32;
    x ^= x >> 31, x *= 0xbf58476d1ce4e5b9ull, x ^= x >> 27;
    return x ? x : 1;
}

static void encode_header(uint8_t *h, int nparts, uint64_t gen, uint64_t salt)
{
    memset(h, 0, CS_JOURNAL_HDR);
    cs_put32(h, J_MAGIC);
    cs_put32(h + 8, 1);
    cs_put32(h + 12, (uint32_t)nparts);
    cs_put64(h + 16, gen);
    cs_put64(h + 24, salt);
    cs_put32(h + 4, cs_crc32c(0, h + 8, CS_JOURNAL_HDR - 8));
}

/* 1 valid (gen, salt set), 0 not. */
static int read_header(const cs_journal *j, int fd, uint64_t *gen, uint64_t *salt)
{
    uint8_t h[CS_JOURNAL_HDR];
    off_t size = 0;
    if (j->io->fsize(fd, &size) != 0 || size < CS_JOURNAL_HDR || cs_io_read_all(j->io, fd, h, sizeof h, 0) != 0)
        return 0;
    if (cs_get32(h) != J_MAGIC || cs_get32(h + 4) != cs_crc32c(0, h + 8, CS_JOURNAL_HDR - 8) || cs_get32(h + 8) != 1 ||
        cs_get32(h + 12) != (uint32_t)j->nparts)
        return 0;
    *gen = cs_get64(h + 16);
    *salt = cs_get64(h + 24);
    return 1;
}

/* Replay file i's records into the partitions. 0, or -1 with err. */
static int replay_file(cs_journal *j, int i, uint64_t salt, char *err, size_t errlen)
{
    off_t size = 0;
    if (j->io->fsize(j->fd[i], &size) != 0) {
        snprintf(err, errlen, "%s/journal-%d: %s", j->dir, i, strerror(errno));
        return -1;
    }
    int64_t pos = CS_JOURNAL_HDR;
    uint8_t h[CS_JOURNAL_REC_HDR];
    uint8_t *b = NULL;
    size_t cap = 0;
    long n = 0;
    int rc = 0;
    while (pos + CS_JOURNAL_REC_HDR <= size) {
        if (cs_io_read_all(j->io, j->fd[i], h, sizeof h, pos) != 0) break;
        uint32_t len = cs_get32(h + 20), part = cs_get32(h + 16);
        if (cs_get32(h) != J_REC_MAGIC || cs_get64(h + 8) != salt || part >= (uint32_t)j->nparts ||
            len < CS_SEG_MIN_BATCH || len > CS_SEG_MAX_BATCH || pos + CS_JOURNAL_REC_HDR + (int64_t)len > size)
            break;
        if (len > cap) cap = len, b = cs_realloc(b, cap);
        if (cs_io_read_all(j->io, j->fd[i], b, len, pos + CS_JOURNAL_REC_HDR) != 0) break;
        uint32_t crc = cs_crc32c(cs_crc32c(0, h + 8, CS_JOURNAL_REC_HDR - 8), b, len);
        if (crc != cs_get32(h + 4) || !cs_seg_batch_magic(cs_get32(b)) || cs_seg_batch_len(b) != len) break;
        if (cs_part_replay(j->parts[part], b, len, err, errlen) != 0) {
            rc = -1;
            break;
        }
        n++;
        pos += CS_JOURNAL_REC_HDR + (int64_t)len;
    }
    free(b);
    if (n) cs_info("log", "journal replayed", "\"file\":\"%s/journal-%d\",\"records\":%ld", j->dir, i, n);
    return rc;
}

/* Write zeros so the current file is at least end bytes long. Locked. */
static int fill_to(cs_journal *j, int64_t end)
{
    int f = j->cur;
    if (end <= j->fill[f]) return 0;
    int64_t want = j->fill[f] + J_FILL_STEP;
    if (want < end) want = end;
    if (want > j->cap) want = j->cap;
    static const uint8_t zeros[65536];
    for (int64_t at = j->fill[f]; at < want;) {
        size_t k = (size_t)(want - at < (int64_t)sizeof zeros ? want - at : (int64_t)sizeof zeros);
        if (cs_io_write_all(j->io, j->fd[f], zeros, k, at) != 0) return -1;
        at += (int64_t)k;
        j->fill[f] = at;
    }
    return 0;
}

/* Start generation gen+1 in file f (header only; made durable by the first
 * commit of a record behind it). Locked. */
static int start_file(cs_journal *j, int f)
{
    uint8_t h[CS_JOURNAL_HDR];
    uint64_t gen = j->gen + 1, salt = new_salt(gen);
    encode_header(h, j->nparts, gen, salt);
    if (cs_io_write_all(j->io, j->fd[f], h, sizeof h, 0) != 0) return -1;
    if (j->fill[f] < CS_JOURNAL_HDR) j->fill[f] = CS_JOURNAL_HDR;
    j->cur = f, j->gen = gen, j->salt = salt, j->wpos = CS_JOURNAL_HDR;
    return 0;
}

/* The current file has no room for need more bytes: make it durable and
 * move to the other one (once that one's checkpoint is done). Returns the
 * full file's index (its checkpoint is the caller's, after unlocking), -2
 * when another appender switched meanwhile, or -1 with errno. Locked. */
static int switch_file(cs_journal *j, int64_t need)
{
    for (;;) {
        if (j->dead) {
            errno = EIO;
            return -1;
        }
        if (j->wpos + need <= j->cap) return -2;
        if (j->syncing || j->pending[1 - j->cur]) {
            pthread_cond_wait(&j->cv, &j->mu);
            continue;
        }
        break;
    }
    int old = j->cur;
    if (j->dseq < j->wseq) {
        if (j->io->fdatasync(j->fd[old]) != 0) {
            char path[4200];
            jpath(j->dir, old, path, sizeof path);
            cs_io_fatal("fdatasync", path, errno);
            j->dead = 1;
            pthread_cond_broadcast(&j->cv);
            errno = EIO;
            return -1;
        }
        j->dseq = j->wseq;
        j->st.commits++;
        pthread_cond_broadcast(&j->cv);
    }
    if (start_file(j, 1 - old) != 0) return -1;
    return old;
}

/* Sync every partition: the records of full file f are then redundant. */
static void checkpoint(cs_journal *j, int f)
{
    int ok = 1;
    for (int i = 0; i < j->nparts; i++)
        if (cs_part_sync(j->parts[i]) != 0) ok = 0;
    pthread_mutex_lock(&j->mu);
    if (ok) j->pending[f] = 0, j->st.checkpoints++;
    else j->dead = 1; /* a partition's fdatasync failed: fatal (log/io.h) */
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

int cs_journal_append(cs_journal *j, cs_jbatch *bs, size_t nb)
{
    int64_t now = cs_now_us();
    int64_t need = 0;
    for (size_t i = 0; i < nb; i++) need += CS_JOURNAL_REC_HDR + (int64_t)bs[i].total, bs[i].written = 0;
    pthread_mutex_lock(&j->mu);
    if (j->dead) {
        pthread_mutex_unlock(&j->mu);
        errno = EIO;
        return -1;
    }
    int full = -1, use = need + CS_JOURNAL_HDR <= j->cap;
    if (use && j->wpos + need > j->cap) {
        full = switch_file(j, need);
        if (full == -1) {
            if (j->dead) {
                pthread_mutex_unlock(&j->mu);
                errno = EIO;
                return -1;
            }
            use = 0;
        }
    }
    if (use && fill_to(j, j->wpos + need) != 0) use = 0;
    uint8_t *stage = use ? cs_malloc((size_t)need) : NULL;
    size_t sl = 0, done = 0;
    int rc = 0, e = 0;
    for (; done < nb; done++) {
        cs_jbatch *x = &bs[done];
        if (cs_part_write(j->parts[x->partition], x->b, x->total, x->n, now, &x->w) != 0) {
            e = errno, rc = -1;
            break;
        }
        if (stage) {
            uint8_t *h = stage + sl;
            cs_put32(h, J_REC_MAGIC);
            cs_put64(h + 8, j->salt);
            cs_put32(h + 16, (uint32_t)x->partition);
            cs_put32(h + 20, (uint32_t)x->total);
            memcpy(h + CS_JOURNAL_REC_HDR, x->b, x->total);
            cs_put32(h + 4, cs_crc32c(0, h + 8, CS_JOURNAL_REC_HDR - 8 + x->total));
            sl += CS_JOURNAL_REC_HDR + x->total;
        }
    }
    uint64_t mine = 0;
    if (stage && sl) {
        if (cs_io_write_all(j->io, j->fd[j->cur], stage, sl, j->wpos) == 0) {
            j->wpos += (int64_t)sl;
            j->wseq += sl;
            mine = j->wseq;
            j->pending[j->cur] = 1;
            j->st.records += (int64_t)done;
        } else {
            use = 0;
            if (!j->warned++)
                cs_warn("log", "journal write failed: this write is made durable by partition syncs instead",
                        "\"dir\":\"%s\",\"error\":\"%s\"", j->dir, strerror(errno));
        }
    }
    free(stage);
    if (mine) {
        while (j->dseq < mine && !j->dead) {
            if (j->syncing) {
                pthread_cond_wait(&j->cv, &j->mu);
                continue;
            }
            /* The leader: one fdatasync for every record written so far. */
            int fd = j->fd[j->cur];
            uint64_t target = j->wseq;
            j->syncing = 1;
            pthread_mutex_unlock(&j->mu);
            int src = j->io->fdatasync(fd);
            int se = errno;
            pthread_mutex_lock(&j->mu);
            j->syncing = 0;
            if (src != 0) {
                char path[4200];
                jpath(j->dir, j->cur, path, sizeof path);
                cs_io_fatal("fdatasync", path, se);
                j->dead = 1;
            } else if (target > j->dseq) {
                j->dseq = target;
                j->st.commits++;
            }
            pthread_cond_broadcast(&j->cv);
        }
        int dead = j->dseq < mine;
        pthread_mutex_unlock(&j->mu);
        if (dead) {
            errno = EIO;
            return -1; /* nothing of it acknowledged */
        }
        for (size_t i = 0; i < done; i++) cs_part_publish(j->parts[bs[i].partition], &bs[i].w), bs[i].written = 1;
    } else {
        if (done) j->st.fallbacks++;
        pthread_mutex_unlock(&j->mu);
        for (size_t i = 0; i < done; i++) {
            if (cs_part_sync(j->parts[bs[i].partition]) != 0) {
                if (rc == 0) e = errno, rc = -1;
                break;
            }
            bs[i].written = 1;
        }
    }
    if (full >= 0) checkpoint(j, full);
    errno = e;
    return rc;
}

void cs_journal_get_stats(cs_journal *j, cs_journal_stats *st)
{
    pthread_mutex_lock(&j->mu);
    *st = j->st;
    st->file_bytes = j->cap;
    pthread_mutex_unlock(&j->mu);
}

void cs_journal_close(cs_journal *j)
{
    if (!j) return;
    for (int i = 0; i < 2; i++)
        if (j->fd[i] >= 0) j->io->close(j->fd[i]);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->dir);
    free(j);
}

cs_journal *cs_journal_open(const char *dir, const cs_io_ops *io, cs_part **parts, int nparts, int enabled,
                            int64_t file_bytes, char *err, size_t errlen)
{
    cs_journal *j = cs_calloc(1, sizeof *j);
    j->dir = cs_strdup(dir);
    j->io = io;
    j->parts = parts;
    j->nparts = nparts;
    j->cap = file_bytes;
    j->fd[0] = j->fd[1] = -1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    err[0] = 0;
    char path[4200];
    int created = 0;
    uint64_t gen[2] = {0, 0}, salt[2] = {0, 0};
    int valid[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        jpath(dir, i, path, sizeof path);
        j->fd[i] = io->open(path, O_RDWR | (enabled ? O_CREAT : 0), 0644);
        if (j->fd[i] < 0) {
            if (errno == ENOENT && !enabled) continue;
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto fail;
        }
        off_t size = 0;
        if (io->fsize(j->fd[i], &size) != 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (size == 0) created = 1;
        j->fill[i] = size;
        valid[i] = read_header(j, j->fd[i], &gen[i], &salt[i]);
    }
    /* Older generation first: its records come before the newer file's. */
    int order[2] = {0, 1};
    if (valid[0] && valid[1] && gen[1] < gen[0]) order[0] = 1, order[1] = 0;
    int replayed = 0;
    for (int k = 0; k < 2; k++) {
        int i = order[k];
        if (!valid[i]) continue;
        if (replay_file(j, i, salt[i], err, errlen) != 0) goto fail;
        replayed = 1;
    }
    if (replayed) {
        for (int i = 0; i < nparts; i++)
            if (cs_part_sync(parts[i]) != 0) {
                snprintf(err, errlen, "%s: syncing partition %d after the journal replay: %s", dir, i, strerror(errno));
                goto fail;
            }
    }
    j->gen = (gen[0] > gen[1] ? gen[0] : gen[1]);
    if (!enabled) {
        int had = j->fd[0] >= 0 || j->fd[1] >= 0;
        for (int i = 0; i < 2; i++) {
            if (j->fd[i] < 0) continue;
            io->close(j->fd[i]);
            j->fd[i] = -1;
            jpath(dir, i, path, sizeof path);
            if (io->unlink(path) != 0 && errno != ENOENT) {
                snprintf(err, errlen, "%s: remove: %s", path, strerror(errno));
                goto fail;
            }
        }
        if (had && io->fsync_dir(dir) != 0) {
            snprintf(err, errlen, "%s: fsync: %s", dir, strerror(errno));
            goto fail;
        }
        cs_journal_close(j);
        return NULL;
    }
    if (created && io->fsync_dir(dir) != 0) {
        snprintf(err, errlen, "%s: fsync: %s", dir, strerror(errno));
        goto fail;
    }
    if (start_file(j, 0) != 0) {
        jpath(dir, 0, path, sizeof path);
        snprintf(err, errlen, "%s: write: %s", path, strerror(errno));
        goto fail;
    }
    return j;
fail:
    if (!err[0]) snprintf(err, errlen, "%s: journal: %s", dir, strerror(errno));
    cs_journal_close(j);
    return NULL;
}
