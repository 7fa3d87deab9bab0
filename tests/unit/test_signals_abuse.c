/*
 * Unit tests for signals/abuse (signup_abuse: velocity per email domain, IP
 * and device, disposable domains, the risk score and its reasons) and for
 * signals/sigconfig (the `signals:` configuration section).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "signals/abuse.h"
#include "signals/sigconfig.h"

#define SEC 1000000LL
#define T0  (1767225600LL * SEC) /* 2026-01-01T00:00:00Z */

static int has_reason(const cs_abuse_result *r, const char *code)
{
    for (int i = 0; i < r->n_reasons; i++)
        if (strcmp(r->reasons[i].code, code) == 0) return 1;
    return 0;
}

static void test_disposable_domain(void **state)
{
    (void)state;
    cs_abuse_config c;
    cs_abuse_config_defaults(&c);
    cs_abuse *a = cs_abuse_new(&c);
    cs_abuse_result r;
    cs_abuse_event ev = {T0, "Someone@MAILINATOR.com", NULL, NULL};
    cs_abuse_check(a, &ev, &r);
    assert_string_equal(r.domain, "mailinator.com");
    assert_true(has_reason(&r, "disposable_domain"));
    assert_int_equal(r.score, 60);
    assert_true(r.flagged);
    ev.email = "x@eu.mailinator.com"; /* a subdomain of a listed one */
    cs_abuse_check(a, &ev, &r);
    assert_true(has_reason(&r, "disposable_domain"));
    ev.email = "ann@acme.example";
    cs_abuse_check(a, &ev, &r);
    assert_int_equal(r.score, 0);
    assert_false(r.flagged);
    assert_int_equal(r.n_reasons, 0);
    cs_abuse_add_disposable(a, "acme.example");
    cs_abuse_check(a, &ev, &r);
    assert_true(has_reason(&r, "disposable_domain"));
    cs_abuse_free(a);
}

static void test_domain_velocity_and_free_mail(void **state)
{
    (void)state;
    cs_abuse_config c;
    cs_abuse_config_defaults(&c);
    cs_abuse *a = cs_abuse_new(&c);
    cs_abuse_result r;
    char email[64];
    for (int i = 1; i <= 11; i++) {
        snprintf(email, sizeof email, "p%d@burst.example", i);
        cs_abuse_event ev = {T0 + i * 30 * SEC, email, NULL, NULL}; /* 11 in 5.5 minutes */
        cs_abuse_check(a, &ev, &r);
        assert_int_equal(r.domain_count, i);
        assert_int_equal(has_reason(&r, "domain_velocity"), i > 10);
    }
    assert_int_equal(r.score, 30);
    assert_false(r.flagged); /* velocity alone is not enough */
    /* 11 minutes after the burst the window is empty again */
    cs_abuse_event later = {T0 + 11 * 30 * SEC + 11 * 60 * SEC, "q@burst.example", NULL, NULL};
    cs_abuse_check(a, &later, &r);
    assert_int_equal(r.domain_count, 1);
    /* a busy free-mail domain is never a domain-velocity reason */
    for (int i = 0; i < 50; i++) {
        snprintf(email, sizeof email, "user%d@gmail.com", i);
        cs_abuse_event ev = {T0 + 20 * 60 * SEC + i * SEC, email, NULL, NULL};
        cs_abuse_check(a, &ev, &r);
    }
    assert_true(r.free_mail);
    assert_int_equal(r.score, 0);
    cs_abuse_free(a);
}

static void test_ip_and_device_velocity(void **state)
{
    (void)state;
    cs_abuse_config c;
    cs_abuse_config_defaults(&c);
    cs_abuse *a = cs_abuse_new(&c);
    cs_abuse_result r;
    char email[64];
    for (int i = 1; i <= 6; i++) {
        snprintf(email, sizeof email, "x%d@co%d.example", i, i);
        cs_abuse_event ev = {T0 + i * SEC, email, "203.0.113.9", i <= 4 ? "dev-1" : "dev-2"};
        cs_abuse_check(a, &ev, &r);
        if (i == 4) { /* device: 4 > 3 */
            assert_true(has_reason(&r, "device_velocity"));
            assert_false(has_reason(&r, "ip_velocity"));
            assert_int_equal(r.score, 40);
        }
    }
    /* ip: 6 > 5; device dev-2 has 2 */
    assert_true(has_reason(&r, "ip_velocity"));
    assert_false(has_reason(&r, "device_velocity"));
    assert_int_equal(r.ip_count, 6);
    assert_int_equal(r.device_count, 2);
    /* everything at once: capped at 100 */
    for (int i = 0; i < 5; i++) {
        cs_abuse_event ev = {T0 + 10 * SEC, "z@mailinator.com", "203.0.113.9", "dev-1"};
        cs_abuse_check(a, &ev, &r);
    }
    assert_int_equal(r.score, 100);
    assert_true(r.flagged);
    cs_abuse_stats s;
    cs_abuse_stats_get(a, &s);
    assert_int_equal(s.checked, 11);
    cs_abuse_free(a);
}

static void test_velocity_table_bounded(void **state)
{
    (void)state;
    cs_abuse_config c;
    cs_abuse_config_defaults(&c);
    c.max_keys = 64;
    cs_abuse *a = cs_abuse_new(&c);
    cs_abuse_result r;
    char ip[32];
    for (int i = 0; i < 100; i++) {
        snprintf(ip, sizeof ip, "198.51.100.%d", i);
        cs_abuse_event ev = {T0 + i * SEC, NULL, ip, NULL};
        cs_abuse_check(a, &ev, &r);
        assert_int_equal(r.velocity_dropped, i >= 64);
    }
    cs_abuse_stats s;
    cs_abuse_stats_get(a, &s);
    assert_int_equal(s.keys, 64);
    assert_int_equal(s.dropped, 36);
    /* once their window has passed, old keys are reclaimed */
    cs_abuse_event ev = {T0 + 3600 * SEC, NULL, "192.0.2.1", NULL};
    cs_abuse_check(a, &ev, &r);
    assert_false(r.velocity_dropped);
    assert_int_equal(r.ip_count, 1);
    cs_abuse_stats_get(a, &s);
    assert_int_equal(s.keys, 1);
    cs_abuse_free(a);
}

static void test_config_yaml_overrides(void **state)
{
    (void)state;
    cs_sig_config c;
    char err[256];
    cs_sig_config_defaults(&c);
    const char *y = "log:\n  partitions: 4\n"
                    "signals:\n"
                    "  allowed_lateness: 30m\n"
                    "  max_accounts: 5000\n"
                    "  key_features: [reports, api]\n"
                    "  usage_score:\n    half_life: 14d\n    half_units: 40\n    epsilon: 1\n"
                    "  activation:\n    features: 2\n    within: 7d\n"
                    "  engagement_drop:\n    ratio: 0.4\n    min_baseline: 20\n"
                    "  renewal_ticket_spike:\n    tickets: 4\n    window: 10d\n    renewal_within: 90d\n"
                    "  trial_handoff:\n    usage_score: 75\n"
                    "  health:\n    weights:\n      usage: 2\n    bands:\n      healthy: 80\n      poor: 30\n";
    assert_int_equal(cs_sig_config_yaml_string(&c, y, err, sizeof err), 0);
    assert_true(c.lateness_us == 30 * 60 * SEC);
    assert_int_equal(c.max_accounts, 5000);
    assert_int_equal(c.n_key_features, 2);
    assert_string_equal(c.key_features[1], "api");
    assert_true(c.usage_half_life_days == 14 && c.usage_half_units == 40 && c.usage_epsilon == 1);
    assert_int_equal(c.activation_features, 2);
    assert_int_equal(c.activation_days, 7);
    assert_true(c.drop_ratio == 0.4 && c.drop_min_baseline == 20);
    assert_int_equal(c.spike_tickets, 4);
    assert_int_equal(c.spike_window_days, 10);
    assert_int_equal(c.spike_renewal_days, 90);
    assert_true(c.handoff_usage_score == 75 && c.w_usage == 2 && c.band_healthy == 80 && c.band_poor == 30);

    cs_sig_config before = c;
    assert_int_equal(cs_sig_config_yaml_string(&c, "signals:\n  engagement_drop:\n    ratoi: 0.3\n", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "signals.engagement_drop.ratoi: unknown key"));
    assert_non_null(strstr(err, ":3:5:"));
    assert_memory_equal(&c, &before, sizeof c); /* unchanged on error */
    assert_int_equal(cs_sig_config_yaml_string(&c, "signals:\n  renewal_ticket_spike:\n    window: 30d\n", err,
                                               sizeof err), -1);
    assert_non_null(strstr(err, "window"));
    assert_int_equal(cs_sig_config_yaml_string(&c, "signals:\n  allowed_lateness: soon\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "duration"));
    assert_int_equal(cs_sig_config_yaml_string(&c, "signals:\n  activation:\n    within: 36h\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "whole days"));
    /* cross-key checks run after the section: poor above healthy */
    assert_int_equal(cs_sig_config_yaml_string(&c, "signals:\n  health:\n    bands:\n      poor: 90\n", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "bands"));
    assert_memory_equal(&c, &before, sizeof c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disposable_domain),
        cmocka_unit_test(test_domain_velocity_and_free_mail),
        cmocka_unit_test(test_ip_and_device_velocity),
        cmocka_unit_test(test_velocity_table_bounded),
        cmocka_unit_test(test_config_yaml_overrides),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
