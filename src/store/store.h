/*
 * store — the CRM store interface (a struct of function pointers, like the
 * bus) and the objects it holds. Backends: sqlite (default, sqlite.c) and
 * postgres (postgres.c), chosen by the `store` config key (cs_store_open).
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

/* Bytes of a lead's routing explanation (JSON; the router keeps it under). */
#define CS_ROUTE_EXPLANATION_MAX 8192

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
    /* Routing (migration 5; src/routing, docs/RULES.md). */
    char    domain[256];      /* the email's domain (lead-to-account matching) */
    char    accepted_at[40];  /* "" until accepted (LeadAccepted) */
    char    sla_due_at[40];   /* "" when no SLA runs; RFC 3339 UTC, ms (sortable) */
    char    route_explanation[CS_ROUTE_EXPLANATION_MAX]; /* JSON; "" when none */
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
    int64_t     seq;          /* set on read: the list cursor */
} cs_audit;

/* Why a change happened (design brief principle 9): recorded on every audit
 * row an object write makes. */
typedef struct cs_cause {
    const char *event_id;
    int         partition;
    int64_t     offset;
    const char *rule_id;      /* NULL when no rule decided it (e.g. an admin event) */
    const char *at;           /* event or log time, RFC 3339 */
} cs_cause;

/* ---- CRM objects ------------------------------------------------------
 * Accounts, contacts, reps, tasks and alerts are declared once, as a table
 * (objects.c), and written and read generically: a write names the columns
 * it sets as text (cs_kv), a read hands back every column as text (cs_row).
 * Both backends build their prepared statements from the same table, so the
 * two schemas cannot drift and the REST layer serialises any object. */
enum cs_col_type {
    CS_COL_TEXT,
    CS_COL_REAL,   /* finite number */
    CS_COL_INT,    /* 64-bit integer */
    CS_COL_BOOL,   /* stored as INT 0/1 */
    CS_COL_JSON,   /* a JSON object or array, stored as its text */
};
enum { CS_COL_FILTER = 1, /* usable as an equality filter in lists */
       CS_COL_RO = 2      /* not writable through the REST API (derived, or set from the cause) */ };

typedef struct cs_col {
    const char      *name;
    enum cs_col_type type;
    int              flags;
} cs_col;

#define CS_OBJ_MAXCOLS 32   /* most columns an object has (checked at compile time) */

typedef struct cs_objdef {
    const char   *name;    /* "account": the audit `object` and the API's name */
    const char   *table;   /* "accounts" */
    const cs_col *cols;    /* cols[0] is "id"; every table also has seq (insertion order) */
    int           ncols;
} cs_objdef;

enum cs_obj { CS_OBJ_ACCOUNT, CS_OBJ_CONTACT, CS_OBJ_REP, CS_OBJ_TASK, CS_OBJ_ALERT, CS_OBJ_DEAD_EVENT, CS_OBJ_COUNT };
extern const cs_objdef cs_objdefs[CS_OBJ_COUNT];

/* The object named name ("account"), or -1. */
int cs_obj_find(const char *name);
/* Index of column name in def, or -1. */
int cs_obj_col(const cs_objdef *def, const char *name);

/* One column's new value, as text; value NULL sets SQL NULL. */
typedef struct cs_kv {
    const char *name;
    const char *value;
} cs_kv;

/* Check a write before it is made: known, distinct, non-id columns and
 * values of the column's type. 0, or -1 with "field: why" in err and the
 * offending column in *field (borrowed from def or kv). Pure: the pipeline
 * uses it to skip a poison admin event, the API to answer 400/422. */
int cs_obj_check(const cs_objdef *def, const char *id, const cs_kv *kv, size_t n, char *err,
                 size_t errlen, const char **field);

/* The columns of a JSON object (an API body, an admin event's properties) as
 * a write: strings for TEXT, numbers for REAL/INT (INT integral), true/false
 * for BOOL, objects/arrays for JSON, null clears. `id` is skipped (it names
 * the object), CS_COL_RO columns are refused unless allow_ro. Returns the
 * number of kv filled (at most max; the values are malloc'd: free them with
 * cs_obj_kv_free), or -1 with "why" in err and the column in *field. */
struct cJSON;
int cs_obj_kv_from_json(const cs_objdef *def, const struct cJSON *obj, int allow_ro, cs_kv *kv, size_t max,
                        char *err, size_t errlen, const char **field);
void cs_obj_kv_free(cs_kv *kv, int n);

/* A row handed to a read callback: vals[def->ncols] as text (NULL = null),
 * valid only during the callback. */
typedef struct cs_row {
    const cs_objdef   *def;
    int64_t            seq;
    const char *const *vals;
} cs_row;
typedef int (*cs_row_cb)(const cs_row *row, void *arg);

/* A signal value (current, or one history step). */
typedef struct cs_signal {
    int64_t     seq;            /* history only: the list cursor */
    const char *account_id;
    const char *name;
    double      value;
    const char *at;             /* event time of the cause */
    const char *cause_event_id;
    int         partition;
    int64_t     offset;
    const char *rule_id;
} cs_signal;
typedef int (*cs_signal_cb)(const cs_signal *s, void *arg);
typedef int (*cs_audit_cb)(const cs_audit *a, void *arg);

/* Leads list callback; return non-zero to stop. */
typedef int (*cs_lead_cb)(const cs_lead *lead, void *arg);

/* An outbox row (a delivery), handed to outbox callbacks; strings are
 * valid only during the callback (NULL = SQL NULL). */
typedef struct cs_outbox_row {
    int64_t     seq;
    const char *id, *dest, *payload, *state, *last_error;
    int         attempt, redrives;
    int64_t     created_at_ms, next_attempt_ms;
    int64_t     lease_until_ms, delivered_at_ms, dead_at_ms, redriven_at_ms, received_at_ms; /* -1: none */
    const char *cause_event_id, *rule_id;
    int         partition;
    int64_t     offset;
} cs_outbox_row;
typedef int (*cs_outbox_cb)(const cs_outbox_row *row, void *arg);
enum cs_outbox_report { CS_OUTBOX_DELIVERED, CS_OUTBOX_RETRY, CS_OUTBOX_DEAD, CS_OUTBOX_RELEASE };

/* Largest state snapshot a store keeps (1 GiB: under PostgreSQL's bytea
 * limit; a signals engine of 1,000,000 accounts snapshots to ~250 MB). */
#define CS_SNAPSHOT_MAX ((size_t)1 << 30)

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
    /* Insert or update object obj (enum cs_obj) id: the columns in kv take
     * their values, the others keep theirs (NULL on a new object). Writes one
     * audit row per changed field (a new object also gets an "id" row) with
     * the cause, in the caller's transaction. Returns the number of audit
     * rows written, 0 when nothing changed (a repeated event), -1 on error.
     * Alerts: columns cause_event_id, partition, offset, rule_id, at are
     * filled from the cause when kv does not set them. */
    int (*obj_upsert)(cs_store *st, int obj, const char *id, const cs_kv *kv, size_t n,
                      const cs_cause *cause);
    /* Insert only when no row has the same id or other UNIQUE key (alerts:
     * dedupe_key). 1 inserted (audited like an upsert), 0 existed, -1 error. */
    int (*obj_insert)(cs_store *st, int obj, const char *id, const cs_kv *kv, size_t n,
                      const cs_cause *cause);
    /* Set a signal's current value and record one history row per cause
     * event (UNIQUE account, name, cause event). 1 recorded, 0 this event was
     * already recorded (nothing changed), -1 error. */
    int (*signal_set)(cs_store *st, const char *account_id, const char *name, double value,
                      const cs_cause *cause);
    /* Delete the derived signal state (current values and history) caused in
     * partition (-1: every partition), in the caller's transaction, so a
     * replay from the start recomputes it (`crmstream replay --rebuild`).
     * 0, or -1 on error. */
    int (*signals_clear)(cs_store *st, int partition);
    /* State snapshots (e.g. name "signals": a partition's engine, in
     * signals/snapshot.c's format), on the writer connection in the caller's
     * transaction, so a snapshot commits atomically with the offsets it
     * matches. next_offset: the first log offset NOT reflected in data.
     * snapshot_put replaces the (name, partition) snapshot: 0 or -1; a put
     * of len 0 clears it (`replay --rebuild`). snapshot_get: 0 found (*data
     * is malloc'd, the caller frees it; *len > 0, *next_offset set), 1 none
     * (or cleared), -1 error. A snapshot is at most
     * CS_SNAPSHOT_MAX bytes (put refuses larger: -1, not retriable). */
    int (*snapshot_put)(cs_store *st, const char *name, int partition, int64_t next_offset, const void *data,
                        size_t len);
    int (*snapshot_get)(cs_store *st, const char *name, int partition, int64_t *next_offset, void **data,
                        size_t *len);

    /* ---- routing (writer connection, in the caller's transaction) ---- */
    /* A lead as the transaction sees it: 0 found, 1 not found, -1. */
    int (*lead_load)(cs_store *st, const char *id, cs_lead *out);
    /* Set status, owner, routed_at, route_reason, route_explanation,
     * accepted_at, sla_due_at ("" = NULL) of lead l->id: 1 updated, 0 no such
     * lead, -1. */
    int (*lead_update)(cs_store *st, const cs_lead *l);
    /* Open leads (status "routed", not accepted) per owner: cb(owner, n). */
    int (*lead_open_counts)(cs_store *st, void (*cb)(const char *owner, int64_t n, void *arg), void *arg);
    /* Routed leads whose sla_due_at <= due (RFC 3339 as stored), earliest
     * first, at most limit. Count or -1. Do not write leads from cb: collect
     * and write after. */
    int (*lead_sla_due)(cs_store *st, const char *due, int limit, cs_lead_cb cb, void *arg);
    /* The first row (by seq) of obj whose column col ("id" or a filter
     * column) equals value, on the writer connection: 0 found (cb called
     * once), 1 not found, -1. */
    int (*obj_find_tx)(cs_store *st, int obj, const char *col, const char *value, cs_row_cb cb, void *arg);
    /* obj_list on the writer connection: sees the transaction's writes. */
    int (*obj_list_tx)(cs_store *st, int obj, int64_t after, int limit, const cs_kv *filters, size_t nfilters,
                       cs_row_cb cb, void *arg);

    /* Reader side (any thread). */
    /* 0 found, 1 not found, -1 error. */
    int (*lead_get)(cs_store *st, const char *id, cs_lead *out);
    /* Leads with seq > after, in insertion order. Returns the count or -1. */
    int (*lead_list)(cs_store *st, int64_t after, int limit, cs_lead_cb cb, void *arg);
    /* Count leads per owner: calls cb(owner, count). */
    int (*lead_count_by_owner)(cs_store *st, void (*cb)(const char *owner, int64_t n, void *arg),
                               void *arg);
    /* 0 found (cb called once), 1 not found, -1 error. */
    int (*obj_get)(cs_store *st, int obj, const char *id, cs_row_cb cb, void *arg);
    /* Rows with seq > after in insertion order, at most limit, matching every
     * filter (column = value; only CS_COL_FILTER columns). Count or -1. */
    int (*obj_list)(cs_store *st, int obj, int64_t after, int limit, const cs_kv *filters,
                    size_t nfilters, cs_row_cb cb, void *arg);
    /* Current signals of an account, by name. Count or -1. */
    int (*signal_list)(cs_store *st, const char *account_id, cs_signal_cb cb, void *arg);
    /* History of one signal, seq > after, oldest first. Count or -1. */
    int (*signal_history)(cs_store *st, const char *account_id, const char *name, int64_t after,
                          int limit, cs_signal_cb cb, void *arg);
    /* Audit rows of object (and object_id unless NULL), seq > after. Count or -1. */
    int (*audit_list)(cs_store *st, const char *object, const char *object_id, int64_t after,
                      int limit, cs_audit_cb cb, void *arg);
    /* ---- the outbox (docs/OUTBOUND.md; pipeline side: cs_outbox_enqueue) ----
     * outbox_insert runs on the writer connection, in the caller's batch
     * transaction: 1 inserted, 0 the id exists (a replay: nothing new), -1.
     * The other outbox ops run on the reader connection (any thread, one
     * statement each, autocommit); the dispatcher uses a store handle of
     * its own (cs_store_open twice), so it never waits for HTTP readers. */
    int (*outbox_insert)(cs_store *st, const char *dest, const char *id, const char *payload,
                         int64_t created_ms, int64_t received_ms, const cs_cause *cause);
    /* Lease up to max due rows of dest (pending with next_attempt_ms <= now,
     * or claimed with lease_until_ms <= now) until lease_until_ms; cb sees
     * them oldest next_attempt_ms first (created_at_ms is the redrive time
     * for a redriven row: the retry horizon starts again). Count or -1. */
    int (*outbox_claim)(cs_store *st, const char *dest, int64_t now_ms, int64_t lease_until_ms, int max,
                        cs_outbox_cb cb, void *arg);
    /* Report on a claimed row (what: enum cs_outbox_report): ms is the
     * delivery time (DELIVERED), the next attempt (RETRY) or the failure
     * time (DEAD); text the error or reason. When the row was claimed it is
     * updated, its dest copied to dest_out[64] and its received_at_ms (-1
     * when unknown) to *received_ms, and 1 returned; 0 when not claimed; -1. */
    int (*outbox_report)(cs_store *st, int what, const char *id, int attempt, int64_t ms, const char *text,
                         char *dest_out, int64_t *received_ms);
    /* Single-owner start: every claimed row back to pending (due at once,
     * same id). Count or -1. */
    int (*outbox_release_all)(cs_store *st);
    /* Rows in state (e.g. "dead": the DLQ), of dest unless NULL, seq > after,
     * oldest first, at most limit. Count or -1. */
    int (*outbox_list)(cs_store *st, const char *state, const char *dest, int64_t after, int limit,
                       cs_outbox_cb cb, void *arg);
    /* 0 found (cb called once), 1 not found, -1. */
    int (*outbox_get)(cs_store *st, const char *id, cs_outbox_cb cb, void *arg);
    /* Dead row id (NULL: every dead row) back to pending, due at now_ms,
     * attempt 0, same id. Rows redriven, or -1. */
    int (*outbox_redrive)(cs_store *st, const char *id, int64_t now_ms);
    /* Per destination and open state (pending, claimed, dead): rows and the
     * oldest created_at_ms. 0 or -1. */
    int (*outbox_stats)(cs_store *st,
                        void (*cb)(const char *dest, const char *state, int64_t n, int64_t oldest_ms, void *arg),
                        void *arg);
    void (*close)(cs_store *st);
};

struct cs_store {
    const struct cs_store_ops *ops;
    void *impl;
    char  errmsg[256];   /* last error, for logs */
    /* Set with every error: 1 when the same call may succeed later (lost
     * connection, server restarting, lock timeout) — the pipeline rolls
     * back, backs off and retries the batch; 0 when retrying cannot help. */
    int   retriable;
    /* Outbox wake hook (cs_outbox_set_wake): called after a commit whose
     * transaction enqueued outbox rows. */
    void (*outbox_wake)(void *ctx);
    void *outbox_wake_ctx;
    int   outbox_dirty;      /* this transaction enqueued rows (writer thread only) */
};

/* Open the SQLite store at path, applying migrations. NULL with err filled. */
cs_store *cs_store_sqlite_open(const char *path, char *err, size_t errlen);
/* SQLite checkpoints (store/sqlite.c): after a commit that grew the WAL by
 * `grew` pages, a checkpoint runs once the WAL holds this many pages. */
#define CS_SQLITE_CKPT_MIN 100
#define CS_SQLITE_CKPT_MAX 1000
int cs_sqlite_ckpt_at(int grew);
/* Open the PostgreSQL store at a libpq URI (postgresql://...), applying its
 * migrations. NULL with err filled. */
cs_store *cs_store_postgres_open(const char *uri, char *err, size_t errlen);
/* Open what a `store` config value names: "sqlite:PATH" (a leading "DATA/"
 * is data_dir), a postgresql:// or postgres:// URI; "" or NULL means
 * sqlite:DATA/crm.sqlite. */
cs_store *cs_store_open(const char *spec, const char *data_dir, char *err, size_t errlen);

/* ---- the outbox, for the pipeline (store/outbox.c) ----------------------
 * Write a delivery for destination dest INSIDE the pipeline's open batch
 * transaction, so it commits with the CRM change and the offsets (design
 * brief principle 3). id is the stable webhook-id (<= 95 bytes; derive it
 * with cs_outbox_id so a replay writes the same id), payload the JSON
 * envelope (docs/OUTBOUND.md); a top-level "received_at" (RFC 3339, the
 * ingest time of the cause) is recorded for the ingest -> delivered latency.
 * Returns 1 written, 0 the id exists already (a replay: no new effect), -1
 * on a store error (roll the batch back, as for any store error). After the
 * batch commits, the store calls the wake hook (cs_outbox_set_wake): the
 * pipeline has nothing else to do. */
int cs_outbox_enqueue(cs_store *st, const char *dest, const char *id, const char *payload,
                      const cs_cause *cause);
/* "msg_" + 24 hex digits, a hash of (event id, rule id, destination): the
 * deterministic outbox id for an action. out >= 32 bytes. */
void cs_outbox_id(const char *event_id, const char *rule_id, const char *dest, char *out, size_t outlen);
/* Set (fn NULL: clear) the hook called after a commit that enqueued rows
 * (serve sets cs_out_wake with the dispatcher). Thread-safe. */
void cs_outbox_set_wake(cs_store *st, void (*fn)(void *ctx), void *ctx);
/* Call the hook now (e.g. after a redrive). */
void cs_outbox_wake(cs_store *st);
/* For backends: the transaction ended (committed = 1 after a successful
 * COMMIT, 0 after a rollback or a failed commit). */
void cs_outbox_tx_end(cs_store *st, int committed);

#endif
