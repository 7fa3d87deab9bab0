/*
 * ingest/dedupe — a ring of fingerprints indexed by an open-addressing
 * table. See dedupe.h for the layout and the concurrency rule.
 */
#include "ingest/dedupe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

void cs_dedupe_init(cs_dedupe *d, uint64_t max_ids, uint32_t window_s)
{
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&d->resolved, &ca);
    pthread_condattr_destroy(&ca);
    if (max_ids < 16) max_ids = 16;
    uint64_t slots = 1;
    while (slots < 2 * max_ids) slots <<= 1;
    d->cap = max_ids;
    d->mask = slots - 1;
    d->ring = cs_calloc(max_ids, sizeof *d->ring);
    d->idx = cs_calloc(slots, sizeof *d->idx);
    d->bytes = max_ids * sizeof *d->ring + slots * sizeof *d->idx;
    d->window_s = window_s;
    d->next_owner = 2;
}

void cs_dedupe_destroy(cs_dedupe *d)
{
    if (!d || !d->ring) return;
    free(d->ring);
    free(d->idx);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->resolved);
    memset(d, 0, sizeof *d);
}

uint32_t cs_dedupe_owner(cs_dedupe *d)
{
    pthread_mutex_lock(&d->lock);
    uint32_t o = d->next_owner++;
    if (d->next_owner < 2) d->next_owner = 2;
    pthread_mutex_unlock(&d->lock);
    return o;
}

/* Index slot holding id, or the empty slot where it would go. */
static uint64_t find_slot(const cs_dedupe *d, const uint64_t id[2])
{
    uint64_t i = id[1] & d->mask;
    for (;;) {
        uint32_t v = d->idx[i];
        if (!v) return i;
        const cs_dd_entry *e = &d->ring[v - 1];
        if (e->id_lo == id[1] && e->id_hi == id[0]) return i;
        i = (i + 1) & d->mask;
    }
}

/* Backward-shift deletion (no tombstones, so probes stay short). */
static void idx_delete(cs_dedupe *d, uint64_t i)
{
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & d->mask;
        uint32_t v = d->idx[j];
        if (!v) break;
        uint64_t k = d->ring[v - 1].id_lo & d->mask; /* home slot of the entry at j */
        int move = (j > i) ? (k <= i || k > j) : (k <= i && k > j);
        if (move) {
            d->idx[i] = v;
            i = j;
        }
    }
    d->idx[i] = 0;
}

/* Drop the entry at ring position pos from the index and mark it dead. */
static void drop(cs_dedupe *d, uint64_t pos)
{
    cs_dd_entry *e = &d->ring[pos];
    if (!e->state) return;
    uint64_t id[2] = {e->id_hi, e->id_lo};
    uint64_t s = find_slot(d, id);
    if (d->idx[s] == pos + 1) idx_delete(d, s);
    e->state = 0;
    d->live--;
}

/* Pop expired entries from the head; make room for one more. */
static void make_room(cs_dedupe *d, uint32_t now_s)
{
    while (d->head < d->tail) {
        cs_dd_entry *e = &d->ring[d->head % d->cap];
        if (e->state == 0) {
            d->head++;
            continue;
        }
        int expired = e->state == 1 && e->ts_s + (uint64_t)d->window_s < now_s;
        int full = d->tail - d->head >= d->cap;
        if (!expired && !full) break;
        if (full && e->state >= 2) break; /* pending at the head of a full ring: cannot happen (cap >> in-flight) */
        if (expired) d->expired++;
        else d->evicted_early++;
        drop(d, d->head % d->cap);
        d->head++;
    }
}

static void insert(cs_dedupe *d, const uint64_t id[2], uint64_t payload, uint32_t ts_s, uint32_t state,
                   uint32_t now_s)
{
    make_room(d, now_s);
    if (d->tail - d->head >= d->cap) { /* only pending entries left at the head: forget the oldest anyway */
        drop(d, d->head % d->cap);
        d->head++;
        d->evicted_early++;
    }
    uint64_t pos = d->tail++ % d->cap;
    d->ring[pos] = (cs_dd_entry){.id_hi = id[0], .id_lo = id[1], .payload = payload, .ts_s = ts_s, .state = state};
    uint64_t s = find_slot(d, id);
    d->idx[s] = (uint32_t)(pos + 1);
    d->live++;
}

void cs_dedupe_prefetch(const cs_dedupe *d, const uint64_t id[2])
{
    /* No lock and no load: a hint for the home slot's cache line only (d->idx
     * and d->mask never change after init). A new id's slot is usually empty,
     * and the entries a request reads back are its own recent ones. */
    __builtin_prefetch(&d->idx[id[1] & d->mask]);
}

void cs_dedupe_prefetch_evictions(cs_dedupe *d, size_t n)
{
    pthread_mutex_lock(&d->lock);
    uint64_t live = d->tail - d->head;
    if (live + n > d->cap) { /* the next n inserts evict from the head: their slots */
        uint64_t k = live + n - d->cap;
        if (k > n) k = n;
        for (uint64_t i = 0; i < k; i++)
            __builtin_prefetch(&d->idx[d->ring[(d->head + i) % d->cap].id_lo & d->mask]);
    }
    pthread_mutex_unlock(&d->lock);
}

enum cs_dd_result cs_dedupe_claim(cs_dedupe *d, const uint64_t id[2], uint64_t payload, uint32_t now_s,
                                  uint32_t owner)
{
    enum cs_dd_result r = CS_DD_NEW;
    pthread_mutex_lock(&d->lock);
    uint64_t s = find_slot(d, id);
    if (d->idx[s]) {
        uint64_t pos = d->idx[s] - 1;
        cs_dd_entry *e = &d->ring[pos];
        if (e->state == 1 && e->ts_s + (uint64_t)d->window_s < now_s) {
            drop(d, pos); /* outside the window: as if never seen */
            d->expired++;
        } else if (e->state >= 2 && e->state != owner) {
            r = CS_DD_BUSY;
        } else {
            r = (e->payload == payload || e->payload == 0) ? CS_DD_DUP : CS_DD_CONFLICT;
        }
    }
    if (r == CS_DD_NEW) insert(d, id, payload, now_s, owner, now_s);
    pthread_mutex_unlock(&d->lock);
    return r;
}

void cs_dedupe_resolve(cs_dedupe *d, uint32_t owner, const uint64_t (*ids)[2], size_t n, int commit)
{
    for (size_t i = 0; i < n; i++) cs_dedupe_prefetch(d, ids[i]);
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < n; i++) {
        uint64_t s = find_slot(d, ids[i]);
        if (!d->idx[s]) continue;
        uint64_t pos = d->idx[s] - 1;
        if (d->ring[pos].state != owner) continue;
        if (commit) d->ring[pos].state = 1;
        else drop(d, pos);
    }
    pthread_cond_broadcast(&d->resolved);
    pthread_mutex_unlock(&d->lock);
}

void cs_dedupe_wait(cs_dedupe *d, const uint64_t id[2], int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        uint64_t s = find_slot(d, id);
        if (!d->idx[s] || d->ring[d->idx[s] - 1].state < 2) break;
        if (pthread_cond_timedwait(&d->resolved, &d->lock, &until) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&d->lock);
}

void cs_dedupe_add(cs_dedupe *d, const uint64_t id[2], uint64_t payload, uint32_t ts_s, uint32_t now_s)
{
    pthread_mutex_lock(&d->lock);
    uint64_t s = find_slot(d, id);
    if (d->idx[s]) {
        cs_dd_entry *e = &d->ring[d->idx[s] - 1];
        if (ts_s > e->ts_s) e->ts_s = ts_s; /* the log holds it twice (pre-dedupe data): keep the newest time */
    } else {
        insert(d, id, payload, ts_s, 1, now_s);
    }
    pthread_mutex_unlock(&d->lock);
}
