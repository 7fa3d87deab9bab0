/*
 * pipeline/rules_apply — evaluate the rules (src/rules) against an event
 * and the account's signals after they were updated, and carry out the
 * actions that belong in the batch's transaction: tasks, alerts (with their
 * cooldowns, in event time) and field changes, each with its cause.
 *
 * Expressions see:
 *   event.*     the canonical event (event.type, event.properties.feature …)
 *   account.*   account.id, account.plan_tier, account.renewal_days
 *   signals.*   the account's current signals (usage_score, health_score,
 *               health_band, activation_stage, engagement_drop,
 *               renewal_ticket_spike, trial_handoff)
 *   changed.*   true for each signal this event (or sweep) changed, so a
 *               rule can fire on the transition, not on every event after it
 *   lead.*      for LeadCreated / DemoRequested: email, company, domain,
 *               country, employee_count, source
 * route_lead is carried out where the lead is routed (leads_apply.c, with
 * the rules passed in cs_lead_ctx): here it is counted as result="lane".
 * assign_owner sets account.owner (a rep id, or a pick from a pool through
 * src/routing); emit_event writes the derived event to the outbox under
 * destination "log" (see emit_event below). Anything else is counted as
 * crmstream_rule_actions_total{result="not_wired"}, never silently.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "core/logging.h"
#include "metrics/catalog.h"
#include "pipeline/pipeline.h"
#include "routing/router.h"
#include "rules/rules.h"

struct rctx {
    const cJSON       *event;      /* NULL for a sweep */
    const char        *account_id;
    int                have_view;
    cs_sig_view        view;
    const cs_sig_changes *changes;
    char               num[8][32]; /* scratch for strings we build */
};

static int value_of_json(const cJSON *j, cs_value *out)
{
    if (!j) return 0;
    if (cJSON_IsString(j)) *out = cs_vstr(j->valuestring, strlen(j->valuestring));
    else if (cJSON_IsBool(j)) *out = cs_vbool(cJSON_IsTrue(j));
    else if (cJSON_IsNull(j)) *out = (cs_value){.type = CS_V_NULL};
    else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        *out = d == floor(d) && fabs(d) < 9e15 ? cs_vint((int64_t)d) : cs_vdouble(d);
    } else if (cJSON_IsObject(j)) {
        *out = (cs_value){.type = CS_V_MAP};
        out->u.map.p = j;
        out->u.map.n = (size_t)cJSON_GetArraySize(j);
    } else
        return 0; /* arrays are not exposed (yet) */
    return 1;
}

static const cJSON *json_path(const cJSON *j, const char *p, size_t len)
{
    char seg[128];
    while (j && len) {
        size_t k = 0;
        while (k < len && p[k] != '.') k++;
        if (k >= sizeof seg) return NULL;
        memcpy(seg, p, k);
        seg[k] = '\0';
        j = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, seg) : NULL;
        p += k, len -= k;
        if (len) p++, len--;
    }
    return j;
}

static int is(const char *p, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(p, lit, len) == 0;
}

static int signal_changed(const struct rctx *c, const char *name)
{
    for (size_t i = 0; c->changes && i < c->changes->n; i++)
        if (strcmp(c->changes->v[i].signal, name) == 0 && strcmp(c->changes->v[i].account_id, c->account_id) == 0)
            return 1;
    return 0;
}

static int lookup(void *ud, const char *path, size_t len, cs_value *out)
{
    struct rctx *c = ud;
    if (len > 6 && memcmp(path, "event.", 6) == 0) return c->event ? value_of_json(json_path(c->event, path + 6, len - 6), out) : 0;
    if (len > 5 && memcmp(path, "lead.", 5) == 0) {
        const cJSON *props = c->event ? cJSON_GetObjectItemCaseSensitive(c->event, "properties") : NULL;
        if (is(path + 5, len - 5, "domain")) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(props, "email");
            const char *at = cJSON_IsString(e) ? strrchr(e->valuestring, '@') : NULL;
            if (!at) return 0;
            *out = cs_vstr(at + 1, strlen(at + 1));
            return 1;
        }
        return value_of_json(json_path(props, path + 5, len - 5), out);
    }
    if (len > 8 && memcmp(path, "account.", 8) == 0) {
        const char *f = path + 8;
        size_t fl = len - 8;
        if (is(f, fl, "id")) {
            if (!c->account_id) return 0;
            *out = cs_vstr(c->account_id, strlen(c->account_id));
            return 1;
        }
        if (!c->have_view) return 0;
        if (is(f, fl, "plan_tier")) {
            if (c->view.plan_tier == CS_SIG_TIER_NONE) return 0;
            const char *t = cs_sig_tier_name(c->view.plan_tier);
            *out = cs_vstr(t, strlen(t));
            return 1;
        }
        if (is(f, fl, "renewal_days")) {
            if (c->view.renewal_day == CS_SIG_NO_DAY) return 0;
            *out = cs_vint(c->view.renewal_day - c->view.asof_day);
            return 1;
        }
        return 0;
    }
    if (len > 8 && memcmp(path, "signals.", 8) == 0) {
        if (!c->have_view) return 0;
        const char *f = path + 8;
        size_t fl = len - 8;
        const cs_sig_view *v = &c->view;
        if (is(f, fl, "usage_score")) *out = cs_vdouble(v->usage_score);
        else if (is(f, fl, "health_score")) *out = cs_vdouble(v->health);
        else if (is(f, fl, "engagement_drop")) *out = cs_vbool(v->engagement_drop);
        else if (is(f, fl, "renewal_ticket_spike")) *out = cs_vbool(v->renewal_spike);
        else if (is(f, fl, "trial_handoff")) *out = cs_vbool(v->trial_handoff);
        else if (is(f, fl, "health_band")) {
            const char *b = cs_sig_band_name(v->band);
            *out = cs_vstr(b, strlen(b));
        } else if (is(f, fl, "activation_stage")) {
            const char *s = cs_sig_stage_name(v->stage);
            *out = cs_vstr(s, strlen(s));
        } else
            return 0;
        return 1;
    }
    if (len > 8 && memcmp(path, "changed.", 8) == 0) {
        char name[64];
        if (len - 8 >= sizeof name) return 0;
        memcpy(name, path + 8, len - 8);
        name[len - 8] = '\0';
        *out = cs_vbool(signal_changed(c, name));
        return 1;
    }
    return 0;
}

static int field(void *ud, const cs_value *m, const char *key, size_t len, cs_value *out)
{
    (void)ud;
    char k[128];
    if (len >= sizeof k) return 0;
    memcpy(k, key, len);
    k[len] = '\0';
    return value_of_json(cJSON_GetObjectItemCaseSensitive((const cJSON *)m->u.map.p, k), out);
}

static const char *render(const cs_action *a, const char *key, cs_expr_env *env, char *buf, size_t cap)
{
    const cs_param *p = cs_action_param(a, key);
    if (!p) return NULL;
    if (p->tpl) {
        const char *why = NULL;
        if (cs_template_render(p->tpl, env, buf, cap, 0, &why) < 0) return NULL;
        return buf;
    }
    return p->text;
}

/* A stable id for an effect: the same cause, account and action give the
 * same id, so a replay inserts nothing new (a sweep is one cause for many
 * accounts, hence the account in the key). */
static void effect_id(char *out, size_t n, const char *prefix, const char *cause, const char *account,
                      const cs_action *a, size_t idx)
{
    char k[512];
    snprintf(k, sizeof k, "%s|%s|%s|%zu", cause, account ? account : "", a->rule_id, idx);
    size_t l = strlen(k);
    snprintf(out, n, "%s_%08x%08x", prefix, (uint32_t)cs_murmur2(k, l), cs_crc32c(0, k, l));
}

static int on_owner(const cs_row *row, void *arg)
{
    char *owner = arg;
    int c = cs_obj_col(row->def, "owner");
    snprintf(owner, 161, "%s", c > 0 && row->vals[c] ? row->vals[c] : "");
    return 1;
}

/* assign_owner: the rep named (template), or one picked from a pool by
 * the routing strategies (capacity, hours and out-of-office apply). */
static int assign_owner(cs_store *st, const cs_action *a, cs_expr_env *env, struct rctx *c, const cs_config *cfg,
                        int64_t ts_us, const cs_cause *cause, const char **label)
{
    char b[256];
    const char *rep = render(a, "rep", env, b, sizeof b);
    const cs_param *pool = cs_action_param(a, "pool");
    if (!c->account_id || (!pool && (!rep || !*rep))) {
        *label = "skipped";
        return 0;
    }
    static _Thread_local cs_route_result r; /* 8 KiB: not on the stack; one per worker thread */
    cs_route_policy p;
    char owner[161];
    if (pool) {
        /* A pool gives an UNOWNED account an owner (so a replay, or the
         * rule firing again, does not move it); rep: reassigns. */
        struct { char owner[161]; } cur = {""};
        int rc = st->ops->obj_find_tx(st, CS_OBJ_ACCOUNT, "id", c->account_id, on_owner, &cur);
        if (rc < 0) return -1;
        if (rc == 0 && cur.owner[0]) {
            *label = "already_owned";
            return 0;
        }
        memset(&p, 0, sizeof p);
        snprintf(p.rule_id, sizeof p.rule_id, "%s", a->rule_id);
        snprintf(p.pool, sizeof p.pool, "%s", pool->text);
        const cs_param *s = cs_action_param(a, "strategy");
        p.strategy = s ? cs_route_strategy_parse(s->text) : CS_RS_ROUND_ROBIN;
        if (p.strategy < 0) p.strategy = CS_RS_ROUND_ROBIN;
        cs_route_policy_normalise(&p);
        cs_config none;
        memset(&none, 0, sizeof none);
        cs_route_reps reps = {0};
        char rot[160];
        /* per partition: an account worker owns its partitions, so the pick
         * does not depend on how many workers run */
        snprintf(rot, sizeof rot, "routing.assign.%s.%s.p%d", p.weighted ? "wrr" : "rr", p.pool, cause->partition);
        int64_t slot = 0;
        if (st->ops->counter_get(st, rot, &slot) || cs_route_reps_load(st, cfg ? cfg : &none, &reps, 0)) {
            cs_route_reps_free(&reps);
            return -1;
        }
        cs_route_lead lead = {.account_id = c->account_id};
        cs_route_decide(&p, &lead, reps.v, reps.n, ts_us, slot, NULL, 0, &r);
        int found = r.owner != NULL;
        if (found) snprintf(owner, sizeof owner, "%s", r.owner); /* r.owner points into reps */
        cs_route_reps_free(&reps);
        if (!found) {
            *label = "no_eligible_rep";
            return 0;
        }
        if (r.next_slot >= 0 && st->ops->counter_set(st, rot, r.next_slot)) return -1;
    } else {
        snprintf(owner, sizeof owner, "%.160s", rep);
    }
    cs_kv kv[1] = {{"owner", owner}};
    return st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, c->account_id, kv, 1, cause) < 0 ? -1 : 0;
}

/* emit_event: a derived event must reach the log to be replayable, and
 * the pipeline holds no bus handle (it never writes the log). So the event
 * is written, in this transaction, to the outbox under destination "log":
 * the canonical event ({event_id, type, account_id, timestamp, properties,
 * derived_from: {event_id, rule}}) with a deterministic event_id, so a
 * replay writes the same row and a relay that appends it to the `events`
 * topic twice is deduplicated by ingest's event_id window. The relay (claim
 * dest "log" rows, produce them, report delivered) runs where a bus handle
 * is: see docs/RULES.md "emit_event". */
static int emit_event(cs_store *st, const cs_action *a, size_t idx, cs_expr_env *env, struct rctx *c,
                      const char *cause_id, int64_t ts_us, const cs_cause *cause)
{
    const cs_param *t = cs_action_param(a, "type");
    char eid[64], at[40], b[512];
    effect_id(eid, sizeof eid, "drv", cause_id, c->account_id, a, idx);
    cs_fmt_time_ms(ts_us, at, sizeof at);
    cJSON *ev = cJSON_CreateObject(), *props = cJSON_CreateObject(), *from = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "event_id", eid);
    cJSON_AddStringToObject(ev, "type", t ? t->text : a->rule_id);
    if (c->account_id) cJSON_AddStringToObject(ev, "account_id", c->account_id);
    cJSON_AddStringToObject(ev, "timestamp", at);
    for (size_t i = 0; i < a->nparams; i++) {
        const cs_param *p = &a->params[i];
        if (strncmp(p->key, "properties.", 11) != 0) continue;
        const char *why = NULL;
        if (p->tpl && cs_template_render(p->tpl, env, b, sizeof b, 0, &why) >= 0)
            cJSON_AddStringToObject(props, p->key + 11, b);
        else if (!p->tpl && p->text)
            cJSON_AddStringToObject(props, p->key + 11, p->text);
    }
    cJSON_AddItemToObject(ev, "properties", props);
    cJSON_AddStringToObject(from, "event_id", cause_id);
    cJSON_AddStringToObject(from, "rule", a->rule_id);
    cJSON_AddItemToObject(ev, "derived_from", from);
    char *payload = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    int rc = cs_outbox_enqueue(st, CS_OUTBOX_DEST_LOG, eid, payload, cause);
    cJSON_free(payload);
    return rc < 0 ? -1 : 0;
}

static int act(cs_store *st, const cs_rule_hit *h, size_t idx, cs_expr_env *env, struct rctx *c, const char *cause_id,
               int partition, int64_t offset, int64_t ts_us, const cs_config *cfg)
{
    const cs_action *a = h->action;
    char at[40], id[64], b1[512], b2[512], b3[256], due[40];
    cs_fmt_time_ms(ts_us, at, sizeof at);
    cs_cause cause = {.event_id = cause_id, .partition = partition, .offset = offset, .rule_id = a->rule_id, .at = at};
    const char *label = "applied";
    int rc = 0;
    switch (a->kind) {
    case CS_ACT_CREATE_TASK: {
        const cs_param *d = cs_action_param(a, "due_in");
        cs_fmt_time_ms(ts_us + (d ? d->dur_us : 0), due, sizeof due);
        const char *title = render(a, "title", env, b1, sizeof b1);
        const char *owner = render(a, "owner", env, b3, sizeof b3);
        effect_id(id, sizeof id, "task", cause_id, c->account_id, a, idx);
        cs_kv kv[7];
        size_t n = 0;
        kv[n++] = (cs_kv){"title", title ? title : a->rule_id};
        kv[n++] = (cs_kv){"due_at", due};
        kv[n++] = (cs_kv){"kind", a->rule_id};
        kv[n++] = (cs_kv){"status", "open"};
        kv[n++] = (cs_kv){"rule_id", a->rule_id};
        if (c->account_id) kv[n++] = (cs_kv){"account_id", c->account_id};
        if (owner && *owner) kv[n++] = (cs_kv){"owner", owner};
        rc = st->ops->obj_insert(st, CS_OBJ_TASK, id, kv, n, &cause);
        break;
    }
    case CS_ACT_RAISE_ALERT: {
        const cs_param *k = cs_action_param(a, "kind"), *sv = cs_action_param(a, "severity");
        const char *msg = render(a, "message", env, b1, sizeof b1);
        /* One row per firing: the key plus the event time it fired at (the
         * cooldown, in event time, already suppressed repeats). */
        snprintf(b2, sizeof b2, "%s@%s", h->dedupe_key, at);
        effect_id(id, sizeof id, "alert", cause_id, c->account_id, a, idx);
        cs_kv kv[6];
        size_t n = 0;
        kv[n++] = (cs_kv){"dedupe_key", b2};
        kv[n++] = (cs_kv){"kind", k ? k->text : a->rule_id};
        kv[n++] = (cs_kv){"severity", sv ? sv->text : "warning"};
        if (msg) kv[n++] = (cs_kv){"message", msg};
        if (c->account_id) kv[n++] = (cs_kv){"account_id", c->account_id};
        rc = st->ops->obj_insert(st, CS_OBJ_ALERT, id, kv, n, &cause);
        break;
    }
    case CS_ACT_SET_FIELD: {
        const cs_param *o = cs_action_param(a, "object"), *f = cs_action_param(a, "field");
        const char *v = render(a, "value", env, b1, sizeof b1);
        int obj = o && strcmp(o->text, "account") == 0 ? CS_OBJ_ACCOUNT : -1;
        if (obj < 0 || !c->account_id || !f || !v) {
            label = "skipped";
            break;
        }
        cs_kv kv[1] = {{f->text, v}};
        char why[160];
        const char *bad;
        if (cs_obj_check(&cs_objdefs[obj], c->account_id, kv, 1, why, sizeof why, &bad) != 0) {
            label = "invalid";
            cs_warn("rules", "set_field not applied", "\"rule\":\"%s\",\"why\":\"%s\"", a->rule_id, why);
            break;
        }
        rc = st->ops->obj_upsert(st, obj, c->account_id, kv, 1, &cause);
        break;
    }
    case CS_ACT_WEBHOOK:
    case CS_ACT_SLACK: {
        /* Through the outbox, in this transaction: no notification without
         * its effect. The envelope is shallow with stable keys
         * (docs/OUTBOUND.md); its timestamp is event time so a replay
         * writes the same bytes under the same id. */
        const cs_param *d = cs_action_param(a, "destination");
        if (!d) {
            label = "invalid";
            break;
        }
        cJSON *env_json = cJSON_CreateObject(), *data = cJSON_CreateObject();
        cJSON_AddStringToObject(env_json, "type", "rule.fired");
        cJSON_AddStringToObject(env_json, "timestamp", at);
        cJSON_AddStringToObject(env_json, "title", a->rule_id);
        const char *text = render(a, a->kind == CS_ACT_SLACK ? "text" : "template", env, b1, sizeof b1);
        if (text) cJSON_AddStringToObject(env_json, "text", text);
        cJSON_AddStringToObject(data, "rule", a->rule_id);
        cJSON_AddStringToObject(data, "event_id", cause_id);
        if (c->account_id) cJSON_AddStringToObject(data, "account_id", c->account_id);
        const char *et = c->event ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c->event, "type")) : NULL;
        if (et) cJSON_AddStringToObject(data, "event_type", et);
        if (c->have_view) {
            cJSON_AddNumberToObject(data, "usage_score", c->view.usage_score);
            cJSON_AddNumberToObject(data, "health_score", c->view.health);
        }
        cJSON_AddItemToObject(env_json, "data", data);
        /* ingest time of the cause, for the ingest -> delivered latency */
        const char *recv = c->event ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c->event, "received_at")) : NULL;
        if (recv) cJSON_AddStringToObject(env_json, "received_at", recv);
        char *payload = cJSON_PrintUnformatted(env_json);
        cJSON_Delete(env_json);
        char k[300];
        snprintf(k, sizeof k, "%s|%s", cause_id, c->account_id ? c->account_id : "");
        cs_outbox_id(k, a->rule_id, d->text, id, sizeof id);
        rc = cs_outbox_enqueue(st, d->text, id, payload, &cause);
        cJSON_free(payload);
        break;
    }
    case CS_ACT_ROUTE_LEAD:
        label = "lane"; /* leads_apply.c routes the lead */
        break;
    case CS_ACT_ASSIGN_OWNER:
        rc = assign_owner(st, a, env, c, cfg, ts_us, &cause, &label);
        break;
    case CS_ACT_EMIT_EVENT:
        rc = emit_event(st, a, idx, env, c, cause_id, ts_us, &cause);
        break;
    default:
        label = "not_wired";
        break;
    }
    char l[96];
    snprintf(l, sizeof l, "action=\"%s\",result=\"%s\"", cs_action_name(a->kind), rc < 0 ? "error" : label);
    cs_metric_inc(cs_m.rule_actions, l, 1);
    return rc < 0 ? -1 : 0;
}

int cs_pipeline_apply_rules(cs_store *st, cs_pipeline_rules *r, cs_sig_engine *sig, int partition, const cs_rec *rec,
                            const void *event, const char *account_id, const cs_sig_changes *changes, int64_t ts_us,
                            const char *cause_id)
{
    if (!r || !r->rules) return 0;
    struct rctx c = {.event = event, .account_id = account_id, .changes = changes};
    if (sig && account_id) c.have_view = cs_sig_view_account(sig, account_id, strlen(account_id), &c.view) == 0;
    static _Thread_local cs_expr_env env; /* ~8 KiB: not on the stack of every call */
    cs_expr_env_init(&env, lookup, field, &c);
    cs_rule_hit hits[64];
    cs_rules_stats stats = {0};
    size_t n = cs_rules_eval(r->rules, &env, ts_us, r->cooldown, hits, 64, &stats);
    if (stats.errors && rec) {
        /* A rule that errors on this event: poison (DESIGN-BRIEF §3.7). The
         * batch is retried without it, then it goes to the DLQ with the
         * rule and the error, so fixing the rule and redriving applies it. */
        char why[256];
        snprintf(why, sizeof why, "rule %s: %s", stats.last_error_rule ? stats.last_error_rule : "?",
                 stats.last_error ? stats.last_error : "evaluation error");
        cs_pipeline_poison(why);
        cs_metric_inc(cs_m.rule_errors, NULL, stats.errors);
        return CS_PIPELINE_POISON;
    }
    for (size_t i = 0; i < n; i++)
        if (act(st, &hits[i], i, &env, &c, cause_id, partition, rec ? rec->offset : -1, ts_us, r->cfg) < 0) return -1;
    return 0;
}

size_t cs_pipeline_rules_hits(cs_pipeline_rules *r, const void *event, const char *account_id, int64_t ts_us,
                              cs_rule_hit *hits, size_t max)
{
    if (!r || !r->rules) return 0;
    struct rctx c = {.event = event, .account_id = account_id};
    static _Thread_local cs_expr_env env;
    cs_expr_env_init(&env, lookup, field, &c);
    return cs_rules_eval(r->rules, &env, ts_us, NULL, hits, max, NULL);
}
