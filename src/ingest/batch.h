/*
 * ingest/batch — internal to src/ingest: the steps every ingest endpoint
 * shares once it has a list of events. Request level: body decoding and
 * auth (cs_ingest_open). Event level: validation against the policy
 * (types, timestamps, sizes), canonical serialization, dedupe, the append
 * and the answer (cs_batch_*).
 */
#ifndef CS_INGEST_BATCH_H
#define CS_INGEST_BATCH_H

#include <cjson/cJSON.h>

#include "ingest/event.h"
#include "ingest/ingest.h"

/* Error answer helper: JSON error body, returns status. */
int cs_ingest_fail(cs_ingest *ing, cs_buf *resp, int status, const char *code, const char *msg, const char *field);

/* A decoded request body. */
typedef struct cs_ingest_body {
    const char  *data;
    size_t       len;
    cs_buf       decoded;   /* owns data when the body was compressed */
    cs_auth_key *key;       /* the key from the Authorization header, or NULL */
    int          header_key;/* an Authorization header was present */
} cs_ingest_body;

/* Decode Content-Encoding, check UTF-8 and the Authorization header (an
 * unknown key there is final: 401). Returns 0, or the HTTP status with resp
 * set. Always call cs_ingest_body_free. */
int cs_ingest_open(cs_ingest *ing, const cs_ingest_req *req, cs_ingest_body *b, cs_buf *resp);
/* The same without the UTF-8 check, for a caller that parses with
 * cs_json_fast_parse (which validates UTF-8 as it reads) and calls
 * cs_ingest_utf8 before its checked path. */
int cs_ingest_open_raw(cs_ingest *ing, const cs_ingest_req *req, cs_ingest_body *b, cs_buf *resp);
/* 0, or 400 invalid_utf8 with the byte offset. */
int cs_ingest_utf8(cs_ingest *ing, const cs_ingest_body *b, cs_buf *resp);
void cs_ingest_body_free(cs_ingest_body *b);

/* The body (opened with cs_ingest_open_raw) as one JSON value: first
 * cs_json_fast_parse over it all; when that declines, the checked path —
 * UTF-8, empty body, strict syntax, cJSON, nothing after the value — which
 * accepts or answers exactly as if it had run alone. Returns 0 with *root
 * set (free with cs_json_arena_delete), or the HTTP status with resp set. */
int cs_ingest_parse_one(cs_ingest *ing, const cs_ingest_body *b, cJSON **root, cs_buf *resp);

/* After parsing: settle the key (header, else body_key from the body's
 * writeKey) and the rate limit for nevents. Returns 0, or 401/429. */
int cs_ingest_authorize(cs_ingest *ing, cs_ingest_body *b, const char *body_key, size_t nevents, cs_buf *resp,
                        int *retry_after);

/* Strict syntax of body[start..len) (cs_json_syntax; multi: NDJSON) before
 * cJSON: 0, or 400 malformed_json / too_deep / invalid_value with the byte
 * offset in the message. */
int cs_ingest_syntax(cs_ingest *ing, const char *body, size_t len, size_t start, int multi, cs_buf *resp);

/* Skip a UTF-8 byte order mark (RFC 8259 §8.1 lets a parser ignore it):
 * returns 3 when body starts with one, else 0. */
size_t cs_ingest_bom(const char *body, size_t len);

/* A JSON parse failure: 400 too_deep or malformed_json with the offset. */
int cs_ingest_parse_error(cs_ingest *ing, const char *body, size_t len, const char *stop, cs_buf *resp);

/* Renames a native field path to the sender's vocabulary in errors. */
typedef void (*cs_field_map)(const char *native, char *out, size_t n, void *arg);

typedef struct cs_batch_item {
    size_t   index;          /* position in the request */
    size_t   off, len;       /* canonical bytes in vals */
    char     key[160];       /* partition key */
    uint64_t id[2], payload;
    const char *type_label;  /* metrics label: seed type or "custom" */
} cs_batch_item;

typedef struct cs_batch {
    cs_ingest     *ing;
    cs_event_meta  meta;
    const char    *id_field;   /* "event_id" or "messageId", for id_conflict */
    size_t         total;      /* events in the request */
    cs_buf         vals;
    cs_batch_item *items;
    size_t         n, cap;
    cs_buf         rej;
    size_t         nrej;
    cs_verr        first;
} cs_batch;

void cs_batch_init(cs_batch *b, cs_ingest *ing, const char *source, const char *id_field, int64_t received_us,
                   size_t total);
void cs_batch_free(cs_batch *b);
void cs_batch_reject(cs_batch *b, size_t index, const cs_verr *err);
/* Validate obj (native shape) and queue it; rejects it (recorded) on
 * failure. has_client_ts/client_ts_us: the sender's own time, if any (the
 * payload hash uses it instead of a derived timestamp). */
void cs_batch_add(cs_batch *b, size_t index, const cJSON *obj, int has_client_ts, int64_t client_ts_us,
                  cs_field_map map, void *map_arg);
/* The same for an event whose fields a mapping set one by one (Segment):
 * cs_event_check instead of cs_event_validate. */
void cs_batch_add_event(cs_batch *b, size_t index, cs_event *ev, int has_client_ts, int64_t client_ts_us,
                        cs_field_map map, void *map_arg);
/* Dedupe, append, answer. Returns the HTTP status. */
int cs_batch_finish(cs_batch *b, cs_buf *resp, int *retry_after);

#endif
