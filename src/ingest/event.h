/*
 * ingest/event — the canonical event: validation of a decoded JSON object
 * into it, and its canonical serialization (the bytes stored in the log).
 *
 * Owns the rules of what a valid event is (design brief §5). Never touches
 * the bus or the store. Field pointers are borrowed from the cJSON tree the
 * event was validated from.
 */
#ifndef CS_INGEST_EVENT_H
#define CS_INGEST_EVENT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define CS_ID_MAX   128   /* event_id, account_id, user_id */
#define CS_TYPE_MAX 64

/* A per-event validation error: code (stable, machine-readable), the field
 * (dotted path) and a human message. */
typedef struct cs_verr {
    const char *code;
    char        field[96];
    char        message[256];
} cs_verr;

typedef struct cs_event {
    const char *event_id;
    const char *type;
    const char *account_id;   /* NULL for a lead from a prospect with no account */
    const char *user_id;
    const char *product_area;
    const char *plan_tier;
    int64_t     ts_us;        /* event time; received time when absent */
    int         has_ts;
    const cJSON *properties;  /* object or NULL */
    const cJSON *context;     /* object or NULL */
    char        lead_domain[128]; /* email domain, for leads with no account */
    /* Merged in when serialized, for senders whose event is spread over
     * several places (Segment): context_base's keys that context does not
     * hold are written first in "context"; prop_name/prop_category (when
     * set and not already in properties) first in "properties". */
    const cJSON *context_base;
    const char  *prop_name, *prop_category;
} cs_event;

/* Validate obj as a native event. Returns 0, or -1 with err set. */
int cs_event_validate(const cJSON *obj, int64_t received_us, cs_event *ev, cs_verr *err);

/* The rules on an event whose fields are already set (by cs_event_validate,
 * or field by field by a mapping such as Segment's): required fields and
 * their lengths, the type's name, the per-type properties, the lead's email
 * domain. Returns 0, or -1 with err set. */
int cs_event_check(cs_event *ev, cs_verr *err);

/* The partition key: account_id, or "domain:<email domain>" for a lead with
 * no account yet. */
const char *cs_event_key(const cs_event *ev, char *buf, size_t len);

/* Canonical JSON (compact) of the event plus ingest metadata, appended to out. */
void cs_event_serialize(const cs_event *ev, const char *source, int64_t received_us, cs_buf *out);

/* Ingest metadata written with an event, and what the dedupe window needs. */
typedef struct cs_event_meta {
    const char *source;        /* "native", "segment", "cloudevents" */
    const char *write_key;     /* name of the write key, or NULL (open ingest) */
    int64_t     received_us;
    int         has_client_ts; /* the sender gave a time (else ts is the receive time) */
    int64_t     client_ts_us;  /* that time, before any clock-skew correction */
} cs_event_meta;

/* Canonical JSON like cs_event_serialize, plus "write_key" (when set) and
 * "payload_hash" (16 hex digits) last. Sets id_fp to the 128-bit fingerprint
 * of the event id and *payload to the 64-bit payload hash: XXH3 over the
 * canonical bytes without the ingest metadata (source, received_at,
 * write_key) and with the timestamp replaced by the client's time (none when
 * the sender gave none), so a retry hashes the same however late it comes. */
void cs_event_serialize_full(const cs_event *ev, const cs_event_meta *m, cs_buf *out, uint64_t id_fp[2],
                             uint64_t *payload);

/* The same two values from stored canonical bytes, without a JSON parse.
 * *payload is 0 when the record carries no payload_hash. Returns 0, or -1
 * when value is not canonical JSON written by cs_event_serialize*. */
int cs_event_dedupe_keys(const char *value, size_t len, uint64_t id_fp[2], uint64_t *payload);

/* 1 when type is a known type: the six seed types and the types Segment
 * calls map to (ContactIdentified, AccountGrouped, PageViewed, ScreenViewed). */
int cs_event_type_known(const char *type);

/* 1 when type is one of the lead/signup types routed by the leads lane. */
int cs_event_is_lead(const char *type);

/* Validate UTF-8; returns -1 when valid, else the offset of the first bad byte. */
long cs_utf8_invalid_at(const char *s, size_t len);

#endif
