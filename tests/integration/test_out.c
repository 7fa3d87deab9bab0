/*
 * Integration tests of the webhook dispatcher (src/out) against real HTTP
 * receivers on 127.0.0.1, each on a free port, started by the test:
 *   T15  500/503/429 + Retry-After, timeouts, 4xx, 410, redirects, huge
 *        bodies; backoff with jitter; a held (slow) destination does not
 *        delay a healthy one (counts and order);
 *   T16  signatures checked by the npm `standardwebhooks` 1.1.1 verifier
 *        (tests/webhook/receiver.js): valid, tampered body, wrong secret,
 *        stale timestamp, rotated secrets;
 *   T17  a dispatcher stopped mid-delivery: the next one redelivers with the
 *        same webhook-id (after a crash: once the lease expires; after a
 *        clean destroy: at once).
 * Time is an injected clock: backoff is tested by moving it, never by
 * sleeping; waits poll a condition with a deadline.
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
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "out/out.h"
#include "out/sign.h"
#include "out/source_mem.h"
#include "webhook/recv.c"

#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */
#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SECRET2 "whsec_c2Vjb25kIHNlY3JldCBvZiAyNCBieXRlcyE="
#define OTHER "whsec_d3Jvbmcgc2VjcmV0IGtleSAxMjM0NTY3OA=="

/* Deadlines are scaled for sanitizer builds. */
static int scale(void) { return getenv("ASAN_OPTIONS") || getenv("CS_SLOW") ? 4 : 1; }

/* ------------------------------------------------------------ fake clock */

static _Atomic int64_t fake_now = T0;
static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return atomic_load(&fake_now);
}

/* ------------------------------------------------------ scripted receiver */

/* Per path: the status to answer and what else to do. */
typedef struct script {
    const char *path;
    int         status;
    const char *headers;
    const char *body;
    size_t      huge;
    int         delay_ms;
    int         hold;        /* 1: hold every request; 2: hold only the first of each id */
} script;

typedef struct rx {
    script  s[8];
    int     n;
    char    seen[64][128];   /* ids seen (hold: 2) */
    int     nseen;
} rx;

static void rx_handle(void *ctx, const rv_req *q, rv_answer *a)
{
    rx *r = ctx;
    for (int i = 0; i < r->n; i++) {
        script *s = &r->s[i];
        if (strcmp(s->path, q->path) != 0) continue;
        a->status = s->status;
        if (s->headers) snprintf(a->headers, sizeof a->headers, "%s", s->headers);
        a->body = s->body;
        a->huge = s->huge;
        a->delay_ms = s->delay_ms;
        if (s->hold == 1) a->hold = 1;
        if (s->hold == 2) {
            int seen = 0;
            for (int j = 0; j < r->nseen; j++) seen |= strcmp(r->seen[j], q->id) == 0;
            if (!seen && r->nseen < 64) snprintf(r->seen[r->nseen++], sizeof r->seen[0], "%s", q->id);
            a->hold = !seen;
        }
        return;
    }
    a->status = 404;
}

/* --------------------------------------------------------------- fixture */

typedef struct fx {
    rx          rx;
    rv_server  *srv;
    cs_out_mem *mem;
    cs_out     *o;
    int         alerts;
    char        alert_dest[64];
    char        url[8][160];
} fx;

static void on_alert(void *ctx, const cs_out_alert *a)
{
    fx *f = ctx;
    f->alerts++;
    snprintf(f->alert_dest, sizeof f->alert_dest, "%s", a->dest);
}

static void fx_init(fx *f)
{
    memset(f, 0, sizeof *f);
    atomic_store(&fake_now, T0);
    f->srv = rv_start(rx_handle, &f->rx, 1);
    assert_non_null(f->srv);
    f->mem = cs_out_mem_new();
}

static void fx_script(fx *f, script s) { f->rx.s[f->rx.n++] = s; }

static const char *fx_url(fx *f, int i, const char *path)
{
    snprintf(f->url[i], sizeof f->url[i], "http://127.0.0.1:%d%s", rv_port(f->srv), path);
    return f->url[i];
}

/* A webhook destination with test defaults: loopback allowed, 1 s base backoff. */
static cs_out_dest_conf dest(const char *name, const char *url)
{
    return (cs_out_dest_conf){.name = name, .url = url, .secrets = {SECRET}, .allow_private = 1,
                              .backoff_base_ms = 1000, .backoff_max_ms = 60000,
                              .timeout_ms = 5000 * scale(), .connect_timeout_ms = 2000};
}

static void fx_open(fx *f, cs_out_dest_conf *d, int n)
{
    cs_out_opts opts = {.source = cs_out_mem_source(f->mem), .clock = {fake_clock, NULL},
                        .on_alert = on_alert, .alert_ctx = f, .poll_ms = 10, .lease_ms = 1000,
                        .seed = 7};
    char err[256] = "";
    f->o = cs_out_new(d, n, &opts, err, sizeof err);
    if (!f->o) fail_msg("cs_out_new: %s", err);
}

static void fx_done(fx *f)
{
    cs_out_destroy(f->o);
    rv_stop(f->srv);
    cs_out_mem_free(f->mem);
}

static int state_of(fx *f, const char *id)
{
    cs_out_mem_row r;
    return cs_out_mem_get(f->mem, id, &r) == 0 ? (int)r.state : -1;
}

static cs_out_mem_row row_of(fx *f, const char *id)
{
    cs_out_mem_row r;
    if (cs_out_mem_get(f->mem, id, &r) != 0) fail_msg("no row %s", id);
    return r;
}

/* Step the dispatcher until id has been reported (its state and attempt
 * moved), or fail after a deadline. */
static cs_out_mem_row pump_until_attempt(fx *f, const char *id, int attempt)
{
    int64_t deadline = cs_mono_us() + 10000000LL * scale();
    for (;;) {
        cs_out_mem_row r = row_of(f, id);
        if (r.attempt >= attempt && r.state != CS_OUT_CLAIMED) return r;
        if (cs_mono_us() > deadline) fail_msg("%s: attempt %d not reported (at %d)", id, attempt, r.attempt);
        cs_out_step(f->o, 5);
    }
}

static void pump_n(fx *f, int n)
{
    for (int i = 0; i < n; i++) cs_out_step(f->o, 2);
}

/* ==================================================================== T15 */

static void test_t15_delivers_signed_with_stable_headers(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/ok", .status = 204});
    cs_out_dest_conf d = dest("crm", fx_url(&f, 0, "/ok"));
    fx_open(&f, &d, 1);
    const char *body = "{\"type\":\"alert.raised\",\"data\":{\"account_id\":\"acc_1\"}}";
    cs_out_mem_add(f.mem, "msg_1", "crm", body, T0);
    cs_out_mem_row r = pump_until_attempt(&f, "msg_1", 1);
    assert_int_equal(r.state, CS_OUT_DELIVERED);
    assert_int_equal(rv_count(f.srv, "/ok"), 1);
    rv_req q;
    assert_int_equal(rv_get(f.srv, 0, &q), 0);
    assert_string_equal(q.id, "msg_1");
    assert_string_equal(q.ts, "1767225600");
    assert_string_equal(q.body, body); /* the stored payload, byte for byte */
    cs_out_key k;
    cs_out_key_parse(SECRET, &k);
    char want[128];
    cs_out_sign1(&k, "msg_1", T0 / 1000, body, strlen(body), want, sizeof want);
    assert_string_equal(q.sig, want);
    cs_out_stats st;
    cs_out_stats_get(f.o, "crm", &st);
    assert_int_equal((int)st.delivered, 1);
    fx_done(&f);
}

static void test_t15_5xx_backoff_with_jitter_same_id(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/fail", .status = 500, .body = "boom"});
    cs_out_dest_conf d = dest("crm", fx_url(&f, 0, "/fail"));
    d.concurrency = 8;
    fx_open(&f, &d, 1);
    char id[32];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "msg_%d", i);
        cs_out_mem_add(f.mem, id, "crm", "{}", T0);
    }
    int64_t next[20];
    int distinct = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "msg_%d", i);
        cs_out_mem_row r = pump_until_attempt(&f, id, 1);
        assert_int_equal(r.state, CS_OUT_PENDING);
        assert_string_equal(r.reason, "HTTP 500: boom");
        /* first retry: base 1 s with equal jitter -> [0.5 s, 1 s] */
        assert_true(r.next_attempt_ms >= T0 + 500 && r.next_attempt_ms <= T0 + 1000);
        next[i] = r.next_attempt_ms;
        int dup = 0;
        for (int j = 0; j < i; j++) dup |= next[j] == next[i];
        distinct += !dup;
    }
    assert_true(distinct > 10); /* jitter spreads the retries */
    /* Not due: nothing is sent again. */
    pump_n(&f, 20);
    assert_int_equal(rv_count(f.srv, "/fail"), 20);
    /* Move time: the second attempt doubles the delay: [1 s, 2 s]. */
    atomic_store(&fake_now, T0 + 1000);
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "msg_%d", i);
        pump_until_attempt(&f, id, 2);
    }
    cs_out_mem_row r = row_of(&f, "msg_0");
    assert_true(r.next_attempt_ms >= T0 + 1000 + 1000 && r.next_attempt_ms <= T0 + 1000 + 2000);
    assert_int_equal(rv_count(f.srv, "/fail"), 40);
    /* Every attempt of msg_0 carried the same webhook-id. */
    int n0 = 0;
    for (int i = 0; i < 40; i++) {
        rv_req q;
        rv_get(f.srv, i, &q);
        n0 += strcmp(q.id, "msg_0") == 0;
    }
    assert_int_equal(n0, 2);
    fx_done(&f);
}

static void test_t15_retry_after_seconds_and_date_honoured(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/429", .status = 429, .headers = "Retry-After: 120\r\n"});
    /* T0 + 300 s as an HTTP-date */
    fx_script(&f, (script){.path = "/503", .status = 503,
                           .headers = "Retry-After: Thu, 01 Jan 2026 00:05:00 GMT\r\n"});
    cs_out_dest_conf d[2] = {dest("a", fx_url(&f, 0, "/429")), dest("b", fx_url(&f, 1, "/503"))};
    fx_open(&f, d, 2);
    cs_out_mem_add(f.mem, "m429", "a", "{}", T0);
    cs_out_mem_add(f.mem, "m503", "b", "{}", T0);
    cs_out_mem_row r = pump_until_attempt(&f, "m429", 1);
    assert_int_equal(r.next_attempt_ms, T0 + 120000);
    r = pump_until_attempt(&f, "m503", 1);
    assert_int_equal(r.next_attempt_ms, T0 + 300000);
    /* One millisecond early: nothing goes out. */
    atomic_store(&fake_now, T0 + 119999);
    pump_n(&f, 20);
    assert_int_equal(rv_count(f.srv, "/429"), 1);
    atomic_store(&fake_now, T0 + 120000);
    pump_until_attempt(&f, "m429", 2);
    assert_int_equal(rv_count(f.srv, "/429"), 2);
    assert_int_equal(rv_count(f.srv, "/503"), 1);
    fx_done(&f);
}

static void test_t15_4xx_to_dlq_at_once_408_retried(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/400", .status = 400, .body = "{\"error\":\"bad field x\"}"});
    fx_script(&f, (script){.path = "/422", .status = 422});
    fx_script(&f, (script){.path = "/408", .status = 408});
    cs_out_dest_conf d[3] = {dest("a", fx_url(&f, 0, "/400")), dest("b", fx_url(&f, 1, "/422")),
                             dest("c", fx_url(&f, 2, "/408"))};
    fx_open(&f, d, 3);
    cs_out_mem_add(f.mem, "m400", "a", "{}", T0);
    cs_out_mem_add(f.mem, "m422", "b", "{}", T0);
    cs_out_mem_add(f.mem, "m408", "c", "{}", T0);
    cs_out_mem_row r = pump_until_attempt(&f, "m400", 1);
    assert_int_equal(r.state, CS_OUT_DEADLETTER);
    assert_string_equal(r.reason, "HTTP 400: {\"error\":\"bad field x\"}");
    assert_int_equal(pump_until_attempt(&f, "m422", 1).state, CS_OUT_DEADLETTER);
    assert_int_equal(pump_until_attempt(&f, "m408", 1).state, CS_OUT_PENDING);
    fx_done(&f);
}

static void test_t15_410_disables_destination_and_alerts(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/gone", .status = 410});
    fx_script(&f, (script){.path = "/ok", .status = 200});
    cs_out_dest_conf d[2] = {dest("gone", fx_url(&f, 0, "/gone")), dest("ok", fx_url(&f, 1, "/ok"))};
    d[0].concurrency = 1;
    fx_open(&f, d, 2);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "g%d", i);
        cs_out_mem_add(f.mem, id, "gone", "{}", T0);
        snprintf(id, sizeof id, "k%d", i);
        cs_out_mem_add(f.mem, id, "ok", "{}", T0);
    }
    cs_out_mem_row r = pump_until_attempt(&f, "g0", 1);
    assert_int_equal(r.state, CS_OUT_DEADLETTER);
    assert_non_null(strstr(r.reason, "410"));
    assert_int_equal(f.alerts, 1);
    assert_string_equal(f.alert_dest, "gone");
    cs_out_stats st;
    cs_out_stats_get(f.o, "gone", &st);
    assert_int_equal(st.disabled, 1);
    /* The rest stay in the outbox, untouched, while the other lane delivers. */
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        assert_int_equal(pump_until_attempt(&f, id, 1).state, CS_OUT_DELIVERED);
    }
    pump_n(&f, 20);
    assert_int_equal(rv_count(f.srv, "/gone"), 1);
    for (int i = 1; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "g%d", i);
        r = row_of(&f, id);
        assert_int_equal(r.state, CS_OUT_PENDING);
        assert_int_equal(r.attempt, 0);
    }
    /* The receiver is back; an operator re-enables the destination. */
    f.rx.s[0].status = 200;
    assert_int_equal(cs_out_enable(f.o, "gone"), 0);
    assert_int_equal(pump_until_attempt(&f, "g4", 1).state, CS_OUT_DELIVERED);
    assert_int_equal(f.alerts, 1);
    fx_done(&f);
}

static void test_t15_redirects_not_followed(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/moved", .status = 302, .headers = "Location: /target\r\n"});
    fx_script(&f, (script){.path = "/target", .status = 200});
    cs_out_dest_conf d = dest("crm", fx_url(&f, 0, "/moved"));
    fx_open(&f, &d, 1);
    cs_out_mem_add(f.mem, "m1", "crm", "{}", T0);
    cs_out_mem_row r = pump_until_attempt(&f, "m1", 1);
    assert_int_equal(r.state, CS_OUT_PENDING);
    assert_non_null(strstr(r.reason, "redirect not followed"));
    assert_non_null(strstr(r.reason, "/target"));
    assert_int_equal(rv_count(f.srv, "/target"), 0);
    fx_done(&f);
}

static void test_t15_timeouts_and_huge_bodies_bounded(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/slow", .status = 200, .delay_ms = 30000});
    fx_script(&f, (script){.path = "/huge", .status = 200, .huge = 1ULL << 30});
    fx_script(&f, (script){.path = "/huge500", .status = 500, .huge = 1ULL << 30});
    cs_out_dest_conf d[3] = {dest("slow", fx_url(&f, 0, "/slow")), dest("huge", fx_url(&f, 1, "/huge")),
                             dest("h500", fx_url(&f, 2, "/huge500"))};
    d[0].timeout_ms = 300;
    d[1].max_response = d[2].max_response = 4096;
    fx_open(&f, d, 3);
    cs_out_mem_add(f.mem, "ms", "slow", "{}", T0);
    cs_out_mem_add(f.mem, "mh", "huge", "{}", T0);
    cs_out_mem_add(f.mem, "mh5", "h500", "{}", T0);
    int64_t t = cs_mono_us();
    /* A 1 GiB answer: the status counts, the read stops after 4 KiB. */
    cs_out_mem_row r = pump_until_attempt(&f, "mh", 1);
    assert_int_equal(r.state, CS_OUT_DELIVERED);
    r = pump_until_attempt(&f, "mh5", 1);
    assert_int_equal(r.state, CS_OUT_PENDING);
    assert_non_null(strstr(r.reason, "HTTP 500"));
    assert_non_null(strstr(r.reason, "(response cut)"));
    r = pump_until_attempt(&f, "ms", 1);
    assert_int_equal(r.state, CS_OUT_PENDING);
    assert_non_null(strstr(r.reason, "timed out"));
    /* Well before the receiver's 30 s delay or 1 GiB of transfer. */
    assert_true(cs_mono_us() - t < 10000000LL * scale());
    fx_done(&f);
}

static void test_t15_horizon_and_max_attempts_end_in_dlq(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/fail", .status = 503});
    cs_out_dest_conf d[2] = {dest("h", fx_url(&f, 0, "/fail")), dest("m", fx_url(&f, 1, "/fail"))};
    d[0].retry_horizon_ms = 10000; /* base 1 s: 1, 2, 4, then 8 s passes 10 s */
    d[0].backoff_max_ms = 8000;
    d[1].max_attempts = 3;
    fx_open(&f, d, 2);
    cs_out_mem_add(f.mem, "mh", "h", "{}", T0);
    cs_out_mem_add(f.mem, "mm", "m", "{}", T0);
    cs_out_mem_row r;
    for (int attempt = 1;; attempt++) {
        r = pump_until_attempt(&f, "mh", attempt);
        if (r.state != CS_OUT_PENDING) break;
        assert_true(attempt < 10);
        atomic_store(&fake_now, r.next_attempt_ms);
    }
    assert_int_equal(r.state, CS_OUT_DEADLETTER);
    assert_non_null(strstr(r.reason, "retry horizon"));
    assert_true(r.attempt >= 3 && r.attempt <= 5);
    for (int attempt = 1;; attempt++) {
        r = pump_until_attempt(&f, "mm", attempt);
        if (r.state != CS_OUT_PENDING) break;
        atomic_store(&fake_now, r.next_attempt_ms);
    }
    assert_int_equal(r.state, CS_OUT_DEADLETTER);
    assert_int_equal(r.attempt, 3);
    assert_non_null(strstr(r.reason, "gave up after 3 attempts: HTTP 503"));
    fx_done(&f);
}

static void test_t15_private_addresses_refused_unless_allowed(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/ok", .status = 200});
    cs_out_dest_conf d = dest("crm", fx_url(&f, 0, "/ok"));
    d.allow_private = 0;
    fx_open(&f, &d, 1);
    cs_out_mem_add(f.mem, "m1", "crm", "{}", T0);
    cs_out_mem_row r = pump_until_attempt(&f, "m1", 1);
    assert_int_equal(r.state, CS_OUT_DEADLETTER);
    assert_non_null(strstr(r.reason, "127.0.0.1 refused by the outbound address policy"));
    assert_int_equal(rv_count(f.srv, NULL), 0);
    /* By name too: localhost resolves to loopback and is refused. */
    cs_out_destroy(f.o);
    char url[128];
    snprintf(url, sizeof url, "http://localhost:%d/ok", rv_port(f.srv));
    d.url = url;
    fx_open(&f, &d, 1);
    cs_out_mem_add(f.mem, "m2", "crm", "{}", T0);
    r = pump_until_attempt(&f, "m2", 1);
    assert_int_equal(r.state, CS_OUT_DEADLETTER);
    assert_non_null(strstr(r.reason, "refused by the outbound address policy"));
    assert_int_equal(rv_count(f.srv, NULL), 0);
    fx_done(&f);
}

static void test_t15_slow_destination_does_not_delay_healthy(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    /* The slow receiver holds every request (as one that takes minutes). */
    fx_script(&f, (script){.path = "/slow", .status = 200, .hold = 1});
    fx_script(&f, (script){.path = "/ok", .status = 200});
    cs_out_dest_conf d[2] = {dest("slow", fx_url(&f, 0, "/slow")), dest("ok", fx_url(&f, 1, "/ok"))};
    d[0].concurrency = 2;
    d[0].timeout_ms = 60000;
    d[0].queue_max = 16;
    d[1].concurrency = 1; /* one at a time: the order is the outbox order */
    fx_open(&f, d, 2);
    enum { NSLOW = 50, NOK = 200 };
    char id[32];
    for (int i = 0; i < NOK; i++) { /* interleaved in the outbox */
        if (i < NSLOW) {
            snprintf(id, sizeof id, "s%03d", i);
            cs_out_mem_add(f.mem, id, "slow", "{}", T0 - NOK + i);
        }
        snprintf(id, sizeof id, "k%03d", i);
        cs_out_mem_add(f.mem, id, "ok", "{}", T0 - NOK + i);
    }
    assert_int_equal(cs_out_start(f.o), 0);
    assert_int_equal(rv_wait(f.srv, "/ok", NOK, 20000 * scale()), NOK);
    /* Meanwhile the slow lane is still in its first attempts: only its two
     * slots went out, nothing of it finished. */
    assert_int_equal(rv_count(f.srv, "/slow"), 2);
    cs_out_stats st;
    cs_out_stats_get(f.o, "slow", &st);
    assert_int_equal((int)st.attempts, 0);
    assert_int_equal(st.inflight, 2);
    assert_int_equal(st.queued, 16);
    /* The healthy endpoint got everything, in outbox order. */
    int k = 0;
    for (int i = 0; i < NOK + 2; i++) {
        rv_req q;
        assert_int_equal(rv_get(f.srv, i, &q), 0);
        if (strcmp(q.path, "/ok") != 0) continue;
        snprintf(id, sizeof id, "k%03d", k++);
        assert_string_equal(q.id, id);
    }
    assert_int_equal(k, NOK);
    /* Release the slow receiver: the slow lane drains too. */
    f.rx.s[0].hold = 0;
    rv_release(f.srv);
    assert_int_equal(rv_wait(f.srv, "/slow", NSLOW, 20000 * scale()), NSLOW);
    cs_out_stop(f.o);
    fx_done(&f);
}

static void test_slack_message_and_rate_limit(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    fx_script(&f, (script){.path = "/slack", .status = 200, .body = "ok"});
    cs_out_dest_conf d = {.name = "slack", .kind = CS_OUT_SLACK, .url = fx_url(&f, 0, "/slack"),
                          .allow_private = 1}; /* defaults: 1 message/s, burst 1 */
    fx_open(&f, &d, 1);
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "sl%d", i);
        cs_out_mem_add(f.mem, id, "slack",
                       "{\"type\":\"alert.raised\",\"title\":\"Churn risk\",\"text\":\"Acme <dropping>\","
                       "\"data\":{\"account_id\":\"acc_1\"}}", T0);
    }
    assert_int_equal(pump_until_attempt(&f, "sl0", 1).state, CS_OUT_DELIVERED);
    pump_n(&f, 20); /* the clock stands still: no second token */
    assert_int_equal(rv_count(f.srv, "/slack"), 1);
    atomic_store(&fake_now, T0 + 1000);
    assert_int_equal(pump_until_attempt(&f, "sl1", 1).state, CS_OUT_DELIVERED);
    pump_n(&f, 20);
    assert_int_equal(rv_count(f.srv, "/slack"), 2);
    rv_req q;
    rv_get(f.srv, 0, &q);
    assert_string_equal(q.sig, ""); /* Slack: not signed */
    cJSON *m = cJSON_Parse(q.body);
    assert_non_null(m);
    assert_string_equal(cJSON_GetObjectItem(m, "text")->valuestring, "Acme &lt;dropping&gt;");
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(m, "blocks")) >= 3);
    cJSON_Delete(m);
    fx_done(&f);
}

/* ==================================================================== T17 */

static void t17(int crash)
{
    fx f;
    fx_init(&f);
    /* The receiver holds the first request of each id (the dispatcher dies
     * meanwhile) and answers the redelivery. */
    fx_script(&f, (script){.path = "/hold", .status = 200, .hold = 2});
    cs_out_dest_conf d = dest("crm", fx_url(&f, 0, "/hold"));
    d.timeout_ms = 60000;
    fx_open(&f, &d, 1);
    cs_out_mem_add(f.mem, "msg_a", "crm", "{\"n\":1}", T0);
    cs_out_mem_add(f.mem, "msg_b", "crm", "{\"n\":2}", T0);
    cs_out_mem_add(f.mem, "msg_c", "crm", "{\"n\":3}", T0);
    assert_int_equal(cs_out_start(f.o), 0);
    int64_t deadline = cs_mono_us() + 10000000LL * scale();
    while (rv_holding(f.srv) < 3 && cs_mono_us() < deadline) cs_out_wake(f.o), rv_wait(f.srv, NULL, 99, 5);
    assert_int_equal(rv_holding(f.srv), 3);
    /* The dispatcher goes away mid-delivery. After a crash nothing it would
     * report reaches the store (frozen); a clean destroy releases. */
    if (crash) cs_out_mem_freeze(f.mem, 1);
    cs_out_destroy(f.o);
    f.o = NULL;
    cs_out_mem_freeze(f.mem, 0);
    assert_int_equal(state_of(&f, "msg_a"), crash ? CS_OUT_CLAIMED : CS_OUT_PENDING);

    fx_open(&f, &d, 1);
    if (crash) {
        pump_n(&f, 20); /* leased: not before the lease expires */
        assert_int_equal(rv_count(f.srv, "/hold"), 3);
        atomic_store(&fake_now, T0 + 86400 * 1000); /* past the lease */
    }
    const char *ids[3] = {"msg_a", "msg_b", "msg_c"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(pump_until_attempt(&f, ids[i], 1).state, CS_OUT_DELIVERED);
    assert_int_equal(rv_count(f.srv, "/hold"), 6);
    /* Each redelivery carried the webhook-id and body of its first try. */
    for (int i = 0; i < 3; i++) {
        int n = 0;
        const char *body = NULL;
        for (int j = 0; j < 6; j++) {
            rv_req q;
            rv_get(f.srv, j, &q);
            if (strcmp(q.id, ids[i]) != 0) continue;
            if (body) assert_string_equal(q.body, body);
            body = q.body;
            n++;
        }
        assert_int_equal(n, 2);
    }
    rv_release(f.srv);
    fx_done(&f);
}

static void test_t17_crash_mid_delivery_redelivers_same_id_after_lease(void **state)
{
    (void)state;
    t17(1);
}

static void test_t17_clean_stop_mid_delivery_redelivers_same_id_at_once(void **state)
{
    (void)state;
    t17(0);
}

/* ==================================================================== T16 */

typedef struct node_rx {
    pid_t pid;
    int   in;       /* its stdin: closing it ends the receiver */
    int   port;
} node_rx;

static int node_start(node_rx *n, const char *secret)
{
    const char *dir = "tests/webhook";
    char pkg[256];
    snprintf(pkg, sizeof pkg, "%s/node_modules/standardwebhooks/package.json", dir);
    if (access(pkg, R_OK) != 0) return -1;
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) return -1; /* not inherited by a sibling */
    n->pid = fork();
    if (n->pid == 0) {
        dup2(in[0], 0), dup2(out[1], 1);
        close(in[1]), close(out[0]);
        execlp("node", "node", "tests/webhook/receiver.js", secret, (char *)NULL);
        _exit(127);
    }
    close(in[0]), close(out[1]);
    n->in = in[1];
    FILE *f = fdopen(out[0], "r");
    char line[32] = "";
    if (!fgets(line, sizeof line, f)) line[0] = '\0';
    fclose(f);
    n->port = atoi(line);
    return n->port > 0 ? 0 : -1;
}

static void node_stop(node_rx *n)
{
    close(n->in); /* the receiver exits on EOF; SIGTERM in case it does not */
    kill(n->pid, SIGTERM);
    int st;
    waitpid(n->pid, &st, 0);
}

static size_t collect(char *p, size_t sz, size_t nm, void *ud)
{
    cs_buf_add(ud, p, sz * nm);
    return sz * nm;
}

/* The receiver's own log: did it verify this id? */
static int node_verified(node_rx *n, const char *id, char *err, size_t errlen)
{
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/log", n->port);
    cs_buf b;
    cs_buf_init(&b);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    int rc = curl_easy_perform(e);
    curl_easy_cleanup(e);
    int ok = -1;
    cJSON *log = rc == CURLE_OK ? cJSON_Parse(b.data) : NULL;
    cJSON *it;
    cJSON_ArrayForEach(it, log)
    {
        cJSON *i = cJSON_GetObjectItem(it, "id");
        if (cJSON_IsString(i) && strcmp(i->valuestring, id) == 0) {
            ok = cJSON_IsTrue(cJSON_GetObjectItem(it, "ok"));
            cJSON *e2 = cJSON_GetObjectItem(it, "error");
            snprintf(err, errlen, "%s", cJSON_IsString(e2) ? e2->valuestring : "");
        }
    }
    cJSON_Delete(log);
    cs_buf_free(&b);
    return ok;
}

static void test_t16_signatures_checked_by_npm_standardwebhooks(void **state)
{
    (void)state;
    node_rx cur, old;
    if (node_start(&cur, SECRET2) != 0 || node_start(&old, SECRET) != 0)
        fail_msg("node or tests/webhook/node_modules missing: run make deps");
    fx f;
    fx_init(&f);
    int64_t real = cs_now_us() / 1000;
    atomic_store(&fake_now, real);
    char u[6][128];
    snprintf(u[0], sizeof u[0], "http://127.0.0.1:%d/verify", cur.port);
    snprintf(u[1], sizeof u[1], "http://127.0.0.1:%d/tamper", cur.port);
    snprintf(u[2], sizeof u[2], "http://127.0.0.1:%d/verify", old.port);
    cs_out_dest_conf d[5] = {
        dest("valid", u[0]),    /* signed with the receiver's secret */
        dest("tamper", u[1]),   /* the receiver flips a byte of the body */
        dest("wrong", u[0]),    /* signed with another secret */
        dest("rot_new", u[0]),  /* rotation: old + new; the receiver knows the new one */
        dest("rot_old", u[2]),  /* ... and a receiver still on the old one */
    };
    d[0].secrets[0] = SECRET2;
    d[1].secrets[0] = SECRET2;
    d[2].secrets[0] = OTHER;
    d[3].secrets[0] = SECRET, d[3].secrets[1] = SECRET2;
    d[4].secrets[0] = SECRET, d[4].secrets[1] = SECRET2;
    fx_open(&f, d, 5);
    const char *body = "{\"type\":\"alert.raised\",\"data\":{\"account_id\":\"acc_42\",\"note\":\"caf\xc3\xa9\"}}";
    const char *names[5] = {"valid", "tamper", "wrong", "rot_new", "rot_old"};
    const int want_ok[5] = {1, 0, 0, 1, 1};
    const char *want_err[5] = {"", "No matching signature", "No matching signature", "", ""};
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "msg_%s", names[i]);
        cs_out_mem_add(f.mem, id, names[i], body, real);
    }
    for (int i = 0; i < 5; i++) {
        char id[32], err[256] = "";
        snprintf(id, sizeof id, "msg_%s", names[i]);
        cs_out_mem_row r = pump_until_attempt(&f, id, 1);
        int ok = node_verified(i == 4 ? &old : &cur, id, err, sizeof err);
        if (ok != want_ok[i]) fail_msg("%s: verifier said %d (%s), want %d", names[i], ok, err, want_ok[i]);
        assert_int_equal(r.state, want_ok[i] ? CS_OUT_DELIVERED : CS_OUT_DEADLETTER);
        if (!want_ok[i]) assert_non_null(strstr(err, want_err[i]));
    }
    /* A stale timestamp: the dispatcher's clock is 10 minutes behind. */
    cs_out_destroy(f.o);
    atomic_store(&fake_now, real - 600 * 1000);
    fx_open(&f, d, 1);
    cs_out_mem_add(f.mem, "msg_stale", "valid", body, real - 600 * 1000);
    cs_out_mem_row r = pump_until_attempt(&f, "msg_stale", 1);
    char err[256] = "";
    assert_int_equal(node_verified(&cur, "msg_stale", err, sizeof err), 0);
    assert_non_null(strstr(err, "too old"));
    assert_int_equal(r.state, CS_OUT_DEADLETTER);
    fx_done(&f);
    node_stop(&cur);
    node_stop(&old);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* Run from the repository root (tests/webhook/receiver.js).
     * OUT_TEST=pattern runs only the matching tests. */
    if (getenv("OUT_TEST")) cmocka_set_test_filter(getenv("OUT_TEST"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_t15_delivers_signed_with_stable_headers),
        cmocka_unit_test(test_t15_5xx_backoff_with_jitter_same_id),
        cmocka_unit_test(test_t15_retry_after_seconds_and_date_honoured),
        cmocka_unit_test(test_t15_4xx_to_dlq_at_once_408_retried),
        cmocka_unit_test(test_t15_410_disables_destination_and_alerts),
        cmocka_unit_test(test_t15_redirects_not_followed),
        cmocka_unit_test(test_t15_timeouts_and_huge_bodies_bounded),
        cmocka_unit_test(test_t15_horizon_and_max_attempts_end_in_dlq),
        cmocka_unit_test(test_t15_private_addresses_refused_unless_allowed),
        cmocka_unit_test(test_t15_slow_destination_does_not_delay_healthy),
        cmocka_unit_test(test_slack_message_and_rate_limit),
        cmocka_unit_test(test_t17_crash_mid_delivery_redelivers_same_id_after_lease),
        cmocka_unit_test(test_t17_clean_stop_mid_delivery_redelivers_same_id_at_once),
        cmocka_unit_test(test_t16_signatures_checked_by_npm_standardwebhooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
