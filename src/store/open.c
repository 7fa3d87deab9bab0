/*
 * store/open — pick the backend a `store` config value names. A sqlite
 * path starting with DATA/ is relative to the data directory (the default
 * is sqlite:DATA/crm.sqlite, so --data moves the store with the log).
 */
#include <stdio.h>
#include <string.h>

#include "store/store.h"

cs_store *cs_store_open(const char *spec, const char *data_dir, char *err, size_t errlen)
{
    if (!spec || !*spec) {
        char path[4200];
        snprintf(path, sizeof path, "%s/crm.sqlite", data_dir ? data_dir : ".");
        return cs_store_sqlite_open(path, err, errlen);
    }
    if (strncmp(spec, "sqlite:", 7) == 0) {
        if (!spec[7]) {
            snprintf(err, errlen, "store: sqlite: needs a path (sqlite:PATH)");
            return NULL;
        }
        const char *path = spec + 7;
        char full[4200];
        if (strncmp(path, "DATA/", 5) == 0) { /* the default: sqlite:DATA/crm.sqlite */
            snprintf(full, sizeof full, "%s/%s", data_dir ? data_dir : ".", path + 5);
            path = full;
        }
        return cs_store_sqlite_open(path, err, errlen);
    }
    if (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0)
        return cs_store_postgres_open(spec, err, errlen);
    snprintf(err, errlen, "store: expected sqlite:PATH or a postgresql:// URI, got \"%.100s\"", spec);
    return NULL;
}
