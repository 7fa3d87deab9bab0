/*
 * ingest/jsonarena — cJSON's allocations during one ingest request come from
 * a per-thread bump arena instead of malloc: a 100-event batch is ~2,500
 * cJSON nodes and strings, and malloc + free of each (and the malloc
 * consolidations they set off) cost more than the parse itself.
 *
 * cJSON's hooks are process-wide (cJSON_InitHooks), so they are installed
 * once and stay: a thread with no active arena gets plain malloc/free, and
 * freeing a pointer that is not in the calling thread's arena is a plain
 * free. Between cs_json_arena_begin and cs_json_arena_end, every cJSON node
 * the thread creates lives in its arena (cJSON_Delete / cJSON_free on them
 * are no-ops) and is gone after cs_json_arena_end: nothing made by cJSON in
 * that span may outlive it.
 *
 * Memory: the arena grows in chunks while a request needs them (bounded by
 * the request's own limits: ingest.max_body_bytes) and keeps at most
 * CS_JSON_ARENA_KEEP bytes per thread between requests.
 */
#ifndef CS_INGEST_JSONARENA_H
#define CS_INGEST_JSONARENA_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define CS_JSON_ARENA_KEEP (256 * 1024)

/* Install the hooks (once per process; later calls do nothing). */
void cs_json_arena_install(void);
/* Route this thread's cJSON allocations to its arena / stop and release
 * everything allocated since begin. Not nested. */
void cs_json_arena_begin(void);
void cs_json_arena_end(void);
/* cJSON_Delete(v), or nothing while this thread's arena is active (v is in
 * it, and cs_json_arena_end frees it all at once: walking the tree to
 * free nothing costs ~5 k instructions per event). */
void cs_json_arena_delete(cJSON *v);
/* n bytes (16-aligned) from this thread's arena while a span is active,
 * else from malloc: what cJSON's hooks give, so cJSON_Delete can free it.
 * Returns NULL when memory runs out. */
void *cs_json_arena_malloc(size_t n);
/* 1 between cs_json_arena_begin and cs_json_arena_end on this thread. */
int cs_json_arena_active(void);
/* Bytes this thread's arena holds now (chunks), for tests. */
size_t cs_json_arena_bytes(void);

#endif
