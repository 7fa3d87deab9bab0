/*
 * ingest/jsonfast — the ingest path's JSON parse in one pass: strict
 * RFC 8259 syntax, UTF-8 validation and the cJSON tree together.
 *
 * The checked path it stands in for reads a request body three times:
 * cs_utf8_invalid_at over the body, cs_json_syntax (strict grammar), then
 * cJSON_ParseWithLengthOpts (lenient, so it must come last). This parser
 * does the three in one pass over the bytes and builds the same cJSON tree
 * (nodes and strings from the calling thread's arena, jsonarena.h, or
 * malloc outside a span, so cJSON_Delete frees it either way).
 *
 * Contract: on success the bytes s[0..*end) hold one JSON value that is
 * valid UTF-8 and valid strict JSON, and the tree is exactly the one
 * cJSON_ParseWithLengthOpts returns for them (types, keys, strings, numbers
 * bit for bit, valueint, sibling and prev links: tests/unit/test_jsonfast.c
 * checks it against the library). It never accepts what the checked path
 * rejects. It declines — returns NULL — on anything invalid and on a few
 * valid but unusual inputs (nesting deeper than CS_JSON_FAST_DEPTH, a
 * number of 64 characters or more, a \u0000 escape); the caller then runs
 * the checked path, which accepts or names the error exactly as before.
 * Errors are therefore never worded here.
 */
#ifndef CS_INGEST_JSONFAST_H
#define CS_INGEST_JSONFAST_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "ingest/jsoncheck.h"

/* Deeper values are left to the checked path (cs_json_check rejects events
 * nested deeper than CS_JSON_MAX_DEPTH with the path in the error). */
#define CS_JSON_FAST_DEPTH (CS_JSON_MAX_DEPTH + 2)

/* Parse one value starting at s (JSON whitespace before it is skipped).
 * Returns the tree and sets *end to the byte after the value, or NULL. */
cJSON *cs_json_fast_parse(const char *s, size_t len, size_t *end);

#endif
