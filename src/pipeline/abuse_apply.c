/*
 * pipeline/abuse_apply — signup abuse: every TrialActivated, LeadCreated and
 * DemoRequested goes through the velocity engine (src/signals/abuse.h: per
 * email domain, IP and device within minutes, plus disposable domains); a
 * flagged signup raises a `signup_abuse` alert about its domain (account_id
 * "domain:<domain>", the key prospects are partitioned by), at most once a
 * day per domain (a cooldown in event time).
 *
 * The engine is global state: this version keeps one per pipeline, which is
 * exact with the single pipeline worker; the leads lane (one ordered owner
 * for global decisions, design brief principle 5) is where it moves when
 * the pipeline runs several workers.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "metrics/catalog.h"
#include "pipeline/pipeline.h"
#include "signals/abuse.h"

#define ABUSE_COOLDOWN_US (86400LL * 1000000)

static const char *prop(const cJSON *ev, const char *k)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(ev, "properties");
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, k));
    if (!v && strcmp(k, "ip") == 0)
        v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ev, "context"), "ip"));
    return v;
}

int cs_pipeline_apply_abuse(cs_store *st, cs_pipeline_rules *r, int partition, const cs_rec *rec, const void *event,
                            int write)
{
    const cJSON *ev = event;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));
    if (!r || !r->abuse || !type ||
        (strcmp(type, "TrialActivated") && strcmp(type, "LeadCreated") && strcmp(type, "DemoRequested")))
        return 0;
    const char *ts = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "timestamp"));
    int64_t t;
    if (!ts || cs_parse_time(ts, &t) != 0) return 0;
    cs_abuse_event ae = {.ts_us = t, .email = prop(ev, "email"), .ip = prop(ev, "ip"), .device_id = prop(ev, "device_id")};
    cs_abuse_result res;
    cs_abuse_check(r->abuse, &ae, &res);
    if (!res.flagged || !res.domain[0]) return 0;
    char key[160];
    snprintf(key, sizeof key, "abuse:%s", res.domain);
    if (cs_cooldown_check(r->abuse_cooldown, key, strlen(key), t, ABUSE_COOLDOWN_US)) return 0;
    if (!write) return 0; /* rebuilding state: the alert was written the first time */
    char why[256] = "", at[40], id[64], acc[160], dk[200];
    size_t w = 0;
    for (int i = 0; i < res.n_reasons && w < sizeof why - 1; i++)
        w += (size_t)snprintf(why + w, sizeof why - w, "%s%s (%u of max %u)", i ? ", " : "", res.reasons[i].code,
                              res.reasons[i].count, res.reasons[i].limit);
    char msg[512];
    snprintf(msg, sizeof msg, "signup risk %d/100 for %.127s: %.255s", res.score, res.domain, why);
    cs_fmt_time_ms(t, at, sizeof at);
    const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "event_id"));
    char k2[256];
    snprintf(k2, sizeof k2, "%s|signup_abuse", eid ? eid : "");
    snprintf(id, sizeof id, "alert_%08x%08x", (uint32_t)cs_murmur2(k2, strlen(k2)), cs_crc32c(0, k2, strlen(k2)));
    snprintf(acc, sizeof acc, "domain:%.127s", res.domain);
    snprintf(dk, sizeof dk, "%.150s@%.39s", key, at);
    cs_kv kv[] = {{"dedupe_key", dk}, {"kind", "signup_abuse"}, {"severity", "warning"}, {"message", msg},
                  {"account_id", acc}};
    cs_cause cause = {.event_id = eid ? eid : "", .partition = partition, .offset = rec->offset,
                      .rule_id = "signals.signup_abuse", .at = at};
    int rc = st->ops->obj_insert(st, CS_OBJ_ALERT, id, kv, sizeof kv / sizeof kv[0], &cause);
    cs_metric_inc(cs_m.rule_actions, rc < 0 ? "action=\"raise_alert\",result=\"error\"" : "action=\"raise_alert\",result=\"applied\"", 1);
    return rc < 0 ? -1 : 0;
}
