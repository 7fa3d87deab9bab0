/*
 * rules/rules — loading and validating the rules file (libyaml's document
 * API, which keeps each node's line and column, as core/config.c does),
 * templates, and evaluating a rule set against one event.
 *
 * The action table below is the single description of every action and its
 * parameters: validation walks it, and cs_rules_reference prints it for
 * docs/RULES.md. Validation finishes before anything is published, so a bad
 * file leaves the caller's current rule set untouched.
 */
#include "rules/rules.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <yaml.h>

#include "core/util.h"

/* ========================================================= action table */

struct pdef {
    const char   *key;
    cs_param_type type;
    int           required;
    const char   *words; /* CS_P_ENUM: "a|b|c" */
    const char   *doc;
};

struct adef {
    const char        *name;
    const struct pdef *params;
    const char        *doc;
};

static const struct pdef p_route[] = {
    {"strategy", CS_P_ENUM, 1, "round_robin|weighted_round_robin|account_owner|territory", "How the owner is chosen: rotation, weighted rotation (rep weight), the matched account's owner first (then rotation), or only reps whose territory covers the lead (then rotation)."},
    {"pool", CS_P_STRING, 0, NULL, "Pool of reps to choose from (reps list their pools); default: every rep."},
    {"match_account", CS_P_BOOL, 0, NULL, "Give the lead to its account's owner first (account_id, else an account with the email's domain), when eligible."},
    {"territory", CS_P_BOOL, 0, NULL, "Only reps whose territory (countries, regions, segments, plan_tiers) covers the lead."},
    {"fallback", CS_P_STRING, 0, NULL, "Queue the lead goes to (status queued) when nobody is eligible (default unassigned)."},
    {"max_open_leads", CS_P_INT, 0, NULL, "Capacity cap: skip reps with this many open (routed, not accepted) leads; a rep's own capacity applies too."},
    {"working_hours", CS_P_BOOL, 0, NULL, "Only reps inside their working hours, in their time zone (true/false)."},
    {"sla", CS_P_DURATION, 0, NULL, "Accept within this much of the rep's working time, else re-route to another rep and alert."},
    {NULL, 0, 0, NULL, NULL},
};
static const struct pdef p_assign[] = {
    {"rep", CS_P_TEMPLATE, 0, NULL, "Rep id or email (template). Either rep or pool."},
    {"pool", CS_P_STRING, 0, NULL, "Pool to pick the owner from. Either rep or pool."},
    {"strategy", CS_P_ENUM, 0, "round_robin|weighted_round_robin|territory", "How to pick from pool (default round_robin)."},
    {NULL, 0, 0, NULL, NULL},
};
static const struct pdef p_task[] = {
    {"title", CS_P_TEMPLATE, 1, NULL, "Task title (template)."},
    {"due_in", CS_P_DURATION, 1, NULL, "Due this long after the event time."},
    {"owner", CS_P_TEMPLATE, 0, NULL, "Rep id or email (template); default: the account or lead owner."},
    {"object", CS_P_ENUM, 0, "account|lead|contact", "What the task is about (default account)."},
    {"description", CS_P_TEMPLATE, 0, NULL, "Longer text (template)."},
    {NULL, 0, 0, NULL, NULL},
};
static const struct pdef p_set[] = {
    {"object", CS_P_ENUM, 1, "account|lead|contact", "The CRM object to change."},
    {"field", CS_P_STRING, 1, NULL, "Field name (letters, digits, _)."},
    {"value", CS_P_TEMPLATE, 1, NULL, "New value (template; exactly \"{{ expr }}\" keeps the expression's type)."},
    {NULL, 0, 0, NULL, NULL},
};
static const struct pdef p_alert[] = {
    {"kind", CS_P_STRING, 1, NULL, "Alert kind, e.g. churn_risk."},
    {"severity", CS_P_ENUM, 1, "info|warning|critical", "Severity."},
    {"dedupe_key", CS_P_TEMPLATE, 1, NULL, "Alerts with the same rendered key inside the cooldown are suppressed (template)."},
    {"cooldown", CS_P_DURATION, 0, NULL, "Suppression window in event time (default 0: none)."},
    {"message", CS_P_TEMPLATE, 0, NULL, "Human text (template)."},
    {NULL, 0, 0, NULL, NULL},
};
static const struct pdef p_webhook[] = {
    {"destination", CS_P_STRING, 1, NULL, "Destination name (configured with its URL and secret)."},
    {"template", CS_P_TEMPLATE, 0, NULL, "Body template; inserted values are JSON-escaped. Default: the event."},
    {NULL, 0, 0, NULL, NULL},
};
static const struct pdef p_slack[] = {
    {"destination", CS_P_STRING, 1, NULL, "Slack destination name (an incoming-webhook URL in config)."},
    {"text", CS_P_TEMPLATE, 1, NULL, "Message text (template)."},
    {NULL, 0, 0, NULL, NULL},
};
static const struct pdef p_emit[] = {
    {"type", CS_P_STRING, 1, NULL, "Type of the derived event."},
    {"properties", CS_P_TEMPLATE, 0, NULL, "Mapping of property name to template."},
    {NULL, 0, 0, NULL, NULL},
};

static const struct adef actions[CS_ACT__COUNT] = {
    [CS_ACT_ROUTE_LEAD] = {"route_lead", p_route, "Route the event's lead to a rep."},
    [CS_ACT_ASSIGN_OWNER] = {"assign_owner", p_assign, "Set the account's owner."},
    [CS_ACT_CREATE_TASK] = {"create_task", p_task, "Create a task with a due time."},
    [CS_ACT_SET_FIELD] = {"set_field", p_set, "Set a field of a CRM object."},
    [CS_ACT_RAISE_ALERT] = {"raise_alert", p_alert, "Raise an alert, suppressed by dedupe key inside its cooldown."},
    [CS_ACT_WEBHOOK] = {"webhook", p_webhook, "Send a signed webhook through the outbox."},
    [CS_ACT_SLACK] = {"slack", p_slack, "Send a Slack message through the outbox."},
    [CS_ACT_EMIT_EVENT] = {"emit_event", p_emit, "Append a derived event to the log."},
};

const char *cs_action_name(cs_action_kind k) { return k < CS_ACT__COUNT ? actions[k].name : "?"; }

void cs_rules_reference(FILE *out)
{
    fprintf(out, "| action | parameter | type | required | meaning |\n|---|---|---|---|---|\n");
    static const char *const tnames[] = {"string", "template", "duration", "one of", "integer", "bool"};
    for (int a = 0; a < CS_ACT__COUNT; a++)
        for (const struct pdef *p = actions[a].params; p->key; p++) {
            int props = p->type == CS_P_TEMPLATE && strcmp(p->key, "properties") == 0;
            fprintf(out, "| `%s` | `%s` | %s", actions[a].name, p->key, props ? "mapping of templates" : tnames[p->type]);
            for (const char *w = p->words; w && *w;) {
                size_t n = strcspn(w, "|");
                fprintf(out, "%s`%.*s`", w == p->words ? " " : ", ", (int)n, w);
                w += n + (w[n] == '|');
            }
            fprintf(out, " | %s | %s |\n", p->required ? "yes" : "no", p->doc);
        }
}

/* ============================================================ templates */

struct tpart {
    const char *text; /* literal, or NULL */
    size_t      len;
    cs_expr    *expr;
};

struct cs_template {
    struct tpart *parts;
    size_t        n;
    char         *src;
};

static void template_free(cs_template *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) cs_expr_free(t->parts[i].expr);
    free(t->parts);
    free(t->src);
    free(t);
}

/* Compile "text {{ expr }} text". On error returns NULL with *err set and
 * *erroff the byte offset in s of the error. */
static cs_template *template_compile(const char *s, const char *const *roots, cs_expr_error *err, size_t *erroff)
{
    cs_template *t = cs_calloc(1, sizeof *t);
    t->src = cs_strdup(s);
    size_t len = strlen(s), i = 0, cap = 0;
    while (i < len) {
        const char *open = strstr(t->src + i, "{{");
        size_t lit_end = open ? (size_t)(open - t->src) : len;
        if (t->n + 2 > cap) {
            cap = cap ? cap * 2 : 4;
            t->parts = cs_realloc(t->parts, cap * sizeof *t->parts);
        }
        if (lit_end > i) t->parts[t->n++] = (struct tpart){t->src + i, lit_end - i, NULL};
        if (!open) break;
        size_t es = lit_end + 2, k = es;
        char q = 0;
        for (; k + 1 < len; k++) { /* find }} outside string literals */
            if (q) {
                if (t->src[k] == '\\') k++;
                else if (t->src[k] == q) q = 0;
            } else if (t->src[k] == '"' || t->src[k] == '\'') {
                q = t->src[k];
            } else if (t->src[k] == '}' && t->src[k + 1] == '}') {
                break;
            }
        }
        if (k + 1 >= len) {
            memset(err, 0, sizeof *err);
            snprintf(err->msg, sizeof err->msg, "unterminated {{ in template");
            *erroff = lit_end;
            template_free(t);
            return NULL;
        }
        cs_expr *e = cs_expr_compile(t->src + es, k - es, roots, err);
        if (!e) {
            /* err->line/col are within the expression: turn them into an offset */
            size_t off = es;
            int l = 1, c = 1;
            while (off < k && (l < err->line || c < err->col)) {
                if (t->src[off] == '\n') l++, c = 1;
                else if (((unsigned char)t->src[off] & 0xC0) != 0x80) c++;
                off++;
            }
            *erroff = off;
            template_free(t);
            return NULL;
        }
        t->parts[t->n++] = (struct tpart){NULL, 0, e};
        i = k + 2;
    }
    return t;
}

long cs_template_render(const cs_template *t, cs_expr_env *env, char *buf, size_t cap, int json_escape,
                        const char **why)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct tpart *p = &t->parts[i];
        if (p->text) {
            for (size_t k = 0; k < p->len; k++, n++)
                if (n + 1 < cap) buf[n] = p->text[k];
            continue;
        }
        cs_value v = cs_expr_eval(p->expr, env);
        if (v.type == CS_V_ERROR) {
            if (why) *why = v.u.err;
            if (cap) buf[0] = 0;
            return -1;
        }
        size_t room = n < cap ? cap - n : 0;
        n += cs_value_format(&v, room ? buf + n : NULL, room, json_escape);
    }
    if (cap) buf[n < cap ? n : cap - 1] = 0;
    return (long)n;
}

const cs_expr *cs_template_expr(const cs_template *t)
{
    return t->n == 1 && t->parts[0].expr ? t->parts[0].expr : NULL;
}

const char *cs_template_literal(const cs_template *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->parts[i].expr) return NULL;
    return t->src;
}

/* ============================================================= rule sets */

struct cs_ruleset {
    atomic_int refs;
    char      *name;
    uint64_t   hash;
    cs_rule   *rules;
    size_t     n;
};

static void action_free(cs_action *a)
{
    for (size_t i = 0; i < a->nparams; i++) {
        cs_param *p = (cs_param *)&a->params[i];
        free((char *)p->key);
        free((char *)p->text);
        template_free(p->tpl);
    }
    free((cs_param *)a->params);
}

static void ruleset_free(cs_ruleset *rs)
{
    if (!rs) return;
    for (size_t i = 0; i < rs->n; i++) {
        cs_rule *r = &rs->rules[i];
        free((char *)r->id);
        free((char *)r->description);
        cs_expr_free((cs_expr *)r->when);
        for (size_t k = 0; k < r->nactions; k++) action_free((cs_action *)&r->actions[k]);
        free((cs_action *)r->actions);
    }
    free(rs->rules);
    free(rs->name);
    free(rs);
}

cs_ruleset *cs_ruleset_ref(cs_ruleset *rs)
{
    if (rs) atomic_fetch_add(&rs->refs, 1);
    return rs;
}

void cs_ruleset_unref(cs_ruleset *rs)
{
    if (rs && atomic_fetch_sub(&rs->refs, 1) == 1) ruleset_free(rs);
}

size_t cs_ruleset_count(const cs_ruleset *rs) { return rs->n; }
const cs_rule *cs_ruleset_rule(const cs_ruleset *rs, size_t i) { return i < rs->n ? &rs->rules[i] : NULL; }
const char *cs_ruleset_name(const cs_ruleset *rs) { return rs->name; }
uint64_t cs_ruleset_hash(const cs_ruleset *rs) { return rs->hash; }

const cs_rule *cs_ruleset_find(const cs_ruleset *rs, const char *id)
{
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->rules[i].id, id) == 0) return &rs->rules[i];
    return NULL;
}

const cs_param *cs_action_param(const cs_action *a, const char *key)
{
    for (size_t i = 0; i < a->nparams; i++)
        if (strcmp(a->params[i].key, key) == 0) return &a->params[i];
    return NULL;
}

/* ============================================================== loading */

static const char *const default_roots[] = {"event", "account", "lead", "contact", "signals", NULL};

struct ld {
    yaml_document_t   *doc;
    const char        *name;
    const char        *text;
    size_t             len;
    const char *const *roots;
    char              *err;
    size_t             errlen;
    const char        *rule_id; /* for messages */
};

__attribute__((format(printf, 4, 5))) static int fail_at(struct ld *l, int line, int col, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (l->rule_id)
        snprintf(l->err, l->errlen, "%s:%d:%d: rule \"%s\": %s", l->name, line, col, l->rule_id, what);
    else
        snprintf(l->err, l->errlen, "%s:%d:%d: %s", l->name, line, col, what);
    return -1;
}

#define FAIL(l, node, ...) fail_at((l), (int)(node)->start_mark.line + 1, (int)(node)->start_mark.column + 1, __VA_ARGS__)

static yaml_node_t *node_at(struct ld *l, int id) { return yaml_document_get_node(l->doc, id); }
static const char *sval(yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* File position of byte offset off inside scalar node n's value. Exact for
 * single-line plain and quoted scalars without escapes and for literal (|)
 * block scalars; other multi-line forms report the scalar's start. */
static void scalar_pos(struct ld *l, yaml_node_t *n, size_t off, int *line, int *col)
{
    const char *v = sval(n);
    size_t vlen = n->data.scalar.length;
    if (off > vlen) off = vlen;
    int nl = 0;
    size_t ls = 0; /* start of off's line in the value */
    for (size_t i = 0; i < off; i++)
        if (v[i] == '\n') nl++, ls = i + 1;
    int chars = 0;
    for (size_t i = ls; i < off; i++) chars += ((unsigned char)v[i] & 0xC0) != 0x80;
    *line = (int)n->start_mark.line + 1;
    *col = (int)n->start_mark.column + 1;
    if (n->data.scalar.style == YAML_LITERAL_SCALAR_STYLE) {
        /* Content starts on the line after the indicator; the block's
         * indentation is that of its first non-blank line. */
        size_t first = n->start_mark.line + 1, cur = 0, p = 0;
        while (p < l->len && cur < first) cur += l->text[p++] == '\n';
        int indent = 0;
        for (;;) {
            size_t q = p;
            indent = 0;
            while (q < l->len && l->text[q] == ' ') q++, indent++;
            if (q < l->len && l->text[q] == '\n') { /* blank line: look further */
                p = q + 1;
                continue;
            }
            break;
        }
        *line = (int)(first + (size_t)nl) + 1;
        *col = indent + 1 + chars;
        return;
    }
    if (memchr(v, '\n', vlen) || n->start_mark.line != n->end_mark.line) return;
    int quoted = n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                 n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
    *col += quoted + chars;
}

static int scalar_is(yaml_node_t *n, const char *s) { return n->type == YAML_SCALAR_NODE && strcmp(sval(n), s) == 0; }

/* Walk a mapping's pairs checking keys are unique scalars. */
static int check_mapping(struct ld *l, yaml_node_t *map, const char *what)
{
    if (map->type != YAML_MAPPING_NODE) return FAIL(l, map, "%s: expected a mapping", what);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(l, p->key);
        if (k->type != YAML_SCALAR_NODE) return FAIL(l, k, "%s: keys must be plain words", what);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (strcmp(sval(node_at(l, q->key)), sval(k)) == 0) return FAIL(l, k, "%s: duplicate key \"%s\"", what, sval(k));
    }
    return 0;
}

static int compile_expr(struct ld *l, yaml_node_t *v, cs_expr **out)
{
    if (v->type != YAML_SCALAR_NODE) return FAIL(l, v, "when: expected an expression (a string)");
    cs_expr_error e;
    *out = cs_expr_compile(sval(v), v->data.scalar.length, l->roots, &e);
    if (*out) return 0;
    /* Convert the expression's line:col to an offset, then to the file. */
    const char *s = sval(v);
    size_t off = 0;
    int ln = 1, c = 1;
    while (off < v->data.scalar.length && (ln < e.line || c < e.col)) {
        if (s[off] == '\n') ln++, c = 1;
        else if (((unsigned char)s[off] & 0xC0) != 0x80) c++;
        off++;
    }
    int fl, fc;
    scalar_pos(l, v, off, &fl, &fc);
    return fail_at(l, fl, fc, "when: %s", e.msg);
}

static int valid_field_name(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static int load_param(struct ld *l, const struct pdef *pd, const char *key, yaml_node_t *v, cs_param *p)
{
    const char *aname = key;
    if (v->type != YAML_SCALAR_NODE) return FAIL(l, v, "%s: expected a single value", aname);
    const char *s = sval(v);
    p->key = cs_strdup(key);
    p->type = pd->type;
    p->text = cs_strdup(s);
    p->line = (int)v->start_mark.line + 1, p->col = (int)v->start_mark.column + 1;
    switch (pd->type) {
    case CS_P_STRING:
        if (!*s) return FAIL(l, v, "%s: must not be empty", aname);
        return 0;
    case CS_P_TEMPLATE: {
        cs_expr_error e;
        size_t off = 0;
        p->tpl = template_compile(s, l->roots, &e, &off);
        if (p->tpl) return 0;
        int fl, fc;
        scalar_pos(l, v, off, &fl, &fc);
        return fail_at(l, fl, fc, "%s: %s", aname, e.msg);
    }
    case CS_P_DURATION:
        if (cs_parse_duration(s, strlen(s), 1, &p->dur_us) || p->dur_us < 0)
            return FAIL(l, v, "%s: invalid duration \"%s\" (expected e.g. 30s, 15m, 24h, 7d, 1h30m)", aname, s);
        return 0;
    case CS_P_ENUM: {
        size_t n = strlen(s);
        for (const char *w = pd->words; *w;) {
            const char *bar = strchr(w, '|');
            size_t wl = bar ? (size_t)(bar - w) : strlen(w);
            if (wl == n && memcmp(w, s, n) == 0) return 0;
            w += wl + (bar ? 1 : 0);
        }
        char words[200];
        snprintf(words, sizeof words, "%s", pd->words);
        for (char *c = words; *c; c++)
            if (*c == '|') *c = ',';
        return FAIL(l, v, "%s: \"%s\" is not one of %s", aname, s, words);
    }
    case CS_P_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(s, &end, 10);
        if (errno || *end || end == s || n < 0) return FAIL(l, v, "%s: expected a non-negative integer, got \"%s\"", aname, s);
        p->num = n;
        return 0;
    }
    case CS_P_BOOL:
        if (strcmp(s, "true") == 0) p->num = 1;
        else if (strcmp(s, "false") == 0) p->num = 0;
        else return FAIL(l, v, "%s: expected true or false, got \"%s\"", aname, s);
        return 0;
    }
    return 0;
}

static int load_action(struct ld *l, yaml_node_t *an, cs_action *a)
{
    if (an->type != YAML_MAPPING_NODE || an->data.mapping.pairs.top - an->data.mapping.pairs.start != 1)
        return FAIL(l, an, "each action is a mapping with one key, the action name (e.g. - raise_alert: {...})");
    yaml_node_t *k = node_at(l, an->data.mapping.pairs.start->key);
    yaml_node_t *body = node_at(l, an->data.mapping.pairs.start->value);
    a->line = (int)k->start_mark.line + 1, a->col = (int)k->start_mark.column + 1;
    int kind = -1;
    for (int i = 0; i < CS_ACT__COUNT && k->type == YAML_SCALAR_NODE; i++)
        if (strcmp(sval(k), actions[i].name) == 0) kind = i;
    if (kind < 0)
        return FAIL(l, k, "unknown action \"%s\" (expected route_lead, assign_owner, create_task, set_field, raise_alert, webhook, slack or emit_event)",
                    k->type == YAML_SCALAR_NODE ? sval(k) : "?");
    a->kind = (cs_action_kind)kind;
    const struct adef *ad = &actions[kind];
    if (check_mapping(l, body, ad->name)) return -1;
    size_t cap = 0, np = 0;
    cs_param *params = NULL;
    int rc = 0;
    for (yaml_node_pair_t *p = body->data.mapping.pairs.start; p < body->data.mapping.pairs.top && !rc; p++) {
        yaml_node_t *pk = node_at(l, p->key), *pv = node_at(l, p->value);
        const struct pdef *pd = NULL;
        for (const struct pdef *d = ad->params; d->key; d++)
            if (strcmp(d->key, sval(pk)) == 0) pd = d;
        if (!pd) {
            char expected[300] = "";
            for (const struct pdef *d = ad->params; d->key; d++)
                snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s%s", d == ad->params ? "" : ", ", d->key);
            rc = FAIL(l, pk, "%s: unknown key \"%s\" (expected %s)", ad->name, sval(pk), expected);
            break;
        }
        size_t want = np + 1;
        if (kind == CS_ACT_EMIT_EVENT && strcmp(pd->key, "properties") == 0) {
            if ((rc = check_mapping(l, pv, "emit_event.properties"))) break;
            want = np + (size_t)(pv->data.mapping.pairs.top - pv->data.mapping.pairs.start);
        }
        if (want > CS_RULES_MAX_PARAMS) {
            rc = FAIL(l, pk, "%s: more than %d parameters", ad->name, CS_RULES_MAX_PARAMS);
            break;
        }
        if (want > cap) {
            cap = want * 2;
            params = cs_realloc(params, cap * sizeof *params);
        }
        if (kind == CS_ACT_EMIT_EVENT && strcmp(pd->key, "properties") == 0) {
            for (yaml_node_pair_t *q = pv->data.mapping.pairs.start; q < pv->data.mapping.pairs.top && !rc; q++) {
                char key[200];
                snprintf(key, sizeof key, "properties.%s", sval(node_at(l, q->key)));
                memset(&params[np], 0, sizeof params[np]);
                rc = load_param(l, pd, key, node_at(l, q->value), &params[np]);
                np++;
            }
        } else {
            memset(&params[np], 0, sizeof params[np]);
            rc = load_param(l, pd, pd->key, pv, &params[np]);
            np++;
        }
    }
    a->params = params, a->nparams = np;
    if (rc) return rc;
    for (const struct pdef *d = ad->params; d->key; d++)
        if (d->required && !cs_action_param(a, d->key))
            return FAIL(l, k, "%s: missing required key \"%s\"", ad->name, d->key);
    if (a->kind == CS_ACT_ASSIGN_OWNER && !cs_action_param(a, "rep") == !cs_action_param(a, "pool"))
        return FAIL(l, k, "assign_owner: set exactly one of rep or pool");
    if (a->kind == CS_ACT_SET_FIELD) {
        const cs_param *f = cs_action_param(a, "field");
        if (!valid_field_name(f->text))
            return fail_at(l, f->line, f->col, "set_field: field \"%s\" must be letters, digits and _", f->text);
    }
    return 0;
}

static int valid_rule_id(const char *s)
{
    if (!*s || strlen(s) > 128) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("_-.:", *s)))
            return 0;
    return 1;
}

static int load_rule(struct ld *l, yaml_node_t *rn, cs_rule *r, const cs_ruleset *rs)
{
    r->enabled = 1;
    r->line = (int)rn->start_mark.line + 1, r->col = (int)rn->start_mark.column + 1;
    if (check_mapping(l, rn, "rule")) return -1;
    yaml_node_t *idv = NULL, *whenv = NULL, *actv = NULL;
    for (yaml_node_pair_t *p = rn->data.mapping.pairs.start; p < rn->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(l, p->key), *v = node_at(l, p->value);
        if (scalar_is(k, "id")) idv = v;
        else if (scalar_is(k, "when")) whenv = v;
        else if (scalar_is(k, "actions")) actv = v;
        else if (scalar_is(k, "description")) {
            if (v->type != YAML_SCALAR_NODE) return FAIL(l, v, "description: expected text");
            free((char *)r->description);
            r->description = cs_strdup(sval(v));
        } else if (scalar_is(k, "enabled")) {
            if (!scalar_is(v, "true") && !scalar_is(v, "false")) return FAIL(l, v, "enabled: expected true or false");
            r->enabled = scalar_is(v, "true");
        } else {
            return FAIL(l, k, "unknown key \"%s\" in rule (expected id, description, when, actions, enabled)", sval(k));
        }
    }
    if (!idv) return FAIL(l, rn, "rule without an id");
    if (idv->type != YAML_SCALAR_NODE || !valid_rule_id(sval(idv)))
        return FAIL(l, idv, "id: 1 to 128 letters, digits and _ - . :");
    r->id = cs_strdup(sval(idv));
    l->rule_id = r->id;
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->rules[i].id, r->id) == 0) return FAIL(l, idv, "duplicate rule id (first at line %d)", rs->rules[i].line);
    if (!r->description) r->description = cs_strdup("");
    if (!whenv) return FAIL(l, rn, "missing \"when\" (write when: true for always)");
    cs_expr *when = NULL;
    if (compile_expr(l, whenv, &when)) return -1;
    r->when = when;
    if (!actv) return FAIL(l, rn, "missing \"actions\"");
    if (actv->type != YAML_SEQUENCE_NODE || actv->data.sequence.items.top == actv->data.sequence.items.start)
        return FAIL(l, actv, "actions: expected a non-empty list");
    size_t na = (size_t)(actv->data.sequence.items.top - actv->data.sequence.items.start);
    if (na > CS_RULES_MAX_ACTIONS) return FAIL(l, actv, "actions: more than %d", CS_RULES_MAX_ACTIONS);
    cs_action *acts = cs_calloc(na, sizeof *acts);
    r->actions = acts;
    for (size_t i = 0; i < na; i++) {
        acts[i].rule_id = r->id;
        acts[i].rule_index = rs->n;
        r->nactions = i + 1;
        if (load_action(l, node_at(l, actv->data.sequence.items.start[i]), &acts[i])) return -1;
    }
    return 0;
}

cs_ruleset *cs_rules_load_string(const char *name, const char *text, size_t len, const cs_rules_opts *opts,
                                 char *err, size_t errlen)
{
    if (len > CS_RULES_MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %u bytes", name, CS_RULES_MAX_FILE);
        return NULL;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%zu:%zu: %s", name, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return NULL;
    }
    struct ld l = {&doc, name, text, len, opts && opts->roots ? opts->roots : default_roots, err, errlen, NULL};
    cs_ruleset *rs = cs_calloc(1, sizeof *rs);
    atomic_init(&rs->refs, 1);
    rs->name = cs_strdup(name);
    rs->hash = XXH3_64bits(text, len);
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *list = root;
    if (!root) {
        list = NULL; /* empty file: no rules */
    } else if (root->type == YAML_MAPPING_NODE) {
        list = NULL;
        rc = check_mapping(&l, root, "top level");
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; !rc && p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *k = node_at(&l, p->key);
            if (scalar_is(k, "rules")) list = node_at(&l, p->value);
            else if (scalar_is(k, "version")) {
                if (!scalar_is(node_at(&l, p->value), "1")) rc = FAIL(&l, node_at(&l, p->value), "version: only 1 is supported");
            } else rc = FAIL(&l, k, "unknown top-level key \"%s\" (expected rules, version)", sval(k));
        }
    }
    if (!rc && list && !(list->type == YAML_SCALAR_NODE && list->data.scalar.length == 0)) {
        if (list->type != YAML_SEQUENCE_NODE) {
            rc = FAIL(&l, list, "expected a list of rules");
        } else {
            size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
            if (n > CS_RULES_MAX_RULES) rc = FAIL(&l, list, "more than %d rules", CS_RULES_MAX_RULES);
            else rs->rules = cs_calloc(n ? n : 1, sizeof *rs->rules);
            for (size_t i = 0; !rc && i < n; i++) {
                l.rule_id = NULL;
                cs_rule *r = &rs->rules[rs->n];
                rc = load_rule(&l, node_at(&l, list->data.sequence.items.start[i]), r, rs);
                rs->n++; /* counted even on error, so ruleset_free frees it */
            }
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc) {
        ruleset_free(rs);
        return NULL;
    }
    return rs;
}

cs_ruleset *cs_rules_load_file(const char *path, const cs_rules_opts *opts, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    cs_buf b;
    cs_buf_init(&b);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        cs_buf_add(&b, chunk, n);
        if (b.len > CS_RULES_MAX_FILE) break;
    }
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err) {
        cs_buf_free(&b);
        snprintf(err, errlen, "%s: read error", path);
        return NULL;
    }
    cs_ruleset *rs = cs_rules_load_string(path, b.data ? b.data : "", b.len, opts, err, errlen);
    cs_buf_free(&b);
    return rs;
}

/* =========================================================== evaluation */

static void note_error(cs_rules_stats *st, const cs_rule *r, const char *why)
{
    if (!st) return;
    st->errors++;
    st->last_error = why;
    st->last_error_rule = r->id;
}

size_t cs_rules_eval(const cs_ruleset *rs, cs_expr_env *env, int64_t event_us, cs_cooldown *cd,
                     cs_rule_hit *hits, size_t max, cs_rules_stats *st)
{
    size_t nh = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const cs_rule *r = &rs->rules[i];
        if (!r->enabled) continue;
        if (st) st->rules_evaluated++;
        const char *why = NULL;
        int m = cs_expr_test(r->when, env, &why);
        if (m < 0) {
            note_error(st, r, why);
            continue;
        }
        if (!m) continue;
        if (st) st->rules_matched++;
        for (size_t k = 0; k < r->nactions; k++) {
            const cs_action *a = &r->actions[k];
            char key[CS_DEDUPE_KEY_MAX];
            key[0] = 0;
            if (a->kind == CS_ACT_RAISE_ALERT) {
                const cs_param *dk = cs_action_param(a, "dedupe_key");
                long kl = cs_template_render(dk->tpl, env, key, sizeof key, 0, &why);
                if (kl < 0) {
                    note_error(st, r, why);
                    continue;
                }
                const cs_param *cp = cs_action_param(a, "cooldown");
                size_t klen = (size_t)kl < sizeof key ? (size_t)kl : sizeof key - 1;
                if (cd && cp && cs_cooldown_check(cd, key, klen, event_us, cp->dur_us)) {
                    if (st) st->suppressed++;
                    continue;
                }
            }
            if (nh >= max) {
                if (st) st->truncated++;
                continue;
            }
            hits[nh].rule = r;
            hits[nh].action = a;
            memcpy(hits[nh].dedupe_key, key, strlen(key) + 1);
            nh++;
        }
    }
    return nh;
}
