/*
 * Unit: CloudEvents ingest (src/ingest/cloudevents.c) without a server —
 * structured, batch and binary modes through cs_ingest_cloudevents over an
 * in-memory bus: the mapping to the canonical event, validation errors that
 * name the attribute, dedupe on source+id, write keys, and the
 * request-level answers (415, 400, 413).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/util.h"
#include "ingest/ingest.h"

/* ------------------------------------------------------ in-memory bus */

typedef struct membus {
    cs_bus  bus;
    cs_buf  vals[512];
    int64_t n;
} membus;


static int mb_produce(cs_bus *bus, const char *topic, cs_msg *msgs, size_t n)
{
    membus *m = bus->impl;
    if (strcmp(topic, CS_TOPIC_LEADS) == 0) return 0; /* the leads lane: not what these tests count */
    for (size_t i = 0; i < n; i++) {
        assert_true(m->n < 512);
        cs_buf_init(&m->vals[m->n]);
        cs_buf_add(&m->vals[m->n], msgs[i].value, msgs[i].value_len);
        msgs[i].partition = 0;
        msgs[i].offset = m->n++;
    }
    return 0;
}

static int mb_fetch(cs_bus *bus, const char *topic, int p, int64_t from, size_t max, cs_rec_cb cb, void *arg)
{
    (void)bus, (void)topic, (void)p, (void)from, (void)max, (void)cb, (void)arg;
    return 0;
}

static int64_t mb_end(cs_bus *bus, const char *topic, int p)
{
    (void)bus, (void)topic, (void)p;
    return 0;
}

static const struct cs_bus_ops mb_ops = {.name = "mem", .produce = mb_produce, .fetch = mb_fetch,
                                         .end_offset = mb_end};

static cs_config cfg;
static membus *mb;
static cs_ingest ing;

static void setup(const char *yaml)
{
    char err[512];
    cs_config_defaults(&cfg);
    if (yaml && cs_config_load_string(&cfg, "c.yaml", yaml, err, sizeof err)) fail_msg("%s", err);
    cfg.dedupe_max_ids = 4096;
    mb = cs_calloc(1, sizeof *mb);
    mb->bus = (cs_bus){.ops = &mb_ops, .partitions = 1, .impl = mb};
    assert_int_equal(cs_ingest_init(&ing, &mb->bus, &cfg, err, sizeof err), 0);
}

static void teardown(void)
{
    cs_ingest_destroy(&ing);
    for (int64_t i = 0; i < mb->n; i++) cs_buf_free(&mb->vals[i]);
    free(mb);
    cs_config_free(&cfg);
}

/* The stored canonical event with this event_id (parsed), or NULL. */
static cJSON *stored(const char *event_id)
{
    for (int64_t i = 0; i < mb->n; i++) {
        cJSON *j = cJSON_Parse(mb->vals[i].data);
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

static int num(const cJSON *j, const char *k)
{
    return (int)cJSON_GetObjectItem(j, k)->valuedouble;
}

/* Headers: a NULL-terminated list of name, value pairs. */
static const char *hdr(void *arg, const char *name)
{
    const char *const *h = arg;
    for (; h && h[0]; h += 2)
        if (strcasecmp(h[0], name) == 0) return h[1];
    return NULL;
}

/* The same list walked in order, as the HTTP layer walks a request's headers. */
static void each_hdr(void *arg, void (*cb)(void *cbarg, const char *name, const char *value), void *cbarg)
{
    for (const char *const *h = arg; h && h[0]; h += 2) cb(cbarg, h[0], h[1]);
}

#define RECV 1795773600000000LL /* 2026-11-27T10:00:00Z */

/* POST /v1/cloudevents; returns the status, *j the parsed answer. */
static int post(const char *const *headers, const char *auth, const char *body, cJSON **j)
{
    cs_buf resp;
    cs_buf_init(&resp);
    int ra = 0;
    cs_ingest_req r = {.body = body, .len = strlen(body), .authorization = auth, .received_us = RECV};
    int st = cs_ingest_cloudevents(&ing, &r, hdr, each_hdr, (void *)headers, &resp, &ra);
    *j = cJSON_Parse(resp.data);
    if (!*j) fail_msg("answer is not JSON: %s", resp.data);
    cs_buf_free(&resp);
    return st;
}

static const char *const STRUCT[] = {"Content-Type", "application/cloudevents+json; charset=utf-8", NULL};
static const char *const BATCH[] = {"Content-Type", "application/cloudevents-batch+json", NULL};

/* The first rejection of an answer: code and field. */
static void rejected(const cJSON *j, int idx, const char *code, const char *field)
{
    const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "rejected"), idx);
    assert_non_null(r);
    assert_string_equal(jstr(r, "code"), code);
    assert_string_equal(jstr(r, "field"), field);
}

static void test_structured_mapping(void **state)
{
    (void)state;
    setup(NULL);
    cJSON *j;
    const char *ev = "{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"https://app.example/billing\","
                     "\"type\":\"com.example.FeatureUsed\",\"time\":\"2026-11-27T09:59:00.5Z\","
                     "\"subject\":\"reports\",\"accountid\":\"acc_42\",\"userid\":\"u_7\",\"plantier\":\"trial\","
                     "\"region\":\"eu\",\"datacontenttype\":\"application/json\","
                     "\"data\":{\"feature\":\"export_csv\",\"count\":2}}";
    assert_int_equal(post(STRUCT, NULL, ev, &j), 200);
    assert_int_equal(num(j, "accepted"), 1);
    assert_int_equal(num(j, "duplicates"), 0);
    cJSON_Delete(j);
    cJSON *e = stored("https://app.example/billing/e1");
    assert_non_null(e);
    assert_string_equal(jstr(e, "type"), "FeatureUsed");
    assert_string_equal(jstr(e, "account_id"), "acc_42");
    assert_string_equal(jstr(e, "user_id"), "u_7");
    assert_string_equal(jstr(e, "plan_tier"), "trial");
    assert_string_equal(jstr(e, "timestamp"), "2026-11-27T09:59:00.500Z");
    assert_string_equal(jstr(e, "source"), "cloudevents");
    assert_string_equal(jstr(cJSON_GetObjectItem(e, "properties"), "feature"), "export_csv");
    const cJSON *env = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "context"), "cloudevents");
    assert_string_equal(jstr(env, "type"), "com.example.FeatureUsed");
    assert_string_equal(jstr(env, "id"), "e1");
    assert_string_equal(jstr(env, "subject"), "reports");
    assert_string_equal(jstr(env, "region"), "eu"); /* unmapped extensions are kept */
    assert_null(cJSON_GetObjectItem(env, "accountid"));
    cJSON_Delete(e);

    /* Same id, another source: another event. A type without a dot stays;
     * account and user from data; no time: the receive time. */
    ev = "{\"specversion\":\"1.0\",\"id\":\"e1\",\"source\":\"/crm\",\"type\":\"LeadCreated\","
         "\"data\":{\"email\":\"ada@acme.example\",\"account_id\":\"acc_d\",\"user_id\":9}}";
    assert_int_equal(post(NULL, NULL, ev, &j), 200); /* no Content-Type: read by shape */
    assert_int_equal(num(j, "accepted"), 1);
    cJSON_Delete(j);
    e = stored("/crm/e1");
    assert_string_equal(jstr(e, "type"), "LeadCreated");
    assert_string_equal(jstr(e, "account_id"), "acc_d");
    assert_string_equal(jstr(e, "user_id"), "9");
    assert_string_equal(jstr(e, "timestamp"), "2026-11-27T10:00:00.000Z");
    cJSON_Delete(e);
    teardown();
}

static void test_batch_mode(void **state)
{
    (void)state;
    setup(NULL);
    cJSON *j;
    const char *body =
        "[{\"specversion\":\"1.0\",\"id\":\"b1\",\"source\":\"s\",\"type\":\"a.b.FeatureUsed\",\"accountid\":\"a1\","
        "  \"data\":{\"feature\":\"f\"}},"
        " {\"specversion\":\"0.3\",\"id\":\"b2\",\"source\":\"s\",\"type\":\"FeatureUsed\"},"
        " {\"specversion\":\"1.0\",\"id\":\"b3\",\"source\":\"s\",\"type\":\"TrialActivated\",\"accountid\":7},"
        " {\"specversion\":\"1.0\",\"id\":\"b1\",\"source\":\"s\",\"type\":\"a.b.FeatureUsed\",\"accountid\":\"a1\","
        "  \"data\":{\"feature\":\"f\"}}]";
    assert_int_equal(post(BATCH, NULL, body, &j), 200);
    assert_int_equal(num(j, "accepted"), 2);
    assert_int_equal(num(j, "duplicates"), 1); /* b1 twice in one batch */
    rejected(j, 0, "invalid_value", "specversion");
    assert_non_null(strstr(jstr(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "rejected"), 0), "message"),
                           "specversion must be \"1.0\" (got \"0.3\")"));
    assert_int_equal(num(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "rejected"), 0), "index"), 1);
    cJSON_Delete(j);
    cJSON *e = stored("s/b3");
    assert_string_equal(jstr(e, "account_id"), "7");
    cJSON_Delete(e);
    /* Wrong shapes: an array as one structured event, an object as a batch,
     * an empty batch, another event format. */
    assert_int_equal(post(STRUCT, NULL, "[]", &j), 400);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "wrong_shape");
    cJSON_Delete(j);
    assert_int_equal(post(BATCH, NULL, "{}", &j), 400);
    cJSON_Delete(j);
    assert_int_equal(post(BATCH, NULL, "[]", &j), 400);
    cJSON_Delete(j);
    const char *const avro[] = {"Content-Type", "application/cloudevents+avro", NULL};
    assert_int_equal(post(avro, NULL, "{}", &j), 415);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "Content-Type");
    cJSON_Delete(j);
    assert_int_equal(post(STRUCT, NULL, "{\"specversion\":", &j), 400);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "malformed_json");
    cJSON_Delete(j);
    assert_int_equal(post(STRUCT, NULL, "  ", &j), 400);
    cJSON_Delete(j);
    teardown();
}

static void test_validation(void **state)
{
    (void)state;
    setup(NULL);
    static const struct {
        const char *body, *code, *field;
    } cases[] = {
        {"{\"id\":\"1\",\"source\":\"s\",\"type\":\"FeatureUsed\"}", "missing_field", "specversion"},
        {"{\"specversion\":1.0,\"id\":\"1\",\"source\":\"s\",\"type\":\"T\"}", "wrong_type", "specversion"},
        {"{\"specversion\":\"1.0\",\"source\":\"s\",\"type\":\"T\"}", "missing_field", "id"},
        {"{\"specversion\":\"1.0\",\"id\":\"\",\"source\":\"s\",\"type\":\"T\"}", "invalid_value", "id"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"T\"}", "missing_field", "source"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\"}", "missing_field", "type"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":7}", "wrong_type", "type"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"com.example.\"}", "invalid_value", "type"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"com.x.Bad Type\",\"accountid\":\"a\"}",
         "invalid_value", "type"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"account_id\":\"a\"}",
         "invalid_value", "account_id"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"AccountId\":\"a\"}",
         "invalid_value", "AccountId"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"accountid\":{\"x\":1}}",
         "wrong_type", "accountid"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"accountid\":\"a\",\"time\":\"yesterday\"}",
         "invalid_value", "time"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"accountid\":\"a\",\"time\":\"2020-01-01T00:00:00Z\"}",
         "implausible_timestamp", "time"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"accountid\":\"a\",\"data\":[1]}",
         "wrong_type", "data"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"accountid\":\"a\",\"data_base64\":\"AA==\"}",
         "wrong_type", "data_base64"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"accountid\":\"a\","
         "\"datacontenttype\":\"text/plain\",\"data\":{}}",
         "invalid_value", "datacontenttype"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"x.FeatureUsed\",\"data\":{\"feature\":\"f\"}}",
         "missing_field", "accountid"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"x.FeatureUsed\",\"accountid\":\"a\"}",
         "missing_field", "data.feature"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"x.LeadCreated\",\"data\":{\"email\":\"nope\"}}",
         "invalid_value", "data.email"},
        {"{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"T\",\"accountid\":\"a\","
         "\"data\":{\"k\":1,\"k\":2}}",
         "duplicate_key", "data.k"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *j;
        int st = post(STRUCT, NULL, cases[i].body, &j);
        if (st != 422) fail_msg("case %zu: status %d", i, st);
        const cJSON *err = cJSON_GetObjectItem(j, "error");
        if (strcmp(jstr(err, "code"), cases[i].code) != 0 || strcmp(jstr(err, "field"), cases[i].field) != 0)
            fail_msg("case %zu: got %s %s (%s), want %s %s", i, jstr(err, "code"), jstr(err, "field"),
                     jstr(err, "message"), cases[i].code, cases[i].field);
        rejected(j, 0, cases[i].code, cases[i].field);
        cJSON_Delete(j);
    }
    /* source + "/" + id over 128 bytes */
    char body[512], id[200];
    memset(id, 'x', 150);
    id[150] = '\0';
    snprintf(body, sizeof body, "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"s\",\"type\":\"T\",\"accountid\":\"a\"}",
             id);
    cJSON *j;
    assert_int_equal(post(STRUCT, NULL, body, &j), 422);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "id");
    cJSON_Delete(j);
    assert_int_equal(mb->n, 0);
    teardown();
}

static void test_binary_mode(void **state)
{
    (void)state;
    setup(NULL);
    cJSON *j;
    const char *const h1[] = {"ce-specversion", "1.0",
                              "ce-id", "bin-1",
                              "ce-source", "/svc/web",
                              "ce-type", "com.example.LeadCreated",
                              "ce-time", "2026-11-27T09:00:00Z",
                              "ce-subject", "caf%C3%A9 sign-up",
                              "ce-accountid", "acc_b",
                              "ce-userid", "u_b",
                              "Content-Type", "application/json; charset=utf-8",
                              NULL};
    assert_int_equal(post(h1, NULL, "{\"email\":\"grace@navy.example\",\"company\":\"Navy\"}", &j), 200);
    assert_int_equal(num(j, "accepted"), 1);
    cJSON_Delete(j);
    cJSON *e = stored("/svc/web/bin-1");
    assert_non_null(e);
    assert_string_equal(jstr(e, "type"), "LeadCreated");
    assert_string_equal(jstr(e, "account_id"), "acc_b");
    assert_string_equal(jstr(e, "user_id"), "u_b");
    assert_string_equal(jstr(e, "timestamp"), "2026-11-27T09:00:00.000Z");
    assert_string_equal(jstr(cJSON_GetObjectItem(e, "properties"), "email"), "grace@navy.example");
    const cJSON *env = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "context"), "cloudevents");
    assert_string_equal(jstr(env, "subject"), "caf\xc3\xa9 sign-up"); /* percent-decoded */
    cJSON_Delete(e);
    /* The same event again: a duplicate; with other data: a 409 naming ce-id. */
    assert_int_equal(post(h1, NULL, "{\"email\":\"grace@navy.example\",\"company\":\"Navy\"}", &j), 200);
    assert_int_equal(num(j, "duplicates"), 1);
    cJSON_Delete(j);
    assert_int_equal(post(h1, NULL, "{\"email\":\"grace@navy.example\",\"company\":\"Army\"}", &j), 409);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "id_conflict");
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "ce-id");
    cJSON_Delete(j);
    /* No data at all (empty body) is fine for a type that needs none. */
    const char *const h2[] = {"ce-specversion", "1.0", "ce-id", "bin-2", "ce-source", "/svc", "ce-type",
                              "TrialActivated", "ce-accountid", "acc_b", NULL};
    assert_int_equal(post(h2, NULL, "", &j), 200);
    assert_int_equal(num(j, "accepted"), 1);
    cJSON_Delete(j);
    /* Errors name the header. */
    const char *const h3[] = {"ce-id", "bin-3", "ce-source", "/svc", "ce-type", "TrialActivated", NULL};
    assert_int_equal(post(h3, NULL, "", &j), 422);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "ce-specversion");
    cJSON_Delete(j);
    const char *const h4[] = {"ce-specversion", "1.0", "ce-id", "bin-4", "ce-source", "/svc", "ce-type",
                              "x.FeatureUsed", "ce-time", "soon", "ce-accountid", "a", NULL};
    assert_int_equal(post(h4, NULL, "{\"feature\":\"f\"}", &j), 422);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "ce-time");
    cJSON_Delete(j);
    const char *const h5[] = {"ce-specversion", "1.0", "ce-id", "bin-5", "ce-source", "/svc", "ce-type",
                              "x.FeatureUsed", NULL};
    assert_int_equal(post(h5, NULL, "{\"feature\":\"f\"}", &j), 422);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "ce-accountid");
    cJSON_Delete(j);
    assert_int_equal(post(h5, NULL, "[1,2]", &j), 422);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "data");
    cJSON_Delete(j);
    const char *const h6[] = {"ce-specversion", "1.0", "ce-id", "bin-6", "ce-source", "/svc", "ce-type", "T",
                              "ce-accountid", "a%FF", NULL};
    assert_int_equal(post(h6, NULL, "", &j), 422);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "ce-accountid");
    cJSON_Delete(j);
    /* Data that is not JSON: 415. */
    const char *const h7[] = {"ce-specversion", "1.0", "ce-id", "bin-7", "ce-source", "/svc", "ce-type", "T",
                              "ce-accountid", "a", "Content-Type", "text/plain", NULL};
    assert_int_equal(post(h7, NULL, "hello", &j), 415);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "unsupported_media_type");
    cJSON_Delete(j);
    assert_int_equal(mb->n, 2);
    teardown();
}

/* Binary mode takes every ce-* header as an attribute, whatever its name
 * and case, not only a known list: extensions land in context.cloudevents. */
static void test_binary_any_extension(void **state)
{
    (void)state;
    setup(NULL);
    cJSON *j;
    const char *const h1[] = {"CE-SpecVersion", "1.0", "ce-id", "ext-1", "ce-source", "/svc", "ce-type",
                              "TrialActivated", "ce-accountid", "acc_x", "Ce-TenantRegion", "eu%2Dwest",
                              "ce-sequence", "42", "ce-traceparent", "00-abc-def-01", "X-Other", "ignored",
                              "ce-sequence", "43" /* a repeated header: the first wins */, NULL};
    assert_int_equal(post(h1, NULL, "", &j), 200);
    assert_int_equal(num(j, "accepted"), 1);
    cJSON_Delete(j);
    cJSON *e = stored("/svc/ext-1");
    assert_non_null(e);
    const cJSON *env = cJSON_GetObjectItem(cJSON_GetObjectItem(e, "context"), "cloudevents");
    assert_string_equal(jstr(env, "tenantregion"), "eu-west"); /* lowercased name, percent-decoded value */
    assert_string_equal(jstr(env, "sequence"), "42");
    assert_string_equal(jstr(env, "traceparent"), "00-abc-def-01");
    assert_null(cJSON_GetObjectItem(env, "x-other"));
    assert_null(cJSON_GetObjectItem(env, "other"));
    cJSON_Delete(e);
    /* An extension name CloudEvents does not allow is an error naming it. */
    const char *const h2[] = {"ce-specversion", "1.0", "ce-id", "ext-2", "ce-source", "/svc", "ce-type",
                              "TrialActivated", "ce-accountid", "acc_x", "ce-tenant_region", "eu", NULL};
    assert_int_equal(post(h2, NULL, "", &j), 422);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "invalid_value");
    assert_non_null(strstr(jstr(cJSON_GetObjectItem(j, "error"), "field"), "tenant_region"));
    cJSON_Delete(j);
    /* A bad value in an unlisted extension is named too. */
    const char *const h3[] = {"ce-specversion", "1.0", "ce-id", "ext-3", "ce-source", "/svc", "ce-type",
                              "TrialActivated", "ce-accountid", "acc_x", "ce-region", "%C3", NULL};
    assert_int_equal(post(h3, NULL, "", &j), 422);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "field"), "ce-region");
    cJSON_Delete(j);
    assert_int_equal(mb->n, 1);
    teardown();
}

static void test_auth(void **state)
{
    (void)state;
    setup("auth:\n  write_keys:\n    - {name: ce, key: k1}\n");
    cJSON *j;
    const char *ev = "{\"specversion\":\"1.0\",\"id\":\"a1\",\"source\":\"s\",\"type\":\"T\",\"accountid\":\"a\"}";
    assert_int_equal(post(STRUCT, NULL, ev, &j), 401);
    assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "code"), "unauthorized");
    cJSON_Delete(j);
    assert_int_equal(post(STRUCT, "Basic bm9wZTo=", ev, &j), 401); /* "nope:" */
    cJSON_Delete(j);
    assert_int_equal(post(STRUCT, "Basic azE6", ev, &j), 200); /* "k1:" */
    cJSON_Delete(j);
    cJSON *e = stored("s/a1");
    assert_string_equal(jstr(e, "write_key"), "ce");
    cJSON_Delete(e);
    teardown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structured_mapping),
        cmocka_unit_test(test_batch_mode),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_binary_mode),
        cmocka_unit_test(test_binary_any_extension),
        cmocka_unit_test(test_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
