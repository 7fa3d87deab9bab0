/*
 * metrics/catalog — every metric crmstream exports, declared in one place
 * (docs/METRICS.md is generated from this table: `crmstream
 * metrics-reference`). Components update the series through cs_m; label
 * values are bounded sets (event types outside the seed set are "custom").
 */
#ifndef CS_METRICS_CATALOG_H
#define CS_METRICS_CATALOG_H

#include <stdio.h>

#include "metrics/metrics.h"

typedef struct cs_metrics_catalog {
    cs_metric *events_received;     /* {source} */
    cs_metric *events_accepted;     /* {source,type} */
    cs_metric *events_rejected;     /* {source,reason} */
    cs_metric *events_duplicate;    /* {source} */
    cs_metric *ingest_requests;     /* {endpoint,code} */
    cs_metric *log_append_seconds;  /* histogram */
    cs_metric *log_append_bytes;
    cs_metric *pipeline_events;     /* {result}: applied | poison */
    cs_metric *store_tx_seconds;    /* histogram */
    cs_metric *e2e_seconds;         /* histogram {stage} */
    cs_metric *build_info;          /* gauge {version} */
    cs_metric *rule_actions;        /* {action,result} */
    cs_metric *rules_reloads;       /* {result} */
    cs_metric *rule_errors;         /* rule evaluations that errored on an event */
    cs_metric *lane_records;        /* records the leads lane committed */
    cs_metric *snapshot_bytes;      /* signals snapshots written (bytes) */
    cs_metric *snapshot_seconds;    /* histogram: encode + put */
    cs_metric *dlq_events;          /* {reason} */
    cs_metric *webhook_deliveries;  /* {destination,status}: delivered | retry | dead */
    cs_metric *webhook_latency;     /* histogram {destination}: ingest -> delivered */
    cs_metric *wh_events;           /* {destination}: events written to the warehouse */
    cs_metric *wh_bytes;            /* {destination} */
    cs_metric *wh_files;            /* files written by the file destination */
    cs_metric *wh_errors;           /* {destination}: failed batches (retried) */
    cs_metric *wh_skipped;          /* {destination}: undecodable records passed over */
    cs_metric *wh_batch_seconds;    /* histogram {destination} */
    cs_metric *bus_group_partitions; /* gauge {group}: partitions owned (bus join) */
    cs_metric *bus_group_changes;   /* {group,change}: assigned | revoked | lost */
    cs_metric *json_arena_bytes;    /* gauge: ingest's per-thread cJSON arenas */
    cs_metric *routing_decisions;   /* {via}: account_owner | round_robin | weighted_round_robin | fallback */
    cs_metric *routing_sla;         /* {result}: rerouted | queued */
    cs_metric *routing_reps_ignored; /* reps beyond CS_ROUTE_MAX_REPS in one decision */
} cs_metrics_catalog;

extern cs_metrics_catalog cs_m;

/* Register the catalog (idempotent: families are found by name). Every
 * component that updates cs_m calls it in its init. */
void cs_metrics_catalog_init(void);

/* The label value for an event type: itself for the seed types, else "custom". */
const char *cs_metrics_type_label(const char *type);

/* Markdown reference of the catalog. */
void cs_metrics_reference(FILE *out);

#endif
