/*
 * routing/sla — the SLA sweep (router.h): a routed lead not accepted by its
 * sla_due_at is re-routed with the policy it was routed with (kept in its
 * explanation), every previous owner excluded, and an alert is raised.
 *
 * The deadline lives in the store (leads.sla_due_at), so it survives a
 * restart; the clock is the caller's (now_us), so tests drive it. The sweep
 * is a wall-clock effect (design brief principle 2: SLA timers are the one
 * place wall time decides), so a replay of the log does not repeat it: its
 * audit rows carry rule "routing.sla" and the lead's own event as cause.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "metrics/catalog.h"
#include "routing/router.h"

#define MAX_PREVIOUS 16

struct due {
    char (*id)[160];
    int   n, max;
};

static int on_due(const cs_lead *l, void *arg)
{
    struct due *d = arg;
    if (d->n < d->max) snprintf(d->id[d->n++], 160, "%s", l->id);
    return d->n >= d->max;
}

static void str_field(const cJSON *o, const char *k, char *dst, size_t n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsString(v)) snprintf(dst, n, "%s", v->valuestring);
}

static int bool_field(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* The policy the lead was routed with, and its previous owners. */
static void policy_of(const cs_config *cfg, const cs_lead *l, cs_route_policy *p, char prev[][161], size_t *nprev)
{
    cs_route_policy_from_config(cfg, p);
    *nprev = 0;
    cJSON *e = cJSON_Parse(l->route_explanation);
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(e, "policy");
    if (cJSON_IsObject(pol)) {
        str_field(e, "rule", p->rule_id, sizeof p->rule_id);
        char strat[40] = "";
        str_field(e, "strategy", strat, sizeof strat);
        int s = cs_route_strategy_parse(strat);
        if (s >= 0) p->strategy = s;
        p->pool[0] = '\0';
        str_field(pol, "pool", p->pool, sizeof p->pool);
        str_field(pol, "fallback", p->fallback, sizeof p->fallback);
        p->match_account = bool_field(pol, "match_account");
        p->territory = bool_field(pol, "territory");
        p->working_hours = bool_field(pol, "working_hours");
        p->weighted = bool_field(pol, "weighted");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(pol, "max_open_leads");
        p->max_open_leads = cJSON_IsNumber(m) ? (int64_t)m->valuedouble : 0;
        const cJSON *sla = cJSON_GetObjectItemCaseSensitive(pol, "sla_s");
        p->sla_us = cJSON_IsNumber(sla) ? (int64_t)sla->valuedouble * 1000000 : 0;
    }
    const cJSON *po = cJSON_GetObjectItemCaseSensitive(e, "previous_owners");
    for (const cJSON *it = cJSON_IsArray(po) ? po->child : NULL; it && *nprev < MAX_PREVIOUS - 1; it = it->next)
        if (cJSON_IsString(it)) snprintf(prev[(*nprev)++], 161, "%s", it->valuestring);
    if (l->owner[0] && *nprev < MAX_PREVIOUS) snprintf(prev[(*nprev)++], 161, "%s", l->owner);
    cJSON_Delete(e);
    cs_route_policy_normalise(p);
}

static int breach(cs_store *st, const cs_config *cfg, cs_lead *l, int64_t now_us, cs_sla_stats *stats)
{
    cs_route_policy p;
    char prev[MAX_PREVIOUS][161];
    size_t nprev;
    policy_of(cfg, l, &p, prev, &nprev);
    const char *ex[MAX_PREVIOUS];
    for (size_t i = 0; i < nprev; i++) ex[i] = prev[i];
    char old_owner[161], old_due[40], at[40];
    snprintf(old_owner, sizeof old_owner, "%s", l->owner);
    snprintf(old_due, sizeof old_due, "%s", l->sla_due_at);
    cs_fmt_time_ms(now_us, at, sizeof at);

    static _Thread_local cs_route_result r; /* 8 KiB: not on the stack */
    if (cs_route_lead_store(st, cfg, &p, l, now_us, ex, nprev, &r)) return -1;
    char reason[600];
    snprintf(reason, sizeof reason, "SLA breach by %.60s (due %s): %s", old_owner, old_due, l->route_reason);
    size_t rl = strlen(reason);
    if (rl >= sizeof l->route_reason) rl = sizeof l->route_reason - 1;
    memcpy(l->route_reason, reason, rl);
    l->route_reason[rl] = '\0';
    snprintf(l->routed_at, sizeof l->routed_at, "%s", at);
    if (st->ops->lead_update(st, l) < 0) return -1;
    if (cs_route_commit(st, &p, &r)) return -1;

    /* The alert: one per (lead, owner who missed it). */
    char key[400], id[64], msg[1200];
    snprintf(key, sizeof key, "lead_sla:%s:%s", l->id, old_owner);
    size_t kl = strlen(key);
    snprintf(id, sizeof id, "alert_%08x%08x", (uint32_t)cs_murmur2(key, kl), cs_crc32c(0, key, kl));
    if (r.owner)
        snprintf(msg, sizeof msg, "Lead %s (%s) was not accepted by %s by %s: re-routed to %s", l->id, l->email,
                 old_owner, old_due, r.owner);
    else
        snprintf(msg, sizeof msg, "Lead %s (%s) was not accepted by %s by %s and no other rep is eligible: queued in %s",
                 l->id, l->email, old_owner, old_due, p.fallback);
    cs_kv kv[] = {{"dedupe_key", key}, {"kind", "lead_sla_breach"}, {"severity", "warning"}, {"message", msg}};
    cs_cause cause = {.event_id = l->event_id, .partition = l->partition, .offset = l->offset,
                      .rule_id = "routing.sla", .at = at};
    if (st->ops->obj_insert(st, CS_OBJ_ALERT, id, kv, 4, &cause) < 0) return -1;
    cs_audit a = {.object = "lead", .object_id = l->id, .field = "owner", .old_value = old_owner,
                  .new_value = r.owner, .cause_event_id = l->event_id, .partition = l->partition,
                  .offset = l->offset, .rule_id = "routing.sla", .at = at};
    if (st->ops->audit_insert(st, &a)) return -1;
    if (!r.owner) {
        a.field = "status";
        a.old_value = "routed";
        a.new_value = l->status;
        if (st->ops->audit_insert(st, &a)) return -1;
    }
    stats->breached++;
    if (r.owner) stats->rerouted++;
    else stats->queued++;
    cs_metric_inc(cs_m.routing_sla, r.owner ? "result=\"rerouted\"" : "result=\"queued\"", 1);
    cs_warn("routing", "lead SLA breached", "\"lead\":\"%s\",\"owner\":\"%s\",\"new_owner\":\"%s\"", l->id, old_owner,
            r.owner ? r.owner : "");
    return 0;
}

int cs_routing_sla_sweep(cs_store *st, const cs_config *cfg, int64_t now_us, int limit, cs_sla_stats *stats)
{
    cs_sla_stats local = {0};
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (limit <= 0 || limit > 1000) limit = 100;
    char due[40];
    cs_fmt_time_ms(now_us, due, sizeof due);
    /* ids first (no lead is written while the query runs), then each lead */
    struct due d = {cs_malloc((size_t)limit * 160), 0, limit};
    int rc = st->ops->lead_sla_due(st, due, limit, on_due, &d);
    static _Thread_local cs_lead l; /* ~10 KiB: not on the stack */
    for (int i = 0; rc >= 0 && i < d.n; i++) {
        int got = st->ops->lead_load(st, d.id[i], &l);
        if (got < 0 || (got == 0 && breach(st, cfg, &l, now_us, stats))) rc = -1;
    }
    free(d.id);
    return rc < 0 ? -1 : stats->breached;
}
