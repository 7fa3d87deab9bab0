/*
 * The simulator's world: byte-identical streams for a seed, every planted
 * pattern and decoy at least 50 times in the default world, every event
 * valid by the ingest rules except the deliberately invalid ones, event
 * times inside the window, and the ground truth consistent with the plan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/event.h"
#include "sim/world.h"

#define END_US 1795000000000000LL /* a fixed "now" */

static cs_world_opts opts(uint64_t seed, int accounts, int days)
{
    return (cs_world_opts){.seed = seed, .accounts = accounts, .days = days, .end_us = END_US,
                           .dup_share = 0.02, .ooo_share = 0.05, .late_share = 0.005, .invalid_share = 0.005,
                           .segment_share = 0.5};
}

/* The whole stream as one buffer (and counts): each event as the door it
 * goes through will send it, with its perturbation flags. */
static void stream(const cs_world_opts *o, cs_buf *out, long *n, long *invalid, long *dups)
{
    cs_world *w = cs_world_new(o);
    cs_wevent ev = {0};
    cs_buf_init(&ev.json);
    *n = *invalid = *dups = 0;
    while (cs_world_next(w, &ev) == 0) {
        cs_buf_printf(out, "%d%d%d%d%d ", ev.segment, ev.duplicate, ev.ooo, ev.late, ev.invalid);
        if (ev.segment) assert_int_equal(cs_world_to_segment(ev.json.data, ev.json.len, out), 0);
        else cs_buf_add(out, ev.json.data, ev.json.len);
        cs_buf_adds(out, "\n");
        (*n)++;
        *invalid += ev.invalid;
        *dups += ev.duplicate;
    }
    cs_buf_free(&ev.json);
    cs_world_free(w);
}

static void test_same_seed_byte_identical(void **state)
{
    (void)state;
    cs_world_opts o = opts(42, 60, 5);
    cs_buf a, b, c;
    cs_buf_init(&a), cs_buf_init(&b), cs_buf_init(&c);
    long n1, n2, n3, i1, i2, i3, d1, d2, d3;
    stream(&o, &a, &n1, &i1, &d1);
    stream(&o, &b, &n2, &i2, &d2);
    assert_true(n1 > 1000);
    assert_int_equal(n1, n2);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    o.seed = 43;
    stream(&o, &c, &n3, &i3, &d3);
    assert_true(c.len != a.len || memcmp(a.data, c.data, a.len) != 0);
    assert_true(d1 > 0 && i1 > 0);
    /* Both doors, every perturbation present. */
    assert_non_null(strstr(a.data, "\n1")), assert_non_null(strstr(a.data, "\n0"));
    assert_non_null(strstr(a.data, "{\"type\":\"track\""));
    assert_non_null(strstr(a.data, "{\"type\":\"identify\""));
    assert_non_null(strstr(a.data, "{\"type\":\"group\""));
    long ooo = 0, late = 0;
    for (const char *p = a.data; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) ooo += p[2] == '1', late += p[3] == '1';
    assert_true(ooo > 0 && late > 0);
    cs_buf_free(&a), cs_buf_free(&b), cs_buf_free(&c);
}

static void test_default_world_plants_every_pattern_50_times(void **state)
{
    (void)state;
    cs_world_opts o = opts(1, 500, 30);
    cs_world *w = cs_world_new(&o);
    static const char *const pats[] = {"churn", "ticket_spike", "trial_pql", "signup_abuse"};
    for (int p = 0; p < 4; p++) {
        assert_true(cs_world_planted(w, pats[p], 0) >= 50);
        assert_true(cs_world_planted(w, pats[p], 1) >= 50);
    }
    /* The truth file says the same. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cs_world_truth(w, f);
    fclose(f);
    int lines = 0, churn = 0;
    for (char *p = text; (p = strchr(p, '\n')); p++) lines++;
    for (char *p = text; (p = strstr(p, "\"pattern\":\"churn\",\"decoy\":false")); p++) churn++;
    assert_int_equal(churn, cs_world_planted(w, "churn", 0));
    assert_int_equal(lines, 1 + 300 + 100); /* the scope line, then one per case */
    free(text);
    cs_world_free(w);
}

static void test_events_valid_and_inside_the_window(void **state)
{
    (void)state;
    cs_world_opts o = opts(7, 100, 10);
    cs_world *w = cs_world_new(&o);
    cs_wevent ev = {0};
    cs_buf_init(&ev.json);
    long n = 0, leads = 0, types[6] = {0};
    static const char *const tn[] = {"FeatureUsed", "LeadCreated", "TrialActivated", "SupportCaseEscalated"};
    while (cs_world_next(w, &ev) == 0) {
        n++;
        cJSON *j = cJSON_ParseWithLength(ev.json.data, ev.json.len);
        assert_non_null(j);
        cs_event e;
        cs_verr err;
        int ok = cs_event_validate(j, END_US, &e, &err) == 0;
        if (ok == ev.invalid) fail_msg("event %ld: valid=%d but invalid flag=%d: %s", n, ok, ev.invalid, ev.json.data);
        if (ok) {
            assert_true(e.ts_us >= END_US - 10LL * 86400000000LL && e.ts_us <= END_US);
            assert_int_equal(ev.is_lead, strcmp(e.type, "LeadCreated") == 0);
            for (int k = 0; k < 4; k++) types[k] += strcmp(e.type, tn[k]) == 0;
            leads += ev.is_lead;
        }
        cJSON_Delete(j);
    }
    for (int k = 0; k < 4; k++) assert_true(types[k] > 0);
    assert_true(leads > 100);
    cs_buf_free(&ev.json);
    cs_world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_seed_byte_identical),
        cmocka_unit_test(test_default_world_plants_every_pattern_50_times),
        cmocka_unit_test(test_events_valid_and_inside_the_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
