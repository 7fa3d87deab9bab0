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

/* The migration of rank i (0-based) by ascending version, so a list whose
 * entries were appended out of order (branches merged in another order)
 * still applies lowest version first; each version is applied once
 * (schema_migrations), so a database that already has a higher one gets a
 * lower one added later without harm. n is small: a linear scan. */
static inline const struct cs_migration *cs_migration_nth(const struct cs_migration *m, int n, int i)
{
    for (int j = 0; j < n; j++) {
        int below = 0;
        for (int k = 0; k < n; k++) below += m[k].version < m[j].version;
        if (below == i) return &m[j];
    }
    return &m[i];
}

#endif
