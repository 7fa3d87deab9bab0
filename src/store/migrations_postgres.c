/*
 * store/migrations_postgres — the PostgreSQL schema, one numbered step at a
 * time. Same numbers and meaning as migrations_sqlite.c; types differ
 * (BIGSERIAL, BIGINT, DOUBLE PRECISION) and "offset" is quoted (reserved).
 * JSON columns are TEXT, not jsonb: jsonb rewrites the text (key order,
 * spaces), and the API must return what was written on both backends.
 */
#include "store/migrations.h"

const struct cs_migration cs_postgres_migrations[] = {
    {1, "pipeline offsets, counters, leads, audit",
     "CREATE TABLE consumer_offsets ("
     "  consumer TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,"
     "  next_offset BIGINT NOT NULL, PRIMARY KEY (consumer, topic, partition));"
     "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);"
     "CREATE TABLE leads ("
     "  seq BIGSERIAL PRIMARY KEY,"
     "  id TEXT NOT NULL UNIQUE, event_id TEXT NOT NULL UNIQUE, account_id TEXT,"
     "  email TEXT NOT NULL, company TEXT, country TEXT, source TEXT, employee_count BIGINT,"
     "  status TEXT NOT NULL, owner TEXT, routed_at TEXT, route_reason TEXT,"
     "  route_latency_ms DOUBLE PRECISION, created_at TEXT NOT NULL,"
     "  partition INTEGER NOT NULL, \"offset\" BIGINT NOT NULL);"
     "CREATE INDEX leads_owner ON leads(owner);"
     "CREATE TABLE audit ("
     "  seq BIGSERIAL PRIMARY KEY, object TEXT NOT NULL, object_id TEXT NOT NULL,"
     "  field TEXT NOT NULL, old_value TEXT, new_value TEXT, cause_event_id TEXT,"
     "  partition INTEGER, \"offset\" BIGINT, rule_id TEXT, at TEXT NOT NULL);"
     "CREATE INDEX audit_object ON audit(object, object_id);"},
    /* Column lists must match the object table in objects.c. */
    {2, "CRM objects: accounts, contacts, reps, tasks, alerts, signals with history",
     "CREATE TABLE accounts ("
     "  seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT, domain TEXT,"
     "  plan_tier TEXT, mrr DOUBLE PRECISION, renewal_date TEXT, owner TEXT, custom TEXT,"
     "  health_score DOUBLE PRECISION, health_breakdown TEXT);"
     "CREATE INDEX accounts_owner ON accounts(owner);"
     "CREATE INDEX accounts_domain ON accounts(domain);"
     "CREATE TABLE contacts ("
     "  seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, account_id TEXT,"
     "  email TEXT, name TEXT, title TEXT, custom TEXT);"
     "CREATE INDEX contacts_account ON contacts(account_id);"
     "CREATE INDEX contacts_email ON contacts(email);"
     "CREATE TABLE reps ("
     "  seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, name TEXT, email TEXT,"
     "  pools TEXT, territory TEXT, capacity BIGINT, timezone TEXT, working_hours TEXT,"
     "  out_of_office BIGINT);"
     "CREATE TABLE tasks ("
     "  seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, account_id TEXT,"
     "  lead_id TEXT, owner TEXT, kind TEXT, title TEXT, status TEXT, due_at TEXT, rule_id TEXT);"
     "CREATE INDEX tasks_account ON tasks(account_id);"
     "CREATE TABLE alerts ("
     "  seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
     "  dedupe_key TEXT NOT NULL UNIQUE, kind TEXT, severity TEXT, account_id TEXT, message TEXT,"
     "  cause_event_id TEXT, partition BIGINT, \"offset\" BIGINT, rule_id TEXT, at TEXT);"
     "CREATE INDEX alerts_account ON alerts(account_id);"
     "CREATE TABLE signals ("
     "  account_id TEXT NOT NULL, name TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, at TEXT,"
     "  cause_event_id TEXT, partition INTEGER, \"offset\" BIGINT, rule_id TEXT,"
     "  PRIMARY KEY (account_id, name));"
     "CREATE TABLE signal_history ("
     "  seq BIGSERIAL PRIMARY KEY, account_id TEXT NOT NULL, name TEXT NOT NULL,"
     "  value DOUBLE PRECISION NOT NULL, at TEXT, cause_event_id TEXT NOT NULL, partition INTEGER,"
     "  \"offset\" BIGINT, rule_id TEXT, UNIQUE (account_id, name, cause_event_id));"},
    /* The transactional outbox (docs/OUTBOUND.md): rows written in the
     * pipeline's batch transaction, delivered by the dispatcher. */
    {3, "outbox",
     "CREATE TABLE outbox ("
     "  seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, dest TEXT NOT NULL,"
     "  payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempt INTEGER NOT NULL DEFAULT 0,"
     "  created_at_ms BIGINT NOT NULL, next_attempt_ms BIGINT NOT NULL, lease_until_ms BIGINT,"
     "  last_error TEXT, delivered_at_ms BIGINT, dead_at_ms BIGINT, redriven_at_ms BIGINT,"
     "  redrives INTEGER NOT NULL DEFAULT 0, received_at_ms BIGINT,"
     "  cause_event_id TEXT, partition INTEGER, \"offset\" BIGINT, rule_id TEXT);"
     "CREATE INDEX outbox_due ON outbox(dest, state, next_attempt_ms);"
     "CREATE INDEX outbox_state ON outbox(state, dest, created_at_ms);"},
    {4, "dead-letter queue for events",
     "CREATE TABLE dead_events ("
     "  seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, event_id TEXT, reason TEXT, message TEXT,"
     "  attempts BIGINT, first_failed_at TEXT, last_failed_at TEXT, payload TEXT, status TEXT,"
     "  cause_event_id TEXT, partition BIGINT, \"offset\" BIGINT, rule_id TEXT, at TEXT);"
     "CREATE INDEX dead_events_reason ON dead_events(reason);"},
    /* 5 is routing's. Versions apply in ascending order whatever their
     * place in this list (cs_migration_nth). */
    {6, "state snapshots (signals engines per partition) with their log offsets",
     "CREATE TABLE state_snapshots ("
     "  name TEXT NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL,"
     "  data BYTEA NOT NULL, bytes BIGINT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (name, partition));"},
    {5, "routing: lead explanation, acceptance, SLA; rep weight",
     "ALTER TABLE leads ADD COLUMN domain TEXT;"
     "ALTER TABLE leads ADD COLUMN route_explanation TEXT;"
     "ALTER TABLE leads ADD COLUMN accepted_at TEXT;"
     "ALTER TABLE leads ADD COLUMN sla_due_at TEXT;"
     "CREATE INDEX leads_open ON leads(status, owner);"
     "CREATE INDEX leads_sla ON leads(status, sla_due_at);"
     "ALTER TABLE reps ADD COLUMN weight BIGINT;"},
};
const int cs_postgres_migrations_count = sizeof cs_postgres_migrations / sizeof cs_postgres_migrations[0];
