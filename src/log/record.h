/*
 * log/record — a record as producers give it and readers receive it. Shared
 * by the log, the bus interface and everything that reads the bus.
 */
#ifndef CS_LOG_RECORD_H
#define CS_LOG_RECORD_H

#include <stddef.h>
#include <stdint.h>

/* One record to append, or one read back (pointers borrowed: valid only
 * during the callback). */
typedef struct cs_rec {
    int64_t     offset;      /* set by append / read */
    int64_t     ts_us;       /* ingest time */
    int64_t     append_us;   /* set on read: the batch's log-append time */
    const char *key;
    size_t      key_len;
    const char *value;
    size_t      value_len;
} cs_rec;

/* Called for each record read; return non-zero to stop early. */
typedef int (*cs_rec_cb)(const cs_rec *rec, void *arg);

#endif
