/*
 * signals — per-account windowed aggregates over EVENT time and the signal
 * definitions computed from them (usage_score, activation stage,
 * engagement_drop, renewal_ticket_spike, trial_handoff, health score and
 * band). docs/SIGNALS.md has the definitions, the math and the state layout.
 *
 * Owns: one engine per partition of topic "events" (shared nothing: the
 * partition's worker is the only caller, so there are no locks), its account
 * table, its watermark, and the change detection that turns raw events into
 * the few CRM writes that matter (threshold crossings, band changes, score
 * deltas above an epsilon).
 *
 * Never: does I/O, reads the wall clock, touches the store or the bus, or
 * allocates per event once an account exists. Every decision depends only on
 * the events applied (their event time), never on when they were applied, so
 * a replay, or the same events in another order within the allowed lateness,
 * gives the same state (cs_sig_state_hash). signup_abuse needs global state
 * and lives apart, in signals/abuse.h (the leads lane).
 *
 * Memory: at most max_accounts accounts of sizeof(cs_sig_acct) bytes each
 * (plus a heap copy of account ids longer than CS_SIG_ID_INLINE - 1) and an
 * index of 16 bytes per slot at load <= 1/2. A new account beyond
 * max_accounts is refused (CS_SIG_FULL): the caller dead-letters the event
 * with reason "signals_account_limit" and counts it; existing accounts keep
 * working. cs_sig_evict_idle frees accounts unseen since an event time.
 */
#ifndef CS_SIGNALS_SIGNALS_H
#define CS_SIGNALS_SIGNALS_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

/* ---- results ------------------------------------------------------------ */

enum {
    CS_SIG_OK = 0,
    CS_SIG_LATE = -1,   /* event time < watermark: not applied; DLQ it with reason "late_event" */
    CS_SIG_FULL = -2,   /* a new account beyond max_accounts: not applied */
    CS_SIG_EINVAL = -3, /* no account id, id longer than CS_SIG_ID_MAX, or no timestamp */
    CS_SIG_ECORRUPT = -4, /* snapshot: bad magic, version, length, checksum or contents */
};

/* ---- the decoded event ----------------------------------------------------- */

enum cs_sig_type {
    CS_SIG_EV_OTHER = 0, /* any other type: seen times, active users, plan/renewal attributes */
    CS_SIG_EV_FEATURE_USED,
    CS_SIG_EV_TRIAL_ACTIVATED,
    CS_SIG_EV_SUBSCRIPTION_UPGRADED,
    CS_SIG_EV_SUPPORT_ESCALATED,
    CS_SIG_EV_LEAD, /* LeadCreated / DemoRequested: seen times only (not product usage) */
};

enum cs_sig_tier {
    CS_SIG_TIER_NONE = 0, /* not given */
    CS_SIG_TIER_TRIAL,
    CS_SIG_TIER_FREE,
    CS_SIG_TIER_STARTER,
    CS_SIG_TIER_PRO,
    CS_SIG_TIER_ENTERPRISE,
    CS_SIG_TIER_OTHER,
};

#define CS_SIG_ID_MAX    255  /* longest account id accepted */
#define CS_SIG_ID_INLINE 40   /* ids shorter than this live inside the account (a UUID fits) */
#define CS_SIG_NO_DAY    INT32_MIN

/* What the engine needs from one canonical event. Strings are borrowed for
 * the duration of the call. cs_sig_decode fills it from the canonical JSON;
 * benchmarks and tests fill it directly. */
typedef struct cs_sig_event {
    enum cs_sig_type type;
    const char      *account_id;
    size_t           account_len;
    uint64_t         account_hash; /* cs_sig_hash(account_id); 0: apply computes it */
    int64_t          ts_us;        /* event time */
    uint64_t         user_hash;    /* cs_sig_hash(user_id), 0 = no user */
    uint64_t         feature_hash; /* FeatureUsed: cs_sig_hash(properties.feature) */
    uint32_t         count;        /* FeatureUsed: properties.count (>= 1) */
    enum cs_sig_tier plan_tier;    /* SubscriptionUpgraded: properties.plan_tier; else the event's plan_tier */
    int32_t          renewal_day;  /* properties.renewal_date as days since 1970-01-01, or CS_SIG_NO_DAY */
    int              trial_days;   /* TrialActivated: properties.trial_days (0 = default) */
    const char      *type_name;    /* the event's "type" as written (borrowed, NOT NUL-terminated; set by */
    size_t           type_len;     /* the decoders, for callers that filter by type; the engine ignores it) */
} cs_sig_event;

/* XXH3-64 of the bytes, never 0 (0 means "absent"). */
uint64_t cs_sig_hash(const void *p, size_t n);
enum cs_sig_tier cs_sig_tier_parse(const char *s);
const char *cs_sig_tier_name(enum cs_sig_tier t);

/* ---- configuration: the signal definitions' thresholds ----------------------- */

#define CS_SIG_MAX_KEY_FEATURES 8

typedef struct cs_sig_config {
    int64_t  lateness_us;        /* allowed lateness behind the watermark (1 h) */
    uint32_t max_accounts;       /* per engine, i.e. per partition (1,000,000) */
    /* usage_score = 100 * U / (U + usage_half_units), U = units decayed with half-life */
    double   usage_half_life_days; /* 7 */
    double   usage_half_units;     /* 20: U at which the score is 50 */
    uint16_t units_feature;        /* usage units per FeatureUsed count (1) */
    uint16_t units_key_feature;    /* ... when the feature is a key feature (3) */
    int      n_key_features;
    char     key_features[CS_SIG_MAX_KEY_FEATURES][48];
    /* activation: N distinct key features first used within D days of TrialActivated */
    int      activation_features; /* N = 3 */
    int      activation_days;     /* D = 14 */
    int      trial_days_default;  /* 14, when TrialActivated has no trial_days */
    /* engagement_drop: usage of the last 7 days < drop_ratio * weekly baseline of
     * the 28 days before them, when that baseline >= drop_min_baseline */
    double   drop_ratio;          /* 0.5 */
    double   drop_min_baseline;   /* 10 units per week */
    /* renewal_ticket_spike: >= spike_tickets escalations in spike_window_days while
     * the renewal date is 0..spike_renewal_days days ahead */
    int      spike_tickets;       /* 3 */
    int      spike_window_days;   /* 14 (at most 16) */
    int      spike_renewal_days;  /* 60 */
    /* trial_handoff: a trial account whose usage_score >= handoff_usage_score */
    double   handoff_usage_score; /* 60 */
    /* health = sum of weight * component (each 0..100); bands */
    double   w_usage, w_trend, w_features, w_users, w_support; /* .40 .25 .10 .10 .15 */
    double   features_target;     /* distinct features for a full features component (5) */
    double   users_target;        /* active users (28 d) for a full users component (5) */
    double   support_penalty;     /* points per escalation in the spike window (25) */
    double   band_healthy;        /* health >= 70: healthy */
    double   band_poor;           /* health < 40: poor; between: concerning */
    /* write filter */
    double   usage_epsilon;       /* 2.0 points */
    double   health_epsilon;      /* 2.0 points */
} cs_sig_config;

/* The seed defaults (docs/SIGNALS.md). Key features: export_csv, dashboards,
 * api, integrations, alerts. */
void cs_sig_config_defaults(cs_sig_config *c);
/* Check ranges; returns 0 or -1 with a message naming the key. */
int cs_sig_config_check(const cs_sig_config *c, char *err, size_t errlen);

/* ---- changes: what the caller writes ------------------------------------------ */

/* Signal names in changes (stable strings, the CRM field names). */
#define CS_SIG_USAGE_SCORE      "usage_score"
#define CS_SIG_ACTIVATION       "activation_stage"
#define CS_SIG_ENGAGEMENT_DROP  "engagement_drop"
#define CS_SIG_RENEWAL_SPIKE    "renewal_ticket_spike"
#define CS_SIG_TRIAL_HANDOFF    "trial_handoff"
#define CS_SIG_HEALTH_SCORE     "health_score"
#define CS_SIG_HEALTH_BAND      "health_band"

typedef struct cs_sig_change {
    char        account_id[CS_SIG_ID_MAX + 1];
    const char *signal;        /* one of CS_SIG_* above (static storage) */
    int         has_old;       /* 0 on the first write of this signal for the account */
    double      old_value, new_value;
    const char *old_text;      /* bands and stages: "healthy", "activated", ...; flags: "on"/"off" */
    const char *new_text;      /* NULL for plain scores */
    int64_t     at_us;         /* event time of the cause (a sweep: the start of the watermark day) */
    double      why[10];       /* the numbers behind it; cs_sig_change_reason formats them */
} cs_sig_change;

/* The reason text of a change, with its numbers (health: the per-component
 * breakdown with weights), e.g. "15 units in the last 7 days vs weekly
 * baseline 32.50 of the 28 days before (ratio 0.5, min baseline 10)".
 * Formatted on demand so that applying an event never formats text.
 * Returns buf. */
const char *cs_sig_change_reason(const cs_sig_change *c, char *buf, size_t len);

typedef struct cs_sig_changes {
    cs_sig_change *v;
    size_t         n, cap;
} cs_sig_changes;

void cs_sig_changes_init(cs_sig_changes *c);
void cs_sig_changes_reset(cs_sig_changes *c);
void cs_sig_changes_free(cs_sig_changes *c);

/* ---- the engine ------------------------------------------------------------- */

typedef struct cs_sig_engine cs_sig_engine;

/* cfg is copied. Returns NULL with err set when cfg does not check. */
cs_sig_engine *cs_sig_engine_new(const cs_sig_config *cfg, char *err, size_t errlen);
void cs_sig_engine_free(cs_sig_engine *e); /* NULL ok */

/* Apply one event. On CS_SIG_OK, appends to out the changes this event
 * causes for its account (possibly none) — never one write per event. On
 * CS_SIG_LATE / CS_SIG_FULL / CS_SIG_EINVAL the state is unchanged and
 * nothing is appended. out is not reset. */
int cs_sig_apply(cs_sig_engine *e, const cs_sig_event *ev, cs_sig_changes *out);

/* cs_sig_apply on each event in order, rc[i] its result; the same state and
 * changes as n calls, but faster: account records are prefetched a few
 * events ahead, so cache misses on a large table overlap (the pipeline
 * applies a fetched batch at once). Returns how many were CS_SIG_OK. */
size_t cs_sig_apply_batch(cs_sig_engine *e, const cs_sig_event *ev, size_t n, int *rc, cs_sig_changes *out);

/* Time-driven signals (a drop because usage stopped, decay, a renewal date
 * coming near) change for accounts that send nothing. When the watermark
 * enters a new UTC day, every account is due for re-evaluation as of that
 * day. cs_sig_sweep evaluates up to budget due accounts and appends their
 * changes; it returns how many are still due (0: done). Call it between
 * batches with a budget that fits the batch's latency. Sweeps change only
 * the write filter, never the aggregates, so the state hash does not depend
 * on when (or whether) they run. */
size_t cs_sig_sweep(cs_sig_engine *e, size_t budget, cs_sig_changes *out);
size_t cs_sig_sweep_due(const cs_sig_engine *e);

/* Write every signal whose value differs from the last written one by any
 * amount (below the epsilon too), as of the watermark day. After it the
 * written values are exactly the computed ones, whatever the event order.
 * For the end of a replay or a backtest. */
void cs_sig_settle(cs_sig_engine *e, cs_sig_changes *out);

/* Remove accounts whose last event is before before_us (event time).
 * Returns how many. Deterministic when called at the same event time. */
size_t cs_sig_evict_idle(cs_sig_engine *e, int64_t before_us);

/* ---- reading --------------------------------------------------------------- */

enum cs_sig_band { CS_SIG_BAND_HEALTHY = 0, CS_SIG_BAND_CONCERNING, CS_SIG_BAND_POOR };
enum cs_sig_stage { CS_SIG_STAGE_NONE = 0, CS_SIG_STAGE_FIRST_KEY_ACTION, CS_SIG_STAGE_ACTIVATED };

typedef struct cs_sig_view {
    int32_t          asof_day;      /* the day these values are computed for */
    int64_t          first_seen_us, last_seen_us, trial_start_us; /* INT64_MIN: none */
    int32_t          renewal_day;   /* CS_SIG_NO_DAY: none */
    enum cs_sig_tier plan_tier;
    uint32_t         events;
    double           decayed_units; /* U */
    double           usage_score;
    uint32_t         units_7d, units_base28; /* last 7 days; the 28 days before them */
    double           baseline_week;          /* units_base28 / 4 */
    uint32_t         tickets_window;         /* escalations in spike_window_days */
    double           features_distinct;      /* estimate (linear counting, 128 bits) */
    double           users_week, users_28d;  /* estimates (tumbling UTC weeks, 128 bits each) */
    int              key_features_by_deadline;
    enum cs_sig_stage stage;
    int              engagement_drop, renewal_spike, trial_handoff;
    double           health;
    double           comp[5];        /* usage, trend, features, users, support (0..100 each) */
    enum cs_sig_band band;
} cs_sig_view;

/* Computes the account's signals as of max(its newest day, the watermark
 * day). Returns 0, or -1 when the engine has no such account. */
int cs_sig_view_account(const cs_sig_engine *e, const char *account_id, size_t len, cs_sig_view *v);

const char *cs_sig_band_name(enum cs_sig_band b);
const char *cs_sig_stage_name(enum cs_sig_stage s);

typedef struct cs_sig_stats {
    uint64_t applied, late, refused, invalid;
    uint64_t changes;          /* changes emitted */
    uint64_t accounts;         /* accounts in the table */
    uint64_t bytes;            /* memory held by the engine (table, accounts, long ids) */
    int64_t  max_ts_us;        /* newest event time seen (INT64_MIN: none) */
    int64_t  watermark_us;     /* max_ts_us - lateness */
} cs_sig_stats;

void cs_sig_stats_get(const cs_sig_engine *e, cs_sig_stats *s);
size_t cs_sig_account_size(void); /* sizeof the per-account record */

/* ---- determinism and restart ------------------------------------------------- */

/* A 64-bit hash of the engine's aggregates and of every account's signals as
 * of the watermark day; independent of the table's insertion order and of
 * the write filter (what was last written). Equal hashes: same signals. */
uint64_t cs_sig_state_hash(const cs_sig_engine *e);

/* Snapshot of the whole engine (format at the top of snapshot.c: magic,
 * version byte, config fingerprint, accounts, CRC-32C). Appended to out. */
void cs_sig_snapshot(const cs_sig_engine *e, cs_buf *out);
/* A new engine from a snapshot taken with the same config (checked through
 * the fingerprint). Returns NULL with err set (and *rc = CS_SIG_ECORRUPT
 * when rc is not NULL) on any defect; never trusts a length or a count. */
cs_sig_engine *cs_sig_restore(const cs_sig_config *cfg, const void *data, size_t len, int *rc, char *err,
                              size_t errlen);

#endif
