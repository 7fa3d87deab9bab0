/*
 * core/config — the configuration file (YAML) and its defaults.
 *
 * Every key is declared once in the table in config.c, which also generates
 * docs/CONFIG.md's reference (`crmstream config-reference`). Unknown keys and
 * wrong types are errors that name file:line:column. Never reads anything but
 * the file it is given.
 */
#ifndef CS_CORE_CONFIG_H
#define CS_CORE_CONFIG_H

#include <stddef.h>
#include <stdio.h>

enum cs_fsync_policy { CS_FSYNC_ALWAYS, CS_FSYNC_INTERVAL, CS_FSYNC_NEVER };

typedef struct cs_rep_cfg {
    char *id;
    char *name;
    char *email;
    char *attrs;   /* routing attributes as a JSON object (pools, territory, capacity, weight,
                      timezone, working_hours, out_of_office), or NULL */
} cs_rep_cfg;

/* A write key (auth.write_keys). Only the SHA-256 of the key is kept: a key
 * given in clear in the file is hashed at load and the clear text dropped. */
typedef struct cs_write_key_cfg {
    char         *name;          /* recorded in each stored event as write_key */
    unsigned char sha256[32];
    double        rate_limit;    /* events per second; 0 = unlimited */
} cs_write_key_cfg;

/* An outbound destination (outbound.destinations; docs/OUTBOUND.md). Zero
 * numbers take the dispatcher's defaults. */
typedef struct cs_dest_cfg {
    char  *name;
    char  *kind;               /* "webhook" | "slack" */
    char  *url;
    char  *secrets[2];         /* whsec_...; [1] during a rotation */
    int    concurrency, burst, queue_max, connect_timeout_ms, timeout_ms, allow_private, max_attempts;
    double rate_per_s;
    long   retry_horizon_s, backoff_base_ms, backoff_max_ms, max_response;
    char   where[200];         /* "file:line:column" of the entry, for later errors */
} cs_dest_cfg;

typedef struct cs_config {
    char  *data_dir;            /* data: */
    char  *http_addr;           /* http: HOST:PORT */
    char  *store;               /* store: sqlite:PATH | postgresql://URI (store/store.h) */
    char  *bus;                 /* bus: embedded | kafka://host:port[,host:port] */
    char  *kafka_topic_prefix;  /* kafka.topic_prefix */
    char  *kafka_group_prefix;  /* kafka.group_prefix */
    int    kafka_replication_factor; /* kafka.replication_factor (-1: broker default) */
    long   kafka_timeout_ms;    /* kafka.timeout_ms */
    long   kafka_session_timeout_ms;   /* kafka.session_timeout_ms */
    long   kafka_rebalance_timeout_ms; /* kafka.rebalance_timeout_ms */
    int    partitions;          /* log.partitions */
    char  *fsync;               /* log.fsync: always | interval:<ms> | never */
    int    fsync_policy;        /* parsed from fsync */
    int    fsync_interval_ms;
    long   segment_bytes;       /* log.segment_bytes */
    long   journal_bytes;       /* log.journal_bytes */
    char  *compression;         /* log.compression: zstd | none */
    int    compress;            /* parsed from compression: 1 zstd */
    int    compression_level;   /* log.compression_level */
    long   index_interval_bytes;/* log.index_interval_bytes */
    long   retention_ms;        /* log.retention_ms (0 = no age limit) */
    long   retention_bytes;     /* log.retention_bytes (per partition; 0 = no limit) */
    long   max_body_bytes;      /* ingest.max_body_bytes */
    long   max_event_bytes;     /* ingest.max_event_bytes */
    long   max_batch_events;    /* ingest.max_batch_events */
    long   dedupe_window_s;     /* ingest.dedupe_window (seconds) */
    long   dedupe_max_ids;      /* ingest.dedupe_max_ids */
    long   max_object_keys;     /* ingest.max_object_keys */
    long   max_future_s;        /* ingest.max_future (seconds) */
    long   max_age_s;           /* ingest.max_age (seconds; 0 = no limit) */
    char  *unknown_types;       /* ingest.unknown_types: accept | reject */
    int    reject_unknown_types;/* parsed from unknown_types */
    cs_write_key_cfg *write_keys; /* auth.write_keys */
    size_t nwrite_keys;
    int    http_threads;        /* http_threads */
    long   http_header_timeout_s, http_body_timeout_s, http_idle_timeout_s; /* http.*_timeout */
    int    http_max_connections, http_max_connections_per_ip;            /* http.max_connections* */
    long   pipeline_batch_max;  /* pipeline.batch_max_events */
    long   pipeline_max_lag;    /* pipeline.max_lag (0: no bound) */
    long   pipeline_workers;    /* pipeline.workers (0: 1 on SQLite, one per core on PostgreSQL) */
    long   pipeline_snapshot_every; /* pipeline.snapshot_every_events (0: never) */
    long   pipeline_batch_max_ms; /* pipeline.batch_max_ms */
    long   pipeline_linger_ms;    /* pipeline.linger_ms */
    long   pipeline_nice;         /* pipeline.nice */
    long   pipeline_sched_idle;   /* pipeline.sched_idle */
    long   pipeline_poison_attempts; /* pipeline.poison_attempts */
    char  *metrics_enabled;     /* metrics.enabled: "true" | "false" */
    char  *rules_path;          /* rules: the rules file */
    cs_rep_cfg *reps;           /* routing.reps */
    size_t nreps;
    /* The default lead-routing policy (routing.*; src/routing, docs/RULES.md). */
    char  *routing_strategy;    /* round_robin | weighted_round_robin | account_owner | territory */
    char  *routing_pool;        /* "" = every rep */
    char  *routing_match_account, *routing_territory, *routing_working_hours; /* "true" | "false" */
    long   routing_max_open_leads; /* 0 = only the reps' capacity */
    char  *routing_fallback;    /* queue when nobody is eligible */
    long   routing_sla_s;       /* routing.sla (seconds; 0 = none) */
    int    outbound_poll_ms;    /* outbound.poll_ms */
    long   outbound_lease_ms;   /* outbound.lease_ms */
    cs_dest_cfg *destinations;  /* outbound.destinations */
    size_t ndestinations;
    char  *wh_postgres;         /* warehouse.postgres: "" = off */
    char  *wh_dir;              /* warehouse.dir: "" = off */
    long   wh_batch_max;        /* warehouse.batch_max_events */
    long   wh_flush_ms;         /* warehouse.flush_interval_ms (PostgreSQL) */
    long   wh_file_ms;          /* warehouse.file_interval_ms (files) */
    long   backtest_timeout_ms; /* backtest.timeout_ms */
    struct cs_sig_settings *signals; /* signals: (signals/sigconfig.h); NULL = the defaults */
} cs_config;

/* Fill defaults (no reps). */
void cs_config_defaults(cs_config *cfg);
/* Load path over the defaults. Returns 0, or -1 with "file:line:col: why" in err. */
int cs_config_load(cs_config *cfg, const char *path, char *err, size_t errlen);
/* Same, from a string (tests); name is used in error messages. */
int cs_config_load_string(cs_config *cfg, const char *name, const char *yaml, char *err,
                          size_t errlen);
void cs_config_free(cs_config *cfg);
/* Print the reference of every key (Markdown table). */
void cs_config_reference(FILE *out);

#endif
