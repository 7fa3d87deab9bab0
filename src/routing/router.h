/*
 * routing — who gets a lead, and why (docs/RULES.md "Lead routing").
 *
 * Three layers:
 *   - the decision (route.c): PURE. Given a policy, the lead, the candidate
 *     reps with their state (open leads) and the time, it picks the owner
 *     and writes the explanation. No store, no clock, no globals: tests
 *     drive it with tables.
 *   - time zones (tz.c): UTC offsets from the system's TZif files
 *     (/usr/share/zoneinfo), parsed by a small reader — no setenv("TZ"),
 *     which is not thread-safe — and cached (bounded).
 *   - the store side (route_store.c, sla.c): load the reps (config
 *     routing.reps merged with the rep objects), their open leads, the
 *     matching account, the rotation position; apply a decision to a lead;
 *     accept a lead; the SLA sweep. All in the caller's transaction.
 *
 * Strategies compose as stages, in this order:
 *   1. match_account: the lead's account (its account_id, else an account
 *      whose domain is the email's domain) → its owner, when that owner is
 *      a rep and eligible;
 *   2. pool: the candidates are the reps of the pool ("" = every rep);
 *   3. filters, each recorded per rep when it excludes one: previous owner
 *      (an SLA re-route), out_of_office, territory (when asked), working
 *      hours (when asked), capacity (open leads >= min(rep capacity,
 *      max_open_leads));
 *   4. pick among the eligible: round robin, or weighted round robin
 *      (interleaved: rep weights 1..100), from a rotation position kept in
 *      the store per pool and strategy — a stable walk over the pool in
 *      order that skips the ineligible;
 *   5. nobody eligible: the fallback queue (status "queued", no owner).
 */
#ifndef CS_ROUTING_ROUTER_H
#define CS_ROUTING_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "store/store.h"

#define CS_ROUTE_MAX_REPS 5000        /* reps considered per decision (more: ignored, logged) */
#define CS_ROUTE_MAX_POOLS 8          /* pools per rep */
#define CS_ROUTE_MAX_TERR 16          /* values per territory dimension */
#define CS_ROUTE_MAX_WEIGHT 100
#define CS_ROUTE_EXPLAIN_MAX_CANDIDATES 32 /* candidates listed one by one; the rest are counted */

enum cs_route_strategy {
    CS_RS_ROUND_ROBIN,
    CS_RS_WEIGHTED_ROUND_ROBIN,
    CS_RS_ACCOUNT_OWNER,  /* = match_account + round robin */
    CS_RS_TERRITORY,      /* = territory filter + round robin */
};
const char *cs_route_strategy_name(int s);
/* "round_robin" ... → enum, or -1. */
int cs_route_strategy_parse(const char *s);

typedef struct cs_route_policy {
    char    rule_id[129];   /* the rule that fired ("routing.default": the config's policy) */
    int     strategy;       /* enum cs_route_strategy, as written */
    int     match_account;  /* stage 1 */
    int     territory;      /* territory filter */
    int     working_hours;  /* working-hours filter */
    int     weighted;       /* weighted round robin */
    char    pool[64];       /* "" = every rep */
    int64_t max_open_leads; /* 0 = only the reps' own capacity */
    char    fallback[64];   /* queue when nobody is eligible */
    int64_t sla_us;         /* accept within this much working time; 0 = none */
} cs_route_policy;

/* The policy of the `routing:` config section (routing.strategy, ...). */
void cs_route_policy_from_config(const cs_config *cfg, cs_route_policy *p);
/* Normalise: strategy implies match_account / territory / weighted. */
void cs_route_policy_normalise(cs_route_policy *p);

typedef struct cs_route_values {
    char v[CS_ROUTE_MAX_TERR][32];
    int  n;
} cs_route_values;

typedef struct cs_route_rep {
    char            id[161];
    char            pools[CS_ROUTE_MAX_POOLS][64];
    int             npools;
    int             has_territory;
    cs_route_values countries, regions, segments, plan_tiers; /* empty dimension: any */
    int64_t         capacity;       /* max open leads; -1: none */
    int             weight;         /* 1..100 (default 1) */
    char            tz[64];         /* IANA name; "" = UTC */
    int             has_hours;
    short           start[7], end[7]; /* local minutes, day 0 = Sunday; start < 0: not working */
    int             ooo;
    /* state, filled by the caller */
    int64_t         open_leads;     /* -1: not counted (no cap applies) */
    /* Columns that did not parse ("" when fine). The API stores what it is
     * given (JSON of the column's type); the meaning is checked here, where
     * it is used: a bad territory excludes the rep when the territory filter
     * is on, bad hours or timezone when the working-hours filter is on, a
     * bad pools list keeps the rep out of every named pool; the explanation
     * says which and why. */
    char            bad_territory[96], bad_hours[96], bad_pools[96];
} cs_route_rep;

/* Fill r from a rep's columns as text (the rep object's columns or a config
 * rep). Unknown columns are ignored; a value that does not parse sets the
 * matching bad_* reason. */
void cs_route_rep_init(cs_route_rep *r, const char *id);
void cs_route_rep_set(cs_route_rep *r, const char *column, const char *text);
/* Check a rep column value written through the API: NULL when fine, else
 * a static "why" (for 422s). Only weight (1..100) is refused at the door;
 * the others are checked at use (see bad_*), as the first API accepted any
 * JSON there. */
const char *cs_route_rep_check(const char *column, const char *text);

typedef struct cs_route_lead {
    const char *id;
    const char *email, *domain;
    const char *country, *region, *segment, *plan_tier;
    long        employee_count;
    const char *account_id;     /* the matched account, or NULL */
    const char *account_owner;  /* its owner, or NULL */
    const char *matched_by;     /* "account_id" | "domain" | NULL */
} cs_route_lead;

/* Region of an ISO 3166 alpha-2 country ("amer", "emea", "apac"), or "". */
const char *cs_route_region(const char *country);
/* Segment of an employee count: "smb" (< 200), "mid" (< 1000),
 * "enterprise", or "" when unknown (< 0). */
const char *cs_route_segment(long employee_count);

typedef struct cs_route_result {
    int     rep;            /* index of the winner in reps, or -1 */
    const char *owner;      /* reps[rep].id, or NULL */
    const char *via;        /* "account_owner", "round_robin", "weighted_round_robin", "fallback" */
    int64_t next_slot;      /* rotation position to store; -1: unchanged */
    int     eligible;       /* eligible candidates */
    int     candidates;     /* reps in the pool */
    int64_t sla_due_us;     /* 0 when no SLA */
    char    reason[256];    /* one line for humans (lead.route_reason) */
    char    explanation[CS_ROUTE_EXPLANATION_MAX]; /* JSON object (lead.route_explanation) */
} cs_route_result;

/* Decide. reps[0..n) in a stable order (config reps, then rep objects by
 * creation); slot: the pool's rotation position; exclude: reps that may not
 * get it (previous owners on an SLA re-route); now_us: the decision time
 * (log-append time of the lead, or the sweep's clock). at: RFC 3339 of
 * now_us for the explanation. Never fails. */
void cs_route_decide(const cs_route_policy *p, const cs_route_lead *lead, const cs_route_rep *reps, size_t n,
                     int64_t now_us, int64_t slot, const char *const *exclude, size_t nexclude,
                     cs_route_result *out);

/* Is rep r inside its working hours at now_us? 1 yes (or no hours set), 0
 * no, -1 its time zone is unknown. */
int cs_route_in_hours(const cs_route_rep *r, int64_t now_us);
/* The time by which sla_us of r's working time has passed after from_us
 * (plain time when r has no working hours). */
int64_t cs_route_sla_due(const cs_route_rep *r, int64_t from_us, int64_t sla_us);

/* ---- time zones (tz.c) ---- */
/* UTC offset in seconds of IANA zone name at utc_s. 0, or -1 when the zone
 * is unknown (no such file, not TZif, bad name). "UTC" and "" are 0. */
int cs_tz_offset(const char *zone, int64_t utc_s, int *off_s);

/* ---- the store side (route_store.c) ---- */

/* The reps of a decision, loaded in the caller's transaction. */
typedef struct cs_route_reps {
    cs_route_rep *v;
    size_t        n, cap;
} cs_route_reps;
void cs_route_reps_free(cs_route_reps *rs);
/* Config routing.reps, then rep objects (store columns override a config
 * rep with the same id), with their open leads when count_open_leads (else
 * open_leads = -1: no capacity excludes anyone). 0, or -1 (store error).
 * (cs_route_lead_store counts open leads only when a cap applies: the count
 * reads every open lead.) */
int cs_route_reps_load(cs_store *st, const cs_config *cfg, cs_route_reps *rs, int count_open_leads);

/* Route lead l (its id, email, domain, country, employee_count,
 * account_id set) with policy p at now_us: matches the account, reads the
 * rotation, decides, and fills l's status, owner, route_reason,
 * route_explanation, sla_due_at (and account_id when matched) and r. Writes
 * only the rotation position. exclude: as cs_route_decide. 0, or -1. */
int cs_route_lead_store(cs_store *st, const cs_config *cfg, const cs_route_policy *p, cs_lead *l, int64_t now_us,
                        const char *const *exclude, size_t nexclude, cs_route_result *r);

/* Store the rotation position r moved to (call once the lead is written). */
int cs_route_commit(cs_store *st, const cs_route_policy *p, const cs_route_result *r);

/* LeadAccepted (pipeline/admin.c): mark lead id accepted at `at` by rep
 * (NULL: its owner), stop its SLA, audit with cause. 1 accepted, 0 nothing
 * to do (no such lead, or not routed / already accepted), -1 store error. */
int cs_routing_accept(cs_store *st, const char *id, const char *rep, const cs_cause *cause);

/* The SLA sweep (sla.c), run by the leads lane once per batch inside its
 * transaction: every routed lead whose sla_due_at <= now_us (at most
 * `limit` per call, earliest first) is re-routed with the policy it was
 * routed with, to another eligible rep (every previous owner excluded), or
 * to its fallback queue; an alert `lead_sla_breach` is raised for it and
 * audit rows record the change (rule "routing.sla"). Returns the number of
 * leads re-routed or queued, or -1 on a store error (roll back). */
typedef struct cs_sla_stats {
    int breached;   /* leads past their deadline handled */
    int rerouted;   /* given to another rep */
    int queued;     /* nobody eligible: fallback queue */
} cs_sla_stats;
int cs_routing_sla_sweep(cs_store *st, const cs_config *cfg, int64_t now_us, int limit, cs_sla_stats *stats);

#endif
