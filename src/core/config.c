/*
 * core/config — YAML configuration through libyaml's document API, which
 * keeps each node's line and column for error messages.
 */
#include "core/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <yaml.h>
#include <cjson/cJSON.h>

#include "core/util.h"
#include "signals/sigconfig.h"

/* outbound.destinations (config_outbound.c) */
int cs_config_load_dests(yaml_document_t *doc, yaml_node_t *seq, const char *name, cs_config *cfg, char *err,
                         size_t errlen);
void cs_config_free_dests(cs_config *cfg);

/* K_DUR: a duration in seconds, written as N, Ns, Nm, Nh or Nd. */
enum kind { K_STR, K_INT, K_LONG, K_DUR, K_REPS, K_KEYS, K_DESTS, K_SIGNALS };

struct key {
    const char *path;
    enum kind   kind;
    size_t      off;
    long        min, max;
    const char *dflt;
    const char *doc;
};

#define OFF(f) offsetof(cs_config, f)
static const struct key keys[] = {
    {"data", K_STR, OFF(data_dir), 0, 0, "./data", "Directory for the log and the SQLite store."},
    {"store", K_STR, OFF(store), 0, 0, "sqlite:DATA/crm.sqlite", "The CRM store: `sqlite:PATH` (a leading `DATA/` is the data directory) or a PostgreSQL URI `postgresql://user:pass@host:port/db` (libpq syntax, `?sslmode=` etc. allowed)."},
    {"bus", K_STR, OFF(bus), 0, 0, "embedded", "The event bus: `embedded` (the in-process log under the data directory) or Apache Kafka as `kafka://host:port[,host:port]` (librdkafka; docs/ARCHITECTURE.md). `log.partitions` is then the partition count of the Kafka topic."},
    {"kafka.topic_prefix", K_STR, OFF(kafka_topic_prefix), 0, 0, "", "With `bus: kafka://…`: prefix of the topic names (`<prefix>events`). The topic is created with `log.partitions` partitions if missing; one with another count is refused."},
    {"kafka.group_prefix", K_STR, OFF(kafka_group_prefix), 0, 0, "crmstream-", "With `bus: kafka://…`: prefix of the consumer group names whose offsets are committed to Kafka for lag monitoring (`<prefix>pipeline`); the pipeline's authoritative offsets stay in the store."},
    {"kafka.replication_factor", K_INT, OFF(kafka_replication_factor), -1, 32, "-1", "Replication factor of topics crmstream creates; -1 = the broker's `default.replication.factor`."},
    {"kafka.timeout_ms", K_LONG, OFF(kafka_timeout_ms), 1000, 600000, "30000", "How long a produce waits for Kafka's acknowledgement (`message.timeout.ms`; past it ingest answers 503 and acknowledges nothing), and the limit for start-up requests (topic creation, offsets)."},
    {"kafka.session_timeout_ms", K_LONG, OFF(kafka_session_timeout_ms), 1000, 3600000, "10000", "With `bus: kafka://…`: a pipeline process that stops heartbeating for this long (killed, stalled) loses its partitions to the other members of the group (`session.timeout.ms`; the broker bounds it by `group.min/max.session.timeout.ms`)."},
    {"kafka.rebalance_timeout_ms", K_LONG, OFF(kafka_rebalance_timeout_ms), 1000, 3600000, "60000", "With `bus: kafka://…`: how long a member may take to finish and commit its batch of partitions being moved to another member (`max.poll.interval.ms`); past it the member is expelled from the group."},
    {"http", K_STR, OFF(http_addr), 0, 0, "127.0.0.1:8080", "HTTP listen address HOST:PORT (port 0 picks a free one)."},
    {"http_threads", K_INT, OFF(http_threads), 0, 64, "0", "HTTP worker threads; 0 = one thread per connection (bounded by http.max_connections), so a request waiting on its fsync holds up no other connection (docs/BENCHMARKS.md \"ingest\")."},
    {"http.listen", K_STR, OFF(http_addr), 0, 0, "127.0.0.1:8080", "The listen address when `http` is written as a mapping of `listen` and the limits below (same meaning as `http: HOST:PORT`)."},
    {"http.header_timeout", K_DUR, OFF(http_header_timeout_s), 0, 3600, "10s", "A request's header section must be complete within this of the connection opening (a later request on a keep-alive connection: of the previous answer plus `http.idle_timeout`), else the connection is closed (slowloris); 0 = no limit."},
    {"http.body_timeout", K_DUR, OFF(http_body_timeout_s), 0, 3600, "30s", "A request's body must be complete within this of its headers, else the connection is closed; 0 = no limit."},
    {"http.idle_timeout", K_DUR, OFF(http_idle_timeout_s), 0, 3600, "30s", "A connection with no traffic for this long is closed (libmicrohttpd's inactivity timeout); 0 = never."},
    {"http.max_connections", K_INT, OFF(http_max_connections), 0, 1000000, "1000", "Most open HTTP connections; past it new ones wait in the listen backlog. 0 = no limit."},
    {"http.max_connections_per_ip", K_INT, OFF(http_max_connections_per_ip), 0, 1000000, "256", "Most open HTTP connections from one client address; past it a new one is closed at once. 0 = no limit."},
    {"log.partitions", K_INT, OFF(partitions), 1, 1024, "8", "Partitions of the `events` topic; key = account id, murmur2 like Kafka."},
    {"log.fsync", K_STR, OFF(fsync), 0, 0, "always", "`always` (fsync before ack), `interval:<ms>` (loss window <ms>), `never` (loss window: OS writeback, ~30 s)."},
    {"log.segment_bytes", K_LONG, OFF(segment_bytes), 4096, 1L << 30, "67108864", "Size at which a partition's active segment is sealed and a new one started; each new segment reserves this much disk up front (fallocate), so a full disk is seen when a segment is created (ingest answers 503), never at fsync."},
    {"log.journal_bytes", K_LONG, OFF(journal_bytes), 0, 1L << 32, "33554432", "With fsync always and more than one partition: size of each of the topic's two journal files (log/journal.h). A write touching many partitions is made durable by one fdatasync of the journal instead of one per partition file; the segments are synced when a journal file fills. Bounds the unsynced segment data to two files. 0 = off (each partition syncs its own file); otherwise at least 4096."},
    {"log.compression", K_STR, OFF(compression), 0, 0, "zstd", "`zstd` or `none`. With zstd each batch the log writes (one partition's share of a request) is compressed as one zstd frame (Kafka's batch compression), when that makes it smaller; readers decompress. Realistic track events shrink 4-6x, so the log's disk writes, fsyncs and page cache shrink with them (docs/BENCHMARKS.md \"ingest\"). Changing it later is safe: a partition may hold both forms. Embedded log only (with `bus: kafka://…` the broker's topic settings apply)."},
    {"log.compression_level", K_INT, OFF(compression_level), -7, 19, "-1", "zstd level for `log.compression: zstd`: negative = faster and larger (-1: ~820 MB/s, 4.7x on track events), 1 = the fastest of the normal levels (~530 MB/s, 5.9x); each step up costs CPU at ingest (docs/decisions.md \"Log compression\")."},
    {"log.index_interval_bytes", K_LONG, OFF(index_interval_bytes), 64, 1L << 24, "4096", "Bytes of segment between two entries of its sparse offset/time index (16 bytes per entry on disk, 24 in memory: 384 KiB per 64 MiB segment)."},
    {"log.retention_ms", K_LONG, OFF(retention_ms), 0, 100L * 366 * 86400 * 1000, "604800000", "Delete whole sealed segments whose newest event is older than this (ms; default 7 days; 0 = keep forever). Never deletes a segment a registered consumer group has not consumed."},
    {"log.retention_bytes", K_LONG, OFF(retention_bytes), 0, 1L << 50, "0", "Disk budget per partition (0 = unlimited): the oldest sealed segments are deleted past it, even unconsumed ones; that is logged as an error alert and counted as lost events."},
    {"ingest.max_body_bytes", K_LONG, OFF(max_body_bytes), 1024, 64L << 20, "524288", "Largest request body; larger gets 413."},
    {"ingest.max_event_bytes", K_LONG, OFF(max_event_bytes), 256, 1L << 20, "32768", "Largest single event; larger is rejected with `event_too_large`."},
    {"ingest.max_batch_events", K_LONG, OFF(max_batch_events), 1, 100000, "2500", "Most events in one request."},
    {"ingest.max_object_keys", K_LONG, OFF(max_object_keys), 16, 100000, "1000", "Most keys in any one JSON object of an event (properties, traits, context, ...); more is rejected with `too_many_keys`."},
    {"ingest.max_future", K_DUR, OFF(max_future_s), 0, 366L * 86400, "1d", "How far an event's timestamp may be ahead of the receive time (`implausible_timestamp` beyond). Durations: N, Ns, Nm, Nh, Nd."},
    {"ingest.max_age", K_DUR, OFF(max_age_s), 0, 100L * 366 * 86400, "7d", "How far an event's timestamp may be behind the receive time (`implausible_timestamp` beyond); 0 = no limit (backfills)."},
    {"ingest.unknown_types", K_STR, OFF(unknown_types), 0, 0, "accept", "`accept` or `reject` (`unknown_type`) events whose type is not a known type (the six seed types and the Segment call types, docs/API.md)."},
    {"ingest.dedupe_window", K_DUR, OFF(dedupe_window_s), 60, 366L * 86400, "7d", "How long an event_id / messageId is remembered: a repeat inside the window is acknowledged as a duplicate and not stored again. Rebuilt from the log at start."},
    {"ingest.dedupe_max_ids", K_LONG, OFF(dedupe_max_ids), 1024, 1L << 30, "1048576", "Most ids the dedupe window holds (40 bytes each: 40 MiB by default, allocated up front as virtual memory); past it the oldest ids are forgotten early (counted)."},
    {"auth.write_keys", K_KEYS, OFF(write_keys), 0, 0, "[]", "Write keys for the ingest endpoints: list of {name, key or key_sha256 (hex), rate_limit (events/s, optional)}. Empty: ingest is open (a warning is logged at start)."},
    {"pipeline.batch_max_events", K_LONG, OFF(pipeline_batch_max), 1, 100000, "5000", "Most events the pipeline applies in one store transaction. A batch this big happens only when the pipeline is behind (a batch takes what is in the log, and `pipeline.batch_max_ms` bounds its time); then each store page it touches is written once per transaction instead of once per 500 events: ~0.45 instead of ~1.05 KB of SQLite writes per event under bench-ingest's load, which leaves the disk to the log's fsyncs (docs/BENCHMARKS.md \"ingest\")."},
    {"metrics.enabled", K_STR, OFF(metrics_enabled), 0, 0, "true", "`true` or `false`: collect the metrics of GET /metrics (false exists to measure their cost: make bench-metrics)."},
    {"rules", K_STR, OFF(rules_path), 0, 0, "config/rules.yaml", "Rules file (docs/RULES.md); loaded at start when present, reloaded on SIGHUP and POST /api/v1/rules/reload (a bad file keeps the old rules)."},
    {"pipeline.nice", K_LONG, OFF(pipeline_nice), 0, 19, "10", "Nice value of the account workers' threads (0 = as the process): under CPU pressure ingest acknowledgements and the leads lane (routing) run first and the workers catch up after; sustained overload is still bounded by pipeline.max_lag (503). Measured in docs/BENCHMARKS.md \"ingest\"."},
    {"pipeline.sched_idle", K_LONG, OFF(pipeline_sched_idle), 0, 1, "1", "1: the account workers' threads run under SCHED_IDLE, on CPU time nothing else wants (ingest acknowledgements and the leads lane never wait for them; the workers catch up when the load drops; sustained overload is bounded by pipeline.max_lag, 503); their disk I/O stays best-effort, so the log's fsyncs never queue behind idle-class writes. 0: pipeline.nice applies. Measured in docs/BENCHMARKS.md \"ingest\"."},
    {"pipeline.linger_ms", K_LONG, OFF(pipeline_linger_ms), 0, 10000, "5", "After a batch that was not full (the worker caught up), an account worker waits this long before its next one, so events arriving one by one share a transaction (like a Kafka consumer's fetch.max.wait.ms). Bounds the extra latency of signals and account rules; the leads lane (routing) never waits. 0 = apply each event at once. Measured in docs/BENCHMARKS.md \"ingest\"."},
    {"pipeline.batch_max_ms", K_LONG, OFF(pipeline_batch_max_ms), 1, 60000, "100", "Latency bound of one batch: a worker stops adding events to its batch after this long and commits (with pipeline.batch_max_events, whichever comes first). A batch never waits for events: what is in the log is applied at once (between batches an account worker that caught up waits `pipeline.linger_ms`)."},
    {"pipeline.snapshot_every_events", K_LONG, OFF(pipeline_snapshot_every), 0, 1L << 40, "100000", "A partition's signals state is snapshotted into the store (in the batch's transaction, with its offset) every this many events; a restart, a consumer-group takeover or a poison retry restores the snapshot and replays only the log after it. 0 = never (rebuild from the log's start). A snapshot is ~300 bytes per account of the partition."},
    {"pipeline.workers", K_LONG, OFF(pipeline_workers), 0, 256, "0", "Account workers: threads that each own a share of the `events` partitions (partition p goes to worker p mod N), each with its own store connection; 0 = automatic: 1 with SQLite (one writer at a time: more workers only add lock waits to the leads' latency), one per core with PostgreSQL, at most one per partition. The leads lane is one more thread. Results do not depend on the count."},
    {"pipeline.poison_attempts", K_LONG, OFF(pipeline_poison_attempts), 1, 100, "3", "How many times the pipeline applies an event that fails (a rule that evaluates to an error on it) before it goes to the events DLQ with reason `rule_error`; its partition then moves on."},
    {"pipeline.max_lag", K_LONG, OFF(pipeline_max_lag), 0, 1L << 40, "1000000", "Backpressure: when the pipeline is this many events behind the log, ingest answers 503 with Retry-After and /readyz reports not ready; 0 = no bound."},
    {"routing.reps", K_REPS, OFF(reps), 0, 0, "[]", "Reps for lead routing: list of {id, name, email} and optionally the routing attributes of a rep object (docs/RULES.md): pools, territory, capacity, weight, timezone, working_hours, out_of_office. A rep object with the same id (REST) overrides them."},
    {"routing.strategy", K_STR, OFF(routing_strategy), 0, 0, "round_robin", "Default lead routing (when no rule's route_lead fires): `round_robin`, `weighted_round_robin`, `account_owner` (the matched account's owner first) or `territory` (only reps whose territory covers the lead). docs/RULES.md."},
    {"routing.pool", K_STR, OFF(routing_pool), 0, 0, "", "Default routing: the pool of reps to choose from; empty = every rep."},
    {"routing.match_account", K_STR, OFF(routing_match_account), 0, 0, "false", "Default routing: `true` to give a lead to the owner of its account (account_id, else an account whose domain is the email's) when that owner is eligible."},
    {"routing.territory", K_STR, OFF(routing_territory), 0, 0, "false", "Default routing: `true` to consider only reps whose territory (countries, regions, segments, plan_tiers) covers the lead."},
    {"routing.working_hours", K_STR, OFF(routing_working_hours), 0, 0, "false", "Default routing: `true` to consider only reps inside their working hours (their timezone)."},
    {"routing.max_open_leads", K_LONG, OFF(routing_max_open_leads), 0, 1000000, "0", "Default routing: skip reps with this many open (routed, not accepted) leads; 0 = only each rep's own capacity."},
    {"routing.fallback", K_STR, OFF(routing_fallback), 0, 0, "unassigned", "Default routing: the queue a lead goes to (status `queued`) when no rep is eligible."},
    {"routing.sla", K_DUR, OFF(routing_sla_s), 0, 366L * 86400, "0", "Default routing: a routed lead must be accepted (POST /api/v1/leads/{id}/accept) within this much of the rep's working time, else it is re-routed and an alert raised; 0 = no SLA."},
    {"outbound.poll_ms", K_INT, OFF(outbound_poll_ms), 1, 60000, "100", "How often an idle outbound lane asks the outbox again (ms); a pipeline commit that writes outbox rows wakes it at once."},
    {"outbound.lease_ms", K_LONG, OFF(outbound_lease_ms), 1000, 86400000, "60000", "How long a claimed delivery stays leased beyond the lane's worst wait (ms); a dispatcher that dies mid-delivery loses its claims after it."},
    {"outbound.destinations", K_DESTS, OFF(destinations), 0, 0, "[]", "Webhook and Slack destinations (docs/OUTBOUND.md): list of {name ([a-zA-Z0-9_.-], <= 63), kind (webhook or slack), url (http:// or https://), secrets ([whsec_...], two during a rotation; webhook), concurrency, rate_per_s, burst, queue_max, connect_timeout_ms, timeout_ms, allow_private (true to reach loopback/private addresses), retry_horizon (duration, 3d), backoff_base_ms, backoff_max_ms, max_attempts, max_response}. The dispatcher runs only when there is one."},
    {"warehouse.postgres", K_STR, OFF(wh_postgres), 0, 0, "", "Warehouse sink into PostgreSQL (docs/WAREHOUSE.md): a `postgresql://` URI; tables `events` and `warehouse_offsets` are created when missing. Empty: off."},
    {"warehouse.dir", K_STR, OFF(wh_dir), 0, 0, "", "Warehouse sink into files (docs/WAREHOUSE.md): directory of `dt=YYYY-MM-DD/hour=HH/part-<partition>-<first offset>.ndjson.zst` files and their manifest (a leading `DATA/` is the data directory). Empty: off."},
    {"warehouse.batch_max_events", K_LONG, OFF(wh_batch_max), 1, 1000000, "10000", "Most events per warehouse batch: one PostgreSQL transaction, or one partition's files and manifest line (a batch also ends at 16 MiB of rows)."},
    {"warehouse.flush_interval_ms", K_LONG, OFF(wh_flush_ms), 0, 3600000, "1000", "PostgreSQL: a batch smaller than `warehouse.batch_max_events` is written once this long has passed since the last one (ms)."},
    {"warehouse.file_interval_ms", K_LONG, OFF(wh_file_ms), 0, 86400000, "60000", "Files: likewise (ms); each flush writes at least one file per partition with new events, so this sets the file count."},
    {"signals", K_SIGNALS, OFF(signals), 0, 0, "(below)", "Signal definitions and their thresholds (docs/SIGNALS.md): the `signals.*` keys below."},
    {"backtest.timeout_ms", K_LONG, OFF(backtest_timeout_ms), 1000, 86400000, "300000", "Longest a backtest (POST /api/v1/backtest, `crmstream backtest`) may run: its dry pipeline replays the whole log into a scratch store; past this it is stopped, its store removed, and the answer is 503."},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = cs_strdup(v);
}

static int parse_fsync(cs_config *cfg, char *err, size_t errlen, const char *where)
{
    const char *f = cfg->fsync;
    if (strcmp(f, "always") == 0) {
        cfg->fsync_policy = CS_FSYNC_ALWAYS;
    } else if (strcmp(f, "never") == 0) {
        cfg->fsync_policy = CS_FSYNC_NEVER;
    } else if (strncmp(f, "interval:", 9) == 0) {
        char *end;
        errno = 0;
        long ms = strtol(f + 9, &end, 10);
        if (errno || *end || end == f + 9 || ms < 1 || ms > 60000) {
            snprintf(err, errlen, "%s: log.fsync: interval must be interval:<1..60000 ms>, got \"%s\"",
                     where, f);
            return -1;
        }
        cfg->fsync_policy = CS_FSYNC_INTERVAL;
        cfg->fsync_interval_ms = (int)ms;
    } else {
        snprintf(err, errlen, "%s: log.fsync: expected always, interval:<ms> or never, got \"%s\"",
                 where, f);
        return -1;
    }
    return 0;
}

static int parse_compression(cs_config *cfg, char *err, size_t errlen, const char *where)
{
    if (strcmp(cfg->compression, "zstd") == 0) cfg->compress = 1;
    else if (strcmp(cfg->compression, "none") == 0) cfg->compress = 0;
    else {
        snprintf(err, errlen, "%s: log.compression: expected zstd or none, got \"%s\"", where, cfg->compression);
        return -1;
    }
    return 0;
}

static int parse_unknown_types(cs_config *cfg, char *err, size_t errlen, const char *where)
{
    if (strcmp(cfg->unknown_types, "accept") == 0) cfg->reject_unknown_types = 0;
    else if (strcmp(cfg->unknown_types, "reject") == 0) cfg->reject_unknown_types = 1;
    else {
        snprintf(err, errlen, "%s: ingest.unknown_types: expected accept or reject, got \"%s\"", where,
                 cfg->unknown_types);
        return -1;
    }
    return 0;
}

static int apply_scalar(cs_config *cfg, const struct key *k, const char *v)
{
    if (k->kind == K_STR) {
        set_str((char **)((char *)cfg + k->off), v);
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (k->kind == K_DUR && end != v && !errno) {
        long mult = *end == 'd' ? 86400 : *end == 'h' ? 3600 : *end == 'm' ? 60 : 1;
        if (*end == 's' || mult > 1) end++;
        if (n > 0 && n > k->max / mult + 1) return -1;
        n *= mult;
    }
    if (errno || *end || end == v || n < k->min || n > k->max) return -1;
    if (k->kind == K_INT)
        *(int *)((char *)cfg + k->off) = (int)n;
    else
        *(long *)((char *)cfg + k->off) = n;
    return 0;
}

void cs_config_defaults(cs_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].kind != K_REPS && keys[i].kind != K_KEYS && keys[i].kind != K_DESTS && keys[i].kind != K_SIGNALS)
            apply_scalar(cfg, &keys[i], keys[i].dflt);
    cfg->fsync_policy = CS_FSYNC_ALWAYS;
    cfg->compress = 1;
}

void cs_config_free(cs_config *cfg)
{
    free(cfg->data_dir);
    free(cfg->http_addr);
    free(cfg->fsync);
    free(cfg->compression);
    free(cfg->metrics_enabled);
    free(cfg->rules_path);
    free(cfg->wh_postgres);
    free(cfg->wh_dir);
    cs_config_free_dests(cfg);
    free(cfg->store);
    free(cfg->bus);
    free(cfg->kafka_topic_prefix);
    free(cfg->kafka_group_prefix);
    for (size_t i = 0; i < cfg->nreps; i++) {
        free(cfg->reps[i].id);
        free(cfg->reps[i].name);
        free(cfg->reps[i].email);
        free(cfg->reps[i].attrs);
    }
    free(cfg->routing_strategy);
    free(cfg->routing_pool);
    free(cfg->routing_match_account);
    free(cfg->routing_territory);
    free(cfg->routing_working_hours);
    free(cfg->routing_fallback);
    free(cfg->reps);
    free(cfg->unknown_types);
    for (size_t i = 0; i < cfg->nwrite_keys; i++) free(cfg->write_keys[i].name);
    free(cfg->write_keys);
    cs_sig_settings_free(cfg->signals);
    memset(cfg, 0, sizeof *cfg);
}

struct ctx {
    yaml_document_t *doc;
    const char *name;
    char *err;
    size_t errlen;
    cs_config *cfg;
};

static int fail(struct ctx *c, yaml_node_t *n, const char *fmt, const char *a, const char *b)
{
    char what[512];
    snprintf(what, sizeof what, fmt, a, b);
    snprintf(c->err, c->errlen, "%s:%zu:%zu: %s", c->name, n->start_mark.line + 1,
             n->start_mark.column + 1, what);
    return -1;
}

/* A YAML node as JSON: plain scalars that read as numbers or true/false
 * keep that type, everything else is a string. */
static cJSON *yaml_json(yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (!n || depth > 8) return NULL;
    if (n->type == YAML_SCALAR_NODE) {
        const char *v = (const char *)n->data.scalar.value;
        if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0) return cJSON_CreateBool(v[0] == 't');
            char *end;
            errno = 0;
            double d = strtod(v, &end);
            if (*v && !*end && !errno) return cJSON_CreateNumber(d);
        }
        return cJSON_CreateString(v);
    }
    cJSON *j = n->type == YAML_SEQUENCE_NODE ? cJSON_CreateArray() : cJSON_CreateObject();
    if (n->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            cJSON *e = yaml_json(doc, yaml_document_get_node(doc, *it), depth + 1);
            if (!e) return cJSON_Delete(j), NULL;
            cJSON_AddItemToArray(j, e);
        }
    } else {
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            cJSON *e = yaml_json(doc, yaml_document_get_node(doc, p->value), depth + 1);
            if (!e || k->type != YAML_SCALAR_NODE) return cJSON_Delete(e), cJSON_Delete(j), NULL;
            cJSON_AddItemToObject(j, (const char *)k->data.scalar.value, e);
        }
    }
    return j;
}

static int is_rep_attr(const char *k)
{
    static const char *const names[] = {"pools", "territory", "capacity", "weight", "timezone", "working_hours",
                                        "out_of_office", NULL};
    for (int i = 0; names[i]; i++)
        if (strcmp(k, names[i]) == 0) return 1;
    return 0;
}

static int load_reps(struct ctx *c, yaml_node_t *seq)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(c, seq, "routing.reps: expected a list of reps%s%s", "", "");
    cs_config *cfg = c->cfg;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *rep = yaml_document_get_node(c->doc, *it);
        if (rep->type != YAML_MAPPING_NODE)
            return fail(c, rep, "routing.reps: each rep is a mapping with id, name, email%s%s", "", "");
        cs_rep_cfg r = {0};
        cJSON *attrs = NULL;
        for (yaml_node_pair_t *p = rep->data.mapping.pairs.start; p < rep->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
            const char *ks = (const char *)k->data.scalar.value;
            if (k->type == YAML_SCALAR_NODE && is_rep_attr(ks)) {
                cJSON *j = yaml_json(c->doc, v, 0);
                if (!j) {
                    free(r.id), free(r.name), free(r.email), cJSON_Delete(attrs);
                    return fail(c, v, "routing.reps: %s: nested too deeply%s", ks, "");
                }
                if (!attrs) attrs = cJSON_CreateObject();
                cJSON_DeleteItemFromObjectCaseSensitive(attrs, ks);
                cJSON_AddItemToObject(attrs, ks, j);
                continue;
            }
            if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
                cJSON_Delete(attrs);
                free(r.id), free(r.name), free(r.email);
                return fail(c, v, "routing.reps: rep fields must be strings%s%s", "", "");
            }
            char **dst = strcmp(ks, "id") == 0      ? &r.id
                         : strcmp(ks, "name") == 0  ? &r.name
                         : strcmp(ks, "email") == 0 ? &r.email
                                                    : NULL;
            if (!dst) {
                free(r.id), free(r.name), free(r.email), cJSON_Delete(attrs);
                return fail(c, k, "routing.reps: unknown rep field \"%s\"%s (expected id, name, email, pools, territory, capacity, weight, timezone, working_hours, out_of_office)", ks, "");
            }
            set_str(dst, (const char *)v->data.scalar.value);
        }
        if (attrs) {
            char *t = cJSON_PrintUnformatted(attrs);
            r.attrs = cs_strdup(t);
            cJSON_free(t);
            cJSON_Delete(attrs);
        }
        if (!r.id || !*r.id) {
            free(r.id), free(r.name), free(r.email), free(r.attrs);
            return fail(c, rep, "routing.reps: a rep needs an id%s%s", "", "");
        }
        for (size_t i = 0; i < cfg->nreps; i++)
            if (strcmp(cfg->reps[i].id, r.id) == 0) {
                int rc = fail(c, rep, "routing.reps: duplicate rep id \"%s\"%s", r.id, "");
                free(r.id), free(r.name), free(r.email), free(r.attrs);
                return rc;
            }
        if (!r.name) r.name = cs_strdup(r.id);
        if (!r.email) r.email = cs_strdup("");
        cfg->reps = cs_realloc(cfg->reps, (cfg->nreps + 1) * sizeof *cfg->reps);
        cfg->reps[cfg->nreps++] = r;
    }
    return 0;
}

static int hexval(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* auth.write_keys: [{name, key | key_sha256, rate_limit}] */
static int load_keys(struct ctx *c, yaml_node_t *seq)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(c, seq, "auth.write_keys: expected a list of {name, key, rate_limit}%s%s", "", "");
    cs_config *cfg = c->cfg;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *wk = yaml_document_get_node(c->doc, *it);
        if (wk->type != YAML_MAPPING_NODE)
            return fail(c, wk, "auth.write_keys: each key is a mapping with name, key (or key_sha256), rate_limit%s%s",
                        "", "");
        cs_write_key_cfg k = {0};
        int have_key = 0;
        for (yaml_node_pair_t *p = wk->data.mapping.pairs.start; p < wk->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
            if (kn->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
                free(k.name);
                return fail(c, v, "auth.write_keys: fields must be single values%s%s", "", "");
            }
            const char *ks = (const char *)kn->data.scalar.value, *vs = (const char *)v->data.scalar.value;
            if (strcmp(ks, "name") == 0) {
                set_str(&k.name, vs);
            } else if (strcmp(ks, "key") == 0) {
                if (!*vs || have_key) {
                    free(k.name);
                    return fail(c, v, "auth.write_keys: key must be non-empty, and only one of key / key_sha256%s%s", "", "");
                }
                SHA256((const unsigned char *)vs, strlen(vs), k.sha256);
                have_key = 1;
            } else if (strcmp(ks, "key_sha256") == 0) {
                int ok = strlen(vs) == 64 && !have_key;
                for (int i = 0; ok && i < 32; i++) {
                    int hi = hexval(vs[2 * i]), lo = hexval(vs[2 * i + 1]);
                    if (hi < 0 || lo < 0) ok = 0;
                    else k.sha256[i] = (unsigned char)(hi << 4 | lo);
                }
                if (!ok) {
                    free(k.name);
                    return fail(c, v, "auth.write_keys: key_sha256 must be 64 hex digits (and only one of key / key_sha256)%s%s", "", "");
                }
                have_key = 1;
            } else if (strcmp(ks, "rate_limit") == 0) {
                char *end;
                errno = 0;
                double r = strtod(vs, &end);
                if (errno || *end || end == vs || !(r >= 0 && r <= 1e9)) {
                    free(k.name);
                    return fail(c, v, "auth.write_keys: rate_limit must be events per second, 0..1e9%s%s", "", "");
                }
                k.rate_limit = r;
            } else {
                free(k.name);
                return fail(c, kn, "auth.write_keys: unknown field \"%s\"%s (expected name, key, key_sha256, rate_limit)", ks, "");
            }
        }
        if (!k.name || !*k.name || !have_key) {
            free(k.name);
            return fail(c, wk, "auth.write_keys: a write key needs a name and a key (or key_sha256)%s%s", "", "");
        }
        for (size_t i = 0; i < cfg->nwrite_keys; i++)
            if (strcmp(cfg->write_keys[i].name, k.name) == 0 || CRYPTO_memcmp(cfg->write_keys[i].sha256, k.sha256, 32) == 0) {
                int rc = fail(c, wk, "auth.write_keys: duplicate name or key \"%s\"%s", k.name, "");
                free(k.name);
                return rc;
            }
        cfg->write_keys = cs_realloc(cfg->write_keys, (cfg->nwrite_keys + 1) * sizeof *cfg->write_keys);
        cfg->write_keys[cfg->nwrite_keys++] = k;
    }
    return 0;
}

static int walk(struct ctx *c, yaml_node_t *map, const char *prefix)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail(c, map, "%s%sexpected a mapping", prefix, *prefix ? ": " : "");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (k->type != YAML_SCALAR_NODE) return fail(c, k, "keys must be strings%s%s", "", "");
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", (const char *)k->data.scalar.value);
        const struct key *found = NULL;
        int is_section = 0;
        size_t plen = strlen(path);
        for (size_t i = 0; i < NKEYS; i++) {
            if (strcmp(keys[i].path, path) == 0) found = &keys[i];
            else if (strncmp(keys[i].path, path, plen) == 0 && keys[i].path[plen] == '.') is_section = 1;
        }
        if (found && found->kind == K_REPS) {
            if (load_reps(c, v)) return -1;
        } else if (found && found->kind == K_DESTS) {
            if (cs_config_load_dests(c->doc, v, c->name, c->cfg, c->err, c->errlen)) return -1;
        } else if (found && found->kind == K_SIGNALS) {
            if (cs_sig_settings_yaml(&c->cfg->signals, c->doc, v, c->name, c->err, c->errlen)) return -1;
        } else if (found && found->kind == K_KEYS) {
            if (load_keys(c, v)) return -1;
        } else if (found && !(is_section && v->type == YAML_MAPPING_NODE)) {
            if (v->type != YAML_SCALAR_NODE) return fail(c, v, "%s: expected a single value%s", path, "");
            if (apply_scalar(c->cfg, found, (const char *)v->data.scalar.value)) {
                char range[96];
                if (found->kind == K_DUR)
                    snprintf(range, sizeof range, "a duration (N, Ns, Nm, Nh, Nd) of %ld..%ld seconds", found->min,
                             found->max);
                else
                    snprintf(range, sizeof range, "an integer in %ld..%ld", found->min, found->max);
                return fail(c, v, "%s: expected %s", path, range);
            }
        } else if (is_section) {
            if (walk(c, v, path)) return -1;
        } else {
            return fail(c, k, "unknown key \"%s\"%s (see docs/CONFIG.md)", path, "");
        }
    }
    return 0;
}

int cs_config_load_string(cs_config *cfg, const char *name, const char *text, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = -1;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%zu:%zu: %s", name, parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    struct ctx c = {&doc, name, err, errlen, cfg};
    if (!root) {
        rc = 0; /* empty file: defaults */
    } else if (walk(&c, root, "") == 0) {
        rc = parse_fsync(cfg, err, errlen, name);
        if (rc == 0) rc = parse_compression(cfg, err, errlen, name);
        if (rc == 0) rc = parse_unknown_types(cfg, err, errlen, name);
        if (rc == 0 && strcmp(cfg->bus, "embedded") != 0 && (strncmp(cfg->bus, "kafka://", 8) != 0 || !cfg->bus[8])) {
            snprintf(err, errlen, "%s: bus: expected embedded or kafka://host:port[,host:port], got \"%s\"", name, cfg->bus);
            rc = -1;
        }
        const char *const bools[][2] = {{"routing.match_account", cfg->routing_match_account},
                                        {"routing.territory", cfg->routing_territory},
                                        {"routing.working_hours", cfg->routing_working_hours}};
        for (size_t i = 0; rc == 0 && i < 3; i++)
            if (strcmp(bools[i][1], "true") != 0 && strcmp(bools[i][1], "false") != 0) {
                snprintf(err, errlen, "%s: %s: expected true or false, got \"%s\"", name, bools[i][0], bools[i][1]);
                rc = -1;
            }
        const char *rs = cfg->routing_strategy;
        if (rc == 0 && strcmp(rs, "round_robin") != 0 && strcmp(rs, "weighted_round_robin") != 0 &&
            strcmp(rs, "account_owner") != 0 && strcmp(rs, "territory") != 0) {
            snprintf(err, errlen, "%s: routing.strategy: expected round_robin, weighted_round_robin, account_owner or territory, got \"%s\"", name, rs);
            rc = -1;
        }
        if (rc == 0 && strcmp(cfg->metrics_enabled, "true") != 0 && strcmp(cfg->metrics_enabled, "false") != 0) {
            snprintf(err, errlen, "%s: metrics.enabled: expected true or false, got \"%s\"", name, cfg->metrics_enabled);
            rc = -1;
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int cs_config_load(cs_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    cs_buf b;
    cs_buf_init(&b);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        cs_buf_add(&b, chunk, n);
        if (b.len > (1u << 20)) {
            fclose(f);
            cs_buf_free(&b);
            snprintf(err, errlen, "%s: larger than 1 MiB", path);
            return -1;
        }
    }
    fclose(f);
    if (!b.data) cs_buf_add(&b, "", 0);
    int rc = cs_config_load_string(cfg, path, b.data, err, errlen);
    cs_buf_free(&b);
    return rc;
}

void cs_config_reference(FILE *out)
{
    fprintf(out, "| key | default | meaning |\n|---|---|---|\n");
    for (size_t i = 0; i < NKEYS; i++)
        fprintf(out, "| `%s` | `%s` | %s |\n", keys[i].path, keys[i].dflt, keys[i].doc);
    cs_sig_config_reference(out);
}
