/*
 * metrics/catalog — the metric table.
 */
#include "metrics/catalog.h"

#include <string.h>

#include "core/version.h"

cs_metrics_catalog cs_m;

/* Latency buckets: 100 µs .. 10 s. */
static const double lat_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5, 10};
#define NLAT (sizeof lat_buckets / sizeof lat_buckets[0])

struct def {
    cs_metric **slot;
    const char *name;
    enum cs_metric_kind kind;
    const char *labels;
    const char *help;
};

static const struct def defs[] = {
    {&cs_m.events_received, "crmstream_events_received_total", CS_COUNTER, "source",
     "Events received at ingest, before validation."},
    {&cs_m.events_accepted, "crmstream_events_accepted_total", CS_COUNTER, "source, type",
     "Events validated and durably appended to the log (type: seed type or custom)."},
    {&cs_m.events_rejected, "crmstream_events_rejected_total", CS_COUNTER, "source, reason",
     "Events rejected at ingest, by error code."},
    {&cs_m.events_duplicate, "crmstream_events_duplicate_total", CS_COUNTER, "source",
     "Events acknowledged as duplicates of an event_id already taken."},
    {&cs_m.ingest_requests, "crmstream_ingest_requests_total", CS_COUNTER, "endpoint, code",
     "Ingest requests answered by an ingest endpoint (endpoint: batch, track, identify, group, page, screen, events, cloudevents), by status code."},
    {&cs_m.log_append_seconds, "crmstream_log_append_seconds", CS_HISTOGRAM, "",
     "Time to append one batch durably (write + shared fsync)."},
    {&cs_m.log_append_bytes, "crmstream_log_append_bytes_total", CS_COUNTER, "", "Bytes appended to the log."},
    {&cs_m.pipeline_events, "crmstream_pipeline_events_total", CS_COUNTER, "result",
     "Events the pipeline committed: applied, poison (dead-lettered), late, signals_full, redrive_duplicate (a second copy of one redrive: no effect)."},
    {&cs_m.store_tx_seconds, "crmstream_store_transaction_seconds", CS_HISTOGRAM, "",
     "Time of one pipeline store transaction, begin to commit."},
    {&cs_m.e2e_seconds, "crmstream_e2e_latency_seconds", CS_HISTOGRAM, "stage",
     "From the HTTP request's arrival to the effect committed: stage=routed (lead), stage=signal (signal change); webhook delivery: crmstream_webhook_latency_seconds."},
    {&cs_m.build_info, "crmstream_build_info", CS_GAUGE, "version", "Always 1; the version is in the label."},
    {&cs_m.rule_actions, "crmstream_rule_actions_total", CS_COUNTER, "action, result",
     "Rule actions by kind and result: applied, skipped, invalid, error, lane (route_lead: routed by the leads lane), already_owned / no_eligible_rep (assign_owner from a pool), not_wired (not carried out by this version)."},
    {&cs_m.dlq_events, "crmstream_dlq_events_total", CS_COUNTER, "reason",
     "Events the pipeline dead-lettered, by reason (undecodable, late_event, signals_account_limit, rule_error); GET /api/v1/dlq?kind=event lists them."},
    {&cs_m.rules_reloads, "crmstream_rules_reloads_total", CS_COUNTER, "result",
     "Rules file reloads (SIGHUP, POST /api/v1/rules/reload): ok, or failed (the old rules keep running)."},
    {&cs_m.lane_records, "crmstream_leads_lane_records_total", CS_COUNTER, "",
     "Records of the `leads` topic the leads lane committed (leads routed, signups checked for abuse); a lead event counts here and once in crmstream_pipeline_events_total."},
    {&cs_m.snapshot_bytes, "crmstream_signals_snapshot_bytes_total", CS_COUNTER, "",
     "Bytes of signals-state snapshots the pipeline wrote to the store (pipeline.snapshot_every_events)."},
    {&cs_m.snapshot_seconds, "crmstream_signals_snapshot_seconds", CS_HISTOGRAM, "",
     "Time to encode one partition's signals state and put it in the store, inside the batch transaction."},
    {&cs_m.rule_errors, "crmstream_rule_errors_total", CS_COUNTER, "",
     "Rule conditions that evaluated to an error on an event; each such event is retried pipeline.poison_attempts times, then dead-lettered with reason rule_error."},
    {&cs_m.webhook_deliveries, "crmstream_webhook_deliveries_total", CS_COUNTER, "destination, status",
     "Outbound delivery attempts reported to the outbox, by destination and outcome: delivered (2xx), retry, dead (moved to the DLQ)."},
    {&cs_m.webhook_latency, "crmstream_webhook_latency_seconds", CS_HISTOGRAM, "destination",
     "From the ingest HTTP request's arrival to the destination's 2xx answer (deliveries whose payload carries received_at)."},
    {&cs_m.wh_events, "crmstream_warehouse_events_total", CS_COUNTER, "destination",
     "Events the warehouse sink committed, by destination (postgres: rows COPYed; files: NDJSON lines)."},
    {&cs_m.wh_bytes, "crmstream_warehouse_bytes_total", CS_COUNTER, "destination",
     "Bytes of committed warehouse batches: COPY data sent (postgres), compressed file bytes (files)."},
    {&cs_m.wh_files, "crmstream_warehouse_files_total", CS_COUNTER, "",
     "zstd NDJSON files the file destination committed (one per partition and event hour per batch)."},
    {&cs_m.wh_errors, "crmstream_warehouse_errors_total", CS_COUNTER, "destination",
     "Warehouse batches (or position loads) that failed and were retried from the destination's stored positions."},
    {&cs_m.wh_skipped, "crmstream_warehouse_skipped_total", CS_COUNTER, "destination",
     "Log records the warehouse passed over as undecodable (not an event object with an event_id)."},
    {&cs_m.wh_batch_seconds, "crmstream_warehouse_batch_seconds", CS_HISTOGRAM, "destination",
     "Time to write and commit one warehouse batch (read from the log, COPY or compress + fsync, commit)."},
    {&cs_m.bus_group_partitions, "crmstream_bus_group_partitions", CS_GAUGE, "group",
     "Partitions this process owns in a Kafka consumer group it joined (bus join; docs/DEPLOY.md)."},
    {&cs_m.bus_group_changes, "crmstream_bus_group_changes_total", CS_COUNTER, "group, change",
     "Consumer-group rebalances that changed this process's partitions: assigned, revoked, lost (session timed out)."},
    {&cs_m.json_arena_bytes, "crmstream_ingest_json_arena_bytes", CS_GAUGE, "",
     "Bytes held by ingest's per-thread JSON arenas (a request's cJSON nodes); between requests each thread keeps at most 256 KB."},
    {&cs_m.routing_decisions, "crmstream_routing_decisions_total", CS_COUNTER, "via",
     "Leads routed, by how the owner was chosen: account_owner, round_robin, weighted_round_robin, or fallback (no rep eligible: queued). docs/RULES.md \"Lead routing\"."},
    {&cs_m.routing_sla, "crmstream_routing_sla_breaches_total", CS_COUNTER, "result",
     "Routed leads not accepted within their SLA, by what the sweep did: rerouted (another rep) or queued (nobody else eligible); each also raises a lead_sla_breach alert."},
    {&cs_m.routing_reps_ignored, "crmstream_routing_reps_ignored_total", CS_COUNTER, "",
     "Reps left out of a routing decision because more than 5,000 exist (the per-decision bound); each decision counts the ones it ignored."},
};

void cs_metrics_catalog_init(void)
{
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        const struct def *d = &defs[i];
        *d->slot = d->kind == CS_COUNTER ? cs_metric_counter(d->name, d->help)
                   : d->kind == CS_GAUGE ? cs_metric_gauge(d->name, d->help)
                                         : cs_metric_histogram(d->name, d->help, lat_buckets, NLAT);
    }
    char l[96];
    snprintf(l, sizeof l, "version=\"%s\"", CS_VERSION);
    cs_gauge_set(cs_metric_series(cs_m.build_info, l), 1);
}

const char *cs_metrics_type_label(const char *type)
{
    static const char *const seed[] = {"LeadCreated", "DemoRequested", "TrialActivated",
                                       "FeatureUsed", "SubscriptionUpgraded", "SupportCaseEscalated"};
    for (size_t i = 0; i < sizeof seed / sizeof seed[0]; i++)
        if (strcmp(type, seed[i]) == 0) return seed[i];
    return "custom";
}

void cs_metrics_reference(FILE *out)
{
    static const char *const kinds[] = {"counter", "gauge", "histogram"};
    fprintf(out, "| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++)
        fprintf(out, "| `%s` | %s | %s | %s |\n", defs[i].name, kinds[defs[i].kind],
                *defs[i].labels ? defs[i].labels : "—", defs[i].help);
}
