/*
 * pipeline/signals_apply — feed account events to the partition's signals
 * engine (src/signals) and write the changes it reports — only changes,
 * never one write per raw event — each with its cause (event id, partition,
 * offset) and the rule "signals.<name>", inside the batch's transaction.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "core/logging.h"
#include "metrics/catalog.h"
#include "pipeline/pipeline.h"
#include "signals/decode.h"

/* The account's health fields carry the score and why (its components with
 * their weights), beside the signal history. */
static int upsert_health(cs_store *st, const cs_sig_change *c, const cs_cause *cause)
{
    char why[512];
    cs_sig_change_reason(c, why, sizeof why);
    cJSON *f = cJSON_CreateObject(), *bd = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "health_score", c->new_value);
    cJSON_AddStringToObject(bd, "explanation", why);
    cJSON_AddItemToObject(f, "health_breakdown", bd);
    cs_kv kv[4];
    char err[200];
    const char *field;
    int n = cs_obj_kv_from_json(&cs_objdefs[CS_OBJ_ACCOUNT], f, 1, kv, 4, err, sizeof err, &field);
    cJSON_Delete(f);
    if (n < 0) return 0; /* cannot happen with these two columns; never fail the batch on it */
    int rc = st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, c->account_id, kv, (size_t)n, cause);
    cs_obj_kv_free(kv, n);
    return rc < 0 ? -1 : 0;
}

int cs_pipeline_write_signal_changes(cs_store *st, const cs_sig_changes *ch, const char *event_id, int partition,
                                     int64_t offset)
{
    for (size_t i = 0; i < ch->n; i++) {
        const cs_sig_change *c = &ch->v[i];
        char rule[64], at[40];
        snprintf(rule, sizeof rule, "signals.%s", c->signal);
        cs_fmt_time_ms(c->at_us, at, sizeof at);
        cs_cause cause = {.event_id = event_id, .partition = partition, .offset = offset, .rule_id = rule, .at = at};
        if (st->ops->signal_set(st, c->account_id, c->signal, c->new_value, &cause) < 0) return -1;
        if (strcmp(c->signal, CS_SIG_HEALTH_SCORE) == 0 && upsert_health(st, c, &cause) < 0) return -1;
    }
    return 0;
}

int cs_pipeline_apply_signals(cs_store *st, cs_sig_engine *sig, cs_pipeline_rules *rules, int partition,
                              const cs_rec *rec, const void *event, int write)
{
    if (!sig) return 0;
    cs_sig_event ev;
    if (cs_sig_decode(event, &ev) != CS_SIG_OK) return 0; /* a prospect's lead: the leads lane's */
    cs_sig_changes ch;
    cs_sig_changes_init(&ch);
    int rc = cs_sig_apply(sig, &ev, &ch), ret = 0;
    if (rc == CS_SIG_LATE || rc == CS_SIG_FULL) {
        /* Not applied to the signals (its other effects stand): kept in the
         * DLQ with its reason, so it is never silent and can be replayed. */
        cs_metric_inc(cs_m.pipeline_events, rc == CS_SIG_LATE ? "result=\"late\"" : "result=\"signals_full\"", 1);
        if (write) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(event, "event_id");
            ret = cs_pipeline_dead_event(st, partition, rec, cJSON_IsString(id) ? id->valuestring : NULL,
                                         rc == CS_SIG_LATE ? "late_event" : "signals_account_limit",
                                         rc == CS_SIG_LATE ? "event time is behind the partition's watermark by more "
                                                             "than the allowed lateness"
                                                           : "the partition's signals engine holds its maximum of accounts");
        }
    } else if (rc == CS_SIG_OK && write) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(event, "event_id");
        const char *eid = cJSON_IsString(id) ? id->valuestring : "";
        if (ch.n) {
            ret = cs_pipeline_write_signal_changes(st, &ch, eid, partition, rec->offset);
            cs_pipeline_note_signal(rec->ts_us);
        }
        const cJSON *acc = cJSON_GetObjectItemCaseSensitive(event, "account_id");
        if (ret == 0 && cJSON_IsString(acc))
            ret = cs_pipeline_apply_rules(st, rules, sig, partition, rec, event, acc->valuestring, &ch, ev.ts_us, eid);
    }
    cs_sig_changes_free(&ch);
    return ret;
}
