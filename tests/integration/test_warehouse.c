/*
 * Integration: the warehouse sink (src/warehouse) against a real
 * `crmstream serve` and a throwaway PostgreSQL 15 (tests/pgserver.c).
 *
 * Every acknowledged event lands exactly once in the `events` table and in
 * the zstd NDJSON files (decompressed here with libzstd, every line parsed),
 * across SIGKILLs of the server mid-stream; PostgreSQL stopped (immediate)
 * for a while slows neither ingest nor the pipeline (leads keep coming) and
 * the sink catches up after its restart with no duplicates; a file
 * destination killed mid-batch leaves no partial file visible, its temp files
 * are removed at restart, a committed-but-unrenamed batch is rolled forward
 * and a torn manifest tail is cut.
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <cmocka.h>

#include "harness.c"
#include "pgserver.c"
#include "core/hash.h"

static tpg pg; /* one server for the binary; a database per test */

/* ---------------------------------------------------------------- helpers */

/* Post events prefix-first .. prefix-(first+n-1): a mix of LeadCreated and
 * FeatureUsed whose event times spread over the last 6 hours (so the files
 * split by hour). Asserts 200 and all accepted. */
static void post_events(th_server *s, const char *prefix, int first, int n)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "[");
    int64_t now = cs_now_us();
    for (int i = first; i < first + n; i++) {
        char ts[40];
        cs_fmt_time_ms(now - (int64_t)(i % 6) * 3600 * 1000000LL - (i % 1000) * 1000LL, ts, sizeof ts);
        if (i % 3 == 0)
            cs_buf_printf(&b,
                          "%s{\"event_id\":\"%s-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%d\","
                          "\"timestamp\":\"%s\",\"properties\":{\"email\":\"p%d@example.com\",\"company\":\"Tab\\there\"}}",
                          i > first ? "," : "", prefix, i, i % 11, ts, i);
        else
            cs_buf_printf(&b,
                          "%s{\"event_id\":\"%s-%d\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_%d\","
                          "\"user_id\":\"u_%d\",\"timestamp\":\"%s\",\"plan_tier\":\"trial\","
                          "\"properties\":{\"feature\":\"export\\\\csv\",\"new_prop_%d\":%d}}",
                          i > first ? "," : "", prefix, i, i % 11, i, ts, i % 5, i);
    }
    cs_buf_adds(&b, "]");
    cJSON *j;
    int st = th_req(s, "POST", "/v1/events", b.data, &j);
    if (st != 200) fprintf(stderr, "POST /v1/events -> %d\n", st);
    assert_int_equal(st, 200);
    assert_int_equal(cJSON_GetObjectItem(j, "accepted")->valueint, n);
    cJSON_Delete(j);
    cs_buf_free(&b);
}

static void msleep_(int ms)
{
    usleep((useconds_t)ms * 1000);
}

/* Where the SIGKILLs land: a random delay in [lo, hi] ms; the seed is
 * printed (WH_SEED=N repeats a run). */
static int kill_delay_ms(int lo, int hi)
{
    static unsigned seed;
    if (!seed) {
        const char *e = getenv("WH_SEED");
        seed = e && *e ? (unsigned)strtoul(e, NULL, 10) : (unsigned)(cs_now_us() ^ getpid());
        if (!seed) seed = 1;
        fprintf(stderr, "# test_warehouse: kill points from WH_SEED=%u\n", seed);
    }
    return lo + (int)(rand_r(&seed) % (unsigned)(hi - lo + 1));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct idset {
    char  **v;
    size_t  n, cap;
} idset;

static void ids_add(idset *s, const char *id)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = cs_realloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = cs_strdup(id);
}

static void ids_free(idset *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* The expected ids: prefix-0 .. prefix-(n-1), sorted. */
static void ids_expected(idset *s, const char *prefix, int n)
{
    char id[64];
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        ids_add(s, id);
    }
    qsort(s->v, s->n, sizeof *s->v, cmp_str);
}

/* Sorted ids are equal to the expected ones: each exactly once. */
static void ids_assert_equal(idset *got, idset *want, const char *where)
{
    qsort(got->v, got->n, sizeof *got->v, cmp_str);
    for (size_t i = 1; i < got->n; i++)
        if (strcmp(got->v[i - 1], got->v[i]) == 0) fail_msg("%s: %s twice", where, got->v[i]);
    if (got->n != want->n) fail_msg("%s: %zu events, expected %zu", where, got->n, want->n);
    for (size_t i = 0; i < got->n; i++)
        if (strcmp(got->v[i], want->v[i]) != 0) fail_msg("%s: %s where %s was expected", where, got->v[i], want->v[i]);
}

/* ---- PostgreSQL ---- */

/* Rows in events (-1 when the database is unreachable or has no table). */
static long pg_count(const char *uri)
{
    PGconn *c = PQconnectdb(uri);
    long n = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM events");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) n = atol(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    return n;
}

static long pg_wait(const char *uri, long n, int timeout_ms)
{
    long have = -1;
    int64_t deadline = cs_mono_us() + (int64_t)timeout_ms * 1000;
    while (cs_mono_us() < deadline && (have = pg_count(uri)) < n) msleep_(50);
    return have;
}

static void pg_ids(const char *uri, idset *out)
{
    PGconn *c = PQconnectdb(uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "SELECT event_id FROM events");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(r); i++) ids_add(out, PQgetvalue(r, i, 0));
    PQclear(r);
    /* Columns typed and filled: JSONB properties, timestamptz, metadata;
     * and the stored positions equal the rows' offsets + 1 per partition. */
    r = PQexec(c, "SELECT count(*) FILTER (WHERE ts IS NULL OR received_at IS NULL OR properties IS NULL"
                  " OR source IS NULL),"
                  " count(*) FILTER (WHERE properties->>'company' = E'Tab\\there'),"
                  " count(*) FILTER (WHERE properties->>'feature' = E'export\\\\csv'),"
                  " (SELECT count(*) FROM (SELECT partition, max(\"offset\") + 1 AS m FROM events GROUP BY partition) e"
                  "   JOIN warehouse_offsets o ON o.partition = e.partition AND o.topic = 'events'"
                  "   WHERE o.next_offset <> e.m)"
                  " FROM events");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    assert_true(atol(PQgetvalue(r, 0, 1)) > 0);
    assert_true(atol(PQgetvalue(r, 0, 2)) > 0);
    assert_string_equal(PQgetvalue(r, 0, 3), "0");
    PQclear(r);
    PQfinish(c);
}

/* ---- files ---- */

static int read_zst(const char *path, cs_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    cs_buf z;
    cs_buf_init(&z);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) cs_buf_add(&z, chunk, n);
    fclose(f);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    ZSTD_inBuffer in = {z.data, z.len, 0};
    int rc = 0;
    size_t last = 1;
    while (in.pos < in.size) {
        ZSTD_outBuffer o = {chunk, sizeof chunk, 0};
        last = ZSTD_decompressStream(dc, &o, &in);
        if (ZSTD_isError(last)) {
            rc = -1;
            break;
        }
        cs_buf_add(out, chunk, o.pos);
    }
    for (;;) { /* flush what is buffered */
        ZSTD_outBuffer o = {chunk, sizeof chunk, 0};
        if (rc || last == 0) break;
        last = ZSTD_decompressStream(dc, &o, &in);
        if (ZSTD_isError(last) || o.pos == 0) {
            rc = ZSTD_isError(last) || last != 0 ? -1 : 0;
            break;
        }
        cs_buf_add(out, chunk, o.pos);
    }
    if (last != 0) rc = -1; /* truncated frame */
    ZSTD_freeDCtx(dc);
    cs_buf_free(&z);
    return rc;
}

typedef struct scan {
    long files, tmp, events, bad;
} scan;

/* Read every visible file under root: each must decompress completely and
 * every line be a JSON object with event_id, partition and offset whose
 * event time is the file's dt/hour. ids (may be NULL) collects event ids. */
static void scan_files(const char *root, idset *ids, scan *sc)
{
    memset(sc, 0, sizeof *sc);
    DIR *top = opendir(root);
    if (!top) return;
    struct dirent *e;
    while ((e = readdir(top))) {
        if (strncmp(e->d_name, "dt=", 3) != 0) continue;
        char dt[600];
        snprintf(dt, sizeof dt, "%s/%s", root, e->d_name);
        DIR *dd = opendir(dt);
        struct dirent *h;
        while (dd && (h = readdir(dd))) {
            if (strncmp(h->d_name, "hour=", 5) != 0) continue;
            char hour[900];
            snprintf(hour, sizeof hour, "%s/%s", dt, h->d_name);
            DIR *hd = opendir(hour);
            struct dirent *x;
            while (hd && (x = readdir(hd))) {
                size_t len = strlen(x->d_name);
                if (len > 4 && strcmp(x->d_name + len - 4, ".tmp") == 0) {
                    sc->tmp++;
                    assert_true(x->d_name[0] == '.'); /* hidden */
                    continue;
                }
                if (len < 11 || strcmp(x->d_name + len - 11, ".ndjson.zst") != 0) continue;
                sc->files++;
                char p[1200];
                snprintf(p, sizeof p, "%s/%s", hour, x->d_name);
                cs_buf out;
                cs_buf_init(&out);
                if (read_zst(p, &out) != 0) {
                    fprintf(stderr, "%s: does not decompress\n", p);
                    sc->bad++;
                }
                char want[40];
                snprintf(want, sizeof want, "%.10sT%.2s", e->d_name + 3, h->d_name + 5);
                for (char *line = out.data, *nl; line && (nl = memchr(line, '\n', out.len - (size_t)(line - out.data)));
                     line = nl + 1) {
                    cJSON *j = cJSON_ParseWithLength(line, (size_t)(nl - line));
                    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(j, "event_id"));
                    const char *ts = cJSON_GetStringValue(cJSON_GetObjectItem(j, "timestamp"));
                    if (!id || !ts || strncmp(ts, want, 13) != 0 || !cJSON_IsNumber(cJSON_GetObjectItem(j, "offset")) ||
                        !cJSON_IsNumber(cJSON_GetObjectItem(j, "partition"))) {
                        fprintf(stderr, "%s: bad line %.*s\n", p, (int)(nl - line), line);
                        sc->bad++;
                    } else {
                        sc->events++;
                        if (ids) ids_add(ids, id);
                    }
                    cJSON_Delete(j);
                }
                if (out.len && out.data[out.len - 1] != '\n') sc->bad++;
                cs_buf_free(&out);
            }
            if (hd) closedir(hd);
        }
        if (dd) closedir(dd);
    }
    closedir(top);
}

static long files_wait(const char *root, long n, int timeout_ms)
{
    scan sc = {0};
    int64_t deadline = cs_mono_us() + (int64_t)timeout_ms * 1000;
    do {
        scan_files(root, NULL, &sc);
        assert_int_equal(sc.bad, 0);
        if (sc.events >= n) break;
        msleep_(50);
    } while (cs_mono_us() < deadline);
    return sc.events;
}

/* Every manifest line has a good CRC and the ranges of each partition are
 * contiguous from 0. Returns the number of lines. */
static long check_manifest(const char *root)
{
    char path[600], *line = NULL;
    size_t cap = 0;
    ssize_t len;
    snprintf(path, sizeof path, "%s/_manifest.ndjson", root);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long lines = 0;
    int64_t next[4] = {0};
    while ((len = getline(&line, &cap, f)) > 0) {
        assert_true(line[len - 1] == '\n');
        char *k = strstr(line, ",\"crc32c\":\"");
        assert_non_null(k);
        assert_int_equal(cs_crc32c(0, line, (size_t)(k - line)), (uint32_t)strtoul(k + 11, NULL, 16));
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        int p = cJSON_GetObjectItem(j, "partition")->valueint;
        assert_true(p >= 0 && p < 4);
        assert_int_equal((int64_t)cJSON_GetObjectItem(j, "from")->valuedouble, next[p]);
        next[p] = (int64_t)cJSON_GetObjectItem(j, "to")->valuedouble;
        cJSON_Delete(j);
        lines++;
    }
    free(line);
    fclose(f);
    return lines;
}

static void wh_yaml(char *yaml, size_t n, const char *uri, int files, long batch)
{
    snprintf(yaml, n,
             "warehouse:\n%s%s%s  batch_max_events: %ld\n  flush_interval_ms: 20\n  file_interval_ms: 20\n",
             uri ? "  postgres: \"" : "", uri ? uri : "", uri ? "\"\n" : "", batch);
    if (files) snprintf(yaml + strlen(yaml), n - strlen(yaml), "  dir: DATA/wh\n");
}

/* th_start, printing the end of the server's log when it fails. */
static int start(th_server *s)
{
    int rc = th_start(s);
    if (rc != 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "tail -n 20 '%s/serve.log' >&2", s->dir);
        if (system(cmd) != 0) fprintf(stderr, "no serve.log\n");
    }
    return rc;
}

/* The server's log has a line containing both strings. */
static int log_has(th_server *s, const char *a, const char *b)
{
    char path[300], line[4096];
    snprintf(path, sizeof path, "%s/serve.log", s->dir);
    FILE *f = fopen(path, "r");
    int hit = 0;
    while (f && !hit && fgets(line, sizeof line, f)) hit = strstr(line, a) && strstr(line, b);
    if (f) fclose(f);
    return hit;
}

/* ---- crmstream verify warehouse ---- */

/* Run `crmstream verify warehouse --json ARGS` on the server's data dir (the
 * server stopped); returns the exit status and the parsed JSON (NULL when
 * it printed none). */
static int run_verify(th_server *s, const char *args, cJSON **json)
{
    char cmd[1600];
    snprintf(cmd, sizeof cmd,
             "%s verify warehouse --config '%s/config.yaml' --data '%s/data' --json %s 2>>'%s/verify.err'", th_bin(),
             s->dir, s->dir, args ? args : "", s->dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    cs_buf out;
    cs_buf_init(&out);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) cs_buf_add(&out, chunk, n);
    int st = pclose(p);
    if (json) *json = out.len ? cJSON_Parse(out.data) : NULL;
    cs_buf_free(&out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const cJSON *vdest(const cJSON *j, const char *name)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "destinations"))
        if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(it, "name")), name) == 0) return it;
    fail_msg("verify: no destination %s", name);
    return NULL;
}

static long vnum(const cJSON *j, const char *dest, const char *field)
{
    const cJSON *o = dest ? vdest(j, dest) : j;
    const cJSON *x = cJSON_GetObjectItem(o, field);
    if (!cJSON_IsNumber(x)) fail_msg("verify: no number %s.%s", dest ? dest : "", field);
    return (long)x->valuedouble;
}

/* verify exits 0, says "equal", and each named destination holds `total`
 * events with nothing missing or duplicated; the per-day rows add up. */
static void assert_verify_equal(th_server *s, long total, const char *d1, const char *d2, const char *args)
{
    cJSON *j;
    int rc = run_verify(s, args, &j);
    if (rc != 0 || !j) {
        char *txt = j ? cJSON_Print(j) : NULL;
        fprintf(stderr, "verify exit %d: %s\n", rc, txt ? txt : "(no JSON)");
        free(txt);
    }
    assert_int_equal(rc, 0);
    assert_non_null(j);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "result")), "equal");
    assert_int_equal(vnum(j, NULL, "passes") >= 1, 1);
    assert_int_equal(vnum(cJSON_GetObjectItem(j, "log"), NULL, "events"), total);
    const char *names[] = {d1, d2};
    for (int i = 0; i < 2; i++) {
        if (!names[i]) continue;
        assert_int_equal(vnum(j, names[i], "events"), total);
        assert_int_equal(vnum(j, names[i], "missing"), 0);
        assert_int_equal(vnum(j, names[i], "duplicate"), 0);
        assert_int_equal(vnum(j, names[i], "unexpected"), 0);
        assert_int_equal(vnum(j, names[i], "behind"), 0);
    }
    long sum = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "days"))
    {
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(row, "equal")));
        sum += (long)cJSON_GetObjectItem(row, "log")->valuedouble;
    }
    assert_int_equal(sum, total);
    cJSON_Delete(j);
}

static void pg_exec(const char *uri, const char *sql, const char *want_tuples)
{
    PGconn *c = PQconnectdb(uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(r));
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    if (want_tuples) assert_string_equal(PQcmdTuples(r), want_tuples);
    PQclear(r);
    PQfinish(c);
}

/* ------------------------------------------------------------------ tests */

/* Both destinations side by side; the server is SIGKILLed mid-stream three
 * times (the sink busy with small batches); in the end each acknowledged
 * event is exactly once in PostgreSQL and exactly once in the files. */
static void test_exactly_once_across_sigkill(void **state)
{
    (void)state;
    char uri[256], yaml[600], root[400];
    assert_int_equal(tpg_create_db(&pg, "wh_kill", uri, sizeof uri), 0);
    wh_yaml(yaml, sizeof yaml, uri, 1, 37);
    th_server s;
    th_init(&s, yaml);
    snprintf(root, sizeof root, "%s/data/wh", s.dir);
    assert_int_equal(start(&s), 0);
    int total = 0;
    for (int round = 0; round < 4; round++) {
        for (int k = 0; k < 6; k++, total += 100) post_events(&s, "k", total, 100);
        if (round == 3) break;
        msleep_(kill_delay_ms(5, 120)); /* the sink is mid-stream, at a random point */
        assert_int_equal(th_stop(&s, SIGKILL), SIGKILL);
        /* Whatever the kill left: no visible file is partial. */
        scan sc;
        scan_files(root, NULL, &sc);
        assert_int_equal(sc.bad, 0);
        assert_int_equal(start(&s), 0);
    }
    assert_int_equal(pg_wait(uri, total, 60000), total);
    assert_int_equal(files_wait(root, total, 60000), total);
    msleep_(300); /* nothing more arrives */
    idset want = {0}, got = {0};
    ids_expected(&want, "k", total);
    pg_ids(uri, &got);
    ids_assert_equal(&got, &want, "postgres");
    ids_free(&got);
    scan sc;
    scan_files(root, &got, &sc);
    assert_int_equal(sc.bad, 0);
    ids_assert_equal(&got, &want, "files");
    assert_true(sc.files > 12); /* split by hour and batch */
    assert_true(check_manifest(root) > 0);
    ids_free(&got);
    ids_free(&want);
    /* The group is registered on the bus for retention and lag. */
    char gpath[600];
    struct stat st;
    snprintf(gpath, sizeof gpath, "%s/data/log/events/groups/warehouse.off", s.dir);
    assert_int_equal(stat(gpath, &st), 0);
    assert_int_equal(th_stop(&s, SIGTERM) & 0x7f, 0);
    /* The command says the same: equal counts, no duplicates, in both;
     * also when the ids are compared in several passes. */
    assert_verify_equal(&s, total, "postgres", "files", NULL);
    cJSON *j;
    assert_int_equal(run_verify(&s, "--ids-per-pass 500", &j), 0);
    assert_true(vnum(j, NULL, "passes") >= 4);
    cJSON_Delete(j);
    th_cleanup(&s);
}

/* PostgreSQL down (immediate stop): ingest answers at once and the pipeline
 * keeps routing leads; after the restart the sink catches up by itself,
 * with no duplicates. */
static void test_postgres_outage(void **state)
{
    (void)state;
    char uri[256], yaml[600];
    assert_int_equal(tpg_create_db(&pg, "wh_outage", uri, sizeof uri), 0);
    wh_yaml(yaml, sizeof yaml, uri, 0, 100);
    th_server s;
    th_init(&s, yaml);
    assert_int_equal(start(&s), 0);
    post_events(&s, "o", 0, 300);
    assert_int_equal(pg_wait(uri, 300, 30000), 300);
    assert_int_equal(th_wait_leads(&s, 100, 20000), 100); /* every third is a lead */
    assert_int_equal(tpg_stop(&pg, "immediate"), 0);
    int64_t t0 = cs_mono_us();
    for (int k = 1; k <= 6; k++) {
        int64_t a = cs_mono_us();
        post_events(&s, "o", k * 300, 300);
        assert_true(cs_mono_us() - a < 3000000); /* ingest is not held up */
    }
    /* Leads keep coming while the warehouse cannot write. */
    assert_int_equal(th_wait_leads(&s, 700, 20000), 700);
    if (cs_mono_us() - t0 < 1500000) msleep_(1500 - (int)((cs_mono_us() - t0) / 1000)); /* a few retries */
    assert_int_equal(tpg_restart(&pg), 0);
    assert_int_equal(pg_wait(uri, 2100, 60000), 2100);
    msleep_(300);
    idset want = {0}, got = {0};
    ids_expected(&want, "o", 2100);
    pg_ids(uri, &got);
    ids_assert_equal(&got, &want, "postgres after the outage");
    /* It really failed meanwhile, and said so. */
    assert_true(log_has(&s, "\"destination\":\"postgres\"", "retrying"));
    assert_true(log_has(&s, "destination recovered", "postgres"));
    ids_free(&got);
    ids_free(&want);
    th_stop(&s, SIGTERM);
    assert_verify_equal(&s, 2100, "postgres", NULL, NULL);
    th_cleanup(&s);
}

/* Files: SIGKILL while big batches are written leaves only whole visible
 * files; restart removes temp files, rolls a committed batch forward and cuts
 * a torn manifest tail; every event exactly once at the end. */
static void test_files_crash_recovery(void **state)
{
    (void)state;
    char yaml[600], root[400];
    wh_yaml(yaml, sizeof yaml, NULL, 1, 400);
    th_server s;
    th_init(&s, yaml);
    snprintf(root, sizeof root, "%s/data/wh", s.dir);
    assert_int_equal(start(&s), 0);
    int total = 0;
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 4; k++, total += 250) post_events(&s, "f", total, 250);
        msleep_(kill_delay_ms(2, 80));
        assert_int_equal(th_stop(&s, SIGKILL), SIGKILL);
        scan sc;
        scan_files(root, NULL, &sc);
        assert_int_equal(sc.bad, 0);
        assert_int_equal(start(&s), 0);
    }
    assert_int_equal(files_wait(root, total, 60000), total);
    msleep_(200);
    assert_int_equal(th_stop(&s, SIGTERM) & 0x7f, 0);

    /* Forge the two crash windows by hand, the server stopped:
     * (a) the last committed batch's renames never happened: move its files
     *     back to their temp names;
     * (b) an uncommitted batch: a stray temp file and a torn manifest line. */
    char mpath[600], last[65536] = "", line[65536];
    snprintf(mpath, sizeof mpath, "%s/_manifest.ndjson", root);
    FILE *f = fopen(mpath, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) snprintf(last, sizeof last, "%s", line);
    fclose(f);
    cJSON *j = cJSON_Parse(last);
    assert_non_null(j);
    cJSON *it;
    int moved = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "files"))
    {
        const char *rel = cJSON_GetStringValue(cJSON_GetObjectItem(it, "path"));
        const char *base = strrchr(rel, '/') + 1;
        char fin[1200], tmp[1200];
        snprintf(fin, sizeof fin, "%s/%s", root, rel);
        snprintf(tmp, sizeof tmp, "%s/%.*s.%s.tmp", root, (int)(base - rel), rel, base);
        assert_int_equal(rename(fin, tmp), 0);
        moved++;
    }
    cJSON_Delete(j);
    assert_true(moved > 0);
    scan sc;
    scan_files(root, NULL, &sc);
    assert_true(sc.events < total);
    char stray[800];
    snprintf(stray, sizeof stray, "%s/dt=2020-01-01/hour=00", root);
    assert_int_equal(cs_mkdirs(stray, 0755), 0);
    strcat(stray, "/.part-0-999999.ndjson.zst.tmp");
    f = fopen(stray, "w");
    fputs("partial", f);
    fclose(f);
    f = fopen(mpath, "a");
    fputs("{\"partition\":0,\"from\":999999,\"to\":1000100,\"fi", f); /* torn */
    fclose(f);

    assert_int_equal(start(&s), 0);
    assert_int_equal(files_wait(root, total, 30000), total);
    int64_t deadline = cs_mono_us() + 10000000;
    do {
        scan_files(root, NULL, &sc);
    } while (sc.tmp > 0 && cs_mono_us() < deadline && (msleep_(20), 1));
    assert_int_equal(sc.tmp, 0);
    assert_int_equal(access(stray, F_OK), -1);
    assert_true(log_has(&s, "torn manifest tail cut", "files"));
    assert_true(log_has(&s, "committed file completed after a crash", "files"));
    assert_true(log_has(&s, "uncommitted temp files removed", "files"));
    /* More events after the recovery continue the ranges. */
    post_events(&s, "f", total, 200);
    total += 200;
    assert_int_equal(files_wait(root, total, 30000), total);
    msleep_(200);
    idset want = {0}, got = {0};
    ids_expected(&want, "f", total);
    scan_files(root, &got, &sc);
    ids_assert_equal(&got, &want, "files after recovery");
    check_manifest(root); /* the torn line was cut */
    ids_free(&got);
    ids_free(&want);
    th_stop(&s, SIGTERM);
    assert_verify_equal(&s, total, "files", NULL, NULL);
    th_cleanup(&s);
}

/* verify must exit 1 on any difference: a file removed (its events
 * missing from the files), a row duplicated by hand in PostgreSQL, a row
 * deleted, a file damaged; 0 again once each is undone; --from/--to narrow
 * the comparison; bad usage exits 2. */
static void test_verify_detects_differences(void **state)
{
    (void)state;
    char uri[256], yaml[600], root[400];
    assert_int_equal(tpg_create_db(&pg, "wh_verify", uri, sizeof uri), 0);
    wh_yaml(yaml, sizeof yaml, uri, 1, 50);
    th_server s;
    th_init(&s, yaml);
    snprintf(root, sizeof root, "%s/data/wh", s.dir);
    assert_int_equal(start(&s), 0);
    for (int k = 0; k < 6; k++) post_events(&s, "v", k * 100, 100);
    assert_int_equal(pg_wait(uri, 600, 30000), 600);
    assert_int_equal(files_wait(root, 600, 30000), 600);
    assert_int_equal(th_stop(&s, SIGTERM) & 0x7f, 0);
    assert_verify_equal(&s, 600, "postgres", "files", NULL);

    /* (a) one committed file removed: its events are missing from the files. */
    char mpath[600], line[65536];
    snprintf(mpath, sizeof mpath, "%s/_manifest.ndjson", root);
    FILE *f = fopen(mpath, "r");
    assert_non_null(f);
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    cJSON *m = cJSON_Parse(line), *file0 = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "files"), 0);
    long in_file = (long)cJSON_GetObjectItem(file0, "events")->valuedouble;
    char fin[1200], aside[1300];
    snprintf(fin, sizeof fin, "%s/%s", root, cJSON_GetStringValue(cJSON_GetObjectItem(file0, "path")));
    snprintf(aside, sizeof aside, "%s/aside.zst", s.dir);
    cJSON_Delete(m);
    assert_true(in_file > 0);
    assert_int_equal(rename(fin, aside), 0);
    cJSON *j;
    assert_int_equal(run_verify(&s, NULL, &j), 1);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "result")), "different");
    assert_int_equal(vnum(j, "files", "missing"), in_file);
    assert_int_equal(vnum(j, "files", "files_missing"), 1);
    assert_int_equal(vnum(j, "files", "events"), 600 - in_file);
    assert_int_equal(vnum(j, "postgres", "missing"), 0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(vdest(j, "postgres"), "equal")));
    cJSON_Delete(j);
    /* The table says it too, and the exit status. */
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "%s verify warehouse --config '%s/config.yaml' --data '%s/data' 2>/dev/null | grep -q '^DIFFERENT'",
             th_bin(), s.dir, s.dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(rename(aside, fin), 0);
    assert_verify_equal(&s, 600, "postgres", "files", NULL);

    /* (b) a file damaged (cut short): it no longer decompresses. */
    struct stat st;
    assert_int_equal(stat(fin, &st), 0);
    char copy[2700];
    snprintf(copy, sizeof copy, "cp '%s' '%s'", fin, aside);
    assert_int_equal(system(copy), 0);
    assert_int_equal(truncate(fin, st.st_size / 2), 0);
    assert_int_equal(run_verify(&s, NULL, &j), 1);
    assert_int_equal(vnum(j, "files", "bad_files"), 1);
    cJSON_Delete(j);
    assert_int_equal(rename(aside, fin), 0);

    /* (c) a row duplicated by hand in PostgreSQL (another offset: the
     * primary key forbids the same one): one duplicate event. */
    pg_exec(uri,
            "INSERT INTO events SELECT event_id, type, account_id, user_id, ts, product_area, plan_tier, properties,"
            " context, received_at, partition, \"offset\" + 1000000, source, write_key FROM events"
            " WHERE event_id = 'v-7'",
            "1");
    assert_int_equal(run_verify(&s, NULL, &j), 1);
    assert_int_equal(vnum(j, "postgres", "duplicate"), 1);
    assert_int_equal(vnum(j, "postgres", "missing"), 0);
    assert_int_equal(vnum(j, "postgres", "events"), 601);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(vdest(j, "files"), "equal")));
    int differing = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "days"))
    {
        if (cJSON_IsTrue(cJSON_GetObjectItem(row, "equal"))) continue;
        differing++;
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(row, "type")), "FeatureUsed"); /* 7 % 3 != 0 */
        assert_int_equal((long)cJSON_GetObjectItem(row, "postgres")->valuedouble,
                         (long)cJSON_GetObjectItem(row, "log")->valuedouble + 1);
    }
    assert_int_equal(differing, 1);
    cJSON_Delete(j);
    /* (d) and one deleted: missing, even though the total is 600 again. */
    pg_exec(uri, "DELETE FROM events WHERE event_id = 'v-8'", "1");
    assert_int_equal(run_verify(&s, NULL, &j), 1);
    assert_int_equal(vnum(j, "postgres", "events"), 600);
    assert_int_equal(vnum(j, "postgres", "missing"), 1);
    assert_int_equal(vnum(j, "postgres", "duplicate"), 1);
    cJSON_Delete(j);
    pg_exec(uri, "DELETE FROM events WHERE \"offset\" >= 1000000", "1");
    pg_exec(uri,
            "INSERT INTO events (event_id, type, partition, \"offset\") VALUES ('not-in-log', 'LeadCreated', 0, 2000000)",
            "1");
    assert_int_equal(run_verify(&s, NULL, &j), 1);
    assert_int_equal(vnum(j, "postgres", "unexpected"), 1);
    assert_int_equal(vnum(j, "postgres", "missing"), 1);
    cJSON_Delete(j);

    /* --from/--to: only the events of that time range (post_events spreads
     * them over the last 6 hours, i % 6 hours back): the 2-3 hours back
     * window. In range, (c)-(d) are the only differences when v-8 is in it. */
    int64_t now = cs_now_us();
    char from[40], to[40], args[200];
    cs_fmt_time_ms(now - 3 * 3600 * 1000000LL + 1000000LL, from, sizeof from);
    cs_fmt_time_ms(now - 2 * 3600 * 1000000LL + 1000000LL, to, sizeof to);
    snprintf(args, sizeof args, "--from %s --to %s", from, to);
    pg_exec(uri, "DELETE FROM events WHERE event_id = 'not-in-log'", "1");
    assert_int_equal(run_verify(&s, args, &j), 1); /* v-8: 8 % 6 = 2 hours back */
    long in_range = vnum(cJSON_GetObjectItem(j, "log"), NULL, "events");
    assert_true(in_range == 100); /* i % 6 == 2 */
    assert_int_equal(vnum(j, "postgres", "missing"), 1);
    assert_int_equal(vnum(j, "files", "events"), 100);
    cJSON_Delete(j);
    cs_fmt_time_ms(now - 4 * 3600 * 1000000LL + 1000000LL, from, sizeof from);
    cs_fmt_time_ms(now - 3 * 3600 * 1000000LL + 1000000LL, to, sizeof to);
    snprintf(args, sizeof args, "--from %s --to %s", from, to);
    assert_verify_equal(&s, 100, "postgres", "files", args); /* i % 6 == 3: untouched */

    /* Usage errors exit 2; a server holding the data dir is a runtime error. */
    assert_int_equal(run_verify(&s, "--from yesterday", NULL), 2);
    assert_int_equal(run_verify(&s, "--ids-per-pass 0", NULL), 2);
    snprintf(cmd, sizeof cmd, "%s verify nothing 2>/dev/null", th_bin());
    int rc = system(cmd);
    assert_int_equal(WEXITSTATUS(rc), 2);
    assert_int_equal(start(&s), 0);
    assert_int_equal(run_verify(&s, NULL, NULL), 1);
    th_stop(&s, SIGTERM);
    th_cleanup(&s);
}

/* Warehouse lag as GET /api/v1/warehouse reports it (-1 on error). */
static long wh_api_lag(th_server *s, const char *dest)
{
    cJSON *j;
    if (th_req(s, "GET", "/api/v1/warehouse", NULL, &j) != 200 || !j) {
        cJSON_Delete(j);
        return -1;
    }
    long lag = -1;
    if (!dest) {
        lag = (long)cJSON_GetObjectItem(j, "lag")->valuedouble;
    } else {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "destinations"))
            if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(it, "name")), dest) == 0)
                lag = (long)cJSON_GetObjectItem(it, "lag")->valuedouble;
    }
    cJSON_Delete(j);
    return lag;
}

/* The warehouse sink paused (POST /api/v1/warehouse/pause): ingest keeps
 * answering 200 (never 503, although the warehouse falls further behind
 * than pipeline.max_lag), every lead is routed and the pipeline's lag
 * returns to 0 while the sink writes nothing; the warehouse's lag grows by
 * exactly what was ingested; after resume it catches up, and verify finds
 * every event once. (The latency comparison is in bench-warehouse.) */
static void test_sink_paused_pipeline_unaffected(void **state)
{
    (void)state;
    char uri[256], yaml[700], root[400];
    assert_int_equal(tpg_create_db(&pg, "wh_paused", uri, sizeof uri), 0);
    wh_yaml(yaml, sizeof yaml, uri, 1, 100);
    strcat(yaml, "pipeline:\n  max_lag: 200\n");
    th_server s;
    th_init(&s, yaml);
    snprintf(root, sizeof root, "%s/data/wh", s.dir);
    assert_int_equal(start(&s), 0);
    post_events(&s, "p", 0, 300);
    assert_int_equal(pg_wait(uri, 300, 30000), 300);
    assert_int_equal(files_wait(root, 300, 30000), 300);
    assert_int_equal(th_wait_leads(&s, 100, 20000), 100);

    cJSON *j;
    assert_int_equal(th_req(&s, "POST", "/api/v1/warehouse/pause", "", &j), 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "paused")));
    const cJSON *it;
    int parked = 0;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "destinations")) parked += cJSON_IsTrue(cJSON_GetObjectItem(it, "parked"));
    assert_int_equal(parked, 2); /* no batch in flight from here on */
    cJSON_Delete(j);
    long pg_before = pg_count(uri), files_before = files_wait(root, 0, 0);
    int total = 300;
    for (int k = 0; k < 10; k++, total += 100) {
        post_events(&s, "p", total, 100); /* asserts 200: never 503 */
        assert_int_equal(th_wait_caught_up(&s, 20000), 0);
    }
    /* Every lead routed, in the pipeline, while the warehouse wrote nothing. */
    long leads = (total + 2) / 3;
    assert_int_equal(th_wait_leads(&s, leads, 20000), leads);
    assert_int_equal(th_wait_caught_up(&s, 20000), 0);
    assert_int_equal(pg_count(uri), pg_before);
    assert_int_equal(files_wait(root, 0, 0), files_before);
    assert_int_equal(wh_api_lag(&s, "postgres"), total - pg_before);
    assert_int_equal(wh_api_lag(&s, "files"), total - files_before);
    assert_true(total - pg_before > 200); /* past pipeline.max_lag: still no 503 */
    cs_buf mb;
    cs_buf_init(&mb);
    int status = 0;
    assert_int_equal(cs_httpc_request(&s.c, "GET", "/metrics", NULL, NULL, 0, &status, &mb), 0);
    char want[200];
    snprintf(want, sizeof want,
             "crmstream_warehouse_lag_records{consumergroup=\"warehouse\",topic=\"events\",destination=\"postgres\"} %ld\n",
             total - pg_before);
    assert_non_null(strstr(mb.data, want));
    assert_non_null(strstr(mb.data, "crmstream_warehouse_paused 1\n"));
    assert_non_null(strstr(mb.data, "crmstream_consumer_lag_records{consumergroup=\"pipeline\",topic=\"events\"} 0\n"));
    cs_buf_free(&mb);

    assert_int_equal(th_req(&s, "POST", "/api/v1/warehouse/resume", "", &j), 200);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "paused")));
    cJSON_Delete(j);
    assert_int_equal(pg_wait(uri, total, 30000), total);
    assert_int_equal(files_wait(root, total, 30000), total);
    int64_t deadline = cs_mono_us() + 10000000;
    while (wh_api_lag(&s, NULL) != 0 && cs_mono_us() < deadline) msleep_(20);
    assert_int_equal(wh_api_lag(&s, NULL), 0);
    assert_int_equal(th_stop(&s, SIGTERM) & 0x7f, 0);
    assert_verify_equal(&s, total, "postgres", "files", NULL);
    th_cleanup(&s);
}

static int pg_setup(void **state)
{
    (void)state;
    return tpg_start(&pg);
}

static int pg_teardown(void **state)
{
    (void)state;
    tpg_destroy(&pg);
    return 0;
}

int main(void)
{
    const struct CMUnitTest files_tests[] = {
        cmocka_unit_test(test_files_crash_recovery),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_exactly_once_across_sigkill),
        cmocka_unit_test(test_postgres_outage),
        cmocka_unit_test(test_verify_detects_differences),
        cmocka_unit_test(test_sink_paused_pipeline_unaffected),
    };
    int failed = cmocka_run_group_tests_name("warehouse_files", files_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("warehouse_postgres", pg_tests, pg_setup, pg_teardown);
    return failed ? 1 : 0;
}
