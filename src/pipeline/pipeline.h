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
#include "rules/rules.h"
#include "signals/signals.h"
#include "store/store.h"

#define CS_CONSUMER_PIPELINE "pipeline"
/* Name of the partitions' signals-engine snapshots in the store. */
#define CS_SNAPSHOT_SIGNALS "signals"

typedef struct cs_pipeline cs_pipeline;
typedef struct cs_worker cs_worker;

/* What cs_pipeline_apply (and the rules it runs) return for an event that
 * fails deterministically — a rule that evaluates to an error on it: the
 * batch is rolled back and retried without it; after pipeline.poison_attempts
 * failures it goes to the events DLQ (reason rule_error). */
#define CS_PIPELINE_POISON (-2)
/* Say why the current event is poison (thread-local; rules_apply.c). */
void cs_pipeline_poison(const char *msg);
/* Account workers for a config and partition count (pipeline.workers; 0:
 * one per core), at most one per partition. */
int cs_pipeline_workers(const cs_config *cfg, int partitions);
/* Rebuild the leads lane's state (signup velocity) from the leads topic. */
int cs_pipeline_lane_rebuild(cs_worker *w);

/* Load the stored offsets and start the worker. NULL with err on failure. */
cs_pipeline *cs_pipeline_start(cs_bus *bus, cs_store *st, const cs_config *cfg, char *err,
                               size_t errlen);
/* Finish the current batch, commit, join. */
void cs_pipeline_stop(cs_pipeline *pl);

/* A dry run (the backtest, src/app/api_backtest.c): the same workers and
 * leads lane over bus, applying into st (a scratch store, opened again per
 * worker from cfg->store) with cfg's rules, from st's offsets up to
 * events_end[partition] and leads_end, then its threads exit. It never
 * commits group offsets on the bus, never joins a consumer group, registers
 * no metric collector, and its threads count no metrics. Outbox rows stay
 * in st (nothing dispatches them). cs_pipeline_dry_done is 1 once every
 * thread reached its end; the caller must call it every millisecond or so
 * (it also moves the run's cross-topic order gate forward, on the calling
 * thread); cs_pipeline_stop ends it either way. */
cs_pipeline *cs_pipeline_start_dry(cs_bus *bus, cs_store *st, const cs_config *cfg, const int64_t *events_end,
                                   int64_t leads_end, char *err, size_t errlen);
int cs_pipeline_dry_done(cs_pipeline *pl);

/* Records in the log not yet committed by the pipeline (sum over partitions). */
int64_t cs_pipeline_lag(cs_pipeline *pl);
/* Maintenance (POST /api/v1/pipeline/pause, /resume): a paused pipeline
 * finishes its current batch and applies nothing more until resumed; the
 * log keeps taking events (lag grows, and past pipeline.max_lag ingest
 * answers 503). */
void cs_pipeline_pause(cs_pipeline *pl, int paused);
int cs_pipeline_paused(cs_pipeline *pl);

/* Replay (DESIGN-BRIEF §3.3; `crmstream replay`, POST /api/v1/replay):
 * move the pipeline's authoritative position — its store offsets, consumer
 * "pipeline", topic "events" — back to the first offset at or after
 * from_offset, or at or after from_time_us (log-append time), per partition.
 * rebuild: from the start, and the derived signal state of those partitions
 * is deleted in the same transaction so every signal is recomputed. A
 * position never moves forward (that would skip effects): a partition
 * already below the target keeps its offset. Re-applied events emit no new
 * effects (leads are unique by event id, signal history by cause). */
typedef struct cs_replay_req {
    int     partition;      /* -1: every partition */
    int64_t from_offset;    /* >= 0, or -1 when from_time_us is used */
    int64_t from_time_us;
    int     rebuild;
} cs_replay_req;

typedef struct cs_replay_part {
    int     partition;
    int64_t before, after;  /* store offset before and after the move */
    int64_t start, end;     /* the log's first kept offset and end */
} cs_replay_part;

typedef struct cs_replay_result {
    cs_replay_part *v;      /* malloc'd; cs_replay_result_free */
    int             n;
    int64_t         events; /* records to re-apply: sum of end - after */
} cs_replay_result;

void cs_replay_result_free(cs_replay_result *r);
/* The move itself (pipeline/replay.c), on a bus and a store no running
 * pipeline uses (offline), or under cs_pipeline_replay. One store
 * transaction; the bus's group offsets follow (best effort). 0, or -1 with
 * "why" in err (*usage set when the request itself is wrong, e.g. an
 * unknown partition). */
int cs_pipeline_replay_move(cs_bus *bus, cs_store *st, const cs_replay_req *req, cs_replay_result *res, int *usage,
                            char *err, size_t errlen);
/* The same on a running pipeline: waits for the current batch to end, moves
 * the offsets, rebuilds the signals state up to them; the worker then
 * re-applies from there. */
int cs_pipeline_replay(cs_pipeline *pl, const cs_replay_req *req, cs_replay_result *res, int *usage, char *err,
                       size_t errlen);

/* Events applied (committed) since start. */
uint64_t cs_pipeline_applied(cs_pipeline *pl);

/* Apply one log record inside the caller's open transaction (exported for
 * tests and replay). Returns 0, or -1 on a store error (the batch must be
 * rolled back and retried). A record that cannot be decoded is skipped and
 * counted in *poison. */
/* The rules a partition evaluates: the current rule set (may be NULL) and
 * the partition's alert cooldowns. */
typedef struct cs_pipeline_rules {
    cs_ruleset             *rules;
    cs_cooldown            *cooldown;
    struct cs_abuse        *abuse;          /* signup velocity (global: see abuse_apply.c) */
    cs_cooldown            *abuse_cooldown; /* one signup_abuse alert per domain per day */
    /* Routing (assign_owner from a pool): the config whose routing.reps are
     * candidates too; NULL = rep objects only. */
    const cs_config        *cfg;
} cs_pipeline_rules;

/* Dead-letter an event the pipeline cannot apply (pipeline/dlq.c), in the
 * caller's transaction; event_id may be NULL. 0, or -1 on a store error. */
int cs_pipeline_dead_event(cs_store *st, int partition, const cs_rec *rec, const char *event_id, const char *reason,
                           const char *message);
/* The same with attempts and first/last failure times (RFC 3339). */
int cs_pipeline_dead_event_ex(cs_store *st, int partition, const cs_rec *rec, const char *event_id, const char *reason,
                              const char *message, const char *attempts, const char *first_failed_at,
                              const char *last_failed_at);

/* Signup abuse (pipeline/abuse_apply.c): check a signup or lead event and
 * raise a signup_abuse alert for its domain when flagged. write = 0 only
 * feeds the engine (rebuilding state). 0, or -1 on a store error. */
int cs_pipeline_apply_abuse(cs_store *st, cs_pipeline_rules *r, int partition, const cs_rec *rec, const void *event,
                            int write);

int cs_pipeline_apply(cs_store *st, const cs_config *cfg, cs_sig_engine *sig, cs_pipeline_rules *rules, int partition,
                      const cs_rec *rec, uint64_t *poison);

/* Rules (pipeline/rules_apply.c): evaluate against an event (NULL for a
 * sweep) and the account's signals, and apply the matching actions in the
 * caller's transaction. 0, or -1 on a store error. */
int cs_pipeline_apply_rules(cs_store *st, cs_pipeline_rules *r, cs_sig_engine *sig, int partition, const cs_rec *rec,
                            const void *event, const char *account_id, const cs_sig_changes *changes, int64_t ts_us,
                            const char *cause_id);

/* Load the rules file (rules: in the config) and swap it in; a bad file
 * keeps the old rules. 0, or -1 with err ("file:line:column: why"). */
int cs_pipeline_reload_rules(cs_pipeline *pl, char *err, size_t errlen);
/* Rules currently loaded (0 when none). */
size_t cs_pipeline_rule_count(cs_pipeline *pl);

/* Signals (pipeline/signals_apply.c): apply an account event (its parsed
 * cJSON) to the partition's engine; when write is set, persist the changes
 * it reports with their cause. write = 0 rebuilds state only (a replay of
 * what the store already holds). 0, or -1 on a store error. */
int cs_pipeline_apply_signals(cs_store *st, cs_sig_engine *sig, cs_pipeline_rules *rules, int partition,
                              const cs_rec *rec, const void *event, int write);
/* Leads (pipeline/leads_apply.c): a LeadCreated event becomes a lead row,
 * routed (src/routing), with audit rows. 0, or -1 on a store error. */
int cs_pipeline_apply_lead(cs_store *st, const cs_config *cfg, int partition, const cs_rec *rec, const void *event);
/* The same with the rules in force: the first route_lead action of a rule
 * matching the lead event (event.*, lead.*) decides the routing policy;
 * without one (or with rules NULL) the config's routing.* policy does.
 * cs_pipeline_apply_lead(...) == cs_pipeline_apply_lead_ctx(..., NULL). */
typedef struct cs_lead_ctx {
    cs_pipeline_rules *rules;
} cs_lead_ctx;
int cs_pipeline_apply_lead_ctx(cs_store *st, const cs_config *cfg, int partition, const cs_rec *rec,
                               const void *event, const cs_lead_ctx *ctx);
/* Derived events (emit_event): rules_apply.c writes them to the outbox
 * under this destination; cs_pipeline_relay_derived (emit_relay.c) claims
 * up to max (<= 256) due rows, appends each to the events topic (keyed by
 * its account_id, else "derived:<event_id>") and reports it delivered; a
 * failed append is retried a second later. Call it where the bus is (the
 * leads lane or serve). Rows relayed, or -1 on a store error. */
#define CS_OUTBOX_DEST_LOG "log"
int cs_pipeline_relay_derived(cs_store *st, cs_bus *bus, int64_t now_ms, int max);
/* Dead letters to the `events.dlq` topic (a bus that has it: Kafka): the
 * events DLQ's rows are also written to the outbox under this destination
 * (pipeline/dlq.c, in the batch's transaction, when enabled) and relayed
 * like derived events, at least once. The store's dead_events stay the list
 * the API and CLI read and redrive from. */
#define CS_OUTBOX_DEST_DLQ "dlq"
int cs_pipeline_relay_dlq(cs_store *st, cs_bus *bus, int64_t now_ms, int max);
/* Whether dead letters also go to the DLQ topic (set by cs_pipeline_start
 * from the bus: Kafka yes, embedded no). */
void cs_pipeline_dlq_topic(int on);
/* Rules evaluation without effects (rules_apply.c): the actions of rules
 * matching an event, no cooldown applied. */
size_t cs_pipeline_rules_hits(cs_pipeline_rules *r, const void *event, const char *account_id, int64_t ts_us,
                              cs_rule_hit *hits, size_t max);
/* Note that a lead was routed in this batch (its ingest time), for the
 * ingest -> routed latency observed at commit. */
void cs_pipeline_note_routed(int64_t ingest_us);
/* Note that an event's signal changes were written in this batch (its
 * ingest time), for the ingest -> signal latency observed at commit. */
void cs_pipeline_note_signal(int64_t ingest_us);
int cs_pipeline_write_signal_changes(cs_store *st, const cs_sig_changes *ch, const char *event_id, int partition,
                                     int64_t offset);

/* Admin events (pipeline/admin.c): the object an admin event type writes
 * (CS_OBJ_ACCOUNT for "AccountUpserted", CS_OBJ_REP for "RepUpserted"), or
 * -1; and applying one (event is its parsed cJSON). 0, or -1 on a store
 * error; an invalid one is skipped and counted in *poison. */
int cs_pipeline_admin_object(const char *type);
/* What cs_pipeline_admin_object returns for "LeadAccepted" (not an object
 * table: the lead's acceptance, src/routing). */
#define CS_ADMIN_LEAD_ACCEPTED 100
int cs_pipeline_apply_admin(cs_store *st, int partition, const cs_rec *rec, const void *event,
                            uint64_t *poison);

/* Segment identify / group (ContactIdentified, AccountGrouped): upsert the
 * contact (id = user_id) or the account (id = account_id) from the traits;
 * traits named like a field set it, the rest go under `custom`. */
int cs_pipeline_apply_traits(cs_store *st, int partition, const cs_rec *rec, const void *event, uint64_t *poison);

#endif
