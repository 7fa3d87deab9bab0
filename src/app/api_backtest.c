/*
 * app/api_backtest — POST /api/v1/backtest {"rules": "<yaml>", "name"?,
 * "from"?, "to"?}: replay the log through candidate rules with no effects
 * and answer what would differ from what happened (docs/API.md, RULES.md
 * "Backtest").
 *
 * How: validate the rules (422 with name:line:column); take the offsets
 * the running pipeline has committed in the real store (events partitions
 * and the leads lane) as the end; run a dry pipeline (cs_pipeline_start_dry)
 * over the server's own bus from offset 0 up to those ends into a scratch
 * SQLite store under DATA/backtest-XXXXXX/ (removed afterwards); compare
 * the two stores through the store interface, streaming with point
 * lookups (memory bounded: counts plus at most 10 examples per kind).
 * One backtest at a time (409), at most backtest.timeout_ms (503).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/app.h"
#include "core/logging.h"
#include "core/util.h"
#include "rules/rules.h"

#define BT_EXAMPLES 10

static int bt_busy; /* one backtest at a time */

/* ---- comparison ---------------------------------------------------------- */

typedef struct bt_cmp {
    cs_store      *real, *dry;
    int64_t        from_us, to_us;   /* event-time window [from, to) */
    const int64_t *end;              /* per events partition: what both stores hold */
    int64_t        lane_end;
    int            partitions;
    int64_t        cursor;
    int            failed;
    /* per kind */
    int64_t        rerouted, added, removed;
    cJSON         *examples;         /* array, at most BT_EXAMPLES */
    /* the row being looked at (obj_get callback) */
    int            found;
    char           owner[160];
} bt_cmp;

static int in_window(const bt_cmp *c, const char *at)
{
    int64_t t;
    if (!at || cs_parse_time(at, &t) != 0) return c->from_us == INT64_MIN && c->to_us == INT64_MAX;
    return t >= c->from_us && t < c->to_us;
}

static void example(bt_cmp *c, cJSON *e)
{
    if (cJSON_GetArraySize(c->examples) < BT_EXAMPLES) cJSON_AddItemToArray(c->examples, e);
    else cJSON_Delete(e);
}

struct first_owner {
    char owner[160];
    int  have;
};

static int on_owner_audit(const cs_audit *a, void *arg)
{
    struct first_owner *f = arg;
    if (f->have || !a->field || strcmp(a->field, "owner") != 0) return 0;
    snprintf(f->owner, sizeof f->owner, "%s", a->new_value ? a->new_value : "");
    f->have = 1;
    return 1;
}

/* Leads: owner by lead id (derived from the event id: the same in both).
 * The live side's owner is the one its routing gave (the lead's first
 * owner audit row): an SLA re-route later is a wall-clock effect the dry
 * run does not make, and not a difference of the rules. */
static int on_dry_lead(const cs_lead *l, void *arg)
{
    bt_cmp *c = arg;
    c->cursor = l->seq;
    if (!in_window(c, l->created_at)) return 0;
    cs_lead r;
    int rc = c->real->ops->lead_get(c->real, l->id, &r);
    if (rc < 0) {
        c->failed = 1;
        return 1;
    }
    if (rc == 0 && strcmp(r.owner, l->owner) != 0) {
        struct first_owner f = {"", 0};
        if (c->real->ops->audit_list(c->real, "lead", l->id, 0, 16, on_owner_audit, &f) < 0) {
            c->failed = 1;
            return 1;
        }
        if (f.have) snprintf(r.owner, sizeof r.owner, "%s", f.owner);
    }
    if (rc == 0 && strcmp(r.owner, l->owner) == 0) return 0;
    c->rerouted++;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "lead_id", l->id);
    cJSON_AddStringToObject(e, "event_id", l->event_id);
    cJSON_AddStringToObject(e, "email", l->email);
    cJSON_AddStringToObject(e, "created_at", l->created_at);
    if (rc == 0) cJSON_AddStringToObject(e, "before", r.owner);
    else cJSON_AddNullToObject(e, "before");
    cJSON_AddStringToObject(e, "after", l->owner);
    example(c, e);
    return 0;
}

/* A real lead the dry run never made (its event is below the end: the dry
 * run saw it, so the candidate rules dropped it). */
static int on_real_lead(const cs_lead *l, void *arg)
{
    bt_cmp *c = arg;
    c->cursor = l->seq;
    if (l->offset >= c->lane_end || !in_window(c, l->created_at)) return 0;
    cs_lead d;
    int rc = c->dry->ops->lead_get(c->dry, l->id, &d);
    if (rc < 0) {
        c->failed = 1;
        return 1;
    }
    if (rc == 0) return 0; /* seen from the dry side */
    c->rerouted++;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "lead_id", l->id);
    cJSON_AddStringToObject(e, "event_id", l->event_id);
    cJSON_AddStringToObject(e, "email", l->email);
    cJSON_AddStringToObject(e, "created_at", l->created_at);
    cJSON_AddStringToObject(e, "before", l->owner);
    cJSON_AddNullToObject(e, "after");
    example(c, e);
    return 0;
}

static int walk_leads(bt_cmp *c, cs_store *st, cs_lead_cb cb)
{
    c->cursor = 0;
    for (;;) {
        int64_t before = c->cursor;
        int n = st->ops->lead_list(st, c->cursor, 500, cb, c);
        if (n < 0 || c->failed) return -1;
        if (n == 0 || c->cursor == before) return 0;
    }
}

static const char *col(const cs_row *row, const char *name)
{
    int k = cs_obj_col(row->def, name);
    return k >= 0 ? row->vals[k] : NULL;
}

/* One row of a page: the store's callbacks may not call back into the same
 * store (one connection, one lock), so a page is copied out first, then
 * looked at. Bounded: BT_PAGE rows. */
#define BT_PAGE 256
typedef struct bt_row {
    char    id[96], rule[128], account[160], key[256], at[40];
    int     partition;
    int64_t offset;
} bt_row;

struct obj_page {
    bt_cmp *c;
    int     obj;
    bt_row *rows;
    int     n;
};

static void copy_col(char *dst, size_t n, const cs_row *row, const char *name)
{
    const char *v = col(row, name);
    snprintf(dst, n, "%s", v ? v : "");
}

static int on_obj(const cs_row *row, void *arg)
{
    struct obj_page *pg = arg;
    pg->c->cursor = row->seq;
    bt_row *r = &pg->rows[pg->n++];
    copy_col(r->id, sizeof r->id, row, "id");
    copy_col(r->rule, sizeof r->rule, row, "rule_id");
    copy_col(r->account, sizeof r->account, row, "account_id");
    copy_col(r->key, sizeof r->key, row, pg->obj == CS_OBJ_ALERT ? "dedupe_key" : "title");
    r->at[0] = 0;
    r->partition = -1;
    r->offset = -1;
    if (pg->obj == CS_OBJ_ALERT) { /* alerts carry their cause in columns */
        const char *p = col(row, "partition"), *o = col(row, "offset");
        copy_col(r->at, sizeof r->at, row, "at");
        r->partition = p ? atoi(p) : -1;
        r->offset = o ? strtoll(o, NULL, 10) : -1;
    }
    return 0;
}

/* Tasks: the cause is in their first audit row. */
static int on_first_audit(const cs_audit *a, void *arg)
{
    bt_row *r = arg;
    snprintf(r->at, sizeof r->at, "%s", a->at ? a->at : "");
    r->partition = a->partition;
    r->offset = a->offset;
    return 1;
}

static int found(const cs_row *row, void *arg)
{
    (void)row;
    ((bt_cmp *)arg)->found = 1;
    return 0;
}

static int look(bt_cmp *c, int obj, int dry_side, bt_row *r)
{
    if (!*r->id || !*r->rule) return 0; /* effects of rules only (not API writes) */
    cs_store *mine = dry_side ? c->dry : c->real, *other = dry_side ? c->real : c->dry;
    if (obj != CS_OBJ_ALERT &&
        mine->ops->audit_list(mine, cs_objdefs[obj].name, r->id, 0, 1, on_first_audit, r) < 0)
        return -1;
    if (!in_window(c, r->at)) return 0;
    if (!dry_side) {
        /* A real effect whose cause is past the end the dry run stopped at
         * (the running pipeline moved on meanwhile) is not comparable.
         * Lane effects (signup abuse) are caused at a leads-topic offset. */
        int lane = strcmp(r->rule, "signals.signup_abuse") == 0;
        if (lane ? r->offset >= c->lane_end
                 : (r->partition < 0 || r->partition >= c->partitions || r->offset >= c->end[r->partition]))
            return 0;
    }
    c->found = 0;
    if (other->ops->obj_get(other, obj, r->id, found, c) < 0) return -1;
    if (c->found) return 0;
    if (dry_side) c->added++;
    else c->removed++;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "change", dry_side ? "added" : "removed");
    cJSON_AddStringToObject(e, "id", r->id);
    cJSON_AddStringToObject(e, "rule_id", r->rule);
    if (*r->account) cJSON_AddStringToObject(e, "account_id", r->account);
    else cJSON_AddNullToObject(e, "account_id");
    cJSON_AddStringToObject(e, obj == CS_OBJ_ALERT ? "dedupe_key" : "title", r->key);
    cJSON_AddStringToObject(e, "at", r->at);
    example(c, e);
    return 0;
}

static int walk_objs(bt_cmp *c, int obj, int dry_side)
{
    cs_store *st = dry_side ? c->dry : c->real;
    struct obj_page pg = {c, obj, cs_malloc(BT_PAGE * sizeof(bt_row)), 0};
    int rc = 0;
    c->cursor = 0;
    for (;;) {
        int64_t before = c->cursor;
        pg.n = 0;
        int n = st->ops->obj_list(st, obj, c->cursor, BT_PAGE, NULL, 0, on_obj, &pg);
        if (n < 0) {
            rc = -1;
            break;
        }
        for (int i = 0; i < pg.n && rc == 0; i++) rc = look(c, obj, dry_side, &pg.rows[i]);
        if (rc || n == 0 || c->cursor == before) break;
    }
    free(pg.rows);
    return rc;
}

static void reset_kind(bt_cmp *c)
{
    c->rerouted = c->added = c->removed = 0;
    c->examples = cJSON_CreateArray();
}

static int compare(bt_cmp *c, cJSON *out)
{
    reset_kind(c);
    if (walk_leads(c, c->dry, on_dry_lead) || walk_leads(c, c->real, on_real_lead)) goto fail;
    cJSON *leads = cJSON_AddObjectToObject(out, "leads");
    cJSON_AddNumberToObject(leads, "rerouted", (double)c->rerouted);
    cJSON_AddItemToObject(leads, "examples", c->examples);
    static const struct {
        int         obj;
        const char *name;
    } kinds[] = {{CS_OBJ_ALERT, "alerts"}, {CS_OBJ_TASK, "tasks"}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        reset_kind(c);
        if (walk_objs(c, kinds[k].obj, 1) || walk_objs(c, kinds[k].obj, 0)) goto fail;
        cJSON *o = cJSON_AddObjectToObject(out, kinds[k].name);
        cJSON_AddNumberToObject(o, "added", (double)c->added);
        cJSON_AddNumberToObject(o, "removed", (double)c->removed);
        cJSON_AddItemToObject(o, "examples", c->examples);
    }
    c->examples = NULL;
    return 0;
fail:
    cJSON_Delete(c->examples);
    c->examples = NULL;
    return -1;
}

/* ---- the scratch directory ----------------------------------------------- */

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    if (rmdir(dir) != 0) cs_warn("backtest", "cannot remove the scratch directory", "\"dir\":\"%s\"", dir);
}

/* One backtest runs at a time, so any backtest-* directory already in the
 * data dir was left by a server that died mid-run: remove it. */
static void remove_stale(const char *data_dir)
{
    DIR *d = opendir(data_dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "backtest-", 9) != 0 || strlen(e->d_name) != 15) continue;
        snprintf(p, sizeof p, "%s/%s", data_dir, e->d_name);
        cs_warn("backtest", "removing a scratch directory left by an earlier run", "\"dir\":\"%s\"", p);
        remove_dir(p);
    }
    closedir(d);
}

static int write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    size_t w = fwrite(text, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

/* Tests only: CRMSTREAM_BACKTEST_HOLD=PATH holds a backtest (counting
 * against its time limit) while PATH exists, after creating PATH.started
 * once it is running — so a test can send a second one deterministically;
 * held past backtest.timeout_ms it times out. */
static int test_hold(int64_t deadline_us)
{
    const char *h = getenv("CRMSTREAM_BACKTEST_HOLD");
    if (!h || !*h) return 0;
    char p[600];
    snprintf(p, sizeof p, "%s.started", h);
    int fd = open(p, O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
    while (access(h, F_OK) == 0 && cs_mono_us() < deadline_us) usleep(2000);
    return access(h, F_OK) == 0; /* held past the time limit: a timeout */
}

/* ---- the handler --------------------------------------------------------- */

static int time_field(const cJSON *b, const char *k, int64_t *out, cs_http_resp *resp)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, k);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v) || cs_parse_time(v->valuestring, out) != 0) {
        cs_http_error(resp, 400, "invalid_field", "expected an RFC 3339 time, e.g. 2026-01-31T00:00:00Z", k);
        return -1;
    }
    return 0;
}

static void run(cs_app *app, const char *name, const char *text, size_t len, int64_t from_us, int64_t to_us,
                cs_http_resp *resp)
{
    int64_t t0 = cs_mono_us(), deadline = t0 + app->cfg.backtest_timeout_ms * 1000;
    char err[1200], dir[400], rpath[440], spec[480];
    int P = app->bus->partitions;
    int64_t *end = cs_calloc((size_t)P, sizeof *end), lane_end = 0;
    cs_store *real = NULL, *dry = NULL;
    cs_pipeline *pl = NULL;
    cJSON *out = NULL;
    dir[0] = 0;
    /* Our own connection to the real store: the pipeline's writer
     * connection is the pipeline's, and reads must not wait on it. */
    real = cs_store_open(app->cfg.store, app->cfg.data_dir, err, sizeof err);
    if (!real) goto unavailable;
    /* The end: what the running pipeline has committed now. */
    for (int p = 0; p < P; p++)
        if (real->ops->offset_get(real, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, p, &end[p])) goto store_err;
    if (real->ops->offset_get(real, CS_CONSUMER_PIPELINE, CS_TOPIC_LEADS, 0, &lane_end)) goto store_err;
    remove_stale(app->cfg.data_dir);
    snprintf(dir, sizeof dir, "%s/backtest-XXXXXX", app->cfg.data_dir);
    if (!mkdtemp(dir)) {
        snprintf(err, sizeof err, "cannot create %s: %s", dir, strerror(errno));
        dir[0] = 0;
        goto unavailable;
    }
    snprintf(rpath, sizeof rpath, "%s/rules.yaml", dir);
    if (write_file(rpath, text, len)) {
        snprintf(err, sizeof err, "cannot write %s", rpath);
        goto unavailable;
    }
    snprintf(spec, sizeof spec, "sqlite:%s/crm.sqlite", dir);
    dry = cs_store_open(spec, app->cfg.data_dir, err, sizeof err);
    if (!dry) goto unavailable;
    cs_config dc = app->cfg; /* shallow: only two strings differ, owned here */
    dc.store = spec;
    dc.rules_path = rpath;
    pl = cs_pipeline_start_dry(app->bus, dry, &dc, end, lane_end, err, sizeof err);
    if (!pl) goto unavailable;
    int held = test_hold(deadline);
    while (!held && !cs_pipeline_dry_done(pl) && cs_mono_us() < deadline) usleep(500);
    int done = !held && cs_pipeline_dry_done(pl);
    cs_pipeline_stop(pl);
    pl = NULL;
    if (!done) {
        cs_warn("backtest", "stopped at its time limit (backtest.timeout_ms)", "\"timeout_ms\":%ld",
                app->cfg.backtest_timeout_ms);
        snprintf(err, sizeof err, "the backtest did not finish within backtest.timeout_ms (%ld ms)",
                 app->cfg.backtest_timeout_ms);
        resp->retry_after = 1;
        cs_http_error(resp, 503, "backtest_timeout", err, NULL);
        goto out;
    }
    out = cJSON_CreateObject();
    bt_cmp c = {.real = real, .dry = dry, .from_us = from_us, .to_us = to_us, .end = end, .lane_end = lane_end,
                .partitions = P};
    if (compare(&c, out)) {
        snprintf(err, sizeof err, "comparing the stores failed: %s / %s", real->errmsg, dry->errmsg);
        goto unavailable;
    }
    int64_t events = 0;
    for (int p = 0; p < P; p++) events += end[p];
    cJSON_AddStringToObject(out, "rules", name);
    cJSON *win = cJSON_AddObjectToObject(out, "window");
    char ts[40];
    if (from_us != INT64_MIN) cs_fmt_time_ms(from_us, ts, sizeof ts), cJSON_AddStringToObject(win, "from", ts);
    else cJSON_AddNullToObject(win, "from");
    if (to_us != INT64_MAX) cs_fmt_time_ms(to_us, ts, sizeof ts), cJSON_AddStringToObject(win, "to", ts);
    else cJSON_AddNullToObject(win, "to");
    cJSON_AddNumberToObject(out, "events", (double)events);
    cJSON_AddNumberToObject(out, "lead_events", (double)lane_end);
    cJSON_AddNumberToObject(out, "ms", (double)(cs_mono_us() - t0) / 1000.0);
    char *s = cJSON_PrintUnformatted(out);
    cs_buf_adds(&resp->body, s);
    cJSON_free(s);
    cs_info("backtest", "done", "\"events\":%lld,\"ms\":%.1f", (long long)events, (double)(cs_mono_us() - t0) / 1000.0);
    goto out;
store_err:
    snprintf(err, sizeof err, "reading the pipeline's offsets: %s", real->errmsg);
unavailable:
    cs_error("backtest", "backtest failed", "\"error\":\"%s\"", err);
    resp->retry_after = 1;
    cs_http_error(resp, 503, "backtest_failed", err, NULL);
out:
    if (pl) cs_pipeline_stop(pl);
    if (dry) dry->ops->close(dry);
    if (real) real->ops->close(real);
    if (*dir) remove_dir(dir);
    cJSON_Delete(out);
    free(end);
}

void cs_api_backtest(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    cs_app *app = a;
    if (cs_app_role_check(app, CS_ROLE_PIPELINE, resp)) return;
    cJSON *b = req->body_len ? cJSON_ParseWithLength(req->body, req->body_len) : NULL;
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(b, "rules");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(b, "name");
    if (!cJSON_IsObject(b) || !cJSON_IsString(rules)) {
        cJSON_Delete(b);
        return cs_http_error(resp, 400, "invalid_json",
                             "the body must be one JSON object: {\"rules\": \"<the rules file's text>\", \"name\": "
                             "\"file name\"?, \"from\": \"RFC3339\"?, \"to\": \"RFC3339\"?}",
                             "rules");
    }
    int64_t from_us = INT64_MIN, to_us = INT64_MAX;
    if (time_field(b, "from", &from_us, resp) || time_field(b, "to", &to_us, resp)) {
        cJSON_Delete(b);
        return;
    }
    const char *name = cJSON_IsString(nm) && *nm->valuestring ? nm->valuestring : "rules.yaml";
    /* Validate first, as the pipeline loads it (same roots). */
    static const char *const roots[] = {"event", "account", "lead", "contact", "signals", "changed", NULL};
    cs_rules_opts opts = {.roots = roots};
    char err[512];
    size_t len = strlen(rules->valuestring);
    cs_ruleset *rs = cs_rules_load_string(name, rules->valuestring, len, &opts, err, sizeof err);
    if (!rs) {
        cJSON_Delete(b);
        return cs_http_error(resp, 422, "invalid_rules", err, "rules");
    }
    cs_ruleset_unref(rs);
    int idle = 0;
    if (!__atomic_compare_exchange_n(&bt_busy, &idle, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        cJSON_Delete(b);
        resp->retry_after = 5;
        return cs_http_error(resp, 409, "backtest_running", "a backtest is already running; one runs at a time", NULL);
    }
    run(app, name, rules->valuestring, len, from_us, to_us, resp);
    __atomic_store_n(&bt_busy, 0, __ATOMIC_RELEASE);
    cJSON_Delete(b);
}
