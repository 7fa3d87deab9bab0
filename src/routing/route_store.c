/*
 * routing/route_store — the store side of a routing decision (router.h):
 * the reps (config routing.reps merged with the rep objects), their open
 * leads, the lead's account, the rotation position; applying a decision to
 * a lead row; accepting a lead. Everything runs in the caller's transaction
 * on the writer connection, so a decision sees the batch's earlier writes.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "metrics/catalog.h"
#include "routing/router.h"

void cs_route_reps_free(cs_route_reps *rs)
{
    free(rs->v);
    memset(rs, 0, sizeof *rs);
}

static cs_route_rep *push(cs_route_reps *rs, const char *id)
{
    if (rs->n == CS_ROUTE_MAX_REPS) return NULL;
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 16;
        rs->v = cs_realloc(rs->v, rs->cap * sizeof *rs->v);
    }
    cs_route_rep *r = &rs->v[rs->n++];
    cs_route_rep_init(r, id);
    return r;
}

/* A JSON value as the text a column holds. */
static void set_json(cs_route_rep *r, const char *key, const cJSON *v)
{
    char num[32];
    if (cJSON_IsString(v)) {
        cs_route_rep_set(r, key, v->valuestring);
    } else if (cJSON_IsBool(v)) {
        cs_route_rep_set(r, key, cJSON_IsTrue(v) ? "1" : "0");
    } else if (cJSON_IsNumber(v)) {
        snprintf(num, sizeof num, "%.17g", v->valuedouble);
        cs_route_rep_set(r, key, num);
    } else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        char *t = cJSON_PrintUnformatted(v);
        cs_route_rep_set(r, key, t);
        cJSON_free(t);
    }
}

static const char *const rep_attr_cols[] = {"pools", "territory", "capacity", "weight", "timezone",
                                            "working_hours", "out_of_office", NULL};

struct load_ctx {
    cs_route_reps *rs;
    size_t         ncfg;   /* config reps at the front */
    int64_t        last;
    int            rows;
    int            dropped;
    cs_buf         text;
};

/* Parsed rep objects, keyed by id and the exact text of their routing
 * columns: a row that did not change is copied, not parsed again (the JSON
 * columns and time zones are most of a decision's cost with many reps).
 * Bounded by CS_ROUTE_MAX_REPS entries (cleared when full). */
struct pcache_entry {
    char        *text;  /* id \x1f col \x1f col ... (\x1e for NULL) */
    cs_route_rep rep;
};
static struct pcache_entry *pcache;
static size_t pcache_n, pcache_mask;
static pthread_mutex_t pcache_mu = PTHREAD_MUTEX_INITIALIZER;

static void row_text(const cs_row *row, cs_buf *b)
{
    cs_buf_reset(b);
    cs_buf_adds(b, row->vals[0]);
    for (int k = 0; rep_attr_cols[k]; k++) {
        int col = cs_obj_col(row->def, rep_attr_cols[k]);
        cs_buf_adds(b, "\x1f");
        cs_buf_adds(b, col > 0 && row->vals[col] ? row->vals[col] : "\x1e");
    }
}

static void parse_row(const cs_row *row, cs_route_rep *r)
{
    for (int k = 0; rep_attr_cols[k]; k++) {
        int col = cs_obj_col(row->def, rep_attr_cols[k]);
        if (col > 0 && row->vals[col]) cs_route_rep_set(r, rep_attr_cols[k], row->vals[col]);
    }
}

/* r <- the parsed row (from the cache when its text is unchanged). */
static void parse_cached(const cs_row *row, cs_route_rep *r, cs_buf *b)
{
    row_text(row, b);
    uint32_t h = (uint32_t)cs_murmur2(row->vals[0], strlen(row->vals[0]));
    pthread_mutex_lock(&pcache_mu);
    if (!pcache || pcache_n * 2 >= CS_ROUTE_MAX_REPS * 2) {
        for (size_t i = 0; pcache && i <= pcache_mask; i++) free(pcache[i].text);
        free(pcache);
        pcache_mask = 2 * 8192 - 1; /* >= 2 x CS_ROUTE_MAX_REPS, power of two */
        pcache = cs_calloc(pcache_mask + 1, sizeof *pcache);
        pcache_n = 0;
    }
    size_t idl = strlen(row->vals[0]);
    struct pcache_entry *e = NULL;
    for (size_t i = h & pcache_mask;; i = (i + 1) & pcache_mask) {
        struct pcache_entry *x = &pcache[i];
        if (!x->text) {
            e = x;
            break;
        }
        if (strncmp(x->text, row->vals[0], idl) == 0 && x->text[idl] == '\x1f') {
            e = x;
            break;
        }
    }
    if (e->text && strcmp(e->text, b->data) == 0) {
        *r = e->rep;
    } else {
        cs_route_rep_init(r, row->vals[0]);
        parse_row(row, r);
        if (!e->text) pcache_n++;
        free(e->text);
        e->text = cs_strdup(b->data);
        e->rep = *r;
    }
    pthread_mutex_unlock(&pcache_mu);
}

static int on_rep(const cs_row *row, void *arg)
{
    struct load_ctx *c = arg;
    c->last = row->seq;
    c->rows++;
    const char *id = row->vals[0];
    if (!id) return 0;
    cs_route_rep *r = NULL;
    for (size_t i = 0; i < c->ncfg; i++)
        if (strcmp(c->rs->v[i].id, id) == 0) r = &c->rs->v[i];
    if (r) { /* a config rep: the object's columns override its attributes */
        parse_row(row, r);
        return 0;
    }
    if (!(r = push(c->rs, id))) {
        c->dropped++;
        return 0;
    }
    parse_cached(row, r, &c->text);
    return 0;
}

/* An index of rep ids, for the open-lead counts. */
struct idx {
    int   *slot;
    size_t mask;
    const cs_route_reps *rs;
};

static uint32_t hid(const char *s)
{
    return (uint32_t)cs_murmur2(s, strlen(s));
}

static void on_open(const char *owner, int64_t n, void *arg)
{
    struct idx *x = arg;
    for (size_t h = hid(owner) & x->mask;; h = (h + 1) & x->mask) {
        int i = x->slot[h];
        if (i < 0) return;
        if (strcmp(x->rs->v[i].id, owner) == 0) {
            x->rs->v[i].open_leads = n;
            return;
        }
    }
}

/* counts: 1 always count open leads, 0 only when a cap applies (a rep's
 * capacity or max_open_leads > 0): the count reads every open lead, and
 * with no cap nothing needs it; -1 never. Not counted: open_leads = -1
 * (unknown; no capacity excludes anyone). */
static int load_reps(cs_store *st, const cs_config *cfg, cs_route_reps *rs, int counts, int64_t max_open)
{
    rs->n = 0;
    for (size_t i = 0; i < cfg->nreps; i++) {
        cs_route_rep *r = push(rs, cfg->reps[i].id);
        if (!r) break;
        cJSON *a = cfg->reps[i].attrs ? cJSON_Parse(cfg->reps[i].attrs) : NULL;
        for (const cJSON *e = a ? a->child : NULL; e; e = e->next) set_json(r, e->string, e);
        cJSON_Delete(a);
    }
    struct load_ctx c = {rs, rs->n, 0, 0, 0, {0}};
    cs_buf_init(&c.text);
    do {
        c.rows = 0;
        if (st->ops->obj_list_tx(st, CS_OBJ_REP, c.last, 1000, NULL, 0, on_rep, &c) < 0) {
            cs_buf_free(&c.text);
            return -1;
        }
    } while (c.rows == 1000);
    cs_buf_free(&c.text);
    if (c.dropped) {
        cs_metric_inc(cs_m.routing_reps_ignored, NULL, (uint64_t)c.dropped);
        cs_warn("routing", "more reps than a decision considers: the rest are ignored",
                "\"max\":%d,\"ignored\":%d", CS_ROUTE_MAX_REPS, c.dropped);
    }
    int capped = counts > 0 || (counts == 0 && max_open > 0);
    for (size_t i = 0; !capped && counts == 0 && i < rs->n; i++) capped = rs->v[i].capacity >= 0;
    if (!capped) {
        for (size_t i = 0; i < rs->n; i++) rs->v[i].open_leads = -1;
        return 0;
    }
    size_t cap = 16;
    while (cap < rs->n * 2) cap *= 2;
    struct idx x = {cs_malloc(cap * sizeof(int)), cap - 1, rs};
    for (size_t h = 0; h < cap; h++) x.slot[h] = -1;
    for (size_t i = 0; i < rs->n; i++) {
        size_t h = hid(rs->v[i].id) & x.mask;
        while (x.slot[h] >= 0) h = (h + 1) & x.mask;
        x.slot[h] = (int)i;
    }
    int rc = st->ops->lead_open_counts(st, on_open, &x);
    free(x.slot);
    return rc < 0 ? -1 : 0;
}

int cs_route_reps_load(cs_store *st, const cs_config *cfg, cs_route_reps *rs, int count_open_leads)
{
    return load_reps(st, cfg, rs, count_open_leads ? 1 : -1, 0);
}

/* ---- the lead's account ------------------------------------------------ */

struct acct {
    char id[161], owner[161], plan_tier[64];
};

static int on_account(const cs_row *row, void *arg)
{
    struct acct *a = arg;
    int o = cs_obj_col(row->def, "owner"), t = cs_obj_col(row->def, "plan_tier");
    snprintf(a->id, sizeof a->id, "%s", row->vals[0] ? row->vals[0] : "");
    snprintf(a->owner, sizeof a->owner, "%s", o > 0 && row->vals[o] ? row->vals[o] : "");
    snprintf(a->plan_tier, sizeof a->plan_tier, "%s", t > 0 && row->vals[t] ? row->vals[t] : "");
    return 1;
}

static void rotation_name(const cs_route_policy *p, char *out, size_t n)
{
    if (!p->weighted && !p->pool[0]) snprintf(out, n, "routing.round_robin.default"); /* the first version's */
    else snprintf(out, n, "routing.%s.%s", p->weighted ? "wrr" : "rr", p->pool[0] ? p->pool : "default");
}

int cs_route_lead_store(cs_store *st, const cs_config *cfg, const cs_route_policy *p, cs_lead *l, int64_t now_us,
                        const char *const *exclude, size_t nexclude, cs_route_result *r)
{
    if (!l->domain[0]) {
        const char *at = strrchr(l->email, '@');
        if (at && at[1]) {
            snprintf(l->domain, sizeof l->domain, "%s", at + 1);
            for (char *c = l->domain; *c; c++)
                if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        }
    }
    cs_route_lead lead = {.id = l->id, .email = l->email, .domain = l->domain, .country = l->country,
                          .region = cs_route_region(l->country), .segment = cs_route_segment(l->employee_count),
                          .employee_count = l->employee_count};
    struct acct a = {0};
    if (p->match_account || p->territory) {
        int rc = 1;
        if (l->account_id[0]) {
            rc = st->ops->obj_find_tx(st, CS_OBJ_ACCOUNT, "id", l->account_id, on_account, &a);
            if (rc == 0) lead.matched_by = "account_id";
        } else if (l->domain[0]) {
            rc = st->ops->obj_find_tx(st, CS_OBJ_ACCOUNT, "domain", l->domain, on_account, &a);
            if (rc == 0) lead.matched_by = "domain";
            /* a company domain that matched nothing: the email's domain next */
            const char *at = strrchr(l->email, '@');
            char ed[256];
            snprintf(ed, sizeof ed, "%s", at ? at + 1 : "");
            for (char *q = ed; *q; q++)
                if (*q >= 'A' && *q <= 'Z') *q = (char)(*q - 'A' + 'a');
            if (rc == 1 && ed[0] && strcmp(ed, l->domain) != 0) {
                rc = st->ops->obj_find_tx(st, CS_OBJ_ACCOUNT, "domain", ed, on_account, &a);
                if (rc == 0) lead.matched_by = "email_domain";
            }
        }
        if (rc < 0) return -1;
        if (rc == 0) {
            lead.account_id = a.id;
            lead.account_owner = a.owner;
            lead.plan_tier = a.plan_tier;
        }
    }
    /* One rep table, reused (a lane routes one lead at a time; the mutex
     * keeps concurrent callers, e.g. tests, correct). */
    static cs_route_reps reps;
    static pthread_mutex_t reps_mu = PTHREAD_MUTEX_INITIALIZER;
    char rot[160];
    rotation_name(p, rot, sizeof rot);
    int64_t slot = 0;
    if (st->ops->counter_get(st, rot, &slot)) return -1;
    pthread_mutex_lock(&reps_mu);
    if (load_reps(st, cfg, &reps, 0, p->max_open_leads)) {
        pthread_mutex_unlock(&reps_mu);
        return -1;
    }
    cs_route_decide(p, &lead, reps.v, reps.n, now_us, slot, exclude, nexclude, r);
    snprintf(l->status, sizeof l->status, "%s", r->owner ? "routed" : "queued");
    snprintf(l->owner, sizeof l->owner, "%s", r->owner ? r->owner : "");
    snprintf(l->route_reason, sizeof l->route_reason, "%s", r->reason);
    snprintf(l->route_explanation, sizeof l->route_explanation, "%s", r->explanation);
    if (lead.account_id && !l->account_id[0]) snprintf(l->account_id, sizeof l->account_id, "%s", lead.account_id);
    l->sla_due_at[0] = '\0';
    if (r->sla_due_us) cs_fmt_time_ms(r->sla_due_us, l->sla_due_at, sizeof l->sla_due_at);
    /* r->owner points into the reused rep table: point it at the lead's copy. */
    r->owner = r->owner ? l->owner : NULL;
    pthread_mutex_unlock(&reps_mu);
    return 0;
}

int cs_route_commit(cs_store *st, const cs_route_policy *p, const cs_route_result *r)
{
    if (r->next_slot < 0) return 0;
    char rot[160];
    rotation_name(p, rot, sizeof rot);
    return st->ops->counter_set(st, rot, r->next_slot);
}

/* ---- acceptance ---------------------------------------------------------- */

int cs_routing_accept(cs_store *st, const char *id, const char *rep, const cs_cause *cause)
{
    static _Thread_local cs_lead l;
    int rc = st->ops->lead_load(st, id, &l);
    if (rc < 0) return -1;
    if (rc == 1 || strcmp(l.status, "routed") != 0) {
        cs_info("routing", "LeadAccepted ignored: the lead is not routed and waiting",
                "\"lead\":\"%s\",\"status\":\"%s\"", id, rc == 1 ? "absent" : l.status);
        return 0;
    }
    if (rep && *rep && strcmp(rep, l.owner) != 0) {
        cs_info("routing", "LeadAccepted ignored: not the lead's owner", "\"lead\":\"%s\"", id);
        return 0;
    }
    snprintf(l.status, sizeof l.status, "accepted");
    snprintf(l.accepted_at, sizeof l.accepted_at, "%s", cause->at ? cause->at : "");
    l.sla_due_at[0] = '\0';
    if ((rc = st->ops->lead_update(st, &l)) <= 0) return rc;
    cs_audit a = {.object = "lead", .object_id = l.id, .field = "status", .old_value = "routed",
                  .new_value = "accepted", .cause_event_id = cause->event_id, .partition = cause->partition,
                  .offset = cause->offset, .rule_id = cause->rule_id, .at = l.accepted_at};
    if (st->ops->audit_insert(st, &a)) return -1;
    a.field = "accepted_at";
    a.old_value = NULL;
    a.new_value = l.accepted_at;
    return st->ops->audit_insert(st, &a) ? -1 : 1;
}
