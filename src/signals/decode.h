/*
 * signals/decode — from a canonical event (the JSON object stored in the
 * log, design brief §5) to the cs_sig_event the engine applies.
 *
 * Owns the mapping of event fields to signal inputs. Never validates beyond
 * what the engine needs (ingest did that) and never allocates: string
 * pointers in the result are borrowed from obj.
 */
#ifndef CS_SIGNALS_DECODE_H
#define CS_SIGNALS_DECODE_H

#include <cjson/cJSON.h>

#include "signals/signals.h"

/* Fills ev from obj. Returns 0, or CS_SIG_EINVAL when obj has no type, no
 * account_id (a prospect's lead: the leads lane's business) or no valid
 * timestamp. */
int cs_sig_decode(const cJSON *obj, cs_sig_event *ev);

/* "YYYY-MM-DD" (or an RFC 3339 time) as days since 1970-01-01; returns 0 or -1. */
int cs_sig_parse_day(const char *s, int32_t *day);

#endif
