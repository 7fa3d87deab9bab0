/*
 * log — a topic: its metadata (partition count), its partitions
 * (partition.c), its consumer groups' committed offsets and retention.
 * Formats are specified in segment.h.
 */
#include "log/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "log/journal.h"
#include "log/partition.h"
#include "log/segment.h"

struct group {
    char     name[CS_LOG_GROUP_NAME_MAX + 1];
    int      fd;
    uint64_t gen;
    int64_t *next;      /* per partition */
};

struct cs_topic {
    char            *dir;
    char            *gdir;
    cs_topic_opts      o;
    const cs_io_ops *io;
    cs_part        **parts;
    cs_journal      *journal;  /* NULL: each partition syncs its own file */
    pthread_mutex_t  gmu;     /* groups */
    struct group   **groups;
    size_t           ngroups, capgroups;
    char             err[600];
    int              dead;    /* a fatal error in the groups (test hook returned) */
};

void cs_topic_opts_default(cs_topic_opts *o)
{
    *o = (cs_topic_opts){.partitions = 8, .fsync_policy = CS_FSYNC_ALWAYS, .segment_bytes = 64LL << 20,
                       .index_interval = 4096, .retention_ms = 7LL * 86400 * 1000, .retention_bytes = 0,
                       .preallocate = 1, .journal_bytes = 32LL << 20, .io = NULL};
}

int cs_topic_partitions(const cs_topic *lg) { return lg->o.partitions; }

/* ------------------------------------------------------------ metadata */

static int write_atomic(const cs_io_ops *io, const char *dir, const char *name, const void *buf, size_t len)
{
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = io->open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int rc = cs_io_write_all(io, fd, buf, len, 0) == 0 && io->fdatasync(fd) == 0 ? 0 : -1;
    int e = errno;
    io->close(fd);
    if (rc == 0 && io->rename(tmp, path) == 0 && io->fsync_dir(dir) == 0) return 0;
    e = rc == 0 ? errno : e;
    io->unlink(tmp);
    errno = e;
    return -1;
}

/* 1 valid (partitions in *np), 0 missing, -1 damaged. */
static int read_meta(const cs_io_ops *io, const char *dir, int *np)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/meta", dir);
    int fd = io->open(path, O_RDONLY, 0);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    uint8_t b[CS_SEG_META_SIZE];
    off_t size = 0;
    int ok = io->fsize(fd, &size) == 0 && size == CS_SEG_META_SIZE && cs_io_read_all(io, fd, b, sizeof b, 0) == 0;
    io->close(fd);
    if (!ok || cs_get32(b) != CS_SEG_META_MAGIC || cs_get32(b + 4) != cs_crc32c(0, b + 8, CS_SEG_META_SIZE - 8) ||
        cs_get32(b + 8) != 1)
        return -1;
    *np = (int)cs_get32(b + 12);
    return 1;
}

static int write_meta(const cs_io_ops *io, const char *dir, int partitions)
{
    uint8_t b[CS_SEG_META_SIZE] = {0};
    cs_put32(b, CS_SEG_META_MAGIC);
    cs_put32(b + 8, 1);
    cs_put32(b + 12, (uint32_t)partitions);
    cs_put64(b + 16, (uint64_t)cs_now_us());
    cs_put32(b + 4, cs_crc32c(0, b + 8, CS_SEG_META_SIZE - 8));
    return write_atomic(io, dir, "meta", b, sizeof b);
}

static int count_partition_dirs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] == 'p' && strlen(de->d_name) == 6 && strspn(de->d_name + 1, "0123456789") == 5) n++;
    closedir(d);
    return n;
}

static int mkdir_durable(const cs_io_ops *io, const char *path, int *created)
{
    *created = 0;
    if (io->mkdir(path, 0755) == 0) {
        *created = 1;
        return 0;
    }
    return errno == EEXIST ? 0 : -1;
}

static char *parent_dir(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s != path ? cs_strndup(path, (size_t)(s - path)) : cs_strdup(s ? "/" : ".");
}

/* -------------------------------------------------------------- groups */

static size_t slot_size(int partitions)
{
    size_t n = CS_SEG_GROUP_HDR + 8 * (size_t)partitions;
    return (n + 511) & ~(size_t)511;
}

static int group_name_ok(const char *g)
{
    size_t n = strlen(g);
    return n >= 1 && n <= CS_LOG_GROUP_NAME_MAX &&
           strspn(g, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n && g[0] != '.';
}

static void encode_slot(uint8_t *b, const struct group *g, int partitions, uint64_t gen)
{
    memset(b, 0, slot_size(partitions));
    cs_put32(b, CS_SEG_GROUP_MAGIC);
    cs_put64(b + 8, gen);
    cs_put32(b + 16, (uint32_t)partitions);
    cs_put64(b + 24, (uint64_t)cs_now_us());
    for (int i = 0; i < partitions; i++) cs_put64(b + CS_SEG_GROUP_HDR + 8 * (size_t)i, (uint64_t)g->next[i]);
    cs_put32(b + 4, cs_crc32c(0, b + 8, CS_SEG_GROUP_HDR - 8 + 8 * (size_t)partitions));
}

/* Decode slot; 1 valid. */
static int decode_slot(const uint8_t *b, int partitions, uint64_t *gen, int64_t *next)
{
    if (cs_get32(b) != CS_SEG_GROUP_MAGIC || cs_get32(b + 16) != (uint32_t)partitions ||
        cs_get32(b + 4) != cs_crc32c(0, b + 8, CS_SEG_GROUP_HDR - 8 + 8 * (size_t)partitions))
        return 0;
    *gen = cs_get64(b + 8);
    for (int i = 0; i < partitions; i++) {
        next[i] = (int64_t)cs_get64(b + CS_SEG_GROUP_HDR + 8 * (size_t)i);
        if (next[i] < 0) return 0;
    }
    return *gen >= 1;
}

static struct group *group_find(cs_topic *lg, const char *name)
{
    for (size_t i = 0; i < lg->ngroups; i++)
        if (strcmp(lg->groups[i]->name, name) == 0) return lg->groups[i];
    return NULL;
}

static void group_free(cs_topic *lg, struct group *g)
{
    if (!g) return;
    if (g->fd >= 0) lg->io->close(g->fd);
    free(g->next);
    free(g);
}

static struct group *group_add(cs_topic *lg, const char *name)
{
    struct group *g = cs_calloc(1, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->fd = -1;
    g->next = cs_calloc((size_t)lg->o.partitions, sizeof *g->next);
    if (lg->ngroups == lg->capgroups) {
        lg->capgroups = lg->capgroups ? lg->capgroups * 2 : 8;
        lg->groups = cs_realloc(lg->groups, lg->capgroups * sizeof *lg->groups);
    }
    lg->groups[lg->ngroups++] = g;
    return g;
}

/* Load one group file: the valid slot with the highest generation. */
static void group_load(cs_topic *lg, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.off", lg->gdir, name);
    int P = lg->o.partitions;
    size_t S = slot_size(P);
    struct group *g = group_add(lg, name);
    g->fd = lg->io->open(path, O_RDWR, 0);
    uint8_t *b = cs_calloc(2, S);
    uint64_t gen[2] = {0, 0};
    int64_t *nx[2] = {cs_calloc((size_t)P, 8), cs_calloc((size_t)P, 8)};
    int ok[2] = {0, 0};
    off_t size = 0;
    if (g->fd >= 0 && lg->io->fsize(g->fd, &size) == 0) {
        ssize_t r = lg->io->pread(g->fd, b, 2 * S, 0);
        for (int k = 0; k < 2; k++)
            if (r >= (ssize_t)((size_t)k * S + S)) ok[k] = decode_slot(b + (size_t)k * S, P, &gen[k], nx[k]);
    }
    int best = ok[0] && (!ok[1] || gen[0] > gen[1]) ? 0 : ok[1] ? 1 : -1;
    if (best >= 0) {
        g->gen = gen[best];
        memcpy(g->next, nx[best], (size_t)P * 8);
        int other = !ok[0] ? 0 : 1;
        int blank = 1;
        for (size_t i = 0; i < S && blank; i++) blank = b[(size_t)other * S + i] == 0;
        if ((!ok[0] || !ok[1]) && !blank)
            cs_warn("log", "consumer group offsets: one slot damaged (a torn commit); using the other",
                    "\"file\":\"%s\",\"generation\":%llu", path, (unsigned long long)g->gen);
    } else {
        snprintf(lg->err, sizeof lg->err, "%.500s: no valid slot (damaged offsets file)", path);
        cs_error("log", "consumer group offsets damaged: the group restarts from the log start (nothing skipped)",
                 "\"file\":\"%s\"", path);
        g->gen = 0;
    }
    free(b);
    free(nx[0]);
    free(nx[1]);
}

static int group_write(cs_topic *lg, struct group *g, uint64_t gen)
{
    size_t S = slot_size(lg->o.partitions);
    uint8_t *b = cs_malloc(S);
    encode_slot(b, g, lg->o.partitions, gen);
    int rc = cs_io_write_all(lg->io, g->fd, b, S, (off_t)((gen % 2) * S));
    free(b);
    if (rc != 0) return -1;
    if (lg->io->fdatasync(g->fd) != 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.off", lg->gdir, g->name);
        cs_io_fatal("fdatasync of consumer group offsets", path, errno);
        __atomic_store_n(&lg->dead, 1, __ATOMIC_RELEASE);
        errno = EIO;
        return -1;
    }
    g->gen = gen;
    return 0;
}

static int group_create(cs_topic *lg, const char *name)
{
    int P = lg->o.partitions;
    size_t S = slot_size(P);
    struct group tmp = {.next = cs_calloc((size_t)P, 8)};
    uint8_t *b = cs_calloc(2, S);
    encode_slot(b, &tmp, P, 1);
    char fname[CS_LOG_GROUP_NAME_MAX + 8];
    snprintf(fname, sizeof fname, "%s.off", name);
    int rc = write_atomic(lg->io, lg->gdir, fname, b, 2 * S);
    free(b);
    free(tmp.next);
    return rc;
}

int cs_topic_group_register(cs_topic *lg, const char *name)
{
    if (!group_name_ok(name)) {
        errno = EINVAL;
        return -1;
    }
    pthread_mutex_lock(&lg->gmu);
    int rc = 0;
    if (!group_find(lg, name)) {
        rc = group_create(lg, name);
        if (rc == 0) group_load(lg, name);
    }
    int e = errno;
    pthread_mutex_unlock(&lg->gmu);
    errno = e;
    return rc;
}

int cs_topic_group_commit(cs_topic *lg, const char *name, int partition, int64_t next)
{
    if (partition < 0 || partition >= lg->o.partitions || next < 0) {
        errno = EINVAL;
        return -1;
    }
    if (cs_topic_group_register(lg, name) != 0) return -1;
    pthread_mutex_lock(&lg->gmu);
    struct group *g = group_find(lg, name);
    int rc = -1;
    if (g && g->fd >= 0) {
        int64_t old = g->next[partition];
        g->next[partition] = next;
        rc = group_write(lg, g, g->gen + 1);
        if (rc != 0) g->next[partition] = old;
    } else {
        errno = EIO;
    }
    int e = errno;
    pthread_mutex_unlock(&lg->gmu);
    errno = e;
    return rc;
}

int64_t cs_topic_group_committed(cs_topic *lg, const char *name, int partition)
{
    if (partition < 0 || partition >= lg->o.partitions) return -1;
    pthread_mutex_lock(&lg->gmu);
    struct group *g = group_find(lg, name);
    int64_t v = g ? g->next[partition] : -1;
    pthread_mutex_unlock(&lg->gmu);
    return v;
}

static int64_t min_consumed(cs_topic *lg, int partition)
{
    pthread_mutex_lock(&lg->gmu);
    int64_t m = -1;
    for (size_t i = 0; i < lg->ngroups; i++) {
        int64_t v = lg->groups[i]->next[partition];
        if (m < 0 || v < m) m = v;
    }
    pthread_mutex_unlock(&lg->gmu);
    return m;
}

static int open_groups(cs_topic *lg, char *err, size_t errlen)
{
    int created;
    if (mkdir_durable(lg->io, lg->gdir, &created) != 0 || (created && lg->io->fsync_dir(lg->dir) != 0)) {
        snprintf(err, errlen, "%s: mkdir: %s", lg->gdir, strerror(errno));
        return -1;
    }
    DIR *d = opendir(lg->gdir);
    if (!d) {
        snprintf(err, errlen, "%s: %s", lg->gdir, strerror(errno));
        return -1;
    }
    struct dirent *de;
    int dirty = 0;
    while ((de = readdir(d)) != NULL) {
        char name[300];
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.') continue;
        if (n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%s", lg->gdir, de->d_name);
            if (lg->io->unlink(path) == 0) dirty = 1;
            continue;
        }
        if (n <= 4 || n - 4 >= sizeof name || strcmp(de->d_name + n - 4, ".off") != 0) continue;
        memcpy(name, de->d_name, n - 4);
        name[n - 4] = '\0';
        if (group_name_ok(name)) group_load(lg, name);
    }
    closedir(d);
    if (dirty) lg->io->fsync_dir(lg->gdir);
    return 0;
}

/* ---------------------------------------------------------------- open */

cs_topic *cs_topic_open(const char *dir, const cs_topic_opts *o, char *err, size_t errlen)
{
    cs_topic *lg = cs_calloc(1, sizeof *lg);
    lg->dir = cs_strdup(dir);
    lg->o = *o;
    lg->io = o->io ? o->io : &cs_io_real;
    pthread_mutex_init(&lg->gmu, NULL);
    char path[4200];
    snprintf(path, sizeof path, "%s/groups", dir);
    lg->gdir = cs_strdup(path);
    int P = o->partitions, created;
    if (P < 1 || P > 100000 || o->segment_bytes < 1024 || o->index_interval < 1 ||
        (o->journal_bytes != 0 && o->journal_bytes < 4096)) {
        snprintf(err, errlen, "%s: invalid log options (partitions %d, segment_bytes %lld, journal_bytes %lld: 0 or at least 4096)", dir, P,
                 (long long)o->segment_bytes, (long long)o->journal_bytes);
        goto fail;
    }
    char *parent = parent_dir(dir);
    int prc = cs_mkdirs(parent, 0755);
    if (prc == 0 && mkdir_durable(lg->io, dir, &created) == 0 && (!created || lg->io->fsync_dir(parent) == 0)) {
        free(parent);
    } else {
        snprintf(err, errlen, "%s: mkdir: %s", dir, strerror(errno));
        free(parent);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/00000.log", dir);
    if (access(path, F_OK) == 0) {
        snprintf(err, errlen, "%s: a log in the old single-file format; this version reads segment directories "
                 "(move the old data directory away)", path);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/meta.tmp", dir);
    if (lg->io->unlink(path) == 0) lg->io->fsync_dir(dir);
    int have = 0, m = read_meta(lg->io, dir, &have);
    if (m == 1 && have != P) {
        snprintf(err, errlen,
                 "%s/meta: the topic has %d partitions but %d are configured (log.partitions); changing the count "
                 "would move keys between partitions: refusing to open",
                 dir, have, P);
        goto fail;
    }
    if (m != 1) {
        int dirs = count_partition_dirs(dir);
        if (dirs != 0 && dirs != P) {
            snprintf(err, errlen, "%s/meta: %s, and the topic has %d partition directories but %d are configured: "
                     "refusing to open", dir, m == 0 ? "missing" : "damaged", dirs, P);
            goto fail;
        }
        if (dirs) cs_warn("log", "topic metadata missing or damaged: rewritten from the partition directories",
                          "\"dir\":\"%s\",\"partitions\":%d", dir, P);
        if (write_meta(lg->io, dir, P) != 0) {
            snprintf(err, errlen, "%s/meta: write: %s", dir, strerror(errno));
            goto fail;
        }
    }
    lg->parts = cs_calloc((size_t)P, sizeof *lg->parts);
    int any = 0;
    for (int i = 0; i < P; i++) {
        snprintf(path, sizeof path, "%s/p%05d", dir, i);
        if (mkdir_durable(lg->io, path, &created) != 0) {
            snprintf(err, errlen, "%s: mkdir: %s", path, strerror(errno));
            goto fail;
        }
        any |= created;
    }
    if (any && lg->io->fsync_dir(dir) != 0) {
        snprintf(err, errlen, "%s: fsync: %s", dir, strerror(errno));
        goto fail;
    }
    for (int i = 0; i < P; i++) {
        snprintf(path, sizeof path, "%s/p%05d", dir, i);
        lg->parts[i] = cs_part_open(path, i, o, err, errlen);
        if (!lg->parts[i]) goto fail;
    }
    int journal = o->fsync_policy == CS_FSYNC_ALWAYS && P > 1 && o->journal_bytes > 0;
    lg->journal = cs_journal_open(dir, lg->io, lg->parts, P, journal, o->journal_bytes, err, errlen);
    if (!lg->journal && err[0]) goto fail;
    if (open_groups(lg, err, errlen) != 0) goto fail;
    cs_topic_retain(lg, cs_now_us());
    return lg;
fail:
    cs_topic_close(lg);
    return NULL;
}

void cs_topic_close(cs_topic *lg)
{
    if (!lg) return;
    if (lg->journal) {
        cs_topic_sync(lg); /* the segments hold everything: the journal is redundant */
        cs_journal_close(lg->journal);
    }
    for (int i = 0; lg->parts && i < lg->o.partitions; i++) cs_part_close(lg->parts[i]);
    free(lg->parts);
    for (size_t i = 0; i < lg->ngroups; i++) group_free(lg, lg->groups[i]);
    free(lg->groups);
    pthread_mutex_destroy(&lg->gmu);
    free(lg->gdir);
    free(lg->dir);
    free(lg);
}

/* ------------------------------------------------------------- data ops */

#define PART_OK(lg, p) ((p) >= 0 && (p) < (lg)->o.partitions)

int cs_topic_append(cs_topic *lg, int partition, cs_rec *recs, size_t n)
{
    if (!PART_OK(lg, partition)) {
        errno = EINVAL;
        return -1;
    }
    cs_part *p = lg->parts[partition];
    if (__atomic_load_n(&lg->dead, __ATOMIC_ACQUIRE)) {
        errno = EIO;
        return -1;
    }
    if (lg->journal) {
        cs_topic_batch b = {.partition = partition, .recs = recs, .n = n};
        return cs_topic_append_multi(lg, &b, 1);
    }
    int rc = cs_part_append(p, recs, n);
    int e = errno;
    if (rc == 0) {
        int64_t now = cs_now_us();
        if (cs_part_retention_due(p, now)) cs_part_retain(p, now, min_consumed(lg, partition));
    }
    errno = e;
    return rc;
}

int cs_topic_append_multi(cs_topic *lg, cs_topic_batch *b, size_t nb)
{
    for (size_t i = 0; i < nb; i++)
        if (!PART_OK(lg, b[i].partition)) {
            errno = EINVAL;
            return -1;
        }
    if (!lg->journal) {
        for (size_t i = 0; i < nb; i++)
            if (b[i].n && cs_topic_append(lg, b[i].partition, b[i].recs, b[i].n) != 0) return -1;
        return 0;
    }
    if (__atomic_load_n(&lg->dead, __ATOMIC_ACQUIRE)) {
        errno = EIO;
        return -1;
    }
    /* Encode outside every lock; the journal seals and writes. */
    cs_jbatch stack[16];
    cs_jbatch *jb = nb <= 16 ? stack : cs_malloc(nb * sizeof *jb);
    size_t k = 0;
    int rc = 0, e = 0;
    for (size_t i = 0; i < nb; i++) {
        if (b[i].n == 0) continue;
        size_t total = cs_seg_batch_size(b[i].recs, b[i].n);
        if (total == 0 || b[i].n > UINT32_MAX) {
            rc = -1, e = EMSGSIZE;
            break;
        }
        jb[k] = (cs_jbatch){.partition = b[i].partition, .b = cs_malloc(total), .total = total, .n = b[i].n};
        cs_seg_batch_encode(jb[k].b, total, b[i].recs, b[i].n);
        uint8_t *z;
        size_t zt = lg->o.compression ? cs_seg_batch_compress(jb[k].b, total, lg->o.compression_level, &z) : 0;
        if (zt) free(jb[k].b), jb[k].b = z, jb[k].total = zt;
        k++;
    }
    if (rc == 0 && k) {
        rc = cs_journal_append(lg->journal, jb, k);
        e = errno;
    }
    int64_t now = cs_now_us();
    for (size_t i = 0, x = 0; i < nb && x < k; i++) {
        if (b[i].n == 0) continue;
        if (jb[x].written) {
            for (size_t r = 0; r < b[i].n; r++) b[i].recs[r].offset = jb[x].w.base + (int64_t)r;
            cs_part *p = lg->parts[b[i].partition];
            if (cs_part_retention_due(p, now)) cs_part_retain(p, now, min_consumed(lg, b[i].partition));
        }
        free(jb[x].b);
        x++;
    }
    if (jb != stack) free(jb);
    errno = e;
    return rc;
}

int cs_topic_read(cs_topic *lg, int partition, int64_t from, size_t max, cs_rec_cb cb, void *arg)
{
    if (!PART_OK(lg, partition)) return -1;
    return cs_part_read(lg->parts[partition], from, max, cb, arg);
}

int64_t cs_topic_end(cs_topic *lg, int partition) { return PART_OK(lg, partition) ? cs_part_end(lg->parts[partition]) : -1; }

int64_t cs_topic_start(cs_topic *lg, int partition)
{
    return PART_OK(lg, partition) ? cs_part_start(lg->parts[partition]) : -1;
}

int64_t cs_topic_offset_for_time(cs_topic *lg, int partition, int64_t ts_us)
{
    return PART_OK(lg, partition) ? cs_part_offset_for_time(lg->parts[partition], ts_us) : -1;
}

int cs_topic_sync(cs_topic *lg)
{
    int rc = 0;
    for (int i = 0; i < lg->o.partitions; i++)
        if (cs_part_sync(lg->parts[i]) != 0) rc = -1;
    return rc;
}

int cs_topic_retain(cs_topic *lg, int64_t now_us)
{
    int total = 0, rc = 0;
    for (int i = 0; i < lg->o.partitions; i++) {
        int k = cs_part_retain(lg->parts[i], now_us, min_consumed(lg, i));
        if (k < 0) rc = -1;
        else total += k;
    }
    return rc < 0 ? -1 : total;
}

void cs_topic_get_stats(cs_topic *lg, int partition, cs_topic_stats *st)
{
    memset(st, 0, sizeof *st);
    for (int i = 0; i < lg->o.partitions; i++) {
        if (partition >= 0 && i != partition) continue;
        cs_topic_stats s;
        cs_part_stats(lg->parts[i], &s);
        st->truncated_bytes += s.truncated_bytes, st->indexes_rebuilt += s.indexes_rebuilt;
        st->temp_removed += s.temp_removed, st->segments += s.segments, st->bytes += s.bytes;
        st->segments_deleted += s.segments_deleted, st->lost_events += s.lost_events;
        st->read_errors += s.read_errors;
        st->journal_replayed += s.journal_replayed;
    }
    if (lg->journal && partition < 0) {
        cs_journal_stats js;
        cs_journal_get_stats(lg->journal, &js);
        st->journal_commits = js.commits, st->journal_checkpoints = js.checkpoints;
        st->journal_fallbacks = js.fallbacks;
    }
}

const char *cs_topic_errmsg(cs_topic *lg)
{
    char buf[512];
    for (int i = 0; i < lg->o.partitions; i++) {
        cs_part_errmsg(lg->parts[i], buf, sizeof buf);
        if (buf[0]) snprintf(lg->err, sizeof lg->err, "%s", buf);
    }
    return lg->err;
}
