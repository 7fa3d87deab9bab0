/*
 * store — the CRM store interface (a struct of function pointers, like the
 * bus) and the objects it holds. Backends: sqlite (default); postgres comes
 * with its issue.
 *
 * Owns CRM state, the pipeline's authoritative offsets and the audit trail.
 * The pipeline is the only writer, one transaction per batch; HTTP handlers
 * only read. Never decides anything: routing and rules call it.
 */
#ifndef CS_STORE_STORE_H
#define CS_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cs_store cs_store;

typedef struct cs_lead {
    int64_t seq;              /* insertion order: the list cursor */
    char    id[160];
    char    event_id[160];
    char    account_id[160];
    char    email[256];
    char    company[256];
    char    country[64];
    char    source[128];
    long    employee_count;   /* -1 when unknown */
    char    status[32];
    char    owner[160];
    char    routed_at[40];
    char    route_reason[256];
    double  route_latency_ms;
    char    created_at[40];   /* event time */
    int     partition;
    int64_t offset;
} cs_lead;

typedef struct cs_audit {
    const char *object;
    const char *object_id;
    const char *field;
    const char *old_value;    /* NULL when the object is new */
    const char *new_value;
    const char *cause_event_id;
    int         partition;
    int64_t     offset;
    const char *rule_id;
    const char *at;           /* event or log time, RFC 3339 */
} cs_audit;

/* Leads list callback; return non-zero to stop. */
typedef int (*cs_lead_cb)(const cs_lead *lead, void *arg);

struct cs_store_ops {
    const char *name;
    /* Pipeline (writer) side: one transaction per batch. */
    int (*begin)(cs_store *st);
    int (*commit)(cs_store *st);
    void (*rollback)(cs_store *st);
    /* The consumer's next offset for topic/partition (0 when none). */
    int (*offset_get)(cs_store *st, const char *consumer, const char *topic, int partition,
                      int64_t *next);
    int (*offset_set)(cs_store *st, const char *consumer, const char *topic, int partition,
                      int64_t next);
    /* Small integer state (round-robin pointers); 0 when absent. */
    int (*counter_get)(cs_store *st, const char *name, int64_t *value);
    int (*counter_set)(cs_store *st, const char *name, int64_t value);
    /* Insert a lead; returns 1 inserted, 0 when its event_id was already
     * applied (no-op), -1 on error. */
    int (*lead_insert)(cs_store *st, const cs_lead *lead);
    int (*audit_insert)(cs_store *st, const cs_audit *a);

    /* Reader side (any thread). */
    /* 0 found, 1 not found, -1 error. */
    int (*lead_get)(cs_store *st, const char *id, cs_lead *out);
    /* Leads with seq > after, in insertion order. Returns the count or -1. */
    int (*lead_list)(cs_store *st, int64_t after, int limit, cs_lead_cb cb, void *arg);
    /* Count leads per owner: calls cb(owner, count). */
    int (*lead_count_by_owner)(cs_store *st, void (*cb)(const char *owner, int64_t n, void *arg),
                               void *arg);
    void (*close)(cs_store *st);
};

struct cs_store {
    const struct cs_store_ops *ops;
    void *impl;
    char  errmsg[256];   /* last error, for logs */
};

/* Open the SQLite store at path, applying migrations. NULL with err filled. */
cs_store *cs_store_sqlite_open(const char *path, char *err, size_t errlen);

#endif
