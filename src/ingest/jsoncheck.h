/*
 * ingest/jsoncheck — structural limits cJSON does not enforce: nesting
 * depth, duplicate object keys (cJSON keeps both; we reject them: one
 * meaning per field) and keys per object.
 *
 * Owns nothing. Never allocates more than a small sort buffer per object.
 */
#ifndef CS_INGEST_JSONCHECK_H
#define CS_INGEST_JSONCHECK_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "ingest/event.h"

#define CS_JSON_MAX_DEPTH 64

/* Check v (an event or a message) and everything under it. depth0 is the
 * depth of v itself (1 for a top-level value). Errors: too_deep,
 * duplicate_key, too_many_keys, with the dotted path in err->field. */
int cs_json_check(const cJSON *v, int depth0, int max_depth, long max_keys, cs_verr *err);

/* After a failed parse: the offset where raw JSON text first nests deeper
 * than max (brackets outside strings), or -1. */
long cs_json_too_deep_at(const char *s, size_t len, int max);

#endif
