/*
 * Unit tests for the `signals:` configuration section wired through
 * core/config: the shipped (commented) section of config/crmstream.yaml
 * parses and equals the defaults; changed thresholds change the engine's
 * and signup_abuse's results through cs_sig_config_from /
 * cs_abuse_config_from; bad values are errors naming the key and its
 * file:line:column.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/util.h"
#include "signals/abuse.h"
#include "signals/sigconfig.h"
#include "signals/signals.h"

#define DAY 86400000000LL
#define D0  20454 /* 2026-01-01 */

static int load(cs_config *cfg, const char *yaml, char *err, size_t errlen)
{
    cs_config_defaults(cfg);
    return cs_config_load_string(cfg, "t.yaml", yaml, err, errlen);
}

/* The commented signals section shipped in config/crmstream.yaml,
 * uncommented, must load and give exactly the defaults. */
static void test_shipped_section_is_the_defaults(void **state)
{
    (void)state;
    FILE *f = fopen("config/crmstream.yaml", "r");
    assert_non_null(f);
    cs_buf b;
    cs_buf_init(&b);
    char line[512];
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "# signals:", 10) == 0) in = 1;
        if (in && strncmp(line, "# ", 2) == 0) cs_buf_adds(&b, line + 2);
    }
    fclose(f);
    assert_true(in);
    cs_config cfg;
    char err[300];
    if (load(&cfg, b.data, err, sizeof err)) fail_msg("%s", err);
    assert_non_null(cfg.signals);
    cs_sig_config got, want;
    cs_sig_config_from(&cfg, &got);
    cs_sig_config_defaults(&want);
    assert_true(got.lateness_us == want.lateness_us);
    assert_int_equal(got.max_accounts, want.max_accounts);
    assert_int_equal(got.n_key_features, want.n_key_features);
    for (int i = 0; i < want.n_key_features; i++) assert_string_equal(got.key_features[i], want.key_features[i]);
    assert_int_equal(got.trial_days_default, want.trial_days_default);
    assert_true(got.usage_half_life_days == want.usage_half_life_days);
    assert_true(got.usage_half_units == want.usage_half_units);
    assert_int_equal(got.units_feature, want.units_feature);
    assert_int_equal(got.units_key_feature, want.units_key_feature);
    assert_int_equal(got.activation_features, want.activation_features);
    assert_int_equal(got.activation_days, want.activation_days);
    assert_true(got.drop_ratio == want.drop_ratio && got.drop_min_baseline == want.drop_min_baseline);
    assert_int_equal(got.spike_tickets, want.spike_tickets);
    assert_int_equal(got.spike_window_days, want.spike_window_days);
    assert_int_equal(got.spike_renewal_days, want.spike_renewal_days);
    assert_true(got.handoff_usage_score == want.handoff_usage_score);
    assert_true(got.w_usage == want.w_usage && got.w_trend == want.w_trend && got.w_features == want.w_features &&
                got.w_users == want.w_users && got.w_support == want.w_support);
    assert_true(got.features_target == want.features_target && got.users_target == want.users_target);
    assert_true(got.support_penalty == want.support_penalty);
    assert_true(got.band_healthy == want.band_healthy && got.band_poor == want.band_poor);
    assert_true(got.usage_epsilon == want.usage_epsilon && got.health_epsilon == want.health_epsilon);
    cs_abuse_config ga, wa;
    cs_abuse_config_from(&cfg, &ga);
    cs_abuse_config_defaults(&wa);
    assert_true(ga.window_us == wa.window_us);
    assert_int_equal(ga.domain_max, wa.domain_max);
    assert_int_equal(ga.ip_max, wa.ip_max);
    assert_int_equal(ga.device_max, wa.device_max);
    assert_int_equal(ga.w_disposable, wa.w_disposable);
    assert_int_equal(ga.w_domain, wa.w_domain);
    assert_int_equal(ga.w_ip, wa.w_ip);
    assert_int_equal(ga.w_device, wa.w_device);
    assert_int_equal(ga.flag_score, wa.flag_score);
    assert_int_equal(ga.max_keys, wa.max_keys);
    assert_int_equal(ga.n_disposable, 0);
    assert_int_equal(ga.n_free_mail, 0);
    cs_buf_free(&b);
    cs_config_free(&cfg);
    /* no section: the defaults too */
    assert_int_equal(load(&cfg, "log:\n  partitions: 2\n", err, sizeof err), 0);
    assert_null(cfg.signals);
    cs_sig_config_from(&cfg, &got);
    assert_int_equal(got.spike_tickets, want.spike_tickets);
    cs_config_free(&cfg);
}

static int spike_for(const cs_sig_config *sc)
{
    char err[200];
    cs_sig_engine *e = cs_sig_engine_new(sc, err, sizeof err);
    assert_non_null(e);
    cs_sig_changes ch;
    cs_sig_changes_init(&ch);
    cs_sig_event ev;
    memset(&ev, 0, sizeof ev);
    ev.account_id = "acme";
    ev.account_len = 4;
    ev.renewal_day = D0 + 30;
    ev.ts_us = (int64_t)D0 * DAY + 3600000000LL;
    assert_int_equal(cs_sig_apply(e, &ev, &ch), CS_SIG_OK);
    ev.type = CS_SIG_EV_SUPPORT_ESCALATED;
    ev.renewal_day = CS_SIG_NO_DAY;
    for (int i = 1; i <= 2; i++) {
        ev.ts_us = (int64_t)(D0 + i) * DAY;
        assert_int_equal(cs_sig_apply(e, &ev, &ch), CS_SIG_OK);
    }
    cs_sig_view v;
    assert_int_equal(cs_sig_view_account(e, "acme", 4, &v), 0);
    cs_sig_changes_free(&ch);
    cs_sig_engine_free(e);
    return v.renewal_spike;
}

static void test_changed_thresholds_change_results(void **state)
{
    (void)state;
    cs_config cfg;
    char err[300];
    /* defaults: 2 escalations are below the spike threshold of 3 */
    assert_int_equal(load(&cfg, "", err, sizeof err), 0);
    cs_sig_config sc;
    cs_sig_config_from(&cfg, &sc);
    assert_int_equal(spike_for(&sc), 0);
    cs_abuse_config ac;
    cs_abuse_config_from(&cfg, &ac);
    cs_abuse *a = cs_abuse_new(&ac);
    cs_abuse_result r;
    cs_abuse_event ae = {(int64_t)D0 * DAY, "eve@burner.example", NULL, NULL};
    cs_abuse_check(a, &ae, &r);
    assert_false(r.flagged);
    cs_abuse_free(a);
    cs_config_free(&cfg);

    const char *y = "signals:\n"
                    "  renewal_ticket_spike:\n    tickets: 2\n"
                    "  signup_abuse:\n    disposable_domains: [burner.example]\n    points: {disposable: 55}\n"
                    "    flag_score: 55\n";
    if (load(&cfg, y, err, sizeof err)) fail_msg("%s", err);
    cs_sig_config_from(&cfg, &sc);
    assert_int_equal(sc.spike_tickets, 2);
    assert_int_equal(spike_for(&sc), 1);
    cs_abuse_config_from(&cfg, &ac);
    a = cs_abuse_new(&ac);
    cs_abuse_check(a, &ae, &r);
    assert_true(r.flagged);
    assert_int_equal(r.score, 55);
    assert_string_equal(r.reasons[0].code, "disposable_domain");
    cs_abuse_free(a);
    cs_config_free(&cfg);
}

static void expect_error(const char *yaml, const char *want)
{
    cs_config cfg;
    char err[300] = "";
    if (load(&cfg, yaml, err, sizeof err) == 0) fail_msg("accepted: %s", yaml);
    if (!strstr(err, want)) fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    cs_config_free(&cfg);
}

static void test_bad_values_name_the_key(void **state)
{
    (void)state;
    expect_error("signals:\n  engagement_drop:\n    ratio: 2\n", "t.yaml:3:12: signals.engagement_drop.ratio: expected a number in");
    expect_error("signals:\n  renewal_ticket_spike:\n    window: 30d\n", "signals.renewal_ticket_spike.window");
    expect_error("signals:\n  usage_score:\n    half_life: soon\n", "t.yaml:3:16: signals.usage_score.half_life: expected a duration");
    expect_error("signals:\n  health:\n    wieghts:\n      usage: 1\n", "t.yaml:3:5: signals.health.wieghts: unknown key");
    expect_error("signals:\n  health:\n    bands: {healthy: 30, poor: 60}\n", "signals.health.bands");
    expect_error("signals:\n  signup_abuse:\n    ip_max: 0\n", "t.yaml:3:13: signals.signup_abuse.ip_max");
    expect_error("signals:\n  signup_abuse:\n    window: 1s\n", "signals.signup_abuse.window");
    expect_error("signals:\n  signup_abuse:\n    disposable_domains: [ok.example, \"not a domain\"]\n",
                 "signals.signup_abuse.disposable_domains: expected a domain name");
    expect_error("signals:\n  signup_abuse:\n    free_mail_domains: mail.example\n",
                 "signals.signup_abuse.free_mail_domains: expected a list");
    expect_error("signals: 3\n", "signals: expected a mapping");
    expect_error("signals:\n  key_features: [a, b, c, d, e, f, g, h, i]\n", "signals.key_features: at most 8");
    /* a failed section leaves no half-applied state and no leak (ASan) */
    cs_config cfg;
    char err[300];
    assert_int_equal(load(&cfg, "signals:\n  signup_abuse:\n    disposable_domains: [a.example]\n    ip_max: -1\n", err,
                          sizeof err),
                     -1);
    assert_null(cfg.signals);
    cs_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_section_is_the_defaults),
        cmocka_unit_test(test_changed_thresholds_change_results),
        cmocka_unit_test(test_bad_values_name_the_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
