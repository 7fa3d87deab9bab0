/*
 * sim/world — a deterministic B2B SaaS world in event time, with planted
 * patterns and their ground truth.
 *
 * The world is a pure function of its options: the same seed gives the same
 * byte-identical event stream. Events come out one simulated hour at a time,
 * in event-time order (then perturbed: duplicates, out-of-order, late and
 * invalid events, each at a configured share), each marked for the native or
 * the Segment door; every event maps to the same canonical event through
 * either (cs_world_to_segment).
 *
 * Planted patterns (each on its own accounts, beside decoys that must not
 * alert):
 *   churn          usage falls to 15% of the account's level from a start time
 *                  (decoy: a dip to 80%, above the engagement-drop ratio)
 *   ticket_spike   4–6 SupportCaseEscalated within 3 days while the renewal is
 *                  within 60 days (decoy: same tickets, renewal 200+ days away)
 *   trial_pql      TrialActivated, then usage ramping past the hand-off level
 *                  (decoy: a trial with light usage)
 *   signup_abuse   15–30 TrialActivated/LeadCreated from one domain and IP
 *                  within 5 minutes (decoy: a busy legitimate domain, 20
 *                  signups spread over days)
 * Owns generation only: never talks to a server.
 */
#ifndef CS_SIM_WORLD_H
#define CS_SIM_WORLD_H

#include <stdint.h>
#include <stdio.h>

#include "core/util.h"

typedef struct cs_world_opts {
    uint64_t seed;
    int      accounts;       /* default 500: 50 of each planted pattern and decoy */
    int      days;           /* event time spans [end - days, end) */
    int64_t  end_us;         /* "now": the last event time */
    double   dup_share;      /* share of events sent twice */
    double   ooo_share;      /* share moved later within their hour */
    double   late_share;     /* share held back 2 h (past the 1 h allowed lateness) */
    double   invalid_share;  /* share replaced by an invalid event */
    double   segment_share;  /* share sent as Segment messages (POST /v1/batch), the rest native */
} cs_world_opts;

/* One event of the stream. */
typedef struct cs_wevent {
    int64_t ts_us;           /* event time */
    int     invalid;         /* deliberately invalid (expected to be rejected) */
    int     duplicate;       /* a repeat of an earlier event (same id and bytes) */
    int     is_lead;         /* LeadCreated */
    int     late;            /* held back past the allowed lateness */
    int     ooo;             /* sent after an event with a later time (within the lateness bound) */
    int     segment;         /* to be sent through the Segment door (cs_world_to_segment) */
    cs_buf  json;            /* the native canonical event */
} cs_wevent;

typedef struct cs_world cs_world;

cs_world *cs_world_new(const cs_world_opts *o);
void cs_world_free(cs_world *w);
/* Next event; 0, or -1 at the end of the world. ev->json is overwritten. */
int cs_world_next(cs_world *w, cs_wevent *ev);
/* The ground truth as JSON lines: one line per planted pattern or decoy:
 * {"pattern":..., "decoy":bool, "account_id"|"domain":..., "start":RFC3339}. */
void cs_world_truth(const cs_world *w, FILE *out);
/* The Segment message (track, identify or group call) whose mapping by
 * POST /v1/batch (src/ingest/segment.c) is exactly this native event:
 * messageId ← event_id, event ← type (track), groupId (group) or
 * context.groupId (others) ← account_id, userId ← user_id, timestamp ←
 * timestamp, properties/traits ← properties, context kept. Appends the
 * message to out; -1 (nothing appended) when the event cannot be expressed
 * exactly (top-level product_area/plan_tier, which Segment has no field for,
 * or an account_id without the matching context.groupId). Every world event
 * can. */
int cs_world_to_segment(const char *json, size_t len, cs_buf *out);
/* Counts of planted patterns by kind (tests). */
int cs_world_planted(const cs_world *w, const char *pattern, int decoy);

#endif
