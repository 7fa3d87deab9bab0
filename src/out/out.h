/*
 * out — outbound actions: the dispatcher that takes deliveries from the
 * outbox and delivers them as signed webhooks (Standard Webhooks) or Slack
 * incoming-webhook messages, one lane per destination (docs/OUTBOUND.md).
 *
 * Owns: the outbox source interface (what the store must provide), the
 * destination configuration, lanes (bounded queue, concurrency, rate limit),
 * retries and their policy, the outbound address policy, signing and the
 * Slack format. Never writes CRM state and never decides *whether* an effect
 * happens: rules put rows in the outbox in the pipeline's transaction; this
 * module only delivers them, at least once, with a stable id.
 *
 * Threads: one dispatcher thread (cs_out_start) or the caller of
 * cs_out_step — never both. cs_out_wake, cs_out_stats, cs_out_enable and
 * cs_out_stop may be called from any thread.
 *
 * Memory: each lane holds at most queue_max claimed deliveries plus the
 * response of each of its in-flight requests (max_response bytes each); the
 * outbox itself (the store) is the unbounded buffer.
 */
#ifndef CS_OUT_OUT_H
#define CS_OUT_OUT_H

#include <stddef.h>
#include <stdint.h>

/* ---- the outbox source -------------------------------------------------
 * A struct of function pointers, like the bus and the store: the in-memory
 * implementation (source_mem.h) serves tests and benchmarks; the store's
 * implements the same contract over its `outbox` table (OUTBOUND.md).
 *
 * A delivery is pending, claimed (leased to a dispatcher until lease_until),
 * delivered, or dead (in the DLQ). Every call returns 0, or -1 on failure
 * (the dispatcher logs it and tries again later; nothing is lost: a claim
 * that is never reported expires with its lease). */

typedef struct cs_out_delivery {
    char    id[96];          /* stable id: the webhook-id, the same on every attempt */
    char    dest[64];        /* destination name */
    char   *payload;         /* JSON text, NUL-terminated; owned (free()) */
    size_t  payload_len;
    int     attempt;         /* attempts already made (0 before the first) */
    int64_t created_at_ms;   /* when the outbox row was written (epoch ms) */
    int64_t next_attempt_ms; /* when it became due (epoch ms) */
} cs_out_delivery;

typedef struct cs_out_source_ops {
    /* Claim up to max deliveries of destination dest that are due
     * (pending with next_attempt_ms <= now_ms, or claimed with an expired
     * lease), oldest next_attempt_ms first, leasing them until
     * lease_until_ms. Fills out[0..n) (payload allocated with malloc) and
     * returns n >= 0, or -1. */
    int (*claim)(void *ctx, const char *dest, int64_t now_ms, int64_t lease_until_ms,
                 cs_out_delivery *out, int max);
    /* The receiver answered 2xx: the delivery is done. attempt counts this one. */
    int (*delivered)(void *ctx, const char *id, int attempt, int64_t at_ms);
    /* Failed, try again at next_ms (pending again, lease dropped). */
    int (*retry)(void *ctx, const char *id, int attempt, int64_t next_ms, const char *error);
    /* Give up: move to the DLQ with a reason. */
    int (*dead)(void *ctx, const char *id, int attempt, const char *reason);
    /* Give a claimed delivery back untouched (not attempted, or the
     * dispatcher is shutting down): pending and due now, attempt unchanged. */
    int (*release)(void *ctx, const char *id);
} cs_out_source_ops;

typedef struct cs_out_source {
    const cs_out_source_ops *ops;
    void                    *ctx;   /* borrowed */
} cs_out_source;

/* ---- the clock ----------------------------------------------------------
 * Wall-clock epoch milliseconds: scheduling (next_attempt_ms, the retry
 * horizon), leases, the rate limit and webhook-timestamp. Injectable so that
 * tests move time forward instead of sleeping. NULL now_ms: the real clock. */
typedef struct cs_out_clock {
    int64_t (*now_ms)(void *ctx);
    void    *ctx;
} cs_out_clock;

/* ---- destinations --------------------------------------------------------
 * Filled by the caller (from the `outbound.destinations` YAML list). Strings
 * are copied by cs_out_new. Zero fields take the defaults in brackets. */
typedef enum cs_out_kind { CS_OUT_WEBHOOK = 0, CS_OUT_SLACK = 1 } cs_out_kind;

typedef struct cs_out_dest_conf {
    const char *name;              /* matches cs_out_delivery.dest; [a-zA-Z0-9_.-], <= 63 bytes */
    cs_out_kind kind;
    const char *url;               /* http:// or https:// */
    const char *secrets[2];        /* webhook: "whsec_<base64>"; [1] set during rotation:
                                      both signatures are sent */
    int     concurrency;           /* requests in flight [webhook 4, slack 1] */
    double  rate_per_s;            /* requests started per second, 0 = unlimited [webhook 0, slack 1] */
    int     burst;                 /* token bucket size [max(1, rate)] */
    int     queue_max;             /* claimed deliveries held in memory [256] */
    int     connect_timeout_ms;    /* [5000] */
    int     timeout_ms;            /* whole request [15000] */
    int     allow_private;         /* 1: allow loopback, private, link-local addresses [0] */
    int64_t retry_horizon_ms;      /* give up this long after created_at [3 days] */
    int64_t backoff_base_ms;       /* first retry delay [5000]; doubles per attempt */
    int64_t backoff_max_ms;        /* cap of one delay [6 h] */
    int     max_attempts;          /* 0 = until the horizon */
    size_t  max_response;          /* response bytes kept (rest discarded, read bounded) [64 KiB] */
} cs_out_dest_conf;

/* ---- alerts ---------------------------------------------------------------
 * Raised from the dispatcher thread: a destination answered 410 Gone and is
 * now disabled (deliveries stay in the outbox until cs_out_enable). */
typedef struct cs_out_alert {
    const char *dest;
    const char *kind;      /* "destination_disabled" */
    const char *detail;    /* e.g. "HTTP 410 from https://..." */
    const char *delivery_id;
} cs_out_alert;

typedef struct cs_out_opts {
    cs_out_source source;
    cs_out_clock  clock;
    void        (*on_alert)(void *ctx, const cs_out_alert *a);
    void         *alert_ctx;
    int           poll_ms;     /* how often an idle lane asks the source again [100] */
    int64_t       lease_ms;    /* claim lease beyond the lane's worst-case wait [60000] */
    uint64_t      seed;        /* jitter PRNG seed [from the clock] */
    const char   *user_agent;  /* ["crmstream-webhooks/1"] */
} cs_out_opts;

typedef struct cs_out_stats {
    uint64_t delivered;        /* 2xx */
    uint64_t retried;          /* attempts that failed and were scheduled again */
    uint64_t dead;             /* moved to the DLQ */
    uint64_t attempts;         /* requests completed (any outcome) */
    int      queued;           /* claimed, waiting for a slot */
    int      inflight;
    int      disabled;         /* 410 seen */
} cs_out_stats;

typedef struct cs_out cs_out;

/* Validate the destinations and build a dispatcher (no thread yet). Returns
 * NULL and writes a one-line reason to err on a bad configuration. */
cs_out *cs_out_new(const cs_out_dest_conf *dests, int ndests, const cs_out_opts *opts,
                   char *err, size_t errlen);

/* One turn of the loop: claim due deliveries, start requests, wait up to
 * wait_ms for network activity (or cs_out_wake), handle completions and
 * report them to the source. Returns the number of deliveries whose outcome
 * was reported. For tests and for callers with their own loop. */
int cs_out_step(cs_out *o, int wait_ms);

/* Run cs_out_step on a thread of its own until cs_out_stop. 0 or -1. */
int cs_out_start(cs_out *o);
/* Stop the thread (finishes the current turn; in-flight requests are
 * abandoned at destroy). Idempotent. */
void cs_out_stop(cs_out *o);
/* Wake the loop now (e.g. after the pipeline committed outbox rows). */
void cs_out_wake(cs_out *o);

/* Stop, give queued and in-flight deliveries back to the source (release:
 * due now, same id, so the next dispatcher redelivers them), free. NULL ok. */
void cs_out_destroy(cs_out *o);

/* Counters of one destination; -1 when unknown. */
int cs_out_stats_get(cs_out *o, const char *dest, cs_out_stats *st);
/* Re-enable a destination disabled by a 410. 0 or -1 when unknown. */
int cs_out_enable(cs_out *o, const char *dest);

#endif
