/*
 * core/config_outbound — the `outbound.destinations` list (docs/OUTBOUND.md):
 * one mapping per destination, checked here so that a bad kind, URL, name,
 * number or a duplicate name is an error naming file:line:column. What only
 * the dispatcher can judge (a secret's base64) is checked when serve builds
 * it, and reported with the entry's file:line:column (cs_dest_cfg.where).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/config.h"
#include "core/util.h"

int cs_config_load_dests(yaml_document_t *doc, yaml_node_t *seq, const char *name, cs_config *cfg, char *err,
                         size_t errlen);
void cs_config_free_dests(cs_config *cfg);

static void dest_free(cs_dest_cfg *d)
{
    free(d->name), free(d->kind), free(d->url), free(d->secrets[0]), free(d->secrets[1]);
    memset(d, 0, sizeof *d);
}

void cs_config_free_dests(cs_config *cfg)
{
    for (size_t i = 0; i < cfg->ndestinations; i++) dest_free(&cfg->destinations[i]);
    free(cfg->destinations);
    cfg->destinations = NULL;
    cfg->ndestinations = 0;
}

static int bad(char *err, size_t errlen, const char *file, const yaml_node_t *n, const char *fmt, const char *a)
{
    char what[400];
    snprintf(what, sizeof what, fmt, a);
    snprintf(err, errlen, "%s:%zu:%zu: outbound.destinations: %s", file, n->start_mark.line + 1,
             n->start_mark.column + 1, what);
    return -1;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-' || *s == '.'))
            return 0;
    return 1;
}

/* http:// or https://, a non-empty host, no whitespace or control bytes. */
static int url_ok(const char *u)
{
    const char *h = strncmp(u, "https://", 8) == 0 ? u + 8 : strncmp(u, "http://", 7) == 0 ? u + 7 : NULL;
    if (!h || !*h || *h == '/' || *h == ':' || *h == '?' || *h == '#' || strlen(u) > 2048) return 0;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f) return 0;
    return 1;
}

static int parse_long(const char *v, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max) return -1;
    *out = n;
    return 0;
}

/* A duration: N (seconds), Ns, Nm, Nh, Nd. */
static int parse_dur(const char *v, long max_s, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || n < 0) return -1;
    long mult = *end == 'd' ? 86400 : *end == 'h' ? 3600 : *end == 'm' ? 60 : 1;
    if (*end == 's' || mult > 1) end++;
    if (*end || n > max_s / mult) return -1;
    *out = n * mult;
    return 0;
}

static const char *scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int field(yaml_document_t *doc, const char *file, cs_dest_cfg *d, const yaml_node_t *k, yaml_node_t *v,
                 char *err, size_t errlen)
{
    const char *ks = scalar(k), *vs = scalar(v);
    if (!ks) return bad(err, errlen, file, k, "keys must be strings%s", "");
    if (strcmp(ks, "secrets") == 0 || strcmp(ks, "secret") == 0) {
        int n = 0;
        if (vs) {
            free(d->secrets[0]);
            d->secrets[0] = cs_strdup(vs);
            n = 1;
        } else if (v->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
                yaml_node_t *s = yaml_document_get_node(doc, *it);
                if (!scalar(s) || !*scalar(s)) return bad(err, errlen, file, s, "a secret is a string (whsec_...)%s", "");
                if (n == 2) return bad(err, errlen, file, s, "at most two secrets (the old and the new, during a rotation)%s", "");
                free(d->secrets[n]);
                d->secrets[n++] = cs_strdup(scalar(s));
            }
        }
        if (n == 0) return bad(err, errlen, file, v, "secrets: expected a list of one or two whsec_... strings%s", "");
        return 0;
    }
    if (!vs) return bad(err, errlen, file, v, "%s: expected a single value", ks);
    if (strcmp(ks, "name") == 0) {
        if (!name_ok(vs))
            return bad(err, errlen, file, v, "name \"%.80s\": expected 1-63 characters of [a-zA-Z0-9_.-]", vs);
        free(d->name), d->name = cs_strdup(vs);
    } else if (strcmp(ks, "kind") == 0) {
        if (strcmp(vs, "webhook") != 0 && strcmp(vs, "slack") != 0)
            return bad(err, errlen, file, v, "unknown kind \"%.80s\" (expected webhook or slack)", vs);
        free(d->kind), d->kind = cs_strdup(vs);
    } else if (strcmp(ks, "url") == 0) {
        if (!url_ok(vs))
            return bad(err, errlen, file, v, "bad URL \"%.200s\" (expected http:// or https:// and a host)", vs);
        free(d->url), d->url = cs_strdup(vs);
    } else if (strcmp(ks, "allow_private") == 0) {
        if (strcmp(vs, "true") != 0 && strcmp(vs, "false") != 0)
            return bad(err, errlen, file, v, "allow_private: expected true or false%s", "");
        d->allow_private = strcmp(vs, "true") == 0;
    } else if (strcmp(ks, "rate_per_s") == 0) {
        char *end;
        errno = 0;
        double r = strtod(vs, &end);
        if (errno || end == vs || *end || !(r >= 0 && r <= 1e6))
            return bad(err, errlen, file, v, "rate_per_s: expected requests per second, 0..1e6 (0 = unlimited)%s", "");
        d->rate_per_s = r;
    } else if (strcmp(ks, "retry_horizon") == 0) {
        if (parse_dur(vs, 366L * 86400, &d->retry_horizon_s) || d->retry_horizon_s < 1)
            return bad(err, errlen, file, v, "retry_horizon: expected a duration (N, Ns, Nm, Nh, Nd) of 1 s..366 d%s", "");
    } else {
        static const struct {
            const char *key;
            long        min, max;
            int         is_int;
            size_t      off;
        } nums[] = {
            {"concurrency", 1, 1000, 1, offsetof(cs_dest_cfg, concurrency)},
            {"burst", 1, 1000000, 1, offsetof(cs_dest_cfg, burst)},
            {"queue_max", 1, 100000, 1, offsetof(cs_dest_cfg, queue_max)},
            {"connect_timeout_ms", 1, 600000, 1, offsetof(cs_dest_cfg, connect_timeout_ms)},
            {"timeout_ms", 1, 3600000, 1, offsetof(cs_dest_cfg, timeout_ms)},
            {"max_attempts", 0, 1000000, 1, offsetof(cs_dest_cfg, max_attempts)},
            {"backoff_base_ms", 1, 86400000L, 0, offsetof(cs_dest_cfg, backoff_base_ms)},
            {"backoff_max_ms", 1, 7L * 86400000L, 0, offsetof(cs_dest_cfg, backoff_max_ms)},
            {"max_response", 0, 16L << 20, 0, offsetof(cs_dest_cfg, max_response)},
        };
        for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
            if (strcmp(ks, nums[i].key) != 0) continue;
            long n;
            if (parse_long(vs, nums[i].min, nums[i].max, &n)) {
                char what[160];
                snprintf(what, sizeof what, "%s: expected an integer in %ld..%ld", ks, nums[i].min, nums[i].max);
                return bad(err, errlen, file, v, "%s", what);
            }
            if (nums[i].is_int) *(int *)((char *)d + nums[i].off) = (int)n;
            else *(long *)((char *)d + nums[i].off) = n;
            return 0;
        }
        return bad(err, errlen, file, k,
                   "unknown field \"%.60s\" (expected name, kind, url, secrets, concurrency, rate_per_s, burst, "
                   "queue_max, connect_timeout_ms, timeout_ms, allow_private, retry_horizon, backoff_base_ms, "
                   "backoff_max_ms, max_attempts, max_response)",
                   ks);
    }
    return 0;
}

int cs_config_load_dests(yaml_document_t *doc, yaml_node_t *seq, const char *file, cs_config *cfg, char *err,
                         size_t errlen)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return bad(err, errlen, file, seq, "expected a list of destinations (mappings with name, kind, url, ...)%s", "");
    cs_config_free_dests(cfg); /* a later file section replaces the list */
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *m = yaml_document_get_node(doc, *it);
        if (m->type != YAML_MAPPING_NODE)
            return bad(err, errlen, file, m, "each destination is a mapping with name, kind, url, ...%s", "");
        cs_dest_cfg d = {0};
        snprintf(d.where, sizeof d.where, "%s:%zu:%zu", file, m->start_mark.line + 1, m->start_mark.column + 1);
        yaml_node_t *name_node = m;
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key), *v = yaml_document_get_node(doc, p->value);
            if (field(doc, file, &d, k, v, err, errlen)) {
                dest_free(&d);
                return -1;
            }
            if (scalar(k) && strcmp(scalar(k), "name") == 0) name_node = v;
        }
        int rc = 0;
        if (!d.name) rc = bad(err, errlen, file, m, "a destination needs a name%s", "");
        else if (!d.url) rc = bad(err, errlen, file, m, "destination \"%s\" needs a url", d.name);
        else if (!d.kind) d.kind = cs_strdup("webhook");
        if (!rc && strcmp(d.kind, "webhook") == 0 && !d.secrets[0])
            rc = bad(err, errlen, file, m, "webhook destination \"%s\" needs secrets: [whsec_...] (its requests are signed)",
                     d.name);
        if (!rc && strcmp(d.kind, "slack") == 0 && d.secrets[0])
            rc = bad(err, errlen, file, m, "slack destination \"%s\" takes no secrets (the URL is the secret)", d.name);
        for (size_t i = 0; !rc && i < cfg->ndestinations; i++)
            if (strcmp(cfg->destinations[i].name, d.name) == 0)
                rc = bad(err, errlen, file, name_node, "duplicate destination name \"%s\"", d.name);
        if (rc) {
            dest_free(&d);
            return -1;
        }
        cfg->destinations = cs_realloc(cfg->destinations, (cfg->ndestinations + 1) * sizeof *cfg->destinations);
        cfg->destinations[cfg->ndestinations++] = d;
    }
    return 0;
}
