/*
 * pipeline/admin — applying the admin events the REST API appends to the log
 * (design brief principle 1: every change to CRM state goes through the log).
 *
 *   {"event_id": "adm_…", "type": "AccountUpserted" | "RepUpserted",
 *    "object_id": "<id>", "account_id": "<id>" (accounts only),
 *    "timestamp": "<request time>", "properties": {<fields to set>}}
 *
 * The fields are set with obj_upsert, so each changed field gets an audit row
 * whose cause is this event (rule id "api"), and a replay gives the same
 * result. The API validated the event before appending it; an event that
 * still does not validate (a foreign writer, an older schema) is counted as
 * poison and skipped, never retried forever.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "core/logging.h"
#include "pipeline/pipeline.h"
#include "routing/router.h"

int cs_pipeline_admin_object(const char *type)
{
    if (strcmp(type, "AccountUpserted") == 0) return CS_OBJ_ACCOUNT;
    if (strcmp(type, "RepUpserted") == 0) return CS_OBJ_REP;
    if (strcmp(type, "LeadAccepted") == 0) return CS_ADMIN_LEAD_ACCEPTED;
    return -1;
}

/*   {"event_id": "adm_…", "type": "LeadAccepted", "object_id": "<lead id>",
 *    "timestamp": "<request time>", "properties": {"rep": "<rep id>"?}}
 * The lead becomes accepted (its SLA stops) when it is routed and waiting,
 * and rep (when given) is its owner; otherwise nothing changes (logged). */
static int apply_accept(cs_store *st, int partition, const cs_rec *rec, const cJSON *ev, uint64_t *poison)
{
    const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "event_id"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "object_id"));
    const char *at = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "timestamp"));
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(ev, "properties");
    const cJSON *rep = cJSON_GetObjectItemCaseSensitive(props, "rep");
    if (!id || !*id || !at || (rep && !cJSON_IsString(rep)) || cJSON_GetObjectItemCaseSensitive(ev, "payload_hash")) {
        (*poison)++;
        cs_error("pipeline", "invalid admin event skipped", "\"partition\":%d,\"offset\":%lld,\"field\":\"%s\"",
                 partition, (long long)rec->offset, !id || !*id ? "object_id" : !at ? "timestamp" : "properties.rep");
        return 0;
    }
    cs_cause cause = {.event_id = eid, .partition = partition, .offset = rec->offset, .rule_id = "api", .at = at};
    return cs_routing_accept(st, id, rep ? rep->valuestring : NULL, &cause) < 0 ? -1 : 0;
}

int cs_pipeline_apply_admin(cs_store *st, int partition, const cs_rec *rec, const void *event, uint64_t *poison)
{
    const cJSON *ev = event;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));
    const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "event_id"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "object_id"));
    if (!id && type && strcmp(type, "AccountUpserted") == 0) /* an account event names its account */
        id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "account_id"));
    const char *at = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "timestamp"));
    int obj = type ? cs_pipeline_admin_object(type) : -1;
    if (obj == CS_ADMIN_LEAD_ACCEPTED) return apply_accept(st, partition, rec, ev, poison);
    /* Only the API writes admin events. Ingest stamps every event it takes
     * with payload_hash, so one carrying it was sent by a client to the
     * ingest endpoints: refuse it rather than let ingest bypass the API's
     * validation (ingest should reject these types at the door as well). */
    if (cJSON_GetObjectItemCaseSensitive(ev, "payload_hash")) obj = -1;
    const cs_objdef *def = obj >= 0 ? &cs_objdefs[obj] : NULL;
    cs_kv kv[CS_OBJ_MAXCOLS];
    char why[200] = "not an admin event written by the API";
    const char *field = NULL;
    int n = def ? cs_obj_kv_from_json(def, cJSON_GetObjectItemCaseSensitive(ev, "properties"), 0, kv, CS_OBJ_MAXCOLS, why,
                                      sizeof why, &field)
                : -1;
    if (n >= 0 && cs_obj_check(def, id, kv, (size_t)n, why, sizeof why, &field) != 0) {
        cs_obj_kv_free(kv, n);
        n = -1;
    }
    if (n < 0) {
        (*poison)++;
        cs_error("pipeline", "invalid admin event skipped", "\"partition\":%d,\"offset\":%lld,\"field\":\"%s\"",
                 partition, (long long)rec->offset, field ? field : "");
        return 0;
    }
    cs_cause cause = {.event_id = eid, .partition = partition, .offset = rec->offset, .rule_id = "api",
                      .at = at ? at : ""};
    int rc = st->ops->obj_upsert(st, obj, id, kv, (size_t)n, &cause);
    cs_obj_kv_free(kv, n);
    return rc < 0 ? -1 : 0;
}

/* ---- Segment identify / group: contact and account upserts -------------- */

/* The traits as object fields: a trait named like a column (and of the
 * column's type) sets it; anything else is kept under "custom". A trait of
 * the wrong type for its column is kept under custom too, never dropped. */
static int traits_to_kv(const cs_objdef *def, const cJSON *traits, const char *account_id, cs_kv *kv, size_t max,
                        char *why, size_t whylen, const char **field)
{
    cJSON *fields = cJSON_CreateObject(), *custom = cJSON_CreateObject();
    for (const cJSON *t = traits ? traits->child : NULL; t; t = t->next) {
        int c = cs_obj_col(def, t->string);
        int settable = c > 0 && strcmp(t->string, "custom") != 0 && !(def->cols[c].flags & CS_COL_RO);
        cJSON_AddItemToObject(settable ? fields : custom, t->string, cJSON_Duplicate(t, 1));
    }
    if (account_id && cs_obj_col(def, "account_id") > 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(fields, "account_id");
        cJSON_AddStringToObject(fields, "account_id", account_id);
    }
    int n;
    static _Thread_local char bad[96]; /* the field named in an error outlives the JSON */
    for (;;) {
        cJSON *all = cJSON_Duplicate(fields, 1);
        if (custom->child) cJSON_AddItemToObject(all, "custom", cJSON_Duplicate(custom, 1));
        n = cs_obj_kv_from_json(def, all, 0, kv, max, why, whylen, field);
        snprintf(bad, sizeof bad, "%s", *field ? *field : "");
        *field = n < 0 ? bad : NULL;
        cJSON_Delete(all);
        if (n >= 0 || !bad[0] || !cJSON_GetObjectItemCaseSensitive(fields, bad)) break;
        /* Move the offending trait to custom and try again. */
        cJSON_AddItemToObject(custom, bad, cJSON_DetachItemFromObjectCaseSensitive(fields, bad));
    }
    cJSON_Delete(fields);
    cJSON_Delete(custom);
    return n;
}

int cs_pipeline_apply_traits(cs_store *st, int partition, const cs_rec *rec, const void *event, uint64_t *poison)
{
    const cJSON *ev = event;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "type"));
    const char *eid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "event_id"));
    const char *acc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "account_id"));
    const char *user = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "user_id"));
    const char *at = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "timestamp"));
    int group = strcmp(type, "AccountGrouped") == 0;
    int obj = group ? CS_OBJ_ACCOUNT : CS_OBJ_CONTACT;
    const char *id = group ? acc : user;
    const cs_objdef *def = &cs_objdefs[obj];
    cs_kv kv[CS_OBJ_MAXCOLS];
    char why[200] = "";
    const char *field = NULL;
    int n = id ? traits_to_kv(def, cJSON_GetObjectItemCaseSensitive(ev, "properties"), group ? NULL : acc, kv,
                              CS_OBJ_MAXCOLS, why, sizeof why, &field)
               : -1;
    if (n >= 0 && cs_obj_check(def, id, kv, (size_t)n, why, sizeof why, &field) != 0) {
        cs_obj_kv_free(kv, n);
        n = -1;
    }
    if (n < 0) {
        (*poison)++;
        cs_error("pipeline", "identify/group event not applicable: skipped",
                 "\"partition\":%d,\"offset\":%lld,\"field\":\"%s\"", partition, (long long)rec->offset,
                 field ? field : (id ? "" : (group ? "account_id" : "user_id")));
        return 0;
    }
    cs_cause cause = {.event_id = eid, .partition = partition, .offset = rec->offset,
                      .rule_id = group ? "segment.group" : "segment.identify", .at = at ? at : ""};
    int rc = st->ops->obj_upsert(st, obj, id, kv, (size_t)n, &cause);
    cs_obj_kv_free(kv, n);
    return rc < 0 ? -1 : 0;
}
