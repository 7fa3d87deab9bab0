/*
 * Unit: ingest without a server — the dedupe window (claims, conflicts,
 * expiry, eviction, deletion under probing), body decoding (gzip, bombs,
 * unknown encodings), write keys (Basic auth, constant-time lookup, token
 * buckets), JSON structure limits, and the Segment mapping end to end
 * through cs_ingest_segment over an in-memory bus, including the rebuild of
 * the dedupe window from that bus.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/config.h"
#include "core/util.h"
#include "ingest/auth.h"
#include "ingest/body.h"
#include "ingest/dedupe.h"
#include "ingest/ingest.h"
#include "ingest/jsoncheck.h"

/* ------------------------------------------------------ in-memory bus */

typedef struct membus {
    cs_bus   bus;
    cs_buf   vals[4][4096];
    int64_t  ts[4][4096];
    int64_t  n[4];
    int      fail;
} membus;

static size_t mb_lane; /* records ingest appended to the leads lane's topic */

static int mb_produce(cs_bus *bus, const char *topic, cs_msg *msgs, size_t n)
{
    membus *m = bus->impl;
    if (strcmp(topic, CS_TOPIC_LEADS) == 0) {
        mb_lane += n;
        return 0;
    }
    if (m->fail) return -1;
    for (size_t i = 0; i < n; i++) {
        int p = cs_bus_partition(bus, msgs[i].key, msgs[i].key_len);
        assert_true(m->n[p] < 4096);
        cs_buf_init(&m->vals[p][m->n[p]]);
        cs_buf_add(&m->vals[p][m->n[p]], msgs[i].value, msgs[i].value_len);
        m->ts[p][m->n[p]] = msgs[i].ts_us;
        msgs[i].partition = p;
        msgs[i].offset = m->n[p]++;
    }
    return 0;
}

static int mb_fetch(cs_bus *bus, const char *topic, int p, int64_t from, size_t max, cs_rec_cb cb, void *arg)
{
    (void)topic;
    membus *m = bus->impl;
    int k = 0;
    for (int64_t o = from; o < m->n[p] && (size_t)k < max; o++, k++) {
        cs_rec r = {.offset = o, .ts_us = m->ts[p][o], .append_us = m->ts[p][o], .key = "", .key_len = 0,
                    .value = m->vals[p][o].data, .value_len = m->vals[p][o].len};
        if (cb(&r, arg)) return k + 1;
    }
    return k;
}

static int64_t mb_end(cs_bus *bus, const char *topic, int p)
{
    (void)topic;
    return ((membus *)bus->impl)->n[p];
}

static const struct cs_bus_ops mb_ops = {.name = "mem", .produce = mb_produce, .fetch = mb_fetch,
                                         .end_offset = mb_end};

static membus *mb_new(void)
{
    membus *m = cs_calloc(1, sizeof *m);
    m->bus = (cs_bus){.ops = &mb_ops, .partitions = 4, .impl = m};
    return m;
}

static void mb_free(membus *m)
{
    for (int p = 0; p < 4; p++)
        for (int64_t o = 0; o < m->n[p]; o++) cs_buf_free(&m->vals[p][o]);
    free(m);
}

static int64_t mb_count(membus *m)
{
    return m->n[0] + m->n[1] + m->n[2] + m->n[3];
}

/* The stored canonical event with this event_id (parsed), or NULL. */
static cJSON *mb_find(membus *m, const char *event_id)
{
    for (int p = 0; p < 4; p++)
        for (int64_t o = 0; o < m->n[p]; o++) {
            cJSON *j = cJSON_Parse(m->vals[p][o].data);
            assert_non_null(j);
            if (strcmp(cJSON_GetObjectItem(j, "event_id")->valuestring, event_id) == 0) return j;
            cJSON_Delete(j);
        }
    return NULL;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* -------------------------------------------------------------- dedupe */

static void test_dedupe_claims(void **state)
{
    (void)state;
    cs_dedupe d;
    cs_dedupe_init(&d, 1024, 100);
    uint64_t a[2] = {1, 2}, b[2] = {3, 2}; /* same home slot */
    uint32_t o1 = cs_dedupe_owner(&d), o2 = cs_dedupe_owner(&d);
    assert_int_equal(cs_dedupe_claim(&d, a, 7, 1000, o1), CS_DD_NEW);
    assert_int_equal(cs_dedupe_claim(&d, a, 7, 1000, o1), CS_DD_DUP);      /* same request, same payload */
    assert_int_equal(cs_dedupe_claim(&d, a, 8, 1000, o1), CS_DD_CONFLICT); /* same request, other payload */
    assert_int_equal(cs_dedupe_claim(&d, a, 7, 1000, o2), CS_DD_BUSY);     /* pending under another request */
    assert_int_equal(cs_dedupe_claim(&d, b, 9, 1000, o1), CS_DD_NEW);
    cs_dedupe_resolve(&d, o1, (const uint64_t(*)[2])a, 1, 1);
    const uint64_t bb[1][2] = {{3, 2}};
    cs_dedupe_resolve(&d, o1, bb, 1, 0); /* aborted: forgotten */
    assert_int_equal(cs_dedupe_claim(&d, a, 7, 1050, o2), CS_DD_DUP);
    assert_int_equal(cs_dedupe_claim(&d, a, 8, 1050, o2), CS_DD_CONFLICT);
    assert_int_equal(cs_dedupe_claim(&d, b, 9, 1050, o2), CS_DD_NEW);
    cs_dedupe_resolve(&d, o2, bb, 1, 1);
    assert_int_equal(d.live, 2);
    /* Past the window (100 s) an id is new again. */
    assert_int_equal(cs_dedupe_claim(&d, a, 8, 1101, o2), CS_DD_NEW);
    cs_dedupe_resolve(&d, o2, (const uint64_t(*)[2])a, 1, 1);
    /* A rebuilt entry without a payload hash matches any payload. */
    uint64_t c[2] = {5, 5};
    cs_dedupe_add(&d, c, 0, 1100, 1100);
    assert_int_equal(cs_dedupe_claim(&d, c, 1234, 1100, o2), CS_DD_DUP);
    assert_int_equal(d.bytes, 1024 * 32 + 2048 * 4); /* 40 bytes per id */
    cs_dedupe_destroy(&d);
}

static void test_dedupe_bounded_and_consistent(void **state)
{
    (void)state;
    /* Many ids through a small window: every live id is found, evicted ids
     * are new again, and backward-shift deletion never loses an entry. */
    cs_dedupe d;
    enum { CAP = 1024, N = 20000 };
    cs_dedupe_init(&d, CAP, 1000000);
    uint32_t o = cs_dedupe_owner(&d);
    for (uint64_t i = 0; i < N; i++) {
        uint64_t id[2] = {i * 0x9e3779b97f4a7c15ULL, (i * 7) & 0xfff}; /* heavy home-slot collisions */
        /* The prefetch hints (what a request issues before claiming) change nothing. */
        uint64_t head = d.head, tail = d.tail, live = d.live;
        cs_dedupe_prefetch(&d, id);
        cs_dedupe_prefetch_evictions(&d, (size_t)(i % 3000)); /* up to ~3 x the window */
        assert_true(d.head == head && d.tail == tail && d.live == live);
        assert_int_equal(cs_dedupe_claim(&d, id, i + 1, 10, o), CS_DD_NEW);
        cs_dedupe_resolve(&d, o, (const uint64_t(*)[2])id, 1, 1);
        assert_true(d.live <= CAP);
        if (i % 997 == 0) /* the last CAP ids are all still there */
            for (uint64_t k = i + 1 > CAP ? i + 1 - CAP : 0; k <= i; k++) {
                uint64_t kid[2] = {k * 0x9e3779b97f4a7c15ULL, (k * 7) & 0xfff};
                assert_int_equal(cs_dedupe_claim(&d, kid, k + 1, 10, o), CS_DD_DUP);
            }
    }
    assert_int_equal(d.live, CAP);
    assert_int_equal(d.evicted_early, N - CAP);
    uint64_t first[2] = {0, 0};
    assert_int_equal(cs_dedupe_claim(&d, first, 1, 10, o), CS_DD_NEW); /* evicted: new again */
    cs_dedupe_destroy(&d);
}

/* ---------------------------------------------------------------- body */

static size_t gz(const char *in, size_t len, unsigned char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = z.total_out;
    deflateEnd(&z);
    return n;
}

static void test_body_decode(void **state)
{
    (void)state;
    cs_buf out, resp;
    cs_buf_init(&out);
    cs_buf_init(&resp);
    const char *body;
    size_t blen;
    assert_int_equal(cs_body_decode(NULL, "abc", 3, 10, &out, &body, &blen, &resp), 0);
    assert_int_equal(blen, 3);
    assert_int_equal(cs_body_decode(" Identity ", "abc", 3, 10, &out, &body, &blen, &resp), 0);
    static unsigned char z[1 << 16];
    const char *text = "{\"batch\":[{\"type\":\"track\"}]}";
    size_t zn = gz(text, strlen(text), z, sizeof z);
    assert_int_equal(cs_body_decode("gzip", (char *)z, zn, 1000, &out, &body, &blen, &resp), 0);
    assert_int_equal(blen, strlen(text));
    assert_memory_equal(body, text, blen);
    /* Two gzip members back to back decode as one body. */
    memcpy(z + zn, z, zn);
    assert_int_equal(cs_body_decode("GZIP", (char *)z, 2 * zn, 1000, &out, &body, &blen, &resp), 0);
    assert_int_equal(blen, 2 * strlen(text));
    cs_buf_free(&out);
    /* A bomb: 8 MiB of zeros compress to ~8 KiB; the limit stops it. */
    char *zeros = cs_calloc(8 << 20, 1);
    zn = gz(zeros, 8 << 20, z, sizeof z);
    free(zeros);
    assert_true(zn < 16384);
    assert_int_equal(cs_body_decode("gzip", (char *)z, zn, 500000, &out, &body, &blen, &resp), 413);
    assert_non_null(strstr(resp.data, "body_too_large"));
    assert_null(out.data); /* released */
    assert_int_equal(cs_body_decode("gzip", (char *)z, zn / 2, 100 << 20, &out, &body, &blen, &resp), 400);
    assert_non_null(strstr(resp.data, "invalid_encoding"));
    assert_int_equal(cs_body_decode("gzip", "not gzip", 8, 1000, &out, &body, &blen, &resp), 400);
    assert_int_equal(cs_body_decode("br", "x", 1, 1000, &out, &body, &blen, &resp), 415);
    assert_non_null(strstr(resp.data, "unsupported_encoding"));
    assert_int_equal(cs_body_decode("gzip, br", "x", 1, 1000, &out, &body, &blen, &resp), 415);
    cs_buf_free(&out);
    cs_buf_free(&resp);
}

/* ---------------------------------------------------------------- auth */

static void test_auth(void **state)
{
    (void)state;
    char user[64];
    assert_int_equal(cs_auth_basic_user("Basic a2V5MTo=", user, sizeof user), 0); /* "key1:" */
    assert_string_equal(user, "key1");
    assert_int_equal(cs_auth_basic_user("basic a2V5MTpwdw==", user, sizeof user), 0); /* "key1:pw" */
    assert_string_equal(user, "key1");
    assert_int_equal(cs_auth_basic_user("Basic a2V5MQ", user, sizeof user), 0); /* no padding, no colon */
    assert_string_equal(user, "key1");
    assert_int_equal(cs_auth_basic_user("Bearer a2V5MTo=", user, sizeof user), -1);
    assert_int_equal(cs_auth_basic_user("Basic !!!", user, sizeof user), -1);
    assert_int_equal(cs_auth_basic_user("Basic Og==", user, sizeof user), -1); /* ":" empty user */
    assert_int_equal(cs_auth_basic_user(NULL, user, sizeof user), -1);

    cs_config cfg;
    cs_config_defaults(&cfg);
    char err[512];
    const char *yaml = "auth:\n  write_keys:\n"
                       "    - {name: web, key: k-web, rate_limit: 10}\n"
                       "    - {name: srv, key_sha256: "
                       "\"a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3\"}\n"; /* sha256("123") */
    if (cs_config_load_string(&cfg, "k.yaml", yaml, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(cfg.nwrite_keys, 2);
    cs_auth a;
    cs_auth_init(&a, &cfg);
    assert_string_equal(cs_auth_lookup(&a, "k-web", 5)->name, "web");
    assert_string_equal(cs_auth_lookup(&a, "123", 3)->name, "srv");
    assert_null(cs_auth_lookup(&a, "k-we", 4));
    assert_null(cs_auth_lookup(&a, "", 0));
    /* Bucket: 10/s, burst 10. */
    cs_auth_key *k = cs_auth_lookup(&a, "k-web", 5);
    int64_t t = k->last_us;
    assert_int_equal(cs_auth_take(&a, k, 6, t), 0);
    assert_int_equal(cs_auth_take(&a, k, 4, t), 0);
    assert_int_equal(cs_auth_take(&a, k, 1, t), 1);          /* empty: one token takes 0.1 s → 1 s */
    assert_int_equal(cs_auth_take(&a, k, 5, t + 500000), 0); /* half a second refills 5 */
    assert_int_equal(cs_auth_take(&a, k, 50, t + 5000000), 0); /* bigger than the burst: passes when full */
    assert_int_equal(cs_auth_take(&a, k, 10, t + 5000000), 5); /* ... and drives the bucket negative */
    assert_int_equal(cs_auth_take(&a, cs_auth_lookup(&a, "123", 3), 1000000, t), 0); /* no limit */
    cs_auth_destroy(&a);
    cs_config_free(&cfg);

    /* Config errors name the place. */
    const char *bad[] = {"auth:\n  write_keys:\n    - {name: x}\n",
                         "auth:\n  write_keys:\n    - {key: y}\n",
                         "auth:\n  write_keys:\n    - {name: x, key_sha256: abc}\n",
                         "auth:\n  write_keys:\n    - {name: x, key: a, rate_limit: fast}\n",
                         "auth:\n  write_keys:\n    - {name: x, key: a}\n    - {name: y, key: a}\n",
                         "auth:\n  write_keys:\n    - {name: x, key: a, scope: all}\n",
                         "ingest:\n  unknown_types: maybe\n",
                         "ingest:\n  dedupe_window: 7w\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cs_config_defaults(&cfg);
        assert_int_equal(cs_config_load_string(&cfg, "bad.yaml", bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "bad.yaml:"));
        cs_config_free(&cfg);
    }
    cs_config_defaults(&cfg);
    assert_int_equal(cfg.dedupe_window_s, 7 * 86400);
    assert_int_equal(cfg.max_future_s, 86400);
    assert_int_equal(cs_config_load_string(&cfg, "d.yaml", "ingest:\n  dedupe_window: 36h\n  max_age: 0\n", err,
                                           sizeof err),
                     0);
    assert_int_equal(cfg.dedupe_window_s, 36 * 3600);
    assert_int_equal(cfg.max_age_s, 0);
    cs_config_free(&cfg);
}

/* ---------------------------------------------------------- jsoncheck */

static void test_json_limits(void **state)
{
    (void)state;
    cs_verr err;
    cJSON *j = cJSON_Parse("{\"a\":{\"b\":[{\"c\":1,\"c\":2}]}}");
    assert_int_equal(cs_json_check(j, 1, 64, 1000, &err), -1);
    assert_string_equal(err.code, "duplicate_key");
    assert_string_equal(err.field, "a.b[0].c");
    cJSON_Delete(j);
    /* 64 levels pass, 65 do not. */
    char deep[400];
    for (int lim = 64; lim <= 65; lim++) {
        size_t n = 0;
        for (int i = 0; i < lim - 1; i++) deep[n++] = '[';
        n += (size_t)sprintf(deep + n, "{}");
        for (int i = 0; i < lim - 1; i++) deep[n++] = ']';
        deep[n] = '\0';
        j = cJSON_Parse(deep);
        assert_int_equal(cs_json_check(j, 1, 64, 1000, &err), lim == 64 ? 0 : -1);
        if (lim == 65) assert_string_equal(err.code, "too_deep");
        cJSON_Delete(j);
        assert_int_equal(cs_json_too_deep_at(deep, strlen(deep), 64), lim == 64 ? -1 : 64);
    }
    assert_int_equal(cs_json_too_deep_at("[\"[[[[\"]", 8, 2), -1); /* brackets in strings do not count */
    /* 10,000 keys: rejected by the limit; large objects still find duplicates. */
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "{\"properties\":{");
    for (int i = 0; i < 10000; i++) cs_buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
    cs_buf_adds(&b, "}}");
    j = cJSON_Parse(b.data);
    assert_int_equal(cs_json_check(j, 1, 64, 1000, &err), -1);
    assert_string_equal(err.code, "too_many_keys");
    assert_string_equal(err.field, "properties");
    assert_int_equal(cs_json_check(j, 1, 64, 100000, &err), 0);
    cJSON_AddItemToObject(cJSON_GetObjectItem(j, "properties"), "k5000", cJSON_CreateNull());
    assert_int_equal(cs_json_check(j, 1, 64, 100000, &err), -1);
    assert_string_equal(err.field, "properties.k5000");
    cJSON_Delete(j);
    cs_buf_free(&b);
}

/* ------------------------------------------------------------- segment */

static cs_config scfg;
static membus *smb;
static cs_ingest sing;

static void seg_setup(const char *yaml)
{
    char err[512];
    cs_config_defaults(&scfg);
    if (yaml && cs_config_load_string(&scfg, "s.yaml", yaml, err, sizeof err)) fail_msg("%s", err);
    scfg.dedupe_max_ids = 4096;
    smb = mb_new();
    assert_int_equal(cs_ingest_init(&sing, &smb->bus, &scfg, err, sizeof err), 0);
}

static void seg_teardown(void)
{
    cs_ingest_destroy(&sing);
    mb_free(smb);
    cs_config_free(&scfg);
}

/* POST a Segment body; returns the status, *j the parsed answer. */
static int seg(const char *call, const char *auth, const char *body, int64_t recv, cJSON **j)
{
    cs_buf resp;
    cs_buf_init(&resp);
    int ra = 0;
    cs_ingest_req r = {.body = body, .len = strlen(body), .authorization = auth, .received_us = recv};
    int st = cs_ingest_segment(&sing, call, &r, &resp, &ra);
    *j = cJSON_Parse(resp.data);
    if (!*j) fail_msg("answer is not JSON: %s", resp.data);
    cs_buf_free(&resp);
    return st;
}

static int num(const cJSON *j, const char *k)
{
    return (int)cJSON_GetObjectItem(j, k)->valuedouble;
}

#define RECV 1795773600000000LL /* 2026-11-27T10:00:00Z */

static void test_segment_mapping(void **state)
{
    (void)state;
    seg_setup(NULL);
    cJSON *j, *e;
    /* A batch as the SDKs send it: batch context merged, sentAt per batch
     * (skew correction), per item, timestamp, or none. */
    const char *body =
        "{\"batch\":["
        "{\"type\":\"track\",\"event\":\"Lead Created\",\"messageId\":\"s1\",\"anonymousId\":\"anon1\","
        " \"properties\":{\"email\":\"ada@acme.example\"},\"originalTimestamp\":\"2026-11-27T09:59:00.000Z\","
        " \"context\":{\"ip\":\"10.0.0.1\"}},"
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"s2\",\"userId\":\"u2\","
        " \"properties\":{\"feature\":\"export\"},\"originalTimestamp\":\"2026-11-27T09:00:00.000Z\","
        " \"sentAt\":\"2026-11-27T09:00:30.000Z\",\"context\":{\"groupId\":\"acc_own\"}},"
        "{\"type\":\"identify\",\"messageId\":\"s3\",\"userId\":\"u3\",\"traits\":{\"email\":\"u3@x.example\","
        " \"title\":\"CTO\"},\"timestamp\":\"2026-11-27T08:00:00Z\"},"
        "{\"type\":\"group\",\"messageId\":\"s4\",\"userId\":\"u3\",\"groupId\":\"acc_grp\","
        " \"traits\":{\"name\":\"Acme\",\"plan_tier\":\"pro\"}},"
        "{\"type\":\"page\",\"messageId\":\"s5\",\"userId\":\"u3\",\"name\":\"Pricing\","
        " \"properties\":{\"url\":\"https://acme.example/pricing\",\"account_id\":\"acc_prop\"}},"
        "{\"type\":\"track\",\"event\":\"Signed Up\",\"messageId\":\"s6\",\"userId\":7,"
        " \"properties\":{\"account_id\":\"acc_p\"}}"
        "],\"context\":{\"groupId\":\"acc_batch\",\"library\":{\"name\":\"analytics-node\"}},"
        "\"sentAt\":\"2026-11-27T10:00:10.000Z\",\"writeKey\":\"ignored-when-open\"}";
    size_t lane0 = mb_lane;
    assert_int_equal(seg("batch", NULL, body, RECV, &j), 200);
    assert_int_equal(num(j, "accepted"), 6);
    /* The one signup (TrialActivated) also went to the leads lane. */
    assert_int_equal(mb_lane - lane0, 1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rejected")), 0);
    cJSON_Delete(j);
    assert_int_equal(mb_count(smb), 6);

    e = mb_find(smb, "s1");
    assert_string_equal(jstr(e, "type"), "LeadCreated"); /* PascalCased: a seed type */
    assert_string_equal(jstr(e, "account_id"), "acc_batch");
    assert_string_equal(jstr(e, "user_id"), "anon1");
    /* received 10:00:00 − (sent 10:00:10 − original 09:59:00) = 09:58:50 */
    assert_string_equal(jstr(e, "timestamp"), "2026-11-27T09:58:50.000Z");
    assert_string_equal(jstr(e, "received_at"), "2026-11-27T10:00:00.000Z");
    assert_string_equal(jstr(e, "source"), "segment");
    cJSON *ctx = cJSON_GetObjectItem(e, "context");
    assert_string_equal(jstr(ctx, "ip"), "10.0.0.1");
    assert_string_equal(jstr(ctx, "groupId"), "acc_batch");
    assert_string_equal(jstr(cJSON_GetObjectItem(ctx, "library"), "name"), "analytics-node");
    assert_null(cJSON_GetObjectItem(e, "write_key")); /* open ingest */
    assert_non_null(jstr(e, "payload_hash"));
    cJSON_Delete(e);

    e = mb_find(smb, "s2"); /* its own sentAt and context.groupId win */
    assert_string_equal(jstr(e, "account_id"), "acc_own");
    assert_string_equal(jstr(e, "timestamp"), "2026-11-27T09:59:30.000Z");
    assert_string_equal(jstr(cJSON_GetObjectItem(e, "context"), "groupId"), "acc_own");
    cJSON_Delete(e);

    e = mb_find(smb, "s3");
    assert_string_equal(jstr(e, "type"), "ContactIdentified");
    assert_string_equal(jstr(e, "timestamp"), "2026-11-27T08:00:00.000Z"); /* timestamp as given */
    assert_string_equal(jstr(cJSON_GetObjectItem(e, "properties"), "title"), "CTO");
    assert_string_equal(jstr(e, "account_id"), "acc_batch");
    cJSON_Delete(e);

    e = mb_find(smb, "s4");
    assert_string_equal(jstr(e, "type"), "AccountGrouped");
    assert_string_equal(jstr(e, "account_id"), "acc_grp"); /* a group call names its account */
    assert_string_equal(jstr(cJSON_GetObjectItem(e, "properties"), "plan_tier"), "pro");
    assert_string_equal(jstr(e, "timestamp"), "2026-11-27T10:00:00.000Z"); /* no time given: received */
    cJSON_Delete(e);

    e = mb_find(smb, "s5");
    assert_string_equal(jstr(e, "type"), "PageViewed");
    assert_string_equal(jstr(cJSON_GetObjectItem(e, "properties"), "name"), "Pricing");
    assert_string_equal(jstr(e, "account_id"), "acc_batch"); /* context.groupId before properties.account_id */
    cJSON_Delete(e);

    e = mb_find(smb, "s6");
    assert_string_equal(jstr(e, "type"), "SignedUp");
    assert_string_equal(jstr(e, "user_id"), "7");
    cJSON_Delete(e);

    /* The same batch again, later, with a new sentAt (an SDK retry): all duplicates. */
    char *retry = cs_strdup(body);
    memcpy(strstr(retry, "\"sentAt\":\"2026-11-27T10:00:10") + 24, "59", 2);
    assert_int_equal(seg("batch", NULL, retry, RECV + 60000000, &j), 200);
    assert_int_equal(num(j, "accepted"), 0);
    assert_int_equal(num(j, "duplicates"), 6);
    cJSON_Delete(j);
    free(retry);
    assert_int_equal(mb_count(smb), 6);

    /* Single calls. */
    assert_int_equal(seg("track", NULL,
                         "{\"messageId\":\"t1\",\"event\":\"FeatureUsed\",\"properties\":{\"feature\":\"a\"},"
                         "\"context\":{\"groupId\":\"g\"},\"type\":\"identify\"}",
                         RECV, &j),
                     200);
    cJSON_Delete(j);
    e = mb_find(smb, "t1");
    assert_string_equal(jstr(e, "type"), "FeatureUsed"); /* the path decides the call */
    cJSON_Delete(e);
    assert_int_equal(seg("identify", NULL, "{\"messageId\":\"i1\",\"userId\":\"u\",\"groupId\":\"g\"}", RECV, &j), 200);
    cJSON_Delete(j);
    /* Same messageId, other payload: 409 for a single event. */
    assert_int_equal(seg("track", NULL,
                         "{\"messageId\":\"t1\",\"event\":\"FeatureUsed\",\"properties\":{\"feature\":\"b\"},"
                         "\"context\":{\"groupId\":\"g\"}}",
                         RECV, &j),
                     409);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "id_conflict");
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "messageId");
    cJSON_Delete(j);

    /* The window rebuilt from the bus knows every id. */
    cs_ingest again;
    char err[256];
    assert_int_equal(cs_ingest_init(&again, &smb->bus, &scfg, err, sizeof err), 0);
    assert_int_equal(again.dedupe_rebuilt_ids, 8);
    cs_ingest_destroy(&again);
    seg_teardown();
}

static void expect_rej(const cJSON *j, int k, int index, const char *code, const char *field)
{
    const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "rejected"), k);
    assert_non_null(r);
    assert_int_equal(num(r, "index"), index);
    assert_string_equal(jstr(r, "code"), code);
    assert_string_equal(jstr(r, "field"), field);
    assert_true(strlen(jstr(r, "message")) > 0);
}

static void test_segment_errors(void **state)
{
    (void)state;
    seg_setup("ingest:\n  unknown_types: reject\n  max_object_keys: 20\n");
    cJSON *j;
    const char *body =
        "{\"batch\":["
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"ok1\",\"properties\":{\"feature\":\"f\"}},"
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"properties\":{\"feature\":\"f\"}},"
        "{\"type\":\"track\",\"messageId\":\"e2\"},"
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"e3\"},"
        "{\"type\":\"track\",\"event\":\"Mystery Thing\",\"messageId\":\"e4\"},"
        "{\"type\":\"alias\",\"messageId\":\"e5\",\"previousId\":\"a\"},"
        "{\"type\":\"wave\",\"messageId\":\"e6\"},"
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"e7\",\"properties\":{\"feature\":\"f\"},"
        " \"timestamp\":\"2026-11-29T10:00:00Z\"},"
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"e8\",\"properties\":{\"feature\":\"f\"},"
        " \"timestamp\":\"2026-11-01T10:00:00Z\"},"
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"e9\",\"properties\":{\"feature\":\"f\"},"
        " \"sentAt\":\"yesterday\"},"
        "{\"type\":\"identify\",\"messageId\":\"e10\",\"traits\":{\"email\":\"a\",\"email\":\"b\"}},"
        "{\"type\":\"identify\",\"messageId\":\"e11\",\"context\":{\"groupId\":5.5}},"
        "7,"
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"ok1\",\"properties\":{\"feature\":\"g\"}},"
        "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"ok1\",\"properties\":{\"feature\":\"f\"}}"
        "],\"context\":{\"groupId\":\"acc\"}}";
    assert_int_equal(seg("batch", NULL, body, RECV, &j), 200);
    assert_int_equal(num(j, "accepted"), 1);
    assert_int_equal(num(j, "duplicates"), 1); /* the same id twice in one batch, same payload */
    int k = 0;
    expect_rej(j, k++, 1, "missing_field", "messageId");
    expect_rej(j, k++, 2, "missing_field", "event");
    expect_rej(j, k++, 3, "missing_field", "properties.feature");
    expect_rej(j, k++, 4, "unknown_type", "event");
    expect_rej(j, k++, 5, "unsupported_type", "type");
    expect_rej(j, k++, 6, "invalid_value", "type");
    expect_rej(j, k++, 7, "implausible_timestamp", "timestamp"); /* 2 days ahead */
    expect_rej(j, k++, 8, "implausible_timestamp", "timestamp"); /* 26 days old */
    expect_rej(j, k++, 9, "invalid_value", "sentAt");
    expect_rej(j, k++, 10, "duplicate_key", "traits.email");
    expect_rej(j, k++, 11, "wrong_type", "context.groupId");
    expect_rej(j, k++, 12, "wrong_type", "");
    expect_rej(j, k++, 13, "id_conflict", "messageId");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rejected")), k);
    cJSON_Delete(j);
    assert_int_equal(mb_count(smb), 1); /* no side effect from rejected events */

    /* Whole-request errors. */
    assert_int_equal(seg("batch", NULL, "{\"batch\":[]}", RECV, &j), 400);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "wrong_shape");
    cJSON_Delete(j);
    assert_int_equal(seg("batch", NULL, "{\"batch\":{}}", RECV, &j), 400);
    cJSON_Delete(j);
    assert_int_equal(seg("batch", NULL, "[1]", RECV, &j), 400);
    cJSON_Delete(j);
    assert_int_equal(seg("batch", NULL, "{\"batch\":[", RECV, &j), 400);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "malformed_json");
    cJSON_Delete(j);
    assert_int_equal(seg("batch", NULL, "{\"batch\":[],\"batch\":[]}", RECV, &j), 400);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "duplicate_key");
    cJSON_Delete(j);
    cs_buf deep;
    cs_buf_init(&deep);
    cs_buf_adds(&deep, "{\"batch\":[");
    for (int i = 0; i < 100000; i++) cs_buf_adds(&deep, "[");
    assert_int_equal(seg("batch", NULL, deep.data, RECV, &j), 400);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "too_deep");
    cJSON_Delete(j);
    cs_buf_free(&deep);
    assert_int_equal(seg("track", NULL, "{\"messageId\":\"x\",\"event\":\"FeatureUsed\"}", RECV, &j), 422);
    cJSON_Delete(j);
    assert_int_equal(seg("batch", NULL, "{\"batch\":[{\"type\":\"track\"}],\"context\":{\"a\":1,\"a\":2}}", RECV, &j),
                     400);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "context.a");
    cJSON_Delete(j);
    /* The log failing: 503, nothing counted as accepted, ids not remembered. */
    smb->fail = 1;
    const char *one = "{\"messageId\":\"f1\",\"event\":\"FeatureUsed\",\"properties\":{\"feature\":\"f\"},"
                      "\"context\":{\"groupId\":\"g\"}}";
    assert_int_equal(seg("track", NULL, one, RECV, &j), 503);
    cJSON_Delete(j);
    smb->fail = 0;
    assert_int_equal(seg("track", NULL, one, RECV, &j), 200);
    assert_int_equal(num(j, "accepted"), 1);
    cJSON_Delete(j);
    seg_teardown();
}

static void test_segment_auth(void **state)
{
    (void)state;
    seg_setup("auth:\n  write_keys:\n    - {name: web, key: wk1, rate_limit: 5}\n    - {name: srv, key: wk2}\n");
    cJSON *j;
    char body[256];
    const char *fmt = "{\"messageId\":\"%s\",\"event\":\"FeatureUsed\",\"properties\":{\"feature\":\"f\"},"
                      "\"context\":{\"groupId\":\"g\"}%s}";
    snprintf(body, sizeof body, fmt, "a1", "");
    assert_int_equal(seg("track", NULL, body, RECV, &j), 401);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "unauthorized");
    cJSON_Delete(j);
    assert_int_equal(seg("track", "Basic d2sxOg==", body, RECV, &j), 200); /* "wk1:" */
    cJSON_Delete(j);
    cJSON *e = mb_find(smb, "a1");
    assert_string_equal(jstr(e, "write_key"), "web");
    cJSON_Delete(e);
    assert_int_equal(seg("track", "Basic d2szOg==", body, RECV, &j), 401); /* "wk3:" unknown */
    cJSON_Delete(j);
    snprintf(body, sizeof body, fmt, "a2", ",\"writeKey\":\"wk2\"");
    assert_int_equal(seg("track", NULL, body, RECV, &j), 200);
    cJSON_Delete(j);
    e = mb_find(smb, "a2");
    assert_string_equal(jstr(e, "write_key"), "srv");
    cJSON_Delete(e);
    snprintf(body, sizeof body, fmt, "a3", ",\"writeKey\":\"nope\"");
    assert_int_equal(seg("track", NULL, body, RECV, &j), 401);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "writeKey");
    cJSON_Delete(j);
    /* The header's key decides when both are given (an unknown header key is final). */
    assert_int_equal(seg("track", "Basic d2szOg==", body, RECV, &j), 401);
    cJSON_Delete(j);
    /* Rate: 5/s burst; the bucket had 1 taken above. */
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; i++) {
        snprintf(body, sizeof body, fmt, "r", "");
        int st = seg("track", "Basic d2sxOg==", body, RECV, &j);
        cJSON_Delete(j);
        if (st == 200) ok++;
        else if (st == 429) limited++;
    }
    assert_true(ok >= 4 && ok <= 5); /* refill during the loop is at most a fraction of a token */
    assert_int_equal(ok + limited, 8);
    assert_true(sing.rate_limited >= 3);
    assert_true(sing.unauthorized >= 3);
    seg_teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedupe_claims),
        cmocka_unit_test(test_dedupe_bounded_and_consistent),
        cmocka_unit_test(test_body_decode),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_json_limits),
        cmocka_unit_test(test_segment_mapping),
        cmocka_unit_test(test_segment_errors),
        cmocka_unit_test(test_segment_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
