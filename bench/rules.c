/*
 * bench/rules — ns per event to evaluate a rule set of 100 realistic rules
 * (src/rules: compiled once at load, evaluated without allocation) against
 * a naive baseline in the same run: an interpreter that re-parses every
 * condition from its source text for every event (compile + evaluate +
 * free), which is what a string-based rule engine costs.
 *
 *   build/bench/rules [EVENTS] [REPS]      (bench/rules.sh drives it)
 *
 * Both sides see the same events (1,024 synthetic events cycled: the six seed
 * types, varied plan tiers, scores, countries, emails) and must agree on the
 * number of matching rules; the timed loop covers only evaluation. Prints
 * key=value lines on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "core/config.h"
#include "core/util.h"
#include "routing/router.h"
#include "rules/rules.h"
#include "store/store.h"

#define NRULES  100
#define NEVENTS 1024

struct ev {
    const char *type, *plan_tier, *feature, *source, *severity, *country, *email, *product_area;
    double      usage_score, mrr, usage_drop, event_mrr;
    int64_t     logins_7d, employee_count, count, trial_days, ts_us, renewal_us;
    int         has_trial_days;
    cs_value    tags[3];
    size_t      ntags;
};

static struct ev events[NEVENTS];

#define STR(s) cs_vstr((s), strlen(s))

/* Path dispatch as a wiring layer would do it: length, then bytes. */
static int lookup(void *ud, const char *p, size_t n, cs_value *out)
{
    const struct ev *e = ud;
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(p, lit, n) == 0)
    if (IS("event.type")) *out = STR(e->type);
    else if (IS("account.plan_tier")) *out = STR(e->plan_tier);
    else if (IS("signals.usage_score")) *out = cs_vdouble(e->usage_score);
    else if (IS("signals.logins_7d")) *out = cs_vint(e->logins_7d);
    else if (IS("signals.usage_drop")) *out = cs_vdouble(e->usage_drop);
    else if (IS("account.mrr")) *out = cs_vdouble(e->mrr);
    else if (IS("event.properties.mrr")) *out = cs_vdouble(e->event_mrr);
    else if (IS("event.properties.feature")) *out = STR(e->feature);
    else if (IS("event.properties.severity")) *out = STR(e->severity);
    else if (IS("event.properties.source")) *out = STR(e->source);
    else if (IS("event.properties.count")) *out = cs_vint(e->count);
    else if (IS("event.properties.trial_days")) {
        if (!e->has_trial_days) return 0;
        *out = cs_vint(e->trial_days);
    } else if (IS("event.product_area")) *out = STR(e->product_area);
    else if (IS("event.timestamp")) *out = (cs_value){.type = CS_V_TIMESTAMP, .u.us = e->ts_us};
    else if (IS("account.renewal_at")) *out = (cs_value){.type = CS_V_TIMESTAMP, .u.us = e->renewal_us};
    else if (IS("account.tags")) {
        out->type = CS_V_LIST;
        out->u.list.items = e->tags, out->u.list.n = e->ntags;
    } else if (IS("lead.email")) *out = STR(e->email);
    else if (IS("lead.country")) *out = STR(e->country);
    else if (IS("lead.employee_count")) *out = cs_vint(e->employee_count);
    else if (IS("account.id")) *out = STR("acc_42");
    else return 0;
    return 1;
#undef IS
}

static const char *const templates[10] = {
    "event.type == \"FeatureUsed\" && account.plan_tier == \"trial\" && signals.usage_score >= %d.0",
    "event.type == \"SubscriptionUpgraded\" && event.properties.mrr > %d.0",
    "event.type in [\"LeadCreated\", \"DemoRequested\"] && lead.employee_count >= %d && lead.country in [\"DE\", \"FR\", \"GB\"]",
    "signals.usage_score < %d.0 && account.plan_tier != \"trial\" && account.renewal_at - event.timestamp < duration(\"720h\")",
    "event.type == \"SupportCaseEscalated\" && event.properties.severity == \"high\" && account.mrr > %d.0",
    "event.type == \"LeadCreated\" && !lead.email.endsWith(\"@gmail.com\") && event.properties.source.startsWith(\"web\") && lead.employee_count > %d",
    "event.type == \"FeatureUsed\" && event.properties.feature in [\"export_csv\", \"api_keys\", \"sso\"] && signals.logins_7d > %d",
    "event.type == \"TrialActivated\" && has(event.properties.trial_days) && event.properties.trial_days < %d",
    "account.tags.exists(t, t == \"strategic\") && signals.usage_drop < -0.%d",
    "event.product_area == \"reports\" && event.properties.count >= %d",
};

static char *rule_src[NRULES];

static void make_events(void)
{
    static const char *const types[] = {"FeatureUsed", "FeatureUsed", "FeatureUsed", "LeadCreated", "DemoRequested",
                                        "TrialActivated", "SubscriptionUpgraded", "SupportCaseEscalated"};
    static const char *const tiers[] = {"trial", "starter", "pro", "enterprise"};
    static const char *const feats[] = {"export_csv", "dashboards", "api_keys", "sso", "reports"};
    static const char *const ctry[] = {"DE", "US", "FR", "GB", "BR"};
    static const char *const emails[] = {"ana@acme.io", "bo@gmail.com", "cy@globex.com"};
    static const char *const areas[] = {"reports", "billing", "admin"};
    static const char *const tagv[] = {"strategic", "eu", "beta"};
    uint64_t x = 42;
    for (int i = 0; i < NEVENTS; i++) {
        struct ev *e = &events[i];
#define R() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
        e->type = types[R() % 8];
        e->plan_tier = tiers[R() % 4];
        e->feature = feats[R() % 5];
        e->source = R() % 2 ? "web_form" : "partner";
        e->severity = R() % 3 ? "low" : "high";
        e->country = ctry[R() % 5];
        e->email = emails[R() % 3];
        e->product_area = areas[R() % 3];
        e->usage_score = (double)(R() % 1000) / 10.0;
        e->mrr = (double)(R() % 20000);
        e->event_mrr = (double)(R() % 5000);
        e->usage_drop = -(double)(R() % 100) / 100.0;
        e->logins_7d = (int64_t)(R() % 40);
        e->employee_count = (int64_t)(R() % 5000);
        e->count = (int64_t)(R() % 20);
        e->has_trial_days = R() % 2;
        e->trial_days = (int64_t)(R() % 30);
        e->ts_us = 1795773600000000LL + (int64_t)(R() % 86400) * 1000000;
        e->renewal_us = e->ts_us + (int64_t)(R() % 90) * 86400000000LL;
        e->ntags = R() % 4;
        for (size_t k = 0; k < e->ntags; k++) e->tags[k] = STR(tagv[(k + x) % 3]);
#undef R
    }
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, long n, double q)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_d);
    long i = (long)(q * (double)(n - 1) + 0.5);
    return v[i];
}

static const char *const zones[] = {"Europe/Berlin", "Europe/London", "America/New_York", "America/Chicago",
                                    "America/Los_Angeles", "Asia/Tokyo", "Asia/Singapore", "Australia/Sydney"};
static const char *const countries[] = {"DE", "FR", "GB", "US", "CA", "BR", "JP", "SG", "AU", "NL"};

/* n decisions on a store holding nreps rep objects (0: the config's 3 reps,
 * round robin); lat_us[] gets the store-path latency of each, pure_us[] (may
 * be NULL) the pure decision's. 0 or -1. */
static int route_run(int nreps, long n, double *lat_us, double *pure_us)
{
    char dir[64], spec[128], err[512];
    snprintf(dir, sizeof dir, "/tmp/crmstream-bench-routing-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(spec, sizeof spec, "sqlite:%s/crm.sqlite", dir);
    cs_store *st = cs_store_open(spec, dir, err, sizeof err);
    if (!st) {
        fprintf(stderr, "rules: %s\n", err);
        return -1;
    }
    cs_config cfg;
    cs_config_defaults(&cfg);
    if (nreps == 0 && cs_config_load_string(&cfg, "bench.yaml",
                                            "routing:\n  reps:\n    - {id: rep_ada}\n    - {id: rep_grace}\n"
                                            "    - {id: rep_linus}\n",
                                            err, sizeof err))
        return -1;
    cs_cause cause = {"bench", 0, 0, "api", "2026-11-30T00:00:00.000Z"};
    st->ops->begin(st);
    for (int i = 0; i < nreps; i++) {
        char id[32], terr[160], cap[16], w[16], pools[64];
        static const char *const regions[] = {"emea", "amer", "apac"};
        snprintf(id, sizeof id, "rep_%03d", i);
        snprintf(pools, sizeof pools, "[\"%s\",\"all\"]", regions[i % 3]);
        snprintf(terr, sizeof terr, "{\"regions\":[\"%s\"]%s}", regions[i % 3],
                 i % 4 == 0 ? ",\"segments\":[\"mid\",\"enterprise\"]" : "");
        snprintf(cap, sizeof cap, "%d", 20 + i % 30);
        snprintf(w, sizeof w, "%d", 1 + i % 4);
        cs_kv kv[] = {{"name", id},           {"pools", pools}, {"territory", terr},
                      {"capacity", cap},      {"weight", w},    {"timezone", zones[i % 8]},
                      {"working_hours", "{\"weekdays\":\"08:00-18:00\"}"}, {"out_of_office", i % 17 == 0 ? "1" : "0"}};
        if (st->ops->obj_upsert(st, CS_OBJ_REP, id, kv, 8, &cause) < 0) return -1;
    }
    if (st->ops->commit(st)) return -1;
    cs_route_policy p;
    if (nreps) {
        memset(&p, 0, sizeof p);
        snprintf(p.rule_id, sizeof p.rule_id, "bench");
        p.strategy = CS_RS_WEIGHTED_ROUND_ROBIN;
        p.territory = 1;
        p.working_hours = 1;
        p.max_open_leads = 40;
        cs_route_policy_normalise(&p);
    } else {
        cs_route_policy_from_config(&cfg, &p);
    }
    static cs_route_result r, r2;
    static cs_lead l;
    cs_route_reps reps = {0};
    int64_t t0;
    cs_parse_time("2026-11-30T14:00:00Z", &t0);
    int rc = 0;
    for (long i = 0; i < n && rc == 0; i++) {
        if (i % 100 == 0 && st->ops->begin(st)) rc = -1;
        memset(&l, 0, sizeof l);
        snprintf(l.id, sizeof l.id, "ld_%ld", i);
        snprintf(l.event_id, sizeof l.event_id, "ev_%ld", i);
        snprintf(l.email, sizeof l.email, "p%ld@company%ld.example", i, i % 5000);
        snprintf(l.country, sizeof l.country, "%s", countries[i % 10]);
        snprintf(l.created_at, sizeof l.created_at, "2026-11-30T14:00:00Z");
        l.employee_count = (i * 37) % 3000;
        int64_t now = t0 + i * 1000;
        double a = now_ns();
        if (cs_route_lead_store(st, &cfg, &p, &l, now, NULL, 0, &r)) rc = -1;
        lat_us[i] = (now_ns() - a) / 1000.0;
        if (pure_us && rc == 0) {
            /* the pure decision over the same reps (loaded outside the timer) */
            if (cs_route_reps_load(st, &cfg, &reps, 1)) rc = -1;
            cs_route_lead lead = {.id = l.id, .email = l.email, .domain = l.domain, .country = l.country,
                                  .region = cs_route_region(l.country), .segment = cs_route_segment(l.employee_count),
                                  .employee_count = l.employee_count};
            a = now_ns();
            cs_route_decide(&p, &lead, reps.v, reps.n, now, 0, NULL, 0, &r2);
            pure_us[i] = (now_ns() - a) / 1000.0;
        }
        cs_fmt_time_ms(now, l.routed_at, sizeof l.routed_at);
        if (rc == 0 && (st->ops->lead_insert(st, &l) < 0 || cs_route_commit(st, &p, &r))) rc = -1;
        if (rc == 0 && (i % 100 == 99 || i == n - 1) && st->ops->commit(st)) rc = -1;
    }
    if (rc) fprintf(stderr, "rules: routing bench: %s\n", st->errmsg);
    cs_route_reps_free(&reps);
    st->ops->close(st);
    cs_config_free(&cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return -1;
    return rc;
}

static int route_bench(long n)
{
    double *lat = cs_malloc((size_t)n * sizeof *lat), *pure = cs_malloc((size_t)n * sizeof *pure),
           *rr = cs_malloc((size_t)n * sizeof *rr);
    if (route_run(200, n, lat, pure) || route_run(0, n, rr, NULL)) return -1;
    printf("route_reps=200\nroute_decisions=%ld\n", n);
    printf("route_p50_us=%.1f\nroute_p99_us=%.1f\n", pct(lat, n, 0.50), pct(lat, n, 0.99));
    printf("route_decide_p50_us=%.1f\nroute_decide_p99_us=%.1f\n", pct(pure, n, 0.50), pct(pure, n, 0.99));
    printf("route_rr3_p50_us=%.1f\nroute_rr3_p99_us=%.1f\n", pct(rr, n, 0.50), pct(rr, n, 0.99));
    free(lat);
    free(pure);
    free(rr);
    return 0;
}

int main(int argc, char **argv)
{
    long nev = argc > 1 ? atol(argv[1]) : 200000;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    long routes = argc > 3 ? atol(argv[3]) : 0;
    if (nev < NEVENTS || reps < 1 || reps > 50) {
        fprintf(stderr, "usage: rules [EVENTS >= %d] [REPS 1..50]\n", NEVENTS);
        return 2;
    }
    make_events();
    /* The rule set as a user writes it: YAML, one alert or task per rule. */
    cs_buf y;
    cs_buf_init(&y);
    cs_buf_adds(&y, "rules:\n");
    for (int i = 0; i < NRULES; i++) {
        char cond[512];
        int t = i % 10, k = i / 10;
        int param = t == 0 ? 40 + k * 5 : t == 1 ? 500 + k * 300 : t == 2 ? 100 + k * 200 : t == 3 ? 10 + k * 3
                  : t == 4 ? 1000 + k * 1500 : t == 5 ? 50 + k * 100 : t == 6 ? 5 + k * 3 : t == 7 ? 5 + k * 2
                  : t == 8 ? 1 + k * 9 : 2 + k;
        snprintf(cond, sizeof cond, templates[t], param);
        rule_src[i] = cs_strdup(cond);
        cs_buf_printf(&y, "  - id: rule-%03d\n    when: '%s'\n    actions:\n", i, cond);
        if (t == 3 || t == 8)
            cs_buf_printf(&y, "      - raise_alert: {kind: churn_risk, severity: warning, dedupe_key: \"r%d:{{ account.id }}\", cooldown: 24h}\n", i);
        else
            cs_buf_adds(&y, "      - create_task: {title: \"Follow up\", due_in: 4h}\n");
    }
    /* YAML single quotes: the templates use only double quotes. */
    char err[512];
    cs_ruleset *rs = cs_rules_load_string("bench.yaml", y.data, y.len, NULL, err, sizeof err);
    if (!rs) {
        fprintf(stderr, "rules: %s\n", err);
        return 1;
    }
    static cs_expr_env env;
    static cs_rule_hit hits[256];
    double fast[50], slow[50];
    long matches_fast = 0, matches_slow = 0, errors = 0;
    /* The baseline is ~100x slower: it runs over fewer events. */
    long nslow = getenv("RULES_BENCH_NO_BASELINE") ? 0 : nev / 50 < NEVENTS ? NEVENTS : nev / 50;
    for (int r = 0; r < reps; r++) {
        cs_rules_stats st = {0};
        long m = 0;
        double t0 = now_ns();
        for (long i = 0; i < nev; i++) {
            struct ev *e = &events[i % NEVENTS];
            cs_expr_env_init(&env, lookup, NULL, e);
            m += (long)cs_rules_eval(rs, &env, e->ts_us, NULL, hits, 256, &st);
        }
        fast[r] = (now_ns() - t0) / (double)nev;
        matches_fast = m;
        errors = (long)st.errors;
        /* baseline: parse every condition from text for every event */
        m = 0;
        t0 = now_ns();
        for (long i = 0; i < nslow; i++) {
            struct ev *e = &events[i % NEVENTS];
            cs_expr_env_init(&env, lookup, NULL, e);
            for (int k = 0; k < NRULES; k++) {
                cs_expr *x = cs_expr_compile(rule_src[k], strlen(rule_src[k]), NULL, NULL);
                m += cs_expr_test(x, &env, NULL) == 1;
                cs_expr_free(x);
            }
        }
        slow[r] = nslow ? (now_ns() - t0) / (double)nslow : 0;
        matches_slow = m;
    }
    /* Same answers on both sides (per event over the baseline's events). */
    long check = 0;
    cs_rules_stats st2 = {0};
    for (long i = 0; i < nslow; i++) {
        struct ev *e = &events[i % NEVENTS];
        cs_expr_env_init(&env, lookup, NULL, e);
        check += (long)cs_rules_eval(rs, &env, e->ts_us, NULL, hits, 256, &st2);
    }
    if (check != matches_slow) {
        fprintf(stderr, "rules: compiled and baseline disagree: %ld vs %ld matches\n", check, matches_slow);
        return 1;
    }
    qsort(fast, (size_t)reps, sizeof fast[0], cmp_d);
    qsort(slow, (size_t)reps, sizeof slow[0], cmp_d);
    double f = fast[reps / 2], s = slow[reps / 2];
    size_t bytes = 0;
    for (size_t i = 0; i < cs_ruleset_count(rs); i++) bytes += cs_expr_size(cs_ruleset_rule(rs, i)->when);
    printf("rules=%d\nevents=%ld\nbaseline_events=%ld\nreps=%d\n", NRULES, nev, nslow, reps);
    printf("ns_per_event=%.1f\nbaseline_ns_per_event=%.1f\nratio=%.1f\n", f, s, s / f);
    printf("ns_per_rule=%.2f\nmatches_per_event=%.3f\neval_errors=%ld\ncompiled_bytes=%zu\n", f / NRULES,
           (double)matches_fast / (double)nev, errors, bytes);
    cs_ruleset_unref(rs);
    for (int i = 0; i < NRULES; i++) free(rule_src[i]);
    cs_buf_free(&y);
    if (routes > 0 && route_bench(routes)) return 1;
    return 0;
}
