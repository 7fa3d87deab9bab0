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

#include "core/util.h"

/* K_DUR_US: a duration into microseconds; K_DAYS_I / K_DAYS_D: a duration
 * (N, Ns, Nm, Nh, Nd; a bare N is seconds) into whole / fractional days;
 * K_LIST: key feature names; K_DOMAINS: a domain list. */
enum kind { K_INT, K_U16, K_U32, K_DBL, K_DUR_US, K_DAYS_I, K_DAYS_D, K_LIST, K_DOMAINS };

struct key {
    const char *path;
    enum kind   kind;
    size_t      off;   /* into cs_sig_settings */
    double      min, max;
    const char *dflt;
    const char *doc;
};

#define OFF(f) offsetof(cs_sig_settings, f)
static const struct key keys[] = {
    {"allowed_lateness", K_DUR_US, OFF(sig.lateness_us), 0, 86400, "1h", "How far behind the newest event time (per partition) an event may be and still update its windows; later events are dead-lettered with reason `late_event`. At most 1d."},
    {"max_accounts", K_U32, OFF(sig.max_accounts), 1, 1 << 30, "1000000", "Most accounts per partition's signals engine (320 bytes each plus 16 bytes of index at load <= 1/2); a new account beyond it is dead-lettered with reason `signals_account_limit`."},
    {"key_features", K_LIST, OFF(sig.key_features), 0, 0, "[export_csv, dashboards, api, integrations, alerts]", "Key features (at most 8 names of <= 47 bytes): they weigh more in usage_score and count for activation."},
    {"trial_days_default", K_INT, OFF(sig.trial_days_default), 1, 255, "14", "Trial length in days when TrialActivated has no `trial_days`."},
    {"usage_score.half_life", K_DAYS_D, OFF(sig.usage_half_life_days), 0.5, 365, "7d", "Half-life of the decayed usage units behind usage_score (0.5..365 days)."},
    {"usage_score.half_units", K_DBL, OFF(sig.usage_half_units), 1e-9, 1e9, "20", "Decayed units U at which usage_score = 100 * U / (U + half_units) is 50."},
    {"usage_score.units_feature", K_U16, OFF(sig.units_feature), 0, 1000, "1", "Usage units per FeatureUsed count of an ordinary feature."},
    {"usage_score.units_key_feature", K_U16, OFF(sig.units_key_feature), 0, 1000, "3", "Usage units per FeatureUsed count of a key feature."},
    {"usage_score.epsilon", K_DBL, OFF(sig.usage_epsilon), 0, 100, "2", "usage_score is written to the CRM when it moved by more than this many points since the last write."},
    {"activation.features", K_INT, OFF(sig.activation_features), 1, CS_SIG_MAX_KEY_FEATURES, "3", "Activation: this many distinct key features first used ..."},
    {"activation.within", K_DAYS_I, OFF(sig.activation_days), 0, 3650, "14d", "... within this many whole days of TrialActivated."},
    {"engagement_drop.ratio", K_DBL, OFF(sig.drop_ratio), 1e-9, 1, "0.5", "engagement_drop is on when the last 7 days' usage is below ratio x the weekly baseline of the 28 days before them ..."},
    {"engagement_drop.min_baseline", K_DBL, OFF(sig.drop_min_baseline), 0, 1e9, "10", "... and that baseline is at least this many units per week (tiny accounts do not flap)."},
    {"renewal_ticket_spike.tickets", K_INT, OFF(sig.spike_tickets), 1, 255, "3", "renewal_ticket_spike is on with at least this many SupportCaseEscalated ..."},
    {"renewal_ticket_spike.window", K_DAYS_I, OFF(sig.spike_window_days), 1, 16, "14d", "... within this many days (1..16) ..."},
    {"renewal_ticket_spike.renewal_within", K_DAYS_I, OFF(sig.spike_renewal_days), 0, 3650, "60d", "... while the renewal date is at most this many days ahead."},
    {"trial_handoff.usage_score", K_DBL, OFF(sig.handoff_usage_score), 0, 100, "60", "trial_handoff (product-qualified lead) is on for a trial account whose usage_score reaches this."},
    {"health.weights.usage", K_DBL, OFF(sig.w_usage), 0, 1000, "0.40", "Weight of the usage component (usage_score) in the health score; the weights are normalised by their sum."},
    {"health.weights.trend", K_DBL, OFF(sig.w_trend), 0, 1000, "0.25", "Weight of the trend component (last 7 days vs the weekly baseline)."},
    {"health.weights.features", K_DBL, OFF(sig.w_features), 0, 1000, "0.10", "Weight of the features component (distinct features used)."},
    {"health.weights.users", K_DBL, OFF(sig.w_users), 0, 1000, "0.10", "Weight of the users component (active users over 28 days)."},
    {"health.weights.support", K_DBL, OFF(sig.w_support), 0, 1000, "0.15", "Weight of the support component (100 minus a penalty per recent escalation)."},
    {"health.features_target", K_DBL, OFF(sig.features_target), 1e-9, 1e6, "5", "Distinct features for a full features component."},
    {"health.users_target", K_DBL, OFF(sig.users_target), 1e-9, 1e9, "5", "Active users (28 days) for a full users component."},
    {"health.support_penalty", K_DBL, OFF(sig.support_penalty), 0, 100, "25", "Points off the support component per escalation in the spike window."},
    {"health.bands.healthy", K_DBL, OFF(sig.band_healthy), 0, 100, "70", "Health at or above this: band `healthy`."},
    {"health.bands.poor", K_DBL, OFF(sig.band_poor), 0, 100, "40", "Health below this: band `poor` (between: `concerning`); must not exceed `healthy`."},
    {"health.epsilon", K_DBL, OFF(sig.health_epsilon), 0, 100, "2", "health_score is written when it moved by more than this many points (a band change is always written)."},
    {"signup_abuse.window", K_DUR_US, OFF(abuse.window_us), 16, 86400, "10m", "signup_abuse velocity window (counted in 16 buckets of window/16)."},
    {"signup_abuse.domain_max", K_U32, OFF(abuse.domain_max), 1, 65535, "10", "Signups (TrialActivated, LeadCreated) per email domain within the window before reason `domain_velocity` (free-mail domains are exempt)."},
    {"signup_abuse.ip_max", K_U32, OFF(abuse.ip_max), 1, 65535, "5", "Signups per IP within the window before reason `ip_velocity`."},
    {"signup_abuse.device_max", K_U32, OFF(abuse.device_max), 1, 65535, "3", "Signups per device id within the window before reason `device_velocity`."},
    {"signup_abuse.points.disposable", K_INT, OFF(abuse.w_disposable), 0, 100, "60", "Risk points for reason `disposable_domain`."},
    {"signup_abuse.points.domain", K_INT, OFF(abuse.w_domain), 0, 100, "30", "Risk points for reason `domain_velocity`."},
    {"signup_abuse.points.ip", K_INT, OFF(abuse.w_ip), 0, 100, "30", "Risk points for reason `ip_velocity`."},
    {"signup_abuse.points.device", K_INT, OFF(abuse.w_device), 0, 100, "40", "Risk points for reason `device_velocity`."},
    {"signup_abuse.flag_score", K_INT, OFF(abuse.flag_score), 1, 100, "50", "A signup is flagged when its risk score (sum of its reasons' points, capped at 100) reaches this."},
    {"signup_abuse.max_keys", K_U32, OFF(abuse.max_keys), 1024, 1 << 26, "1048576", "Most velocity entries (domains, IPs, devices together; 48 bytes each); past it new keys are not tracked (counted)."},
    {"signup_abuse.disposable_domains", K_DOMAINS, OFF(disposable), 0, 0, "[]", "Domains added to the built-in disposable-domain list (subdomains match too)."},
    {"signup_abuse.free_mail_domains", K_DOMAINS, OFF(free_mail), 0, 0, "[]", "Domains added to the built-in free-mail list (exempt from domain velocity)."},
};
#define NKEYS (sizeof keys / sizeof keys[0])

void cs_sig_config_reference(FILE *out)
{
    for (size_t i = 0; i < NKEYS; i++)
        fprintf(out, "| `signals.%s` | `%s` | %s |\n", keys[i].path, keys[i].dflt, keys[i].doc);
}

void cs_sig_settings_defaults(cs_sig_settings *s)
{
    memset(s, 0, sizeof *s);
    cs_sig_config_defaults(&s->sig);
    cs_abuse_config_defaults(&s->abuse);
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void cs_sig_settings_free(cs_sig_settings *s)
{
    if (!s) return;
    free_list(s->disposable, s->n_disposable);
    free_list(s->free_mail, s->n_free_mail);
    free(s);
}

void cs_sig_config_from(const cs_config *cfg, cs_sig_config *out)
{
    if (cfg && cfg->signals) *out = cfg->signals->sig;
    else cs_sig_config_defaults(out);
}

void cs_abuse_config_from(const cs_config *cfg, cs_abuse_config *out)
{
    if (!cfg || !cfg->signals) {
        cs_abuse_config_defaults(out);
        return;
    }
    const cs_sig_settings *s = cfg->signals;
    *out = s->abuse;
    out->disposable = (const char *const *)s->disposable;
    out->n_disposable = s->n_disposable;
    out->free_mail = (const char *const *)s->free_mail;
    out->n_free_mail = s->n_free_mail;
}

struct ctx {
    yaml_document_t *doc;
    const char      *name;
    char            *err;
    size_t           errlen;
    cs_sig_settings *c;
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
        memcpy(x->c->sig.key_features, tmp, sizeof tmp);
        x->c->sig.n_key_features = n;
        return 0;
    }
    if (k->kind == K_DOMAINS) {
        if (v->type != YAML_SEQUENCE_NODE) return fail(x, v, path, "expected a list of domain names");
        size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (n > CS_SIG_MAX_DOMAINS) return fail(x, v, path, "at most 100000 domains");
        char **list = n ? cs_calloc(n, sizeof *list) : NULL;
        size_t i = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *f = yaml_document_get_node(x->doc, *it);
            const char *d = f->type == YAML_SCALAR_NODE ? (const char *)f->data.scalar.value : NULL;
            int ok = d && f->data.scalar.length > 0 && f->data.scalar.length < 128 && strchr(d, '.') && d[0] != '.';
            for (const char *p = d; ok && *p; p++)
                if ((unsigned char)*p <= ' ' || *p == '@' || *p == '/' || *p == 0x7f) ok = 0;
            if (!ok) {
                free_list(list, i);
                return fail(x, f, path, "expected a domain name like example.com (< 128 bytes, no spaces, @ or /)");
            }
            list[i++] = cs_strdup(d);
        }
        char ***dst = (char ***)(base + k->off);
        size_t *dn = k->off == OFF(disposable) ? &x->c->n_disposable : &x->c->n_free_mail;
        free_list(*dst, *dn);
        *dst = list;
        *dn = i;
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

static char **copy_list(char *const *v, size_t n)
{
    char **o = n ? cs_calloc(n, sizeof *o) : NULL;
    for (size_t i = 0; i < n; i++) o[i] = cs_strdup(v[i]);
    return o;
}

int cs_sig_settings_yaml(cs_sig_settings **sp, yaml_document_t *doc, yaml_node_t *map, const char *name, char *err,
                         size_t errlen)
{
    if (map->type != YAML_MAPPING_NODE) {
        snprintf(err, errlen, "%s:%zu:%zu: signals: expected a mapping", name, map->start_mark.line + 1,
                 map->start_mark.column + 1);
        return -1;
    }
    /* work on a copy: *sp changes only when the whole section is valid */
    cs_sig_settings *tmp = cs_calloc(1, sizeof *tmp);
    if (*sp) {
        *tmp = **sp;
        tmp->disposable = copy_list((*sp)->disposable, (*sp)->n_disposable);
        tmp->free_mail = copy_list((*sp)->free_mail, (*sp)->n_free_mail);
    } else {
        cs_sig_settings_defaults(tmp);
    }
    struct ctx x = {doc, name, err, errlen, tmp};
    char msg[200];
    if (walk(&x, map, "")) {
        cs_sig_settings_free(tmp);
        return -1;
    }
    if (cs_sig_config_check(&tmp->sig, msg, sizeof msg)) {
        snprintf(err, errlen, "%s: %s", name, msg);
        cs_sig_settings_free(tmp);
        return -1;
    }
    cs_sig_settings_free(*sp);
    *sp = tmp;
    return 0;
}

int cs_sig_config_yaml(cs_sig_config *c, yaml_document_t *doc, yaml_node_t *map, const char *name, char *err,
                       size_t errlen)
{
    cs_sig_settings *s = cs_calloc(1, sizeof *s);
    cs_sig_settings_defaults(s);
    s->sig = *c;
    int rc = cs_sig_settings_yaml(&s, doc, map, name, err, errlen);
    if (rc == 0) *c = s->sig;
    cs_sig_settings_free(s);
    return rc;
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
