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

#endif
