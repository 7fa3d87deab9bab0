/*
 * ingest — the front door's logic, independent of the HTTP library: decode a
 * request body, validate each event, append the valid ones to the bus and
 * build the answer the design brief §5 specifies:
 *   200 {"accepted": N, "duplicates": D, "rejected": [{index, code, field, message}]}
 *
 * Owns request decoding and the answer's shape. Never writes the store: the
 * log is the only thing ingest changes, and only after validation.
 */
#ifndef CS_INGEST_INGEST_H
#define CS_INGEST_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "core/config.h"
#include "core/util.h"

typedef struct cs_ingest {
    cs_bus          *bus;
    const cs_config *cfg;
    /* counters (atomic), for the summary and later /metrics */
    uint64_t accepted, rejected, requests_failed;
} cs_ingest;

/* POST /v1/events: one object, an array of objects, or NDJSON. Returns the
 * HTTP status; resp gets the JSON body; *retry_after is set (seconds) for
 * 503. */
int cs_ingest_native(cs_ingest *ing, const char *body, size_t len, int64_t received_us,
                     cs_buf *resp, int *retry_after);

#endif
