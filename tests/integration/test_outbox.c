/*
 * The transactional outbox end to end (docs/OUTBOUND.md, design brief
 * principle 3), without a test-only path in the product:
 *   - store ops (SQLite and PostgreSQL): enqueue inside the batch
 *     transaction (a replay inserts nothing; a rollback leaves nothing; the
 *     wake hook fires after a commit that wrote rows, never after a
 *     rollback), claim = lease, reports only for claimed rows, release,
 *     release-all at start, dead -> DLQ list, redrive keeps the id;
 *   - source_store + the dispatcher against tests/webhook/recv: delivered
 *     with webhook-id = the outbox id; T17 over the store (a dispatcher
 *     destroyed mid-delivery, or a process that died holding claims: the
 *     next one redelivers with the same webhook-id);
 *   - a 400 goes to the DLQ; a real `crmstream serve` on the same data dir
 *     lists it in GET /api/v1/dlq (and `crmstream dlq list`), and a redrive
 *     delivers it once more with the same id;
 *   - outbound.destinations config errors name file:line:column.
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
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/logging.h"
#include "core/util.h"
#include "out/out.h"
#include "out/source_store.h"
#include "store/store.h"
#include "harness.c"
#include "pgserver.c"
#include "webhook/recv.c"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

static int scale(void) { return getenv("ASAN_OPTIONS") || getenv("CS_SLOW") ? 4 : 1; }

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ store fixture */

static tpg pgsrv;
static int pg_up;

typedef struct sfx {
    char      dir[128];
    char      spec[300];
    cs_store *st;
    int       wakes;
} sfx;

static void on_wake(void *ctx)
{
    ((sfx *)ctx)->wakes++;
}

static void sfx_open(sfx *f, int pg)
{
    static int seq;
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/crmstream-outbox-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    if (pg) {
        char db[32];
        snprintf(db, sizeof db, "ob%d_%d", (int)getpid(), ++seq);
        assert_int_equal(tpg_create_db(&pgsrv, db, f->spec, sizeof f->spec), 0);
    } else {
        snprintf(f->spec, sizeof f->spec, "sqlite:%s/crm.sqlite", f->dir);
    }
    char err[512];
    f->st = cs_store_open(f->spec, f->dir, err, sizeof err);
    if (!f->st) fail_msg("open %s: %s", f->spec, err);
    cs_outbox_set_wake(f->st, on_wake, f);
}

static void sfx_close(sfx *f)
{
    if (f->st) f->st->ops->close(f->st);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", f->dir);
}

static const cs_cause cause = {.event_id = "evt_1", .partition = 2, .offset = 41, .rule_id = "churn_risk",
                               .at = "2026-01-01T00:00:00Z"};

/* Enqueue one row in its own transaction; returns cs_outbox_enqueue's answer. */
static int enqueue(cs_store *st, const char *dest, const char *id, const char *payload)
{
    assert_int_equal(st->ops->begin(st), 0);
    int rc = cs_outbox_enqueue(st, dest, id, payload, &cause);
    assert_int_equal(st->ops->commit(st), 0);
    return rc;
}

typedef struct got {
    char    ids[16][96];
    char    state[16][16];
    char    reason[16][256];
    int     attempt[16];
    int64_t created[16], next[16], received[16];
    int     n;
} got;

static int on_row(const cs_outbox_row *r, void *arg)
{
    got *g = arg;
    if (g->n == 16) return 1;
    snprintf(g->ids[g->n], sizeof g->ids[0], "%s", r->id);
    snprintf(g->state[g->n], sizeof g->state[0], "%s", r->state ? r->state : "");
    snprintf(g->reason[g->n], sizeof g->reason[0], "%s", r->last_error ? r->last_error : "");
    g->attempt[g->n] = r->attempt;
    g->created[g->n] = r->created_at_ms;
    g->next[g->n] = r->next_attempt_ms;
    g->received[g->n] = r->received_at_ms;
    g->n++;
    return 0;
}

static got row(cs_store *st, const char *id)
{
    got g = {0};
    assert_int_equal(st->ops->outbox_get(st, id, on_row, &g), 0);
    return g;
}

static got claim(cs_store *st, const char *dest, int64_t now, int64_t lease, int max)
{
    got g = {0};
    int n = st->ops->outbox_claim(st, dest, now, lease, max, on_row, &g);
    assert_int_equal(n, g.n);
    return g;
}

/* ================================================================ store ops */

static void store_semantics(int pg)
{
    sfx f;
    sfx_open(&f, pg);
    cs_store *st = f.st;

    /* enqueue inside the transaction; a replay inserts nothing; wake only
     * after a commit that wrote rows */
    assert_int_equal(enqueue(st, "crm", "msg_a", "{\"type\":\"alert.raised\",\"received_at\":\"2026-01-01T00:00:00.250Z\"}"), 1);
    assert_int_equal(f.wakes, 1);
    assert_int_equal(enqueue(st, "crm", "msg_a", "{\"type\":\"other\"}"), 0);
    assert_int_equal(f.wakes, 1);
    got a = row(st, "msg_a");
    assert_string_equal(a.state[0], "pending");
    assert_int_equal(a.received[0], 1767225600250LL);
    /* a rolled-back batch leaves no row and wakes nobody */
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(cs_outbox_enqueue(st, "crm", "msg_rolled", "{}", &cause), 1);
    st->ops->rollback(st);
    assert_int_equal(f.wakes, 1);
    got none = {0};
    assert_int_equal(st->ops->outbox_get(st, "msg_rolled", on_row, &none), 1);
    /* bad arguments are refused, not written */
    assert_int_equal(st->ops->begin(st), 0);
    assert_int_equal(cs_outbox_enqueue(st, "", "msg_x", "{}", &cause), -1);
    assert_int_equal(cs_outbox_enqueue(st, "crm", "id with space", "{}", &cause), -1);
    assert_int_equal(st->ops->commit(st), 0);

    assert_int_equal(enqueue(st, "crm", "msg_b", "{\"n\":2}"), 1);
    assert_int_equal(enqueue(st, "crm", "msg_c", "{\"n\":3}"), 1);
    assert_int_equal(enqueue(st, "other", "msg_o", "{\"n\":4}"), 1);
    int64_t now = cs_now_us() / 1000 + 1000;

    /* claim: only this destination's due rows, oldest first, at most max */
    got c1 = claim(st, "crm", now, now + 5000, 2);
    assert_int_equal(c1.n, 2);
    assert_string_equal(c1.ids[0], "msg_a");
    assert_string_equal(c1.ids[1], "msg_b");
    got c2 = claim(st, "crm", now, now + 5000, 10);
    assert_int_equal(c2.n, 1);
    assert_string_equal(c2.ids[0], "msg_c");
    assert_int_equal(claim(st, "crm", now, now + 5000, 10).n, 0); /* all leased */
    /* an expired lease is due again (a dead dispatcher's claim) */
    got c3 = claim(st, "crm", now + 5000, now + 10000, 10);
    assert_int_equal(c3.n, 3);

    /* reports: delivered / retry / dead; a report on an unclaimed row changes nothing */
    char dest[64];
    int64_t rec;
    assert_int_equal(st->ops->outbox_report(st, CS_OUTBOX_DELIVERED, "msg_a", 1, now + 6000, NULL, dest, &rec), 1);
    assert_string_equal(dest, "crm");
    assert_int_equal(rec, 1767225600250LL);
    assert_int_equal(st->ops->outbox_report(st, CS_OUTBOX_RETRY, "msg_a", 2, now, "late", dest, &rec), 0);
    assert_string_equal(row(st, "msg_a").state[0], "delivered");
    assert_int_equal(st->ops->outbox_report(st, CS_OUTBOX_RETRY, "msg_b", 1, now + 60000, "HTTP 503: busy", dest, &rec), 1);
    got b = row(st, "msg_b");
    assert_string_equal(b.state[0], "pending");
    assert_int_equal(b.attempt[0], 1);
    assert_int_equal(b.next[0], now + 60000);
    assert_string_equal(b.reason[0], "HTTP 503: busy");
    assert_int_equal(claim(st, "crm", now + 6000, now + 20000, 10).n, 0); /* b not due yet, c still leased */
    assert_int_equal(st->ops->outbox_report(st, CS_OUTBOX_DEAD, "msg_c", 1, now, "HTTP 400: bad", dest, &rec), 1);

    /* the DLQ: dead rows, by destination */
    got dl = {0};
    assert_int_equal(st->ops->outbox_list(st, "dead", NULL, 0, 100, on_row, &dl), 1);
    assert_string_equal(dl.ids[0], "msg_c");
    assert_string_equal(dl.reason[0], "HTTP 400: bad");
    got dl2 = {0};
    assert_int_equal(st->ops->outbox_list(st, "dead", "other", 0, 100, on_row, &dl2), 0);

    /* redrive: pending again, attempt 0, same id, due now; the horizon restarts */
    assert_int_equal(st->ops->outbox_redrive(st, "msg_nope", now), 0);
    assert_int_equal(st->ops->outbox_redrive(st, "msg_c", now + 7000), 1);
    assert_int_equal(st->ops->outbox_redrive(st, "msg_c", now + 7000), 0); /* no longer dead */
    got c = row(st, "msg_c");
    assert_string_equal(c.state[0], "pending");
    assert_int_equal(c.attempt[0], 0);
    got c4 = claim(st, "crm", now + 7000, now + 9000, 10);
    assert_int_equal(c4.n, 1);
    assert_string_equal(c4.ids[0], "msg_c");
    assert_int_equal(c4.created[0], now + 7000);

    /* release gives a claim back, due at once; release-all frees every claim */
    assert_int_equal(st->ops->outbox_report(st, CS_OUTBOX_RELEASE, "msg_c", 0, 0, NULL, NULL, NULL), 1);
    assert_int_equal(claim(st, "crm", now + 7000, now + 99000, 10).n, 1);
    assert_int_equal(claim(st, "other", now, now + 99000, 10).n, 1);
    assert_int_equal(st->ops->outbox_release_all(st), 2);
    assert_int_equal(claim(st, "crm", now + 7000, now + 99000, 10).n, 1);

    sfx_close(&f);
}

static void test_store_ops_sqlite(void **state)
{
    (void)state;
    store_semantics(0);
}

static void test_store_ops_postgres(void **state)
{
    (void)state;
    if (!pg_up) skip();
    store_semantics(1);
}

static void test_outbox_id_is_deterministic(void **state)
{
    (void)state;
    char a[64], b[64], c[64];
    cs_outbox_id("evt_1", "rule", "crm", a, sizeof a);
    cs_outbox_id("evt_1", "rule", "crm", b, sizeof b);
    cs_outbox_id("evt_1", "rul", "ecrm", c, sizeof c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strncmp(a, "msg_", 4), 0);
    assert_int_equal(strlen(a), 28);
}

/* ============================================================ dispatcher */

typedef struct rx {
    _Atomic int status;      /* answer for /hook */
    _Atomic int hold_first;  /* hold the first request of the run */
    _Atomic int held;
} rx;

static void rx_handle(void *ctx, const rv_req *q, rv_answer *a)
{
    rx *r = ctx;
    a->status = strcmp(q->path, "/hook") == 0 ? atomic_load(&r->status) : 404;
    if (atomic_load(&r->hold_first) && !atomic_exchange(&r->held, 1)) a->hold = 1;
}

static cs_out *dispatcher(cs_store *st, rv_server *srv, char *url, size_t urlen)
{
    snprintf(url, urlen, "http://127.0.0.1:%d/hook", rv_port(srv));
    cs_out_dest_conf d = {.name = "crm", .url = url, .secrets = {SECRET}, .allow_private = 1,
                          .timeout_ms = 5000 * scale(), .connect_timeout_ms = 2000, .backoff_base_ms = 1000};
    cs_out_opts opts = {.source = cs_out_store_source(st), .poll_ms = 10, .lease_ms = 60000};
    char err[256];
    cs_out *o = cs_out_new(&d, 1, &opts, err, sizeof err);
    if (!o) fail_msg("cs_out_new: %s", err);
    return o;
}

/* Step o until rv_count(srv) >= n (or fail after a deadline). */
static void pump_until(cs_out *o, rv_server *srv, int n)
{
    int64_t deadline = cs_mono_us() + 10000000LL * scale();
    while (rv_count(srv, NULL) < n) {
        if (cs_mono_us() > deadline) fail_msg("only %d of %d requests arrived", rv_count(srv, NULL), n);
        cs_out_step(o, 5);
    }
}

static void pump_until_state(cs_out *o, cs_store *st, const char *id, const char *state)
{
    int64_t deadline = cs_mono_us() + 10000000LL * scale();
    for (;;) {
        got g = row(st, id);
        if (strcmp(g.state[0], state) == 0) return;
        if (cs_mono_us() > deadline) fail_msg("%s: state %s, want %s", id, g.state[0], state);
        cs_out_step(o, 5);
    }
}

static void test_dispatcher_delivers_with_the_outbox_id(void **state)
{
    (void)state;
    sfx f;
    sfx_open(&f, 0);
    rx r = {.status = 200};
    rv_server *srv = rv_start(rx_handle, &r, 1);
    char url[128];
    assert_int_equal(enqueue(f.st, "crm", "msg_hello", "{\"type\":\"alert.raised\",\"n\":1}"), 1);
    cs_out *o = dispatcher(f.st, srv, url, sizeof url);
    pump_until(o, srv, 1);
    pump_until_state(o, f.st, "msg_hello", "delivered");
    rv_req q;
    assert_int_equal(rv_get(srv, 0, &q), 0);
    assert_string_equal(q.id, "msg_hello");
    assert_int_equal(q.body_len, strlen("{\"type\":\"alert.raised\",\"n\":1}"));
    assert_memory_equal(q.body, "{\"type\":\"alert.raised\",\"n\":1}", q.body_len);
    assert_int_equal(row(f.st, "msg_hello").attempt[0], 1);
    /* a replay of the same effect writes nothing and sends nothing */
    assert_int_equal(enqueue(f.st, "crm", "msg_hello", "{\"type\":\"alert.raised\",\"n\":1}"), 0);
    for (int i = 0; i < 20; i++) cs_out_step(o, 5);
    assert_int_equal(rv_count(srv, NULL), 1);
    cs_out_destroy(o);
    rv_stop(srv);
    sfx_close(&f);
}

/* T17 over the store: destroyed mid-delivery -> released -> the next
 * dispatcher (same store) redelivers at once with the same webhook-id. */
static void test_t17_destroy_mid_delivery_redelivers_same_id(void **state)
{
    (void)state;
    sfx f;
    sfx_open(&f, 0);
    rx r = {.status = 200, .hold_first = 1};
    rv_server *srv = rv_start(rx_handle, &r, 1);
    char url[128];
    assert_int_equal(enqueue(f.st, "crm", "msg_t17", "{\"type\":\"t17\"}"), 1);
    cs_out *o = dispatcher(f.st, srv, url, sizeof url);
    int64_t deadline = cs_mono_us() + 10000000LL * scale();
    while (rv_holding(srv) < 1) {
        if (cs_mono_us() > deadline) fail_msg("the first request never arrived");
        cs_out_step(o, 5);
    }
    assert_string_equal(row(f.st, "msg_t17").state[0], "claimed");
    cs_out_destroy(o); /* "killed" mid-delivery, cleanly: its claim is given back */
    assert_string_equal(row(f.st, "msg_t17").state[0], "pending");
    rv_release(srv);
    cs_out *o2 = dispatcher(f.st, srv, url, sizeof url);
    pump_until(o2, srv, 2);
    pump_until_state(o2, f.st, "msg_t17", "delivered");
    rv_req q0, q1;
    assert_int_equal(rv_get(srv, 0, &q0), 0);
    assert_int_equal(rv_get(srv, 1, &q1), 0);
    assert_string_equal(q0.id, "msg_t17");
    assert_string_equal(q1.id, "msg_t17");
    cs_out_destroy(o2);
    rv_stop(srv);
    sfx_close(&f);
}

/* A process that died holding claims (long lease, never reported): the
 * next start releases them (single owner) and redelivers at once. */
static void test_t17_claims_of_a_dead_process_released_at_start(void **state)
{
    (void)state;
    sfx f;
    sfx_open(&f, 0);
    rx r = {.status = 200};
    rv_server *srv = rv_start(rx_handle, &r, 1);
    char url[128];
    assert_int_equal(enqueue(f.st, "crm", "msg_crash", "{\"type\":\"crash\"}"), 1);
    int64_t now = cs_now_us() / 1000;
    assert_int_equal(claim(f.st, "crm", now + 1000, now + 3600000, 10).n, 1); /* the dead process's lease: 1 h */
    f.st->ops->close(f.st);
    char err[512];
    f.st = cs_store_open(f.spec, f.dir, err, sizeof err); /* the restart */
    assert_non_null(f.st);
    assert_int_equal(f.st->ops->outbox_release_all(f.st), 1);
    cs_out *o = dispatcher(f.st, srv, url, sizeof url);
    pump_until(o, srv, 1);
    pump_until_state(o, f.st, "msg_crash", "delivered");
    rv_req q;
    assert_int_equal(rv_get(srv, 0, &q), 0);
    assert_string_equal(q.id, "msg_crash");
    cs_out_destroy(o);
    rv_stop(srv);
    sfx_close(&f);
}

/* ================================================== DLQ through a server */

static int items_count(cJSON *j)
{
    return cJSON_GetArraySize(cJSON_GetObjectItem(j, "items"));
}

static void test_400_goes_dead_listed_by_the_api_and_redriven_once(void **state)
{
    (void)state;
    rx r = {.status = 400};
    rv_server *srv = rv_start(rx_handle, &r, 1);
    char url[128], yaml[1024];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", rv_port(srv));
    snprintf(yaml, sizeof yaml,
             "outbound:\n  poll_ms: 20\n  destinations:\n"
             "    - {name: crm, kind: webhook, url: \"%s\", secrets: [\"" SECRET "\"], allow_private: true}\n",
             url);
    th_server s;
    th_init(&s, yaml);

    /* In process, on the server's future data dir: enqueue, deliver, 400 -> dead. */
    char data[512], path[600], err[512];
    snprintf(data, sizeof data, "%s/data", s.dir);
    assert_int_equal(cs_mkdirs(data, 0755), 0);
    snprintf(path, sizeof path, "%s/crm.sqlite", data);
    cs_store *st = cs_store_sqlite_open(path, err, sizeof err);
    assert_non_null(st);
    assert_int_equal(enqueue(st, "crm", "msg_dlq", "{\"type\":\"alert.raised\",\"title\":\"t\"}"), 1);
    cs_out *o = dispatcher(st, srv, url, sizeof url);
    pump_until(o, srv, 1);
    pump_until_state(o, st, "msg_dlq", "dead");
    cs_out_destroy(o);
    st->ops->close(st);

    /* The server lists it; the CLI too. */
    r.status = 200;
    assert_int_equal(th_start(&s), 0);
    cJSON *j;
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq", NULL, &j), 200);
    assert_int_equal(items_count(j), 1);
    cJSON *it = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "items"), 0);
    assert_string_equal(cJSON_GetObjectItem(it, "kind")->valuestring, "delivery");
    assert_string_equal(cJSON_GetObjectItem(it, "id")->valuestring, "msg_dlq");
    assert_string_equal(cJSON_GetObjectItem(it, "destination")->valuestring, "crm");
    assert_non_null(strstr(cJSON_GetObjectItem(it, "reason")->valuestring, "400"));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "cause"), "rule_id")->valuestring, "churn_risk");
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq?kind=event", NULL, &j), 200);
    assert_int_equal(items_count(j), 0);
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq?kind=nope", NULL, &j), 400);
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq/msg_dlq", NULL, &j), 200);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "payload"), "type")->valuestring, "alert.raised");
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq/msg_missing", NULL, &j), 404);
    cJSON_Delete(j);

    char cmd[700], out[4096] = "";
    snprintf(cmd, sizeof cmd, "%s dlq list --target %s", th_bin(), s.target);
    FILE *p = popen(cmd, "r");
    size_t nr = fread(out, 1, sizeof out - 1, p);
    out[nr] = '\0';
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(out, "msg_dlq"));
    assert_non_null(strstr(out, "delivery"));

    /* Bad redrive bodies are refused. */
    assert_int_equal(th_req(&s, "POST", "/api/v1/dlq/redrive", "{}", &j), 422);
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "POST", "/api/v1/dlq/redrive", "{\"ids\":[\"a\"],\"all\":true}", &j), 422);
    cJSON_Delete(j);
    assert_int_equal(th_req(&s, "POST", "/api/v1/dlq/redrive", "not json", &j), 400);
    cJSON_Delete(j);

    /* Redrive: delivered once more, with the same id. */
    assert_int_equal(th_req(&s, "POST", "/api/v1/dlq/redrive", "{\"ids\":[\"msg_dlq\",\"msg_missing\"]}", &j), 200);
    assert_int_equal(cJSON_GetObjectItem(j, "redriven")->valueint, 1);
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "not_found"), 0)->valuestring, "msg_missing");
    cJSON_Delete(j);
    assert_int_equal(rv_wait(srv, NULL, 2, 10000 * scale()), 2);
    rv_req q;
    assert_int_equal(rv_get(srv, 1, &q), 0);
    assert_string_equal(q.id, "msg_dlq");
    int delivered = 0;
    for (int i = 0; i < 500 * scale() && !delivered; i++) {
        assert_int_equal(th_req(&s, "GET", "/api/v1/dlq/msg_dlq", NULL, &j), 200);
        delivered = strcmp(cJSON_GetObjectItem(j, "state")->valuestring, "delivered") == 0;
        cJSON_Delete(j);
        if (!delivered) sleep_ms(10);
    }
    assert_true(delivered);
    assert_int_equal(th_req(&s, "GET", "/api/v1/dlq", NULL, &j), 200);
    assert_int_equal(items_count(j), 0);
    cJSON_Delete(j);
    sleep_ms(200); /* nothing more arrives: once */
    assert_int_equal(rv_count(srv, NULL), 2);

    /* Its metrics. */
    cs_buf resp;
    cs_buf_init(&resp);
    int status = 0;
    assert_int_equal(cs_httpc_request(&s.c, "GET", "/metrics", NULL, NULL, 0, &status, &resp), 0);
    assert_int_equal(status, 200);
    assert_non_null(strstr(resp.data, "crmstream_webhook_deliveries_total{destination=\"crm\",status=\"delivered\"} 1"));
    assert_non_null(strstr(resp.data, "crmstream_outbox_deliveries{destination=\"crm\",state=\"dead\"} 0"));
    assert_non_null(strstr(resp.data, "crmstream_outbox_oldest_age_seconds{destination=\"crm\"} 0"));
    cs_buf_free(&resp);

    th_stop(&s, SIGTERM);
    th_cleanup(&s);
    rv_stop(srv);
}

/* ================================================================ config */

static void expect_config_error(const char *yaml, const char *where, const char *what)
{
    cs_config cfg;
    char err[512] = "";
    cs_config_defaults(&cfg);
    int rc = cs_config_load_string(&cfg, "c.yaml", yaml, err, sizeof err);
    cs_config_free(&cfg);
    if (rc == 0) fail_msg("accepted: %s", yaml);
    if (!strstr(err, where) || !strstr(err, what)) fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err, where, what);
}

static void test_config_destinations(void **state)
{
    (void)state;
    cs_config cfg;
    char err[512] = "";
    cs_config_defaults(&cfg);
    assert_int_equal(cs_config_load_string(&cfg, "c.yaml",
                                           "outbound:\n"
                                           "  poll_ms: 50\n"
                                           "  destinations:\n"
                                           "    - name: crm-hook\n"
                                           "      url: https://hooks.example.com/x\n"
                                           "      secrets: [whsec_a, whsec_b]\n"
                                           "      retry_horizon: 2d\n"
                                           "      rate_per_s: 2.5\n"
                                           "      allow_private: true\n"
                                           "    - {name: sales, kind: slack, url: \"https://hooks.slack.com/services/T/B/X\"}\n",
                                           err, sizeof err),
                     0);
    assert_int_equal(cfg.ndestinations, 2);
    assert_int_equal(cfg.outbound_poll_ms, 50);
    assert_string_equal(cfg.destinations[0].kind, "webhook");
    assert_string_equal(cfg.destinations[0].secrets[1], "whsec_b");
    assert_int_equal(cfg.destinations[0].retry_horizon_s, 2 * 86400);
    assert_int_equal(cfg.destinations[0].allow_private, 1);
    assert_true(cfg.destinations[0].rate_per_s == 2.5);
    assert_string_equal(cfg.destinations[0].where, "c.yaml:4:7");
    assert_string_equal(cfg.destinations[1].kind, "slack");
    cs_config_free(&cfg);

    expect_config_error("outbound:\n  destinations:\n    - {name: a, kind: email, url: \"http://x\"}\n", "c.yaml:3:",
                        "unknown kind \"email\"");
    expect_config_error("outbound:\n  destinations:\n    - name: a\n      url: ftp://x\n      secrets: [whsec_a]\n",
                        "c.yaml:4:12", "bad URL");
    expect_config_error("outbound:\n  destinations:\n    - {name: a, url: \"http://\", secrets: [s]}\n", "c.yaml:3:",
                        "bad URL");
    expect_config_error("outbound:\n  destinations:\n"
                        "    - {name: a, url: \"http://x\", secrets: [s]}\n"
                        "    - {name: a, url: \"http://y\", secrets: [s]}\n",
                        "c.yaml:4:14", "duplicate destination name \"a\"");
    expect_config_error("outbound:\n  destinations:\n    - {name: \"a b\", url: \"http://x\", secrets: [s]}\n",
                        "c.yaml:3:", "name");
    expect_config_error("outbound:\n  destinations:\n    - {name: a, url: \"http://x\"}\n", "c.yaml:3:", "needs secrets");
    expect_config_error("outbound:\n  destinations:\n    - {name: a, url: \"http://x\", secrets: [s], colour: red}\n",
                        "c.yaml:3:", "unknown field \"colour\"");
    expect_config_error("outbound:\n  destinations:\n    - {name: a, url: \"http://x\", secrets: [s], concurrency: 0}\n",
                        "c.yaml:3:", "concurrency");
    expect_config_error("outbound:\n  destinations:\n    - {name: a, url: \"http://x\", secrets: [s], retry_horizon: 3w}\n",
                        "c.yaml:3:", "retry_horizon");
    expect_config_error("outbound:\n  destinations: {name: a}\n", "c.yaml:2:", "expected a list");
}

/* A secret only the dispatcher can judge fails `serve` with the entry's file:line:column. */
static void test_serve_rejects_a_bad_secret_naming_the_entry(void **state)
{
    (void)state;
    th_server s;
    th_init(&s, "outbound:\n  destinations:\n    - {name: crm, url: \"http://127.0.0.1:9/x\", secrets: [\"whsec_!!!\"]}\n");
    assert_int_not_equal(th_start(&s), 0);
    char log[512], buf[4096] = "";
    snprintf(log, sizeof log, "%s/serve.log", s.dir);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (!strstr(buf, "config.yaml:") || !strstr(buf, "outbound.destinations") || !strstr(buf, "secret"))
        fail_msg("serve.log: %s", buf);
    th_cleanup(&s);
}

static int pg_setup(void **state)
{
    (void)state;
    pg_up = tpg_start(&pgsrv) == 0;
    return 0;
}

static int pg_teardown(void **state)
{
    (void)state;
    if (pg_up) tpg_destroy(&pgsrv);
    return 0;
}

int main(void)
{
    cs_log_set_level((enum cs_log_level)(CS_LOG_ERROR + 1)); /* failures under test log; keep the TAP clean */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_ops_sqlite),
        cmocka_unit_test(test_outbox_id_is_deterministic),
        cmocka_unit_test(test_dispatcher_delivers_with_the_outbox_id),
        cmocka_unit_test(test_t17_destroy_mid_delivery_redelivers_same_id),
        cmocka_unit_test(test_t17_claims_of_a_dead_process_released_at_start),
        cmocka_unit_test(test_400_goes_dead_listed_by_the_api_and_redriven_once),
        cmocka_unit_test(test_config_destinations),
        cmocka_unit_test(test_serve_rejects_a_bad_secret_naming_the_entry),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_store_ops_postgres),
    };
    int failed = cmocka_run_group_tests_name("outbox", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("outbox_postgres", pg_tests, pg_setup, pg_teardown);
    return failed ? 1 : 0;
}
