/*
 * pipeline/leads_apply — a lead event becomes a lead row: its id (derived
 * from the event id, so a replay writes the same row), the routing decision
 * (src/routing) with its explanation, and the audit rows; all in the
 * caller's transaction.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "core/util.h"
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

int cs_pipeline_apply_lead(cs_store *st, const cs_config *cfg, int partition, const cs_rec *rec, const void *event)
{
    const cJSON *ev = event;
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(ev, "properties");
    cs_lead l;
    memset(&l, 0, sizeof l);
    const char *eid = str_of(ev, "event_id");
    lead_id(eid, l.id, sizeof l.id);
    copy(l.event_id, sizeof l.event_id, eid);
    copy(l.account_id, sizeof l.account_id, str_of(ev, "account_id"));
    copy(l.email, sizeof l.email, str_of(props, "email"));
    copy(l.company, sizeof l.company, str_of(props, "company"));
    copy(l.country, sizeof l.country, str_of(props, "country"));
    copy(l.source, sizeof l.source, str_of(props, "source"));
    const cJSON *emp = cJSON_GetObjectItemCaseSensitive(props, "employee_count");
    l.employee_count = cJSON_IsNumber(emp) ? (long)emp->valuedouble : -1;
    copy(l.created_at, sizeof l.created_at, str_of(ev, "timestamp"));
    l.partition = partition;
    l.offset = rec->offset;

    cs_route_decision d;
    if (cs_route_round_robin(cfg, st, &d)) return -1;
    copy(l.status, sizeof l.status, d.owner ? "routed" : "unassigned");
    copy(l.owner, sizeof l.owner, d.owner);
    copy(l.route_reason, sizeof l.route_reason, d.reason);
    /* routed_at is the log-append time: identical after a replay. */
    cs_fmt_time_ms(rec->append_us, l.routed_at, sizeof l.routed_at);
    l.route_latency_ms = (double)(cs_now_us() - rec->ts_us) / 1000.0;

    int ins = st->ops->lead_insert(st, &l);
    if (ins < 0) return -1;
    if (ins == 0) return 0; /* already applied: no effect, pointer unchanged */
    if (cs_route_commit(st, &d)) return -1;
    cs_pipeline_note_routed(rec->ts_us);
    cs_audit a = {.object = "lead", .object_id = l.id, .field = "owner", .old_value = NULL,
                  .new_value = d.owner, .cause_event_id = eid, .partition = partition,
                  .offset = rec->offset, .rule_id = "routing.round_robin", .at = l.routed_at};
    if (st->ops->audit_insert(st, &a)) return -1;
    a.field = "status";
    a.new_value = l.status;
    return st->ops->audit_insert(st, &a);
}
