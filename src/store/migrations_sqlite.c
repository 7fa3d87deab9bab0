/*
 * store/migrations_sqlite — the SQLite schema, one numbered step at a time.
 */
#include "store/migrations.h"

const struct cs_migration cs_sqlite_migrations[] = {
    {1, "pipeline offsets, counters, leads, audit",
     "CREATE TABLE consumer_offsets ("
     "  consumer TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,"
     "  next_offset INTEGER NOT NULL, PRIMARY KEY (consumer, topic, partition));"
     "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
     "CREATE TABLE leads ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
     "  id TEXT NOT NULL UNIQUE, event_id TEXT NOT NULL UNIQUE, account_id TEXT,"
     "  email TEXT NOT NULL, company TEXT, country TEXT, source TEXT, employee_count INTEGER,"
     "  status TEXT NOT NULL, owner TEXT, routed_at TEXT, route_reason TEXT,"
     "  route_latency_ms REAL, created_at TEXT NOT NULL,"
     "  partition INTEGER NOT NULL, offset INTEGER NOT NULL);"
     "CREATE INDEX leads_owner ON leads(owner);"
     "CREATE TABLE audit ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, object TEXT NOT NULL, object_id TEXT NOT NULL,"
     "  field TEXT NOT NULL, old_value TEXT, new_value TEXT, cause_event_id TEXT,"
     "  partition INTEGER, offset INTEGER, rule_id TEXT, at TEXT NOT NULL);"
     "CREATE INDEX audit_object ON audit(object, object_id);"},
    /* Column lists must match the object table in objects.c. */
    {2, "CRM objects: accounts, contacts, reps, tasks, alerts, signals with history",
     "CREATE TABLE accounts ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT, domain TEXT,"
     "  plan_tier TEXT, mrr REAL, renewal_date TEXT, owner TEXT, custom TEXT,"
     "  health_score REAL, health_breakdown TEXT);"
     "CREATE INDEX accounts_owner ON accounts(owner);"
     "CREATE INDEX accounts_domain ON accounts(domain);"
     "CREATE TABLE contacts ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, account_id TEXT,"
     "  email TEXT, name TEXT, title TEXT, custom TEXT);"
     "CREATE INDEX contacts_account ON contacts(account_id);"
     "CREATE INDEX contacts_email ON contacts(email);"
     "CREATE TABLE reps ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT, email TEXT,"
     "  pools TEXT, territory TEXT, capacity INTEGER, timezone TEXT, working_hours TEXT,"
     "  out_of_office INTEGER);"
     "CREATE TABLE tasks ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, account_id TEXT,"
     "  lead_id TEXT, owner TEXT, kind TEXT, title TEXT, status TEXT, due_at TEXT, rule_id TEXT);"
     "CREATE INDEX tasks_account ON tasks(account_id);"
     "CREATE TABLE alerts ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
     "  dedupe_key TEXT NOT NULL UNIQUE, kind TEXT, severity TEXT, account_id TEXT, message TEXT,"
     "  cause_event_id TEXT, partition INTEGER, \"offset\" INTEGER, rule_id TEXT, at TEXT);"
     "CREATE INDEX alerts_account ON alerts(account_id);"
     "CREATE TABLE signals ("
     "  account_id TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, at TEXT,"
     "  cause_event_id TEXT, partition INTEGER, \"offset\" INTEGER, rule_id TEXT,"
     "  PRIMARY KEY (account_id, name));"
     "CREATE TABLE signal_history ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT NOT NULL, name TEXT NOT NULL,"
     "  value REAL NOT NULL, at TEXT, cause_event_id TEXT NOT NULL, partition INTEGER,"
     "  \"offset\" INTEGER, rule_id TEXT, UNIQUE (account_id, name, cause_event_id));"},
    /* The transactional outbox (docs/OUTBOUND.md): rows written in the
     * pipeline's batch transaction, delivered by the dispatcher. */
    {3, "outbox",
     "CREATE TABLE outbox ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, dest TEXT NOT NULL,"
     "  payload TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending', attempt INTEGER NOT NULL DEFAULT 0,"
     "  created_at_ms INTEGER NOT NULL, next_attempt_ms INTEGER NOT NULL, lease_until_ms INTEGER,"
     "  last_error TEXT, delivered_at_ms INTEGER, dead_at_ms INTEGER, redriven_at_ms INTEGER,"
     "  redrives INTEGER NOT NULL DEFAULT 0, received_at_ms INTEGER,"
     "  cause_event_id TEXT, partition INTEGER, \"offset\" INTEGER, rule_id TEXT);"
     "CREATE INDEX outbox_due ON outbox(dest, state, next_attempt_ms);"
     "CREATE INDEX outbox_state ON outbox(state, dest, created_at_ms);"},
    {4, "dead-letter queue for events",
     "CREATE TABLE dead_events ("
     "  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, event_id TEXT, reason TEXT, message TEXT,"
     "  attempts INTEGER, first_failed_at TEXT, last_failed_at TEXT, payload TEXT, status TEXT,"
     "  cause_event_id TEXT, partition INTEGER, \"offset\" INTEGER, rule_id TEXT, at TEXT);"
     "CREATE INDEX dead_events_reason ON dead_events(reason);"},
    /* 5 is routing's. Versions apply in ascending order whatever their
     * place in this list (cs_migration_nth). */
    {6, "state snapshots (signals engines per partition) with their log offsets",
     "CREATE TABLE state_snapshots ("
     "  name TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
     "  data BLOB NOT NULL, bytes INTEGER NOT NULL,"
     "  at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),"
     "  PRIMARY KEY (name, partition));"},
    /* Routing (src/routing, docs/RULES.md): the lead's domain, why it went
     * where it went (JSON), its acceptance and SLA deadline; a rep's weight
     * for weighted round robin. */
    {5, "routing: lead explanation, acceptance, SLA; rep weight",
     "ALTER TABLE leads ADD COLUMN domain TEXT;"
     "ALTER TABLE leads ADD COLUMN route_explanation TEXT;"
     "ALTER TABLE leads ADD COLUMN accepted_at TEXT;"
     "ALTER TABLE leads ADD COLUMN sla_due_at TEXT;"
     "CREATE INDEX leads_open ON leads(status, owner);"
     "CREATE INDEX leads_sla ON leads(status, sla_due_at);"
     "ALTER TABLE reps ADD COLUMN weight INTEGER;"},
};
const int cs_sqlite_migrations_count = sizeof cs_sqlite_migrations / sizeof cs_sqlite_migrations[0];
