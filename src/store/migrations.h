/*
 * store/migrations — numbered schema migrations, applied in order at start
 * and recorded in schema_migrations. Append only: never edit a released one.
 */
#ifndef CS_STORE_MIGRATIONS_H
#define CS_STORE_MIGRATIONS_H

struct cs_migration {
    int         version;
    const char *name;
    const char *sql;
};

extern const struct cs_migration cs_sqlite_migrations[];
extern const int cs_sqlite_migrations_count;
/* PostgreSQL has its own list with the same numbering and meaning. */
extern const struct cs_migration cs_postgres_migrations[];
extern const int cs_postgres_migrations_count;

#endif
