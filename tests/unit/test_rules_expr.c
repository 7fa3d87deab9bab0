/*
 * Unit tests for rules/expr: the CEL subset, table-driven — literals and
 * escapes, precedence, short-circuit and error absorption, type errors,
 * absent fields, every function and macro, durations and timestamps,
 * compile errors with their line:column, limits on hostile input, and a
 * proof that evaluation allocates nothing (a counting malloc).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/util.h"
#include "rules/expr.h"

/* ------------------------------------------------- allocation counting */

static volatile long alloc_count;
static volatile int  counting;

#if defined(__SANITIZE_ADDRESS__)
#define CS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CS_ASAN 1
#endif
#endif

#ifdef CS_ASAN
/* The sanitizer owns malloc: count through its hook. */
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t), void (*f)(const volatile void *));
static void on_malloc(const volatile void *p, size_t n)
{
    (void)p, (void)n;
    if (counting) alloc_count++;
}
static void on_free(const volatile void *p) { (void)p; }
static void install_hooks(void) { __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free); }
#else
/* Interpose malloc and friends in the executable; forward to glibc. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void  __libc_free(void *);
void *malloc(size_t n)
{
    if (counting) alloc_count++;
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t s)
{
    if (counting) alloc_count++;
    return __libc_calloc(n, s);
}
void *realloc(void *p, size_t n)
{
    if (counting) alloc_count++;
    return __libc_realloc(p, n);
}
void free(void *p) { __libc_free(p); }
static void install_hooks(void) {}
#endif

/* ----------------------------------------------------------- bindings */

struct bind {
    const char *path;
    cs_value    v;
};

static const cs_value tags[] = {{.type = CS_V_STRING, .u.s = {"beta", 4}}, {.type = CS_V_STRING, .u.s = {"vip", 3}}};
static const cs_value nums[] = {{.type = CS_V_INT, .u.i = 1}, {.type = CS_V_INT, .u.i = 5}, {.type = CS_V_INT, .u.i = 0}};
/* Two contacts as maps: the field callback reads them. */
struct contact {
    const char *name, *role;
};
static const struct contact contacts[] = {{"ana", "admin"}, {"bo", "user"}};
static const cs_value contact_vals[] = {{.type = CS_V_MAP, .u.map = {&contacts[0], 2}},
                                        {.type = CS_V_MAP, .u.map = {&contacts[1], 2}}};

static struct bind binds[] = {
    {"event.type", {.type = CS_V_STRING, .u.s = {"FeatureUsed", 11}}},
    {"event.properties.feature", {.type = CS_V_STRING, .u.s = {"export_csv", 10}}},
    {"event.properties.count", {.type = CS_V_INT, .u.i = 3}},
    {"event.properties.tags", {.type = CS_V_LIST, .u.list = {tags, 2}}},
    {"event.properties.nums", {.type = CS_V_LIST, .u.list = {nums, 3}}},
    {"event.properties.nothing", {.type = CS_V_NULL}},
    {"event.timestamp", {.type = CS_V_TIMESTAMP, .u.us = 1795773600000000LL}}, /* 2026-11-27T10:00:00Z */
    {"account.plan_tier", {.type = CS_V_STRING, .u.s = {"trial", 5}}},
    {"account.mrr", {.type = CS_V_DOUBLE, .u.d = 1200.5}},
    {"account.seats", {.type = CS_V_INT, .u.i = 25}},
    {"account.domain", {.type = CS_V_STRING, .u.s = {"acme.io", 7}}},
    {"account.contacts", {.type = CS_V_LIST, .u.list = {contact_vals, 2}}},
    {"account.renewal", {.type = CS_V_TIMESTAMP, .u.us = 1797033600000000LL}}, /* 2026-12-12T00:00:00Z */
    {"signals.usage_score", {.type = CS_V_DOUBLE, .u.d = 64.0}},
    {"signals.logins_7d", {.type = CS_V_INT, .u.i = 12}},
    {"lead.email", {.type = CS_V_STRING, .u.s = {"ana@acme.io", 11}}},
};

static long lookups;

static int lookup(void *ud, const char *path, size_t len, cs_value *out)
{
    (void)ud;
    lookups++;
    for (size_t i = 0; i < sizeof binds / sizeof binds[0]; i++)
        if (strlen(binds[i].path) == len && memcmp(binds[i].path, path, len) == 0) {
            *out = binds[i].v;
            return 1;
        }
    return 0;
}

static int field(void *ud, const cs_value *m, const char *key, size_t len, cs_value *out)
{
    (void)ud;
    const struct contact *c = m->u.map.p;
    const char *v = len == 4 && memcmp(key, "name", 4) == 0 ? c->name : len == 4 && memcmp(key, "role", 4) == 0 ? c->role : NULL;
    if (!v) return 0;
    *out = cs_vstr(v, strlen(v));
    return 1;
}

/* "type text" of a value, e.g. "int 7", "error no such key". */
static void describe(const cs_value *v, char *buf, size_t cap)
{
    static const char *const names[] = {"error", "null", "bool", "int", "double", "string", "list", "map", "duration", "timestamp"};
    char val[512];
    cs_value_format(v, val, sizeof val, 0);
    if (v->type == CS_V_ERROR) snprintf(buf, cap, "error %s", v->u.err);
    else snprintf(buf, cap, "%s %s", names[v->type], val);
}

static const char *const roots[] = {"event", "account", "lead", "contact", "signals", NULL};

struct ecase {
    const char *src;
    const char *want; /* "int 7", "error" (any error), "error no such key", "compile 1:5" */
};

static void run_cases(const struct ecase *cases, size_t n)
{
    static cs_expr_env env;
    cs_expr_env_init(&env, lookup, field, NULL);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        cs_expr_error err;
        char got[600];
        cs_expr *e = cs_expr_compile(cases[i].src, strlen(cases[i].src), roots, &err);
        if (!e) {
            snprintf(got, sizeof got, "compile %d:%d %s", err.line, err.col, err.msg);
        } else {
            cs_value v = cs_expr_eval(e, &env);
            describe(&v, got, sizeof got);
            cs_expr_free(e);
        }
        size_t wl = strlen(cases[i].want);
        int ok = strncmp(got, cases[i].want, wl) == 0 && (got[wl] == 0 || got[wl] == ' ' ||
                                                           (strncmp(cases[i].want, "compile", 7) == 0));
        if (strncmp(cases[i].want, "compile", 7) == 0) ok = strncmp(got, cases[i].want, wl) == 0 && (got[wl] == ' ');
        if (!ok) {
            print_error("case %zu: %s\n   want: %s\n    got: %s\n", i, cases[i].src, cases[i].want, got);
            bad++;
        }
    }
    if (bad) fail_msg("%d of %zu cases failed", bad, n);
}

#define RUN(table) run_cases(table, sizeof table / sizeof table[0])

/* -------------------------------------------------------------- tables */

static void test_literals(void **state)
{
    (void)state;
    static const struct ecase c[] = {
        {"42", "int 42"},
        {"0x1F", "int 31"},
        {"-9223372036854775808", "int -9223372036854775808"},
        {"9223372036854775807", "int 9223372036854775807"},
        {"1.5", "double 1.5"},
        {".5", "double 0.5"},
        {"1e3", "double 1000"},
        {"2.5e-1", "double 0.25"},
        {"true", "bool true"},
        {"false", "bool false"},
        {"null", "null null"},
        {"\"a\\tb\"", "string a\tb"},
        {"'it\\'s'", "string it's"},
        {"\"\\x41\\u00e9\\U0001F600\"", "string A\xc3\xa9\xf0\x9f\x98\x80"},
        {"\"\\101\"", "string A"},
        {"r'a\\tb'", "string a\\tb"},
        {"'''x\ny'''", "string x\ny"},
        {"\"\"", "string "},
        {"[1, 'a', true]", "list [1, a, true]"},
        {"[]", "list []"},
        {"[1, 2,]", "list [1, 2]"},
        {"// comment\n 7 // more", "int 7"},
    };
    RUN(c);
}

static void test_precedence(void **state)
{
    (void)state;
    static const struct ecase c[] = {
        {"1 + 2 * 3", "int 7"},
        {"(1 + 2) * 3", "int 9"},
        {"10 - 4 - 3", "int 3"},
        {"100 / 10 / 5", "int 2"},
        {"7 % 4 * 2", "int 6"},
        {"-2 * 3", "int -6"},
        {"--5", "int 5"},
        {"!true || true", "bool true"},
        {"!(true || true)", "bool false"},
        {"true || false && false", "bool true"},
        {"(true || false) && false", "bool false"},
        {"1 + 1 == 2 && 2 < 3", "bool true"},
        {"1 < 2 == true", "bool true"},
        {"true ? 1 : 2", "int 1"},
        {"false ? 1 : true ? 2 : 3", "int 2"},
        {"1 == 1 ? 'y' : 'n'", "string y"},
        {"2 in [1, 2] && !(3 in [1, 2])", "bool true"},
        {"-7 / 2", "int -3"},
        {"-7 % 2", "int -1"},
    };
    RUN(c);
}

static void test_short_circuit_and_errors(void **state)
{
    (void)state;
    static const struct ecase c[] = {
        /* CEL: && and || are commutative over errors */
        {"false && 1/0 == 1", "bool false"},
        {"1/0 == 1 && false", "bool false"},
        {"true || 1/0 == 1", "bool true"},
        {"1/0 == 1 || true", "bool true"},
        {"true && 1/0 == 1", "error division by zero"},
        {"false || 1/0 == 1", "error division by zero"},
        {"event.missing || true", "bool true"},
        {"event.missing && true", "error no such key"},
        {"event.missing && false", "bool false"},
        {"1 && true", "error no matching overload"},
        {"true ? 1 : 1/0", "int 1"},
        {"false ? 1/0 : 2", "int 2"},
        {"1 ? 1 : 2", "error no matching overload"},
        {"!1", "error no matching overload"},
        {"-'a'", "error no matching overload"},
        {"9223372036854775807 + 1", "error integer overflow"},
        {"-9223372036854775807 - 2", "error integer overflow"},
        {"-(-9223372036854775807 - 1)", "error integer overflow"},
        {"5 * 4611686018427387904", "error integer overflow"},
        {"(-9223372036854775807 - 1) / -1", "error integer overflow"},
        {"1 / 0", "error division by zero"},
        {"1 % 0", "error modulus by zero"},
        {"1.0 / 0.0", "double +Inf"},
        {"2.5 % 1.0", "error no matching overload"},
        {"1 + 1.0", "error no matching overload"},
        {"'a' + 1", "error no matching overload"},
        {"'a' < 1", "error no matching overload"},
        {"null < null", "error no matching overload"},
        {"1 == 'a'", "bool false"},
        {"null == null", "bool true"},
        {"null == 0", "bool false"},
        {"1 == 1.0", "bool true"},
        {"1 < 1.5", "bool true"},
        {"2 > 1.5", "bool true"},
        {"9007199254740993 == 9007199254740992.0", "bool false"},
        {"[1, 2] == [1.0, 2.0]", "bool true"},
        {"[1, 'a'] == [1, 'b']", "bool false"},
        {"[1, 1/0]", "error division by zero"},
        {"'abc' < 'abd'", "bool true"},
        {"'ab' < 'abc'", "bool true"},
        {"false < true", "bool true"},
        {"1.0 / 0.0 > 1e308", "bool true"},
        {"0.0 / 0.0 == 0.0 / 0.0", "bool false"},
        {"0.0 / 0.0 < 1.0", "bool false"},
    };
    RUN(c);
}

static void test_variables(void **state)
{
    (void)state;
    static const struct ecase c[] = {
        {"event.type == \"FeatureUsed\" && account.plan_tier == \"trial\"", "bool true"},
        {"event.type == 'FeatureUsed' && account.plan_tier == 'trial' && signals.usage_score >= 60", "bool true"},
        {"event.properties.count > 2", "bool true"},
        {"event.properties['feature']", "string export_csv"},
        {"event['properties']['count'] + 1", "int 4"},
        {"event.properties.missing", "error no such key"},
        {"event.properties.nothing == null", "bool true"},
        {"account.mrr * 12.0", "double 14406"},
        {"account.mrr * 12", "error no matching overload"},
        {"account.seats * 2", "int 50"},
        {"signals.logins_7d >= 10", "bool true"},
        {"event.properties.tags[1]", "string vip"},
        {"event.properties.tags[2]", "error index out of range"},
        {"event.properties.tags[-1]", "error index out of range"},
        {"account.contacts[0].name", "string ana"},
        {"account.contacts[1]['role']", "string user"},
        {"account.contacts[1].email", "error no such key"},
        {"'vip' in event.properties.tags", "bool true"},
        {"'x' in event.properties.tags", "bool false"},
        {"lead.email.endsWith('@' + account.domain)", "bool true"},
        {"account.plan_tier in ['trial', 'starter']", "bool true"},
    };
    RUN(c);
}

static void test_functions(void **state)
{
    (void)state;
    static const struct ecase c[] = {
        {"has(event.properties.feature)", "bool true"},
        {"has(event.properties.missing)", "bool false"},
        {"has(event.properties.nothing)", "bool true"},
        {"has(account.contacts[0].name)", "bool true"},
        {"has(account.contacts[0].email)", "bool false"},
        {"size('h\xc3\xa9llo')", "int 5"},
        {"'h\xc3\xa9llo'.size()", "int 5"},
        {"size(event.properties.tags)", "int 2"},
        {"size([])", "int 0"},
        {"size(1)", "error no matching overload"},
        {"'export_csv'.startsWith('export')", "bool true"},
        {"event.properties.feature.startsWith('csv')", "bool false"},
        {"event.properties.feature.endsWith('csv')", "bool true"},
        {"event.properties.feature.contains('rt_c')", "bool true"},
        {"''.contains('')", "bool true"},
        {"'ab'.startsWith('abc')", "bool false"},
        {"'x'.startsWith(1)", "error no matching overload"},
        {"lead.email.matches('^[a-z]+@acme[.]io$')", "bool true"},
        {"lead.email.matches('^bob')", "bool false"},
        {"matches('abc123', '[0-9]+$')", "bool true"},
        {"'a|b'.matches('a[|]b')", "bool true"},
        {"int(2.9)", "int 2"},
        {"int(-2.9)", "int -2"},
        {"int('42')", "int 42"},
        {"int('4x')", "error conversion failed"},
        {"int(1e19)", "error integer overflow"},
        {"double(3)", "double 3"},
        {"double('2.5')", "double 2.5"},
        {"string(12)", "string 12"},
        {"string(true)", "string true"},
        {"string(1.5) + '!'", "string 1.5!"},
        {"string('s')", "string s"},
        {"int(event.timestamp)", "int 1795773600"},
    };
    RUN(c);
}

static void test_macros(void **state)
{
    (void)state;
    static const struct ecase c[] = {
        {"event.properties.tags.exists(t, t == 'vip')", "bool true"},
        {"event.properties.tags.exists(t, t == 'nope')", "bool false"},
        {"event.properties.tags.all(t, size(t) >= 3)", "bool true"},
        {"event.properties.tags.all(t, t.startsWith('b'))", "bool false"},
        {"event.properties.tags.exists_one(t, t.contains('e'))", "bool true"},
        {"[1, 2, 3].exists_one(x, x > 1)", "bool false"},
        {"[].all(x, x > 1)", "bool true"},
        {"[].exists(x, x > 1)", "bool false"},
        {"account.contacts.exists(c, c.role == 'admin')", "bool true"},
        {"account.contacts.all(c, c.role == 'admin')", "bool false"},
        /* errors are absorbed when another element decides */
        {"event.properties.nums.exists(x, 10 / x == 2)", "bool true"},
        {"event.properties.nums.all(x, 10 / x > 100)", "bool false"},
        {"event.properties.nums.all(x, 10 / x > 1)", "error division by zero"},
        {"event.properties.nums.exists(x, 10 / x == 7)", "error division by zero"},
        {"[1, 2].exists(x, [3, 4].exists(y, x + y == 6))", "bool true"},
        {"[1, 2].all(x, ['a' + 'b'].exists(y, y == 'ab'))", "bool true"},
        {"'a'.exists(x, true)", "error range must be a list"},
        {"[1].exists(x, x)", "error no matching overload"},
    };
    RUN(c);
}

static void test_time(void **state)
{
    (void)state;
    static const struct ecase c[] = {
        {"duration('1h30m') == duration('90m')", "bool true"},
        {"duration('1.5h') == duration('90m')", "bool true"},
        {"duration('1h')", "duration 3600s"},
        {"duration('-90s')", "duration -90s"},
        {"duration('250ms')", "duration 0.25s"},
        {"duration('2m') > duration('90s')", "bool true"},
        {"duration('1h') + duration('1m')", "duration 3660s"},
        {"timestamp('2026-01-01T00:00:00Z') + duration('1h') > timestamp('2026-01-01T00:30:00Z')", "bool true"},
        {"timestamp('2026-01-01T00:00:00Z') - timestamp('2025-12-31T00:00:00Z') == duration('24h')", "bool true"},
        {"timestamp('2026-01-01T01:00:00+01:00') == timestamp('2026-01-01T00:00:00Z')", "bool true"},
        {"account.renewal - event.timestamp < duration('360h')", "bool true"},
        {"account.renewal - event.timestamp < duration('300h')", "bool false"},
        {"event.timestamp + duration('1h')", "timestamp 2026-11-27T11:00:00.000Z"},
        {"event.timestamp < account.renewal", "bool true"},
        {"event.timestamp < duration('1h')", "error no matching overload"},
        {"duration('1h') * 2", "error no matching overload"},
        {"duration(event.type)", "error conversion failed"},
        {"timestamp(account.plan_tier)", "error conversion failed"},
    };
    RUN(c);
}

static void test_compile_errors(void **state)
{
    (void)state;
    static const struct ecase c[] = {
        {"", "compile 1:1"},
        {"1 +", "compile 1:4"},
        {"(1 + 2", "compile 1:7"},
        {"1 + 2)", "compile 1:6"},
        {"event.type = 'x'", "compile 1:12"},
        {"a & b", "compile 1:3"}, /* the lexer runs ahead of the name check */
        {"event.type & 'x'", "compile 1:12"},
        {"evnt.type == 'x'", "compile 1:1"},
        {"event.type ==\n  'x' &&\n  bogus.y", "compile 3:3"},
        {"'abc", "compile 1:1"},
        {"'a\nb'", "compile 1:3"},
        {"'\\q'", "compile 1:2"},
        {"'\\u12'", "compile 1:2"},
        {"'\\uD800'", "compile 1:2"},
        {"9223372036854775808", "compile 1:1"},
        {"99999999999999999999", "compile 1:1"},
        {"1u", "compile 1:1"},
        {"b'x'", "compile 1:1"},
        {"{'a': 1}", "compile 1:1"},
        {"size()", "compile 1:1"},
        {"nosuch(1)", "compile 1:1"},
        {"'a'.nosuch()", "compile 1:5"},
        {"'a'.startsWith()", "compile 1:5"},
        {"has(1)", "compile 1:5"},
        {"has(event)", "compile 1:5"},
        {"'a'.matches(event.type)", "compile 1:13"},
        {"'a'.matches('(')", "compile 1:13"},
        {"'a'.matches('\\\\d+')", "compile 1:13"},
        {"duration('1x')", "compile 1:10"},
        {"duration('1d')", "compile 1:10"},
        {"timestamp('2026-13-01T00:00:00Z')", "compile 1:11"},
        {"[1].exists(1, true)", "compile 1:12"},
        {"if", "compile 1:1"},
        {"event.if", "compile 1:7"},
        {"1 2", "compile 1:3"},
        {"1 ? 2", "compile 1:6"},
        {"'\xff'", "compile 1:2"},
        {"event.type == 'é' && 1 +", "compile 1:25"},
        {"12abc", "compile 1:3"},
        {"#", "compile 1:1"},
    };
    RUN(c);
}

/* Hostile input: deep nesting, long chains, huge lists, garbage. */
static void test_limits(void **state)
{
    (void)state;
    cs_expr_error err;
    char *s = cs_malloc(CS_EXPR_MAX_LEN * 2 + 16);
    /* deep parentheses */
    size_t n = 0;
    for (int i = 0; i < 1000; i++) s[n++] = '(';
    s[n++] = '1';
    for (int i = 0; i < 1000; i++) s[n++] = ')';
    assert_null(cs_expr_compile(s, n, NULL, &err));
    assert_non_null(strstr(err.msg, "nested too deeply"));
    /* deep unary */
    memset(s, '!', 3000), s[3000] = 't';
    assert_null(cs_expr_compile(s, 3001, NULL, &err));
    /* a long left-deep chain */
    n = 0;
    for (int i = 0; i < 1500; i++) n += (size_t)sprintf(s + n, "1+");
    s[n++] = '1';
    assert_null(cs_expr_compile(s, n, NULL, &err));
    assert_non_null(strstr(err.msg, "too"));
    /* too long */
    memset(s, ' ', CS_EXPR_MAX_LEN + 10);
    s[0] = '1';
    assert_null(cs_expr_compile(s, CS_EXPR_MAX_LEN + 10, NULL, &err));
    /* nested macros beyond the loop limit */
    n = 0;
    for (int i = 0; i < CS_EXPR_MAX_LOOPS + 1; i++) n += (size_t)sprintf(s + n, "[1].exists(x%d, ", i);
    n += (size_t)sprintf(s + n, "true");
    for (int i = 0; i < CS_EXPR_MAX_LOOPS + 1; i++) s[n++] = ')';
    assert_null(cs_expr_compile(s, n, NULL, &err));
    /* a chain within limits evaluates */
    n = 0;
    for (int i = 0; i < 100; i++) n += (size_t)sprintf(s + n, "1+");
    s[n++] = '1';
    cs_expr *e = cs_expr_compile(s, n, NULL, &err);
    assert_non_null(e);
    static cs_expr_env env;
    cs_expr_env_init(&env, lookup, field, NULL);
    cs_value v = cs_expr_eval(e, &env);
    assert_int_equal(v.type, CS_V_INT);
    assert_int_equal(v.u.i, 101);
    cs_expr_free(e);
    /* string scratch exhaustion is an error value, not a crash */
    const char *big = "[1,2,3,4,5,6,7,8,9,10,11,12].all(i, true) && "
                      "('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' + "
                      "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') != ''";
    e = cs_expr_compile(big, strlen(big), NULL, &err);
    assert_non_null(e);
    v = cs_expr_eval(e, &env);
    assert_int_equal(v.type, CS_V_BOOL);
    cs_expr_free(e);
    n = 0;
    n += (size_t)sprintf(s + n, "size(");
    for (int i = 0; i < 50; i++) n += (size_t)sprintf(s + n, "'0123456789012345678901234567890123456789012345678901234567890123' + ");
    n += (size_t)sprintf(s + n, "'') > 0");
    e = cs_expr_compile(s, n, NULL, &err);
    assert_non_null(e);
    v = cs_expr_eval(e, &env);
    assert_int_equal(v.type, CS_V_ERROR);
    assert_non_null(strstr(v.u.err, "scratch"));
    cs_expr_free(e);
    /* random bytes never crash the compiler */
    uint64_t x = 88172645463325252ull;
    static const char alphabet[] = "()[]{}.,?:!-+*/%=<>&|'\"\\ \nabcdefxyz0123456789_uUrRbB";
    for (int round = 0; round < 20000; round++) {
        size_t len = 1 + (size_t)(round % 40);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            s[i] = (x >> 60) == 0 ? (char)(x >> 8) : alphabet[(x >> 8) % (sizeof alphabet - 1)];
        }
        e = cs_expr_compile(s, len, NULL, &err);
        if (e) {
            cs_expr_eval(e, &env);
            cs_expr_free(e);
        } else {
            assert_true(err.line >= 1 && err.col >= 1 && err.msg[0]);
        }
    }
    free(s);
}

/* Paths fold into one lookup each; evaluation allocates nothing. */
static void test_no_allocation(void **state)
{
    (void)state;
    install_hooks();
    static const char *const exprs[] = {
        "event.type == 'FeatureUsed' && account.plan_tier in ['trial', 'starter'] && signals.usage_score >= 60.0",
        "(lead.email.endsWith('@' + account.domain) ? 'match' : 'none') == 'match'",
        "account.contacts.exists(c, c.role == 'admin') && size(event.properties.tags) == 2",
        "string(account.seats) + '/' + string(account.mrr) + event.properties.feature == '25/1200.5export_csv'",
        "account.renewal - event.timestamp < duration('720h') && [1, 2, 3].all(x, x > 0)",
        "has(event.properties.missing) || int('12') == 12 || 1 / 0 == 1",
        "event.properties.tags + ['x'] == ['beta', 'vip', 'x']",
    };
    cs_expr *e[sizeof exprs / sizeof exprs[0]];
    cs_expr_error err;
    for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
        e[i] = cs_expr_compile(exprs[i], strlen(exprs[i]), roots, &err);
        if (!e[i]) fail_msg("%s: %d:%d %s", exprs[i], err.line, err.col, err.msg);
    }
    static cs_expr_env env;
    cs_expr_env_init(&env, lookup, field, NULL);
    lookups = 0;
    alloc_count = 0;
    counting = 1;
    int trues = 0;
    for (int round = 0; round < 1000; round++)
        for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) {
            cs_value v = cs_expr_eval(e[i], &env);
            trues += v.type == CS_V_BOOL && v.u.b;
        }
    counting = 0;
    assert_int_equal(alloc_count, 0);
    assert_int_equal(trues, 7000);
    /* one lookup per variable reference (paths are folded at compile time) */
    lookups = 0;
    cs_expr_eval(e[0], &env);
    assert_int_equal(lookups, 3);
    /* the allocation counter itself works */
    void *(*volatile mf)(size_t) = malloc; /* not elided by the optimizer */
    counting = 1;
    void *p = mf(16);
    counting = 0;
    free(p);
    assert_int_equal(alloc_count, 1);
    for (size_t i = 0; i < sizeof exprs / sizeof exprs[0]; i++) cs_expr_free(e[i]);
}

static void test_format_and_durations(void **state)
{
    (void)state;
    int64_t us;
    assert_int_equal(cs_parse_duration("1h30m", 5, 0, &us), 0);
    assert_int_equal(us, 5400000000LL);
    assert_int_equal(cs_parse_duration("7d", 2, 1, &us), 0);
    assert_int_equal(us, 7 * 86400000000LL);
    assert_int_equal(cs_parse_duration("7d", 2, 0, &us), -1);
    assert_int_equal(cs_parse_duration("0", 1, 0, &us), 0);
    assert_int_equal(us, 0);
    assert_int_equal(cs_parse_duration("1.5s", 4, 0, &us), 0);
    assert_int_equal(us, 1500000);
    assert_int_equal(cs_parse_duration("", 0, 0, &us), -1);
    assert_int_equal(cs_parse_duration("5", 1, 0, &us), -1);
    assert_int_equal(cs_parse_duration("h", 1, 0, &us), -1);
    assert_int_equal(cs_parse_duration("99999999999999h", 15, 0, &us), -1);
    char buf[64];
    cs_value v = cs_vstr("a\"b\n", 4);
    assert_int_equal(cs_value_format(&v, buf, sizeof buf, 1), 6);
    assert_string_equal(buf, "a\\\"b\\n");
    v = cs_vdouble(0.1);
    cs_value_format(&v, buf, sizeof buf, 0);
    assert_string_equal(buf, "0.1");
    v = cs_vint(-5);
    assert_int_equal(cs_value_format(&v, buf, 2, 0), 2); /* truncated, length reported */
    assert_string_equal(buf, "-");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_short_circuit_and_errors),
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_functions),
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_no_allocation),
        cmocka_unit_test(test_format_and_durations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
