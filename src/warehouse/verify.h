/*
 * warehouse/verify — `crmstream verify warehouse`: the warehouse's
 * destinations against the log they were written from.
 *
 * For each configured destination (the PostgreSQL `events` table; the zstd
 * NDJSON files, decompressed with libzstd, and their manifest) and for the
 * log (read through the bus interface, like the sink): counts per event type
 * per day (the event's time, UTC; received_at when it has none), and every
 * event_id's multiplicity compared with the log's, which finds events
 * missing, written twice, or not in the log at all. Exact and bounded in
 * memory: event ids are compared as 64-bit hashes in a table of at most
 * `ids_per_pass` ids (~48 bytes each); a larger log is verified in several
 * passes over disjoint hash ranges, each re-reading the log and the
 * destinations.
 *
 * Destinations are read first and the log after, each up to its current end,
 * so a sink that is behind shows as missing events (with how far behind its
 * stored positions are); rows of offsets retention has deleted from the log
 * are left out of the comparison and counted.
 */
#ifndef CS_WAREHOUSE_VERIFY_H
#define CS_WAREHOUSE_VERIFY_H

#include <stdint.h>
#include <stdio.h>

#include "bus/bus.h"
#include "core/config.h"

#define CS_WH_VERIFY_IDS_PER_PASS 2000000L

typedef struct cs_wh_verify_opts {
    int     has_from, has_to;
    int64_t from_us, to_us;    /* event time in [from, to) when set */
    long    ids_per_pass;      /* 0: CS_WH_VERIFY_IDS_PER_PASS */
} cs_wh_verify_opts;

typedef struct cs_wh_verify cs_wh_verify;

/* Run the comparison. NULL with err when a destination cannot be read at
 * all (PostgreSQL unreachable, the log unreadable) or nothing is configured. */
cs_wh_verify *cs_wh_verify_run(cs_bus *bus, const cs_config *cfg, const cs_wh_verify_opts *o, char *err,
                               size_t errlen);
/* 1 when every destination holds exactly the log's events in range. */
int cs_wh_verify_equal(const cs_wh_verify *v);
/* The table (text) or one JSON object (json). */
void cs_wh_verify_print(const cs_wh_verify *v, FILE *out, int json);
void cs_wh_verify_free(cs_wh_verify *v);

#endif
