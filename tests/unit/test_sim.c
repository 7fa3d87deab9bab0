/*
 * The simulator's world: deterministic for a seed, different across seeds,
 * every event valid by the ingest rules, and all six seed types present.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/event.h"
#include "sim/sim.h"

static void test_world_end(void **state)
{
    (void)state;
    int64_t now = 1795854172123456LL; /* 2026-11-28T08:22:52.123456Z */
    assert_int_equal(cs_sim_world_end(0, now), 1795852800000000LL); /* 08:00:00Z */
    assert_int_equal(cs_sim_world_end(0, 1795852800000000LL), 1795852800000000LL);
    assert_int_equal(cs_sim_world_end(now, 0), 1795854172123000LL); /* --end: kept, to the ms */
}

static void test_same_seed_same_events(void **state)
{
    (void)state;
    cs_buf a, b;
    cs_buf_init(&a);
    cs_buf_init(&b);
    int la, lb;
    for (uint64_t i = 0; i < 2000; i++) {
        cs_sim_event(7, i, 100, 1700000000000000LL, &a, &la);
        cs_sim_event(7, i, 100, 1700000000000000LL, &b, &lb);
        assert_int_equal(la, lb);
    }
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    cs_buf_reset(&b);
    for (uint64_t i = 0; i < 2000; i++) cs_sim_event(8, i, 100, 1700000000000000LL, &b, &lb);
    assert_true(a.len != b.len || memcmp(a.data, b.data, a.len) != 0);
    cs_buf_free(&a);
    cs_buf_free(&b);
}

static void test_every_event_valid_and_all_types_present(void **state)
{
    (void)state;
    static const char *const types[] = {"FeatureUsed", "LeadCreated", "DemoRequested",
                                        "TrialActivated", "SubscriptionUpgraded", "SupportCaseEscalated"};
    int seen[6] = {0}, leads = 0;
    for (uint64_t i = 0; i < 5000; i++) {
        cs_buf e;
        cs_buf_init(&e);
        int is_lead;
        cs_sim_event(1, i, 50, 1700000000000000LL, &e, &is_lead);
        cJSON *j = cJSON_Parse(e.data);
        assert_non_null(j);
        cs_event ev;
        cs_verr err;
        if (cs_event_validate(j, 0, &ev, &err) != 0) fail_msg("event %llu invalid: %s (%s)", (unsigned long long)i,
                                                              err.message, e.data);
        for (int k = 0; k < 6; k++)
            if (strcmp(ev.type, types[k]) == 0) seen[k]++;
        assert_int_equal(is_lead, strcmp(ev.type, "LeadCreated") == 0);
        leads += is_lead;
        cJSON_Delete(j);
        cs_buf_free(&e);
    }
    for (int k = 0; k < 6; k++) assert_true(seen[k] > 100);
    assert_true(leads > 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_end),
        cmocka_unit_test(test_same_seed_same_events),
        cmocka_unit_test(test_every_event_valid_and_all_types_present),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
