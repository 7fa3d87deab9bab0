/*
 * Routing (src/routing): the pure decision driven by a table — every
 * strategy and their combinations, ties, every rep at capacity, everybody
 * out of office, working hours across time zones and DST; the working-time
 * SLA deadline; then the store side on SQLite: rotation kept in the store,
 * capacity counted from open leads inside the transaction, lead-to-account
 * matching, a route_lead rule, acceptance, and an SLA breach re-routed by
 * the sweep (with a store reopened in between: the deadline survives a
 * restart); assign_owner and emit_event.
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
#include <unistd.h>

#include "bus/bus.h"
#include "core/config.h"
#include "core/logging.h"
#include "core/util.h"
#include "pipeline/pipeline.h"
#include "routing/router.h"
#include "rules/rules.h"
#include "store/store.h"

static int64_t T(const char *rfc3339)
{
    int64_t us;
    if (cs_parse_time(rfc3339, &us)) fail_msg("bad time %s", rfc3339);
    return us;
}

/* ---------------------------------------------------------------- the table */

typedef struct rspec {
    const char *id, *pools, *territory, *hours, *tz, *cap, *weight;
    int         ooo;
    int64_t     open;
} rspec;

static void mkrep(cs_route_rep *r, const rspec *s)
{
    cs_route_rep_init(r, s->id);
    if (s->pools) cs_route_rep_set(r, "pools", s->pools);
    if (s->territory) cs_route_rep_set(r, "territory", s->territory);
    if (s->hours) cs_route_rep_set(r, "working_hours", s->hours);
    if (s->tz) cs_route_rep_set(r, "timezone", s->tz);
    if (s->cap) cs_route_rep_set(r, "capacity", s->cap);
    if (s->weight) cs_route_rep_set(r, "weight", s->weight);
    cs_route_rep_set(r, "out_of_office", s->ooo ? "1" : "0");
    r->open_leads = s->open;
}

struct rcase {
    const char     *name;
    cs_route_policy pol;
    struct {
        const char *country, *plan_tier, *account_id, *owner;
        long        emp;
    } lead;
    rspec       reps[6];
    const char *now;
    int64_t     slot;
    const char *exclude;
    const char *want_owner; /* NULL: fallback queue */
    const char *want_via;
    int64_t     want_next;
    const char *want_in[4]; /* substrings of the explanation */
};

#define MON_1400 "2026-11-30T14:00:00Z" /* Berlin 15:00 CET, New York 09:00 EST */
#define MON_0730 "2026-11-30T07:30:00Z" /* Berlin 08:30, New York 02:30 */
#define SAT_1200 "2026-11-28T12:00:00Z"
#define JUL_1230 "2026-07-06T12:30:00Z" /* Monday: Berlin 14:30 CEST, New York 08:30 EDT */
#define JUL_1330 "2026-07-06T13:30:00Z" /* Berlin 15:30, New York 09:30 */

#define ABC {{.id = "a"}, {.id = "b"}, {.id = "c"}}
#define H95 "{\"weekdays\":\"09:00-17:00\"}"

static const struct rcase cases[] = {
    /* round robin */
    {"rr: slot 0 is the first rep", {.rule_id = "r"}, {0}, ABC, MON_1400, 0, NULL, "a", "round_robin", 1,
     {"\"winner\":\"a\"", "\"candidates_total\":3", "\"eligible\":3"}},
    {"rr: slot 1", {.rule_id = "r"}, {0}, ABC, MON_1400, 1, NULL, "b", "round_robin", 2, {0}},
    {"rr: the slot wraps", {.rule_id = "r"}, {0}, ABC, MON_1400, 5, NULL, "c", "round_robin", 0, {0}},
    {"rr: tie at slot 0 goes to the first in order", {.rule_id = "r"}, {0},
     {{.id = "z"}, {.id = "a"}}, MON_1400, 0, NULL, "z", "round_robin", 1, {0}},
    /* capacity */
    {"capacity: a full rep is skipped, rotation continues after the winner", {.rule_id = "r"}, {0},
     {{.id = "a", .cap = "2", .open = 2}, {.id = "b"}, {.id = "c"}}, MON_1400, 0, NULL, "b", "round_robin", 2,
     {"{\"rep\":\"a\",\"open_leads\":2,\"capacity\":2,\"eligible\":false,\"excluded\":[\"capacity\"]}"}},
    {"capacity: the policy's max_open_leads is lower than the rep's", {.rule_id = "r", .max_open_leads = 1}, {0},
     {{.id = "a", .cap = "5", .open = 1}, {.id = "b", .open = 0}}, MON_1400, 0, NULL, "b", "round_robin", 0,
     {"\"capacity\":1,\"eligible\":false"}},
    {"capacity: every rep full -> fallback queue", {.rule_id = "r", .fallback = "overflow"}, {0},
     {{.id = "a", .cap = "1", .open = 1}, {.id = "b", .cap = "0"}, {.id = "c", .cap = "3", .open = 7}},
     MON_1400, 1, NULL, NULL, "fallback", -1, {"\"queue\":\"overflow\"", "\"capacity\":3", "\"winner\":null"}},
    /* out of office */
    {"ooo: skipped", {.rule_id = "r"}, {0}, {{.id = "a", .ooo = 1}, {.id = "b"}}, MON_1400, 0, NULL, "b",
     "round_robin", 0, {"\"excluded\":[\"out_of_office\"]"}},
    {"ooo: everybody out -> fallback", {.rule_id = "r"}, {0},
     {{.id = "a", .ooo = 1}, {.id = "b", .ooo = 1}}, MON_1400, 0, NULL, NULL, "fallback", -1,
     {"\"out_of_office\":2", "\"queue\":\"unassigned\""}},
    /* pools */
    {"pool: only its members are candidates", {.rule_id = "r", .pool = "emea"}, {0},
     {{.id = "a", .pools = "[\"amer\"]"}, {.id = "b", .pools = "[\"emea\",\"smb\"]"}, {.id = "c", .pools = "[\"emea\"]"}},
     MON_1400, 1, NULL, "c", "round_robin", 0, {"\"candidates_total\":2"}},
    {"pool: nobody in it -> fallback", {.rule_id = "r", .pool = "apac"}, {0}, ABC, MON_1400, 0, NULL, NULL,
     "fallback", -1, {"\"candidates_total\":0"}},
    /* territory */
    {"territory: country", {.rule_id = "r", .strategy = CS_RS_TERRITORY}, {.country = "DE"},
     {{.id = "a", .territory = "{\"countries\":[\"US\",\"CA\"]}"}, {.id = "b", .territory = "{\"countries\":[\"DE\"]}"}},
     MON_1400, 0, NULL, "b", "round_robin", 0, {"\"territory\":\"country DE not covered\"", "\"region\":\"emea\""}},
    {"territory: region, segment and plan tier all must hold", {.rule_id = "r", .territory = 1},
     {.country = "FR", .emp = 500, .plan_tier = "pro"},
     {{.id = "a", .territory = "{\"regions\":[\"emea\"],\"segments\":[\"smb\"]}"},
      {.id = "b", .territory = "{\"regions\":[\"emea\"],\"segments\":[\"mid\"],\"plan_tiers\":[\"trial\"]}"},
      {.id = "c", .territory = "{\"regions\":[\"emea\"],\"segments\":[\"mid\",\"enterprise\"],\"plan_tiers\":[\"pro\"]}"},
      {.id = "d"}},
     MON_1400, 0, NULL, "c", "round_robin", 3,
     {"segment mid not covered", "plan_tier pro not covered", "\"territory\":\"no territory\""}},
    {"territory: nobody covers the lead -> fallback", {.rule_id = "r", .territory = 1}, {.country = "JP"},
     {{.id = "a", .territory = "{\"regions\":[\"emea\"]}"}}, MON_1400, 0, NULL, NULL, "fallback", -1,
     {"region apac not covered"}},
    {"territory: a lead without the dimension does not match it", {.rule_id = "r", .territory = 1}, {0},
     {{.id = "a", .territory = "{\"countries\":[\"DE\"]}"}, {.id = "b", .territory = "{\"segments\":[\"smb\"]}"}},
     MON_1400, 0, NULL, "b", "round_robin", 0, {"lead has no country"}},
    /* working hours */
    {"hours: Berlin in, New York out at 07:30Z", {.rule_id = "r", .working_hours = 1}, {0},
     {{.id = "ny", .tz = "America/New_York", .hours = H95}, {.id = "ber", .tz = "Europe/Berlin", .hours = H95}},
     "2026-11-30T08:30:00Z", 0, NULL, "ber", "round_robin", 0,
     {"\"local_time\":\"mon 03:30\"", "\"timezone\":\"America/New_York\""}},
    {"hours: both in at 14:00Z", {.rule_id = "r", .working_hours = 1}, {0},
     {{.id = "ny", .tz = "America/New_York", .hours = H95}, {.id = "ber", .tz = "Europe/Berlin", .hours = H95}},
     MON_1400, 0, NULL, "ny", "round_robin", 1, {"\"eligible\":2"}},
    {"hours: everybody outside -> fallback", {.rule_id = "r", .working_hours = 1}, {0},
     {{.id = "ny", .tz = "America/New_York", .hours = H95}, {.id = "ber", .tz = "Europe/Berlin", .hours = H95}},
     MON_0730, 0, NULL, NULL, "fallback", -1, {"\"local_time\":\"mon 08:30\"", "\"hours\":2"}},
    {"hours: weekend", {.rule_id = "r", .working_hours = 1}, {0},
     {{.id = "a", .hours = H95}, {.id = "b", .hours = "{\"weekdays\":\"09:00-17:00\",\"sat\":\"10:00-14:00\"}"}},
     SAT_1200, 0, NULL, "b", "round_robin", 0, {"\"local_time\":\"sat 12:00\""}},
    {"hours: summer time (EDT) -- New York still out at 12:30Z", {.rule_id = "r", .working_hours = 1}, {0},
     {{.id = "ny", .tz = "America/New_York", .hours = H95}, {.id = "ber", .tz = "Europe/Berlin", .hours = H95}},
     JUL_1230, 0, NULL, "ber", "round_robin", 0, {"\"local_time\":\"mon 08:30\""}},
    {"hours: summer time -- New York in at 13:30Z", {.rule_id = "r", .working_hours = 1}, {0},
     {{.id = "ny", .tz = "America/New_York", .hours = H95}, {.id = "ber", .tz = "Europe/Berlin", .hours = H95}},
     JUL_1330, 0, NULL, "ny", "round_robin", 1, {0}},
    {"hours: the [start, end] form; end is exclusive", {.rule_id = "r", .working_hours = 1}, {0},
     {{.id = "a", .hours = "{\"mon\":[\"09:00\",\"14:00\"]}"}, {.id = "b", .hours = "{\"mon\":[\"14:00\",\"18:00\"]}"}},
     MON_1400, 0, NULL, "b", "round_robin", 0, {0}},
    {"hours: an unknown time zone is excluded and says why", {.rule_id = "r", .working_hours = 1}, {0},
     {{.id = "a", .tz = "Mars/Olympus", .hours = H95}, {.id = "b", .hours = H95}}, MON_1400, 0, NULL, "b",
     "round_robin", 0, {"\"invalid\":\"timezone: not an IANA time zone"}},
    {"hours: not asked for -> ignored", {.rule_id = "r"}, {0},
     {{.id = "ny", .tz = "America/New_York", .hours = H95}}, MON_0730, 0, NULL, "ny", "round_robin", 0, {0}},
    /* the account's owner */
    {"account owner: eligible owner wins, rotation untouched", {.rule_id = "r", .strategy = CS_RS_ACCOUNT_OWNER},
     {.account_id = "acc1", .owner = "c"}, ABC, MON_1400, 0, NULL, "c", "account_owner", -1,
     {"\"result\":\"owner\"", "\"matched_by\":null"}},
    {"account owner at capacity -> rotation", {.rule_id = "r", .match_account = 1},
     {.account_id = "acc1", .owner = "a"}, {{.id = "a", .cap = "1", .open = 1}, {.id = "b"}}, MON_1400, 0, NULL,
     "b", "round_robin", 0, {"\"result\":\"owner_excluded\",\"excluded\":[\"capacity\"]"}},
    {"account owner who is not a rep -> rotation", {.rule_id = "r", .match_account = 1},
     {.account_id = "acc1", .owner = "someone"}, ABC, MON_1400, 2, NULL, "c", "round_robin", 0,
     {"\"result\":\"owner_not_a_rep\""}},
    {"no account -> rotation", {.rule_id = "r", .match_account = 1}, {0}, ABC, MON_1400, 0, NULL, "a",
     "round_robin", 1, {"\"result\":\"no_account\""}},
    {"account owner outside the pool and territory keeps the account", {.rule_id = "r", .match_account = 1,
     .territory = 1, .pool = "emea"}, {.country = "US", .account_id = "acc1", .owner = "a"},
     {{.id = "a", .pools = "[\"amer\"]", .territory = "{\"countries\":[\"US\"]}"},
      {.id = "b", .pools = "[\"emea\"]", .territory = "{\"countries\":[\"DE\"]}"}},
     MON_1400, 0, NULL, "a", "account_owner", -1, {"\"candidates_total\":1"}},
    {"account owner out of office -> territory rotation", {.rule_id = "r", .match_account = 1, .territory = 1},
     {.country = "DE", .account_id = "acc1", .owner = "a"},
     {{.id = "a", .ooo = 1}, {.id = "b", .territory = "{\"countries\":[\"DE\"]}"}}, MON_1400, 0, NULL, "b",
     "round_robin", 0, {"\"result\":\"owner_excluded\",\"excluded\":[\"out_of_office\"]"}},
    /* weighted round robin: cycle over rounds of weight (a=3, b=1): a b a a */
    {"wrr: slot 1 of a,b,a,a", {.rule_id = "r", .strategy = CS_RS_WEIGHTED_ROUND_ROBIN}, {0},
     {{.id = "a", .weight = "3"}, {.id = "b", .weight = "1"}}, MON_1400, 1, NULL, "b", "weighted_round_robin", 2,
     {"\"weight\":3", "\"weighted\":true"}},
    {"wrr: slot 3 of a,b,a,a, then wraps", {.rule_id = "r", .strategy = CS_RS_WEIGHTED_ROUND_ROBIN}, {0},
     {{.id = "a", .weight = "3"}, {.id = "b", .weight = "1"}}, MON_1400, 3, NULL, "a", "weighted_round_robin", 0,
     {0}},
    {"wrr: the heavy rep full -> the light one", {.rule_id = "r", .strategy = CS_RS_WEIGHTED_ROUND_ROBIN}, {0},
     {{.id = "a", .weight = "3", .cap = "1", .open = 1}, {.id = "b", .weight = "1"}}, MON_1400, 2, NULL, "b",
     "weighted_round_robin", 2, {0}},
    {"wrr: equal weights are a tie: list order", {.rule_id = "r", .strategy = CS_RS_WEIGHTED_ROUND_ROBIN}, {0},
     {{.id = "a", .weight = "2"}, {.id = "b", .weight = "2"}}, MON_1400, 0, NULL, "a", "weighted_round_robin", 1,
     {0}},
    /* SLA re-route: the previous owner is excluded */
    {"previous owner excluded", {.rule_id = "r"}, {0}, ABC, MON_1400, 0, "a", "b", "round_robin", 2,
     {"\"previous_owners\":[\"a\"]", "\"excluded\":[\"previous_owner\"]"}},
    /* everything at once */
    {"combined: pool + territory + hours + capacity + ooo + wrr",
     {.rule_id = "combo", .strategy = CS_RS_WEIGHTED_ROUND_ROBIN, .pool = "emea", .territory = 1, .working_hours = 1,
      .max_open_leads = 3},
     {.country = "DE", .emp = 50},
     {{.id = "p1", .pools = "[\"emea\"]", .territory = "{\"regions\":[\"emea\"]}", .tz = "Europe/Berlin", .hours = H95,
       .open = 3, .weight = "5"},
      {.id = "p2", .pools = "[\"emea\"]", .territory = "{\"regions\":[\"emea\"]}", .tz = "Asia/Tokyo", .hours = H95},
      {.id = "p3", .pools = "[\"emea\"]", .territory = "{\"regions\":[\"amer\"]}", .tz = "Europe/Berlin", .hours = H95},
      {.id = "p4", .pools = "[\"emea\"]", .territory = "{\"regions\":[\"emea\"]}", .ooo = 1},
      {.id = "p5", .pools = "[\"emea\"]", .territory = "{\"segments\":[\"smb\"]}", .tz = "Europe/London", .hours = H95,
       .weight = "2"},
      {.id = "x", .pools = "[\"amer\"]"}},
     MON_1400, 0, NULL, "p5", "weighted_round_robin", 5,
     {"\"rule\":\"combo\"", "\"excluded\":{\"previous_owner\":0,\"out_of_office\":1,\"territory\":1,\"hours\":1,\"capacity\":1}",
      "\"candidates_total\":5", "\"eligible\":1"}},
};

static void test_decision_table(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const struct rcase *c = &cases[k];
        cs_route_rep reps[6];
        size_t n = 0;
        while (n < 6 && c->reps[n].id) mkrep(&reps[n], &c->reps[n]), n++;
        cs_route_policy p = c->pol;
        cs_route_policy_normalise(&p);
        cs_route_lead lead = {.id = "ld_1", .email = "x@acme.com", .domain = "acme.com", .country = c->lead.country,
                              .region = cs_route_region(c->lead.country), .segment = cs_route_segment(c->lead.emp),
                              .plan_tier = c->lead.plan_tier, .employee_count = c->lead.emp,
                              .account_id = c->lead.account_id, .account_owner = c->lead.owner};
        const char *ex[1] = {c->exclude};
        static cs_route_result r;
        cs_route_decide(&p, &lead, reps, n, T(c->now), c->slot, ex, c->exclude ? 1 : 0, &r);
        if ((c->want_owner == NULL) != (r.owner == NULL) || (c->want_owner && strcmp(c->want_owner, r.owner)) ||
            strcmp(c->want_via, r.via) || c->want_next != r.next_slot)
            fail_msg("case \"%s\": got owner %s via %s next %lld; want %s via %s next %lld\n%s", c->name,
                     r.owner ? r.owner : "(none)", r.via, (long long)r.next_slot,
                     c->want_owner ? c->want_owner : "(none)", c->want_via, (long long)c->want_next, r.explanation);
        cJSON *j = cJSON_Parse(r.explanation);
        if (!cJSON_IsObject(j)) fail_msg("case \"%s\": explanation is not JSON: %s", c->name, r.explanation);
        cJSON_Delete(j);
        for (int i = 0; i < 4 && c->want_in[i]; i++)
            if (!strstr(r.explanation, c->want_in[i]))
                fail_msg("case \"%s\": explanation lacks %s\n%s", c->name, c->want_in[i], r.explanation);
        if (!r.owner && !strstr(r.reason, "fallback queue")) fail_msg("case \"%s\": reason %s", c->name, r.reason);
    }
}

/* Following next_slot gives the cycle: round robin visits each eligible
 * rep once per cycle; weighted round robin in proportion to the weights. */
static void test_rotation_sequences(void **state)
{
    (void)state;
    cs_route_rep reps[3];
    const rspec s[3] = {{.id = "a", .weight = "3"}, {.id = "b", .weight = "1"}, {.id = "c", .weight = "2"}};
    for (int i = 0; i < 3; i++) mkrep(&reps[i], &s[i]);
    cs_route_lead lead = {.id = "l"};
    static cs_route_result r;
    for (int weighted = 0; weighted < 2; weighted++) {
        cs_route_policy p = {.rule_id = "r", .strategy = weighted ? CS_RS_WEIGHTED_ROUND_ROBIN : CS_RS_ROUND_ROBIN};
        cs_route_policy_normalise(&p);
        char seq[64] = "";
        int64_t slot = 0;
        int count[3] = {0};
        for (int i = 0; i < 12; i++) {
            cs_route_decide(&p, &lead, reps, 3, T(MON_1400), slot, NULL, 0, &r);
            assert_non_null(r.owner);
            strcat(seq, r.owner);
            count[r.rep]++;
            slot = r.next_slot;
        }
        /* interleaved rounds: round 1 a b c, round 2 a c, round 3 a */
        assert_string_equal(seq, weighted ? "abcacaabcaca" : "abcabcabcabc");
        if (weighted) assert_true(count[0] == 6 && count[1] == 2 && count[2] == 4);
    }
    /* capacity changing between decisions: the rotation skips, never stalls */
    cs_route_policy p = {.rule_id = "r"};
    cs_route_policy_normalise(&p);
    reps[1].capacity = 0;
    char seq[16] = "";
    int64_t slot = 0;
    for (int i = 0; i < 4; i++) {
        cs_route_decide(&p, &lead, reps, 3, T(MON_1400), slot, NULL, 0, &r);
        strcat(seq, r.owner);
        slot = r.next_slot;
    }
    assert_string_equal(seq, "acac");
}

static void test_sla_working_time(void **state)
{
    (void)state;
    cs_route_rep r;
    const rspec plain = {.id = "p"}, utc = {.id = "u", .hours = H95},
                ber = {.id = "b", .hours = H95, .tz = "Europe/Berlin"};
    mkrep(&r, &plain);
    assert_int_equal(cs_route_sla_due(&r, T("2026-11-27T16:50:00Z"), 30 * 60000000LL), T("2026-11-27T17:20:00Z"));
    assert_int_equal(cs_route_sla_due(&r, T("2026-11-27T16:50:00Z"), 0), 0);
    mkrep(&r, &utc);
    /* Friday 16:50: 10 minutes left today, the other 20 on Monday at 09:00 */
    assert_int_equal(cs_route_sla_due(&r, T("2026-11-27T16:50:00Z"), 30 * 60000000LL), T("2026-11-30T09:20:00Z"));
    /* inside the window */
    assert_int_equal(cs_route_sla_due(&r, T("2026-11-30T10:00:00Z"), 30 * 60000000LL), T("2026-11-30T10:30:00Z"));
    /* before the window opens */
    assert_int_equal(cs_route_sla_due(&r, T("2026-11-30T06:00:00Z"), 60 * 60000000LL), T("2026-11-30T10:00:00Z"));
    /* two working days = 16 h: Monday 09:00 -> Tuesday 17:00 */
    assert_int_equal(cs_route_sla_due(&r, T("2026-11-30T09:00:00Z"), 16 * 3600000000LL), T("2026-12-01T17:00:00Z"));
    mkrep(&r, &ber);
    /* Berlin (CET, UTC+1): Friday 16:50 local = 15:50Z; resumes Monday 09:00 local = 08:00Z */
    assert_int_equal(cs_route_sla_due(&r, T("2026-11-27T15:50:00Z"), 30 * 60000000LL), T("2026-11-30T08:20:00Z"));
    /* across the spring DST change (Sunday 2026-03-29 in Europe): Friday
     * 16:30 CET, 30 min left, then Monday 09:00 CEST = 07:00Z */
    assert_int_equal(cs_route_sla_due(&r, T("2026-03-27T15:30:00Z"), 60 * 60000000LL), T("2026-03-30T07:30:00Z"));
    assert_int_equal(cs_route_in_hours(&r, T("2026-03-30T07:30:00Z")), 1);
    assert_int_equal(cs_route_in_hours(&r, T("2026-03-27T07:30:00Z")), 0); /* 08:30 CET */
}

static void test_time_zones(void **state)
{
    (void)state;
    int off;
    assert_int_equal(cs_tz_offset("Europe/Berlin", T("2026-01-15T12:00:00Z") / 1000000, &off), 0);
    assert_int_equal(off, 3600);
    assert_int_equal(cs_tz_offset("Europe/Berlin", T("2026-07-15T12:00:00Z") / 1000000, &off), 0);
    assert_int_equal(off, 7200);
    assert_int_equal(cs_tz_offset("America/New_York", T("2026-11-01T05:59:59Z") / 1000000, &off), 0);
    assert_int_equal(off, -4 * 3600); /* EDT ends at 06:00Z */
    assert_int_equal(cs_tz_offset("America/New_York", T("2026-11-01T06:00:00Z") / 1000000, &off), 0);
    assert_int_equal(off, -5 * 3600);
    assert_int_equal(cs_tz_offset("Asia/Kolkata", 0, &off), 0);
    assert_int_equal(off, 19800);
    assert_int_equal(cs_tz_offset("UTC", 0, &off), 0);
    assert_int_equal(off, 0);
    assert_int_equal(cs_tz_offset("Mars/Olympus", 0, &off), -1);
    assert_int_equal(cs_tz_offset("../../etc/passwd", 0, &off), -1);
    assert_int_equal(cs_tz_offset("/etc/passwd", 0, &off), -1);
    assert_int_equal(cs_tz_offset("Europe/Berlin'; DROP TABLE reps; --", 0, &off), -1);
    /* more zones than the cache holds: still right (oldest replaced) */
    const char *zones[] = {"Europe/Paris", "Asia/Tokyo", "Australia/Sydney", "America/Chicago", "Africa/Cairo"};
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < 5; i++) assert_int_equal(cs_tz_offset(zones[i], 0, &off), 0);
    assert_int_equal(cs_tz_offset("Asia/Tokyo", T("2026-07-15T12:00:00Z") / 1000000, &off), 0);
    assert_int_equal(off, 9 * 3600);
}

static void test_rep_attributes(void **state)
{
    (void)state;
    cs_route_rep r;
    cs_route_rep_init(&r, "x");
    cs_route_rep_set(&r, "territory", "{\"country\":[\"DE\"],\"plan_tier\":\"pro\"}"); /* singular forms */
    assert_int_equal(r.has_territory, 1);
    assert_string_equal(r.countries.v[0], "DE");
    assert_string_equal(r.plan_tiers.v[0], "pro");
    assert_string_equal(r.bad_territory, "");
    cs_route_rep_set(&r, "working_hours", "{\"mon\":\"17:00-09:00\"}");
    assert_non_null(strstr(r.bad_hours, "working_hours: "));
    cs_route_rep_init(&r, "y");
    cs_route_rep_set(&r, "territory", "{\"k\":\"v\"}");
    assert_non_null(strstr(r.bad_territory, "unknown dimension"));
    cs_route_rep_set(&r, "pools", "\"smb\"");
    assert_non_null(strstr(r.bad_pools, "pools: "));
    assert_int_equal(r.npools, 0);
    assert_null(cs_route_rep_check("weight", "3"));
    assert_non_null(cs_route_rep_check("weight", "0"));
    assert_non_null(cs_route_rep_check("weight", "101"));
    assert_null(cs_route_rep_check("territory", "{\"k\":1}")); /* checked at use */
    assert_string_equal(cs_route_region("de"), "emea");
    assert_string_equal(cs_route_region("BR"), "amer");
    assert_string_equal(cs_route_region("XX"), "");
    assert_string_equal(cs_route_segment(-1), "");
    assert_string_equal(cs_route_segment(199), "smb");
    assert_string_equal(cs_route_segment(200), "mid");
    assert_string_equal(cs_route_segment(1000), "enterprise");
}

/* The explanation stays valid JSON and under its bound with many reps. */
static void test_explanation_bounded(void **state)
{
    (void)state;
    size_t n = 300;
    cs_route_rep *reps = calloc(n, sizeof *reps);
    for (size_t i = 0; i < n; i++) {
        char id[161];
        memset(id, 'r', 150);
        snprintf(id + 150, 11, "%zu", i);
        cs_route_rep_init(&reps[i], id);
        cs_route_rep_set(&reps[i], "territory", "{\"countries\":[\"US\"]}");
        cs_route_rep_set(&reps[i], "timezone", "America/New_York");
        cs_route_rep_set(&reps[i], "working_hours", H95);
    }
    cs_route_policy p = {.rule_id = "r", .territory = 1, .working_hours = 1};
    cs_route_policy_normalise(&p);
    cs_route_lead lead = {.id = "l", .country = "DE", .region = "emea"};
    static cs_route_result r;
    cs_route_decide(&p, &lead, reps, n, T(MON_0730), 0, NULL, 0, &r);
    assert_null(r.owner);
    assert_true(strlen(r.explanation) < CS_ROUTE_EXPLANATION_MAX);
    cJSON *j = cJSON_Parse(r.explanation);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "candidates_total")->valueint, 300);
    int listed = cJSON_GetObjectItem(j, "candidates_listed")->valueint;
    assert_true(listed >= 1 && listed <= CS_ROUTE_EXPLAIN_MAX_CANDIDATES);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "candidates")), listed);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "excluded"), "territory")->valueint, 300);
    cJSON_Delete(j);
    free(reps);
}

/* ------------------------------------------------------ the store (SQLite) */

struct sfx {
    char      dir[64];
    char      spec[128];
    cs_store *st;
    cs_config cfg;
};

static struct sfx *sfx_new(const char *yaml)
{
    struct sfx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/crmstream-routing-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->spec, sizeof f->spec, "sqlite:%s/crm.sqlite", f->dir);
    char err[512];
    f->st = cs_store_open(f->spec, f->dir, err, sizeof err);
    if (!f->st) fail_msg("%s", err);
    cs_config_defaults(&f->cfg);
    if (yaml && cs_config_load_string(&f->cfg, "test.yaml", yaml, err, sizeof err)) fail_msg("%s", err);
    return f;
}

static void sfx_reopen(struct sfx *f)
{
    char err[512];
    f->st->ops->close(f->st);
    f->st = cs_store_open(f->spec, f->dir, err, sizeof err);
    if (!f->st) fail_msg("%s", err);
}

static void sfx_free(struct sfx *f)
{
    f->st->ops->close(f->st);
    cs_config_free(&f->cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

static int64_t next_offset;

/* Apply a LeadCreated in its own transaction, appended at `at`. */
static void lead_event(struct sfx *f, const char *eid, const char *email, const char *country, long emp,
                       const char *account, const char *at, const cs_lead_ctx *ctx)
{
    char body[800], acc[200] = "";
    if (account) snprintf(acc, sizeof acc, "\"account_id\":\"%s\",", account);
    snprintf(body, sizeof body,
             "{\"event_id\":\"%s\",\"type\":\"LeadCreated\",%s\"timestamp\":\"%s\",\"properties\":{\"email\":\"%s\","
             "\"country\":\"%s\",\"employee_count\":%ld}}",
             eid, acc, at, email, country, emp);
    cJSON *ev = cJSON_Parse(body);
    cs_rec rec = {.offset = next_offset++, .ts_us = T(at), .append_us = T(at), .value = body, .value_len = strlen(body)};
    assert_int_equal(f->st->ops->begin(f->st), 0);
    assert_int_equal(cs_pipeline_apply_lead_ctx(f->st, &f->cfg, 0, &rec, ev, ctx), 0);
    assert_int_equal(f->st->ops->commit(f->st), 0);
    cJSON_Delete(ev);
}

/* Apply a LeadCreated with the given properties (JSON object text). */
static void lead_event_props(struct sfx *f, const char *eid, const char *props, const char *at)
{
    char body[800];
    snprintf(body, sizeof body, "{\"event_id\":\"%s\",\"type\":\"LeadCreated\",\"timestamp\":\"%s\",\"properties\":%s}",
             eid, at, props);
    cJSON *ev = cJSON_Parse(body);
    assert_non_null(ev);
    cs_rec rec = {.offset = next_offset++, .ts_us = T(at), .append_us = T(at), .value = body, .value_len = strlen(body)};
    assert_int_equal(f->st->ops->begin(f->st), 0);
    assert_int_equal(cs_pipeline_apply_lead(f->st, &f->cfg, 0, &rec, ev), 0);
    assert_int_equal(f->st->ops->commit(f->st), 0);
    cJSON_Delete(ev);
}

struct find {
    const char *eid;
    cs_lead    *out;
    int64_t     last;
};

static int on_lead_row(const cs_lead *l, void *arg)
{
    struct find *c = arg;
    c->last = l->seq;
    if (strcmp(l->event_id, c->eid) == 0) *c->out = *l;
    return 0;
}

/* The lead made from event eid (through the reader side, as the API). */
static cs_lead *lead_of(struct sfx *f, const char *eid)
{
    static cs_lead found;
    memset(&found, 0, sizeof found);
    struct find c = {eid, &found, 0};
    for (;;) {
        int n = f->st->ops->lead_list(f->st, c.last, 100, on_lead_row, &c);
        assert_true(n >= 0);
        if (found.id[0] || n < 100) break;
    }
    if (!found.id[0]) fail_msg("no lead for event %s", eid);
    return &found;
}

static void upsert(struct sfx *f, int obj, const char *id, const cs_kv *kv, size_t n)
{
    cs_cause cause = {"adm", 0, 0, "api", "2026-11-30T00:00:00.000Z"};
    assert_int_equal(f->st->ops->begin(f->st), 0);
    assert_true(f->st->ops->obj_upsert(f->st, obj, id, kv, n, &cause) >= 0);
    assert_int_equal(f->st->ops->commit(f->st), 0);
}

static const char reps3[] = "routing:\n"
                            "  reps:\n"
                            "    - {id: rep_a, name: A}\n"
                            "    - {id: rep_b, name: B}\n"
                            "    - {id: rep_c, name: C}\n";

static void test_store_round_robin_and_capacity(void **state)
{
    (void)state;
    struct sfx *f = sfx_new(reps3);
    lead_event(f, "e1", "a@x.io", "US", 10, NULL, "2026-11-30T14:00:00Z", NULL);
    lead_event(f, "e2", "b@y.io", "US", 10, NULL, "2026-11-30T14:00:01Z", NULL);
    sfx_reopen(f); /* the rotation is in the store */
    lead_event(f, "e3", "c@z.io", "US", 10, NULL, "2026-11-30T14:00:02Z", NULL);
    lead_event(f, "e4", "d@z.io", "US", 10, NULL, "2026-11-30T14:00:03Z", NULL);
    assert_string_equal(lead_of(f, "e1")->owner, "rep_a");
    assert_string_equal(lead_of(f, "e2")->owner, "rep_b");
    assert_string_equal(lead_of(f, "e3")->owner, "rep_c");
    cs_lead *l = lead_of(f, "e4");
    assert_string_equal(l->owner, "rep_a");
    assert_string_equal(l->status, "routed");
    assert_string_equal(l->domain, "z.io");
    assert_string_equal(l->sla_due_at, ""); /* no SLA configured */
    assert_non_null(strstr(l->route_reason, "round_robin"));
    cJSON *j = cJSON_Parse(l->route_explanation);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "winner")->valuestring, "rep_a");
    assert_string_equal(cJSON_GetObjectItem(j, "rule")->valuestring, "routing.default");
    cJSON_Delete(j);

    /* A rep object (REST) caps rep_b at 2 open leads: it has 1 (e2). Two
     * leads in ONE transaction: the second sees the first's open lead. */
    cs_kv cap[] = {{"capacity", "2"}};
    upsert(f, CS_OBJ_REP, "rep_b", cap, 1);
    /* rotation is at rep_b now */
    const char *ev[] = {"e5", "e6", "e7"};
    assert_int_equal(f->st->ops->begin(f->st), 0);
    for (int i = 0; i < 3; i++) {
        char body[300];
        snprintf(body, sizeof body,
                 "{\"event_id\":\"%s\",\"type\":\"LeadCreated\",\"timestamp\":\"2026-11-30T14:01:00Z\","
                 "\"properties\":{\"email\":\"x%d@q.io\"}}",
                 ev[i], i);
        cJSON *e = cJSON_Parse(body);
        cs_rec rec = {.offset = next_offset++, .ts_us = T(MON_1400), .append_us = T(MON_1400), .value = body,
                      .value_len = strlen(body)};
        assert_int_equal(cs_pipeline_apply_lead(f->st, &f->cfg, 0, &rec, e), 0);
        cJSON_Delete(e);
    }
    assert_int_equal(f->st->ops->commit(f->st), 0);
    assert_string_equal(lead_of(f, "e5")->owner, "rep_b"); /* 2nd open lead: now full */
    assert_string_equal(lead_of(f, "e6")->owner, "rep_c");
    assert_string_equal(lead_of(f, "e7")->owner, "rep_a"); /* rep_b skipped: capacity */
    assert_non_null(strstr(lead_of(f, "e7")->route_explanation,
                           "{\"rep\":\"rep_b\",\"open_leads\":2,\"capacity\":2,\"eligible\":false,\"excluded\":[\"capacity\"]}"));
    /* Re-applying an event changes nothing. */
    lead_event(f, "e7", "x2@q.io", "US", 10, NULL, "2026-11-30T14:01:00Z", NULL);
    assert_string_equal(lead_of(f, "e7")->owner, "rep_a");
    sfx_free(f);
}

static void test_store_account_match_and_territory(void **state)
{
    (void)state;
    struct sfx *f = sfx_new("routing:\n"
                            "  strategy: account_owner\n"
                            "  territory: true\n"
                            "  reps:\n"
                            "    - {id: rep_us, territory: {countries: [US]}}\n"
                            "    - {id: rep_eu, territory: {regions: [emea]}, capacity: 5}\n"
                            "    - {id: rep_owner}\n");
    cs_kv acc[] = {{"domain", "acme.com"}, {"owner", "rep_owner"}, {"plan_tier", "pro"}};
    upsert(f, CS_OBJ_ACCOUNT, "acc_acme", acc, 3);
    lead_event(f, "m1", "jane@acme.com", "DE", 10, NULL, MON_1400, NULL);        /* by domain */
    lead_event(f, "m2", "bob@other.com", "DE", 10, NULL, MON_1400, NULL);        /* no account: territory */
    lead_event(f, "m3", "al@other.com", "US", 10, NULL, MON_1400, NULL);
    lead_event(f, "m4", "zed@Other.org", "JP", 10, NULL, MON_1400, NULL);        /* nobody covers apac */
    cs_lead *l = lead_of(f, "m1");
    assert_string_equal(l->owner, "rep_owner");
    assert_string_equal(l->account_id, "acc_acme");
    assert_non_null(strstr(l->route_explanation, "\"matched_by\":\"domain\""));
    assert_string_equal(lead_of(f, "m2")->owner, "rep_eu");
    assert_string_equal(lead_of(f, "m3")->owner, "rep_us");
    /* the company's website names the account even for a free-mail address */
    lead_event_props(f, "m5", "{\"email\":\"jane@gmail.com\",\"country\":\"DE\",\"website\":\"https://www.Acme.com/about\"}",
                     MON_1400);
    l = lead_of(f, "m5");
    assert_string_equal(l->domain, "acme.com");
    assert_string_equal(l->owner, "rep_owner");
    assert_non_null(strstr(l->route_explanation, "\"matched_by\":\"domain\""));
    /* a company domain with no account: the email's domain is tried next */
    lead_event_props(f, "m6", "{\"email\":\"max@acme.com\",\"country\":\"DE\",\"company_domain\":\"acme-gmbh.de\"}",
                     MON_1400);
    l = lead_of(f, "m6");
    assert_string_equal(l->domain, "acme-gmbh.de");
    assert_string_equal(l->owner, "rep_owner");
    assert_non_null(strstr(l->route_explanation, "\"matched_by\":\"email_domain\""));
    l = lead_of(f, "m4");
    assert_string_equal(l->status, "queued");
    assert_string_equal(l->owner, "");
    assert_string_equal(l->domain, "other.org");
    assert_non_null(strstr(l->route_explanation, "\"queue\":\"unassigned\""));
    sfx_free(f);
}

static void test_store_rule_policy(void **state)
{
    (void)state;
    struct sfx *f = sfx_new("routing:\n"
                            "  reps:\n"
                            "    - {id: rep_de, pools: [emea], weight: 3}\n"
                            "    - {id: rep_fr, pools: [emea]}\n"
                            "    - {id: rep_us, pools: [amer]}\n");
    const char *rules = "rules:\n"
                        "  - id: inbound-emea\n"
                        "    when: event.type == \"LeadCreated\" && lead.country in [\"DE\", \"FR\"]\n"
                        "    actions:\n"
                        "      - route_lead: {strategy: weighted_round_robin, pool: emea, sla: 30m}\n";
    char err[300];
    static const char *const roots[] = {"event", "account", "lead", "contact", "signals", "changed", NULL};
    cs_rules_opts o = {.roots = roots};
    cs_ruleset *rs = cs_rules_load_string("rules.yaml", rules, strlen(rules), &o, err, sizeof err);
    if (!rs) fail_msg("%s", err);
    cs_pipeline_rules pr = {.rules = rs};
    cs_lead_ctx ctx = {&pr};
    const char *want[] = {"rep_de", "rep_fr", "rep_de", "rep_de"};
    for (int i = 0; i < 4; i++) {
        char eid[16];
        snprintf(eid, sizeof eid, "r%d", i);
        lead_event(f, eid, "p@eu.example", "FR", 10, NULL, MON_1400, &ctx);
        cs_lead *l = lead_of(f, eid);
        assert_string_equal(l->owner, want[i]);
        assert_non_null(strstr(l->route_explanation, "\"rule\":\"inbound-emea\""));
        assert_string_equal(l->sla_due_at, "2026-11-30T14:30:00.000Z");
    }
    /* no rule matches a US lead: the config's default (every rep, round robin) */
    lead_event(f, "r9", "p@us.example", "US", 10, NULL, MON_1400, &ctx);
    assert_non_null(strstr(lead_of(f, "r9")->route_explanation, "\"rule\":\"routing.default\""));
    cs_ruleset_unref(rs);
    sfx_free(f);
}

struct alerts {
    int  n;
    char msg[4][400];
};

static int on_alert(const cs_row *row, void *arg)
{
    struct alerts *a = arg;
    int k = cs_obj_col(row->def, "kind"), m = cs_obj_col(row->def, "message");
    if (row->vals[k] && strcmp(row->vals[k], "lead_sla_breach") == 0 && a->n < 4)
        snprintf(a->msg[a->n++], sizeof a->msg[0], "%s", row->vals[m] ? row->vals[m] : "");
    return 0;
}

static int sweep(struct sfx *f, const char *now, cs_sla_stats *s)
{
    assert_int_equal(f->st->ops->begin(f->st), 0);
    int n = cs_routing_sla_sweep(f->st, &f->cfg, T(now), 100, s);
    assert_int_equal(f->st->ops->commit(f->st), 0);
    return n;
}

static void accept_lead(struct sfx *f, const char *id, const char *rep, const char *at, int want)
{
    cs_cause c = {"adm_acc", 0, 99, "api", at};
    assert_int_equal(f->st->ops->begin(f->st), 0);
    assert_int_equal(cs_routing_accept(f->st, id, rep, &c), want);
    assert_int_equal(f->st->ops->commit(f->st), 0);
}

static void test_sla_breach_reroute(void **state)
{
    (void)state;
    struct sfx *f = sfx_new("routing:\n"
                            "  sla: 30m\n"
                            "  fallback: inbound-queue\n"
                            "  reps:\n"
                            "    - {id: rep_a}\n"
                            "    - {id: rep_b}\n"
                            "    - {id: rep_c, out_of_office: true}\n");
    lead_event(f, "s1", "one@acme.com", "US", 10, NULL, "2026-11-30T14:00:00Z", NULL);
    lead_event(f, "s2", "two@acme.com", "US", 10, NULL, "2026-11-30T14:00:00Z", NULL);
    char id1[160], id2[160];
    snprintf(id1, sizeof id1, "%s", lead_of(f, "s1")->id);
    snprintf(id2, sizeof id2, "%s", lead_of(f, "s2")->id);
    assert_string_equal(lead_of(f, "s1")->owner, "rep_a");
    assert_string_equal(lead_of(f, "s1")->sla_due_at, "2026-11-30T14:30:00.000Z");
    assert_string_equal(lead_of(f, "s2")->owner, "rep_b");
    /* s2 is accepted in time (only by its owner) */
    accept_lead(f, id2, "rep_a", "2026-11-30T14:10:00.000Z", 0);
    accept_lead(f, id2, "rep_b", "2026-11-30T14:10:00.000Z", 1);
    accept_lead(f, id2, NULL, "2026-11-30T14:11:00.000Z", 0); /* already accepted */
    cs_lead *l = lead_of(f, "s2");
    assert_string_equal(l->status, "accepted");
    assert_string_equal(l->accepted_at, "2026-11-30T14:10:00.000Z");
    assert_string_equal(l->sla_due_at, "");

    cs_sla_stats s;
    assert_int_equal(sweep(f, "2026-11-30T14:29:59Z", &s), 0);
    sfx_reopen(f); /* a restart: the deadline is in the store */
    assert_int_equal(sweep(f, "2026-11-30T14:30:00Z", &s), 1);
    assert_int_equal(s.rerouted, 1);
    l = lead_of(f, "s1");
    /* rep_a missed it; rep_c is out of office; rep_b has one accepted (not open) lead */
    assert_string_equal(l->owner, "rep_b");
    assert_string_equal(l->status, "routed");
    assert_string_equal(l->routed_at, "2026-11-30T14:30:00.000Z");
    assert_string_equal(l->sla_due_at, "2026-11-30T15:00:00.000Z");
    assert_non_null(strstr(l->route_reason, "SLA breach by rep_a"));
    assert_non_null(strstr(l->route_explanation, "\"previous_owners\":[\"rep_a\"]"));
    struct alerts al = {0};
    assert_true(f->st->ops->obj_list(f->st, CS_OBJ_ALERT, 0, 100, NULL, 0, on_alert, &al) >= 0);
    assert_int_equal(al.n, 1);
    assert_non_null(strstr(al.msg[0], "not accepted by rep_a"));
    assert_non_null(strstr(al.msg[0], "re-routed to rep_b"));
    /* a second sweep at the same time does nothing */
    assert_int_equal(sweep(f, "2026-11-30T14:30:00Z", &s), 0);
    /* rep_b misses it too: nobody else is eligible -> the fallback queue */
    assert_int_equal(sweep(f, "2026-11-30T15:00:00Z", &s), 1);
    assert_int_equal(s.queued, 1);
    l = lead_of(f, "s1");
    assert_string_equal(l->status, "queued");
    assert_string_equal(l->owner, "");
    assert_string_equal(l->sla_due_at, "");
    assert_non_null(strstr(l->route_explanation, "\"previous_owners\":[\"rep_a\",\"rep_b\"]"));
    assert_non_null(strstr(l->route_explanation, "\"queue\":\"inbound-queue\""));
    memset(&al, 0, sizeof al);
    assert_true(f->st->ops->obj_list(f->st, CS_OBJ_ALERT, 0, 100, NULL, 0, on_alert, &al) >= 0);
    assert_int_equal(al.n, 2);
    assert_non_null(strstr(al.msg[1], "queued in inbound-queue"));
    /* a queued lead is no longer swept, and cannot be accepted */
    assert_int_equal(sweep(f, "2026-12-30T15:00:00Z", &s), 0);
    accept_lead(f, id1, NULL, "2026-11-30T16:00:00.000Z", 0);
    sfx_free(f);
}

static void test_sla_in_working_hours(void **state)
{
    (void)state;
    struct sfx *f = sfx_new("routing:\n"
                            "  sla: 1h\n"
                            "  reps:\n"
                            "    - {id: rep_a, timezone: Europe/Berlin, working_hours: {weekdays: \"09:00-17:00\"}}\n"
                            "    - {id: rep_b, timezone: Europe/Berlin, working_hours: {weekdays: \"09:00-17:00\"}}\n");
    /* Friday 16:30 Berlin (15:30Z): 30 min today, 30 on Monday from 09:00 (08:00Z) */
    lead_event(f, "w1", "x@acme.com", "DE", 10, NULL, "2026-11-27T15:30:00Z", NULL);
    assert_string_equal(lead_of(f, "w1")->sla_due_at, "2026-11-30T08:30:00.000Z");
    cs_sla_stats s;
    assert_int_equal(sweep(f, "2026-11-29T20:00:00Z", &s), 0); /* the weekend does not count */
    assert_int_equal(sweep(f, "2026-11-30T08:30:00Z", &s), 1);
    assert_string_equal(lead_of(f, "w1")->owner, "rep_b");
    assert_string_equal(lead_of(f, "w1")->sla_due_at, "2026-11-30T09:30:00.000Z");
    sfx_free(f);
}

/* assign_owner and emit_event through the rules (rules_apply.c). */
struct outbox_rows {
    int  n;
    char payload[2][600];
};

static int on_outbox(const cs_outbox_row *r, void *arg)
{
    struct outbox_rows *o = arg;
    if (o->n < 2) snprintf(o->payload[o->n], sizeof o->payload[0], "%s", r->payload);
    o->n++;
    return 0;
}

struct owner_of {
    char owner[161];
};

static int on_account_row(const cs_row *row, void *arg)
{
    struct owner_of *o = arg;
    int c = cs_obj_col(row->def, "owner");
    snprintf(o->owner, sizeof o->owner, "%s", row->vals[c] ? row->vals[c] : "");
    return 0;
}

static void test_assign_owner_and_emit_event(void **state)
{
    (void)state;
    struct sfx *f = sfx_new("routing:\n"
                            "  reps:\n"
                            "    - {id: rep_x, pools: [csm]}\n"
                            "    - {id: rep_y, pools: [csm], out_of_office: true}\n"
                            "    - {id: rep_z, pools: [csm]}\n");
    const char *rules = "rules:\n"
                        "  - id: upgrade\n"
                        "    when: event.type == \"SubscriptionUpgraded\"\n"
                        "    actions:\n"
                        "      - assign_owner: {pool: csm}\n"
                        "      - emit_event: {type: AccountExpanded, properties: {plan: \"{{ event.properties.plan_tier }}\"}}\n"
                        "  - id: named\n"
                        "    when: event.type == \"FeatureUsed\"\n"
                        "    actions:\n"
                        "      - assign_owner: {rep: \"rep_{{ event.properties.feature }}\"}\n";
    char err[300];
    cs_ruleset *rs = cs_rules_load_string("rules.yaml", rules, strlen(rules), NULL, err, sizeof err);
    if (!rs) fail_msg("%s", err);
    cs_pipeline_rules pr = {.rules = rs, .cfg = &f->cfg};
    const char *accs[] = {"acc_1", "acc_2"};
    for (int i = 0; i < 2; i++) {
        char body[300];
        snprintf(body, sizeof body,
                 "{\"event_id\":\"u%d\",\"type\":\"SubscriptionUpgraded\",\"account_id\":\"%s\","
                 "\"timestamp\":\"2026-11-30T14:00:00Z\",\"properties\":{\"plan_tier\":\"pro\"}}",
                 i, accs[i]);
        cJSON *ev = cJSON_Parse(body);
        cs_rec rec = {.offset = next_offset++, .ts_us = T(MON_1400), .append_us = T(MON_1400), .value = body,
                      .value_len = strlen(body)};
        char eid[16];
        snprintf(eid, sizeof eid, "u%d", i);
        assert_int_equal(f->st->ops->begin(f->st), 0);
        assert_int_equal(cs_pipeline_apply_rules(f->st, &pr, NULL, 0, &rec, ev, accs[i], NULL, T(MON_1400), eid), 0);
        /* applied twice (a replay): the same outbox id, nothing new */
        assert_int_equal(cs_pipeline_apply_rules(f->st, &pr, NULL, 0, &rec, ev, accs[i], NULL, T(MON_1400), eid), 0);
        assert_int_equal(f->st->ops->commit(f->st), 0);
        cJSON_Delete(ev);
    }
    struct owner_of o;
    assert_int_equal(f->st->ops->obj_get(f->st, CS_OBJ_ACCOUNT, "acc_1", on_account_row, &o), 0);
    assert_string_equal(o.owner, "rep_x");
    assert_int_equal(f->st->ops->obj_get(f->st, CS_OBJ_ACCOUNT, "acc_2", on_account_row, &o), 0);
    /* the replay did not move the rotation (acc_1 had its owner); rep_y is out of office */
    assert_string_equal(o.owner, "rep_z");
    struct outbox_rows ob = {0};
    assert_true(f->st->ops->outbox_list(f->st, "pending", "log", 0, 10, on_outbox, &ob) >= 0);
    assert_int_equal(ob.n, 2);
    cJSON *d = cJSON_Parse(ob.payload[0]);
    assert_non_null(d);
    assert_string_equal(cJSON_GetObjectItem(d, "type")->valuestring, "AccountExpanded");
    assert_string_equal(cJSON_GetObjectItem(d, "account_id")->valuestring, "acc_1");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "properties"), "plan")->valuestring, "pro");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "derived_from"), "event_id")->valuestring, "u0");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "derived_from"), "rule")->valuestring, "upgrade");
    cJSON_Delete(d);

    /* The relay appends the derived events to the log, once. */
    cs_bus *bus = cs_bus_embedded_open(f->dir, 2, CS_FSYNC_NEVER, 0, err, sizeof err);
    if (!bus) fail_msg("%s", err);
    assert_int_equal(cs_pipeline_relay_derived(f->st, bus, T(MON_1400) / 1000, 100), 2);
    assert_int_equal(cs_pipeline_relay_derived(f->st, bus, T(MON_1400) / 1000, 100), 0);
    memset(&ob, 0, sizeof ob);
    assert_true(f->st->ops->outbox_list(f->st, "pending", "log", 0, 10, on_outbox, &ob) >= 0);
    assert_int_equal(ob.n, 0);
    memset(&ob, 0, sizeof ob);
    assert_true(f->st->ops->outbox_list(f->st, "delivered", "log", 0, 10, on_outbox, &ob) >= 0);
    assert_int_equal(ob.n, 2);
    int64_t in_log = 0;
    for (int p = 0; p < bus->partitions; p++) in_log += bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
    assert_int_equal(in_log, 2);
    bus->ops->close(bus);

    char body[] = "{\"event_id\":\"f1\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_1\","
                  "\"timestamp\":\"2026-11-30T14:00:00Z\",\"properties\":{\"feature\":\"z\"}}";
    cJSON *ev = cJSON_Parse(body);
    cs_rec rec = {.offset = next_offset++, .value = body, .value_len = strlen(body)};
    assert_int_equal(f->st->ops->begin(f->st), 0);
    assert_int_equal(cs_pipeline_apply_rules(f->st, &pr, NULL, 0, &rec, ev, "acc_1", NULL, T(MON_1400), "f1"), 0);
    assert_int_equal(f->st->ops->commit(f->st), 0);
    cJSON_Delete(ev);
    assert_int_equal(f->st->ops->obj_get(f->st, CS_OBJ_ACCOUNT, "acc_1", on_account_row, &o), 0);
    assert_string_equal(o.owner, "rep_z");
    cs_ruleset_unref(rs);
    sfx_free(f);
}

/* The injectable clock drives the sweep: a lead routed "now" is swept once
 * the clock is moved past its deadline, not before. */
static void test_injectable_clock_drives_the_sweep(void **state)
{
    (void)state;
    struct sfx *f = sfx_new("routing:\n  sla: 30m\n  reps:\n    - {id: rep_a}\n    - {id: rep_b}\n");
    char now[40];
    cs_clock_set_offset_us(0);
    cs_fmt_time_ms(cs_clock_us(), now, sizeof now);
    lead_event(f, "c1", "c@acme.com", "US", 10, NULL, now, NULL);
    cs_sla_stats s;
    assert_int_equal(f->st->ops->begin(f->st), 0);
    assert_int_equal(cs_routing_sla_sweep(f->st, &f->cfg, cs_clock_us(), 10, &s), 0);
    cs_clock_set_offset_us(31 * 60000000LL);
    int64_t d = cs_clock_us() - cs_now_us();
    assert_true(d >= 31 * 60000000LL - 1000000 && d <= 31 * 60000000LL + 1000000);
    assert_int_equal(cs_routing_sla_sweep(f->st, &f->cfg, cs_clock_us(), 10, &s), 1);
    assert_int_equal(f->st->ops->commit(f->st), 0);
    cs_clock_set_offset_us(0);
    assert_string_equal(lead_of(f, "c1")->owner, "rep_b");
    sfx_free(f);
}

int main(void)
{
    cs_log_set_level(CS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decision_table),
        cmocka_unit_test(test_rotation_sequences),
        cmocka_unit_test(test_sla_working_time),
        cmocka_unit_test(test_time_zones),
        cmocka_unit_test(test_rep_attributes),
        cmocka_unit_test(test_explanation_bounded),
        cmocka_unit_test(test_store_round_robin_and_capacity),
        cmocka_unit_test(test_store_account_match_and_territory),
        cmocka_unit_test(test_store_rule_policy),
        cmocka_unit_test(test_sla_breach_reroute),
        cmocka_unit_test(test_sla_in_working_hours),
        cmocka_unit_test(test_assign_owner_and_emit_event),
        cmocka_unit_test(test_injectable_clock_drives_the_sweep),
    };
    return cmocka_run_group_tests_name("routing", tests, NULL, NULL);
}
