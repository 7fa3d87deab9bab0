/*
 * Unit tests for rules/rules: a valid rules file loads with every action and
 * its parameters; each validation error names file:line:column exactly; a
 * failed reload leaves the previous rule set usable; evaluation returns the
 * matching rules' actions in order; templates render; the alert cooldown
 * suppresses by dedupe key in event time, counts, and stays bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/util.h"
#include "rules/rules.h"

/* A tiny variable store for the tests: path -> string or number. */
struct var {
    const char *path;
    cs_value    v;
};
static struct var vars[16];
static size_t     nvars;

static void set_str(const char *path, const char *s)
{
    for (size_t i = 0; i < nvars; i++)
        if (strcmp(vars[i].path, path) == 0) {
            vars[i].v = cs_vstr(s, strlen(s));
            return;
        }
    vars[nvars++] = (struct var){path, cs_vstr(s, strlen(s))};
}

static void set_num(const char *path, double d)
{
    for (size_t i = 0; i < nvars; i++)
        if (strcmp(vars[i].path, path) == 0) {
            vars[i].v = cs_vdouble(d);
            return;
        }
    vars[nvars++] = (struct var){path, cs_vdouble(d)};
}

static int lookup(void *ud, const char *path, size_t len, cs_value *out)
{
    (void)ud;
    for (size_t i = 0; i < nvars; i++)
        if (strlen(vars[i].path) == len && memcmp(vars[i].path, path, len) == 0) {
            *out = vars[i].v;
            return 1;
        }
    return 0;
}

static const char valid_yaml[] =
    "# crmstream rules\n"
    "rules:\n"
    "  - id: trial-power-user\n"
    "    description: Trial account using reports heavily\n"
    "    when: event.type == \"FeatureUsed\" && account.plan_tier == \"trial\" && signals.usage_score >= 60.0\n"
    "    actions:\n"
    "      - create_task: {title: \"Call {{ account.name }}\", due_in: 4h, object: account}\n"
    "      - set_field: {object: account, field: stage, value: \"{{ signals.usage_score }}\"}\n"
    "      - slack: {destination: sales, text: \"{{ account.name }} is hot\"}\n"
    "  - id: usage-drop\n"
    "    when: |\n"
    "      signals.usage_score < 20.0 &&\n"
    "      account.plan_tier != \"trial\"\n"
    "    actions:\n"
    "      - raise_alert:\n"
    "          kind: churn_risk\n"
    "          severity: warning\n"
    "          dedupe_key: \"churn:{{ account.id }}\"\n"
    "          cooldown: 24h\n"
    "          message: \"Usage of {{ account.name }} fell to {{ signals.usage_score }}\"\n"
    "      - webhook: {destination: cs-platform, template: '{\"account\": \"{{ account.name }}\"}'}\n"
    "  - id: new-lead\n"
    "    when: event.type == 'LeadCreated'\n"
    "    actions:\n"
    "      - route_lead: {strategy: round_robin, pool: emea, fallback: inbound-queue, max_open_leads: 20, working_hours: true, sla: 30m}\n"
    "      - emit_event: {type: LeadRouted, properties: {email: \"{{ lead.email }}\", source: rules}}\n"
    "  - id: owner-by-domain\n"
    "    enabled: false\n"
    "    when: true\n"
    "    actions:\n"
    "      - assign_owner: {rep: \"{{ account.owner }}\"}\n";

static cs_ruleset *load(const char *yaml, char *err, size_t errlen)
{
    return cs_rules_load_string("rules.yaml", yaml, strlen(yaml), NULL, err, errlen);
}

static void test_valid_file(void **state)
{
    (void)state;
    char err[512] = "";
    cs_ruleset *rs = load(valid_yaml, err, sizeof err);
    if (!rs) fail_msg("%s", err);
    assert_int_equal(cs_ruleset_count(rs), 4);
    const cs_rule *r = cs_ruleset_rule(rs, 0);
    assert_string_equal(r->id, "trial-power-user");
    assert_string_equal(r->description, "Trial account using reports heavily");
    assert_int_equal(r->line, 3);
    assert_int_equal(r->nactions, 3);
    assert_int_equal(r->actions[0].kind, CS_ACT_CREATE_TASK);
    assert_string_equal(cs_action_name(r->actions[0].kind), "create_task");
    assert_int_equal(cs_action_param(&r->actions[0], "due_in")->dur_us, 4 * 3600000000LL);
    assert_string_equal(cs_action_param(&r->actions[0], "object")->text, "account");
    assert_null(cs_action_param(&r->actions[0], "owner"));
    assert_string_equal(r->actions[0].rule_id, "trial-power-user");
    /* set_field value "{{ expr }}" exposes the typed expression */
    assert_non_null(cs_template_expr(cs_action_param(&r->actions[1], "value")->tpl));
    assert_null(cs_template_literal(cs_action_param(&r->actions[1], "value")->tpl));
    r = cs_ruleset_find(rs, "usage-drop");
    assert_non_null(r);
    assert_string_equal(cs_expr_source(r->when), "signals.usage_score < 20.0 &&\naccount.plan_tier != \"trial\"\n");
    const cs_action *al = &r->actions[0];
    assert_int_equal(al->kind, CS_ACT_RAISE_ALERT);
    assert_int_equal(cs_action_param(al, "cooldown")->dur_us, 86400000000LL);
    assert_string_equal(cs_action_param(al, "severity")->text, "warning");
    assert_int_equal(cs_action_param(al, "severity")->line, 17);
    assert_int_equal(cs_action_param(al, "severity")->col, 21);
    r = cs_ruleset_find(rs, "new-lead");
    const cs_action *rl = &r->actions[0];
    assert_int_equal(cs_action_param(rl, "max_open_leads")->num, 20);
    assert_int_equal(cs_action_param(rl, "working_hours")->num, 1);
    assert_int_equal(cs_action_param(rl, "sla")->dur_us, 1800000000LL);
    assert_string_equal(cs_template_literal(cs_action_param(&r->actions[1], "properties.source")->tpl), "rules");
    assert_non_null(cs_action_param(&r->actions[1], "properties.email"));
    assert_int_equal(cs_ruleset_find(rs, "owner-by-domain")->enabled, 0);
    assert_null(cs_ruleset_find(rs, "nope"));
    assert_string_equal(cs_ruleset_name(rs), "rules.yaml");
    /* a bare list at the top level is accepted too, and an empty file is no rules */
    cs_ruleset *rs2 = load("- id: a\n  when: 'true'\n  actions: [{slack: {destination: x, text: y}}]\n", err, sizeof err);
    if (!rs2) fail_msg("%s", err);
    assert_int_equal(cs_ruleset_count(rs2), 1);
    cs_ruleset_unref(rs2);
    rs2 = load("", err, sizeof err);
    assert_non_null(rs2);
    assert_int_equal(cs_ruleset_count(rs2), 0);
    cs_ruleset_unref(rs2);
    cs_ruleset_unref(rs);
}

struct errcase {
    const char *yaml;
    const char *want; /* exact prefix of the error, from "rules.yaml:" */
};

#define HDR "rules:\n  - id: r1\n    when: event.type == 'X'\n    actions:\n"

static void test_validation_errors(void **state)
{
    (void)state;
    static const struct errcase cases[] = {
        /* YAML syntax */
        {"rules: [\n", "rules.yaml:2:1: "},
        /* top level */
        {"rulez: []\n", "rules.yaml:1:1: unknown top-level key \"rulez\""},
        {"rules: 5\n", "rules.yaml:1:8: expected a list of rules"},
        {"version: 2\nrules: []\n", "rules.yaml:1:10: version: only 1 is supported"},
        /* rule keys */
        {"rules:\n  - id: r1\n    whn: x\n", "rules.yaml:3:5: unknown key \"whn\" in rule"},
        {"rules:\n  - when: 'true'\n    actions: []\n", "rules.yaml:2:5: rule without an id"},
        {"rules:\n  - id: 'bad id'\n    when: 'true'\n", "rules.yaml:2:9: id: 1 to 128"},
        {"rules:\n  - id: r1\n    actions: [{slack: {destination: x, text: y}}]\n", "rules.yaml:2:5: rule \"r1\": missing \"when\""},
        {"rules:\n  - id: r1\n    when: 'true'\n", "rules.yaml:2:5: rule \"r1\": missing \"actions\""},
        {"rules:\n  - id: r1\n    when: 'true'\n    actions: []\n", "rules.yaml:4:14: rule \"r1\": actions: expected a non-empty list"},
        {"rules:\n  - id: r1\n    id: r2\n", "rules.yaml:3:5: rule: duplicate key \"id\""},
        {"rules:\n  - id: r1\n    enabled: maybe\n", "rules.yaml:3:14: enabled: expected true or false"},
        {"rules:\n  - id: r1\n    when: 'true'\n    actions: [{slack: {destination: x, text: y}}]\n"
         "  - id: r1\n    when: 'true'\n    actions: [{slack: {destination: x, text: y}}]\n",
         "rules.yaml:5:9: rule \"r1\": duplicate rule id (first at line 2)"},
        /* bad expressions: the column points into the expression */
        {"rules:\n  - id: r1\n    when: event.type == 'X' &&\n    actions: []\n", "rules.yaml:3:31: rule \"r1\": when: unexpected end of expression"},
        {"rules:\n  - id: r1\n    when: evnt.type == 'X'\n", "rules.yaml:3:11: rule \"r1\": when: unknown variable 'evnt'"},
        {"rules:\n  - id: r1\n    when: \"event.type == 'X' && account.x = 1\"\n", "rules.yaml:3:43: rule \"r1\": when: unexpected '=' (did you mean '=='?)"},
        {"rules:\n  - id: r1\n    when: |\n      event.type == 'X' &&\n        size(1, 2) > 0\n", "rules.yaml:5:9: rule \"r1\": when: size() takes 1 argument"},
        {"rules:\n  - id: r1\n    when: \"'a'.matches('(')\"\n", "rules.yaml:3:24: rule \"r1\": when: invalid regular expression"},
        {"rules:\n  - id: r1\n    when: [1]\n", "rules.yaml:3:11: rule \"r1\": when: expected an expression"},
        /* actions */
        {HDR "      - send_fax: {to: x}\n", "rules.yaml:5:9: rule \"r1\": unknown action \"send_fax\""},
        {HDR "      - slack: {destination: x, text: y}\n        webhook: {destination: y}\n", "rules.yaml:5:9: rule \"r1\": each action is a mapping with one key"},
        {HDR "      - slack: {destination: x, txt: y}\n", "rules.yaml:5:33: rule \"r1\": slack: unknown key \"txt\" (expected destination, text)"},
        {HDR "      - slack: {destination: x}\n", "rules.yaml:5:9: rule \"r1\": slack: missing required key \"text\""},
        {HDR "      - slack: [x]\n", "rules.yaml:5:16: rule \"r1\": slack: expected a mapping"},
        {HDR "      - create_task: {title: t, due_in: soon}\n", "rules.yaml:5:41: rule \"r1\": due_in: invalid duration \"soon\""},
        {HDR "      - raise_alert: {kind: k, severity: high, dedupe_key: d}\n", "rules.yaml:5:42: rule \"r1\": severity: \"high\" is not one of info,warning,critical"},
        {HDR "      - raise_alert: {kind: k, severity: info, dedupe_key: d, cooldown: -5m}\n", "rules.yaml:5:73: rule \"r1\": cooldown: invalid duration"},
        {HDR "      - raise_alert: {kind: k, severity: info, dedupe_key: \"a:{{ account.id +}}\"}\n", "rules.yaml:5:78: rule \"r1\": dedupe_key: unexpected end"},
        {HDR "      - raise_alert: {kind: k, severity: info, dedupe_key: \"a:{{ account.id\"}\n", "rules.yaml:5:63: rule \"r1\": dedupe_key: unterminated {{"},
        {HDR "      - route_lead: {strategy: lottery}\n", "rules.yaml:5:32: rule \"r1\": strategy: \"lottery\" is not one of"},
        {HDR "      - route_lead: {strategy: round_robin, max_open_leads: lots}\n", "rules.yaml:5:61: rule \"r1\": max_open_leads: expected a non-negative integer"},
        {HDR "      - assign_owner: {}\n", "rules.yaml:5:9: rule \"r1\": assign_owner: set exactly one of rep or pool"},
        {HDR "      - set_field: {object: account, field: \"bad-name\", value: x}\n", "rules.yaml:5:45: rule \"r1\": set_field: field \"bad-name\""},
        {HDR "      - set_field: {object: deal, field: f, value: x}\n", "rules.yaml:5:29: rule \"r1\": object: \"deal\" is not one of account,lead,contact"},
        {HDR "      - emit_event: {type: T, properties: {a: \"{{ nope.x }}\"}}\n", "rules.yaml:5:51: rule \"r1\": properties.a: unknown variable 'nope'"},
        {HDR "      - webhook: {destination: \"\"}\n", "rules.yaml:5:32: rule \"r1\": destination: must not be empty"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        cs_ruleset *rs = load(cases[i].yaml, err, sizeof err);
        if (rs) {
            print_error("case %zu: loaded, expected error %s\n", i, cases[i].want);
            cs_ruleset_unref(rs);
            bad++;
        } else if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0) {
            print_error("case %zu:\n   want: %s\n    got: %s\n", i, cases[i].want, err);
            bad++;
        }
    }
    if (bad) fail_msg("%d cases failed", bad);
}

static void test_reload_keeps_old(void **state)
{
    (void)state;
    char dir[] = "/tmp/crmstream-rules-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/rules.yaml", dir);
    FILE *f = fopen(path, "w");
    fputs(valid_yaml, f);
    fclose(f);
    char err[512] = "";
    cs_ruleset *current = cs_rules_load_file(path, NULL, err, sizeof err);
    if (!current) fail_msg("%s", err);
    uint64_t h = cs_ruleset_hash(current);
    /* an evaluator holds a reference across the swap */
    cs_ruleset *held = cs_ruleset_ref(current);
    f = fopen(path, "w");
    fputs("rules:\n  - id: r1\n    when: event.type ==\n    actions: [{slack: {destination: x, text: y}}]\n", f);
    fclose(f);
    cs_ruleset *next = cs_rules_load_file(path, NULL, err, sizeof err);
    assert_null(next);
    char want[400];
    snprintf(want, sizeof want, "%s:3:24: rule \"r1\": when: unexpected end of expression", path);
    assert_string_equal(err, want);
    /* the caller keeps `current`; it is intact and evaluates */
    assert_int_equal(cs_ruleset_count(current), 4);
    assert_int_equal(cs_ruleset_hash(current), h);
    /* a good reload swaps; the old set lives until its last reference goes */
    f = fopen(path, "w");
    fputs("- id: only\n  when: 'true'\n  actions: [{slack: {destination: x, text: y}}]\n", f);
    fclose(f);
    next = cs_rules_load_file(path, NULL, err, sizeof err);
    assert_non_null(next);
    cs_ruleset *old = current;
    current = next;
    cs_ruleset_unref(old);
    assert_int_equal(cs_ruleset_count(held), 4); /* still valid: ASan would catch a use after free */
    cs_ruleset_unref(held);
    assert_int_equal(cs_ruleset_count(current), 1);
    assert_true(cs_ruleset_hash(current) != h);
    cs_ruleset_unref(current);
    /* a missing file is an error naming it */
    assert_null(cs_rules_load_file("/nonexistent/rules.yaml", NULL, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/rules.yaml: "));
    unlink(path);
    rmdir(dir);
}

static void test_eval_order_and_templates(void **state)
{
    (void)state;
    char err[512];
    cs_ruleset *rs = load(valid_yaml, err, sizeof err);
    assert_non_null(rs);
    nvars = 0;
    set_str("event.type", "FeatureUsed");
    set_str("account.plan_tier", "trial");
    set_str("account.name", "Acme \"EU\"");
    set_str("account.id", "acc_42");
    set_num("signals.usage_score", 72.5);
    static cs_expr_env env;
    cs_expr_env_init(&env, lookup, NULL, NULL);
    cs_rule_hit hits[16];
    cs_rules_stats st = {0};
    size_t n = cs_rules_eval(rs, &env, 1000, NULL, hits, 16, &st);
    assert_int_equal(n, 3);
    assert_string_equal(hits[0].rule->id, "trial-power-user");
    assert_int_equal(hits[0].action->kind, CS_ACT_CREATE_TASK);
    assert_int_equal(hits[1].action->kind, CS_ACT_SET_FIELD);
    assert_int_equal(hits[2].action->kind, CS_ACT_SLACK);
    char buf[200];
    const char *why = NULL;
    assert_int_equal(cs_template_render(cs_action_param(hits[0].action, "title")->tpl, &env, buf, sizeof buf, 0, &why), 14);
    assert_string_equal(buf, "Call Acme \"EU\"");
    cs_value v = cs_expr_eval(cs_template_expr(cs_action_param(hits[1].action, "value")->tpl), &env);
    assert_int_equal(v.type, CS_V_DOUBLE);
    /* usage-drop and new-lead do not match; disabled owner-by-domain is skipped */
    assert_int_equal(st.rules_evaluated, 3);
    assert_int_equal(st.rules_matched, 1);
    assert_int_equal(st.errors, 0);
    /* the usage drop matches: its alert carries the rendered dedupe key */
    set_num("signals.usage_score", 10);
    set_str("account.plan_tier", "pro");
    memset(&st, 0, sizeof st);
    n = cs_rules_eval(rs, &env, 1000, NULL, hits, 16, &st);
    assert_int_equal(n, 2);
    assert_string_equal(hits[0].rule->id, "usage-drop");
    assert_string_equal(hits[0].dedupe_key, "churn:acc_42");
    assert_int_equal(hits[1].action->kind, CS_ACT_WEBHOOK);
    assert_int_equal(cs_template_render(cs_action_param(hits[1].action, "template")->tpl, &env, buf, sizeof buf, 1, &why), 26);
    assert_string_equal(buf, "{\"account\": \"Acme \\\"EU\\\"\"}");
    assert_int_equal(cs_template_render(cs_action_param(hits[0].action, "message")->tpl, &env, buf, sizeof buf, 0, &why), 29);
    assert_string_equal(buf, "Usage of Acme \"EU\" fell to 10");
    /* truncation: only max hits are written, the rest counted */
    memset(&st, 0, sizeof st);
    assert_int_equal(cs_rules_eval(rs, &env, 1000, NULL, hits, 1, &st), 1);
    assert_int_equal(st.truncated, 1);
    /* remove account.id: the dedupe key fails to render -> counted error, alert skipped */
    nvars = 0;
    set_str("event.type", "Other");
    set_str("account.plan_tier", "pro");
    set_num("signals.usage_score", 10);
    memset(&st, 0, sizeof st);
    n = cs_rules_eval(rs, &env, 1000, NULL, hits, 16, &st);
    assert_int_equal(n, 1);
    assert_int_equal(hits[0].action->kind, CS_ACT_WEBHOOK);
    assert_int_equal(st.errors, 1);
    assert_string_equal(st.last_error, "no such key");
    /* template render errors report why */
    assert_int_equal(cs_template_render(cs_action_param(hits[0].action, "template")->tpl, &env, buf, sizeof buf, 1, &why), -1);
    assert_string_equal(why, "no such key");
    cs_ruleset_unref(rs);
}

static void test_cooldown(void **state)
{
    (void)state;
    const int64_t H = 3600000000LL;
    cs_cooldown *cd = cs_cooldown_new(16);
    /* first alert fires; inside 24h suppressed; at exactly 24h fires again */
    assert_int_equal(cs_cooldown_check(cd, "churn:a", 7, 0, 24 * H), 0);
    assert_int_equal(cs_cooldown_check(cd, "churn:a", 7, 1 * H, 24 * H), 1);
    assert_int_equal(cs_cooldown_check(cd, "churn:a", 7, 24 * H - 1, 24 * H), 1);
    assert_int_equal(cs_cooldown_check(cd, "churn:b", 7, 2 * H, 24 * H), 0);
    assert_int_equal(cs_cooldown_check(cd, "churn:a", 7, 24 * H, 24 * H), 0);
    /* the window restarts from the alert that fired, not from suppressed ones */
    assert_int_equal(cs_cooldown_check(cd, "churn:a", 7, 47 * H, 24 * H), 1);
    assert_int_equal(cs_cooldown_check(cd, "churn:a", 7, 48 * H, 24 * H), 0);
    /* no cooldown: never suppressed */
    assert_int_equal(cs_cooldown_check(cd, "x", 1, 0, 0), 0);
    assert_int_equal(cs_cooldown_check(cd, "x", 1, 0, 0), 0);
    cs_cooldown_stats st;
    cs_cooldown_get_stats(cd, &st);
    assert_int_equal(st.fired, 6);
    assert_int_equal(st.suppressed, 3);
    assert_int_equal(st.capacity, 16);
    assert_int_equal(st.entries, 2);
    /* bounded: 1000 distinct live keys in a 16-slot table evict, never grow */
    char key[32];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(cs_cooldown_check(cd, key, (size_t)n, 100 * H + i, 24 * H), 0);
    }
    cs_cooldown_get_stats(cd, &st);
    assert_true(st.entries <= 16);
    assert_true(st.evicted >= 1000 - 16);
    /* the most recent key is still remembered */
    assert_int_equal(cs_cooldown_check(cd, "k999", 4, 101 * H, 24 * H), 1);
    cs_cooldown_free(cd);

    /* deterministic: the same event sequence gives the same decisions */
    uint64_t sig[2] = {0, 0};
    for (int run = 0; run < 2; run++) {
        cd = cs_cooldown_new(64);
        uint64_t x = 12345;
        for (int i = 0; i < 5000; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int n = snprintf(key, sizeof key, "acc_%u", (unsigned)(x % 200));
            sig[run] = sig[run] * 31 + (uint64_t)cs_cooldown_check(cd, key, (size_t)n, (int64_t)i * 60000000LL, H);
        }
        cs_cooldown_free(cd);
    }
    assert_true(sig[0] == sig[1]);
}

static void test_eval_with_cooldown(void **state)
{
    (void)state;
    char err[512];
    cs_ruleset *rs = load(valid_yaml, err, sizeof err);
    assert_non_null(rs);
    nvars = 0;
    set_str("event.type", "FeatureUsed");
    set_str("account.plan_tier", "pro");
    set_str("account.name", "Acme");
    set_str("account.id", "acc_1");
    set_num("signals.usage_score", 5);
    static cs_expr_env env;
    cs_expr_env_init(&env, lookup, NULL, NULL);
    cs_cooldown *cd = cs_cooldown_new(1024);
    cs_rule_hit hits[8];
    cs_rules_stats st = {0};
    const int64_t H = 3600000000LL;
    int alerts = 0;
    for (int h = 0; h < 72; h++) { /* one event per hour for 3 days */
        size_t n = cs_rules_eval(rs, &env, h * H, cd, hits, 8, &st);
        for (size_t i = 0; i < n; i++) alerts += hits[i].action->kind == CS_ACT_RAISE_ALERT;
    }
    assert_int_equal(alerts, 3); /* hours 0, 24, 48 */
    assert_int_equal(st.suppressed, 69);
    cs_cooldown_stats cst;
    cs_cooldown_get_stats(cd, &cst);
    assert_int_equal(cst.suppressed, 69);
    assert_int_equal(cst.fired, 3);
    /* another account is not suppressed by the first */
    set_str("account.id", "acc_2");
    size_t n = cs_rules_eval(rs, &env, 71 * H, cd, hits, 8, &st);
    assert_int_equal(n, 2);
    assert_string_equal(hits[0].dedupe_key, "churn:acc_2");
    cs_cooldown_free(cd);
    cs_ruleset_unref(rs);
}

/* Hostile YAML never crashes: mutate the valid file byte by byte. */
static void test_hostile_yaml(void **state)
{
    (void)state;
    size_t len = strlen(valid_yaml);
    char *buf = cs_malloc(len + 1);
    char err[512];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    static const char junk[] = ":-{}[]|>'\"\\#&*!% \n\tx0{{}}";
    int loaded = 0;
    for (int round = 0; round < 1500; round++) {
        memcpy(buf, valid_yaml, len + 1);
        for (int k = 0; k < 1 + round % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[x % len] = junk[(x >> 32) % (sizeof junk - 1)];
        }
        cs_ruleset *rs = cs_rules_load_string("fuzz.yaml", buf, len, NULL, err, sizeof err);
        if (rs) loaded++, cs_ruleset_unref(rs);
        else assert_true(strncmp(err, "fuzz.yaml:", 10) == 0);
    }
    assert_true(loaded > 0 && loaded < 1500);
    free(buf);
    /* aliases, deep nesting and a huge file are rejected or bounded */
    assert_null(load("a: &x [*x]\n", err, sizeof err));
    char *deep = cs_malloc(20000);
    memset(deep, '[', 10000);
    deep[10000] = 0;
    assert_null(load(deep, err, sizeof err));
    free(deep);
}

static void test_reference_table(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cs_rules_reference(f);
    fclose(f);
    assert_non_null(strstr(text, "| `raise_alert` | `severity` | one of `info`, `warning`, `critical` | yes |"));
    assert_non_null(strstr(text, "| `emit_event` | `properties` | mapping of templates | no |"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_reload_keeps_old),
        cmocka_unit_test(test_eval_order_and_templates),
        cmocka_unit_test(test_cooldown),
        cmocka_unit_test(test_eval_with_cooldown),
        cmocka_unit_test(test_hostile_yaml),
        cmocka_unit_test(test_reference_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
