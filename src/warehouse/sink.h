/*
 * warehouse/sink — what the warehouse's destinations share: the destination
 * interface (a struct of function pointers, like bus and store), the decoded
 * row, and bounded batching limits. Internal to src/warehouse.
 */
#ifndef CS_WAREHOUSE_SINK_H
#define CS_WAREHOUSE_SINK_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "bus/bus.h"
#include "core/config.h"

/* A batch also ends when its rows pass this many bytes (the file destination
 * holds one batch of one partition in memory; PostgreSQL streams its COPY). */
#define WH_BATCH_BYTES (16L << 20)

typedef struct wh_dest wh_dest;

struct wh_dest_ops {
    const char *name;
    /* Load (or recover) the destination's positions into next[P]: the
     * authoritative "next offset to write" per partition. 0, or -1 with
     * d->err. */
    int (*resync)(wh_dest *d, int64_t *next);
    /* Write one batch starting at next[] and atomically record the new
     * positions; on success next[] is advanced and the number of records
     * consumed (written + skipped) returned; -1 with d->err leaves next[]
     * as it was (the caller resyncs before retrying). */
    long (*write)(wh_dest *d, int64_t *next);
    void (*close)(wh_dest *d);
};

struct wh_dest {
    const struct wh_dest_ops *ops;
    cs_bus          *bus;
    int              partitions;
    long             batch_max;      /* records per batch */
    int64_t          interval_us;    /* flush a partial batch after this long */
    int64_t          skipped;        /* undecodable records passed over */
    int64_t          written;
    int64_t          bytes;          /* COPY data sent / compressed file bytes, committed batches */
    int64_t          files;          /* files written (file destination) */
    char             err[512];
    void            *impl;
};

/* The canonical event of one record (borrowed strings point into ev). */
typedef struct wh_row {
    cJSON      *ev;
    const char *event_id, *type, *account_id, *user_id, *product_area, *plan_tier, *source, *write_key;
    const cJSON *properties, *context;
    char        ts[32];           /* event time, normalised RFC 3339 UTC; "" if absent */
    char        received_at[32];  /* likewise */
    char        part_dir[32];     /* dt=YYYY-MM-DD/hour=HH (event time, else received, else append) */
} wh_row;

/* Decode a record; -1 when it is not an event object with an event_id (never
 * expected: ingest validated it; skipped and counted). */
int wh_row_decode(const cs_rec *rec, wh_row *r);
void wh_row_free(wh_row *r);

wh_dest *wh_pg_open(cs_bus *bus, const cs_config *cfg, char *err, size_t errlen);
wh_dest *wh_files_open(cs_bus *bus, const cs_config *cfg, char *err, size_t errlen);

#endif
