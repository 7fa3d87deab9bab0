/*
 * ingest — the front door's logic, independent of the HTTP library: decode a
 * request body (Content-Encoding, UTF-8, JSON), authenticate its write key,
 * validate each event, drop duplicates inside the dedupe window, append the
 * rest to the bus and build the answer the design brief §5 specifies:
 *   200 {"accepted": N, "duplicates": D, "rejected": [{index, code, field, message}]}
 *
 * Endpoints: native /v1/events (native.c), the Segment tracking API
 * (segment.c), CloudEvents /v1/cloudevents (cloudevents.c). Shared machinery: ingest.c (auth, body, one request's batch,
 * dedupe rebuild), body.c, auth.c, dedupe.c, jsoncheck.c, event.c.
 *
 * Owns request decoding, the dedupe window and the write keys' buckets.
 * Never writes the store: the log is the only thing ingest changes, and
 * only after validation.
 */
#ifndef CS_INGEST_INGEST_H
#define CS_INGEST_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "core/config.h"
#include "core/util.h"
#include "ingest/auth.h"
#include "ingest/dedupe.h"

typedef struct cs_ingest {
    cs_bus          *bus;
    const cs_config *cfg;
    cs_auth          auth;     /* nkeys 0: open ingest */
    cs_dedupe        dedupe;   /* ring NULL: no dedupe (a zero-initialised cs_ingest still works) */
    /* counters (atomic), for the summary and /metrics */
    uint64_t accepted, duplicates, rejected, requests_failed, unauthorized, rate_limited;
    /* the dedupe window: bytes reserved (ring + index), and the start-up rebuild */
    size_t   dedupe_bytes;
    uint64_t dedupe_rebuilt_ids, dedupe_rebuild_records;
    double   dedupe_rebuild_ms;
    /* Backpressure: events the consumers are behind (set by the server;
     * NULL = none). Past cfg->pipeline_max_lag ingest answers 503. */
    int64_t (*backlog)(void *arg);
    void    *backlog_arg;
} cs_ingest;

/* Set up auth and the dedupe window, and rebuild the window from the
 * `events` topic (every partition from offset 0 through bus->ops->fetch,
 * skipping records older than the window by their ingest time). Returns 0,
 * or -1 with err filled when the log cannot be read. */
int cs_ingest_init(cs_ingest *ing, cs_bus *bus, const cs_config *cfg, char *err, size_t errlen);
void cs_ingest_destroy(cs_ingest *ing);

/* One ingest request as the HTTP layer hands it over (pointers borrowed). */
typedef struct cs_ingest_req {
    const char *body;
    size_t      len;
    const char *content_encoding;  /* header value or NULL */
    const char *authorization;     /* header value or NULL */
    int64_t     received_us;       /* wall clock at arrival */
} cs_ingest_req;

/* POST /v1/events: one object, an array of objects, or NDJSON. Returns the
 * HTTP status; resp gets the JSON body; *retry_after is set (seconds) for
 * 429 and 503. */
int cs_ingest_native(cs_ingest *ing, const cs_ingest_req *req, cs_buf *resp, int *retry_after);

/* POST /v1/{batch,track,identify,group,page,screen}: call is the last path
 * segment. Same answer as cs_ingest_native. */
int cs_ingest_segment(cs_ingest *ing, const char *call, const cs_ingest_req *req, cs_buf *resp,
                      int *retry_after);

/* A request header by name (case-insensitive), or NULL: how ingest reads
 * the Content-Type and CloudEvents' ce-* headers without knowing the HTTP
 * library. */
typedef const char *(*cs_ingest_header_fn)(void *arg, const char *name);

/* Every request header in turn, cb(cbarg, name, value): how binary-mode
 * CloudEvents take each ce-* header as an attribute. */
typedef void (*cs_ingest_each_header_fn)(void *arg, void (*cb)(void *cbarg, const char *name, const char *value),
                                         void *cbarg);

/* POST /v1/cloudevents: CloudEvents 1.0 in structured, batch or binary
 * mode (docs/API.md "CloudEvents"). header looks one header up; each
 * (may be NULL: then only a fixed list of ce-* headers is read) walks them
 * all, so every ce-* header becomes an attribute. Same answer as
 * cs_ingest_native. */
int cs_ingest_cloudevents(cs_ingest *ing, const cs_ingest_req *req, cs_ingest_header_fn header,
                          cs_ingest_each_header_fn each, void *header_arg, cs_buf *resp, int *retry_after);

/* 1 for the types ingest also appends to the leads lane's topic
 * (LeadCreated, DemoRequested, TrialActivated). */
int cs_ingest_is_lane_type(const char *type);

/* Redrive (ingest/redrive.c): append a dead-lettered event's canonical
 * JSON again with "_redrive": dlq_id under key, once per dlq_id within the
 * dedupe window. 1 appended, 0 already redriven, -1 (errno: EINVAL when
 * json is not an object or already a redrive; else the log's error). */
int cs_ingest_redrive(cs_ingest *ing, const char *dlq_id, const char *key, const char *json, size_t len);
/* The dedupe key of a redrive, and the marker of a redriven record (1 and
 * the dlq id, or 0). */
void cs_ingest_redrive_key(const char *dlq_id, size_t len, uint64_t id[2]);
int cs_ingest_redrive_mark(const char *v, size_t len, const char **id, size_t *idlen);

#endif
