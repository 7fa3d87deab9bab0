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

/* Strict RFC 8259 syntax of s[start..len), before cJSON sees it (cJSON is
 * lenient: it takes 01, 1., unescaped control characters, a form feed as
 * whitespace, and it truncates strings at a \u0000). multi: several values
 * separated by whitespace (NDJSON) are allowed. Returns CS_JSON_OK, or the
 * problem with the byte offset of its start in *at:
 *   CS_JSON_BAD        not JSON (malformed_json)
 *   CS_JSON_DEEP       nesting over CS_JSON_SYNTAX_MAX_DEPTH (too_deep)
 *   CS_JSON_NUL        a \u0000 escape (invalid_value: C strings cannot hold it)
 *   CS_JSON_SURROGATE  a lone UTF-16 surrogate escape (invalid_value)
 *   CS_JSON_RANGE      a number beyond the double range (invalid_value)
 * Iterative: no recursion whatever the depth; no allocation. UTF-8 is not
 * checked here (cs_utf8_invalid_at runs first). */
enum { CS_JSON_OK, CS_JSON_BAD, CS_JSON_DEEP, CS_JSON_NUL, CS_JSON_SURROGATE, CS_JSON_RANGE };
#define CS_JSON_SYNTAX_MAX_DEPTH 1000 /* cJSON's own CJSON_NESTING_LIMIT */
int cs_json_syntax(const char *s, size_t len, size_t start, int multi, size_t *at);

#endif
