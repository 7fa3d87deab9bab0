/*
 * ingest/dedupe — the dedupe window: which event ids were accepted recently,
 * and with which payload.
 *
 * An id is kept as a 128-bit fingerprint (XXH3-128 of the id as stored;
 * collisions are negligible even at 10^9 ids) with a 64-bit hash of the
 * canonical payload (XXH3-64, ingest metadata excluded) and its ingest time.
 * Entries live in a ring in insertion order (32 bytes each) indexed by an
 * open-addressing table of 32-bit ring positions (linear probing, load
 * <= 0.5, backward-shift deletion): 40 bytes per id when max_ids is a power
 * of two, at most 48. Both are allocated once at init (calloc: pages are
 * touched as ids arrive), so memory is bounded by dedupe_max_ids. Ids older
 * than the window leave from the ring's head; when the ring is full the
 * oldest id leaves early (counted in evicted_early). The store's
 * UNIQUE(event_id) on effect rows stays the final authority.
 *
 * Concurrency: one mutex. A request claims its ids as *pending* before its
 * append and commits (or aborts) them after, so two requests carrying the
 * same new id cannot both append it: the second sees CS_DD_BUSY and waits
 * (holding no pending id of its own) until the first resolves.
 */
#ifndef CS_INGEST_DEDUPE_H
#define CS_INGEST_DEDUPE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum cs_dd_result {
    CS_DD_NEW = 0,      /* claimed: pending under this owner */
    CS_DD_DUP,          /* seen with the same payload (or pending under this same owner) */
    CS_DD_CONFLICT,     /* seen with a different payload */
    CS_DD_BUSY          /* pending under another owner: wait, then claim again */
};

typedef struct cs_dd_entry {
    uint64_t id_hi, id_lo;
    uint64_t payload;       /* 0 = unknown (rebuilt from a record without a hash): matches any */
    uint32_t ts_s;          /* ingest time, seconds since the epoch */
    uint32_t state;         /* 0 free/dead, 1 committed, >= 2 pending under that owner */
} cs_dd_entry;

typedef struct cs_dedupe {
    pthread_mutex_t lock;
    pthread_cond_t  resolved;   /* broadcast when pending entries commit or abort */
    cs_dd_entry    *ring;
    uint32_t       *idx;        /* ring position + 1; 0 = empty slot */
    uint64_t        cap;        /* ring entries (max ids) */
    uint64_t        mask;       /* idx slots - 1 */
    uint64_t        head, tail; /* ring sequence numbers: live entries are [head, tail) */
    uint32_t        window_s;
    uint32_t        next_owner;
    /* figures for metrics */
    size_t          bytes;      /* memory reserved by ring + index */
    uint64_t        live;       /* ids in the window now */
    uint64_t        expired, evicted_early;
} cs_dedupe;

void cs_dedupe_init(cs_dedupe *d, uint64_t max_ids, uint32_t window_s);
void cs_dedupe_destroy(cs_dedupe *d);

/* A fresh owner token for one request (>= 2). */
uint32_t cs_dedupe_owner(cs_dedupe *d);

/* Start loading id's index slot into the cache (no lock, no read): a
 * request prefetches all its ids before claiming them, so the table's cache
 * misses (one or two per id, the table is tens of MB) overlap instead of
 * coming one after another. Changes nothing. */
void cs_dedupe_prefetch(const cs_dedupe *d, const uint64_t id[2]);
/* The same for the ids the next n inserts will evict when the window is
 * full (the oldest: their slots are as scattered as new ids'). */
void cs_dedupe_prefetch_evictions(cs_dedupe *d, size_t n);

/* Look id up at time now_s and claim it when new. */
enum cs_dd_result cs_dedupe_claim(cs_dedupe *d, const uint64_t id[2], uint64_t payload, uint32_t now_s,
                                  uint32_t owner);
/* Resolve every id pending under owner: commit (keep) or abort (forget). */
void cs_dedupe_resolve(cs_dedupe *d, uint32_t owner, const uint64_t (*ids)[2], size_t n, int commit);
/* Block until id is no longer pending (or timeout_ms passes). */
void cs_dedupe_wait(cs_dedupe *d, const uint64_t id[2], int timeout_ms);
/* Add a committed id with its own ingest time (rebuild at start). */
void cs_dedupe_add(cs_dedupe *d, const uint64_t id[2], uint64_t payload, uint32_t ts_s, uint32_t now_s);

#endif
