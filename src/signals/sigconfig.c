/*
 * signals/sigconfig.c — the `signals:` configuration section (sigconfig.h).
 * One table declares every key once: its path, kind, field and range.
 */
#include "signals/sigconfig.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* K_DUR_US: a duration into microseconds; K_DAYS_I / K_DAYS_D: a duration
 * (N, Ns, Nm, Nh, Nd; a bare N is seconds) into whole / fractional days. */
enum kind { K_INT, K_U16, K_U32, K_DBL, K_DUR_US, K_DAYS_I, K_DAYS_D, K_LIST };

struct key {
    const char *path;
    enum kind   kind;
    size_t      off;
    double      min, max;
};

#define OFF(f) offsetof(cs_sig_config, f)
static const struct key keys[] = {
    {"allowed_lateness", K_DUR_US, OFF(lateness_us), 0, 86400},
    {"max_accounts", K_U32, OFF(max_accounts), 1, 1 << 30},
    {"key_features", K_LIST, OFF(key_features), 0, 0},
    {"trial_days_default", K_INT, OFF(trial_days_default), 1, 255},
    {"usage_score.half_life", K_DAYS_D, OFF(usage_half_life_days), 0.5, 365},
    {"usage_score.half_units", K_DBL, OFF(usage_half_units), 1e-9, 1e9},
    {"usage_score.units_feature", K_U16, OFF(units_feature), 0, 1000},
    {"usage_score.units_key_feature", K_U16, OFF(units_key_feature), 0, 1000},
    {"usage_score.epsilon", K_DBL, OFF(usage_epsilon), 0, 100},
    {"activation.features", K_INT, OFF(activation_features), 1, CS_SIG_MAX_KEY_FEATURES},
    {"activation.within", K_DAYS_I, OFF(activation_days), 0, 3650},
    {"engagement_drop.ratio", K_DBL, OFF(drop_ratio), 1e-9, 1},
    {"engagement_drop.min_baseline", K_DBL, OFF(drop_min_baseline), 0, 1e9},
    {"renewal_ticket_spike.tickets", K_INT, OFF(spike_tickets), 1, 255},
    {"renewal_ticket_spike.window", K_DAYS_I, OFF(spike_window_days), 1, 16},
    {"renewal_ticket_spike.renewal_within", K_DAYS_I, OFF(spike_renewal_days), 0, 3650},
    {"trial_handoff.usage_score", K_DBL, OFF(handoff_usage_score), 0, 100},
    {"health.weights.usage", K_DBL, OFF(w_usage), 0, 1000},
    {"health.weights.trend", K_DBL, OFF(w_trend), 0, 1000},
    {"health.weights.features", K_DBL, OFF(w_features), 0, 1000},
    {"health.weights.users", K_DBL, OFF(w_users), 0, 1000},
    {"health.weights.support", K_DBL, OFF(w_support), 0, 1000},
    {"health.features_target", K_DBL, OFF(features_target), 1e-9, 1e6},
    {"health.users_target", K_DBL, OFF(users_target), 1e-9, 1e9},
    {"health.support_penalty", K_DBL, OFF(support_penalty), 0, 100},
    {"health.bands.healthy", K_DBL, OFF(band_healthy), 0, 100},
    {"health.bands.poor", K_DBL, OFF(band_poor), 0, 100},
    {"health.epsilon", K_DBL, OFF(health_epsilon), 0, 100},
};
#define NKEYS (sizeof keys / sizeof keys[0])

struct ctx {
    yaml_document_t *doc;
    const char      *name;
    char            *err;
    size_t           errlen;
    cs_sig_config   *c;
};

static int fail(struct ctx *x, yaml_node_t *n, const char *path, const char *what)
{
    snprintf(x->err, x->errlen, "%s:%zu:%zu: signals.%s: %s", x->name, n->start_mark.line + 1,
             n->start_mark.column + 1, path, what);
    return -1;
}

/* Seconds from "N", "Ns", "Nm", "Nh", "Nd" (N may have a fraction). */
static int parse_dur(const char *s, double *sec)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) return -1;
    double mul = 1;
    if (*end == 's') mul = 1, end++;
    else if (*end == 'm') mul = 60, end++;
    else if (*end == 'h') mul = 3600, end++;
    else if (*end == 'd') mul = 86400, end++;
    if (*end) return -1;
    *sec = v * mul;
    return 0;
}

static int apply(struct ctx *x, const struct key *k, yaml_node_t *v, const char *path)
{
    char *base = (char *)x->c;
    if (k->kind == K_LIST) {
        if (v->type != YAML_SEQUENCE_NODE) return fail(x, v, path, "expected a list of feature names");
        int n = 0;
        char tmp[CS_SIG_MAX_KEY_FEATURES][48];
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *f = yaml_document_get_node(x->doc, *it);
            if (f->type != YAML_SCALAR_NODE || !f->data.scalar.length) return fail(x, f, path, "expected a name");
            if (n == CS_SIG_MAX_KEY_FEATURES) return fail(x, f, path, "at most 8 key features");
            if (f->data.scalar.length >= sizeof tmp[0]) return fail(x, f, path, "name longer than 47 bytes");
            snprintf(tmp[n++], sizeof tmp[0], "%s", (const char *)f->data.scalar.value);
        }
        memcpy(x->c->key_features, tmp, sizeof tmp);
        x->c->n_key_features = n;
        return 0;
    }
    if (v->type != YAML_SCALAR_NODE) return fail(x, v, path, "expected a single value");
    const char *s = (const char *)v->data.scalar.value;
    double d;
    char *end;
    char what[128];
    if (k->kind == K_DUR_US || k->kind == K_DAYS_I || k->kind == K_DAYS_D) {
        snprintf(what, sizeof what, "expected a duration (N, Ns, Nm, Nh, Nd) of %g..%g %s", k->min, k->max,
                 k->kind == K_DUR_US ? "seconds" : "days");
        double sec;
        if (parse_dur(s, &sec)) return fail(x, v, path, what);
        d = k->kind == K_DUR_US ? sec : sec / 86400.0;
        if (k->kind == K_DAYS_I && d != floor(d)) return fail(x, v, path, "expected whole days");
    } else {
        snprintf(what, sizeof what, "expected a number in %g..%g", k->min, k->max);
        errno = 0;
        d = strtod(s, &end);
        if (errno || end == s || *end || !isfinite(d)) return fail(x, v, path, what);
        if (k->kind != K_DBL && d != floor(d)) return fail(x, v, path, "expected an integer");
    }
    if (d < k->min || d > k->max) return fail(x, v, path, what);
    switch (k->kind) {
    case K_INT: case K_DAYS_I: *(int *)(base + k->off) = (int)d; break;
    case K_U16: *(uint16_t *)(base + k->off) = (uint16_t)d; break;
    case K_U32: *(uint32_t *)(base + k->off) = (uint32_t)d; break;
    case K_DBL: case K_DAYS_D: *(double *)(base + k->off) = d; break;
    case K_DUR_US: *(int64_t *)(base + k->off) = (int64_t)llround(d * 1e6); break;
    default: break;
    }
    return 0;
}

static int walk(struct ctx *x, yaml_node_t *map, const char *prefix)
{
    if (map->type != YAML_MAPPING_NODE) return fail(x, map, prefix, "expected a mapping");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(x->doc, p->value);
        if (k->type != YAML_SCALAR_NODE) return fail(x, k, prefix, "keys must be strings");
        char path[160];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", (const char *)k->data.scalar.value);
        size_t plen = strlen(path);
        const struct key *found = NULL;
        int section = 0;
        for (size_t i = 0; i < NKEYS; i++) {
            if (strcmp(keys[i].path, path) == 0) found = &keys[i];
            else if (strncmp(keys[i].path, path, plen) == 0 && keys[i].path[plen] == '.') section = 1;
        }
        if (found) {
            if (apply(x, found, v, path)) return -1;
        } else if (section) {
            if (walk(x, v, path)) return -1;
        } else {
            return fail(x, k, path, "unknown key (see docs/SIGNALS.md)");
        }
    }
    return 0;
}

int cs_sig_config_yaml(cs_sig_config *c, yaml_document_t *doc, yaml_node_t *map, const char *name, char *err,
                       size_t errlen)
{
    cs_sig_config tmp = *c;
    struct ctx x = {doc, name, err, errlen, &tmp};
    if (map->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "%s:%zu:%zu: signals: expected a mapping", name, map->start_mark.line + 1,
                 map->start_mark.column + 1);
        return -1;
    }
    if (walk(&x, map, "")) return -1;
    char msg[200];
    if (cs_sig_config_check(&tmp, msg, sizeof msg)) {
        snprintf(err, errlen, "%s: %s", name, msg);
        return -1;
    }
    *c = tmp;
    return 0;
}

int cs_sig_config_yaml_string(cs_sig_config *c, const char *text, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "<string>:%zu:%zu: %s", parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return -1;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "signals") == 0)
                rc = cs_sig_config_yaml(c, &doc, yaml_document_get_node(&doc, p->value), "<string>", err, errlen);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}
