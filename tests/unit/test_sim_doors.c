/*
 * The simulator's two front doors map to the same canonical events: every
 * world event (duplicates, out-of-order, late and invalid ones included) is
 * sent once as native JSON through cs_ingest_native and once as the Segment
 * message cs_world_to_segment makes of it through cs_ingest_segment, each
 * into its own in-memory bus. The answers must agree event for event, and
 * the stored canonical records (events topic and leads lane alike) must be
 * byte-identical, in the same order, but for "source"
 * (payload_hash included: it covers the canonical content). Also: events
 * Segment cannot express exactly (top-level product_area / plan_tier, an
 * account without its context.groupId) are refused, not mangled.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/util.h"
#include "bus/bus.h"
#include "ingest/ingest.h"
#include "sim/world.h"

#define END_US 1795000000000000LL

/* A bus that keeps every produced record, in order, topic first. */
typedef struct recbus {
    cs_bus  bus;
    cs_buf *vals;
    size_t  n, cap;
    size_t  events; /* records on the events topic (the rest: the leads lane's) */
} recbus;

static int rb_produce(cs_bus *bus, const char *topic, cs_msg *msgs, size_t n)
{
    recbus *m = bus->impl;
    for (size_t i = 0; i < n; i++) {
        if (m->n == m->cap) m->cap = m->cap ? m->cap * 2 : 1024, m->vals = cs_realloc(m->vals, m->cap * sizeof *m->vals);
        cs_buf_init(&m->vals[m->n]);
        cs_buf_printf(&m->vals[m->n], "%s ", topic);
        cs_buf_add(&m->vals[m->n], msgs[i].value, msgs[i].value_len);
        m->events += strcmp(topic, CS_TOPIC_EVENTS) == 0;
        msgs[i].partition = cs_bus_partition(bus, msgs[i].key, msgs[i].key_len);
        msgs[i].offset = (int64_t)m->n++;
    }
    return 0;
}

static int rb_fetch(cs_bus *bus, const char *topic, int p, int64_t from, size_t max, cs_rec_cb cb, void *arg)
{
    (void)bus, (void)topic, (void)p, (void)from, (void)max, (void)cb, (void)arg;
    return 0; /* nothing to rebuild the dedupe window from */
}

static int64_t rb_end(cs_bus *bus, const char *topic, int p)
{
    (void)bus, (void)topic, (void)p;
    return 0;
}

static const struct cs_bus_ops rb_ops = {.name = "rec", .produce = rb_produce, .fetch = rb_fetch, .end_offset = rb_end};

struct side {
    cs_config cfg;
    recbus    rb;
    cs_ingest ing;
};

static void side_init(struct side *s)
{
    char err[512];
    memset(s, 0, sizeof *s);
    cs_config_defaults(&s->cfg);
    if (cs_config_load_string(&s->cfg, "t.yaml", "ingest:\n  max_age: 0\n", err, sizeof err)) fail_msg("%s", err);
    s->cfg.dedupe_max_ids = 1 << 16;
    s->rb.bus = (cs_bus){.ops = &rb_ops, .partitions = 4, .impl = &s->rb};
    assert_int_equal(cs_ingest_init(&s->ing, &s->rb.bus, &s->cfg, err, sizeof err), 0);
}

static void side_free(struct side *s)
{
    cs_ingest_destroy(&s->ing);
    for (size_t i = 0; i < s->rb.n; i++) cs_buf_free(&s->rb.vals[i]);
    free(s->rb.vals);
    cs_config_free(&s->cfg);
}

/* The answer's accepted / duplicates / rejected counts, as one number each. */
static void answer(const cs_buf *resp, int status, int out[4])
{
    cJSON *j = cJSON_Parse(resp->data);
    assert_non_null(j);
    const cJSON *a = cJSON_GetObjectItem(j, "accepted"), *d = cJSON_GetObjectItem(j, "duplicates");
    out[0] = status;
    out[1] = cJSON_IsNumber(a) ? (int)a->valuedouble : -1;
    out[2] = cJSON_IsNumber(d) ? (int)d->valuedouble : -1;
    out[3] = cJSON_GetArraySize(cJSON_GetObjectItem(j, "rejected"));
    cJSON_Delete(j);
}

static void test_both_doors_same_canonical_events(void **state)
{
    (void)state;
    cs_world_opts o = {.seed = 11, .accounts = 40, .days = 3, .end_us = END_US, .dup_share = 0.03,
                       .ooo_share = 0.05, .late_share = 0.01, .invalid_share = 0.02, .segment_share = 0.5};
    cs_world *w = cs_world_new(&o);
    struct side *nat = cs_calloc(1, sizeof *nat), *seg = cs_calloc(1, sizeof *seg);
    side_init(nat);
    side_init(seg);
    cs_wevent ev = {0};
    cs_buf_init(&ev.json);
    cs_buf body, resp;
    cs_buf_init(&body), cs_buf_init(&resp);
    long n = 0, invalid = 0, dups = 0, calls[3] = {0};
    while (cs_world_next(w, &ev) == 0) {
        n++;
        int ra, an[4], as[4];
        cs_buf_reset(&body);
        cs_buf_adds(&body, "[");
        cs_buf_add(&body, ev.json.data, ev.json.len);
        cs_buf_adds(&body, "]");
        cs_ingest_req r = {.body = body.data, .len = body.len, .received_us = END_US + n};
        cs_buf_reset(&resp);
        answer(&resp, cs_ingest_native(&nat->ing, &r, &resp, &ra), an);
        cs_buf_reset(&body);
        cs_buf_adds(&body, "{\"batch\":[");
        size_t at = body.len;
        if (cs_world_to_segment(ev.json.data, ev.json.len, &body) != 0) fail_msg("not expressible: %s", ev.json.data);
        calls[0] += strncmp(body.data + at, "{\"type\":\"track\"", 15) == 0;
        calls[1] += strncmp(body.data + at, "{\"type\":\"identify\"", 18) == 0;
        calls[2] += strncmp(body.data + at, "{\"type\":\"group\"", 15) == 0;
        cs_buf_adds(&body, "],\"sentAt\":\"2026-11-27T10:00:00.000Z\"}");
        r = (cs_ingest_req){.body = body.data, .len = body.len, .received_us = END_US + n};
        cs_buf_reset(&resp);
        answer(&resp, cs_ingest_segment(&seg->ing, "batch", &r, &resp, &ra), as);
        if (memcmp(an, as, sizeof an) != 0)
            fail_msg("event %ld answered differently: native %d/%d/%d/%d, segment %d/%d/%d/%d: %s", n, an[0], an[1],
                     an[2], an[3], as[0], as[1], as[2], as[3], ev.json.data);
        /* What the world meant: invalid ones rejected, repeats duplicates. */
        if (ev.invalid) assert_true(an[0] == 422 || an[3] == 1);
        else if (ev.duplicate) assert_int_equal(an[2], 1);
        else assert_int_equal(an[1], 1);
        invalid += ev.invalid, dups += ev.duplicate;
    }
    assert_true(n > 2000 && invalid > 10 && dups > 10);
    assert_true(calls[0] > 1000 && calls[1] > 10 && calls[2] > 10);
    assert_int_equal(nat->rb.n, seg->rb.n);
    assert_int_equal((long)nat->rb.events, n - invalid - dups);
    assert_true(nat->rb.n > nat->rb.events); /* leads and trials went to the leads lane too */
    for (size_t i = 0; i < nat->rb.n; i++) {
        cs_buf *a = &nat->rb.vals[i], *b = &seg->rb.vals[i];
        char *p = strstr(a->data, ",\"source\":\"native\"");
        assert_non_null(p);
        cs_buf fixed;
        cs_buf_init(&fixed);
        cs_buf_add(&fixed, a->data, (size_t)(p - a->data));
        cs_buf_adds(&fixed, ",\"source\":\"segment\"");
        cs_buf_adds(&fixed, p + strlen(",\"source\":\"native\""));
        if (fixed.len != b->len || memcmp(fixed.data, b->data, b->len) != 0)
            fail_msg("record %zu differs:\nnative  %s\nsegment %s", i, a->data, b->data);
        cs_buf_free(&fixed);
    }
    cs_buf_free(&body), cs_buf_free(&resp), cs_buf_free(&ev.json);
    side_free(nat), side_free(seg);
    free(nat), free(seg);
    cs_world_free(w);
}

static void test_segment_refuses_what_it_cannot_express(void **state)
{
    (void)state;
    cs_buf out;
    cs_buf_init(&out);
    static const char *const refused[] = {
        "{\"event_id\":\"a\",\"type\":\"FeatureUsed\",\"account_id\":\"x\",\"context\":{\"groupId\":\"x\"},"
        "\"plan_tier\":\"pro\",\"properties\":{\"feature\":\"f\"}}",
        "{\"event_id\":\"a\",\"type\":\"FeatureUsed\",\"account_id\":\"x\",\"context\":{\"groupId\":\"x\"},"
        "\"product_area\":\"f\",\"properties\":{\"feature\":\"f\"}}",
        "{\"event_id\":\"a\",\"type\":\"FeatureUsed\",\"account_id\":\"x\",\"properties\":{\"feature\":\"f\"}}",
        "{\"event_id\":\"a\",\"type\":\"FeatureUsed\",\"account_id\":\"x\",\"context\":{\"groupId\":\"y\"}}",
        "{\"event_id\":\"a\",\"type\":\"LeadCreated\",\"context\":{\"groupId\":\"y\"}}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_int_equal(cs_world_to_segment(refused[i], strlen(refused[i]), &out), -1);
        assert_int_equal(out.len, 0);
    }
    const char *ok = "{\"event_id\":\"g1\",\"type\":\"AccountGrouped\",\"account_id\":\"x\",\"context\":{\"groupId\":\"x\"},"
                     "\"timestamp\":\"2026-11-27T10:00:00.000Z\",\"properties\":{\"name\":\"X\"}}";
    assert_int_equal(cs_world_to_segment(ok, strlen(ok), &out), 0);
    assert_string_equal(out.data, "{\"type\":\"group\",\"messageId\":\"g1\",\"groupId\":\"x\","
                                  "\"timestamp\":\"2026-11-27T10:00:00.000Z\",\"traits\":{\"name\":\"X\"},"
                                  "\"context\":{\"groupId\":\"x\"}}");
    cs_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_doors_same_canonical_events),
        cmocka_unit_test(test_segment_refuses_what_it_cannot_express),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
