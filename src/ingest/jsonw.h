/*
 * ingest/jsonw — a small JSON writer for the canonical event: strings,
 * cJSON subtrees and timestamps appended straight into a cs_buf, with no
 * printf and no allocation beyond the buffer's own growth.
 *
 * Its output is byte for byte what the code before it wrote (cs_buf_json_str
 * for the event's own fields, cJSON_PrintUnformatted for properties/context),
 * so payload hashes already in the log stay valid: tests/unit/test_jsonw.c
 * compares the two on every kind of value.
 */
#ifndef CS_INGEST_JSONW_H
#define CS_INGEST_JSONW_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* s as a JSON string literal, quotes included, escaped as cs_buf_json_str
 * does (\" \\ \n \r \t, other controls as \u00XX). */
void cs_jw_str(cs_buf *b, const char *s);

/* s as cJSON prints a string value (\b and \f by letter). */
void cs_jw_value_str(cs_buf *b, const char *s);

/* v compact, exactly as cJSON_PrintUnformatted(v) prints it. Returns 0, or
 * -1 for a node cJSON could not print either (an invalid type). */
int cs_jw_value(cs_buf *b, const cJSON *v);

/* The members of objects a then b as one object's members (no braces):
 * a's keys that b does not hold first, then all of b's; either may be NULL.
 * first: no member written yet (no leading comma). Returns members written. */
size_t cs_jw_members(cs_buf *b, const cJSON *a, const cJSON *bo, int first);

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes + NUL) as cs_fmt_time_ms writes it. */
void cs_jw_time_ms(int64_t us, char out[25]);

#endif
