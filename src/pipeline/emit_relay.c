/*
 * pipeline/emit_relay — derived events (rules' emit_event, written by
 * rules_apply.c to the outbox under destination "log" in the batch's
 * transaction) appended to the `events` topic, where they are applied like
 * any event and replayable.
 *
 * The leads lane calls it a few times a second (pipeline.c). The same relay
 * carries dead letters to the `events.dlq` topic on Kafka (destination
 * "dlq", written by pipeline/dlq.c in the batch's transaction).
 * At least once: a crash between the append and the report appends the same
 * event again, with the same event_id (derived deterministically from its
 * cause), so consumers can drop the repeat.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "core/util.h"
#include "pipeline/pipeline.h"

struct claimed {
    char  *id[256];
    char  *payload[256];
    int    attempt[256];
    int    n;
};

static int on_claim(const cs_outbox_row *r, void *arg)
{
    struct claimed *c = arg;
    if (c->n == 256) return 1;
    c->id[c->n] = cs_strdup(r->id);
    c->payload[c->n] = cs_strdup(r->payload);
    c->attempt[c->n] = r->attempt;
    c->n++;
    return 0;
}

/* Claim up to max due rows of outbox destination dest and append each to
 * topic: keyed by its "key" member when it has one (dead letters: the
 * source record's key, so the same partition), else by account_id, else
 * "derived:<event_id>". */
static int relay(cs_store *st, cs_bus *bus, const char *dest_name, const char *topic, int64_t now_ms, int max)
{
    if (max <= 0 || max > 256) max = 256;
    struct claimed c = {.n = 0};
    if (st->ops->outbox_claim(st, dest_name, now_ms, now_ms + 60000, max, on_claim, &c) < 0) return -1;
    int relayed = 0, rc = 0;
    for (int i = 0; i < c.n; i++) {
        cJSON *ev = cJSON_Parse(c.payload[i]);
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "key"));
        const char *acc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "account_id"));
        const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "event_id"));
        char key[300], dest[64];
        if (k) snprintf(key, sizeof key, "%s", k);
        else snprintf(key, sizeof key, "%s%s", acc ? "" : "derived:", acc ? acc : eid ? eid : c.id[i]);
        cs_msg m = {.key = key, .key_len = strlen(key), .value = c.payload[i], .value_len = strlen(c.payload[i]),
                    .ts_us = now_ms * 1000};
        int64_t recv;
        if (!ev) {
            /* never written by rules_apply or dlq.c: dead-letter it, do not loop */
            if (st->ops->outbox_report(st, CS_OUTBOX_DEAD, c.id[i], c.attempt[i], now_ms, "not JSON", dest, &recv) < 0)
                rc = -1;
        } else if (bus->ops->produce(bus, topic, &m, 1) == 0) {
            if (st->ops->outbox_report(st, CS_OUTBOX_DELIVERED, c.id[i], c.attempt[i], now_ms, NULL, dest, &recv) < 0)
                rc = -1;
            else
                relayed++;
        } else {
            cs_warn("pipeline", "outbox record not appended to the log: retrying", "\"id\":\"%s\",\"topic\":\"%s\"",
                    c.id[i], topic);
            if (st->ops->outbox_report(st, CS_OUTBOX_RETRY, c.id[i], c.attempt[i], now_ms + 1000, "log append failed",
                                       dest, &recv) < 0)
                rc = -1;
        }
        cJSON_Delete(ev);
        free(c.id[i]);
        free(c.payload[i]);
    }
    return rc < 0 ? -1 : relayed;
}

int cs_pipeline_relay_derived(cs_store *st, cs_bus *bus, int64_t now_ms, int max)
{
    return relay(st, bus, CS_OUTBOX_DEST_LOG, CS_TOPIC_EVENTS, now_ms, max);
}

int cs_pipeline_relay_dlq(cs_store *st, cs_bus *bus, int64_t now_ms, int max)
{
    return relay(st, bus, CS_OUTBOX_DEST_DLQ, CS_TOPIC_DLQ, now_ms, max);
}
