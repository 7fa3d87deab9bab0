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

/* The same from the event's JSON bytes (a log record), for replay and the
 * pipeline: a single pass picks out the needed fields without building a
 * cJSON tree and without allocating. Whatever that pass does not recognise
 * exactly (an escape in a field it reads, a repeated field, a non-integer
 * count, malformed JSON, ...) is parsed with cJSON and cs_sig_decode, so the
 * result is always what cs_sig_decode(cJSON_Parse(json)) gives. *tree is
 * NULL, or the cJSON tree ev's strings borrow from: cJSON_Delete it after
 * the event is applied. On the fast path ev's strings borrow from json
 * (account_id is NOT NUL-terminated: use account_len). Returns 0, or
 * CS_SIG_EINVAL as cs_sig_decode (also for JSON that does not parse). */
int cs_sig_decode_json(const char *json, size_t len, cs_sig_event *ev, cJSON **tree);

/* "YYYY-MM-DD" (or an RFC 3339 time) as days since 1970-01-01; returns 0 or -1. */
int cs_sig_parse_day(const char *s, int32_t *day);

#endif
