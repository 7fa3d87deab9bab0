/*
 * http/errors — the JSON error body every endpoint uses:
 *   {"error": {"code": "...", "message": "...", "field": "..."}}
 * Codes are stable, machine-readable names; messages are for people.
 */
#ifndef CS_HTTP_ERRORS_H
#define CS_HTTP_ERRORS_H

#include "core/util.h"

/* Append the whole error object; field may be NULL. */
void cs_json_error(cs_buf *out, const char *code, const char *message, const char *field);

#endif
