/*
 * Unit tests for signals/: each window type (sliding day windows, tumbling
 * weeks), decay and its tail, the baseline, late events, every signal
 * definition against hand-computed values, the write filter, T14 (sorted,
 * block-reversed and shuffled input within the lateness bound give the same
 * state hash), snapshot round trip and corruption, the account limit, and
 * decoding canonical JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "core/hash.h"
#include "signals/decode.h"
#include "signals/signals.h"

#define DAY  86400000000LL
#define HOUR 3600000000LL
#define MIN  60000000LL
#define D0   20454 /* 2026-01-01, a Thursday */

static int64_t at(int day, int64_t off)
{
    return (int64_t)(D0 + day) * DAY + off;
}

static uint64_t hs(const char *s)
{
    return cs_sig_hash(s, strlen(s));
}

static cs_sig_event mk(const char *acc, enum cs_sig_type type, int64_t ts)
{
    cs_sig_event e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.account_id = acc;
    e.account_len = strlen(acc);
    e.ts_us = ts;
    e.renewal_day = CS_SIG_NO_DAY;
    return e;
}

static cs_sig_event feat(const char *acc, int64_t ts, const char *feature, uint32_t count)
{
    cs_sig_event e = mk(acc, CS_SIG_EV_FEATURE_USED, ts);
    e.feature_hash = hs(feature);
    e.count = count;
    return e;
}

static cs_sig_engine *eng_new(const cs_sig_config *cfg)
{
    cs_sig_config d;
    if (!cfg) {
        cs_sig_config_defaults(&d);
        cfg = &d;
    }
    char err[200];
    cs_sig_engine *e = cs_sig_engine_new(cfg, err, sizeof err);
    if (!e) fail_msg("engine: %s", err);
    return e;
}

static cs_sig_changes g_ch;

static int apply(cs_sig_engine *e, cs_sig_event ev)
{
    return cs_sig_apply(e, &ev, &g_ch);
}

static void view(cs_sig_engine *e, const char *acc, cs_sig_view *v)
{
    assert_int_equal(cs_sig_view_account(e, acc, strlen(acc), v), 0);
}

/* The last change of signal for acc in g_ch, or NULL. */
static const cs_sig_change *find_change(const char *acc, const char *signal)
{
    const cs_sig_change *c = NULL;
    for (size_t i = 0; i < g_ch.n; i++)
        if (strcmp(g_ch.v[i].account_id, acc) == 0 && strcmp(g_ch.v[i].signal, signal) == 0) c = &g_ch.v[i];
    return c;
}

static char g_reason[300];
static const char *R(const cs_sig_change *c)
{
    return cs_sig_change_reason(c, g_reason, sizeof g_reason);
}

static void near(double got, double want, double tol)
{
    if (fabs(got - want) > tol) fail_msg("got %.12g, want %.12g (tolerance %g)", got, want, tol);
}

static int setup(void **state)
{
    (void)state;
    cs_sig_changes_init(&g_ch);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cs_sig_changes_free(&g_ch);
    return 0;
}

/* --------------------------------------------------------------- windows */

static void test_sliding_day_windows(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    /* non-key feature: 1 unit per count */
    assert_int_equal(apply(e, feat("a", at(0, 10 * HOUR), "reports", 10)), CS_SIG_OK);
    assert_int_equal(apply(e, feat("a", at(3, 10 * HOUR), "reports", 4)), CS_SIG_OK);
    assert_int_equal(apply(e, feat("a", at(6, 10 * HOUR), "reports", 2)), CS_SIG_OK);
    assert_int_equal(apply(e, feat("a", at(7, 10 * HOUR), "reports", 1)), CS_SIG_OK);
    cs_sig_view v;
    view(e, "a", &v);
    assert_int_equal(v.asof_day, D0 + 7);
    assert_int_equal(v.units_7d, 4 + 2 + 1);  /* days 1..7 */
    assert_int_equal(v.units_base28, 10);     /* days -27..0 */
    near(v.baseline_week, 2.5, 1e-12);
    /* the window slides with the watermark: another account moves it to day 13 */
    assert_int_equal(apply(e, mk("b", CS_SIG_EV_OTHER, at(13, 12 * HOUR))), CS_SIG_OK);
    view(e, "a", &v);
    assert_int_equal(v.asof_day, D0 + 13);
    assert_int_equal(v.units_7d, 1);           /* days 7..13 */
    assert_int_equal(v.units_base28, 10 + 4 + 2); /* days -21..6 */
    cs_sig_engine_free(e);
}

static void test_tumbling_weeks_users(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    /* D0 is a Thursday: its week runs Monday D0-3 .. Sunday D0+3 */
    const char *users[] = {"u1", "u2", "u3"};
    for (int i = 0; i < 3; i++) {
        cs_sig_event ev = mk("a", CS_SIG_EV_OTHER, at(0, HOUR * (i + 1)));
        ev.user_hash = hs(users[i]);
        assert_int_equal(apply(e, ev), CS_SIG_OK);
    }
    cs_sig_event ev = mk("a", CS_SIG_EV_OTHER, at(3, HOUR)); /* Sunday, same week, u1 again */
    ev.user_hash = hs("u1");
    apply(e, ev);
    cs_sig_view v;
    view(e, "a", &v);
    double three = -128.0 * log(125.0 / 128.0);
    near(v.users_week, three, 1e-9);
    near(v.users_28d, three, 1e-9);
    ev = mk("a", CS_SIG_EV_OTHER, at(4, HOUR)); /* Monday: a new tumbling week */
    ev.user_hash = hs("u4");
    apply(e, ev);
    view(e, "a", &v);
    near(v.users_week, -128.0 * log(127.0 / 128.0), 1e-9);
    near(v.users_28d, -128.0 * log(124.0 / 128.0), 1e-9);
    /* 4 weeks later (Monday D0+32) the first week has left the 28-day union */
    ev = mk("a", CS_SIG_EV_OTHER, at(32, HOUR));
    ev.user_hash = hs("u4");
    apply(e, ev);
    view(e, "a", &v);
    near(v.users_28d, -128.0 * log(127.0 / 128.0), 1e-9);
    cs_sig_engine_free(e);
}

static void test_decay_and_tail(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    apply(e, feat("a", at(0, 12 * HOUR), "reports", 20));
    cs_sig_view v;
    view(e, "a", &v);
    near(v.decayed_units, 20, 1e-12);
    near(v.usage_score, 50, 1e-12); /* 100 * 20 / (20 + 20) */
    apply(e, mk("b", CS_SIG_EV_OTHER, at(7, 12 * HOUR)));
    view(e, "a", &v);
    near(v.decayed_units, 10, 1e-12); /* one half-life */
    near(v.usage_score, 100.0 * 10 / 30, 1e-9);
    /* 40 days on, day 0 has left the ring and lives in the tail */
    apply(e, mk("a", CS_SIG_EV_OTHER, at(40, 12 * HOUR)));
    view(e, "a", &v);
    near(v.decayed_units, 20 * pow(2, -40.0 / 7), 1e-12);
    /* half-life 3.5 days changes the rate */
    cs_sig_config c;
    cs_sig_config_defaults(&c);
    c.usage_half_life_days = 3.5;
    cs_sig_engine *e2 = eng_new(&c);
    apply(e2, feat("a", at(0, 12 * HOUR), "reports", 20));
    apply(e2, mk("b", CS_SIG_EV_OTHER, at(7, 12 * HOUR)));
    view(e2, "a", &v);
    near(v.decayed_units, 5, 1e-12);
    cs_sig_engine_free(e2);
    cs_sig_engine_free(e);
}

static void test_baseline_and_engagement_drop(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    /* 5 units/day for 28 days (baseline 35/week), then 1 unit/day */
    for (int d = 0; d < 28; d++) apply(e, feat("a", at(d, 10 * HOUR), "reports", 5));
    int on_day = -1;
    for (int d = 28; d < 35; d++) {
        cs_sig_changes_reset(&g_ch);
        apply(e, feat("a", at(d, 10 * HOUR), "reports", 1));
        const cs_sig_change *c = find_change("a", CS_SIG_ENGAGEMENT_DROP);
        if (c && on_day < 0) {
            on_day = d;
            assert_true(c->new_value == 1 && c->old_value == 0);
            assert_string_equal(c->new_text, "on");
            assert_non_null(strstr(R(c), "15 units in the last 7 days vs weekly baseline 32.50"));
            assert_int_equal(c->at_us, at(d, 10 * HOUR));
        }
    }
    /* day 32: 7-day usage 2*5 + 5*1 = 15 < 0.5 * (26 days * 5 / 4) = 16.25 */
    assert_int_equal(on_day, 32);
    cs_sig_view v;
    view(e, "a", &v);
    assert_int_equal(v.units_7d, 7);
    assert_int_equal(v.units_base28, 140);
    assert_true(v.engagement_drop);

    /* below the minimum baseline (7/week < 10) nothing flaps */
    cs_sig_changes_reset(&g_ch);
    for (int d = 0; d < 28; d++) apply(e, feat("tiny", at(d + 7, 11 * HOUR), "reports", 1));
    apply(e, mk("tiny", CS_SIG_EV_OTHER, at(42, 11 * HOUR)));
    assert_null(find_change("tiny", CS_SIG_ENGAGEMENT_DROP));
    view(e, "tiny", &v);
    assert_false(v.engagement_drop);
    cs_sig_engine_free(e);
}

static void test_sweep_detects_silence(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    for (int d = 0; d < 28; d++) apply(e, feat("a", at(d, 10 * HOUR), "reports", 5));
    int on_day = -1;
    for (int d = 28; d <= 40; d++) {
        cs_sig_changes_reset(&g_ch);
        apply(e, mk("b", CS_SIG_EV_OTHER, at(d, 12 * HOUR)));
        assert_int_equal(cs_sig_sweep_due(e), 2);
        while (cs_sig_sweep(e, 1, &g_ch)) {
        }
        assert_int_equal(cs_sig_sweep_due(e), 0);
        const cs_sig_change *c = find_change("a", CS_SIG_ENGAGEMENT_DROP);
        if (c && on_day < 0) {
            on_day = d;
            assert_int_equal(c->at_us, at(d, 0));
        }
    }
    /* as of day 31: 7-day usage 3*5 = 15 < 0.5 * (25 days * 5 / 4) = 15.625 */
    assert_int_equal(on_day, 31);
    cs_sig_engine_free(e);
}

static void test_late_events(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    apply(e, feat("a", at(1, 0 * HOUR + 20 * MIN), "reports", 2)); /* 00:20 of day 1 */
    /* 23:30 of day 0: 50 minutes behind the max, inside the 1 h lateness:
     * it lands in day 0, a past window */
    assert_int_equal(apply(e, feat("a", at(0, 23 * HOUR + 30 * MIN), "reports", 3)), CS_SIG_OK);
    cs_sig_view v;
    apply(e, mk("b", CS_SIG_EV_OTHER, at(7, 12 * HOUR)));
    view(e, "a", &v);
    assert_int_equal(v.units_7d, 2);      /* days 1..7 */
    assert_int_equal(v.units_base28, 3);  /* day 0 */
    uint64_t before = cs_sig_state_hash(e);
    /* 2 h behind the max: late, not applied, counted */
    size_t n = g_ch.n;
    assert_int_equal(apply(e, feat("a", at(7, 10 * HOUR), "reports", 50)), CS_SIG_LATE);
    assert_int_equal(g_ch.n, n);
    assert_true(cs_sig_state_hash(e) == before);
    /* exactly at the watermark is still on time */
    assert_int_equal(apply(e, feat("a", at(7, 11 * HOUR), "reports", 1)), CS_SIG_OK);
    cs_sig_stats s;
    cs_sig_stats_get(e, &s);
    assert_int_equal(s.late, 1);
    assert_int_equal(s.applied, 4);
    assert_true(s.watermark_us == at(7, 11 * HOUR));
    cs_sig_engine_free(e);
}

/* --------------------------------------------------------------- signals */

static void test_usage_score_and_filter(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    cs_sig_changes_reset(&g_ch);
    /* key feature: 3 units per count */
    apply(e, feat("a", at(0, HOUR), "export_csv", 2));
    const cs_sig_change *c = find_change("a", CS_SIG_USAGE_SCORE);
    assert_non_null(c);
    assert_false(c->has_old);
    near(c->new_value, (float)(100.0 * 6 / 26), 1e-6);
    /* 1000 more events: one write per threshold crossing or 2-point move, never one per event */
    cs_sig_changes_reset(&g_ch);
    for (int i = 0; i < 1000; i++) apply(e, feat("a", at(0, HOUR + i * 1000), "reports", 1));
    size_t usage = 0;
    for (size_t i = 0; i < g_ch.n; i++) usage += strcmp(g_ch.v[i].signal, CS_SIG_USAGE_SCORE) == 0;
    assert_true(usage > 5 && usage < 50);
    assert_true(g_ch.n < 80);
    for (size_t i = 0; i < g_ch.n; i++)
        if (strcmp(g_ch.v[i].signal, CS_SIG_USAGE_SCORE) == 0)
            assert_true(fabs(g_ch.v[i].new_value - g_ch.v[i].old_value) >= 2.0);
    /* settle writes the sub-epsilon rest: afterwards written == computed */
    cs_sig_changes_reset(&g_ch);
    cs_sig_settle(e, &g_ch);
    cs_sig_view v;
    view(e, "a", &v);
    c = find_change("a", CS_SIG_USAGE_SCORE);
    if (c) near(c->new_value, (float)v.usage_score, 0);
    cs_sig_changes_reset(&g_ch);
    cs_sig_settle(e, &g_ch);
    assert_int_equal(g_ch.n, 0);
    cs_sig_engine_free(e);
}

static void test_activation_milestones(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    cs_sig_changes_reset(&g_ch);
    apply(e, mk("a", CS_SIG_EV_TRIAL_ACTIVATED, at(0, HOUR)));
    assert_null(find_change("a", CS_SIG_ACTIVATION));
    apply(e, feat("a", at(1, HOUR), "reports", 1)); /* not a key feature */
    assert_null(find_change("a", CS_SIG_ACTIVATION));
    apply(e, feat("a", at(1, 2 * HOUR), "export_csv", 1));
    const cs_sig_change *c = find_change("a", CS_SIG_ACTIVATION);
    assert_non_null(c);
    assert_string_equal(c->new_text, "first_key_action");
    apply(e, feat("a", at(5, HOUR), "api", 1));
    cs_sig_changes_reset(&g_ch);
    apply(e, feat("a", at(14, HOUR), "dashboards", 1)); /* day 14: the last day of D = 14 */
    c = find_change("a", CS_SIG_ACTIVATION);
    assert_non_null(c);
    assert_string_equal(c->old_text, "first_key_action");
    assert_string_equal(c->new_text, "activated");
    assert_non_null(strstr(R(c), "3 of 3 key features"));

    /* the third key feature one day too late: not activated */
    apply(e, mk("b", CS_SIG_EV_TRIAL_ACTIVATED, at(14, 2 * HOUR)));
    apply(e, feat("b", at(14, 3 * HOUR), "export_csv", 1));
    apply(e, feat("b", at(15, HOUR), "api", 1));
    apply(e, feat("b", at(29, HOUR), "alerts", 1));
    cs_sig_view v;
    view(e, "b", &v);
    assert_int_equal(v.key_features_by_deadline, 2);
    assert_int_equal(v.stage, CS_SIG_STAGE_FIRST_KEY_ACTION);
    cs_sig_engine_free(e);
}

static void test_renewal_ticket_spike(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    cs_sig_event r = mk("a", CS_SIG_EV_OTHER, at(0, HOUR));
    r.renewal_day = D0 + 30;
    apply(e, r);
    r.account_id = "far";
    r.account_len = 3;
    r.renewal_day = D0 + 100;
    apply(e, r);
    cs_sig_changes_reset(&g_ch);
    for (int d = 0; d <= 10; d += 5) {
        apply(e, mk("a", CS_SIG_EV_SUPPORT_ESCALATED, at(d, 2 * HOUR)));
        apply(e, mk("far", CS_SIG_EV_SUPPORT_ESCALATED, at(d, 2 * HOUR)));
    }
    const cs_sig_change *c = find_change("a", CS_SIG_RENEWAL_SPIKE);
    assert_non_null(c);
    assert_int_equal(c->at_us, at(10, 2 * HOUR));
    assert_string_equal(R(c), "3 escalations in the last 14 days (threshold 3); renewal in 20 days");
    assert_null(find_change("far", CS_SIG_RENEWAL_SPIKE)); /* renewal 90 days out */
    /* day 14: the day-0 ticket has left the 14-day window */
    cs_sig_changes_reset(&g_ch);
    apply(e, mk("b", CS_SIG_EV_OTHER, at(13, 12 * HOUR)));
    cs_sig_sweep(e, 100, &g_ch);
    assert_null(find_change("a", CS_SIG_RENEWAL_SPIKE));
    apply(e, mk("b", CS_SIG_EV_OTHER, at(14, 12 * HOUR)));
    cs_sig_sweep(e, 100, &g_ch);
    c = find_change("a", CS_SIG_RENEWAL_SPIKE);
    assert_non_null(c);
    assert_string_equal(c->new_text, "off");
    cs_sig_engine_free(e);
}

static void test_trial_handoff(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    cs_sig_changes_reset(&g_ch);
    cs_sig_event ev = feat("t", at(0, HOUR), "reports", 29);
    ev.plan_tier = CS_SIG_TIER_TRIAL;
    apply(e, ev); /* score 100 * 29 / 49 = 59.2 < 60 */
    assert_null(find_change("t", CS_SIG_TRIAL_HANDOFF));
    ev = feat("t", at(0, 2 * HOUR), "reports", 1);
    apply(e, ev); /* 100 * 30 / 50 = 60 */
    const cs_sig_change *c = find_change("t", CS_SIG_TRIAL_HANDOFF);
    assert_non_null(c);
    assert_string_equal(c->new_text, "on");
    /* a paying account with the same usage is no handoff */
    ev = feat("p", at(0, 3 * HOUR), "reports", 30);
    ev.plan_tier = CS_SIG_TIER_PRO;
    apply(e, ev);
    assert_null(find_change("p", CS_SIG_TRIAL_HANDOFF));
    /* the trial converts: handoff off (plan tier is last-writer-wins by event time) */
    cs_sig_changes_reset(&g_ch);
    ev = mk("t", CS_SIG_EV_SUBSCRIPTION_UPGRADED, at(0, 4 * HOUR));
    ev.plan_tier = CS_SIG_TIER_PRO;
    apply(e, ev);
    c = find_change("t", CS_SIG_TRIAL_HANDOFF);
    assert_non_null(c);
    assert_string_equal(c->new_text, "off");
    cs_sig_engine_free(e);
}

static void test_health_score_and_bands(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    cs_sig_changes_reset(&g_ch);
    cs_sig_event ev = feat("a", at(0, HOUR), "export_csv", 5); /* key: 15 units */
    ev.user_hash = hs("u1");
    apply(e, ev);
    ev = feat("a", at(0, 2 * HOUR), "reports", 5); /* 5 units: U = 20, usage 50 */
    ev.user_hash = hs("u2");
    apply(e, ev);
    cs_sig_view v;
    view(e, "a", &v);
    double two = -128.0 * log(126.0 / 128.0); /* linear counting, 2 bits set */
    near(v.comp[0], 50, 1e-9);
    near(v.comp[1], 100, 0);       /* no baseline yet, usage this week */
    near(v.comp[2], 100 * two / 5, 1e-9);
    near(v.comp[3], 100 * two / 5, 1e-9);
    near(v.comp[4], 100, 0);
    double want = 0.40 * 50 + 0.25 * 100 + 0.10 * (100 * two / 5) * 2 + 0.15 * 100;
    near(v.health, want, 1e-9); /* 68.06 */
    assert_int_equal(v.band, CS_SIG_BAND_CONCERNING);
    const cs_sig_change *c = find_change("a", CS_SIG_HEALTH_BAND);
    assert_non_null(c);
    assert_string_equal(c->new_text, "concerning");
    c = find_change("a", CS_SIG_HEALTH_SCORE);
    assert_non_null(strstr(R(c), "usage 50.0*0.40 + trend 100.0*0.25"));
    /* a third user: 70.1, healthy */
    cs_sig_changes_reset(&g_ch);
    ev = mk("a", CS_SIG_EV_OTHER, at(0, 3 * HOUR));
    ev.user_hash = hs("u3");
    apply(e, ev);
    view(e, "a", &v);
    near(v.health, 0.40 * 50 + 0.25 * 100 + 0.10 * (100 * two / 5) + 0.10 * (100 * -128.0 * log(125.0 / 128.0) / 5) +
                       0.15 * 100, 1e-9);
    assert_int_equal(v.band, CS_SIG_BAND_HEALTHY);
    c = find_change("a", CS_SIG_HEALTH_BAND);
    assert_non_null(c);
    assert_string_equal(c->old_text, "concerning");
    assert_string_equal(c->new_text, "healthy");
    /* two escalations: support 50, health -7.5 */
    ev = mk("a", CS_SIG_EV_SUPPORT_ESCALATED, at(0, 4 * HOUR));
    apply(e, ev);
    ev.ts_us += HOUR;
    apply(e, ev);
    cs_sig_view v2;
    view(e, "a", &v2);
    near(v2.comp[4], 50, 0);
    near(v2.health, v.health - 0.15 * 50, 1e-9);
    cs_sig_engine_free(e);
}

/* ----------------------------------------------------------- T14, snapshot */

struct tev {
    cs_sig_event ev;
    char         acc[16];
    int64_t      key; /* arrival order key */
};

static uint64_t rng;
static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *const feats[] = {"reports", "export_csv", "dashboards", "api", "sso", "alerts", "integrations",
                                    "billing"};

/* A world: accounts x events over days, every type, in event-time order. */
static struct tev *world(size_t n, int accounts, int days, uint64_t seed)
{
    rng = seed;
    struct tev *w = calloc(n, sizeof *w);
    for (size_t i = 0; i < n; i++) {
        struct tev *t = &w[i];
        int acc = (int)(rnd() % (uint64_t)accounts);
        snprintf(t->acc, sizeof t->acc, "acc_%d", acc);
        int64_t ts = at(0, 0) + (int64_t)((double)i / (double)n * days * DAY) + (int64_t)(rnd() % 1000);
        unsigned pick = (unsigned)(rnd() % 100);
        enum cs_sig_type type = pick < 70   ? CS_SIG_EV_FEATURE_USED
                                : pick < 75 ? CS_SIG_EV_TRIAL_ACTIVATED
                                : pick < 80 ? CS_SIG_EV_SUBSCRIPTION_UPGRADED
                                : pick < 88 ? CS_SIG_EV_SUPPORT_ESCALATED
                                : pick < 92 ? CS_SIG_EV_LEAD
                                            : CS_SIG_EV_OTHER;
        t->ev = mk(t->acc, type, ts);
        char u[16];
        snprintf(u, sizeof u, "u%d", (int)(rnd() % 12));
        t->ev.user_hash = hs(u);
        t->ev.feature_hash = hs(feats[rnd() % 8]);
        t->ev.count = 1 + (uint32_t)(rnd() % 4);
        t->ev.plan_tier = (enum cs_sig_tier)(rnd() % 7);
        if (rnd() % 10 == 0) t->ev.renewal_day = D0 + (int32_t)(rnd() % 120);
        t->ev.trial_days = (int)(rnd() % 30);
        t->key = ts;
    }
    for (size_t i = 0; i < n; i++) w[i].ev.account_id = w[i].acc; /* after any move */
    return w;
}

static int by_key(const void *a, const void *b)
{
    const struct tev *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

static uint64_t run(struct tev *w, size_t n, const cs_sig_config *cfg, cs_sig_engine **keep)
{
    cs_sig_engine *e = eng_new(cfg);
    for (size_t i = 0; i < n; i++) {
        w[i].ev.account_id = w[i].acc;
        int rc = cs_sig_apply(e, &w[i].ev, &g_ch);
        if (rc != CS_SIG_OK) fail_msg("event %zu: rc %d", i, rc);
        if (g_ch.n > 10000) cs_sig_changes_reset(&g_ch);
        if (i % 97 == 0) cs_sig_sweep(e, 50, &g_ch);
    }
    uint64_t h = cs_sig_state_hash(e);
    if (keep) *keep = e;
    else cs_sig_engine_free(e);
    return h;
}

static void test_t14_order_independence(void **state)
{
    (void)state;
    const size_t n = 40000;
    struct tev *w = world(n, 300, 60, 42);
    cs_sig_engine *sorted;
    uint64_t h_sorted = run(w, n, NULL, &sorted);

    /* reversed within 50-minute blocks (each event within 50 min of the max seen) */
    int64_t block = 50 * MIN;
    for (size_t i = 0; i < n; i++) {
        int64_t b = w[i].ev.ts_us / block;
        w[i].key = b * block * 2 + (block - (w[i].ev.ts_us - b * block)); /* blocks ascending, reversed inside */
    }
    qsort(w, n, sizeof *w, by_key);
    uint64_t h_rev = run(w, n, NULL, NULL);
    assert_true(h_rev == h_sorted);

    /* shuffled: arrival = event time + a random delay < lateness */
    for (int s = 0; s < 3; s++) {
        rng = 1000 + (uint64_t)s;
        for (size_t i = 0; i < n; i++) w[i].key = w[i].ev.ts_us + (int64_t)(rnd() % (uint64_t)(59 * MIN));
        qsort(w, n, sizeof *w, by_key);
        cs_sig_engine *sh;
        uint64_t h = run(w, n, NULL, &sh);
        assert_true(h == h_sorted);
        /* settled writes agree too, account by account */
        cs_sig_changes_reset(&g_ch);
        cs_sig_settle(sh, &g_ch);
        cs_sig_changes_reset(&g_ch);
        cs_sig_settle(sorted, &g_ch);
        for (int a = 0; a < 300; a += 37) {
            char id[16];
            snprintf(id, sizeof id, "acc_%d", a);
            cs_sig_view v1, v2;
            view(sorted, id, &v1);
            view(sh, id, &v2);
            assert_memory_equal(&v1, &v2, sizeof v1);
        }
        cs_sig_engine_free(sh);
    }
    /* and the hash does see a difference: one event fewer */
    qsort(w, n, sizeof *w, by_key);
    assert_true(run(w, n - 1, NULL, NULL) != h_sorted);
    cs_sig_stats st;
    cs_sig_stats_get(sorted, &st);
    assert_int_equal(st.late, 0);
    assert_int_equal(st.applied, n);
    cs_sig_engine_free(sorted);
    cs_sig_changes_reset(&g_ch);
    free(w);
}

static void test_snapshot_round_trip_and_replay(void **state)
{
    (void)state;
    const size_t n = 20000, cut = 12000;
    struct tev *w = world(n, 500, 40, 7);
    for (size_t i = 0; i < n; i++) w[i].acc[0] = i % 50 == 0 ? 'A' : 'a'; /* some variety */
    /* one long id (heap-stored) */
    char longid[200];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    cs_sig_engine *full = eng_new(NULL), *part = eng_new(NULL);
    for (size_t i = 0; i < n; i++) {
        cs_sig_event ev = w[i].ev;
        ev.account_id = w[i].acc;
        if (i % 1000 == 0) {
            ev.account_id = longid;
        }
        ev.account_len = strlen(ev.account_id);
        cs_sig_apply(full, &ev, &g_ch);
        if (i < cut) cs_sig_apply(part, &ev, &g_ch);
        cs_sig_changes_reset(&g_ch);
    }
    cs_buf snap;
    cs_buf_init(&snap);
    cs_sig_snapshot(part, &snap);
    char err[200];
    int rc;
    cs_sig_config cfg;
    cs_sig_config_defaults(&cfg);
    cs_sig_engine *rest = cs_sig_restore(&cfg, snap.data, snap.len, &rc, err, sizeof err);
    if (!rest) fail_msg("%s", err);
    assert_true(cs_sig_state_hash(rest) == cs_sig_state_hash(part));
    /* snapshot of the restored engine: the same bytes */
    cs_buf snap2;
    cs_buf_init(&snap2);
    cs_sig_snapshot(rest, &snap2);
    assert_int_equal(snap2.len, snap.len);
    assert_memory_equal(snap2.data, snap.data, snap.len);
    /* restart = snapshot + replay from its offset: same as the uninterrupted run */
    for (size_t i = cut; i < n; i++) {
        cs_sig_event ev = w[i].ev;
        ev.account_id = i % 1000 == 0 ? longid : w[i].acc;
        ev.account_len = strlen(ev.account_id);
        cs_sig_apply(rest, &ev, &g_ch);
        cs_sig_changes_reset(&g_ch);
    }
    assert_true(cs_sig_state_hash(rest) == cs_sig_state_hash(full));

    /* corruption: every flipped byte, sampled, is rejected */
    for (size_t off = 0; off < snap.len; off += 1 + snap.len / 300) {
        snap.data[off] ^= 0x40;
        cs_sig_engine *bad = cs_sig_restore(&cfg, snap.data, snap.len, &rc, err, sizeof err);
        assert_null(bad);
        assert_int_equal(rc, CS_SIG_ECORRUPT);
        snap.data[off] ^= 0x40;
    }
    /* truncated */
    assert_null(cs_sig_restore(&cfg, snap.data, snap.len - 1, &rc, err, sizeof err));
    assert_null(cs_sig_restore(&cfg, snap.data, 10, &rc, err, sizeof err));
    /* a valid checksum over a wrong version is still refused */
    snap.data[4] = 2;
    uint32_t crc = cs_crc32c(0, snap.data, snap.len - 4);
    memcpy(snap.data + snap.len - 4, &crc, 4); /* little-endian host */
    assert_null(cs_sig_restore(&cfg, snap.data, snap.len, &rc, err, sizeof err));
    assert_non_null(strstr(err, "version"));
    snap.data[4] = 1;
    crc = cs_crc32c(0, snap.data, snap.len - 4);
    memcpy(snap.data + snap.len - 4, &crc, 4);
    /* another key-feature list: the windows mean something else */
    cs_sig_config other = cfg;
    other.n_key_features = 1;
    assert_null(cs_sig_restore(&other, snap.data, snap.len, &rc, err, sizeof err));
    assert_non_null(strstr(err, "config"));
    /* a smaller account limit than the snapshot holds */
    other = cfg;
    other.max_accounts = 10;
    assert_null(cs_sig_restore(&other, snap.data, snap.len, &rc, err, sizeof err));
    /* thresholds may change */
    other = cfg;
    other.drop_ratio = 0.3;
    cs_sig_engine *ok = cs_sig_restore(&other, snap.data, snap.len, &rc, err, sizeof err);
    assert_non_null(ok);
    cs_sig_engine_free(ok);

    cs_buf_free(&snap);
    cs_buf_free(&snap2);
    cs_sig_engine_free(rest);
    cs_sig_engine_free(full);
    cs_sig_engine_free(part);
    free(w);
}

static void test_account_limit_and_evict(void **state)
{
    (void)state;
    cs_sig_config c;
    cs_sig_config_defaults(&c);
    c.max_accounts = 3;
    cs_sig_engine *e = eng_new(&c);
    assert_int_equal(apply(e, mk("a", CS_SIG_EV_OTHER, at(0, HOUR))), CS_SIG_OK);
    assert_int_equal(apply(e, mk("b", CS_SIG_EV_OTHER, at(0, 2 * HOUR))), CS_SIG_OK);
    assert_int_equal(apply(e, mk("c", CS_SIG_EV_OTHER, at(1, HOUR))), CS_SIG_OK);
    size_t n = g_ch.n;
    assert_int_equal(apply(e, mk("d", CS_SIG_EV_OTHER, at(1, 2 * HOUR))), CS_SIG_FULL);
    assert_int_equal(g_ch.n, n);
    assert_int_equal(apply(e, mk("a", CS_SIG_EV_OTHER, at(1, 3 * HOUR))), CS_SIG_OK); /* existing: fine */
    /* evict accounts idle since day 1: b only */
    assert_int_equal(cs_sig_evict_idle(e, at(1, 0)), 1);
    cs_sig_view v;
    assert_int_equal(cs_sig_view_account(e, "b", 1, &v), -1);
    view(e, "a", &v);
    view(e, "c", &v);
    assert_int_equal(apply(e, mk("d", CS_SIG_EV_OTHER, at(1, 4 * HOUR))), CS_SIG_OK);
    view(e, "d", &v);
    cs_sig_stats s;
    cs_sig_stats_get(e, &s);
    assert_int_equal(s.refused, 1);
    assert_int_equal(s.accounts, 3);
    /* invalid input */
    cs_sig_event bad = mk("", CS_SIG_EV_OTHER, at(1, 5 * HOUR));
    assert_int_equal(apply(e, bad), CS_SIG_EINVAL);
    cs_sig_engine_free(e);
}

static void test_evict_many_keeps_table_consistent(void **state)
{
    (void)state;
    cs_sig_engine *e = eng_new(NULL);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "acc_%d", i);
        apply(e, mk(id, CS_SIG_EV_OTHER, at(0, (i % 2) ? 2 * HOUR : HOUR)));
    }
    cs_sig_changes_reset(&g_ch);
    assert_int_equal(cs_sig_evict_idle(e, at(0, 2 * HOUR)), 2500);
    cs_sig_view v;
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "acc_%d", i);
        assert_int_equal(cs_sig_view_account(e, id, strlen(id), &v), (i % 2) ? 0 : -1);
    }
    cs_sig_engine_free(e);
}

static void test_memory_per_account(void **state)
{
    (void)state;
    assert_true(cs_sig_account_size() <= 512);
    cs_sig_engine *e = eng_new(NULL);
    char id[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(id, sizeof id, "acc_%07d", i);
        apply(e, mk(id, CS_SIG_EV_OTHER, at(0, HOUR)));
    }
    cs_sig_changes_reset(&g_ch);
    cs_sig_stats s;
    cs_sig_stats_get(e, &s);
    assert_int_equal(s.accounts, 100000);
    double per = (double)s.bytes / 100000.0;
    if (per > 512) fail_msg("%.1f bytes per account", per);
    cs_sig_engine_free(e);
}

/* --------------------------------------------------------------- decode */

static void test_decode_canonical_json(void **state)
{
    (void)state;
    const char *js =
        "{\"event_id\":\"e1\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_42\",\"user_id\":\"u_7\","
        "\"timestamp\":\"2026-11-27T10:00:00.123Z\",\"product_area\":\"reports\",\"plan_tier\":\"trial\","
        "\"properties\":{\"feature\":\"export_csv\",\"count\":3,\"renewal_date\":\"2027-01-31\"}}";
    cJSON *o = cJSON_Parse(js);
    cs_sig_event ev;
    assert_int_equal(cs_sig_decode(o, &ev), 0);
    assert_int_equal(ev.type, CS_SIG_EV_FEATURE_USED);
    assert_int_equal(ev.account_len, 6);
    assert_true(ev.account_hash == hs("acc_42"));
    assert_true(ev.user_hash == hs("u_7"));
    assert_true(ev.feature_hash == hs("export_csv"));
    assert_int_equal(ev.count, 3);
    assert_int_equal(ev.plan_tier, CS_SIG_TIER_TRIAL);
    int32_t d;
    assert_int_equal(cs_sig_parse_day("2027-01-31", &d), 0);
    assert_int_equal(d, 20849);
    assert_int_equal(ev.renewal_day, 20849);
    int64_t us;
    cs_parse_time("2026-11-27T10:00:00.123Z", &us);
    assert_true(ev.ts_us == us);
    cJSON_Delete(o);

    o = cJSON_Parse("{\"type\":\"SubscriptionUpgraded\",\"account_id\":\"a\",\"timestamp\":\"2026-01-01T00:00:00Z\","
                    "\"plan_tier\":\"trial\",\"properties\":{\"plan_tier\":\"enterprise\"}}");
    assert_int_equal(cs_sig_decode(o, &ev), 0);
    assert_int_equal(ev.plan_tier, CS_SIG_TIER_ENTERPRISE);
    cJSON_Delete(o);
    o = cJSON_Parse("{\"type\":\"TrialActivated\",\"account_id\":\"a\",\"timestamp\":\"2026-01-01T00:00:00Z\","
                    "\"properties\":{\"trial_days\":30}}");
    assert_int_equal(cs_sig_decode(o, &ev), 0);
    assert_int_equal(ev.trial_days, 30);
    cJSON_Delete(o);
    /* a prospect's lead (no account) and a bad time are not for this engine */
    o = cJSON_Parse("{\"type\":\"LeadCreated\",\"timestamp\":\"2026-01-01T00:00:00Z\"}");
    assert_int_equal(cs_sig_decode(o, &ev), CS_SIG_EINVAL);
    cJSON_Delete(o);
    o = cJSON_Parse("{\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"timestamp\":\"yesterday\"}");
    assert_int_equal(cs_sig_decode(o, &ev), CS_SIG_EINVAL);
    cJSON_Delete(o);
    assert_int_equal(cs_sig_parse_day("2027-02-29", &d), -1);
    assert_int_equal(cs_sig_parse_day("2028-02-29", &d), 0);
    assert_int_equal(cs_sig_parse_day("1970-01-01", &d), 0);
    assert_int_equal(d, 0);
}

static void test_config_check(void **state)
{
    (void)state;
    cs_sig_config c;
    char err[200];
    cs_sig_config_defaults(&c);
    assert_int_equal(cs_sig_config_check(&c, err, sizeof err), 0);
    c.lateness_us = 2 * DAY;
    assert_int_equal(cs_sig_config_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "allowed_lateness"));
    cs_sig_config_defaults(&c);
    c.spike_window_days = 17;
    assert_null(cs_sig_engine_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "window"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sliding_day_windows),
        cmocka_unit_test(test_tumbling_weeks_users),
        cmocka_unit_test(test_decay_and_tail),
        cmocka_unit_test(test_baseline_and_engagement_drop),
        cmocka_unit_test(test_sweep_detects_silence),
        cmocka_unit_test(test_late_events),
        cmocka_unit_test(test_usage_score_and_filter),
        cmocka_unit_test(test_activation_milestones),
        cmocka_unit_test(test_renewal_ticket_spike),
        cmocka_unit_test(test_trial_handoff),
        cmocka_unit_test(test_health_score_and_bands),
        cmocka_unit_test(test_t14_order_independence),
        cmocka_unit_test(test_snapshot_round_trip_and_replay),
        cmocka_unit_test(test_account_limit_and_evict),
        cmocka_unit_test(test_evict_many_keeps_table_consistent),
        cmocka_unit_test(test_memory_per_account),
        cmocka_unit_test(test_decode_canonical_json),
        cmocka_unit_test(test_config_check),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
