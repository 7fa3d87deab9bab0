/*
 * signals/feed — replay of log records into a signals engine: decode each
 * record's JSON with the fast path (cs_sig_decode_json, no cJSON tree in the
 * common case), queue it, and apply queued events as one cs_sig_apply_batch
 * (account records prefetched ahead). For rebuilding a partition's engine
 * from the log (start, after a snapshot, `replay --rebuild`) and for the
 * benchmark; the live pipeline path applies one event at a time with its
 * changes.
 *
 * Owns a fixed queue: CS_SIG_FEED_BATCH events and an arena holding a copy
 * of each queued event's account id (log record bytes are only valid during
 * the read callback). Memory: about 40 KiB, allocated once in
 * cs_sig_feed_init; nothing is allocated per event (a record the fast path
 * does not recognise is parsed by cJSON and freed at once).
 *
 * Never: writes changes anywhere. Changes the engine computes while
 * replaying update its write filter and are then dropped (a replay writes
 * nothing: the store already holds what those events caused), unless the
 * caller asks for them with cs_sig_feed_flush's out.
 */
#ifndef CS_SIGNALS_FEED_H
#define CS_SIGNALS_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "signals/signals.h"

#define CS_SIG_FEED_BATCH 128

typedef struct cs_sig_feed {
    cs_sig_engine  *e;
    size_t          n;                    /* queued */
    cs_sig_event   *ev;                   /* [CS_SIG_FEED_BATCH] */
    char           *ids;                  /* [CS_SIG_FEED_BATCH][CS_SIG_ID_MAX + 1] */
    int            *rc;
    cs_sig_changes  ch;
    uint64_t        records, applied, late, refused, invalid;
} cs_sig_feed;

void cs_sig_feed_init(cs_sig_feed *f, cs_sig_engine *e);
/* Decode one record's value and queue it (applying the queue when full).
 * Returns 0, or CS_SIG_EINVAL when the record is not an account event (no
 * account id, no timestamp, not JSON): not queued, counted in invalid. The
 * bytes are not kept after the call. */
int cs_sig_feed_add(cs_sig_feed *f, const char *json, size_t len);
/* Queue an event the caller decoded (cs_sig_decode_json, to filter on its
 * type or offset first): the account id is copied, type_name dropped.
 * Returns 0, or CS_SIG_EINVAL (no account id, or longer than CS_SIG_ID_MAX). */
int cs_sig_feed_add_event(cs_sig_feed *f, const cs_sig_event *ev);
/* Apply what is queued. When out is not NULL the changes are appended to
 * it; else dropped. */
void cs_sig_feed_flush(cs_sig_feed *f, cs_sig_changes *out);
/* Flushes (dropping changes) and frees the queue. */
void cs_sig_feed_free(cs_sig_feed *f);

#endif
