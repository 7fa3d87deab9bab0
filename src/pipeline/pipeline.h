/*
 * pipeline — consumes the `events` topic as consumer "pipeline" and applies
 * each batch to the store in ONE transaction together with the partitions'
 * next offsets, so every event has its effect exactly once, across crashes.
 *
 * Owns the worker thread, batching and the transaction boundary. Never
 * talks HTTP; never writes the log (that is ingest's).
 */
#ifndef CS_PIPELINE_PIPELINE_H
#define CS_PIPELINE_PIPELINE_H

#include <stdint.h>

#include "bus/bus.h"
#include "core/config.h"
#include "signals/signals.h"
#include "store/store.h"

#define CS_CONSUMER_PIPELINE "pipeline"

typedef struct cs_pipeline cs_pipeline;

/* Load the stored offsets and start the worker. NULL with err on failure. */
cs_pipeline *cs_pipeline_start(cs_bus *bus, cs_store *st, const cs_config *cfg, char *err,
                               size_t errlen);
/* Finish the current batch, commit, join. */
void cs_pipeline_stop(cs_pipeline *pl);

/* Records in the log not yet committed by the pipeline (sum over partitions). */
int64_t cs_pipeline_lag(cs_pipeline *pl);
/* Maintenance (POST /api/v1/pipeline/pause, /resume): a paused pipeline
 * finishes its current batch and applies nothing more until resumed; the
 * log keeps taking events (lag grows, and past pipeline.max_lag ingest
 * answers 503). */
void cs_pipeline_pause(cs_pipeline *pl, int paused);
int cs_pipeline_paused(cs_pipeline *pl);

/* Events applied (committed) since start. */
uint64_t cs_pipeline_applied(cs_pipeline *pl);

/* Apply one log record inside the caller's open transaction (exported for
 * tests and replay). Returns 0, or -1 on a store error (the batch must be
 * rolled back and retried). A record that cannot be decoded is skipped and
 * counted in *poison. */
int cs_pipeline_apply(cs_store *st, const cs_config *cfg, cs_sig_engine *sig, int partition, const cs_rec *rec,
                      uint64_t *poison);

/* Signals (pipeline/signals_apply.c): apply an account event (its parsed
 * cJSON) to the partition's engine; when write is set, persist the changes
 * it reports with their cause. write = 0 rebuilds state only (a replay of
 * what the store already holds). 0, or -1 on a store error. */
int cs_pipeline_apply_signals(cs_store *st, cs_sig_engine *sig, int partition, const cs_rec *rec, const void *event,
                              int write);
int cs_pipeline_write_signal_changes(cs_store *st, const cs_sig_changes *ch, const char *event_id, int partition,
                                     int64_t offset);

/* Admin events (pipeline/admin.c): the object an admin event type writes
 * (CS_OBJ_ACCOUNT for "AccountUpserted", CS_OBJ_REP for "RepUpserted"), or
 * -1; and applying one (event is its parsed cJSON). 0, or -1 on a store
 * error; an invalid one is skipped and counted in *poison. */
int cs_pipeline_admin_object(const char *type);
int cs_pipeline_apply_admin(cs_store *st, int partition, const cs_rec *rec, const void *event,
                            uint64_t *poison);

/* Segment identify / group (ContactIdentified, AccountGrouped): upsert the
 * contact (id = user_id) or the account (id = account_id) from the traits;
 * traits named like a field set it, the rest go under `custom`. */
int cs_pipeline_apply_traits(cs_store *st, int partition, const cs_rec *rec, const void *event, uint64_t *poison);

#endif
