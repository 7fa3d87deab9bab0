/*
 * out/source_mem — an in-memory outbox source (the cs_out_source contract of
 * out.h) for tests and benchmarks, with the same semantics the store's
 * `outbox` table must have: claims are leases, a claim whose lease expired
 * is due again, release gives a claim back untouched. Thread-safe (one
 * mutex). Memory: every row added, until cs_out_mem_free.
 */
#ifndef CS_OUT_SOURCE_MEM_H
#define CS_OUT_SOURCE_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "out/out.h"

typedef enum cs_out_state {
    CS_OUT_PENDING = 0,
    CS_OUT_CLAIMED = 1,
    CS_OUT_DELIVERED = 2,
    CS_OUT_DEADLETTER = 3,
} cs_out_state;

typedef struct cs_out_mem cs_out_mem;

cs_out_mem *cs_out_mem_new(void);
void cs_out_mem_free(cs_out_mem *m);
/* The source to put in cs_out_opts (borrows m). */
cs_out_source cs_out_mem_source(cs_out_mem *m);

/* Add a delivery, due at due_ms (created_at = due_ms). The payload is
 * copied. Returns 0, or -1 when the id exists. */
int cs_out_mem_add(cs_out_mem *m, const char *id, const char *dest, const char *payload,
                   int64_t due_ms);

/* One row as it stands. 0, or -1 when unknown. reason (may be NULL): the
 * last error or the DLQ reason. */
typedef struct cs_out_mem_row {
    cs_out_state state;
    int          attempt;
    int64_t      next_attempt_ms;
    int64_t      delivered_ms;
    int          claims;       /* how many times it was claimed */
    int          releases;     /* how many times it was given back */
    char         reason[512];
} cs_out_mem_row;
int cs_out_mem_get(cs_out_mem *m, const char *id, cs_out_mem_row *row);

/* Rows in a state (-1: all rows). */
int cs_out_mem_count(cs_out_mem *m, int state);

/* Simulate the death of the process that holds the claims: while frozen,
 * every report (delivered, retry, dead, release) is dropped, as if it never
 * reached the store. Claims still work. */
void cs_out_mem_freeze(cs_out_mem *m, int frozen);

#endif
