/*
 * warehouse/verify — see verify.h. One pass per slice of the event-id hash
 * space: destinations first (PostgreSQL streamed in single-row mode; each
 * visible *.ndjson.zst file streamed through libzstd line by line), then the
 * log through the bus, each record decoded like the sink does
 * (wh_row_decode). Pass 0 also fills the (day, type) table and reads the
 * stored positions and the manifest.
 */
#include "warehouse/verify.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <xxhash.h>
#include <zstd.h>

#include "core/hash.h"
#include "core/util.h"
#include "warehouse/sink.h"

#define SIDES 3              /* 0: the log, 1..2: destinations */
#define MAX_DAY_ROWS 200000  /* distinct (day, type) pairs */
#define MAX_LINE (64L << 20) /* a longer NDJSON line is damage */

enum { D_PG, D_FILES };

struct idslot {
    uint64_t h;              /* 0: empty (a real 0 hash is stored as 1) */
    uint32_t n[SIDES];
};

struct dayrow {
    char   *key;             /* "YYYY-MM-DD\ttype" */
    int64_t n[SIDES];
};

struct dest_res {
    int     kind;
    const char *name;
    int64_t events, missing, duplicate, unexpected, before_start;
    int64_t position;        /* sum of stored next offsets; -1 unknown */
    int     no_table;        /* postgres: no events table */
    int64_t files, files_missing, bad_files, bad_lines, manifest_lines, manifest_bad;
    int     torn_tail;
    char    first_problem[512];
};

struct cs_wh_verify {
    cs_wh_verify_opts o;
    cs_bus  *bus;
    int      partitions, ndest, passes, pass;
    int64_t *start, *end;     /* the log's kept range, end taken after pass 0's destination scans */
    int64_t  log_events, log_undecodable, log_end_total;
    struct dest_res d[2];
    char    *pg_uri, *dir;
    /* ids of this pass */
    struct idslot *ids;
    size_t   icap, ilen;
    /* (day, type) rows */
    struct dayrow *days;
    size_t   dcap, dlen;
    int      days_overflow;
};

/* ---- tables ---------------------------------------------------------------- */

static void ids_reset(cs_wh_verify *v, size_t expect)
{
    size_t cap = 1024;
    while (cap < expect * 2) cap <<= 1;
    free(v->ids);
    v->ids = cs_calloc(cap, sizeof *v->ids);
    v->icap = cap;
    v->ilen = 0;
}

static void ids_add(cs_wh_verify *v, uint64_t h, int side);

static void ids_grow(cs_wh_verify *v)
{
    struct idslot *old = v->ids;
    size_t ocap = v->icap;
    v->icap *= 2;
    v->ids = cs_calloc(v->icap, sizeof *v->ids);
    v->ilen = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].h) continue;
        size_t j = old[i].h & (v->icap - 1);
        while (v->ids[j].h) j = (j + 1) & (v->icap - 1);
        v->ids[j] = old[i];
        v->ilen++;
    }
    free(old);
}

static void ids_add(cs_wh_verify *v, uint64_t h, int side)
{
    if (!h) h = 1;
    if ((v->ilen + 1) * 10 > v->icap * 7) ids_grow(v);
    size_t j = h & (v->icap - 1);
    while (v->ids[j].h && v->ids[j].h != h) j = (j + 1) & (v->icap - 1);
    if (!v->ids[j].h) {
        v->ids[j].h = h;
        v->ilen++;
    }
    if (v->ids[j].n[side] < UINT32_MAX) v->ids[j].n[side]++;
}

static struct dayrow *day_row(cs_wh_verify *v, const char *day, const char *type)
{
    char key[512];
    snprintf(key, sizeof key, "%s\t%s", day, type);
    if ((v->dlen + 1) * 10 > v->dcap * 7) {
        if (v->dlen >= MAX_DAY_ROWS) {
            v->days_overflow = 1;
            return NULL;
        }
        size_t ocap = v->dcap;
        struct dayrow *old = v->days;
        v->dcap = ocap ? ocap * 2 : 256;
        v->days = cs_calloc(v->dcap, sizeof *v->days);
        for (size_t i = 0; i < ocap; i++) {
            if (!old[i].key) continue;
            size_t j = XXH3_64bits(old[i].key, strlen(old[i].key)) & (v->dcap - 1);
            while (v->days[j].key) j = (j + 1) & (v->dcap - 1);
            v->days[j] = old[i];
        }
        free(old);
    }
    size_t j = XXH3_64bits(key, strlen(key)) & (v->dcap - 1);
    while (v->days[j].key && strcmp(v->days[j].key, key) != 0) j = (j + 1) & (v->dcap - 1);
    if (!v->days[j].key) {
        v->days[j].key = cs_strdup(key);
        v->dlen++;
    }
    return &v->days[j];
}

/* ---- one event of one side ---------------------------------------------- */

static int64_t floor_ms(int64_t us)
{
    int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
    return ms * 1000;
}

/* The event's time as the sink normalises it (ms, UTC): its timestamp,
 * else received_at. 0 when it has neither. */
static int time_of(const char *ts, const char *recv, int64_t *us)
{
    int64_t t;
    if (ts && *ts && cs_parse_time(ts, &t) == 0) {
        *us = floor_ms(t);
        return 1;
    }
    if (recv && *recv && cs_parse_time(recv, &t) == 0) {
        *us = floor_ms(t);
        return 1;
    }
    return 0;
}

static void visit(cs_wh_verify *v, int side, const char *id, const char *type, int has_time, int64_t us)
{
    if ((v->o.has_from || v->o.has_to) && !has_time) return;
    if (v->o.has_from && us < v->o.from_us) return;
    if (v->o.has_to && us >= v->o.to_us) return;
    if (v->pass == 0) {
        char day[32] = "-";
        if (has_time) {
            time_t secs = (time_t)(us >= 0 ? us / 1000000 : (us - 999999) / 1000000);
            struct tm tm;
            gmtime_r(&secs, &tm);
            snprintf(day, sizeof day, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
        }
        struct dayrow *r = day_row(v, day, type && *type ? type : "(none)");
        if (r) r->n[side]++;
        if (side == 0) v->log_events++;
        else v->d[side - 1].events++;
    }
    uint64_t h = XXH3_64bits(id, strlen(id));
    if (v->passes > 1 && h % (uint64_t)v->passes != (uint64_t)v->pass) return;
    ids_add(v, h, side);
}

/* A destination row at partition/offset: 1 when it takes part. Rows below
 * the log's start (retention deleted those records) are counted apart; rows
 * at offsets the log received after pass 0's snapshot are left to the next
 * run (only a running server appends). */
static int in_scope(cs_wh_verify *v, struct dest_res *d, long long p, long long off)
{
    if (p < 0 || p >= v->partitions) return 1; /* not from this log: unexpected */
    if (off < v->start[p]) {
        if (v->pass == 0) d->before_start++;
        return 0;
    }
    if (v->pass > 0 && off >= v->end[p] && off < v->bus->ops->end_offset(v->bus, CS_TOPIC_EVENTS, (int)p)) return 0;
    return 1;
}

static void note(struct dest_res *d, const char *path, const char *what)
{
    if (!d->first_problem[0]) snprintf(d->first_problem, sizeof d->first_problem, "%.380s: %.120s", path, what);
}

/* ---- PostgreSQL ------------------------------------------------------------ */

static PGconn *pg_connect(const char *uri, char *err, size_t errlen)
{
    const char *const kw[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const val[] = {"5", "crmstream-verify", uri, NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen, "warehouse.postgres: %s", PQerrorMessage(c));
        size_t n = strlen(err);
        while (n && (err[n - 1] == '\n' || err[n - 1] == ' ')) err[--n] = '\0';
        PQfinish(c);
        return NULL;
    }
    return c;
}

static int undefined_table(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return st && strcmp(st, "42P01") == 0;
}

static int scan_pg(cs_wh_verify *v, struct dest_res *d, int side, char *err, size_t errlen)
{
    PGconn *c = pg_connect(v->pg_uri, err, errlen);
    if (!c) return -1;
    int rc = 0;
    PGresult *r;
    if (v->pass == 0) {
        d->position = 0;
        r = PQexec(c, "SELECT partition, next_offset FROM warehouse_offsets WHERE topic = 'events'");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            for (int i = 0; i < PQntuples(r); i++) d->position += strtoll(PQgetvalue(r, i, 1), NULL, 10);
        } else if (!undefined_table(r)) {
            snprintf(err, errlen, "warehouse.postgres: reading warehouse_offsets: %s", PQresultErrorMessage(r));
            rc = -1;
        }
        PQclear(r);
    }
    if (rc == 0 &&
        !PQsendQuery(c, "SELECT event_id, type, (extract(epoch FROM coalesce(ts, received_at)) * 1000000)::bigint,"
                        " partition, \"offset\" FROM events")) {
        snprintf(err, errlen, "warehouse.postgres: %s", PQerrorMessage(c));
        rc = -1;
    }
    if (rc == 0) PQsetSingleRowMode(c);
    while (rc == 0 && (r = PQgetResult(c))) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            long long p = strtoll(PQgetvalue(r, 0, 3), NULL, 10), off = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
            if (in_scope(v, d, p, off)) {
                int has = !PQgetisnull(r, 0, 2);
                visit(v, side, PQgetvalue(r, 0, 0), PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1), has,
                      has ? strtoll(PQgetvalue(r, 0, 2), NULL, 10) : 0);
            }
        } else if (st != PGRES_TUPLES_OK) {
            if (undefined_table(r)) {
                d->no_table = 1;
            } else {
                snprintf(err, errlen, "warehouse.postgres: reading events: %s", PQresultErrorMessage(r));
                rc = -1;
            }
        }
        PQclear(r);
    }
    if (rc != 0)
        while ((r = PQgetResult(c))) PQclear(r);
    PQfinish(c);
    size_t n = strlen(err);
    while (n && (err[n - 1] == '\n' || err[n - 1] == ' ')) err[--n] = '\0';
    return rc;
}

/* ---- files ------------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static void file_line(cs_wh_verify *v, struct dest_res *d, int side, const char *path, const char *line, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(line, len);
    const char *id = jstr(j, "event_id");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "partition"), *o = cJSON_GetObjectItemCaseSensitive(j, "offset");
    if (!cJSON_IsObject(j) || !id || !cJSON_IsNumber(p) || !cJSON_IsNumber(o)) {
        if (v->pass == 0) {
            d->bad_lines++;
            note(d, path, "a line that is not an event with event_id, partition and offset");
        }
    } else if (in_scope(v, d, (long long)p->valuedouble, (long long)o->valuedouble)) {
        int64_t us = 0;
        int has = time_of(jstr(j, "timestamp"), jstr(j, "received_at"), &us);
        visit(v, side, id, jstr(j, "type"), has, us);
    }
    cJSON_Delete(j);
}

/* Stream one file through zstd, line by line. */
static void scan_file(cs_wh_verify *v, struct dest_res *d, int side, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (v->pass == 0) d->bad_files++, note(d, path, strerror(errno));
        return;
    }
    if (v->pass == 0) d->files++;
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    size_t inlen = ZSTD_DStreamInSize(), outlen = ZSTD_DStreamOutSize();
    char *in = cs_malloc(inlen), *out = cs_malloc(outlen);
    cs_buf line;
    cs_buf_init(&line);
    size_t last = 0, n;
    int bad = 0, any = 0;
    while (!bad && (n = fread(in, 1, inlen, f)) > 0) {
        any = 1;
        ZSTD_inBuffer ib = {in, n, 0};
        int full = 0;
        while (!bad && (ib.pos < ib.size || full)) {
            ZSTD_outBuffer ob = {out, outlen, 0};
            last = ZSTD_decompressStream(dc, &ob, &ib);
            if (ZSTD_isError(last)) {
                bad = 1;
                break;
            }
            for (size_t i = 0, s = 0; i < ob.pos; i++) {
                if (out[i] != '\n') {
                    if (i + 1 == ob.pos) cs_buf_add(&line, out + s, i + 1 - s);
                    continue;
                }
                cs_buf_add(&line, out + s, i - s);
                file_line(v, d, side, path, line.data ? line.data : "", line.len);
                cs_buf_reset(&line);
                s = i + 1;
            }
            if (line.len > (size_t)MAX_LINE) bad = 1;
            full = ob.pos == ob.size; /* more may be buffered inside zstd */
        }
    }
    if (ferror(f) || !any || last != 0) bad = 1; /* unreadable, empty or truncated frame */
    if (line.len && v->pass == 0) {
        d->bad_lines++;
        note(d, path, "last line has no newline");
    }
    if (bad && v->pass == 0) {
        d->bad_files++;
        note(d, path, "does not decompress completely");
    }
    cs_buf_free(&line);
    free(in);
    free(out);
    ZSTD_freeDCtx(dc);
    fclose(f);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Pass 0: the manifest's CRCs, positions and listed files. */
static void read_manifest(cs_wh_verify *v, struct dest_res *d)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/_manifest.ndjson", v->dir);
    FILE *f = fopen(path, "r");
    d->position = 0;
    if (!f) return;
    int64_t *next = cs_calloc((size_t)v->partitions, sizeof *next);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int pending_bad = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (pending_bad) { /* a bad line followed by more: damage */
            d->manifest_bad++;
            note(d, path, "damaged line");
            pending_bad = 0;
        }
        char *k = line[len - 1] == '\n' ? strstr(line, ",\"crc32c\":\"") : NULL;
        cJSON *j = k && cs_crc32c(0, line, (size_t)(k - line)) == (uint32_t)strtoul(k + 11, NULL, 16)
                       ? cJSON_ParseWithLength(line, (size_t)len - 1)
                       : NULL;
        if (!j) {
            pending_bad = 1;
            continue;
        }
        d->manifest_lines++;
        const cJSON *pv = cJSON_GetObjectItemCaseSensitive(j, "partition"), *to = cJSON_GetObjectItemCaseSensitive(j, "to");
        if (cJSON_IsNumber(pv) && cJSON_IsNumber(to) && pv->valuedouble >= 0 && pv->valuedouble < v->partitions)
            next[(int)pv->valuedouble] = (int64_t)to->valuedouble;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "files"))
        {
            const char *rel = jstr(it, "path");
            if (!rel) continue;
            char fp[4800];
            struct stat st;
            snprintf(fp, sizeof fp, "%s/%s", v->dir, rel);
            if (stat(fp, &st) != 0) {
                d->files_missing++;
                note(d, fp, "listed in the manifest, missing");
            }
        }
        cJSON_Delete(j);
    }
    if (pending_bad) d->torn_tail = 1; /* never committed; the sink cuts it at its next start */
    free(line);
    fclose(f);
    for (int p = 0; p < v->partitions; p++) d->position += next[p];
    free(next);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of a directory's entries with a prefix, sorted (deterministic). */
static char **list_dir(const char *dir, const char *prefix, size_t *n)
{
    *n = 0;
    DIR *dd = opendir(dir);
    if (!dd) return NULL;
    char **v = NULL;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(dd))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        if (*n == cap) v = cs_realloc(v, (cap = cap ? cap * 2 : 16) * sizeof *v);
        v[(*n)++] = cs_strdup(e->d_name);
    }
    closedir(dd);
    if (*n) qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int scan_files(cs_wh_verify *v, struct dest_res *d, int side)
{
    if (v->pass == 0) read_manifest(v, d);
    size_t ndt, nh, nf;
    char **dts = list_dir(v->dir, "dt=", &ndt);
    for (size_t a = 0; a < ndt; a++) {
        char dt[4400];
        snprintf(dt, sizeof dt, "%s/%s", v->dir, dts[a]);
        char **hours = list_dir(dt, "hour=", &nh);
        for (size_t b = 0; b < nh; b++) {
            char hour[4700];
            snprintf(hour, sizeof hour, "%s/%s", dt, hours[b]);
            char **files = list_dir(hour, "part-", &nf);
            for (size_t c = 0; c < nf; c++) {
                if (!ends_with(files[c], ".ndjson.zst")) continue;
                char fp[5000];
                snprintf(fp, sizeof fp, "%s/%s", hour, files[c]);
                scan_file(v, d, side, fp);
            }
            free_list(files, nf);
        }
        free_list(hours, nh);
    }
    free_list(dts, ndt);
    return 0;
}

/* ---- the log ------------------------------------------------------------------- */

struct log_ctx {
    cs_wh_verify *v;
    int64_t       end, next;
};

static int on_log(const cs_rec *rec, void *arg)
{
    struct log_ctx *c = arg;
    if (rec->offset >= c->end) return 1;
    c->next = rec->offset + 1;
    wh_row r;
    if (wh_row_decode(rec, &r) != 0) {
        if (c->v->pass == 0) c->v->log_undecodable++;
        return 0;
    }
    int64_t us = 0;
    int has = time_of(r.ts, r.received_at, &us);
    visit(c->v, 0, r.event_id, r.type, has, us);
    wh_row_free(&r);
    return 0;
}

static int scan_log(cs_wh_verify *v, char *err, size_t errlen)
{
    for (int p = 0; p < v->partitions; p++) {
        struct log_ctx c = {v, v->end[p], v->start[p]};
        while (c.next < c.end) {
            int64_t before = c.next;
            size_t max = (size_t)(c.end - c.next < 4096 ? c.end - c.next : 4096);
            if (v->bus->ops->fetch(v->bus, CS_TOPIC_EVENTS, p, c.next, max, on_log, &c) < 0) {
                snprintf(err, errlen, "reading partition %d of the log at offset %lld", p, (long long)c.next);
                return -1;
            }
            if (c.next == before) break; /* nothing more kept below end */
        }
    }
    return 0;
}

/* ---- the run --------------------------------------------------------------------- */

static void tally(cs_wh_verify *v)
{
    for (size_t i = 0; i < v->icap; i++) {
        const struct idslot *s = &v->ids[i];
        if (!s->h) continue;
        for (int k = 0; k < v->ndest; k++) {
            struct dest_res *d = &v->d[k];
            int64_t want = s->n[0], got = s->n[k + 1];
            if (got < want) d->missing += want - got;
            else if (got > want && want > 0) d->duplicate += got - want;
            else if (got > 0 && want == 0) {
                d->unexpected++;          /* one id the log does not have */
                d->duplicate += got - 1;  /* ... and any copies of it */
            }
        }
    }
}

cs_wh_verify *cs_wh_verify_run(cs_bus *bus, const cs_config *cfg, const cs_wh_verify_opts *o, char *err,
                               size_t errlen)
{
    err[0] = '\0';
    cs_wh_verify *v = cs_calloc(1, sizeof *v);
    v->o = *o;
    if (v->o.ids_per_pass <= 0) v->o.ids_per_pass = CS_WH_VERIFY_IDS_PER_PASS;
    v->bus = bus;
    v->partitions = bus->partitions;
    v->start = cs_calloc((size_t)v->partitions, sizeof *v->start);
    v->end = cs_calloc((size_t)v->partitions, sizeof *v->end);
    if (cfg->wh_postgres && *cfg->wh_postgres) {
        v->pg_uri = cs_strdup(cfg->wh_postgres);
        v->d[v->ndest++] = (struct dest_res){.kind = D_PG, .name = "postgres", .position = -1};
    }
    if (cfg->wh_dir && *cfg->wh_dir) {
        char path[4200];
        if (strncmp(cfg->wh_dir, "DATA/", 5) == 0) snprintf(path, sizeof path, "%s/%s", cfg->data_dir, cfg->wh_dir + 5);
        else snprintf(path, sizeof path, "%s", cfg->wh_dir);
        v->dir = cs_strdup(path);
        v->d[v->ndest++] = (struct dest_res){.kind = D_FILES, .name = "files", .position = -1};
    }
    if (v->ndest == 0) {
        snprintf(err, errlen, "no warehouse destination is configured (warehouse.postgres, warehouse.dir)");
        goto fail;
    }
    int64_t total = 0;
    for (int p = 0; p < v->partitions; p++) {
        v->start[p] = bus->ops->start_offset ? bus->ops->start_offset(bus, CS_TOPIC_EVENTS, p) : 0;
        if (v->start[p] < 0) v->start[p] = 0;
        total += bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p) - v->start[p];
    }
    v->passes = (int)((total + v->o.ids_per_pass - 1) / v->o.ids_per_pass);
    if (v->passes < 1) v->passes = 1;
    for (v->pass = 0; v->pass < v->passes; v->pass++) {
        ids_reset(v, (size_t)(total / v->passes) + 1024);
        for (int k = 0; k < v->ndest; k++) {
            int rc = v->d[k].kind == D_PG ? scan_pg(v, &v->d[k], k + 1, err, errlen) : scan_files(v, &v->d[k], k + 1);
            if (rc != 0) goto fail;
        }
        if (v->pass == 0) /* after the destinations: they never hold more than the log had then */
            for (int p = 0; p < v->partitions; p++) {
                v->end[p] = bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
                v->log_end_total += v->end[p];
            }
        if (scan_log(v, err, errlen) != 0) goto fail;
        tally(v);
    }
    free(v->ids);
    v->ids = NULL;
    if (v->days_overflow) {
        snprintf(err, errlen, "more than %d distinct (day, type) pairs: narrow the range with --from/--to",
                 MAX_DAY_ROWS);
        goto fail;
    }
    return v;
fail:
    cs_wh_verify_free(v);
    return NULL;
}

static int dest_ok(const struct dest_res *d)
{
    return !d->missing && !d->duplicate && !d->unexpected && !d->files_missing && !d->bad_files && !d->bad_lines &&
           !d->manifest_bad;
}

static int row_equal(const cs_wh_verify *v, const struct dayrow *r)
{
    for (int k = 0; k < v->ndest; k++)
        if (r->n[k + 1] != r->n[0]) return 0;
    return 1;
}

int cs_wh_verify_equal(const cs_wh_verify *v)
{
    for (int k = 0; k < v->ndest; k++)
        if (!dest_ok(&v->d[k])) return 0;
    for (size_t i = 0; i < v->dcap; i++)
        if (v->days[i].key && !row_equal(v, &v->days[i])) return 0;
    return 1;
}

static int cmp_row(const void *a, const void *b)
{
    return strcmp((*(const struct dayrow *const *)a)->key, (*(const struct dayrow *const *)b)->key);
}

static const struct dayrow **sorted_rows(const cs_wh_verify *v)
{
    const struct dayrow **rows = cs_malloc((v->dlen + 1) * sizeof *rows);
    size_t n = 0;
    for (size_t i = 0; i < v->dcap; i++)
        if (v->days[i].key) rows[n++] = &v->days[i];
    if (n) qsort(rows, n, sizeof *rows, cmp_row);
    return rows;
}

static int64_t behind(const cs_wh_verify *v, const struct dest_res *d)
{
    return d->position < 0 ? -1 : v->log_end_total - d->position;
}

static void print_json(const cs_wh_verify *v, FILE *out)
{
    cs_buf b;
    cs_buf_init(&b);
    char t[40];
    cs_buf_printf(&b, "{\"result\":\"%s\",\"from\":", cs_wh_verify_equal(v) ? "equal" : "different");
    if (v->o.has_from) cs_fmt_time_ms(v->o.from_us, t, sizeof t), cs_buf_json_str(&b, t);
    else cs_buf_adds(&b, "null");
    cs_buf_adds(&b, ",\"to\":");
    if (v->o.has_to) cs_fmt_time_ms(v->o.to_us, t, sizeof t), cs_buf_json_str(&b, t);
    else cs_buf_adds(&b, "null");
    cs_buf_printf(&b, ",\"passes\":%d,\"log\":{\"events\":%lld,\"undecodable\":%lld,\"end\":%lld,\"partitions\":%d},"
                      "\"destinations\":[",
                  v->passes, (long long)v->log_events, (long long)v->log_undecodable, (long long)v->log_end_total,
                  v->partitions);
    for (int k = 0; k < v->ndest; k++) {
        const struct dest_res *d = &v->d[k];
        cs_buf_printf(&b,
                      "%s{\"name\":\"%s\",\"equal\":%s,\"events\":%lld,\"missing\":%lld,\"duplicate\":%lld,"
                      "\"unexpected\":%lld,\"before_log_start\":%lld,\"position\":%lld,\"behind\":%lld",
                      k ? "," : "", d->name, dest_ok(d) ? "true" : "false", (long long)d->events,
                      (long long)d->missing, (long long)d->duplicate, (long long)d->unexpected,
                      (long long)d->before_start, (long long)d->position, (long long)behind(v, d));
        if (d->kind == D_PG) cs_buf_printf(&b, ",\"table\":%s", d->no_table ? "false" : "true");
        else
            cs_buf_printf(&b,
                          ",\"files\":%lld,\"files_missing\":%lld,\"bad_files\":%lld,\"bad_lines\":%lld,"
                          "\"manifest_lines\":%lld,\"manifest_damaged\":%lld,\"manifest_torn_tail\":%s",
                          (long long)d->files, (long long)d->files_missing, (long long)d->bad_files,
                          (long long)d->bad_lines, (long long)d->manifest_lines, (long long)d->manifest_bad,
                          d->torn_tail ? "true" : "false");
        cs_buf_adds(&b, ",\"problem\":");
        if (d->first_problem[0]) cs_buf_json_str(&b, d->first_problem);
        else cs_buf_adds(&b, "null");
        cs_buf_adds(&b, "}");
    }
    cs_buf_adds(&b, "],\"days\":[");
    const struct dayrow **rows = sorted_rows(v);
    for (size_t i = 0; i < v->dlen; i++) {
        const char *tab = strchr(rows[i]->key, '\t');
        cs_buf_printf(&b, "%s{\"day\":\"%.*s\",\"type\":", i ? "," : "", (int)(tab - rows[i]->key), rows[i]->key);
        cs_buf_json_str(&b, tab + 1);
        cs_buf_printf(&b, ",\"log\":%lld", (long long)rows[i]->n[0]);
        for (int k = 0; k < v->ndest; k++) cs_buf_printf(&b, ",\"%s\":%lld", v->d[k].name, (long long)rows[i]->n[k + 1]);
        cs_buf_printf(&b, ",\"equal\":%s}", row_equal(v, rows[i]) ? "true" : "false");
    }
    free(rows);
    cs_buf_adds(&b, "]}\n");
    fputs(b.data, out);
    cs_buf_free(&b);
}

void cs_wh_verify_print(const cs_wh_verify *v, FILE *out, int json)
{
    if (json) {
        print_json(v, out);
        return;
    }
    int tw = 4;
    for (size_t i = 0; i < v->dcap; i++)
        if (v->days[i].key) {
            int l = (int)strlen(strchr(v->days[i].key, '\t') + 1);
            if (l > tw) tw = l < 40 ? l : 40;
        }
    fprintf(out, "%-10s  %-*s %12s", "day", tw, "type", "log");
    for (int k = 0; k < v->ndest; k++) fprintf(out, " %12s", v->d[k].name);
    fputc('\n', out);
    const struct dayrow **rows = sorted_rows(v);
    int64_t tot[SIDES] = {0};
    for (size_t i = 0; i < v->dlen; i++) {
        const char *tab = strchr(rows[i]->key, '\t');
        fprintf(out, "%-10.*s  %-*.*s %12lld", (int)(tab - rows[i]->key), rows[i]->key, tw, tw, tab + 1,
                (long long)rows[i]->n[0]);
        for (int k = 0; k <= v->ndest; k++) tot[k] += rows[i]->n[k];
        for (int k = 0; k < v->ndest; k++) fprintf(out, " %12lld", (long long)rows[i]->n[k + 1]);
        fputs(row_equal(v, rows[i]) ? "\n" : "   <- differs\n", out);
    }
    free(rows);
    fprintf(out, "%-10s  %-*s %12lld", "total", tw, "", (long long)tot[0]);
    for (int k = 0; k < v->ndest; k++) fprintf(out, " %12lld", (long long)tot[k + 1]);
    fputc('\n', out);
    if (v->log_undecodable)
        fprintf(out, "log: %lld undecodable records (the sink skips them too)\n", (long long)v->log_undecodable);
    for (int k = 0; k < v->ndest; k++) {
        const struct dest_res *d = &v->d[k];
        fprintf(out, "%s: %lld events; %lld missing, %lld duplicated, %lld not in the log", d->name,
                (long long)d->events, (long long)d->missing, (long long)d->duplicate, (long long)d->unexpected);
        if (d->kind == D_FILES)
            fprintf(out, "; %lld files (%lld listed in the manifest but absent, %lld damaged, %lld bad lines)",
                    (long long)d->files, (long long)d->files_missing, (long long)d->bad_files, (long long)d->bad_lines);
        if (d->kind == D_PG && d->no_table) fputs("; no events table", out);
        if (d->before_start) fprintf(out, "; %lld rows older than the log's retention (not compared)", (long long)d->before_start);
        int64_t bh = behind(v, d);
        if (bh > 0) fprintf(out, "; its stored position is %lld events behind the log end (a running sink catches up)", (long long)bh);
        if (d->manifest_bad) fprintf(out, "; manifest: %lld damaged lines", (long long)d->manifest_bad);
        if (d->torn_tail) fputs("; manifest: an uncommitted tail (cut at the sink's next start)", out);
        fputc('\n', out);
        if (d->first_problem[0]) fprintf(out, "  first problem: %s\n", d->first_problem);
    }
    if (v->passes > 1) fprintf(out, "(event ids compared in %d passes)\n", v->passes);
    fputs(cs_wh_verify_equal(v) ? "EQUAL: every destination holds exactly the log's events\n"
                                : "DIFFERENT: see above\n",
          out);
}

void cs_wh_verify_free(cs_wh_verify *v)
{
    if (!v) return;
    for (size_t i = 0; i < v->dcap; i++) free(v->days[i].key);
    free(v->days);
    free(v->ids);
    free(v->start);
    free(v->end);
    free(v->pg_uri);
    free(v->dir);
    free(v);
}
