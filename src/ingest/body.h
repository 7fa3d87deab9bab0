/*
 * ingest/body — request body decoding before JSON: Content-Encoding (gzip,
 * deflate, identity) with a bound on the decompressed size, so a gzip bomb
 * costs at most the limit in memory and gets 413.
 *
 * Owns nothing beyond the call. Never looks at the JSON inside.
 */
#ifndef CS_INGEST_BODY_H
#define CS_INGEST_BODY_H

#include <stddef.h>

#include "core/util.h"

/* Decode in[0..len) per the Content-Encoding header enc (NULL = identity).
 * On success returns 0 and points *body and *blen at the decoded bytes: either
 * in itself or out's data (out must be initialised; the caller frees it).
 * The decoded size never exceeds max. On failure returns the HTTP status —
 * 415 unknown encoding, 400 corrupt compressed data, 413 decoded body over
 * max — with a JSON error in resp. */
int cs_body_decode(const char *enc, const char *in, size_t len, size_t max, cs_buf *out, const char **body,
                   size_t *blen, cs_buf *resp);

#endif
