/*
 * warehouse — the `warehouse` consumer group of the `events` topic: the same
 * events, exactly once, in PostgreSQL (COPY into `events`, positions in
 * `warehouse_offsets` in the same transaction) and/or in partitioned zstd
 * NDJSON files (temp + fsync + rename, a CRC-checked append-only manifest).
 * docs/WAREHOUSE.md has the tables, the file layout and the argument.
 *
 * Owns one thread per configured destination, each with its own positions;
 * commits the slower one's position as the bus group "warehouse" (lag and
 * retention). Never writes the log or the CRM store, and never blocks ingest
 * or the pipeline: a destination that is down or slow only falls behind, and
 * retries with backoff (10 ms doubling to 5 s) until it catches up.
 */
#ifndef CS_WAREHOUSE_WAREHOUSE_H
#define CS_WAREHOUSE_WAREHOUSE_H

#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "core/config.h"
#include "core/util.h"

#define CS_CONSUMER_WAREHOUSE "warehouse"

typedef struct cs_warehouse cs_warehouse;

/* 1 when warehouse.postgres or warehouse.dir is set. */
int cs_warehouse_configured(const cs_config *cfg);
/* Register the group and start a thread per configured destination. A
 * destination that cannot be reached is retried in its thread, so only bad
 * configuration fails here: NULL with err. */
cs_warehouse *cs_warehouse_start(cs_bus *bus, const cs_config *cfg, char *err, size_t errlen);
/* Finish the current batch and join. NULL is fine. */
void cs_warehouse_stop(cs_warehouse *wh);
/* Records not yet written by the slowest destination (-1: a destination
 * has not loaded its positions yet). */
int64_t cs_warehouse_lag(cs_warehouse *wh);
/* Pause (1) or resume (0) every destination. Pausing waits up to
 * timeout_ms for the batches in flight to commit; returns 1 when every
 * destination is parked (nothing is written until resume), 0 when one is
 * still busy (it parks after its batch). While paused the sink only falls
 * behind: ingest and the pipeline never wait for it. */
int cs_warehouse_pause(cs_warehouse *wh, int paused, int timeout_ms);
/* {"paused":..,"lag":..,"destinations":[{"name","lag","failing","errors","parked"}]} */
void cs_warehouse_status_json(cs_warehouse *wh, cs_buf *out);

#endif
