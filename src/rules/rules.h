/*
 * rules/rules — the rules file (YAML): load and validate it into an
 * immutable rule set, evaluate a rule set against one event, and the alert
 * cooldown table. docs/RULES.md describes the file format for users.
 *
 * Owns: rule and action validation (errors as file:line:column), templates
 * ("text {{ expr }} text"), the order in which matching rules' actions come
 * out, alert suppression by dedupe key. Never touches the store, the bus or
 * HTTP, and knows nothing of the CRM data model: variables are resolved
 * through the caller's cs_expr_env lookup (rules/expr.h). Executing actions
 * (routing, outbox rows, CRM writes) is the caller's job.
 *
 * Reload: cs_rules_load* returns a NEW rule set or NULL with an error; the
 * caller keeps using the old set on error and swaps pointers on success. A
 * rule set is immutable once loaded, so any number of threads may evaluate it
 * at once; cs_ruleset_ref/unref (atomic) let the swapper free the old set
 * when the last evaluator drops it. A cooldown table is NOT thread-safe:
 * keep one per partition worker (or per ordered lane).
 */
#ifndef CS_RULES_RULES_H
#define CS_RULES_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rules/expr.h"

#define CS_RULES_MAX_FILE   (4u << 20) /* bytes of YAML */
#define CS_RULES_MAX_RULES  10000
#define CS_RULES_MAX_ACTIONS 64        /* per rule */
#define CS_RULES_MAX_PARAMS 64         /* per action (emit_event properties included) */
#define CS_DEDUPE_KEY_MAX   256        /* bytes of a rendered dedupe key */

typedef enum cs_action_kind {
    CS_ACT_ROUTE_LEAD,
    CS_ACT_ASSIGN_OWNER,
    CS_ACT_CREATE_TASK,
    CS_ACT_SET_FIELD,
    CS_ACT_RAISE_ALERT,
    CS_ACT_WEBHOOK,
    CS_ACT_SLACK,
    CS_ACT_EMIT_EVENT,
    CS_ACT__COUNT
} cs_action_kind;

/* "route_lead", "assign_owner", ... */
const char *cs_action_name(cs_action_kind k);

/* A template: literal text with {{ expr }} parts, compiled at load. */
typedef struct cs_template cs_template;

/* Render into buf (always NUL-terminated when cap > 0). Strings are inserted
 * as is, other values as cs_value_format prints them; json_escape escapes
 * every inserted value (not the literal text) for the inside of a JSON
 * string. Returns the rendered length (may exceed cap - 1: truncated), or
 * -1 when a part evaluates to an error (*why set to a static message). */
long cs_template_render(const cs_template *t, cs_expr_env *env, char *buf, size_t cap, int json_escape,
                        const char **why);
/* When the template is exactly one "{{ expr }}", that expression (so the
 * caller can keep the value's type, e.g. set_field of a number); else NULL. */
const cs_expr *cs_template_expr(const cs_template *t);
/* When the template has no {{ }} part: its text; else NULL. */
const char *cs_template_literal(const cs_template *t);

typedef enum cs_param_type {
    CS_P_STRING,   /* text as written */
    CS_P_TEMPLATE, /* text + tpl */
    CS_P_DURATION, /* text + dur_us ("30s", "15m", "24h", "7d", "1h30m") */
    CS_P_ENUM,     /* text, one of the allowed words */
    CS_P_INT,      /* text + num */
    CS_P_BOOL,     /* text + num (0/1) */
} cs_param_type;

typedef struct cs_param {
    const char   *key;   /* emit_event properties: "properties.<name>" */
    cs_param_type type;
    const char   *text;
    cs_template  *tpl;   /* CS_P_TEMPLATE */
    int64_t       dur_us;
    int64_t       num;
    int           line, col;
} cs_param;

typedef struct cs_action {
    cs_action_kind kind;
    const char    *rule_id;
    size_t         rule_index;
    const cs_param *params;
    size_t         nparams;
    int            line, col;
} cs_action;

/* The parameter named key, or NULL when the file did not set it (no
 * defaults are invented here except raise_alert.cooldown = 0). */
const cs_param *cs_action_param(const cs_action *a, const char *key);

typedef struct cs_rule {
    const char      *id;
    const char      *description; /* "" when absent */
    const cs_expr   *when;
    const cs_action *actions;
    size_t           nactions;
    int              enabled;
    int              line, col;
} cs_rule;

typedef struct cs_ruleset cs_ruleset;

typedef struct cs_rules_opts {
    /* Allowed root variables of expressions (NULL-terminated), or NULL for
     * event, account, lead, contact, signals. */
    const char *const *roots;
} cs_rules_opts;

/* Load and validate. name is used in error messages ("rules.yaml").
 * Returns a new rule set with one reference, or NULL with err set to
 * "name:line:column: message". opts may be NULL. */
cs_ruleset *cs_rules_load_string(const char *name, const char *text, size_t len, const cs_rules_opts *opts,
                                 char *err, size_t errlen);
cs_ruleset *cs_rules_load_file(const char *path, const cs_rules_opts *opts, char *err, size_t errlen);

cs_ruleset *cs_ruleset_ref(cs_ruleset *rs);
void        cs_ruleset_unref(cs_ruleset *rs); /* frees at zero; NULL ok */

size_t         cs_ruleset_count(const cs_ruleset *rs);
const cs_rule *cs_ruleset_rule(const cs_ruleset *rs, size_t i);
const cs_rule *cs_ruleset_find(const cs_ruleset *rs, const char *id);
/* The file name and a 64-bit hash of its bytes (to log what was loaded). */
const char *cs_ruleset_name(const cs_ruleset *rs);
uint64_t    cs_ruleset_hash(const cs_ruleset *rs);

/* ------------------------------------------------------------- cooldowns */

/* A bounded table of recently raised alerts keyed by the 128-bit hash of
 * their rendered dedupe key. Decisions depend only on event times, so a
 * replay decides the same. When the probe window of a key is full, the
 * entry whose cooldown ends first is evicted (counted). */
typedef struct cs_cooldown cs_cooldown;

typedef struct cs_cooldown_stats {
    uint64_t fired;      /* alerts let through */
    uint64_t suppressed; /* alerts dropped inside their cooldown */
    uint64_t evicted;    /* live entries dropped because the table was full */
    size_t   entries;    /* live + expired entries held */
    size_t   capacity;
} cs_cooldown_stats;

cs_cooldown *cs_cooldown_new(size_t capacity); /* rounded up to a power of two, >= 16 */
void         cs_cooldown_free(cs_cooldown *cd);
/* 1: suppressed (an alert with this key fired at t0 with t0 <= event_us <
 * t0 + cooldown_us); 0: fire, and remember event_us. cooldown_us <= 0 never
 * suppresses and records nothing. */
int  cs_cooldown_check(cs_cooldown *cd, const char *key, size_t len, int64_t event_us, int64_t cooldown_us);
void cs_cooldown_get_stats(const cs_cooldown *cd, cs_cooldown_stats *st);

/* ------------------------------------------------------------ evaluation */

typedef struct cs_rule_hit {
    const cs_rule   *rule;
    const cs_action *action;
    char dedupe_key[CS_DEDUPE_KEY_MAX]; /* raise_alert: the rendered key; else "" */
} cs_rule_hit;

typedef struct cs_rules_stats {
    uint64_t rules_evaluated;
    uint64_t rules_matched;
    uint64_t errors;        /* conditions or dedupe keys that evaluated to an error */
    uint64_t suppressed;    /* alerts dropped by the cooldown table */
    uint64_t truncated;     /* hits beyond max */
    const char *last_error; /* static message of the last error, and its rule */
    const char *last_error_rule;
} cs_rules_stats;

/* Evaluate every enabled rule in file order against the variables env
 * resolves; write the actions of matching rules (in rule order, then action
 * order) to hits[0..max). A condition that evaluates to an error or a
 * non-bool does not match (counted in st->errors). raise_alert actions whose
 * dedupe key is inside its cooldown in cd are left out (counted); cd may be
 * NULL (no suppression). Returns the number of hits written. Never
 * allocates (except inside regexec, see expr.h). st may be NULL; its
 * counters are added to. */
size_t cs_rules_eval(const cs_ruleset *rs, cs_expr_env *env, int64_t event_us, cs_cooldown *cd,
                     cs_rule_hit *hits, size_t max, cs_rules_stats *st);

/* The action and parameter reference as a Markdown table (docs/RULES.md). */
void cs_rules_reference(FILE *out);

#endif
