/*
 * core/config — YAML configuration through libyaml's document API, which
 * keeps each node's line and column for error messages.
 */
#include "core/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/util.h"

enum kind { K_STR, K_INT, K_LONG, K_REPS };

struct key {
    const char *path;
    enum kind   kind;
    size_t      off;
    long        min, max;
    const char *dflt;
    const char *doc;
};

#define OFF(f) offsetof(cs_config, f)
static const struct key keys[] = {
    {"data", K_STR, OFF(data_dir), 0, 0, "./data", "Directory for the log and the SQLite store."},
    {"http", K_STR, OFF(http_addr), 0, 0, "127.0.0.1:8080", "HTTP listen address HOST:PORT (port 0 picks a free one)."},
    {"http_threads", K_INT, OFF(http_threads), 1, 64, "4", "HTTP worker threads."},
    {"log.partitions", K_INT, OFF(partitions), 1, 1024, "8", "Partitions of the `events` topic; key = account id, murmur2 like Kafka."},
    {"log.fsync", K_STR, OFF(fsync), 0, 0, "always", "`always` (fsync before ack), `interval:<ms>` (loss window <ms>), `never` (loss window: OS writeback, ~30 s)."},
    {"ingest.max_body_bytes", K_LONG, OFF(max_body_bytes), 1024, 64L << 20, "524288", "Largest request body; larger gets 413."},
    {"ingest.max_event_bytes", K_LONG, OFF(max_event_bytes), 256, 1L << 20, "32768", "Largest single event; larger is rejected with `event_too_large`."},
    {"ingest.max_batch_events", K_LONG, OFF(max_batch_events), 1, 100000, "2500", "Most events in one request."},
    {"pipeline.batch_max_events", K_LONG, OFF(pipeline_batch_max), 1, 100000, "500", "Most events the pipeline applies in one store transaction."},
    {"routing.reps", K_REPS, OFF(reps), 0, 0, "[]", "Reps for round-robin lead routing: list of {id, name, email}."},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = cs_strdup(v);
}

static int parse_fsync(cs_config *cfg, char *err, size_t errlen, const char *where)
{
    const char *f = cfg->fsync;
    if (strcmp(f, "always") == 0) {
        cfg->fsync_policy = CS_FSYNC_ALWAYS;
    } else if (strcmp(f, "never") == 0) {
        cfg->fsync_policy = CS_FSYNC_NEVER;
    } else if (strncmp(f, "interval:", 9) == 0) {
        char *end;
        errno = 0;
        long ms = strtol(f + 9, &end, 10);
        if (errno || *end || end == f + 9 || ms < 1 || ms > 60000) {
            snprintf(err, errlen, "%s: log.fsync: interval must be interval:<1..60000 ms>, got \"%s\"",
                     where, f);
            return -1;
        }
        cfg->fsync_policy = CS_FSYNC_INTERVAL;
        cfg->fsync_interval_ms = (int)ms;
    } else {
        snprintf(err, errlen, "%s: log.fsync: expected always, interval:<ms> or never, got \"%s\"",
                 where, f);
        return -1;
    }
    return 0;
}

static int apply_scalar(cs_config *cfg, const struct key *k, const char *v)
{
    if (k->kind == K_STR) {
        set_str((char **)((char *)cfg + k->off), v);
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < k->min || n > k->max) return -1;
    if (k->kind == K_INT)
        *(int *)((char *)cfg + k->off) = (int)n;
    else
        *(long *)((char *)cfg + k->off) = n;
    return 0;
}

void cs_config_defaults(cs_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].kind != K_REPS) apply_scalar(cfg, &keys[i], keys[i].dflt);
    cfg->fsync_policy = CS_FSYNC_ALWAYS;
}

void cs_config_free(cs_config *cfg)
{
    free(cfg->data_dir);
    free(cfg->http_addr);
    free(cfg->fsync);
    for (size_t i = 0; i < cfg->nreps; i++) {
        free(cfg->reps[i].id);
        free(cfg->reps[i].name);
        free(cfg->reps[i].email);
    }
    free(cfg->reps);
    memset(cfg, 0, sizeof *cfg);
}

struct ctx {
    yaml_document_t *doc;
    const char *name;
    char *err;
    size_t errlen;
    cs_config *cfg;
};

static int fail(struct ctx *c, yaml_node_t *n, const char *fmt, const char *a, const char *b)
{
    char what[512];
    snprintf(what, sizeof what, fmt, a, b);
    snprintf(c->err, c->errlen, "%s:%zu:%zu: %s", c->name, n->start_mark.line + 1,
             n->start_mark.column + 1, what);
    return -1;
}

static int load_reps(struct ctx *c, yaml_node_t *seq)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail(c, seq, "routing.reps: expected a list of reps%s%s", "", "");
    cs_config *cfg = c->cfg;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *rep = yaml_document_get_node(c->doc, *it);
        if (rep->type != YAML_MAPPING_NODE)
            return fail(c, rep, "routing.reps: each rep is a mapping with id, name, email%s%s", "", "");
        cs_rep_cfg r = {0};
        for (yaml_node_pair_t *p = rep->data.mapping.pairs.start; p < rep->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
            const char *ks = (const char *)k->data.scalar.value;
            if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
                free(r.id), free(r.name), free(r.email);
                return fail(c, v, "routing.reps: rep fields must be strings%s%s", "", "");
            }
            char **dst = strcmp(ks, "id") == 0      ? &r.id
                         : strcmp(ks, "name") == 0  ? &r.name
                         : strcmp(ks, "email") == 0 ? &r.email
                                                    : NULL;
            if (!dst) {
                free(r.id), free(r.name), free(r.email);
                return fail(c, k, "routing.reps: unknown rep field \"%s\"%s (expected id, name, email)", ks, "");
            }
            set_str(dst, (const char *)v->data.scalar.value);
        }
        if (!r.id || !*r.id) {
            free(r.id), free(r.name), free(r.email);
            return fail(c, rep, "routing.reps: a rep needs an id%s%s", "", "");
        }
        for (size_t i = 0; i < cfg->nreps; i++)
            if (strcmp(cfg->reps[i].id, r.id) == 0) {
                int rc = fail(c, rep, "routing.reps: duplicate rep id \"%s\"%s", r.id, "");
                free(r.id), free(r.name), free(r.email);
                return rc;
            }
        if (!r.name) r.name = cs_strdup(r.id);
        if (!r.email) r.email = cs_strdup("");
        cfg->reps = cs_realloc(cfg->reps, (cfg->nreps + 1) * sizeof *cfg->reps);
        cfg->reps[cfg->nreps++] = r;
    }
    return 0;
}

static int walk(struct ctx *c, yaml_node_t *map, const char *prefix)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail(c, map, "%s%sexpected a mapping", prefix, *prefix ? ": " : "");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (k->type != YAML_SCALAR_NODE) return fail(c, k, "keys must be strings%s%s", "", "");
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", (const char *)k->data.scalar.value);
        const struct key *found = NULL;
        int is_section = 0;
        size_t plen = strlen(path);
        for (size_t i = 0; i < NKEYS; i++) {
            if (strcmp(keys[i].path, path) == 0) found = &keys[i];
            else if (strncmp(keys[i].path, path, plen) == 0 && keys[i].path[plen] == '.') is_section = 1;
        }
        if (found && found->kind == K_REPS) {
            if (load_reps(c, v)) return -1;
        } else if (found) {
            if (v->type != YAML_SCALAR_NODE) return fail(c, v, "%s: expected a single value%s", path, "");
            if (apply_scalar(c->cfg, found, (const char *)v->data.scalar.value)) {
                char range[96];
                snprintf(range, sizeof range, "an integer in %ld..%ld", found->min, found->max);
                return fail(c, v, "%s: expected %s", path, range);
            }
        } else if (is_section) {
            if (walk(c, v, path)) return -1;
        } else {
            return fail(c, k, "unknown key \"%s\"%s (see docs/CONFIG.md)", path, "");
        }
    }
    return 0;
}

int cs_config_load_string(cs_config *cfg, const char *name, const char *text, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = -1;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "%s:%zu:%zu: %s", name, parser.problem_mark.line + 1,
                 parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    struct ctx c = {&doc, name, err, errlen, cfg};
    if (!root) {
        rc = 0; /* empty file: defaults */
    } else if (walk(&c, root, "") == 0) {
        rc = parse_fsync(cfg, err, errlen, name);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int cs_config_load(cs_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    cs_buf b;
    cs_buf_init(&b);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        cs_buf_add(&b, chunk, n);
        if (b.len > (1u << 20)) {
            fclose(f);
            cs_buf_free(&b);
            snprintf(err, errlen, "%s: larger than 1 MiB", path);
            return -1;
        }
    }
    fclose(f);
    if (!b.data) cs_buf_add(&b, "", 0);
    int rc = cs_config_load_string(cfg, path, b.data, err, errlen);
    cs_buf_free(&b);
    return rc;
}

void cs_config_reference(FILE *out)
{
    fprintf(out, "| key | default | meaning |\n|---|---|---|\n");
    for (size_t i = 0; i < NKEYS; i++)
        fprintf(out, "| `%s` | `%s` | %s |\n", keys[i].path, keys[i].dflt, keys[i].doc);
}
