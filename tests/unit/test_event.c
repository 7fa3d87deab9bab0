/*
 * Unit tests for ingest/event: validation of the six seed event types, each
 * validation error, the partition key, and canonical serialization.
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

#include "core/util.h"
#include "ingest/event.h"

#define RECEIVED_US 1795773600000000LL /* 2026-11-27T10:00:00Z */

/* Validate JSON text; the parsed tree is returned so borrowed pointers in
 * ev stay valid until the caller deletes it. */
static cJSON *validate(const char *json, cs_event *ev, cs_verr *err, int *rc)
{
    cJSON *obj = cJSON_Parse(json);
    if (!obj) fail_msg("test JSON does not parse: %s", json);
    memset(err, 0, sizeof *err);
    *rc = cs_event_validate(obj, RECEIVED_US, ev, err);
    return obj;
}

static cJSON *expect_valid(const char *json, cs_event *ev)
{
    cs_verr err;
    int rc;
    cJSON *obj = validate(json, ev, &err, &rc);
    if (rc != 0) fail_msg("rejected (%s, %s: %s): %s", err.code, err.field, err.message, json);
    return obj;
}

static void expect_error(const char *json, const char *code, const char *field)
{
    cs_event ev;
    cs_verr err;
    int rc;
    cJSON *obj = validate(json, &ev, &err, &rc);
    if (rc != -1) fail_msg("accepted, expected %s on %s: %s", code, field, json);
    if (!err.code || strcmp(err.code, code) != 0 || strcmp(err.field, field) != 0)
        fail_msg("got %s on \"%s\" (%s), expected %s on \"%s\": %s", err.code ? err.code : "(null)", err.field,
                 err.message, code, field, json);
    assert_true(err.message[0] != '\0');
    cJSON_Delete(obj);
}

/* ------------------------------------------------------------ valid types */

static void test_valid_seed_types(void **state)
{
    (void)state;
    cs_event ev;
    char kb[160];

    cJSON *o = expect_valid("{\"event_id\":\"e1\",\"type\":\"LeadCreated\",\"account_id\":\"acc_1\","
                            "\"timestamp\":\"2026-11-27T09:00:00.250Z\",\"properties\":{\"email\":\"Jo@Acme.IO\","
                            "\"company\":\"Acme\",\"country\":\"DE\",\"source\":\"web\",\"employee_count\":40}}",
                            &ev);
    assert_string_equal(ev.event_id, "e1");
    assert_string_equal(ev.type, "LeadCreated");
    assert_string_equal(ev.account_id, "acc_1");
    assert_int_equal(ev.has_ts, 1);
    assert_int_equal(ev.ts_us, RECEIVED_US - 3600000000LL + 250000);
    assert_string_equal(ev.lead_domain, "acme.io");
    assert_string_equal(cs_event_key(&ev, kb, sizeof kb), "acc_1"); /* the account wins */
    assert_true(cs_event_is_lead(ev.type));
    cJSON_Delete(o);

    o = expect_valid("{\"event_id\":\"e2\",\"type\":\"DemoRequested\",\"account_id\":\"acc_2\","
                     "\"properties\":{\"email\":\"a@b.example\"}}",
                     &ev);
    assert_string_equal(ev.type, "DemoRequested");
    assert_true(cs_event_is_lead(ev.type));
    assert_int_equal(ev.has_ts, 0);
    assert_int_equal(ev.ts_us, RECEIVED_US); /* no timestamp: received time */
    cJSON_Delete(o);

    o = expect_valid("{\"event_id\":\"e3\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_3\",\"user_id\":\"u1\","
                     "\"product_area\":\"reports\",\"plan_tier\":\"pro\","
                     "\"properties\":{\"feature\":\"export_csv\",\"count\":3},\"context\":{\"ip\":\"10.0.0.1\"}}",
                     &ev);
    assert_string_equal(ev.type, "FeatureUsed");
    assert_false(cs_event_is_lead(ev.type));
    assert_string_equal(ev.user_id, "u1");
    assert_string_equal(ev.product_area, "reports");
    assert_string_equal(ev.plan_tier, "pro");
    assert_non_null(ev.properties);
    assert_non_null(ev.context);
    assert_string_equal(cs_event_key(&ev, kb, sizeof kb), "acc_3");
    cJSON_Delete(o);

    o = expect_valid("{\"event_id\":\"e4\",\"type\":\"TrialActivated\",\"account_id\":\"acc_4\","
                     "\"properties\":{\"trial_days\":14}}",
                     &ev);
    assert_string_equal(ev.type, "TrialActivated");
    cJSON_Delete(o);
    o = expect_valid("{\"event_id\":\"e4b\",\"type\":\"TrialActivated\",\"account_id\":\"acc_4\"}", &ev);
    assert_null(ev.properties);
    cJSON_Delete(o);

    o = expect_valid("{\"event_id\":\"e5\",\"type\":\"SubscriptionUpgraded\",\"account_id\":\"acc_5\","
                     "\"properties\":{\"plan_tier\":\"enterprise\",\"mrr\":1200.5}}",
                     &ev);
    assert_string_equal(ev.type, "SubscriptionUpgraded");
    cJSON_Delete(o);

    o = expect_valid("{\"event_id\":\"e6\",\"type\":\"SupportCaseEscalated\",\"account_id\":\"acc_6\","
                     "\"properties\":{\"case_id\":\"case-9\",\"severity\":\"high\"}}",
                     &ev);
    assert_string_equal(ev.type, "SupportCaseEscalated");
    cJSON_Delete(o);

    /* A custom type needs only the common fields; nulls count as absent. */
    o = expect_valid("{\"event_id\":\"e7\",\"type\":\"custom.Thing_v2:x-y\",\"account_id\":\"acc_7\","
                     "\"user_id\":null,\"properties\":null,\"context\":null,\"integrations\":{}}",
                     &ev);
    assert_null(ev.user_id);
    assert_null(ev.properties);
    assert_null(ev.context);
    cJSON_Delete(o);
}

/* ----------------------------------------------------------------- errors */

static void test_missing_fields(void **state)
{
    (void)state;
    expect_error("{\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"feature\":\"f\"}}",
                 "missing_field", "event_id");
    expect_error("{\"event_id\":null,\"type\":\"TrialActivated\",\"account_id\":\"a\"}", "missing_field", "event_id");
    expect_error("{\"event_id\":\"e\",\"account_id\":\"a\"}", "missing_field", "type");
    expect_error("{\"event_id\":\"e\",\"type\":\"FeatureUsed\",\"properties\":{\"feature\":\"f\"}}", "missing_field",
                 "account_id");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":null}", "missing_field",
                 "account_id");
    expect_error("{\"event_id\":\"e\",\"type\":\"SubscriptionUpgraded\",\"account_id\":\"a\",\"properties\":{}}",
                 "missing_field", "properties.plan_tier");
    expect_error("{\"event_id\":\"e\",\"type\":\"SupportCaseEscalated\",\"account_id\":\"a\"}", "missing_field",
                 "properties.case_id");
    expect_error("{\"event_id\":\"e\",\"type\":\"LeadCreated\"}", "missing_field", "properties.email");
    expect_error("{\"event_id\":\"e\",\"type\":\"DemoRequested\",\"properties\":{\"company\":\"x\"}}",
                 "missing_field", "properties.email");
    /* Empty required strings are invalid values, not missing. */
    expect_error("{\"event_id\":\"\",\"type\":\"TrialActivated\",\"account_id\":\"a\"}", "invalid_value", "event_id");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"\"}", "invalid_value",
                 "account_id");
}

static void test_feature_used_needs_feature(void **state)
{
    (void)state;
    expect_error("{\"event_id\":\"e\",\"type\":\"FeatureUsed\",\"account_id\":\"a\"}", "missing_field",
                 "properties.feature");
    expect_error("{\"event_id\":\"e\",\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"count\":2}}",
                 "missing_field", "properties.feature");
    expect_error("{\"event_id\":\"e\",\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"feature\":7}}",
                 "wrong_type", "properties.feature");
    expect_error("{\"event_id\":\"e\",\"type\":\"FeatureUsed\",\"account_id\":\"a\","
                 "\"properties\":{\"feature\":\"\"}}",
                 "invalid_value", "properties.feature");
}

static void test_wrong_types(void **state)
{
    (void)state;
    expect_error("[1,2]", "wrong_type", "");
    expect_error("\"event\"", "wrong_type", "");
    expect_error("{\"event_id\":42,\"type\":\"TrialActivated\",\"account_id\":\"a\"}", "wrong_type", "event_id");
    expect_error("{\"event_id\":\"e\",\"type\":[\"FeatureUsed\"],\"account_id\":\"a\"}", "wrong_type", "type");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":true}", "wrong_type", "account_id");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\",\"user_id\":{}}", "wrong_type",
                 "user_id");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\",\"timestamp\":1795773600}",
                 "wrong_type", "timestamp");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\",\"properties\":[]}",
                 "wrong_type", "properties");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\",\"context\":\"web\"}",
                 "wrong_type", "context");
    expect_error("{\"event_id\":\"e\",\"type\":\"FeatureUsed\",\"account_id\":\"a\","
                 "\"properties\":{\"feature\":\"f\",\"count\":\"3\"}}",
                 "wrong_type", "properties.count");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\","
                 "\"properties\":{\"trial_days\":\"14\"}}",
                 "wrong_type", "properties.trial_days");
    expect_error("{\"event_id\":\"e\",\"type\":\"SubscriptionUpgraded\",\"account_id\":\"a\","
                 "\"properties\":{\"plan_tier\":\"pro\",\"mrr\":false}}",
                 "wrong_type", "properties.mrr");
    expect_error("{\"event_id\":\"e\",\"type\":\"LeadCreated\",\"properties\":{\"email\":\"a@b.co\","
                 "\"employee_count\":\"many\"}}",
                 "wrong_type", "properties.employee_count");
    /* Negative numbers are invalid values. */
    expect_error("{\"event_id\":\"e\",\"type\":\"SubscriptionUpgraded\",\"account_id\":\"a\","
                 "\"properties\":{\"plan_tier\":\"pro\",\"mrr\":-1}}",
                 "invalid_value", "properties.mrr");
}

static void test_bad_values(void **state)
{
    (void)state;
    static const char *const bad_ts[] = {"yesterday", "2026-02-29T00:00:00Z", "2026-11-27T10:00:00",
                                         "2026-11-27T10:00:00Z junk", "2026-13-01T00:00:00Z", ""};
    char json[256];
    for (size_t i = 0; i < sizeof bad_ts / sizeof bad_ts[0]; i++) {
        snprintf(json, sizeof json,
                 "{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\",\"timestamp\":\"%s\"}",
                 bad_ts[i]);
        expect_error(json, "invalid_value", "timestamp");
    }
    /* Type names: start with a letter; letters, digits and _.:- only. */
    expect_error("{\"event_id\":\"e\",\"type\":\"1Lead\",\"account_id\":\"a\"}", "invalid_value", "type");
    expect_error("{\"event_id\":\"e\",\"type\":\"Lead Created\",\"account_id\":\"a\"}", "invalid_value", "type");
    expect_error("{\"event_id\":\"e\",\"type\":\"_x\",\"account_id\":\"a\"}", "invalid_value", "type");
    /* Length limits. */
    char id[CS_ID_MAX + 2];
    memset(id, 'x', sizeof id);
    id[CS_ID_MAX] = '\0';
    snprintf(json, sizeof json, "{\"event_id\":\"%s\",\"type\":\"TrialActivated\",\"account_id\":\"a\"}", id);
    cs_event ev;
    cJSON *o = expect_valid(json, &ev); /* exactly the limit */
    cJSON_Delete(o);
    id[CS_ID_MAX] = 'x';
    id[CS_ID_MAX + 1] = '\0';
    snprintf(json, sizeof json, "{\"event_id\":\"%s\",\"type\":\"TrialActivated\",\"account_id\":\"a\"}", id);
    expect_error(json, "invalid_value", "event_id");
    char type[CS_TYPE_MAX + 2];
    memset(type, 'T', sizeof type);
    type[CS_TYPE_MAX + 1] = '\0';
    snprintf(json, sizeof json, "{\"event_id\":\"e\",\"type\":\"%s\",\"account_id\":\"a\"}", type);
    expect_error(json, "invalid_value", "type");
}

static void test_unknown_field(void **state)
{
    (void)state;
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\",\"foo\":1}", "unknown_field",
                 "foo");
    /* Reported even before missing fields, and case-sensitively. */
    expect_error("{\"Event_id\":\"e\"}", "unknown_field", "Event_id");
    expect_error("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\",\"traits\":{}}",
                 "unknown_field", "traits");
    /* Unknown keys inside properties are custom data, not errors. */
    cs_event ev;
    cJSON *o = expect_valid("{\"event_id\":\"e\",\"type\":\"TrialActivated\",\"account_id\":\"a\","
                            "\"properties\":{\"foo\":1,\"bar\":[1]}}",
                            &ev);
    cJSON_Delete(o);
}

static void test_lead_without_account(void **state)
{
    (void)state;
    cs_event ev;
    char kb[160];
    cJSON *o = expect_valid("{\"event_id\":\"l1\",\"type\":\"LeadCreated\","
                            "\"properties\":{\"email\":\"Jane.Doe@Sub.Example.COM\"}}",
                            &ev);
    assert_null(ev.account_id);
    assert_string_equal(ev.lead_domain, "sub.example.com");
    assert_string_equal(cs_event_key(&ev, kb, sizeof kb), "domain:sub.example.com");
    cJSON_Delete(o);

    o = expect_valid("{\"event_id\":\"l2\",\"type\":\"DemoRequested\",\"account_id\":null,"
                     "\"properties\":{\"email\":\"x@ACME.io\"}}",
                     &ev);
    assert_null(ev.account_id);
    assert_string_equal(cs_event_key(&ev, kb, sizeof kb), "domain:acme.io");
    cJSON_Delete(o);

    /* The last '@' separates the domain. */
    o = expect_valid("{\"event_id\":\"l3\",\"type\":\"LeadCreated\","
                     "\"properties\":{\"email\":\"\\\"a@b\\\"@Mail.Example.org\"}}",
                     &ev);
    assert_string_equal(cs_event_key(&ev, kb, sizeof kb), "domain:mail.example.org");
    cJSON_Delete(o);
}

static void test_lead_bad_email(void **state)
{
    (void)state;
    static const char *const bad[] = {"no-at-sign", "@example.com", "user@", "user@localhost", "user@@"};
    char json[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(json, sizeof json, "{\"event_id\":\"e\",\"type\":\"LeadCreated\",\"properties\":{\"email\":\"%s\"}}",
                 bad[i]);
        expect_error(json, "invalid_value", "properties.email");
    }
    expect_error("{\"event_id\":\"e\",\"type\":\"LeadCreated\",\"properties\":{\"email\":\"\"}}", "invalid_value",
                 "properties.email");
    expect_error("{\"event_id\":\"e\",\"type\":\"LeadCreated\",\"properties\":{\"email\":5}}", "wrong_type",
                 "properties.email");
    expect_error("{\"event_id\":\"e\",\"type\":\"LeadCreated\",\"properties\":{\"email\":\"a@b.co\",\"company\":1}}",
                 "wrong_type", "properties.company");
    /* A lead with a wrongly typed account_id is still an error. */
    expect_error("{\"event_id\":\"e\",\"type\":\"LeadCreated\",\"account_id\":7,"
                 "\"properties\":{\"email\":\"a@b.co\"}}",
                 "wrong_type", "account_id");
}

/* ---------------------------------------------------------- serialization */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v)) fail_msg("serialized event has no string \"%s\"", k);
    return v->valuestring;
}

static void test_serialize_round_trip(void **state)
{
    (void)state;
    cs_event ev;
    cJSON *in = expect_valid("{\"event_id\":\"ev-\\\"q\\\"\\n\\u0001\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_9\","
                             "\"user_id\":\"u\\\\9\",\"timestamp\":\"2026-11-27T12:00:00.5+02:00\","
                             "\"product_area\":\"reports\",\"plan_tier\":\"pro\","
                             "\"properties\":{\"feature\":\"export_csv\",\"count\":3,\"tags\":[\"a\",\"\\u00e9\"]},"
                             "\"context\":{\"ip\":\"10.0.0.1\"}}",
                             &ev);
    cs_buf out;
    cs_buf_init(&out);
    cs_buf_adds(&out, "");
    cs_event_serialize(&ev, "native", RECEIVED_US + 123456, &out);
    assert_int_equal(out.len, strlen(out.data));
    assert_null(strchr(out.data, '\n')); /* compact: one line */

    cJSON *back = cJSON_Parse(out.data);
    if (!back) fail_msg("serialized event does not parse: %s", out.data);
    assert_string_equal(jstr(back, "event_id"), "ev-\"q\"\n\x01");
    assert_string_equal(jstr(back, "type"), "FeatureUsed");
    assert_string_equal(jstr(back, "account_id"), "acc_9");
    assert_string_equal(jstr(back, "user_id"), "u\\9");
    assert_string_equal(jstr(back, "timestamp"), "2026-11-27T10:00:00.500Z"); /* normalized to UTC */
    assert_string_equal(jstr(back, "product_area"), "reports");
    assert_string_equal(jstr(back, "plan_tier"), "pro");
    assert_string_equal(jstr(back, "source"), "native");
    assert_string_equal(jstr(back, "received_at"), "2026-11-27T10:00:00.123Z");
    assert_true(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(back, "properties"), ev.properties, 1));
    assert_true(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(back, "context"), ev.context, 1));
    assert_int_equal(cJSON_GetArraySize(back), 11);

    /* The serialized event validates again (minus the ingest metadata) to
     * the same timestamp. */
    cJSON_DeleteItemFromObjectCaseSensitive(back, "source");
    cJSON_DeleteItemFromObjectCaseSensitive(back, "received_at");
    cs_event ev2;
    cs_verr err;
    assert_int_equal(cs_event_validate(back, 0, &ev2, &err), 0);
    assert_int_equal(ev2.ts_us, ev.ts_us);
    assert_int_equal(ev2.ts_us, RECEIVED_US + 500000);
    cJSON_Delete(back);
    cJSON_Delete(in);

    /* Absent optional fields are omitted; no timestamp means received time. */
    in = expect_valid("{\"event_id\":\"l1\",\"type\":\"LeadCreated\",\"properties\":{\"email\":\"a@b.co\"}}", &ev);
    cs_buf_reset(&out);
    cs_event_serialize(&ev, "segment", RECEIVED_US, &out);
    back = cJSON_Parse(out.data);
    assert_non_null(back);
    assert_null(cJSON_GetObjectItemCaseSensitive(back, "account_id"));
    assert_null(cJSON_GetObjectItemCaseSensitive(back, "user_id"));
    assert_null(cJSON_GetObjectItemCaseSensitive(back, "context"));
    assert_string_equal(jstr(back, "timestamp"), "2026-11-27T10:00:00.000Z");
    assert_string_equal(jstr(back, "received_at"), "2026-11-27T10:00:00.000Z");
    assert_string_equal(jstr(back, "source"), "segment");
    cJSON_Delete(back);
    cJSON_Delete(in);
    cs_buf_free(&out);
}

/* plan_tier / product_area only in properties (all a Segment track call
 * can carry) become the canonical fields; the event's own win. */
static void test_tier_and_area_lifted_from_properties(void **state)
{
    (void)state;
    cs_event ev;
    cs_buf out;
    cs_buf_init(&out);
    cJSON *in = expect_valid("{\"event_id\":\"f1\",\"type\":\"FeatureUsed\",\"account_id\":\"a1\","
                             "\"properties\":{\"feature\":\"x\",\"plan_tier\":\"trial\",\"product_area\":\"reports\"}}",
                             &ev);
    cs_event_serialize(&ev, "segment", RECEIVED_US, &out);
    cJSON *back = cJSON_Parse(out.data);
    assert_string_equal(jstr(back, "plan_tier"), "trial");
    assert_string_equal(jstr(back, "product_area"), "reports");
    cJSON_Delete(back);
    cJSON_Delete(in);
    in = expect_valid("{\"event_id\":\"f2\",\"type\":\"FeatureUsed\",\"account_id\":\"a1\",\"plan_tier\":\"pro\","
                      "\"properties\":{\"feature\":\"x\",\"plan_tier\":\"trial\",\"product_area\":7}}",
                      &ev);
    cs_buf_reset(&out);
    cs_event_serialize(&ev, "native", RECEIVED_US, &out);
    back = cJSON_Parse(out.data);
    assert_string_equal(jstr(back, "plan_tier"), "pro");
    assert_null(cJSON_GetObjectItemCaseSensitive(back, "product_area")); /* not a string: not lifted */
    cJSON_Delete(back);
    cJSON_Delete(in);
    cs_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_seed_types),
        cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_feature_used_needs_feature),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_unknown_field),
        cmocka_unit_test(test_lead_without_account),
        cmocka_unit_test(test_lead_bad_email),
        cmocka_unit_test(test_serialize_round_trip),
        cmocka_unit_test(test_tier_and_area_lifted_from_properties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
