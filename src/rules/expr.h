/*
 * rules/expr — a compiler and evaluator for the CEL subset of rule
 * conditions and templates (docs/RULES.md lists the subset and where it
 * differs from full CEL).
 *
 * Owns parsing, compile-time checks (with line:column), the compiled form
 * (one arena per expression) and evaluation. Never knows the CRM data model:
 * every variable (`event.type`, `account.plan_tier`, `signals.usage_score`,
 * ...) is resolved by the caller's lookup callback over the dotted path.
 * Evaluation never allocates heap memory: intermediate strings and lists go
 * to a caller-owned cs_expr_env (usually on the stack). Exception: the POSIX
 * regexec() behind .matches() may allocate inside glibc (compiled at load).
 *
 * Thread safety: a compiled cs_expr is immutable and may be evaluated from
 * any number of threads at once, each with its own cs_expr_env.
 */
#ifndef CS_RULES_EXPR_H
#define CS_RULES_EXPR_H

#include <stddef.h>
#include <stdint.h>

/* Limits (untrusted input never crashes; beyond them compile fails). */
#define CS_EXPR_MAX_LEN     8192  /* bytes of source */
#define CS_EXPR_MAX_DEPTH   48    /* nesting of sub-expressions */
#define CS_EXPR_MAX_NODES   2048  /* AST nodes */
#define CS_EXPR_MAX_PATH    256   /* bytes of a dotted variable path */
#define CS_EXPR_MAX_LOOPS   8     /* nested exists/all */
#define CS_EXPR_SCRATCH     2048  /* bytes for intermediate strings per eval */
#define CS_EXPR_VSCRATCH    256   /* values for intermediate lists per eval */

typedef enum cs_vtype {
    CS_V_ERROR = 0, /* u.err: a static message (CEL error value) */
    CS_V_NULL,
    CS_V_BOOL,      /* u.b */
    CS_V_INT,       /* u.i, 64-bit signed; overflow is an error */
    CS_V_DOUBLE,    /* u.d */
    CS_V_STRING,    /* u.s: UTF-8, not NUL-terminated */
    CS_V_LIST,      /* u.list: items borrowed */
    CS_V_MAP,       /* u.map: opaque to the engine; fields through cs_field_fn */
    CS_V_DURATION,  /* u.us: microseconds */
    CS_V_TIMESTAMP, /* u.us: microseconds since the Unix epoch, UTC */
} cs_vtype;

typedef struct cs_value {
    cs_vtype type;
    union {
        int         b;
        int64_t     i;
        double      d;
        int64_t     us;
        const char *err;
        struct {
            const char *p;
            size_t      len;
        } s;
        struct {
            const struct cs_value *items;
            size_t                 n;
        } list;
        struct {
            const void *p; /* the caller's object */
            size_t      n; /* number of entries, for size() */
        } map;
    } u;
} cs_value;

/* Resolve a dotted path ("event.properties.feature") to a value. Return 1
 * with *out set when present, 0 when absent (CEL: "no such key"). Strings
 * and lists in *out are borrowed and must stay valid for the evaluation. */
typedef int (*cs_lookup_fn)(void *ud, const char *path, size_t len, cs_value *out);
/* Optional: a field of a map value the caller returned (m->u.map.p): 1
 * found, 0 absent. Used by `m.f`, `m["k"]` and `"k" in m` on computed maps,
 * e.g. the elements of a list inside exists(). */
typedef int (*cs_field_fn)(void *ud, const cs_value *m, const char *key, size_t len, cs_value *out);

/* Per-evaluation state, owned by the caller (≈ 8 KiB: keep it on the stack
 * or reuse one per thread). cs_expr_env_init before first use; each
 * evaluation resets the scratch, so a string result stays valid until the
 * next evaluation with the same env. */
typedef struct cs_expr_env {
    cs_lookup_fn lookup;
    cs_field_fn  field;   /* may be NULL */
    void        *ud;
    size_t       used;    /* bytes of scratch in use */
    size_t       vused;   /* values of vscratch in use */
    cs_value     loop[CS_EXPR_MAX_LOOPS];
    char         scratch[CS_EXPR_SCRATCH];
    cs_value     vscratch[CS_EXPR_VSCRATCH];
} cs_expr_env;

void cs_expr_env_init(cs_expr_env *env, cs_lookup_fn lookup, cs_field_fn field, void *ud);

typedef struct cs_expr cs_expr;

/* A compile error: 1-based line and column within the expression source. */
typedef struct cs_expr_error {
    int  line, col;
    char msg[160];
} cs_expr_error;

/* Compile src (len bytes). roots: NULL-terminated list of allowed root
 * variable names (e.g. {"event","account","lead","contact","signals",NULL}),
 * or NULL to allow any name. Returns the compiled expression (free with
 * cs_expr_free), or NULL with *err set. */
cs_expr *cs_expr_compile(const char *src, size_t len, const char *const *roots, cs_expr_error *err);
void     cs_expr_free(cs_expr *e);

/* Evaluate. Never allocates; never fails other than by returning a
 * CS_V_ERROR value (CEL semantics: errors propagate, && and || absorb them
 * when the other side decides). */
cs_value cs_expr_eval(const cs_expr *e, cs_expr_env *env);

/* Evaluate as a condition: 1 when the result is the bool true, 0 for false,
 * -1 for an error or a non-bool result (*why set to a static message). */
int cs_expr_test(const cs_expr *e, cs_expr_env *env, const char **why);

/* The expression's source text (NUL-terminated) and its compiled size. */
const char *cs_expr_source(const cs_expr *e);
size_t      cs_expr_size(const cs_expr *e);

/* Render v as text into buf (NUL-terminated, truncated to cap): strings as
 * is, numbers like CEL's string(), durations as "3600s", timestamps in
 * RFC 3339, lists as [a, b]. Returns the length it would need (like
 * snprintf). json_escape: escape for the inside of a JSON string. */
size_t cs_value_format(const cs_value *v, char *buf, size_t cap, int json_escape);

/* A CEL duration string ("1h30m", "2.5s", "-90m"; units h m s ms us ns)
 * to microseconds; with_days also accepts "d". Returns 0 or -1. */
int cs_parse_duration(const char *s, size_t len, int with_days, int64_t *us);

/* Convenience constructors for lookup callbacks. */
static inline cs_value cs_vstr(const char *s, size_t len)
{
    cs_value v = {.type = CS_V_STRING};
    v.u.s.p = s, v.u.s.len = len;
    return v;
}
static inline cs_value cs_vint(int64_t i) { return (cs_value){.type = CS_V_INT, .u.i = i}; }
static inline cs_value cs_vdouble(double d) { return (cs_value){.type = CS_V_DOUBLE, .u.d = d}; }
static inline cs_value cs_vbool(int b) { return (cs_value){.type = CS_V_BOOL, .u.b = !!b}; }

#endif
