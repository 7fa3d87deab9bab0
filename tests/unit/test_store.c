/*
 * The store suite, run against BOTH backends: every test function takes the
 * backend as its state, and main() runs the same list once on SQLite and once
 * on a throwaway PostgreSQL 15 server it starts itself (tests/pgserver.c) and
 * stops at the end. Each test gets a fresh store: a new SQLite file, or a new
 * PostgreSQL database.
 *
 * Covers: the pipeline's existing ops (offsets, counters, leads, audit);
 * object upserts with one audit row per changed field and its cause; an event
 * applied twice changes nothing; a batch rolled back between the CRM write and
 * the offset write leaves both consistent; SQL metacharacters round-trip in
 * every text field; validation errors name the field; lists, filters and
 * cursors; signals with history; PostgreSQL stopped with `-m immediate` in a
 * transaction gives a retriable error and the store works after a restart
 * (T12); SQLite integrity_check after a writer is SIGKILLed mid-transaction.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/logging.h"
#include "core/util.h"
#include "store/store.h"
#include "core/config.h"
#include "pipeline/pipeline.h"
#include "routing/router.h"
#include <cjson/cJSON.h>

#include "pgserver.c"

/* ---------------------------------------------------------------- backends */

struct backend {
    const char *name;
    int         pg;
};
static struct backend be_sqlite = {"sqlite", 0}, be_pg = {"postgres", 1};
static tpg pgsrv;

struct fx {
    const struct backend *be;
    char  dir[64];
    char  spec[300];   /* what cs_store_open takes */
    cs_store *st;
};
static struct fx *cur; /* the running test's fixture (for teardown) */

static cs_store *reopen(struct fx *f)
{
    char err[512];
    cs_store *st = cs_store_open(f->spec, f->dir, err, sizeof err);
    if (!st) fprintf(stderr, "open %s: %s\n", f->spec, err);
    return st;
}

static struct fx *fx_new(void **state)
{
    static int seq;
    struct fx *f = calloc(1, sizeof *f);
    f->be = *state;
    snprintf(f->dir, sizeof f->dir, "/tmp/crmstream-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    if (f->be->pg) {
        char db[32];
        snprintf(db, sizeof db, "t%d_%d", (int)getpid(), ++seq);
        assert_int_equal(tpg_create_db(&pgsrv, db, f->spec, sizeof f->spec), 0);
    } else {
        snprintf(f->spec, sizeof f->spec, "sqlite:%s/crm.sqlite", f->dir);
    }
    f->st = reopen(f);
    assert_non_null(f->st);
    cur = f;
    return f;
}

static int fx_teardown(void **state)
{
    (void)state;
    if (!cur) return 0;
    if (cur->st) cur->st->ops->close(cur->st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", cur->dir);
    if (system(cmd) != 0) return -1;
    free(cur);
    cur = NULL;
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static const cs_cause cause1 = {"evt-1", 3, 41, "rule.one", "2026-11-27T10:00:00.000Z"};
static const cs_cause cause2 = {"evt-2", 3, 42, "rule.two", "2026-11-27T10:00:01.000Z"};

/* Copy of one row, values by column name. */
struct got {
    int   n;
    int64_t seq;
    char *vals[32];
    const cs_objdef *def;
};

static int on_row(const cs_row *r, void *arg)
{
    struct got *g = arg;
    g->def = r->def;
    g->seq = r->seq;
    for (int i = 0; i < r->def->ncols; i++) {
        free(g->vals[i]);
        g->vals[i] = r->vals[i] ? cs_strdup(r->vals[i]) : NULL;
    }
    g->n++;
    return 0;
}

static void got_free(struct got *g)
{
    for (int i = 0; i < 32; i++) free(g->vals[i]), g->vals[i] = NULL;
    g->n = 0;
}

static const char *gv(const struct got *g, const char *col)
{
    int c = cs_obj_col(g->def, col);
    assert_true(c >= 0);
    return g->vals[c];
}

static void get_obj(cs_store *st, int obj, const char *id, struct got *g)
{
    got_free(g);
    assert_int_equal(st->ops->obj_get(st, obj, id, on_row, g), 0);
    assert_int_equal(g->n, 1);
}

struct audits {
    int  n;
    char rows[64][600];   /* "field|old|new|event|partition|offset|rule|at" */
};

static int on_audit(const cs_audit *a, void *arg)
{
    struct audits *x = arg;
    if (x->n < 64)
        snprintf(x->rows[x->n], sizeof x->rows[0], "%s|%s|%s|%s|%d|%lld|%s|%s", a->field,
                 a->old_value ? a->old_value : "(null)", a->new_value ? a->new_value : "(null)",
                 a->cause_event_id ? a->cause_event_id : "", a->partition, (long long)a->offset,
                 a->rule_id ? a->rule_id : "", a->at ? a->at : "");
    x->n++;
    return 0;
}

static int audit_count(cs_store *st, const char *object, const char *id, struct audits *x)
{
    memset(x, 0, sizeof *x);
    return st->ops->audit_list(st, object, id, 0, 1000, on_audit, x);
}

static int has_row(const struct audits *x, const char *prefix)
{
    for (int i = 0; i < x->n && i < 64; i++)
        if (strncmp(x->rows[i], prefix, strlen(prefix)) == 0) return 1;
    return 0;
}

static int count_rows(cs_store *st, int obj)
{
    struct got g = {0};
    int n = st->ops->obj_list(st, obj, 0, 100000, NULL, 0, on_row, &g);
    got_free(&g);
    return n;
}

static cs_lead make_lead(const char *id, const char *event_id)
{
    cs_lead l;
    memset(&l, 0, sizeof l);
    snprintf(l.id, sizeof l.id, "%s", id);
    snprintf(l.event_id, sizeof l.event_id, "%s", event_id);
    snprintf(l.email, sizeof l.email, "p@example.com");
    snprintf(l.status, sizeof l.status, "routed");
    snprintf(l.owner, sizeof l.owner, "rep_a");
    snprintf(l.created_at, sizeof l.created_at, "2026-11-27T10:00:00.000Z");
    l.employee_count = -1;
    l.partition = 1;
    l.offset = 7;
    return l;
}

/* One pipeline batch: account, signal, alert, lead, offset — one transaction.
 * Returns the sum of the "changed" results (0 when it was all applied before). */
static int apply_batch(cs_store *st, int64_t next_offset)
{
    const cs_kv acc[] = {{"name", "Acme"}, {"plan_tier", "trial"}, {"mrr", "1000"}, {"custom", "{\"seats\":5}"}};
    const cs_kv al[] = {{"dedupe_key", "churn:acc_1:2026-11"}, {"kind", "churn_risk"}, {"severity", "high"},
                        {"account_id", "acc_1"}};
    cs_lead l = make_lead("ld_1", "evt-1");
    int total = 0, r;
    assert_int_equal(st->ops->begin(st), 0);
    assert_true((r = st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_1", acc, 4, &cause1)) >= 0), total += r;
    assert_true((r = st->ops->signal_set(st, "acc_1", "usage_7d", 12.5, &cause1)) >= 0), total += r;
    assert_true((r = st->ops->obj_insert(st, CS_OBJ_ALERT, "al_1", al, 4, &cause1)) >= 0), total += r;
    assert_true((r = st->ops->lead_insert(st, &l)) >= 0), total += r;
    assert_int_equal(st->ops->offset_set(st, "pipeline", "events", 3, next_offset), 0);
    assert_int_equal(st->ops->commit(st), 0);
    return total;
}

/* ---------------------------------------------------------------- tests */

static void test_pipeline_ops(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    int64_t v;
    assert_int_equal(st->ops->offset_get(st, "pipeline", "events", 0, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->offset_set(st, "pipeline", "events", 0, 17), 0);
    assert_int_equal(st->ops->offset_set(st, "pipeline", "events", 0, 18), 0);
    assert_int_equal(st->ops->counter_set(st, "rr", 5), 0);
    cs_lead l = make_lead("ld_a", "e_a");
    l.employee_count = 42;
    l.route_latency_ms = 1.25;
    assert_int_equal(st->ops->lead_insert(st, &l), 1);
    assert_int_equal(st->ops->lead_insert(st, &l), 0); /* same event: no-op */
    cs_lead l2 = make_lead("ld_b", "e_b");
    snprintf(l2.owner, sizeof l2.owner, "rep_b");
    assert_int_equal(st->ops->lead_insert(st, &l2), 1);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(st->ops->offset_get(st, "pipeline", "events", 0, &v), 0);
    assert_int_equal(v, 18);
    assert_int_equal(st->ops->counter_get(st, "rr", &v), 0);
    assert_int_equal(v, 5);
    cs_lead out;
    assert_int_equal(st->ops->lead_get(st, "ld_a", &out), 0);
    assert_int_equal(out.employee_count, 42);
    assert_string_equal(out.event_id, "e_a");
    assert_true(out.route_latency_ms > 1.2 && out.route_latency_ms < 1.3);
    assert_int_equal(st->ops->lead_get(st, "ld_b", &out), 0);
    assert_int_equal(out.employee_count, -1);
    assert_string_equal(out.account_id, "");
    assert_int_equal(st->ops->lead_get(st, "nope", &out), 1);
    /* Reopen: migrations are idempotent and the data stays. */
    st->ops->close(st);
    f->st = st = reopen(f);
    assert_non_null(st);
    assert_int_equal(st->ops->offset_get(st, "pipeline", "events", 0, &v), 0);
    assert_int_equal(v, 18);
}

static void test_event_applied_twice_changes_nothing(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    assert_true(apply_batch(st, 42) > 0);
    struct audits a1, a2;
    assert_int_equal(audit_count(st, "account", "acc_1", &a1), 5); /* id + 4 fields */
    assert_int_equal(apply_batch(st, 42), 0);                        /* every write a no-op */
    assert_int_equal(audit_count(st, "account", "acc_1", &a2), 5);
    int alert_audits = audit_count(st, "alert", NULL, &a2);
    assert_true(alert_audits >= 5);
    assert_int_equal(apply_batch(st, 42), 0);
    assert_int_equal(audit_count(st, "alert", NULL, &a2), alert_audits);
    assert_int_equal(count_rows(st, CS_OBJ_ACCOUNT), 1);
    assert_int_equal(count_rows(st, CS_OBJ_ALERT), 1);
    /* The same dedupe key under another alert id is still the same alert. */
    const cs_kv al[] = {{"dedupe_key", "churn:acc_1:2026-11"}, {"kind", "churn_risk"}};
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_insert(st, CS_OBJ_ALERT, "al_other", al, 2, &cause2), 0);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(count_rows(st, CS_OBJ_ALERT), 1);
    struct got g = {0};
    get_obj(st, CS_OBJ_ALERT, "al_1", &g);
    assert_string_equal(gv(&g, "cause_event_id"), "evt-1"); /* cause columns from the cause */
    assert_string_equal(gv(&g, "rule_id"), "rule.one");
    assert_int_equal(atoi(gv(&g, "offset")), 41);
    got_free(&g);
    int64_t v;
    assert_int_equal(st->ops->offset_get(st, "pipeline", "events", 3, &v), 0);
    assert_int_equal(v, 42);
}

static void test_rollback_between_crm_write_and_offset(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    const cs_kv acc[] = {{"name", "Acme"}, {"mrr", "10"}};
    /* The batch writes CRM rows and audit, then "crashes" before the offset. */
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_1", acc, 2, &cause1), 3);
    assert_int_equal(st->ops->signal_set(st, "acc_1", "usage_7d", 3, &cause1), 1);
    st->ops->rollback(st);
    int64_t v = -1;
    assert_int_equal(st->ops->offset_get(st, "pipeline", "events", 3, &v), 0);
    assert_int_equal(v, 0);
    struct got g = {0};
    assert_int_equal(st->ops->obj_get(st, CS_OBJ_ACCOUNT, "acc_1", on_row, &g), 1);
    struct audits a;
    assert_int_equal(audit_count(st, "account", "acc_1", &a), 0);
    /* The retry applies it once, with its offset. */
    assert_true(apply_batch(st, 42) > 0);
    assert_int_equal(count_rows(st, CS_OBJ_ACCOUNT), 1);
    assert_int_equal(audit_count(st, "account", "acc_1", &a), 5);
    /* A crash after the commit: the retry from the stored offset is a no-op. */
    assert_int_equal(apply_batch(st, 42), 0);
    assert_int_equal(audit_count(st, "account", "acc_1", &a), 5);
    /* Closing a store with an open transaction loses only that transaction. */
    assert_int_equal(st->ops->begin(st), 0);
    const cs_kv more[] = {{"name", "Lost"}};
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_2", more, 1, &cause2), 2);
    assert_int_equal(st->ops->offset_set(st, "pipeline", "events", 3, 99), 0);
    st->ops->close(st);
    f->st = st = reopen(f);
    assert_int_equal(st->ops->offset_get(st, "pipeline", "events", 3, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(st->ops->obj_get(st, CS_OBJ_ACCOUNT, "acc_2", on_row, &g), 1);
    got_free(&g);
}

static void test_upsert_audits_each_changed_field_with_cause(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    const cs_kv a1[] = {{"name", "Acme"}, {"plan_tier", "trial"}, {"mrr", "1000"}, {"owner", "rep_a"}};
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_9", a1, 4, &cause1), 5);
    assert_int_equal(st->ops->commit(st), 0);
    struct audits x;
    assert_int_equal(audit_count(st, "account", "acc_9", &x), 5);
    assert_true(has_row(&x, "id|(null)|acc_9|evt-1|3|41|rule.one|2026-11-27T10:00:00.000Z"));
    assert_true(has_row(&x, "plan_tier|(null)|trial|evt-1|3|41|rule.one|"));
    /* Second event: plan changes, mrr is the same number written differently,
     * name unchanged, a new field appears. */
    const cs_kv a2[] = {{"name", "Acme"}, {"plan_tier", "pro"}, {"mrr", "1000.0"}, {"renewal_date", "2027-01-31"}};
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_9", a2, 4, &cause2), 2);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(audit_count(st, "account", "acc_9", &x), 7);
    assert_true(has_row(&x, "plan_tier|trial|pro|evt-2|3|42|rule.two|2026-11-27T10:00:01.000Z"));
    assert_true(has_row(&x, "renewal_date|(null)|2027-01-31|evt-2|3|42|rule.two|"));
    struct got g = {0};
    get_obj(st, CS_OBJ_ACCOUNT, "acc_9", &g);
    assert_string_equal(gv(&g, "owner"), "rep_a"); /* untouched fields keep their value */
    assert_string_equal(gv(&g, "plan_tier"), "pro");
    assert_true(strtod(gv(&g, "mrr"), NULL) == 1000.0);
    assert_null(gv(&g, "health_score"));
    /* Clearing a field is a change too; a NULL rule id is recorded as such. */
    const cs_kv a3[] = {{"owner", NULL}, {"health_score", "71.5"}, {"health_breakdown", "{\"usage\":40,\"support\":31.5}"}};
    cs_cause c3 = {"evt-3", 0, 5, NULL, "2026-11-27T11:00:00.000Z"};
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_9", a3, 3, &c3), 3);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(audit_count(st, "account", "acc_9", &x), 10);
    assert_true(has_row(&x, "owner|rep_a|(null)|evt-3|0|5||"));
    get_obj(st, CS_OBJ_ACCOUNT, "acc_9", &g);
    assert_null(gv(&g, "owner"));
    assert_string_equal(gv(&g, "health_breakdown"), "{\"usage\":40,\"support\":31.5}");
    got_free(&g);
    /* Reps: every type of column. */
    const cs_kv r[] = {{"name", "Ann"}, {"email", "ann@example.com"}, {"pools", "[\"smb\",\"emea\"]"},
                       {"territory", "{\"country\":[\"DE\",\"FR\"]}"}, {"capacity", "25"},
                       {"timezone", "Europe/Berlin"}, {"working_hours", "{\"mon\":[\"09:00\",\"17:00\"]}"},
                       {"out_of_office", "0"}};
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_REP, "rep_ann", r, 8, &cause1), 9);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_REP, "rep_ann", r, 8, &cause1), 0);
    const cs_kv ooo[] = {{"out_of_office", "1"}, {"capacity", "25"}};
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_REP, "rep_ann", ooo, 2, &cause2), 1);
    assert_int_equal(st->ops->commit(st), 0);
    get_obj(st, CS_OBJ_REP, "rep_ann", &g);
    assert_int_equal(atoi(gv(&g, "capacity")), 25);
    assert_int_equal(atoi(gv(&g, "out_of_office")), 1);
    assert_string_equal(gv(&g, "pools"), "[\"smb\",\"emea\"]");
    got_free(&g);
    /* Contacts and tasks go the same way. */
    const cs_kv c[] = {{"account_id", "acc_9"}, {"email", "bob@acme.example"}, {"name", "Bob"}};
    const cs_kv t[] = {{"account_id", "acc_9"}, {"owner", "rep_ann"}, {"kind", "follow_up"}, {"status", "open"}};
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_CONTACT, "ct_1", c, 3, &cause1), 4);
    assert_int_equal(st->ops->obj_insert(st, CS_OBJ_TASK, "tk_1", t, 4, &cause1), 1);
    assert_int_equal(st->ops->obj_insert(st, CS_OBJ_TASK, "tk_1", t, 4, &cause1), 0);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(count_rows(st, CS_OBJ_CONTACT), 1);
    assert_int_equal(count_rows(st, CS_OBJ_TASK), 1);
}

static void test_validation_names_the_field(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    struct { cs_kv kv; const char *field; } bad[] = {
        {{"nope", "x"}, "nope"},          {{"mrr", "12abc"}, "mrr"},      {{"mrr", "inf"}, "mrr"},
        {{"custom", "{\"a\":"}, "custom"}, {{"custom", "\"str\""}, "custom"}, {{"id", "other"}, "id"},
    };
    assert_int_equal(st->ops->begin(st), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_v", &bad[i].kv, 1, &cause1), -1);
        assert_int_equal(st->retriable, 0);
        assert_non_null(strstr(st->errmsg, bad[i].field));
    }
    const cs_kv cap[] = {{"capacity", "2.5"}};
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_REP, "r", cap, 1, &cause1), -1);
    assert_non_null(strstr(st->errmsg, "capacity"));
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_REP, "", NULL, 0, &cause1), -1);
    const cs_kv twice[] = {{"name", "a"}, {"name", "b"}};
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_v", twice, 2, &cause1), -1);
    /* Nothing was written, and the transaction is still usable. */
    const cs_kv ok[] = {{"name", "fine"}};
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_v", ok, 1, &cause1), 2);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(count_rows(st, CS_OBJ_ACCOUNT), 1);
    /* A filter on a column that is not one. */
    const cs_kv fl[] = {{"name", "fine"}};
    struct got g = {0};
    assert_int_equal(st->ops->obj_list(st, CS_OBJ_ACCOUNT, 0, 10, fl, 1, on_row, &g), -1);
    assert_non_null(strstr(st->errmsg, "name"));
}

static const char *const nasty[] = {
    "O'Brien; DROP TABLE accounts; --",
    "back\\slash \\' \\\" \\\\",
    "\"double\" `tick` $1 ?1 %s %_ * :name @x",
    "ünïcödé 日本語 🚀 \xe2\x80\xae rtl",
    "line\nbreak\ttab\r",
    "'); DELETE FROM audit WHERE ('1'='1",
};
#define NNASTY (sizeof nasty / sizeof nasty[0])

static void test_sql_metacharacters_round_trip(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    for (size_t k = 0; k < NNASTY; k++) {
        const char *s = nasty[k];
        char id[300], json[800];
        snprintf(id, sizeof id, "id %zu %s", k, s);
        cs_buf jb;
        cs_buf_init(&jb);
        cs_buf_adds(&jb, "{\"k\":");
        cs_buf_json_str(&jb, s);
        cs_buf_adds(&jb, "}");
        snprintf(json, sizeof json, "%s", jb.data);
        cs_buf_free(&jb);
        cs_cause c = {s, 1, 2, s, s};
        /* Every text and JSON column of every object gets the string. */
        for (int o = 0; o < CS_OBJ_COUNT; o++) {
            const cs_objdef *d = &cs_objdefs[o];
            cs_kv kv[32];
            size_t n = 0;
            for (int i = 1; i < d->ncols; i++) {
                if (d->cols[i].type == CS_COL_TEXT) kv[n++] = (cs_kv){d->cols[i].name, s};
                else if (d->cols[i].type == CS_COL_JSON) kv[n++] = (cs_kv){d->cols[i].name, json};
            }
            assert_int_equal(st->ops->begin(st), 0);
            int w = o == CS_OBJ_ALERT ? st->ops->obj_insert(st, o, id, kv, n, &c)
                                      : st->ops->obj_upsert(st, o, id, kv, n, &c);
            assert_true(w > 0);
            assert_int_equal(st->ops->signal_set(st, id, s, (double)k, &c), o == 0);
            assert_int_equal(st->ops->commit(st), 0);
            struct got g = {0};
            get_obj(st, o, id, &g);
            assert_string_equal(g.vals[0], id);
            for (size_t i = 0; i < n; i++) assert_string_equal(gv(&g, kv[i].name), kv[i].value);
            /* Filter by the string itself. */
            for (int i = 1; i < d->ncols; i++) {
                if (!(d->cols[i].flags & CS_COL_FILTER) || d->cols[i].type != CS_COL_TEXT) continue;
                cs_kv fl = {d->cols[i].name, s};
                got_free(&g);
                assert_int_equal(st->ops->obj_list(st, o, 0, 1000, &fl, 1, on_row, &g), 1);
                assert_string_equal(g.vals[0], id);
            }
            got_free(&g);
            struct audits x;
            assert_true(audit_count(st, d->name, id, &x) > 0);
            char want[700];
            snprintf(want, sizeof want, "id|(null)|%s|%s|1|2|%s|%s", id, s, s, s);
            if (o != CS_OBJ_ALERT) assert_true(has_row(&x, want));
        }
        cs_lead l = make_lead(id, id);
        snprintf(l.company, sizeof l.company, "%s", s);
        snprintf(l.email, sizeof l.email, "%s", s);
        snprintf(l.route_reason, sizeof l.route_reason, "%s", s);
        assert_int_equal(st->ops->begin(st), 0);
        assert_int_equal(st->ops->lead_insert(st, &l), 1);
        assert_int_equal(st->ops->counter_set(st, s, 7), 0);
        assert_int_equal(st->ops->offset_set(st, s, s, 0, 9), 0);
        assert_int_equal(st->ops->commit(st), 0);
        cs_lead out;
        assert_int_equal(st->ops->lead_get(st, id, &out), 0);
        assert_string_equal(out.company, s);
        assert_string_equal(out.route_reason, s);
        int64_t v;
        assert_int_equal(st->ops->counter_get(st, s, &v), 0);
        assert_int_equal(v, 7);
        assert_int_equal(st->ops->offset_get(st, s, s, 0, &v), 0);
        assert_int_equal(v, 9);
    }
    /* Nothing was dropped or deleted by any of it. */
    assert_int_equal(count_rows(st, CS_OBJ_ACCOUNT), (int)NNASTY);
}

struct sigs {
    int    n;
    double last;
    char   name[64];
    int64_t seq;
};

static int on_sig(const cs_signal *s, void *arg)
{
    struct sigs *x = arg;
    x->n++;
    x->last = s->value;
    x->seq = s->seq;
    snprintf(x->name, sizeof x->name, "%s", s->name);
    return 0;
}

static void test_signals_and_history(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    assert_int_equal(st->ops->begin(st), 0);
    for (int i = 0; i < 10; i++) {
        char eid[16];
        snprintf(eid, sizeof eid, "e%d", i);
        cs_cause c = {eid, 0, i, "signals.usage", "2026-11-27T10:00:00.000Z"};
        assert_int_equal(st->ops->signal_set(st, "acc_1", "usage_7d", i * 1.5, &c), 1);
        assert_int_equal(st->ops->signal_set(st, "acc_1", "usage_7d", i * 1.5, &c), 0); /* replayed */
    }
    cs_cause c = {"x", 0, 99, NULL, "2026-11-27T10:00:00.000Z"};
    assert_int_equal(st->ops->signal_set(st, "acc_1", "tickets_30d", 2, &c), 1);
    assert_int_equal(st->ops->commit(st), 0);
    struct sigs x = {0};
    assert_int_equal(st->ops->signal_list(st, "acc_1", on_sig, &x), 2);
    assert_string_equal(x.name, "usage_7d"); /* by name */
    assert_true(x.last == 13.5);
    memset(&x, 0, sizeof x);
    assert_int_equal(st->ops->signal_history(st, "acc_1", "usage_7d", 0, 4, on_sig, &x), 4);
    assert_true(x.last == 4.5);
    int64_t cursor = x.seq;
    memset(&x, 0, sizeof x);
    assert_int_equal(st->ops->signal_history(st, "acc_1", "usage_7d", cursor, 100, on_sig, &x), 6);
    assert_true(x.last == 13.5);
    assert_int_equal(st->ops->signal_list(st, "acc_none", on_sig, &x), 0);
}

static void test_lists_filters_and_cursor(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    assert_int_equal(st->ops->begin(st), 0);
    for (int i = 0; i < 25; i++) {
        char id[16];
        snprintf(id, sizeof id, "acc_%02d", i);
        const cs_kv kv[] = {{"owner", i % 2 ? "rep_b" : "rep_a"}, {"plan_tier", i % 5 ? "pro" : "trial"}};
        assert_true(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, id, kv, 2, &cause1) > 0);
    }
    assert_int_equal(st->ops->commit(st), 0);
    struct got g = {0};
    int64_t cursor = 0;
    int total = 0, pages = 0, n;
    while ((n = st->ops->obj_list(st, CS_OBJ_ACCOUNT, cursor, 10, NULL, 0, on_row, &g)) > 0) {
        total += n, pages++;
        assert_true(g.seq > cursor);
        cursor = g.seq;
    }
    assert_int_equal(n, 0);
    assert_int_equal(total, 25);
    assert_int_equal(pages, 3);
    const cs_kv f1[] = {{"owner", "rep_b"}};
    assert_int_equal(st->ops->obj_list(st, CS_OBJ_ACCOUNT, 0, 1000, f1, 1, on_row, &g), 12);
    const cs_kv f2[] = {{"owner", "rep_a"}, {"plan_tier", "trial"}};
    assert_int_equal(st->ops->obj_list(st, CS_OBJ_ACCOUNT, 0, 1000, f2, 2, on_row, &g), 3); /* 0, 10, 20 */
    assert_string_equal(g.vals[0], "acc_20");
    /* Updates keep the insertion order (the cursor stays valid). */
    const cs_kv up[] = {{"name", "renamed"}};
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_00", up, 1, &cause2), 1);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(st->ops->obj_list(st, CS_OBJ_ACCOUNT, 0, 1, NULL, 0, on_row, &g), 1);
    assert_string_equal(g.vals[0], "acc_00");
    assert_int_equal(st->ops->obj_get(st, CS_OBJ_ACCOUNT, "acc_99", on_row, &g), 1);
    got_free(&g);
    /* Audit listing by object only, with a cursor. */
    struct audits x;
    memset(&x, 0, sizeof x);
    assert_int_equal(st->ops->audit_list(st, "account", NULL, 0, 1000, on_audit, &x), 76);
}

/* T12: the server dies (immediate stop) inside a transaction. */
static void test_pg_stopped_mid_transaction_is_retriable(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    assert_true(apply_batch(st, 42) > 0);
    assert_int_equal(st->ops->begin(st), 0);
    const cs_kv kv[] = {{"name", "in flight"}};
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_lost", kv, 1, &cause2), 2);
    assert_int_equal(tpg_stop(&pgsrv, "immediate"), 0);
    /* The next call in the transaction fails, and says retrying may help. */
    st->retriable = 0;
    int rc = st->ops->offset_set(st, "pipeline", "events", 3, 43);
    if (rc == 0) rc = st->ops->commit(st);
    assert_int_equal(rc, -1);
    assert_int_equal(st->retriable, 1);
    st->ops->rollback(st);
    /* While it is down: still retriable, for the writer and for readers. */
    st->retriable = 0;
    assert_int_equal(st->ops->begin(st), -1);
    assert_int_equal(st->retriable, 1);
    st->retriable = 0;
    struct got g = {0};
    assert_int_equal(st->ops->obj_get(st, CS_OBJ_ACCOUNT, "acc_1", on_row, &g), -1);
    assert_int_equal(st->retriable, 1);
    assert_int_equal(tpg_restart(&pgsrv), 0);
    /* After the restart the same store object works again; the transaction
     * that was in flight left nothing behind and the offset did not move. */
    int64_t v;
    assert_int_equal(st->ops->offset_get(st, "pipeline", "events", 3, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(st->ops->obj_get(st, CS_OBJ_ACCOUNT, "acc_lost", on_row, &g), 1);
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_lost", kv, 1, &cause2), 2);
    assert_int_equal(st->ops->offset_set(st, "pipeline", "events", 3, 43), 0);
    assert_int_equal(st->ops->commit(st), 0);
    get_obj(st, CS_OBJ_ACCOUNT, "acc_lost", &g);
    assert_string_equal(gv(&g, "name"), "in flight");
    got_free(&g);
    assert_int_equal(apply_batch(st, 43), 0); /* earlier effects are still there, once */
}

/* T12 for SQLite: a writer killed -9 inside a write transaction. */
static void test_sqlite_integrity_after_kill9(void **state)
{
    struct fx *f = fx_new(state);
    f->st->ops->close(f->st);
    f->st = NULL;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        cs_store *st = reopen(f);
        if (!st) _exit(1);
        char id[32];
        for (int b = 0; b < 20; b++) { /* 20 committed batches of 50 */
            if (st->ops->begin(st)) _exit(1);
            for (int i = 0; i < 50; i++) {
                snprintf(id, sizeof id, "acc_%d_%d", b, i);
                const cs_kv kv[] = {{"name", id}, {"custom", "{\"pad\":\"................................\"}"}};
                if (st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, id, kv, 2, &cause1) < 0) _exit(1);
            }
            if (st->ops->offset_set(st, "pipeline", "events", 0, (b + 1) * 50) || st->ops->commit(st)) _exit(1);
        }
        if (st->ops->begin(st)) _exit(1);
        for (int i = 0; i < 5000; i++) { /* a big uncommitted one, spilling pages */
            snprintf(id, sizeof id, "lost_%d", i);
            const cs_kv kv[] = {{"name", id}};
            if (st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, id, kv, 1, &cause2) < 0) _exit(1);
        }
        if (write(ready[1], "k", 1) != 1) _exit(1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    kill(pid, SIGKILL);
    int ws;
    waitpid(pid, &ws, 0);
    assert_true(WIFSIGNALED(ws));
    char path[128];
    snprintf(path, sizeof path, "%s/crm.sqlite", f->dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
    sqlite3_finalize(s);
    sqlite3_close(db);
    f->st = reopen(f);
    assert_non_null(f->st);
    assert_int_equal(count_rows(f->st, CS_OBJ_ACCOUNT), 1000);
    int64_t v;
    assert_int_equal(f->st->ops->offset_get(f->st, "pipeline", "events", 0, &v), 0);
    assert_int_equal(v, 1000);
    struct audits x;
    assert_int_equal(audit_count(f->st, "account", "lost_1", &x), 0);
}

/* State snapshots: binary blobs (every byte value, NULs included) round
 * trip with their offset per (name, partition), replace in place, commit
 * with the offsets of the same transaction and vanish with its rollback. */
static void test_state_snapshots(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    int64_t off;
    void *data;
    size_t len;
    assert_int_equal(st->ops->snapshot_get(st, "signals", 0, &off, &data, &len), 1);
    assert_null(data);
    size_t n = 300000;
    unsigned char *blob = cs_malloc(n);
    for (size_t i = 0; i < n; i++) blob[i] = (unsigned char)(i * 131 + (i >> 8));
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->snapshot_put(st, "signals", 0, 1234, blob, n), 0);
    assert_int_equal(st->ops->snapshot_put(st, "signals", 1, 7, "\0\1\0", 3), 0);
    assert_int_equal(st->ops->offset_set(st, "pipeline", "events", 0, 1234), 0);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(st->ops->snapshot_get(st, "signals", 0, &off, &data, &len), 0);
    assert_int_equal(off, 1234);
    assert_int_equal(len, n);
    assert_memory_equal(data, blob, n);
    free(data);
    assert_int_equal(st->ops->snapshot_get(st, "signals", 1, &off, &data, &len), 0);
    assert_int_equal(off, 7);
    assert_int_equal(len, 3);
    assert_memory_equal(data, "\0\1\0", 3);
    free(data);
    assert_int_equal(st->ops->snapshot_get(st, "abuse", 0, &off, &data, &len), 1);
    /* replaced in place (len 0 clears); a rolled-back put leaves the committed one */
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->snapshot_put(st, "signals", 0, 2000, "", 0), 0);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->snapshot_put(st, "signals", 0, 3000, blob, 10), 0);
    st->ops->rollback(st);
    assert_int_equal(st->ops->snapshot_get(st, "signals", 0, &off, &data, &len), 1); /* len 0: cleared */
    assert_null(data);
    /* over the limit: refused with a message, not retriable */
    assert_int_equal(st->ops->snapshot_put(st, "signals", 0, 1, blob, CS_SNAPSHOT_MAX + 1), -1);
    assert_false(st->retriable);
    assert_non_null(strstr(st->errmsg, "limit"));
    /* survives a reopen (migration 6 applied once) */
    st->ops->close(st);
    f->st = st = reopen(f);
    assert_non_null(st);
    assert_int_equal(st->ops->snapshot_get(st, "signals", 1, &off, &data, &len), 0);
    assert_int_equal(off, 7);
    free(data);
    free(blob);
}

/* Routing's store ops (migration 5): the new lead columns, writer-side
 * reads that see the transaction's writes, open-lead counts, SLA due
 * leads, key lookups; then routing and an SLA sweep through src/routing. */
struct rfound {
    int  n;
    char ids[4][200];
};

static int on_due_lead(const cs_lead *l, void *arg)
{
    struct rfound *r = arg;
    if (r->n < 4) snprintf(r->ids[r->n], sizeof r->ids[0], "%s", l->id);
    r->n++;
    return 0;
}

static void on_open_count(const char *owner, int64_t n, void *arg)
{
    struct rfound *r = arg;
    if (r->n < 4) snprintf(r->ids[r->n], sizeof r->ids[0], "%s=%lld", owner, (long long)n);
    r->n++;
}

static int on_row_count(const cs_row *row, void *arg)
{
    (void)row;
    (*(int *)arg)++;
    return 0;
}

static void apply_lead_json(cs_store *st, const cs_config *cfg, const char *eid, const char *at)
{
    char body[300];
    snprintf(body, sizeof body,
             "{\"event_id\":\"%s\",\"type\":\"LeadCreated\",\"timestamp\":\"%s\",\"properties\":{\"email\":\"x@%s.io\"}}",
             eid, at, eid);
    cJSON *ev = cJSON_Parse(body);
    int64_t t;
    assert_int_equal(cs_parse_time(at, &t), 0);
    cs_rec rec = {.offset = 1, .ts_us = t, .append_us = t, .value = body, .value_len = strlen(body)};
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(cs_pipeline_apply_lead(st, cfg, 0, &rec, ev), 0);
    assert_int_equal(st->ops->commit(st), 0);
    cJSON_Delete(ev);
}

static void test_routing_ops(void **state)
{
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    cs_lead l1 = make_lead("ld_r1", "e_r1"), l2 = make_lead("ld_r2", "e_r2"), l3 = make_lead("ld_r3", "e_r3");
    snprintf(l1.domain, sizeof l1.domain, "acme.com");
    snprintf(l1.route_explanation, sizeof l1.route_explanation, "{\"winner\":\"rep_a\",\"why\":\"it's; -- $1 \\\" \"}");
    snprintf(l1.sla_due_at, sizeof l1.sla_due_at, "2026-11-30T14:30:00.000Z");
    snprintf(l2.owner, sizeof l2.owner, "rep_b");
    snprintf(l2.sla_due_at, sizeof l2.sla_due_at, "2026-11-30T14:10:00.000Z");
    snprintf(l3.status, sizeof l3.status, "accepted");
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->lead_insert(st, &l1), 1);
    assert_int_equal(st->ops->lead_insert(st, &l2), 1);
    assert_int_equal(st->ops->lead_insert(st, &l3), 1);
    static cs_lead out;
    assert_int_equal(st->ops->lead_load(st, "ld_r1", &out), 0); /* inside the transaction */
    assert_string_equal(out.route_explanation, l1.route_explanation);
    assert_int_equal(st->ops->lead_load(st, "nope", &out), 1);
    struct rfound r = {0};
    assert_int_equal(st->ops->lead_open_counts(st, on_open_count, &r), 0);
    assert_int_equal(r.n, 2); /* ld_r3 is accepted: not open */
    assert_true((strcmp(r.ids[0], "rep_a=1") == 0 && strcmp(r.ids[1], "rep_b=1") == 0) ||
                (strcmp(r.ids[1], "rep_a=1") == 0 && strcmp(r.ids[0], "rep_b=1") == 0));
    memset(&r, 0, sizeof r);
    assert_int_equal(st->ops->lead_sla_due(st, "2026-11-30T14:20:00.000Z", 10, on_due_lead, &r), 1);
    assert_string_equal(r.ids[0], "ld_r2");
    memset(&r, 0, sizeof r);
    assert_int_equal(st->ops->lead_sla_due(st, "2026-11-30T14:30:00.000Z", 10, on_due_lead, &r), 2);
    assert_string_equal(r.ids[0], "ld_r2"); /* earliest first */
    assert_string_equal(r.ids[1], "ld_r1");
    snprintf(l1.status, sizeof l1.status, "accepted");
    snprintf(l1.accepted_at, sizeof l1.accepted_at, "2026-11-30T14:05:00.000Z");
    l1.sla_due_at[0] = '\0';
    assert_int_equal(st->ops->lead_update(st, &l1), 1);
    cs_lead ghost = make_lead("ld_ghost", "e_ghost");
    assert_int_equal(st->ops->lead_update(st, &ghost), 0);
    /* key lookups and lists on the writer see this transaction's writes */
    const cs_kv acc[] = {{"name", "Acme"}, {"domain", "acme.com"}, {"owner", "rep_a"}};
    assert_true(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, "acc_r", acc, 3, &cause1) > 0);
    struct got g = {0};
    assert_int_equal(st->ops->obj_find_tx(st, CS_OBJ_ACCOUNT, "domain", "acme.com", on_row, &g), 0);
    assert_string_equal(gv(&g, "id"), "acc_r");
    got_free(&g);
    memset(&g, 0, sizeof g);
    assert_int_equal(st->ops->obj_find_tx(st, CS_OBJ_ACCOUNT, "id", "acc_r", on_row, &g), 0);
    assert_string_equal(gv(&g, "owner"), "rep_a");
    got_free(&g);
    memset(&g, 0, sizeof g);
    assert_int_equal(st->ops->obj_find_tx(st, CS_OBJ_ACCOUNT, "domain", "nope.com", on_row, &g), 1);
    assert_int_equal(st->ops->obj_find_tx(st, CS_OBJ_ACCOUNT, "name", "Acme", on_row, &g), -1); /* not a key */
    got_free(&g);
    const cs_kv rep[] = {{"weight", "3"}, {"pools", "[\"emea\"]"}};
    assert_true(st->ops->obj_upsert(st, CS_OBJ_REP, "rep_w", rep, 2, &cause1) > 0);
    int in_tx = 0, committed = 0;
    assert_int_equal(st->ops->obj_list_tx(st, CS_OBJ_REP, 0, 100, NULL, 0, on_row_count, &in_tx), 1);
    assert_int_equal(in_tx, 1);
    assert_int_equal(st->ops->obj_list(st, CS_OBJ_REP, 0, 100, NULL, 0, on_row_count, &committed), 0);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(st->ops->lead_get(st, "ld_r1", &out), 0);
    assert_string_equal(out.status, "accepted");
    assert_string_equal(out.accepted_at, "2026-11-30T14:05:00.000Z");
    assert_string_equal(out.sla_due_at, "");
    assert_string_equal(out.domain, "acme.com");
    assert_string_equal(out.route_explanation, l1.route_explanation);

    /* routing and the SLA sweep on this backend */
    cs_config cfg;
    char err[256];
    cs_config_defaults(&cfg);
    assert_int_equal(cs_config_load_string(&cfg, "t.yaml",
                                            "routing:\n  sla: 30m\n  reps:\n    - {id: rep_x, capacity: 1}\n"
                                            "    - {id: rep_y}\n",
                                            err, sizeof err),
                     0);
    apply_lead_json(st, &cfg, "q1", "2026-11-30T14:00:00Z");
    apply_lead_json(st, &cfg, "q2", "2026-11-30T14:00:01Z");
    apply_lead_json(st, &cfg, "q3", "2026-11-30T14:00:02Z");
    int64_t now;
    assert_int_equal(cs_parse_time("2026-11-30T14:30:01Z", &now), 0);
    cs_sla_stats ss;
    assert_int_equal(st->ops->begin(st), 0);
    /* due: ld_r2, q1, q2 (q3 is due a second later) */
    assert_int_equal(cs_routing_sla_sweep(st, &cfg, now, 100, &ss), 3);
    assert_int_equal(st->ops->commit(st), 0);
    assert_int_equal(ss.rerouted, 3);
    assert_int_equal(ss.queued, 0);
    memset(&r, 0, sizeof r);
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(st->ops->lead_open_counts(st, on_open_count, &r), 0);
    assert_int_equal(st->ops->commit(st), 0);
    /* candidates rep_x, rep_y (config), rep_w (object): ld_r2 -> rep_y, q1 -> rep_w, q2 -> rep_x */
    char all[700];
    snprintf(all, sizeof all, "|%s|%s|%s|", r.ids[0], r.ids[1], r.ids[2]);
    assert_int_equal(r.n, 3);
    assert_non_null(strstr(all, "|rep_x=1|"));
    assert_non_null(strstr(all, "|rep_y=1|"));
    assert_non_null(strstr(all, "|rep_w=2|"));
    cs_config_free(&cfg);
}

static void test_open_rejects_unknown_store_specs(void **state)
{
    (void)state;
    char err[256];
    assert_null(cs_store_open("mysql://x", "/tmp", err, sizeof err));
    assert_non_null(strstr(err, "store"));
    assert_null(cs_store_open("sqlite:", "/tmp", err, sizeof err));
    assert_null(cs_store_open("sqlite:/nonexistent-dir/x/crm.sqlite", "/tmp", err, sizeof err));
}

/* SQLite checkpoints follow the transactions' size (store/sqlite.c): small
 * commits keep the WAL near CS_SQLITE_CKPT_MIN pages (short flushes, often);
 * a big one lets it grow toward CS_SQLITE_CKPT_MAX (pages rewritten by many
 * transactions are copied once). Seen through the WAL file's size: SQLite
 * reuses the file from its start after a checkpoint, so its size is the
 * most pages the WAL ever held. */
static long wal_pages(const struct fx *f)
{
    char path[160];
    snprintf(path, sizeof path, "%s/crm.sqlite-wal", f->dir);
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)((sb.st_size - 32) / (4096 + 24)) : 0;
}

static void test_sqlite_checkpoints_follow_the_transactions(void **state)
{
    assert_int_equal(cs_sqlite_ckpt_at(0), CS_SQLITE_CKPT_MIN);
    assert_int_equal(cs_sqlite_ckpt_at(12), CS_SQLITE_CKPT_MIN);
    assert_int_equal(cs_sqlite_ckpt_at(50), 400);
    assert_int_equal(cs_sqlite_ckpt_at(125), CS_SQLITE_CKPT_MAX);
    assert_int_equal(cs_sqlite_ckpt_at(1 << 30), CS_SQLITE_CKPT_MAX);
    struct fx *f = fx_new(state);
    cs_store *st = f->st;
    /* 600 small commits: ~1,200 WAL frames written in all, never more than
     * the minimum threshold plus one commit held. */
    for (int i = 0; i < 600; i++) {
        char id[32];
        snprintf(id, sizeof id, "acc_%d", i);
        assert_int_equal(st->ops->begin(st), 0);
        assert_true(st->ops->signal_set(st, id, "usage_7d", i, &cause1) >= 0);
        assert_int_equal(st->ops->offset_set(st, "pipeline", "events", 0, i + 1), 0);
        assert_int_equal(st->ops->commit(st), 0);
    }
    long small = wal_pages(f);
    if (small < 10 || small > CS_SQLITE_CKPT_MIN + 20) fail_msg("WAL held %ld pages after small commits", small);
    /* Big commits (a backlog): 4,000 accounts each; the WAL grows past the
     * small threshold before a checkpoint. */
    char name[200];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    for (int t = 0; t < 2; t++) {
        assert_int_equal(st->ops->begin(st), 0);
        for (int i = 0; i < 4000; i++) {
            char id[32];
            snprintf(id, sizeof id, "big_%d_%d", t, i);
            const cs_kv acc[] = {{"name", name}, {"plan_tier", "trial"}};
            assert_true(st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, id, acc, 2, &cause1) >= 0);
        }
        assert_int_equal(st->ops->offset_set(st, "pipeline", "events", 0, 1000 + t), 0);
        assert_int_equal(st->ops->commit(st), 0);
    }
    long big = wal_pages(f);
    if (big < 2 * CS_SQLITE_CKPT_MIN) fail_msg("WAL held only %ld pages after big commits", big);
}

#define BOTH(fn)                                                                                              \
    cmocka_unit_test_prestate_setup_teardown(fn, NULL, fx_teardown, BE)
#define COMMON_TESTS                                                                                          \
    BOTH(test_pipeline_ops), BOTH(test_event_applied_twice_changes_nothing),                                  \
        BOTH(test_rollback_between_crm_write_and_offset), BOTH(test_upsert_audits_each_changed_field_with_cause), \
        BOTH(test_validation_names_the_field), BOTH(test_sql_metacharacters_round_trip),                     \
        BOTH(test_signals_and_history), BOTH(test_lists_filters_and_cursor), BOTH(test_state_snapshots),  \
        BOTH(test_routing_ops)

static int pg_group_setup(void **state)
{
    (void)state;
    return tpg_start(&pgsrv);
}

static int pg_group_teardown(void **state)
{
    (void)state;
    tpg_destroy(&pgsrv);
    return 0;
}

int main(void)
{
    cs_log_set_level((enum cs_log_level)(CS_LOG_ERROR + 1)); /* the error paths under test log; keep the TAP clean */
#define BE &be_sqlite
    const struct CMUnitTest sqlite_tests[] = {
        COMMON_TESTS,
        BOTH(test_sqlite_integrity_after_kill9),
        BOTH(test_sqlite_checkpoints_follow_the_transactions),
        cmocka_unit_test(test_open_rejects_unknown_store_specs),
    };
#undef BE
#define BE &be_pg
    const struct CMUnitTest pg_tests[] = {
        COMMON_TESTS,
        BOTH(test_pg_stopped_mid_transaction_is_retriable),
    };
#undef BE
    int failed = cmocka_run_group_tests_name("store_sqlite", sqlite_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("store_postgres", pg_tests, pg_group_setup, pg_group_teardown);
    return failed ? 1 : 0;
}
