/*
 * ingest/jsonarena — see jsonarena.h.
 */
#include "ingest/jsonarena.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/util.h"
#include "metrics/catalog.h"

struct chunk {
    struct chunk *next;
    size_t        size, used; /* bytes of data[] */
    _Alignas(16) unsigned char data[];
};

struct arena {
    struct chunk *head;   /* the chunk being filled; older ones after it */
    int           active;
    size_t        bytes;  /* all chunks' sizes */
};

static _Thread_local struct arena *tl;
static size_t total_bytes; /* every thread's chunks (atomic): the gauge */

static void account(long delta)
{
    size_t t = __atomic_add_fetch(&total_bytes, (size_t)delta, __ATOMIC_RELAXED);
    if (cs_m.json_arena_bytes) cs_gauge_set(cs_metric_series(cs_m.json_arena_bytes, NULL), (double)t);
}
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Free every chunk but the largest that is at most keep bytes, which is
 * emptied for the next request (so a thread's usual request needs no new
 * chunk, and large chunks are not mapped and unmapped per request). */
static void release(struct arena *a, size_t keep)
{
    struct chunk *best = NULL;
    for (struct chunk *c = a->head; c; c = c->next)
        if (c->size <= keep && (!best || c->size > best->size)) best = c;
    long freed = 0;
    for (struct chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        if (c != best) freed += (long)c->size, free(c);
    }
    if (freed) account(-freed);
    a->head = best;
    a->bytes = best ? best->size : 0;
    if (best) best->used = 0, best->next = NULL;
}

static void on_thread_exit(void *p)
{
    struct arena *a = p;
    release(a, 0);
    free(a);
}

static void *arena_malloc(size_t n)
{
    struct arena *a = tl;
    if (!a || !a->active) return malloc(n);
    n = (n + 15) & ~(size_t)15;
    struct chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = c ? c->size * 2 : 64 * 1024;
        while (size < n) size *= 2;
        c = malloc(sizeof *c + size);
        if (!c) return NULL;
        c->size = size, c->used = 0, c->next = a->head;
        a->head = c;
        a->bytes += size;
        account((long)size);
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(void *p)
{
    struct arena *a = tl;
    if (a && p)
        for (struct chunk *c = a->head; c; c = c->next)
            if ((unsigned char *)p >= c->data && (unsigned char *)p < c->data + c->size) return;
    free(p);
}

static void install(void)
{
    pthread_key_create(&key, on_thread_exit);
    cJSON_Hooks h = {arena_malloc, arena_free};
    cJSON_InitHooks(&h);
}

void cs_json_arena_install(void)
{
    pthread_once(&once, install);
}

void cs_json_arena_begin(void)
{
    cs_json_arena_install();
    if (!tl) {
        tl = cs_calloc(1, sizeof *tl);
        pthread_setspecific(key, tl);
    }
    tl->active = 1;
}

void cs_json_arena_end(void)
{
    if (!tl) return;
    tl->active = 0;
    release(tl, CS_JSON_ARENA_KEEP);
}

void cs_json_arena_delete(cJSON *v)
{
    if (!tl || !tl->active) cJSON_Delete(v);
}

void *cs_json_arena_malloc(size_t n)
{
    return arena_malloc(n);
}

int cs_json_arena_active(void)
{
    return tl && tl->active;
}

size_t cs_json_arena_bytes(void)
{
    return tl ? tl->bytes : 0;
}
