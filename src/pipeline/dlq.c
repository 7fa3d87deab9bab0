/*
 * pipeline/dlq — the dead-letter queue for events (kind "event"): an event
 * the pipeline cannot apply is kept with its original bytes, the reason
 * (undecodable, late_event, signals_account_limit), a message, attempts and
 * its place in the log, inside the batch's transaction; the partition moves
 * on. A store failure is never poison: the batch rolls back and is retried.
 * Listed by GET /api/v1/dlq?kind=event and `crmstream dlq list --kind event`.
 *
 * Ids are "dlq_<partition>_<offset>", so a replay writes nothing twice.
 * Failures here are deterministic (the same bytes fail the same way), so an
 * event is dead-lettered on its first attempt (attempts = 1).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/event.h"
#include "metrics/catalog.h"
#include "pipeline/pipeline.h"

#define DLQ_PAYLOAD_MAX (256 * 1024)

static int dlq_topic;

void cs_pipeline_dlq_topic(int on)
{
    __atomic_store_n(&dlq_topic, on, __ATOMIC_RELAXED);
}

int cs_pipeline_dead_event(cs_store *st, int partition, const cs_rec *rec, const char *event_id, const char *reason,
                           const char *message)
{
    char at[40];
    cs_fmt_time_ms(rec->append_us, at, sizeof at);
    return cs_pipeline_dead_event_ex(st, partition, rec, event_id, reason, message, "1", at, at);
}

int cs_pipeline_dead_event_ex(cs_store *st, int partition, const cs_rec *rec, const char *event_id, const char *reason,
                              const char *message, const char *attempts, const char *first_failed_at,
                              const char *last_failed_at)
{
    char id[64], at[40];
    snprintf(id, sizeof id, "dlq_%d_%lld", partition, (long long)rec->offset);
    cs_fmt_time_ms(rec->append_us, at, sizeof at);
    /* The original bytes as text; bytes that are not UTF-8 are kept as hex
     * so nothing is lost (bounded: the log keeps the full record). */
    size_t n = rec->value_len < DLQ_PAYLOAD_MAX ? rec->value_len : DLQ_PAYLOAD_MAX;
    cs_buf payload;
    cs_buf_init(&payload);
    if (cs_utf8_invalid_at(rec->value, n) < 0 && !memchr(rec->value, 0, n)) {
        cs_buf_add(&payload, rec->value, n);
    } else {
        static const char hex[] = "0123456789abcdef";
        cs_buf_adds(&payload, "hex:");
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)rec->value[i];
            char h[2] = {hex[c >> 4], hex[c & 15]};
            cs_buf_add(&payload, h, 2);
        }
    }
    cs_kv kv[] = {{"event_id", event_id},   {"reason", reason},        {"message", message},
                  {"attempts", attempts},   {"first_failed_at", first_failed_at}, {"last_failed_at", last_failed_at},
                  {"payload", payload.data}, {"status", "dead"}};
    cs_cause cause = {.event_id = event_id, .partition = partition, .offset = rec->offset, .rule_id = "pipeline",
                      .at = at};
    int rc = st->ops->obj_insert(st, CS_OBJ_DEAD_EVENT, id, kv, sizeof kv / sizeof kv[0], &cause);
    if (rc > 0 && __atomic_load_n(&dlq_topic, __ATOMIC_RELAXED)) {
        /* Kafka: the dead letter also goes to `events.dlq`, through the
         * outbox in this transaction (relayed by the leads lane), keyed like
         * its source so it lands in the same partition. */
        cJSON *env = cJSON_CreateObject();
        cJSON_AddStringToObject(env, "dlq_id", id);
        char *k = cs_malloc(rec->key_len + 1);
        if (rec->key_len) memcpy(k, rec->key, rec->key_len);
        k[rec->key_len] = 0;
        cJSON_AddStringToObject(env, "key", k);
        free(k);
        if (event_id) cJSON_AddStringToObject(env, "event_id", event_id);
        cJSON_AddStringToObject(env, "reason", reason);
        if (message) cJSON_AddStringToObject(env, "message", message);
        cJSON_AddNumberToObject(env, "attempts", atoi(attempts));
        cJSON_AddNumberToObject(env, "partition", partition);
        cJSON_AddNumberToObject(env, "offset", (double)rec->offset);
        cJSON_AddStringToObject(env, "failed_at", last_failed_at);
        cJSON_AddStringToObject(env, "payload", payload.data);
        char *text = cJSON_PrintUnformatted(env);
        cJSON_Delete(env);
        if (cs_outbox_enqueue(st, CS_OUTBOX_DEST_DLQ, id, text, &cause) < 0) rc = -1;
        cJSON_free(text);
    }
    cs_buf_free(&payload);
    char l[96];
    snprintf(l, sizeof l, "reason=\"%s\"", reason);
    if (rc > 0) cs_metric_inc(cs_m.dlq_events, l, 1);
    return rc < 0 ? -1 : 0;
}
