/*
 * warehouse/files — the file destination: partitioned NDJSON compressed with
 * zstd, exactly once through a manifest.
 *
 *   DIR/_manifest.ndjson                              the commit log (below)
 *   DIR/dt=YYYY-MM-DD/hour=HH/part-<P>-<first offset>.ndjson.zst
 *
 * One batch = up to warehouse.batch_max_events records (and WH_BATCH_BYTES)
 * of ONE partition, in offset order, split by event hour into one file per
 * hour. Each line is the event's canonical JSON plus "partition" and
 * "offset". Writing a batch:
 *
 *   1. each file to DIR/dt=../hour=../.part-<P>-<first>.ndjson.zst.tmp,
 *      fdatasync, fsync its directory (and new parent directories);
 *   2. append ONE manifest line naming the partition, the offset range
 *      [from, to) and every file with its first/last offset, count and size;
 *      fdatasync the manifest — THE COMMIT POINT;
 *   3. rename each temp file to its final name, fsync its directory.
 *
 * A manifest line is `{...,"crc32c":"xxxxxxxx"}` where the CRC-32C covers
 * the bytes before `,"crc32c"`. Recovery (at start and after any failure):
 * read the manifest; a torn or bad LAST line is cut off (it was never
 * committed); a bad line followed by good ones is damage, a named error;
 * every partition resumes at the `to` of its last line. The last line's files
 * are rolled forward (temp renamed when the final name is missing: a crash
 * between 2 and 3); then every remaining temp file is deleted (a batch that
 * never committed). Final names only ever appear for committed batches, so a
 * reader globbing the *.ndjson.zst files never sees a partial or uncommitted file, and
 * no event is in two files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "warehouse/sink.h"

#define MANIFEST "_manifest.ndjson"
#define ZSTD_LEVEL 3

struct group {
    char    part_dir[32];
    cs_buf  data;
    int64_t first, last;
    long    events;
};

struct filesdest {
    char         *dir;
    int           mfd;      /* manifest, O_APPEND; -1 until resync */
    off_t         mlen;     /* committed length */
    int           start_p;
    struct group *g;        /* the current batch's groups */
    size_t        ng, gcap;
    size_t        bytes;
};

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int ferr(wh_dest *d, const char *path, const char *what)
{
    snprintf(d->err, sizeof d->err, "%.300s: %s: %s", path, what, strerror(errno));
    return -1;
}

/* mkdir -p DIR/dt=../hour=.., fsyncing each parent whose entry is new. */
static int make_dirs(wh_dest *d, const char *root, const char *part_dir)
{
    char path[4400], parent[4400];
    snprintf(path, sizeof path, "%s/%s", root, part_dir);
    struct stat st;
    if (stat(path, &st) == 0) return 0;
    /* dt=... then dt=.../hour=.. */
    const char *slash = strchr(part_dir, '/');
    snprintf(parent, sizeof parent, "%s/%.*s", root, (int)(slash - part_dir), part_dir);
    int new_dt = stat(parent, &st) != 0;
    if (new_dt && mkdir(parent, 0755) != 0 && errno != EEXIST) return ferr(d, parent, "mkdir");
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return ferr(d, path, "mkdir");
    if (fsync_dir(parent) != 0) return ferr(d, parent, "fsync");
    if (new_dt && fsync_dir(root) != 0) return ferr(d, root, "fsync");
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w, n -= (size_t)w;
    }
    return 0;
}

/* ---- recovery -------------------------------------------------------------- */

/* The JSON object of a manifest line, or NULL when its CRC or JSON is bad. */
static cJSON *parse_line(const char *line, size_t len)
{
    static const char key[] = ",\"crc32c\":\"";
    if (len < sizeof key + 10 || line[len - 1] != '}' || line[len - 2] != '"') return NULL;
    const char *k = line + len - 2 - 8 - (sizeof key - 1);
    if (memcmp(k, key, sizeof key - 1) != 0) return NULL;
    char hex[9];
    memcpy(hex, k + sizeof key - 1, 8);
    hex[8] = '\0';
    char *end;
    unsigned long want = strtoul(hex, &end, 16);
    if (*end || cs_crc32c(0, line, (size_t)(k - line)) != (uint32_t)want) return NULL;
    cJSON *j = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static int64_t num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static void tmp_and_final(const char *root, const char *path, char *tmp, size_t tl, char *fin, size_t fl)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(fin, fl, "%s/%s", root, path);
    snprintf(tmp, tl, "%s/%.*s.%s.tmp", root, (int)(base - path), path, base);
}

/* Finish step 3 of the last committed batch. */
static int roll_forward(wh_dest *d, const cJSON *line)
{
    struct filesdest *f = d->impl;
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(line, "files"), *it;
    cJSON_ArrayForEach(it, files)
    {
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(it, "path");
        if (!cJSON_IsString(pv)) continue;
        char tmp[4400], fin[4400];
        tmp_and_final(f->dir, pv->valuestring, tmp, sizeof tmp, fin, sizeof fin);
        struct stat st;
        if (stat(fin, &st) == 0) continue;
        if (rename(tmp, fin) != 0) {
            if (errno == ENOENT) {
                cs_error("warehouse", "a committed file is missing (deleted by hand?)",
                         "\"destination\":\"files\",\"path\":\"%s\"", fin);
                continue;
            }
            return ferr(d, tmp, "rename");
        }
        char *slash = strrchr(fin, '/');
        *slash = '\0';
        if (fsync_dir(fin) != 0) return ferr(d, fin, "fsync");
        cs_info("warehouse", "committed file completed after a crash", "\"destination\":\"files\",\"path\":\"%s\"",
                pv->valuestring);
    }
    return 0;
}

static int is_tmp(const char *name)
{
    size_t n = strlen(name);
    return strncmp(name, ".part-", 6) == 0 && n > 4 && strcmp(name + n - 4, ".tmp") == 0;
}

/* Delete the temp files of batches that never committed. */
static int remove_temps(wh_dest *d, long *removed)
{
    struct filesdest *f = d->impl;
    DIR *top = opendir(f->dir);
    if (!top) return ferr(d, f->dir, "opendir");
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(top))) {
        if (strncmp(e->d_name, "dt=", 3) != 0) continue;
        char dt[4400];
        snprintf(dt, sizeof dt, "%s/%s", f->dir, e->d_name);
        DIR *dd = opendir(dt);
        if (!dd) continue;
        struct dirent *h;
        while (rc == 0 && (h = readdir(dd))) {
            if (strncmp(h->d_name, "hour=", 5) != 0) continue;
            char hour[4700];
            snprintf(hour, sizeof hour, "%s/%s", dt, h->d_name);
            DIR *hd = opendir(hour);
            if (!hd) continue;
            struct dirent *x;
            long here = 0;
            while ((x = readdir(hd))) {
                if (!is_tmp(x->d_name)) continue;
                char p[5000];
                snprintf(p, sizeof p, "%s/%s", hour, x->d_name);
                if (unlink(p) != 0) {
                    rc = ferr(d, p, "unlink");
                    break;
                }
                here++;
            }
            closedir(hd);
            if (here && rc == 0 && fsync_dir(hour) != 0) rc = ferr(d, hour, "fsync");
            *removed += here;
        }
        closedir(dd);
    }
    closedir(top);
    return rc;
}

static int files_resync(wh_dest *d, int64_t *next)
{
    struct filesdest *f = d->impl;
    char path[4400];
    snprintf(path, sizeof path, "%s/" MANIFEST, f->dir);
    if (f->mfd >= 0) close(f->mfd);
    f->mfd = -1;
    struct stat st;
    int existed = stat(f->dir, &st) == 0;
    if (cs_mkdirs(f->dir, 0755) != 0) return ferr(d, f->dir, "mkdir");
    int mexisted = stat(path, &st) == 0;
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return ferr(d, path, "open");
    if ((!mexisted || !existed) && fsync_dir(f->dir) != 0) {
        close(fd);
        return ferr(d, f->dir, "fsync");
    }
    FILE *in = fopen(path, "r");
    if (!in) {
        close(fd);
        return ferr(d, path, "open");
    }
    for (int p = 0; p < d->partitions; p++) next[p] = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    off_t pos = 0, cut = -1;
    long lines = 0;
    cJSON *last = NULL;
    int rc = 0;
    while ((len = getline(&line, &cap, in)) > 0) {
        cJSON *j = line[len - 1] == '\n' ? parse_line(line, (size_t)len - 1) : NULL;
        if (cut >= 0) { /* a bad line, then more: not a torn tail */
            snprintf(d->err, sizeof d->err, "%.300s: damaged line at byte %lld (fix or move the manifest by hand)", path,
                     (long long)cut);
            cJSON_Delete(j);
            rc = -1;
            break;
        }
        if (!j) {
            cut = pos;
        } else {
            int64_t p = num(j, "partition"), from = num(j, "from"), to = num(j, "to");
            if (p < 0 || p >= d->partitions || from < 0 || to < from || from < next[p]) {
                snprintf(d->err, sizeof d->err, "%.300s: line at byte %lld: bad or overlapping range", path, (long long)pos);
                cJSON_Delete(j);
                rc = -1;
                break;
            }
            next[p] = to;
            cJSON_Delete(last);
            last = j;
            lines++;
        }
        pos += len;
    }
    free(line);
    fclose(in);
    if (rc == 0 && cut >= 0) {
        cs_warn("warehouse", "torn manifest tail cut (a batch that never committed)",
                "\"destination\":\"files\",\"bytes\":%lld", (long long)(pos - cut));
        if (ftruncate(fd, cut) != 0 || fdatasync(fd) != 0) rc = ferr(d, path, "truncate");
        pos = cut;
    }
    if (rc == 0 && last) rc = roll_forward(d, last);
    cJSON_Delete(last);
    long removed = 0;
    if (rc == 0) rc = remove_temps(d, &removed);
    if (removed) cs_info("warehouse", "uncommitted temp files removed", "\"destination\":\"files\",\"files\":%ld", removed);
    for (int p = 0; rc == 0 && p < d->partitions; p++) {
        int64_t end = d->bus->ops->end_offset(d->bus, CS_TOPIC_EVENTS, p);
        if (next[p] > end) {
            snprintf(d->err, sizeof d->err,
                     "%.300s: partition %d is at %lld, past the log end %lld: this directory belongs to another log", path,
                     p, (long long)next[p], (long long)end);
            rc = -1;
        }
    }
    if (rc != 0) {
        close(fd);
        return -1;
    }
    f->mfd = fd;
    f->mlen = pos;
    return 0;
}

/* ---- writing --------------------------------------------------------------- */

struct fetch_ctx {
    wh_dest *d;
    int      partition;
    int64_t  next;
    long     budget;
    long     consumed;
};

static struct group *group_for(struct filesdest *f, const char *part_dir, int64_t offset)
{
    for (size_t i = 0; i < f->ng; i++)
        if (strcmp(f->g[i].part_dir, part_dir) == 0) return &f->g[i];
    if (f->ng == f->gcap) {
        f->gcap = f->gcap ? f->gcap * 2 : 8;
        f->g = cs_realloc(f->g, f->gcap * sizeof *f->g);
    }
    struct group *g = &f->g[f->ng++];
    memset(g, 0, sizeof *g);
    snprintf(g->part_dir, sizeof g->part_dir, "%s", part_dir);
    cs_buf_init(&g->data);
    g->first = offset;
    return g;
}

static int on_rec(const cs_rec *rec, void *arg)
{
    struct fetch_ctx *c = arg;
    wh_dest *d = c->d;
    struct filesdest *f = d->impl;
    if (c->budget <= 0 || f->bytes >= (size_t)WH_BATCH_BYTES) return 1;
    if (rec->offset > c->next)
        cs_warn("warehouse", "offsets missing from the log (deleted by retention before the warehouse read them)",
                "\"destination\":\"files\",\"partition\":%d,\"from\":%lld,\"to\":%lld", c->partition,
                (long long)c->next, (long long)rec->offset);
    wh_row r;
    if (wh_row_decode(rec, &r) != 0) {
        d->skipped++;
        cs_error("warehouse", "undecodable record skipped", "\"destination\":\"files\",\"partition\":%d,\"offset\":%lld",
                 c->partition, (long long)rec->offset);
    } else {
        struct group *g = group_for(f, r.part_dir, rec->offset);
        size_t before = g->data.len;
        const char *v = rec->value;
        size_t n = rec->value_len;
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\n' || v[n - 1] == '\r')) n--;
        char *printed = NULL;
        if (memchr(v, '\n', n) || memchr(v, '\r', n) || n < 2 || v[n - 1] != '}') {
            /* Not compact: one object per line needs it re-printed. */
            printed = cJSON_PrintUnformatted(r.ev);
            v = printed, n = strlen(printed);
        }
        int empty = r.ev->child == NULL;
        cs_buf_add(&g->data, v, n - 1);
        cs_buf_printf(&g->data, "%s\"partition\":%d,\"offset\":%lld}\n", empty ? "" : ",", c->partition,
                      (long long)rec->offset);
        cJSON_free(printed);
        wh_row_free(&r);
        g->last = rec->offset;
        g->events++;
        f->bytes += g->data.len - before;
    }
    c->next = rec->offset + 1;
    c->budget--;
    c->consumed++;
    return 0;
}

static void reset_groups(struct filesdest *f)
{
    for (size_t i = 0; i < f->ng; i++) cs_buf_free(&f->g[i].data);
    f->ng = 0;
    f->bytes = 0;
}

/* Step 1 for one group: compressed temp file, durable. Returns its size. */
static long write_temp(wh_dest *d, int partition, struct group *g)
{
    struct filesdest *f = d->impl;
    if (make_dirs(d, f->dir, g->part_dir)) return -1;
    char rel[128], tmp[4400], fin[4400];
    snprintf(rel, sizeof rel, "%s/part-%d-%lld.ndjson.zst", g->part_dir, partition, (long long)g->first);
    tmp_and_final(f->dir, rel, tmp, sizeof tmp, fin, sizeof fin);
    size_t bound = ZSTD_compressBound(g->data.len);
    char *z = cs_malloc(bound);
    size_t zn = ZSTD_compress(z, bound, g->data.data, g->data.len, ZSTD_LEVEL);
    if (ZSTD_isError(zn)) {
        snprintf(d->err, sizeof d->err, "zstd: %s", ZSTD_getErrorName(zn));
        free(z);
        return -1;
    }
    /* The raw lines are no longer needed: keep memory at one batch. */
    cs_buf_free(&g->data);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(z);
        return ferr(d, tmp, "open");
    }
    int rc = write_all(fd, z, zn) != 0 ? ferr(d, tmp, "write") : fdatasync(fd) != 0 ? ferr(d, tmp, "fdatasync") : 0;
    free(z);
    if (close(fd) != 0 && rc == 0) rc = ferr(d, tmp, "close");
    if (rc) return -1;
    char dir[4400];
    snprintf(dir, sizeof dir, "%s/%s", f->dir, g->part_dir);
    if (fsync_dir(dir) != 0) return ferr(d, dir, "fsync");
    return (long)zn;
}

/* One partition's batch: steps 1-3. Returns records consumed, or -1. */
static long write_partition(wh_dest *d, int p, int64_t *next)
{
    struct filesdest *f = d->impl;
    reset_groups(f);
    struct fetch_ctx c = {d, p, next[p], d->batch_max, 0};
    int64_t skipped0 = d->skipped;
    while (c.budget > 0 && f->bytes < (size_t)WH_BATCH_BYTES) {
        int64_t end = d->bus->ops->end_offset(d->bus, CS_TOPIC_EVENTS, p);
        if (c.next >= end) break;
        int64_t before = c.next;
        int n = d->bus->ops->fetch(d->bus, CS_TOPIC_EVENTS, p, c.next, (size_t)c.budget, on_rec, &c);
        if (n < 0) {
            snprintf(d->err, sizeof d->err, "reading partition %d at offset %lld from the log", p, (long long)c.next);
            goto fail;
        }
        if (c.next == before) break;
    }
    if (c.consumed == 0) return 0;
    cs_buf line;
    cs_buf_init(&line);
    cs_buf_printf(&line, "{\"partition\":%d,\"from\":%lld,\"to\":%lld,\"events\":%ld,\"skipped\":%lld,\"files\":[", p,
                  (long long)next[p], (long long)c.next, c.consumed - (long)(d->skipped - skipped0),
                  (long long)(d->skipped - skipped0));
    int64_t zbytes = 0;
    for (size_t i = 0; i < f->ng; i++) {
        long zn = write_temp(d, p, &f->g[i]);
        if (zn < 0) {
            cs_buf_free(&line);
            goto fail;
        }
        zbytes += zn;
        cs_buf_printf(&line,
                      "%s{\"path\":\"%s/part-%d-%lld.ndjson.zst\",\"first\":%lld,\"last\":%lld,\"events\":%ld,"
                      "\"bytes\":%ld}",
                      i ? "," : "", f->g[i].part_dir, p, (long long)f->g[i].first, (long long)f->g[i].first,
                      (long long)f->g[i].last, f->g[i].events, zn);
    }
    char at[40];
    cs_fmt_time_ms(cs_now_us(), at, sizeof at);
    cs_buf_printf(&line, "],\"written_at\":\"%s\"", at);
    uint32_t crc = cs_crc32c(0, line.data, line.len);
    cs_buf_printf(&line, ",\"crc32c\":\"%08x\"}\n", crc);
    /* Step 2: the commit point. */
    char mpath[4400];
    snprintf(mpath, sizeof mpath, "%s/" MANIFEST, f->dir);
    if (write_all(f->mfd, line.data, line.len) != 0 || fdatasync(f->mfd) != 0) {
        ferr(d, mpath, "append");
        cs_buf_free(&line);
        /* Cut what may have been written; recovery would do the same. */
        if (ftruncate(f->mfd, f->mlen) != 0) cs_error("warehouse", "cannot cut the manifest", "\"path\":\"%s\"", mpath);
        goto fail;
    }
    f->mlen += (off_t)line.len;
    cs_buf_free(&line);
    next[p] = c.next; /* committed: even if a rename below fails, recovery finishes it */
    /* Step 3. */
    for (size_t i = 0; i < f->ng; i++) {
        char rel[128], tmp[4400], fin[4400], dir[4400];
        snprintf(rel, sizeof rel, "%s/part-%d-%lld.ndjson.zst", f->g[i].part_dir, p, (long long)f->g[i].first);
        tmp_and_final(f->dir, rel, tmp, sizeof tmp, fin, sizeof fin);
        snprintf(dir, sizeof dir, "%s/%s", f->dir, f->g[i].part_dir);
        if (rename(tmp, fin) != 0) {
            ferr(d, tmp, "rename");
            goto fail;
        }
        if (fsync_dir(dir) != 0) {
            ferr(d, dir, "fsync");
            goto fail;
        }
    }
    d->written += c.consumed - (long)(d->skipped - skipped0);
    d->bytes += zbytes;
    d->files += (int64_t)f->ng;
    reset_groups(f);
    return c.consumed;
fail:
    d->skipped = skipped0;
    reset_groups(f);
    return -1;
}

static long files_write(wh_dest *d, int64_t *next)
{
    struct filesdest *f = d->impl;
    if (f->mfd < 0) {
        snprintf(d->err, sizeof d->err, "manifest not open");
        return -1;
    }
    long total = 0;
    int P = d->partitions;
    for (int i = 0; i < P; i++) {
        int p = (f->start_p + i) % P;
        long n = write_partition(d, p, next);
        if (n < 0) return -1;
        total += n;
    }
    f->start_p = (f->start_p + 1) % P;
    return total;
}

static void files_close(wh_dest *d)
{
    struct filesdest *f = d->impl;
    if (f->mfd >= 0) close(f->mfd);
    reset_groups(f);
    free(f->g);
    free(f->dir);
    free(f);
    free(d);
}

static const struct wh_dest_ops files_ops = {.name = "files", .resync = files_resync, .write = files_write,
                                             .close = files_close};

wh_dest *wh_files_open(cs_bus *bus, const cs_config *cfg, char *err, size_t errlen)
{
    const char *dir = cfg->wh_dir;
    char path[4200];
    if (strncmp(dir, "DATA/", 5) == 0)
        snprintf(path, sizeof path, "%s/%s", cfg->data_dir, dir + 5);
    else
        snprintf(path, sizeof path, "%s", dir);
    if (cs_mkdirs(path, 0755) != 0) {
        snprintf(err, errlen, "warehouse.dir: %s: %s", path, strerror(errno));
        return NULL;
    }
    wh_dest *d = cs_calloc(1, sizeof *d);
    struct filesdest *f = cs_calloc(1, sizeof *f);
    f->dir = cs_strdup(path);
    f->mfd = -1;
    d->ops = &files_ops;
    d->bus = bus;
    d->partitions = bus->partitions;
    d->batch_max = cfg->wh_batch_max;
    d->interval_us = (int64_t)cfg->wh_file_ms * 1000;
    d->impl = f;
    return d;
}
