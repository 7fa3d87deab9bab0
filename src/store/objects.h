/*
 * store/objects — internal to the store backends: the generic object write
 * (merge, compare, audit) and the SQL built from the object table. Nothing
 * outside src/store includes this.
 */
#ifndef CS_STORE_OBJECTS_H
#define CS_STORE_OBJECTS_H

#include "store/store.h"

/* What a backend gives the generic write. */
struct cs_obj_prims {
    /* Current values of def/id into vals[def->ncols] (cs_strdup'd or NULL).
     * 1 found, 0 absent, -1 error (st->errmsg, st->retriable set). */
    int (*load)(cs_store *st, int obj, const char *id, char **vals);
    /* Write the whole row (vals[def->ncols]); insert_only: ON CONFLICT DO
     * NOTHING, else upsert on id. Rows changed (0 or 1), or -1. */
    int (*save)(cs_store *st, int obj, const char *const *vals, int insert_only);
};

/* obj_upsert / obj_insert for any backend. */
int cs_obj_write(cs_store *st, const struct cs_obj_prims *p, int obj, const char *id,
                 const cs_kv *kv, size_t n, const cs_cause *cause, int insert_only);

/* SQL texts (malloc'd). ph is the placeholder prefix: '?' (SQLite ?N) or
 * '$' (PostgreSQL $N, with casts where a type cannot be inferred). Column
 * lists are the object table's, never user input.
 *   load:  SELECT cols FROM t WHERE id=p1
 *   save:  INSERT all cols, upsert on id (or DO NOTHING when insert_only)
 *   get:   SELECT seq, cols FROM t WHERE id=p1
 *   list:  SELECT seq, cols FROM t WHERE seq>p1 AND (pK IS NULL OR fcol=pK)...
 *          ORDER BY seq LIMIT pN   — one pK per CS_COL_FILTER column, in order */
char *cs_obj_sql_load(const cs_objdef *def, char ph);
char *cs_obj_sql_save(const cs_objdef *def, char ph, int insert_only);
char *cs_obj_sql_get(const cs_objdef *def, char ph);
char *cs_obj_sql_list(const cs_objdef *def, char ph);
/*   find:  SELECT seq, cols FROM t WHERE col=p1 ORDER BY seq LIMIT 1 (col from def) */
char *cs_obj_sql_find(const cs_objdef *def, char ph, int col);
/* Number of filter columns of def, and their parameter order. */
int cs_obj_nfilters(const cs_objdef *def);

/* Fill params[nf] (borrowed) from the filters of a list call; -1 with
 * st->errmsg on a column that is not a filter. */
int cs_obj_filter_params(cs_store *st, const cs_objdef *def, const cs_kv *f, size_t nf,
                         const char **params);

#endif
