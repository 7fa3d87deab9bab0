/*
 * signals/abuse — signup_abuse: velocity of TrialActivated and LeadCreated
 * per email domain, per IP and per device within minutes, a disposable-domain
 * list, and a risk score with its reasons.
 *
 * Owns global state (counts across accounts), so it runs in the one ordered
 * leads lane (design brief §3.5), never in a partition worker. Like the
 * signals engine it reads event time only, does no I/O and takes no locks:
 * the lane is its only caller, so the same lane order gives the same scores.
 *
 * Memory: at most max_keys velocity entries of 48 bytes (domains, IPs and
 * devices together) in a table of at most 2 * max_keys slots, plus the
 * domain lists. Entries whose window has passed are reclaimed when the table
 * is full; if every entry is live, a new key is not tracked (counted in
 * cs_abuse_stats.dropped, and the result says velocity_dropped).
 */
#ifndef CS_SIGNALS_ABUSE_H
#define CS_SIGNALS_ABUSE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cs_abuse_config {
    int64_t  window_us;       /* velocity window (10 min); counted in 16 buckets of window/16 */
    uint32_t domain_max;      /* signups per domain in the window before "domain_velocity" (10) */
    uint32_t ip_max;          /* ... per IP (5) */
    uint32_t device_max;      /* ... per device (3) */
    int      w_disposable;    /* score points per reason: 60 */
    int      w_domain;        /* 30 */
    int      w_ip;            /* 30 */
    int      w_device;        /* 40 */
    int      flag_score;      /* flagged when score >= 50 */
    uint32_t max_keys;        /* velocity entries (1,048,576) */
    /* extra domains added to the built-in lists by cs_abuse_new (borrowed
     * for that call only; config signals.signup_abuse.*_domains) */
    const char *const *disposable;
    size_t             n_disposable;
    const char *const *free_mail;
    size_t             n_free_mail;
} cs_abuse_config;

void cs_abuse_config_defaults(cs_abuse_config *c);

typedef struct cs_abuse_event {
    int64_t     ts_us;     /* event time */
    const char *email;     /* properties.email (may be NULL) */
    const char *ip;        /* properties.ip or context.ip (may be NULL) */
    const char *device_id; /* properties.device_id (may be NULL) */
} cs_abuse_event;

typedef struct cs_abuse_reason {
    const char *code;      /* "disposable_domain", "domain_velocity", "ip_velocity", "device_velocity" */
    uint32_t    count;     /* signups in the window (0 for disposable_domain) */
    uint32_t    limit;     /* the configured maximum */
} cs_abuse_reason;

typedef struct cs_abuse_result {
    int             score;   /* 0..100: sum of the reasons' points, capped */
    int             flagged; /* score >= flag_score */
    int             n_reasons;
    cs_abuse_reason reasons[4];
    char            domain[128];      /* the email's domain, lower-cased ("" when none) */
    int             free_mail;        /* a free-mail domain: no domain velocity */
    uint32_t        domain_count, ip_count, device_count; /* in the window, this signup included */
    int             velocity_dropped; /* a key could not be tracked (table full) */
} cs_abuse_result;

typedef struct cs_abuse cs_abuse;

cs_abuse *cs_abuse_new(const cs_abuse_config *cfg); /* seeded with the built-in domain lists */
void cs_abuse_free(cs_abuse *a);                     /* NULL ok */
/* Extend the lists (config: signals.signup_abuse.disposable_domains / free_mail_domains). */
void cs_abuse_add_disposable(cs_abuse *a, const char *domain);
void cs_abuse_add_free_mail(cs_abuse *a, const char *domain);

/* Count one signup (TrialActivated or LeadCreated) and score it. */
void cs_abuse_check(cs_abuse *a, const cs_abuse_event *ev, cs_abuse_result *res);

typedef struct cs_abuse_stats {
    uint64_t checked, flagged, dropped;
    uint64_t keys;   /* live velocity entries */
    uint64_t bytes;
} cs_abuse_stats;
void cs_abuse_stats_get(const cs_abuse *a, cs_abuse_stats *s);

#endif
