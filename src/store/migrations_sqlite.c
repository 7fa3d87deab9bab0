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
};
const int cs_sqlite_migrations_count = sizeof cs_sqlite_migrations / sizeof cs_sqlite_migrations[0];
