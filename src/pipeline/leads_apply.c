/*
 * pipeline/leads_apply — a lead event becomes a lead row: its id (derived
 * from the event id, so a replay writes the same row), the routing decision
 * (src/routing) with its explanation and SLA deadline, and the audit rows;
 * all in the caller's transaction.
 *
 * The policy: the first route_lead action of a rule matching the event
 * (when the caller passes the rules), else the config's routing.* section.
 * The decision time is the lead's log-append time, so a replay decides the
 * same (and writes nothing: leads are unique by event id).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/hash.h"
#include "core/util.h"
#include "metrics/catalog.h"
#include "pipeline/pipeline.h"
#include "routing/router.h"

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void copy(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "");
}

/* A lead id derived from its event id: stable across replays, URL-safe. */
static void lead_id(const char *event_id, char *out, size_t n)
{
    size_t len = strlen(event_id);
    uint32_t a = (uint32_t)cs_murmur2(event_id, len), b = cs_crc32c(0, event_id, len);
    snprintf(out, n, "ld_%08x%08x", a, b);
}

/* The company's domain from properties.company_domain, .domain or
 * .website ("https://www.Acme.com/about" -> "acme.com"), or "". */
static void company_domain(const cJSON *props, char *out, size_t n)
{
    static const char *const keys[] = {"company_domain", "domain", "website"};
    out[0] = '\0';
    for (size_t k = 0; k < 3 && !out[0]; k++) {
        const char *v = str_of(props, keys[k]);
        if (!v) continue;
        const char *p = strstr(v, "://");
        p = p ? p + 3 : v;
        if (strncasecmp(p, "www.", 4) == 0) p += 4;
        size_t len = strcspn(p, "/:?#");
        if (len == 0 || len >= n) continue;
        for (size_t i = 0; i < len; i++) out[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] - 'A' + 'a' : p[i]);
        out[len] = '\0';
    }
}

/* The route_lead action's parameters as a policy. */
static void policy_of_action(const cs_action *a, cs_route_policy *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->rule_id, sizeof p->rule_id, "%s", a->rule_id);
    const cs_param *v;
    if ((v = cs_action_param(a, "strategy"))) p->strategy = cs_route_strategy_parse(v->text) < 0 ? 0 : cs_route_strategy_parse(v->text);
    if ((v = cs_action_param(a, "pool"))) snprintf(p->pool, sizeof p->pool, "%s", v->text);
    if ((v = cs_action_param(a, "fallback"))) snprintf(p->fallback, sizeof p->fallback, "%s", v->text);
    if ((v = cs_action_param(a, "match_account"))) p->match_account = v->num != 0;
    if ((v = cs_action_param(a, "territory"))) p->territory = v->num != 0;
    if ((v = cs_action_param(a, "working_hours"))) p->working_hours = v->num != 0;
    if ((v = cs_action_param(a, "max_open_leads"))) p->max_open_leads = v->num;
    if ((v = cs_action_param(a, "sla"))) p->sla_us = v->dur_us;
    cs_route_policy_normalise(p);
}

int cs_pipeline_apply_lead(cs_store *st, const cs_config *cfg, int partition, const cs_rec *rec, const void *event)
{
    return cs_pipeline_apply_lead_ctx(st, cfg, partition, rec, event, NULL);
}

int cs_pipeline_apply_lead_ctx(cs_store *st, const cs_config *cfg, int partition, const cs_rec *rec,
                               const void *event, const cs_lead_ctx *ctx)
{
    const cJSON *ev = event;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(ev, "properties");
    static _Thread_local cs_lead l; /* ~10 KiB: not on the stack */
    memset(&l, 0, sizeof l);
    const char *eid = str_of(ev, "event_id");
    lead_id(eid, l.id, sizeof l.id);
    copy(l.event_id, sizeof l.event_id, eid);
    copy(l.account_id, sizeof l.account_id, str_of(ev, "account_id"));
    copy(l.email, sizeof l.email, str_of(props, "email"));
    copy(l.company, sizeof l.company, str_of(props, "company"));
    copy(l.country, sizeof l.country, str_of(props, "country"));
    copy(l.source, sizeof l.source, str_of(props, "source"));
    company_domain(props, l.domain, sizeof l.domain); /* else the email's (src/routing) */
    const cJSON *emp = cJSON_GetObjectItemCaseSensitive(props, "employee_count");
    l.employee_count = cJSON_IsNumber(emp) ? (long)emp->valuedouble : -1;
    copy(l.created_at, sizeof l.created_at, str_of(ev, "timestamp"));
    l.partition = partition;
    l.offset = rec->offset;

    cs_route_policy p;
    cs_route_policy_from_config(cfg, &p);
    if (ctx && ctx->rules && ctx->rules->rules) {
        cs_rule_hit hits[64];
        int64_t ts = rec->ts_us;
        (void)cs_parse_time(l.created_at, &ts);
        size_t n = cs_pipeline_rules_hits(ctx->rules, ev, l.account_id[0] ? l.account_id : NULL, ts, hits, 64);
        for (size_t i = 0; i < n; i++)
            if (hits[i].action->kind == CS_ACT_ROUTE_LEAD) {
                policy_of_action(hits[i].action, &p);
                break;
            }
    }

    static _Thread_local cs_route_result d; /* 8 KiB */
    if (cs_route_lead_store(st, cfg, &p, &l, rec->append_us, NULL, 0, &d)) return -1;
    /* routed_at is the log-append time: identical after a replay. */
    cs_fmt_time_ms(rec->append_us, l.routed_at, sizeof l.routed_at);
    l.route_latency_ms = (double)(cs_now_us() - rec->ts_us) / 1000.0;

    int ins = st->ops->lead_insert(st, &l);
    if (ins < 0) return -1;
    if (ins == 0) return 0; /* already applied: no effect, rotation unchanged */
    if (cs_route_commit(st, &p, &d)) return -1;
    cs_pipeline_note_routed(rec->ts_us);
    char lbl[48];
    snprintf(lbl, sizeof lbl, "via=\"%s\"", d.via);
    cs_metric_inc(cs_m.routing_decisions, lbl, 1);
    char rule[160];
    snprintf(rule, sizeof rule, "%s", strcmp(p.rule_id, "routing.default") == 0 ? "routing.round_robin" : p.rule_id);
    if (strcmp(p.rule_id, "routing.default") == 0 && strcmp(d.via, "round_robin") != 0)
        snprintf(rule, sizeof rule, "routing.%s", d.via);
    cs_audit a = {.object = "lead", .object_id = l.id, .field = "owner", .old_value = NULL,
                  .new_value = d.owner, .cause_event_id = eid, .partition = partition,
                  .offset = rec->offset, .rule_id = rule, .at = l.routed_at};
    if (st->ops->audit_insert(st, &a)) return -1;
    a.field = "status";
    a.new_value = l.status;
    return st->ops->audit_insert(st, &a);
}
