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
        msleep_(15 + round * 40); /* the sink is mid-stream */
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
        msleep_(5 + round * 25);
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
    };
    int failed = cmocka_run_group_tests_name("warehouse_files", files_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("warehouse_postgres", pg_tests, pg_setup, pg_teardown);
    return failed ? 1 : 0;
}
