/*
 * bench/ingest_json — the CPU cost of ingest's JSON work per event, without
 * HTTP, fsync or the pipeline (those are bench/ingest.sh's job). Printed by
 * bench/ingest.sh before the HTTP runs. Modes:
 *
 *   ingest_json path [-n REQS]     cs_ingest_segment on Segment /v1/batch bodies of
 *                                  100 track events (the bench/ingest_segment.lua
 *                                  shape, unique messageIds), dedupe on, the log
 *                                  replaced by a stub that only counts: ns/event
 *                                  for the whole validate path.
 *   ingest_json parsers [-n REQS]  parse + free of the same bodies with each JSON
 *                                  library tried for docs/decisions.md: cJSON,
 *                                  json-c, jansson, yajl (tree API), jsmn (tokens
 *                                  only, counted twice as its API needs); plus the
 *                                  strict syntax pass: ns/event each.
 *   ingest_json dump FILE...       each file is a body; "seg-*" files go to
 *                                  /v1/batch, others to /v1/events; prints the status,
 *                                  the answer and every canonical record, so two
 *                                  builds' canonical bytes can be diffed.
 *
 * Output: one "key=value ..." line per measure. Times are CPU-clock
 * (CLOCK_PROCESS_CPUTIME_ID) medians of 5 rounds, so other load on the machine
 * lowers them less than wall time would.
 */
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <jansson.h>
#define JSMN_STATIC
#include <jsmn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "core/config.h"
#include "core/util.h"
#include "ingest/ingest.h"
#include "ingest/jsoncheck.h"

static size_t produced, produced_bytes;
static int dump_records;

static int stub_produce(cs_bus *bus, const char *topic, cs_msg *msgs, size_t n)
{
    (void)bus, (void)topic;
    for (size_t i = 0; i < n; i++) {
        produced_bytes += msgs[i].value_len;
        if (dump_records) printf("  rec key=%.*s %.*s\n", (int)msgs[i].key_len, msgs[i].key, (int)msgs[i].value_len,
                                 msgs[i].value);
    }
    produced += n;
    return 0;
}

static const struct cs_bus_ops stub_ops = {.name = "stub", .produce = stub_produce};

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A body like bench/ingest_segment.lua's request r (100 events). */
static char *make_body(int r, size_t *len)
{
    static const char *features[] = {"reports", "export_csv", "dashboards", "api", "sso", "alerts"};
    cs_buf b;
    cs_buf_init(&b);
    char ts[40];
    cs_fmt_time_ms(cs_now_us() / 1000000 * 1000000, ts, sizeof ts);
    cs_buf_adds(&b, "{\"batch\":[");
    for (int i = 0; i < 100; i++) {
        int acc = (r * 7 + i * 13) % 5000;
        const char *f = features[i % 6];
        cs_buf_printf(&b,
                      "%s{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"w1-1-%d-%d\",\"userId\":"
                      "\"u_%05d_%d\",\"timestamp\":\"%s\",\"context\":{\"groupId\":\"acc_%05d\",\"ip\":\"10.1.%d.%d\"},"
                      "\"properties\":{\"feature\":\"%s\",\"count\":%d,\"browser\":\"firefox\",\"path\":\"/app/%s\"}}",
                      i ? "," : "", r, i, acc, i % 7, ts, acc, acc % 250, i % 250, f, 1 + i % 3, f);
    }
    cs_buf_printf(&b, "],\"sentAt\":\"%s\"}", ts);
    *len = b.len;
    return cs_buf_steal(&b);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median5(double *v)
{
    qsort(v, 5, sizeof *v, cmp_d);
    return v[2];
}

static void setup(cs_config *cfg, cs_bus *bus, cs_ingest *ing)
{
    cs_config_defaults(cfg);
    cfg->max_age_s = 0;
    memset(bus, 0, sizeof *bus);
    bus->ops = &stub_ops;
    bus->partitions = 8;
    char err[256];
    cs_ingest_init(ing, NULL, cfg, err, sizeof err); /* NULL bus: no rebuild */
    ing->bus = bus;
}

static int run_path(int nreq)
{
    cs_config cfg;
    cs_bus bus;
    cs_ingest ing;
    setup(&cfg, &bus, &ing);
    char **bodies = cs_malloc((size_t)nreq * 5 * sizeof *bodies);
    size_t *lens = cs_malloc((size_t)nreq * 5 * sizeof *lens);
    for (int i = 0; i < nreq * 5; i++) bodies[i] = make_body(i, &lens[i]);
    double per[5];
    cs_buf resp;
    cs_buf_init(&resp);
    for (int round = 0; round < 5; round++) {
        double t0 = cpu_s();
        for (int i = 0; i < nreq; i++) {
            int k = round * nreq + i, ra = 0;
            cs_ingest_req req = {.body = bodies[k], .len = lens[k], .received_us = cs_now_us()};
            int st = cs_ingest_segment(&ing, "batch", &req, &resp, &ra);
            if (st != 200 || strncmp(resp.data, "{\"accepted\":100,", 16) != 0) {
                fprintf(stderr, "ingest_json: status %d: %s\n", st, resp.data);
                return 1;
            }
        }
        per[round] = (cpu_s() - t0) / (nreq * 100.0) * 1e9;
    }
    printf("path ns_per_event=%.0f events=%d bytes_per_event=%.0f body_bytes=%zu\n", median5(per), nreq * 500,
           (double)produced_bytes / (double)produced, lens[0]);
    for (int i = 0; i < nreq * 5; i++) free(bodies[i]);
    free(bodies), free(lens);
    cs_buf_free(&resp);
    cs_ingest_destroy(&ing);
    cs_config_free(&cfg);
    return 0;
}

typedef int (*parse_fn)(const char *s, size_t len);

static int p_syntax(const char *s, size_t len)
{
    size_t at;
    return cs_json_syntax(s, len, 0, 0, &at) == CS_JSON_OK ? 0 : -1;
}

static int p_cjson(const char *s, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(s, len);
    if (!j) return -1;
    cJSON_Delete(j);
    return 0;
}

/* json-c's names clash with jansson's (json_object_get, ...), so it is
 * reached through dlsym instead of its header. */
static void *(*jc_new)(void);
static void *(*jc_parse_ex)(void *tok, const char *s, int len);
static void (*jc_tok_free)(void *tok);
static int (*jc_put)(void *obj);

static int jsonc_load(void)
{
    void *h = dlopen("libjson-c.so.5", RTLD_NOW);
    if (!h) return -1;
    *(void **)&jc_new = dlsym(h, "json_tokener_new");
    *(void **)&jc_parse_ex = dlsym(h, "json_tokener_parse_ex");
    *(void **)&jc_tok_free = dlsym(h, "json_tokener_free");
    *(void **)&jc_put = dlsym(h, "json_object_put");
    return jc_new && jc_parse_ex && jc_tok_free && jc_put ? 0 : -1;
}

static int p_jsonc(const char *s, size_t len)
{
    void *tok = jc_new();
    void *o = jc_parse_ex(tok, s, (int)len);
    jc_tok_free(tok);
    if (!o) return -1;
    jc_put(o);
    return 0;
}

static int p_jansson(const char *s, size_t len)
{
    json_error_t e;
    json_t *j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &e);
    if (!j) return -1;
    json_decref(j);
    return 0;
}

/* jsmn only tokenizes (no tree, no unescaping): the floor for any parser. */
static int p_jsmn(const char *s, size_t len)
{
    static jsmntok_t *toks;
    static unsigned ntoks;
    jsmn_parser jp;
    jsmn_init(&jp);
    int n = jsmn_parse(&jp, s, len, NULL, 0);
    if (n < 0) return -1;
    if ((unsigned)n > ntoks) {
        free(toks);
        ntoks = (unsigned)n;
        toks = cs_malloc(ntoks * sizeof *toks);
    }
    jsmn_init(&jp);
    return jsmn_parse(&jp, s, len, toks, ntoks) == n ? 0 : -1;
}

static int p_yajl(const char *s, size_t len)
{
    (void)len; /* yajl_tree_parse takes a NUL-terminated string */
    char eb[128];
    yajl_val v = yajl_tree_parse(s, eb, sizeof eb);
    if (!v) return -1;
    yajl_tree_free(v);
    return 0;
}

static int run_parsers(int nreq)
{
    struct {
        const char *name;
        parse_fn fn;
    } ps[] = {{"syntax_pass", p_syntax}, {"cjson", p_cjson}, {"jsonc", p_jsonc}, {"jansson", p_jansson},
              {"yajl", p_yajl}, {"jsmn_tokens_only", p_jsmn}};
    char **bodies = cs_malloc((size_t)nreq * sizeof *bodies);
    size_t *lens = cs_malloc((size_t)nreq * sizeof *lens);
    for (int i = 0; i < nreq; i++) bodies[i] = make_body(i, &lens[i]);
    int have_jsonc = jsonc_load() == 0;
    for (size_t p = 0; p < sizeof ps / sizeof ps[0]; p++) {
        double per[5];
        if (ps[p].fn == p_jsonc && !have_jsonc) {
            printf("parser jsonc unavailable (libjson-c.so.5 not found)\n");
            continue;
        }
        for (int round = 0; round < 5; round++) {
            double t0 = cpu_s();
            for (int i = 0; i < nreq; i++)
                if (ps[p].fn(bodies[i], lens[i]) != 0) {
                    fprintf(stderr, "ingest_json: %s failed to parse body %d\n", ps[p].name, i);
                    return 1;
                }
            per[round] = (cpu_s() - t0) / (nreq * 100.0) * 1e9;
        }
        printf("parser %s ns_per_event=%.0f\n", ps[p].name, median5(per));
    }
    for (int i = 0; i < nreq; i++) free(bodies[i]);
    free(bodies), free(lens);
    return 0;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cs_buf b;
    cs_buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) cs_buf_add(&b, chunk, n);
    fclose(f);
    *len = b.len;
    return cs_buf_steal(&b);
}

static int run_dump(int argc, char **argv)
{
    cs_config cfg;
    cs_bus bus;
    cs_ingest ing;
    setup(&cfg, &bus, &ing);
    dump_records = 1;
    cs_buf resp;
    cs_buf_init(&resp);
    for (int i = 0; i < argc; i++) {
        size_t len;
        char *body = read_all(argv[i], &len);
        if (!body) {
            fprintf(stderr, "ingest_json: cannot read %s\n", argv[i]);
            return 1;
        }
        const char *base = strrchr(argv[i], '/');
        base = base ? base + 1 : argv[i];
        int ra = 0;
        /* A fixed receive time, so two builds print the same bytes. */
        cs_ingest_req req = {.body = body, .len = len, .received_us = 1796032800123456LL};
        printf("%s:\n", base);
        int st = strncmp(base, "seg-", 4) == 0 ? cs_ingest_segment(&ing, "batch", &req, &resp, &ra)
                                                : cs_ingest_native(&ing, &req, &resp, &ra);
        printf("  status=%d %s\n", st, resp.data ? resp.data : "");
        free(body);
    }
    cs_buf_free(&resp);
    cs_ingest_destroy(&ing);
    cs_config_free(&cfg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ingest_json path|parsers [-n REQS] | dump FILE...\n");
        return 2;
    }
    int nreq = 200;
    if (argc >= 4 && strcmp(argv[2], "-n") == 0) nreq = atoi(argv[3]);
    if (nreq < 1) nreq = 1;
    if (strcmp(argv[1], "path") == 0) return run_path(nreq);
    if (strcmp(argv[1], "parsers") == 0) return run_parsers(nreq);
    if (strcmp(argv[1], "dump") == 0) return run_dump(argc - 2, argv + 2);
    fprintf(stderr, "ingest_json: unknown mode %s\n", argv[1]);
    return 2;
}
