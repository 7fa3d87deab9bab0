/*
 * warehouse/pg — the PostgreSQL destination. One transaction per batch:
 *
 *   BEGIN
 *   COPY events (...) FROM STDIN            rows of every partition in the batch
 *   UPDATE warehouse_offsets SET next_offset = <new>
 *    WHERE topic = 'events' AND partition = p AND next_offset = <old>   (each, must hit 1 row)
 *   COMMIT
 *
 * so the rows and the positions they advance commit or vanish together. The
 * conditional UPDATE fences: positions that moved under us (a COMMIT whose
 * answer was lost and that did commit, a second writer) fail the batch,
 * which is then retried from the positions re-read from the database.
 * Tables are created when missing; `properties` and `context` are JSONB, so
 * new event properties need no schema change.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "core/util.h"
#include "warehouse/sink.h"

#define COPY_FLUSH (256u << 10)

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS events ("
    " event_id text NOT NULL, type text, account_id text, user_id text, ts timestamptz,"
    " product_area text, plan_tier text, properties jsonb, context jsonb, received_at timestamptz,"
    " partition integer NOT NULL, \"offset\" bigint NOT NULL, source text, write_key text,"
    " PRIMARY KEY (partition, \"offset\"));"
    "CREATE TABLE IF NOT EXISTS warehouse_offsets ("
    " topic text NOT NULL, partition integer NOT NULL, next_offset bigint NOT NULL,"
    " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (topic, partition));";

static const char copy_sql[] =
    "COPY events (event_id, type, account_id, user_id, ts, product_area, plan_tier, properties, context,"
    " received_at, partition, \"offset\", source, write_key) FROM STDIN";

struct pgdest {
    char   *uri;
    PGconn *c;
    cs_buf  buf;      /* COPY data not yet sent */
    int     start_p;  /* partition the next batch starts at (fairness) */
    size_t  sent;     /* bytes of this batch already sent */
};

static void set_err(wh_dest *d, const char *what, PGconn *c, const PGresult *r)
{
    const char *m = r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : c ? PQerrorMessage(c) : "no connection";
    snprintf(d->err, sizeof d->err, "%s: %s", what, m);
    size_t n = strlen(d->err);
    while (n && (d->err[n - 1] == '\n' || d->err[n - 1] == ' ')) d->err[--n] = '\0';
    for (char *p = d->err; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = ' '; /* logged inside JSON */
}

static int exec_ok(wh_dest *d, PGconn *c, const char *sql, ExecStatusType want)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == want;
    if (!ok) set_err(d, "postgres", c, r);
    PQclear(r);
    return ok ? 0 : -1;
}

static void drop_conn(struct pgdest *g)
{
    if (g->c) PQfinish(g->c);
    g->c = NULL;
}

static void quiet(void *arg, const char *msg)
{
    (void)arg, (void)msg;
}

static int pg_resync(wh_dest *d, int64_t *next)
{
    struct pgdest *g = d->impl;
    drop_conn(g); /* after any failure: a fresh session, no half-done state */
    /* connect_timeout first: the URI may override it. */
    const char *const kw[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const val[] = {"5", "crmstream-warehouse", g->uri, NULL};
    g->c = PQconnectdbParams(kw, val, 1);
    if (PQstatus(g->c) != CONNECTION_OK) {
        set_err(d, "connect", g->c, NULL);
        drop_conn(g);
        return -1;
    }
    PQsetNoticeProcessor(g->c, quiet, NULL);
    if (exec_ok(d, g->c, schema_sql, PGRES_COMMAND_OK)) goto fail;
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO warehouse_offsets(topic, partition, next_offset) SELECT '%s', g, 0"
             " FROM generate_series(0, %d) g ON CONFLICT DO NOTHING",
             CS_TOPIC_EVENTS, d->partitions - 1);
    if (exec_ok(d, g->c, sql, PGRES_COMMAND_OK)) goto fail;
    snprintf(sql, sizeof sql, "SELECT partition, next_offset FROM warehouse_offsets WHERE topic = '%s'",
             CS_TOPIC_EVENTS);
    PGresult *r = PQexec(g->c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        set_err(d, "reading warehouse_offsets", g->c, r);
        PQclear(r);
        goto fail;
    }
    for (int p = 0; p < d->partitions; p++) next[p] = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        int p = atoi(PQgetvalue(r, i, 0));
        if (p >= 0 && p < d->partitions) next[p] = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    }
    PQclear(r);
    for (int p = 0; p < d->partitions; p++) {
        int64_t end = d->bus->ops->end_offset(d->bus, CS_TOPIC_EVENTS, p);
        if (next[p] > end) {
            snprintf(d->err, sizeof d->err,
                     "warehouse_offsets: partition %d is at %lld, past the log end %lld: this database belongs to "
                     "another log",
                     p, (long long)next[p], (long long)end);
            goto fail;
        }
    }
    return 0;
fail:
    drop_conn(g);
    return -1;
}

/* COPY text format: backslash, and the characters it would take as row or
 * column ends, escaped; NULL is \N. */
static void copy_field(cs_buf *b, const char *s, int last)
{
    if (!s) {
        cs_buf_adds(b, "\\N");
    } else {
        const char *run = s;
        for (; *s; s++) {
            const char *esc = *s == '\\' ? "\\\\" : *s == '\t' ? "\\t" : *s == '\n' ? "\\n" : *s == '\r' ? "\\r" : NULL;
            if (!esc) continue;
            cs_buf_add(b, run, (size_t)(s - run));
            cs_buf_adds(b, esc);
            run = s + 1;
        }
        cs_buf_add(b, run, (size_t)(s - run));
    }
    cs_buf_add(b, last ? "\n" : "\t", 1);
}

static void copy_json(cs_buf *b, const cJSON *v)
{
    if (!v || cJSON_IsNull(v)) {
        copy_field(b, NULL, 0);
        return;
    }
    /* Printed by cJSON: valid JSON without \u0000 (which jsonb refuses). */
    char *s = cJSON_PrintUnformatted(v);
    copy_field(b, s, 0);
    cJSON_free(s);
}

struct fetch_ctx {
    wh_dest *d;
    int      partition;
    int64_t  next;
    long     budget;
    long     rows;
    int      failed;
};

static int flush_copy(wh_dest *d)
{
    struct pgdest *g = d->impl;
    if (g->buf.len && PQputCopyData(g->c, g->buf.data, (int)g->buf.len) != 1) {
        set_err(d, "COPY", g->c, NULL);
        return -1;
    }
    g->sent += g->buf.len;
    cs_buf_reset(&g->buf);
    return 0;
}

static int on_rec(const cs_rec *rec, void *arg)
{
    struct fetch_ctx *c = arg;
    wh_dest *d = c->d;
    struct pgdest *g = d->impl;
    if (c->budget <= 0 || g->sent + g->buf.len >= (size_t)WH_BATCH_BYTES) return 1;
    if (rec->offset > c->next)
        cs_warn("warehouse", "offsets missing from the log (deleted by retention before the warehouse read them)",
                "\"destination\":\"postgres\",\"partition\":%d,\"from\":%lld,\"to\":%lld", c->partition,
                (long long)c->next, (long long)rec->offset);
    wh_row r;
    if (wh_row_decode(rec, &r) != 0) {
        d->skipped++;
        cs_error("warehouse", "undecodable record skipped", "\"destination\":\"postgres\",\"partition\":%d,\"offset\":%lld",
                 c->partition, (long long)rec->offset);
    } else {
        char num[32];
        cs_buf *b = &g->buf;
        copy_field(b, r.event_id, 0);
        copy_field(b, r.type, 0);
        copy_field(b, r.account_id, 0);
        copy_field(b, r.user_id, 0);
        copy_field(b, r.ts[0] ? r.ts : NULL, 0);
        copy_field(b, r.product_area, 0);
        copy_field(b, r.plan_tier, 0);
        copy_json(b, r.properties);
        copy_json(b, r.context);
        copy_field(b, r.received_at[0] ? r.received_at : NULL, 0);
        snprintf(num, sizeof num, "%d", c->partition);
        copy_field(b, num, 0);
        snprintf(num, sizeof num, "%lld", (long long)rec->offset);
        copy_field(b, num, 0);
        copy_field(b, r.source, 0);
        copy_field(b, r.write_key, 1);
        wh_row_free(&r);
        c->rows++;
        if (g->buf.len >= COPY_FLUSH && flush_copy(d)) {
            c->failed = 1;
            return 1;
        }
    }
    c->next = rec->offset + 1;
    c->budget--;
    return 0;
}

static long pg_write(wh_dest *d, int64_t *next)
{
    struct pgdest *g = d->impl;
    int P = d->partitions;
    if (!g->c) {
        snprintf(d->err, sizeof d->err, "not connected");
        return -1;
    }
    int64_t *nn = cs_malloc((size_t)P * sizeof *nn);
    memcpy(nn, next, (size_t)P * sizeof *nn);
    long budget = d->batch_max, total = 0, rows = 0;
    int64_t skipped0 = d->skipped;
    int copy_open = 0;
    PGresult *r;
    cs_buf_reset(&g->buf);
    g->sent = 0;
    if (exec_ok(d, g->c, "BEGIN", PGRES_COMMAND_OK)) goto fail;
    if (exec_ok(d, g->c, copy_sql, PGRES_COPY_IN)) goto fail;
    copy_open = 1;
    for (int i = 0; i < P && budget > 0; i++) {
        int p = (g->start_p + i) % P;
        while (budget > 0 && g->sent + g->buf.len < (size_t)WH_BATCH_BYTES) {
            int64_t end = d->bus->ops->end_offset(d->bus, CS_TOPIC_EVENTS, p);
            if (nn[p] >= end) break;
            struct fetch_ctx c = {d, p, nn[p], budget, 0, 0};
            int n = d->bus->ops->fetch(d->bus, CS_TOPIC_EVENTS, p, nn[p], (size_t)budget, on_rec, &c);
            if (c.failed) goto fail_copy;
            if (n < 0) {
                snprintf(d->err, sizeof d->err, "reading partition %d at offset %lld from the log", p, (long long)nn[p]);
                goto fail_copy;
            }
            if (c.next == nn[p]) break;
            total += budget - c.budget;
            rows += c.rows;
            budget = c.budget;
            nn[p] = c.next;
        }
    }
    g->start_p = (g->start_p + 1) % P;
    if (flush_copy(d)) goto fail_copy;
    copy_open = 0;
    if (PQputCopyEnd(g->c, NULL) != 1) {
        set_err(d, "COPY end", g->c, NULL);
        goto fail;
    }
    int copy_ok = 1;
    while ((r = PQgetResult(g->c))) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            if (copy_ok) set_err(d, "COPY", g->c, r);
            copy_ok = 0;
        }
        PQclear(r);
    }
    if (!copy_ok) goto fail;
    for (int p = 0; p < P; p++) {
        if (nn[p] == next[p]) continue;
        char a[32], b[32], pp[16];
        snprintf(pp, sizeof pp, "%d", p);
        snprintf(a, sizeof a, "%lld", (long long)nn[p]);
        snprintf(b, sizeof b, "%lld", (long long)next[p]);
        const char *v[] = {CS_TOPIC_EVENTS, pp, a, b};
        r = PQexecParams(g->c,
                         "UPDATE warehouse_offsets SET next_offset = $3, updated_at = now()"
                         " WHERE topic = $1 AND partition = $2 AND next_offset = $4",
                         4, NULL, v, NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(r), "1") == 0;
        if (!ok) {
            if (PQresultStatus(r) == PGRES_COMMAND_OK)
                snprintf(d->err, sizeof d->err, "warehouse_offsets of partition %d moved (another writer?)", p);
            else
                set_err(d, "warehouse_offsets", g->c, r);
        }
        PQclear(r);
        if (!ok) goto fail;
    }
    r = PQexec(g->c, "COMMIT");
    int committed = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (!committed) set_err(d, "COMMIT", g->c, r);
    PQclear(r);
    if (!committed) goto fail;
    memcpy(next, nn, (size_t)P * sizeof *nn);
    free(nn);
    d->written += rows;
    d->bytes += (int64_t)g->sent;
    return total;
fail_copy:
    if (copy_open && g->c) {
        PQputCopyEnd(g->c, "batch abandoned");
        while ((r = PQgetResult(g->c))) PQclear(r);
    }
fail:
    d->skipped = skipped0;
    free(nn);
    cs_buf_reset(&g->buf);
    drop_conn(g); /* resync reconnects; an open transaction dies with the session */
    return -1;
}

static void pg_close(wh_dest *d)
{
    struct pgdest *g = d->impl;
    drop_conn(g);
    cs_buf_free(&g->buf);
    free(g->uri);
    free(g);
    free(d);
}

static const struct wh_dest_ops pg_ops = {.name = "postgres", .resync = pg_resync, .write = pg_write, .close = pg_close};

wh_dest *wh_pg_open(cs_bus *bus, const cs_config *cfg, char *err, size_t errlen)
{
    if (strncmp(cfg->wh_postgres, "postgresql://", 13) != 0 && strncmp(cfg->wh_postgres, "postgres://", 11) != 0) {
        snprintf(err, errlen, "warehouse.postgres: expected a postgresql:// URI");
        return NULL;
    }
    wh_dest *d = cs_calloc(1, sizeof *d);
    struct pgdest *g = cs_calloc(1, sizeof *g);
    g->uri = cs_strdup(cfg->wh_postgres);
    cs_buf_init(&g->buf);
    d->ops = &pg_ops;
    d->bus = bus;
    d->partitions = bus->partitions;
    d->batch_max = cfg->wh_batch_max;
    d->interval_us = (int64_t)cfg->wh_flush_ms * 1000;
    d->impl = g;
    return d;
}
