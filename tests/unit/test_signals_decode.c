/*
 * Unit tests for signals/decode's fast path (cs_sig_decode_json) and
 * signals/feed: on canonical events and on every shape the fast path gives
 * up on (escapes, repeats, odd numbers, whitespace, malformed JSON), the
 * result equals cJSON_Parse + cs_sig_decode field by field; a feed replay
 * gives the same engine state hash as one cs_sig_apply per event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "signals/decode.h"
#include "signals/feed.h"
#include "signals/signals.h"

/* Decode json both ways and compare every field the engine reads. Returns
 * whether the fast path answered without cJSON. */
static int same(const char *json)
{
    cs_sig_event a, b;
    cJSON *tree = NULL;
    int ra = cs_sig_decode_json(json, strlen(json), &a, &tree);
    cJSON *o = cJSON_ParseWithLength(json, strlen(json));
    int rb = o ? cs_sig_decode(o, &b) : CS_SIG_EINVAL;
    if (ra != rb) fail_msg("rc %d vs %d for %s", ra, rb, json);
    if (ra == 0) {
        assert_int_equal(a.type, b.type);
        assert_int_equal(a.account_len, b.account_len);
        assert_memory_equal(a.account_id, b.account_id, a.account_len);
        assert_true(a.account_hash == b.account_hash);
        assert_true(a.ts_us == b.ts_us);
        assert_true(a.user_hash == b.user_hash);
        assert_true(a.feature_hash == b.feature_hash);
        assert_int_equal(a.count, b.count);
        assert_int_equal(a.plan_tier, b.plan_tier);
        assert_int_equal(a.renewal_day, b.renewal_day);
        assert_int_equal(a.trial_days, b.trial_days);
        assert_int_equal(a.type_len, b.type_len);
        assert_memory_equal(a.type_name, b.type_name, a.type_len);
    }
    int fast = tree == NULL && o != NULL; /* answered without cJSON on JSON that parses */
    cJSON_Delete(tree);
    cJSON_Delete(o);
    return fast;
}

#define PRE "{\"event_id\":\"e1\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_1\",\"user_id\":\"u1\",\"timestamp\":\"2026-03-01T10:00:00.123Z\""

static void test_canonical_shapes_take_the_fast_path(void **state)
{
    (void)state;
    static const char *const fast[] = {
        PRE ",\"product_area\":\"api\",\"plan_tier\":\"pro\",\"properties\":{\"feature\":\"api\",\"count\":3},\"source\":\"native\",\"received_at\":\"2026-03-01T10:00:01.000Z\"}",
        PRE ",\"properties\":{\"feature\":\"dashboards\"},\"context\":{\"ip\":\"1.2.3.4\",\"a\":[1,2.5e3,-0.5,true,false,null,{\"x\":\"y\\n\\u00e9\"}]}}",
        "{\"type\":\"TrialActivated\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\",\"properties\":{\"trial_days\":30}}",
        "{\"type\":\"TrialActivated\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\",\"properties\":{\"trial_days\":900}}",
        "{\"type\":\"SubscriptionUpgraded\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00+02:00\",\"plan_tier\":\"trial\",\"properties\":{\"plan_tier\":\"enterprise\",\"mrr\":990,\"renewal_date\":\"2027-02-28\"}}",
        "{\"type\":\"SubscriptionUpgraded\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\",\"properties\":{\"plan_tier\":\"weird\"}}",
        "{\"type\":\"SupportCaseEscalated\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\",\"properties\":{\"case_id\":\"c\",\"renewal_date\":\"2026-04-01T00:00:00Z\"}}",
        "{\"type\":\"PageViewed\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\",\"properties\":{}}",
        "{\"type\":\"LeadCreated\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\",\"properties\":{\"email\":\"x@y.z\"}}",
        "{\"type\":\"DemoRequested\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\"}",
        " { \"type\" : \"FeatureUsed\" ,\n\t\"account_id\":\"a\", \"timestamp\":\"2026-03-01T10:00:00Z\", \"properties\": {\"count\": 0 } } ",
        PRE ",\"properties\":{\"feature\":\"api\",\"count\":70000}}",
        PRE ",\"properties\":{\"feature\":\"api\",\"count\":\"3\"}}",   /* not a number: as absent */
        PRE ",\"properties\":{\"feature\":7,\"count\":null}}",
        PRE ",\"properties\":[1,2]}",                                /* properties not an object */
        "{\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\",\"plan_tier\":5,\"user_id\":\"\"}",
        "{\"type\":\"FeatureUsed\",\"timestamp\":\"2026-03-01T10:00:00Z\"}",           /* no account: EINVAL */
        "{\"type\":\"FeatureUsed\",\"account_id\":\"\",\"timestamp\":\"2026-03-01T10:00:00Z\"}",
        "{\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"timestamp\":\"yesterday\"}",
        "{\"type\":\"FeatureUsed\",\"account_id\":\"a\"}",
        "{\"type\":3,\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00Z\"}",
        "{}",
    };
    for (size_t i = 0; i < sizeof fast / sizeof fast[0]; i++)
        if (!same(fast[i])) fail_msg("fast path gave up on %s", fast[i]);
}

static void test_unrecognised_shapes_fall_back_to_cjson(void **state)
{
    (void)state;
    static const char *const slow[] = {
        "{\"type\":\"FeatureUsed\",\"account_id\":\"acc\\u00e9\",\"timestamp\":\"2026-03-01T10:00:00Z\"}",
        "{\"type\":\"FeatureUsed\",\"account_id\":\"a\\\"b\",\"timestamp\":\"2026-03-01T10:00:00Z\"}",
        PRE ",\"properties\":{\"feature\":\"ap\\u0069\"}}",
        PRE ",\"properties\":{\"feature\":\"api\",\"count\":2.7}}",
        PRE ",\"properties\":{\"feature\":\"api\",\"count\":-4}}",
        PRE ",\"properties\":{\"feature\":\"api\",\"count\":1e3}}",
        PRE ",\"properties\":{\"feature\":\"api\",\"count\":12345678901}}",
        PRE ",\"account_id\":\"other\"}",                             /* repeated: cJSON's first match */
        PRE ",\"properties\":{},\"properties\":{\"feature\":\"x\"}}",
        PRE ",\"x\":\"\\q\"}",                                        /* invalid escape: cJSON fails */
        PRE ",\"x\":\"\\ud800\"}",                                    /* lone surrogate */
        PRE ",\"x\":01}",
        PRE ",\"x\":tru}",
        PRE ",\"x\":[1,}",
        PRE "} trailing",
        PRE,                                                          /* truncated */
        "[1,2,3]",
        "",
        "nul",
        PRE ",\"x\":\"tab\there\"}",                                   /* raw control byte */
        "{\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"timestamp\":\"2026-03-01T10:00:00.12345678901234567890123456789012345678901234567890Z\"}",
    };
    for (size_t i = 0; i < sizeof slow / sizeof slow[0]; i++)
        if (same(slow[i])) fail_msg("fast path answered %s", slow[i]);
    /* deep nesting beyond the fast path's 32 levels */
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, PRE ",\"context\":");
    for (int i = 0; i < 40; i++) cs_buf_adds(&b, "[");
    for (int i = 0; i < 40; i++) cs_buf_adds(&b, "]");
    cs_buf_adds(&b, "}");
    assert_false(same(b.data));
    cs_buf_free(&b);
}

/* A quote, an escape or a control byte at every position of an 8-byte
 * block (the scanner looks at 8 bytes at a time): both paths agree. */
static void test_specials_at_every_position(void **state)
{
    (void)state;
    static const char *const specials[] = {"\\n", "\\\"", "\\u00e9", "\t", "\x01", "\xc3\xa9"};
    for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++)
        for (int pos = 0; pos < 20; pos++) {
            char pad[32], json[256];
            memset(pad, 'a', sizeof pad);
            pad[pos] = 0;
            snprintf(json, sizeof json,
                     "{\"type\":\"FeatureUsed\",\"account_id\":\"acc_%s%s\",\"x\":\"%s%sbbbbbbbbbbbbbbbb\","
                     "\"timestamp\":\"2026-03-01T10:00:00Z\",\"properties\":{\"feature\":\"f%s%s\"}}",
                     pad, specials[k], pad, specials[k], pad, specials[k]);
            same(json);
        }
}

static void test_random_events_agree(void **state)
{
    (void)state;
    static const char *const types[] = {"FeatureUsed", "TrialActivated", "SubscriptionUpgraded",
                                        "SupportCaseEscalated", "PageViewed", "LeadCreated"};
    static const char *const vals[] = {"\"api\"", "3", "\"x\\ny\"", "null", "[1,{\"a\":2}]", "65535", "\"pro\"",
                                       "\"2026-05-01\"", "1.5", "{}", "\"\"", "true"};
    static const char *const pkeys[] = {"feature", "count", "plan_tier", "trial_days", "renewal_date", "other"};
    uint64_t r = 7;
    cs_buf b;
    cs_buf_init(&b);
    for (int i = 0; i < 3000; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        cs_buf_reset(&b);
        cs_buf_printf(&b, "{\"event_id\":\"e%d\",\"type\":\"%s\",\"account_id\":\"acc_%d\",\"timestamp\":\"2026-0%d-1%dT0%d:00:00.%03dZ\"",
                      i, types[(r >> 33) % 6], (int)((r >> 40) % 50), 1 + (int)((r >> 20) % 9), (int)((r >> 24) % 10),
                      (int)((r >> 28) % 10), (int)((r >> 12) % 1000));
        if ((r >> 50) & 1) cs_buf_printf(&b, ",\"plan_tier\":%s", vals[(r >> 51) % 12]);
        cs_buf_adds(&b, ",\"properties\":{");
        int np = (int)((r >> 3) % 4);
        for (int k = 0; k < np; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            cs_buf_printf(&b, "%s\"%s\":%s", k ? "," : "", pkeys[(r >> 33) % 6], vals[(r >> 40) % 12]);
        }
        cs_buf_adds(&b, "},\"source\":\"native\"}");
        same(b.data);
    }
    cs_buf_free(&b);
}

/* The feed (fast decode, id copies, batched apply) reaches the state of one
 * cJSON decode + cs_sig_apply per event. */
static void test_feed_matches_single_applies(void **state)
{
    (void)state;
    cs_sig_config cfg;
    cs_sig_config_defaults(&cfg);
    char err[200];
    cs_sig_engine *e1 = cs_sig_engine_new(&cfg, err, sizeof err), *e2 = cs_sig_engine_new(&cfg, err, sizeof err);
    cs_sig_feed f;
    cs_sig_feed_init(&f, e2);
    cs_sig_changes ch;
    cs_sig_changes_init(&ch);
    static const char *const feats[] = {"api", "export_csv", "dashboards", "alerts", "sso"};
    cs_buf b;
    cs_buf_init(&b);
    int n = 1000;
    for (int i = 0; i < n; i++) {
        cs_buf_reset(&b);
        char ts[40];
        cs_fmt_time_ms((int64_t)(20454 + i / 30) * 86400000000LL + (int64_t)(i % 30) * 60000000LL, ts, sizeof ts);
        if (i % 10 == 9)
            cs_buf_printf(&b, "{\"type\":\"SupportCaseEscalated\",\"account_id\":\"acc_%d\",\"timestamp\":\"%s\",\"properties\":{\"case_id\":\"c\",\"renewal_date\":\"2026-03-01\"}}", i % 37, ts);
        else if (i % 10 == 3) /* escaped user id: the cJSON fallback inside the feed */
            cs_buf_printf(&b, "{\"type\":\"PageViewed\",\"account_id\":\"acc_%d\",\"user_id\":\"u\\u00e9%d\",\"timestamp\":\"%s\"}", i % 37, i % 5, ts);
        else
            cs_buf_printf(&b, "{\"type\":\"FeatureUsed\",\"account_id\":\"acc_%d\",\"user_id\":\"u%d\",\"timestamp\":\"%s\",\"properties\":{\"feature\":\"%s\",\"count\":%d}}",
                          i % 37, i % 7, ts, feats[i % 5], 1 + i % 3);
        cJSON *o = cJSON_Parse(b.data);
        cs_sig_event ev;
        assert_int_equal(cs_sig_decode(o, &ev), 0);
        assert_int_equal(cs_sig_apply(e1, &ev, &ch), CS_SIG_OK);
        cJSON_Delete(o);
        if (i % 2) {
            assert_int_equal(cs_sig_feed_add(&f, b.data, b.len), 0);
        } else { /* decoded by the caller (to filter by type first), then queued */
            cJSON *tree;
            cs_sig_event dv;
            assert_int_equal(cs_sig_decode_json(b.data, b.len, &dv, &tree), 0);
            assert_true(dv.type_len > 0 && memcmp(dv.type_name, b.data + 9, dv.type_len) == 0);
            assert_int_equal(cs_sig_feed_add_event(&f, &dv), 0);
            cJSON_Delete(tree); /* the feed kept its own copy of the id */
        }
    }
    assert_int_equal(cs_sig_feed_add(&f, "{\"type\":\"LeadCreated\"}", 22), CS_SIG_EINVAL);
    assert_int_equal(cs_sig_feed_add(&f, "not json", 8), CS_SIG_EINVAL);
    cs_sig_feed_flush(&f, NULL);
    assert_int_equal(f.applied, (uint64_t)n);
    assert_int_equal(f.invalid, 2);
    assert_true(cs_sig_state_hash(e1) == cs_sig_state_hash(e2));
    cs_buf_free(&b);
    cs_sig_feed_free(&f);
    cs_sig_changes_free(&ch);
    cs_sig_engine_free(e1);
    cs_sig_engine_free(e2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical_shapes_take_the_fast_path),
        cmocka_unit_test(test_unrecognised_shapes_fall_back_to_cjson),
        cmocka_unit_test(test_specials_at_every_position),
        cmocka_unit_test(test_random_events_agree),
        cmocka_unit_test(test_feed_matches_single_applies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
