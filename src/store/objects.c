/*
 * store/objects — the CRM object table (one declaration per column, like the
 * config keys) and the write path both backends share: validate, load the
 * current row, merge, compare field by field, save, and write one audit row
 * per changed field with the cause. Backends only load and save rows.
 */
#include "store/objects.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define F CS_COL_FILTER
#define RO CS_COL_RO

static const cs_col account_cols[] = {
    {"id", CS_COL_TEXT, 0},          {"name", CS_COL_TEXT, 0},
    {"domain", CS_COL_TEXT, F},      {"plan_tier", CS_COL_TEXT, F},
    {"mrr", CS_COL_REAL, 0},         {"renewal_date", CS_COL_TEXT, 0},
    {"owner", CS_COL_TEXT, F},       {"custom", CS_COL_JSON, 0},
    {"health_score", CS_COL_REAL, RO}, {"health_breakdown", CS_COL_JSON, RO},
};
static const cs_col contact_cols[] = {
    {"id", CS_COL_TEXT, 0},   {"account_id", CS_COL_TEXT, F}, {"email", CS_COL_TEXT, F},
    {"name", CS_COL_TEXT, 0}, {"title", CS_COL_TEXT, 0},      {"custom", CS_COL_JSON, 0},
};
static const cs_col rep_cols[] = {
    {"id", CS_COL_TEXT, 0},        {"name", CS_COL_TEXT, 0},         {"email", CS_COL_TEXT, F},
    {"pools", CS_COL_JSON, 0},     {"territory", CS_COL_JSON, 0},    {"capacity", CS_COL_INT, 0},
    {"timezone", CS_COL_TEXT, F},  {"working_hours", CS_COL_JSON, 0}, {"out_of_office", CS_COL_BOOL, F},
    {"weight", CS_COL_INT, 0},     /* migration 5: weighted round robin */
};
static const cs_col task_cols[] = {
    {"id", CS_COL_TEXT, 0},    {"account_id", CS_COL_TEXT, F}, {"lead_id", CS_COL_TEXT, F},
    {"owner", CS_COL_TEXT, F}, {"kind", CS_COL_TEXT, F},       {"title", CS_COL_TEXT, 0},
    {"status", CS_COL_TEXT, F}, {"due_at", CS_COL_TEXT, 0},    {"rule_id", CS_COL_TEXT, 0},
};
static const cs_col alert_cols[] = {
    {"id", CS_COL_TEXT, 0},           {"dedupe_key", CS_COL_TEXT, 0},
    {"kind", CS_COL_TEXT, F},         {"severity", CS_COL_TEXT, F},
    {"account_id", CS_COL_TEXT, F},   {"message", CS_COL_TEXT, 0},
    {"cause_event_id", CS_COL_TEXT, RO}, {"partition", CS_COL_INT, RO},
    {"offset", CS_COL_INT, RO},       {"rule_id", CS_COL_TEXT, F | RO},
    {"at", CS_COL_TEXT, RO},
};
/* An event the pipeline could not apply (dead-letter queue, kind "event"):
 * its original bytes, why, and where it was in the log. */
static const cs_col dead_event_cols[] = {
    {"id", CS_COL_TEXT, 0},          {"event_id", CS_COL_TEXT, F},       {"reason", CS_COL_TEXT, F},
    {"message", CS_COL_TEXT, 0},     {"attempts", CS_COL_INT, 0},        {"first_failed_at", CS_COL_TEXT, 0},
    {"last_failed_at", CS_COL_TEXT, 0}, {"payload", CS_COL_TEXT, 0},     {"status", CS_COL_TEXT, F},
    {"cause_event_id", CS_COL_TEXT, RO}, {"partition", CS_COL_INT, RO},  {"offset", CS_COL_INT, RO},
    {"rule_id", CS_COL_TEXT, RO},    {"at", CS_COL_TEXT, RO},
};
#define NCOLS(c) (sizeof c / sizeof c[0])
_Static_assert(NCOLS(account_cols) <= CS_OBJ_MAXCOLS && NCOLS(contact_cols) <= CS_OBJ_MAXCOLS &&
                   NCOLS(rep_cols) <= CS_OBJ_MAXCOLS && NCOLS(task_cols) <= CS_OBJ_MAXCOLS &&
                   NCOLS(alert_cols) <= CS_OBJ_MAXCOLS,
               "backends keep a row's values in arrays of CS_OBJ_MAXCOLS");
#define OBJ(n, t, c) {n, t, c, (int)NCOLS(c)}
const cs_objdef cs_objdefs[CS_OBJ_COUNT] = {
    [CS_OBJ_ACCOUNT] = OBJ("account", "accounts", account_cols),
    [CS_OBJ_CONTACT] = OBJ("contact", "contacts", contact_cols),
    [CS_OBJ_REP] = OBJ("rep", "reps", rep_cols),
    [CS_OBJ_TASK] = OBJ("task", "tasks", task_cols),
    [CS_OBJ_ALERT] = OBJ("alert", "alerts", alert_cols),
    [CS_OBJ_DEAD_EVENT] = OBJ("dead_event", "dead_events", dead_event_cols),
};

int cs_obj_find(const char *name)
{
    for (int i = 0; i < CS_OBJ_COUNT; i++)
        if (name && strcmp(cs_objdefs[i].name, name) == 0) return i;
    return -1;
}

int cs_obj_col(const cs_objdef *def, const char *name)
{
    for (int i = 0; i < def->ncols; i++)
        if (strcmp(def->cols[i].name, name) == 0) return i;
    return -1;
}

static int parse_real(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !*end && !errno && isfinite(*v) ? 0 : -1;
}

static int parse_int(const char *s, long long *v)
{
    char *end;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return *s && !*end && !errno ? 0 : -1;
}

static const char *type_check(enum cs_col_type t, const char *v)
{
    double d;
    long long i;
    switch (t) {
    case CS_COL_TEXT: return NULL;
    case CS_COL_REAL: return parse_real(v, &d) ? "expected a finite number" : NULL;
    case CS_COL_INT: return parse_int(v, &i) ? "expected an integer" : NULL;
    case CS_COL_BOOL: return strcmp(v, "0") && strcmp(v, "1") ? "expected 0 or 1" : NULL;
    case CS_COL_JSON: {
        cJSON *j = cJSON_Parse(v);
        int ok = cJSON_IsObject(j) || cJSON_IsArray(j);
        cJSON_Delete(j);
        return ok ? NULL : "expected a JSON object or array";
    }
    }
    return "unknown type";
}

int cs_obj_check(const cs_objdef *def, const char *id, const cs_kv *kv, size_t n, char *err,
                 size_t errlen, const char **field)
{
    *field = "id";
    if (!id || !*id) {
        snprintf(err, errlen, "id: required");
        return -1;
    }
    if (strlen(id) > 256) {
        snprintf(err, errlen, "id: longer than 256 bytes");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        *field = kv[i].name ? kv[i].name : "";
        int c = kv[i].name ? cs_obj_col(def, kv[i].name) : -1;
        if (c < 0) {
            snprintf(err, errlen, "%.64s: not a field of %s", *field, def->name);
            return -1;
        }
        if (c == 0) {
            snprintf(err, errlen, "id: cannot be changed");
            return -1;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(kv[j].name, kv[i].name) == 0) {
                snprintf(err, errlen, "%s: given twice", *field);
                return -1;
            }
        const char *why = kv[i].value ? type_check(def->cols[c].type, kv[i].value) : NULL;
        if (why) {
            snprintf(err, errlen, "%s: %s", *field, why);
            return -1;
        }
    }
    *field = NULL;
    return 0;
}

void cs_obj_kv_free(cs_kv *kv, int n)
{
    for (int i = 0; i < n; i++) free((char *)kv[i].value);
}

int cs_obj_kv_from_json(const cs_objdef *def, const cJSON *obj, int allow_ro, cs_kv *kv, size_t max, char *err,
                        size_t errlen, const char **field)
{
    int n = 0;
    *field = NULL;
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "expected a JSON object");
        return -1;
    }
    for (const cJSON *it = obj->child; it; it = it->next) {
        *field = it->string;
        if (strcmp(it->string, "id") == 0) continue;
        int c = cs_obj_col(def, it->string);
        const char *why = NULL;
        char *v = NULL;
        if (c < 0) {
            why = "not a field of this object";
        } else if (!allow_ro && (def->cols[c].flags & CS_COL_RO)) {
            why = "read-only: set by the pipeline";
        } else if ((size_t)n >= max) {
            why = "too many fields";
        } else if (cJSON_IsNull(it)) {
            v = NULL;
        } else {
            switch (def->cols[c].type) {
            case CS_COL_TEXT:
                if (cJSON_IsString(it)) v = cs_strdup(it->valuestring);
                else why = "expected a string or null";
                break;
            case CS_COL_REAL:
            case CS_COL_INT:
                if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) why = "expected a number or null";
                else if (def->cols[c].type == CS_COL_INT &&
                         (it->valuedouble != floor(it->valuedouble) || fabs(it->valuedouble) > 9.0e15))
                    why = "expected an integer or null";
                else if (def->cols[c].type == CS_COL_INT) {
                    char b[32];
                    snprintf(b, sizeof b, "%lld", (long long)it->valuedouble);
                    v = cs_strdup(b);
                } else {
                    v = cJSON_PrintUnformatted(it); /* shortest text that reads back the same */
                    char *copy = cs_strdup(v);
                    cJSON_free(v);
                    v = copy;
                }
                break;
            case CS_COL_BOOL:
                if (cJSON_IsBool(it)) v = cs_strdup(cJSON_IsTrue(it) ? "1" : "0");
                else why = "expected true, false or null";
                break;
            case CS_COL_JSON:
                if (cJSON_IsObject(it) || cJSON_IsArray(it)) {
                    char *p = cJSON_PrintUnformatted(it);
                    v = cs_strdup(p);
                    cJSON_free(p);
                } else {
                    why = "expected a JSON object, array or null";
                }
                break;
            }
        }
        if (why) {
            snprintf(err, errlen, "%.64s: %s", it->string, why);
            cs_obj_kv_free(kv, n);
            return -1;
        }
        kv[n].name = def->cols[c].name;
        kv[n].value = v;
        n++;
    }
    *field = NULL;
    return n;
}

/* Same value? Numbers compare as numbers: the backends print them
 * differently ("1000" vs "1000.0"), and a repeated event must be a no-op. */
static int same(enum cs_col_type t, const char *a, const char *b)
{
    if (!a || !b) return a == b;
    if (t == CS_COL_REAL) {
        double x, y;
        if (!parse_real(a, &x) && !parse_real(b, &y)) return x == y;
    } else if (t == CS_COL_INT || t == CS_COL_BOOL) {
        long long x, y;
        if (!parse_int(a, &x) && !parse_int(b, &y)) return x == y;
    }
    return strcmp(a, b) == 0;
}

int cs_obj_write(cs_store *st, const struct cs_obj_prims *p, int obj, const char *id,
                 const cs_kv *kv, size_t n, const cs_cause *cause, int insert_only)
{
    if (obj < 0 || obj >= CS_OBJ_COUNT) {
        snprintf(st->errmsg, sizeof st->errmsg, "unknown object %d", obj);
        st->retriable = 0;
        return -1;
    }
    const cs_objdef *d = &cs_objdefs[obj];
    const char *field;
    char why[200];
    if (cs_obj_check(d, id, kv, n, why, sizeof why, &field)) {
        snprintf(st->errmsg, sizeof st->errmsg, "%s %s: %s", d->name, "write", why);
        st->retriable = 0;
        return -1;
    }
    int nc = d->ncols, rc = -1, nchanged = 0;
    char **old = cs_calloc((size_t)nc, sizeof *old);
    const char **now = cs_calloc((size_t)nc, sizeof *now);
    int *changed = cs_calloc((size_t)nc, sizeof *changed);
    char part[24], off[24];
    int found = insert_only ? 0 : p->load(st, obj, id, old);
    if (found < 0) goto out;
    for (int i = 0; i < nc; i++) now[i] = old[i];
    now[0] = id;
    for (size_t i = 0; i < n; i++) now[cs_obj_col(d, kv[i].name)] = kv[i].value;
    if (cause) { /* objects that record their cause in columns (alerts) */
        snprintf(part, sizeof part, "%d", cause->partition);
        snprintf(off, sizeof off, "%lld", (long long)cause->offset);
        const char *from[][2] = {{"cause_event_id", cause->event_id}, {"partition", part},
                                 {"offset", off}, {"rule_id", cause->rule_id}, {"at", cause->at}};
        for (size_t k = 0; k < sizeof from / sizeof from[0]; k++) {
            int c = cs_obj_col(d, from[k][0]);
            int given = 0;
            for (size_t i = 0; i < n; i++) given |= strcmp(kv[i].name, from[k][0]) == 0;
            if (c > 0 && !given) now[c] = from[k][1];
        }
    }
    for (int i = 1; i < nc; i++) {
        changed[i] = !same(d->cols[i].type, old[i], now[i]);
        nchanged += changed[i];
    }
    if (found && nchanged == 0) {
        rc = 0;
        goto out;
    }
    int w = p->save(st, obj, now, insert_only);
    if (w <= 0) {
        rc = w;
        goto out;
    }
    cs_audit a = {.object = d->name, .object_id = id, .cause_event_id = cause ? cause->event_id : NULL,
                  .partition = cause ? cause->partition : -1, .offset = cause ? cause->offset : -1,
                  .rule_id = cause ? cause->rule_id : NULL, .at = cause && cause->at ? cause->at : ""};
    if (!found) {
        a.field = "id", a.old_value = NULL, a.new_value = id;
        if (st->ops->audit_insert(st, &a)) goto out;
    }
    for (int i = 1; i < nc; i++) {
        if (!changed[i]) continue;
        a.field = d->cols[i].name, a.old_value = old[i], a.new_value = now[i];
        if (st->ops->audit_insert(st, &a)) goto out;
    }
    rc = insert_only ? 1 : nchanged + !found;
out:
    for (int i = 0; i < nc; i++) free(old[i]);
    free(old);
    free(now);
    free(changed);
    return rc;
}

/* ---- SQL built from the table ---------------------------------------- */

static void qcol(cs_buf *b, const char *name)
{
    cs_buf_printf(b, "\"%s\"", name); /* quoted: "offset" is reserved in PostgreSQL */
}

static void cols(cs_buf *b, const cs_objdef *d)
{
    for (int i = 0; i < d->ncols; i++) {
        if (i) cs_buf_adds(b, ",");
        qcol(b, d->cols[i].name);
    }
}

static void param(cs_buf *b, char ph, int i, const char *cast)
{
    cs_buf_printf(b, "%c%d%s", ph, i, ph == '$' && cast ? cast : "");
}

char *cs_obj_sql_load(const cs_objdef *d, char ph)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "SELECT ");
    cols(&b, d);
    cs_buf_printf(&b, " FROM %s WHERE id=", d->table);
    param(&b, ph, 1, "::text");
    return cs_buf_steal(&b);
}

char *cs_obj_sql_save(const cs_objdef *d, char ph, int insert_only)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_printf(&b, "INSERT INTO %s(", d->table);
    cols(&b, d);
    cs_buf_adds(&b, ") VALUES(");
    for (int i = 0; i < d->ncols; i++) {
        if (i) cs_buf_adds(&b, ",");
        param(&b, ph, i + 1, NULL);
    }
    if (insert_only) {
        cs_buf_adds(&b, ") ON CONFLICT DO NOTHING");
    } else {
        cs_buf_adds(&b, ") ON CONFLICT(id) DO UPDATE SET ");
        for (int i = 1; i < d->ncols; i++) {
            if (i > 1) cs_buf_adds(&b, ",");
            qcol(&b, d->cols[i].name);
            cs_buf_adds(&b, "=excluded.");
            qcol(&b, d->cols[i].name);
        }
    }
    return cs_buf_steal(&b);
}

char *cs_obj_sql_get(const cs_objdef *d, char ph)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "SELECT seq,");
    cols(&b, d);
    cs_buf_printf(&b, " FROM %s WHERE id=", d->table);
    param(&b, ph, 1, "::text");
    return cs_buf_steal(&b);
}

char *cs_obj_sql_find(const cs_objdef *d, char ph, int col)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "SELECT seq,");
    cols(&b, d);
    cs_buf_printf(&b, " FROM %s WHERE ", d->table);
    qcol(&b, d->cols[col].name);
    cs_buf_adds(&b, "=");
    param(&b, ph, 1, d->cols[col].type == CS_COL_TEXT ? "::text" : "::bigint");
    cs_buf_adds(&b, " ORDER BY seq LIMIT 1");
    return cs_buf_steal(&b);
}

int cs_obj_nfilters(const cs_objdef *d)
{
    int n = 0;
    for (int i = 0; i < d->ncols; i++) n += (d->cols[i].flags & CS_COL_FILTER) != 0;
    return n;
}

char *cs_obj_sql_list(const cs_objdef *d, char ph)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "SELECT seq,");
    cols(&b, d);
    cs_buf_printf(&b, " FROM %s WHERE seq>", d->table);
    param(&b, ph, 1, "::bigint");
    int k = 2;
    for (int i = 0; i < d->ncols; i++) {
        if (!(d->cols[i].flags & CS_COL_FILTER)) continue;
        const char *cast = d->cols[i].type == CS_COL_TEXT ? "::text" : "::bigint";
        cs_buf_adds(&b, " AND (");
        param(&b, ph, k, cast);
        cs_buf_adds(&b, " IS NULL OR ");
        qcol(&b, d->cols[i].name);
        cs_buf_adds(&b, "=");
        param(&b, ph, k, cast);
        cs_buf_adds(&b, ")");
        k++;
    }
    cs_buf_adds(&b, " ORDER BY seq LIMIT ");
    param(&b, ph, k, "::bigint");
    return cs_buf_steal(&b);
}

int cs_obj_filter_params(cs_store *st, const cs_objdef *d, const cs_kv *f, size_t nf, const char **params)
{
    int nfl = cs_obj_nfilters(d);
    for (int k = 0; k < nfl; k++) params[k] = NULL;
    for (size_t i = 0; i < nf; i++) {
        int k = 0, hit = -1;
        for (int c = 0; c < d->ncols; c++) {
            if (!(d->cols[c].flags & CS_COL_FILTER)) continue;
            if (strcmp(d->cols[c].name, f[i].name) == 0) hit = k;
            k++;
        }
        if (hit < 0) {
            snprintf(st->errmsg, sizeof st->errmsg, "%s: not a filter of %s", f[i].name, d->name);
            st->retriable = 0;
            return -1;
        }
        params[hit] = f[i].value;
    }
    return 0;
}
