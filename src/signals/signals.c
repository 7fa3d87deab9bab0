/*
 * signals/signals.c — the per-partition signals engine: the account table,
 * the watermark, applying an event to an account's windows, evaluating the
 * signal definitions and turning differences into changes to write.
 *
 * Windows live in rings indexed by absolute UTC day (or week), so where a
 * value lands never depends on arrival order. A ring slot is reused only
 * once its day is older than anything the watermark still admits (lateness
 * is at most 1 day, the rings hold 35, 16 and 4x7 days), and days leaving
 * the usage ring are folded into the decayed tail one day at a time, the same
 * arithmetic whichever event moved the account forward. That is what makes
 * the state identical for sorted, reversed and shuffled input (T14).
 */
#include "signals/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define DAY_US 86400000000LL

/* ================================================================ helpers */

uint64_t cs_sig_hash(const void *p, size_t n)
{
    uint64_t h = XXH3_64bits(p, n);
    return h ? h : 1;
}

static int32_t day_of(int64_t us)
{
    int64_t d = us / DAY_US;
    if (us % DAY_US < 0) d--;
    return (int32_t)d;
}

static int mod(int32_t a, int n)
{
    int r = (int)(a % n);
    return r < 0 ? r + n : r;
}

/* Tumbling UTC weeks, Monday to Sunday (1970-01-01 was a Thursday). */
static int32_t week_of(int32_t day)
{
    int32_t x = day + 3;
    return x >= 0 ? x / 7 : -((-x + 6) / 7);
}

static const char *const tier_names[] = {"", "trial", "free", "starter", "pro", "enterprise", "other"};

enum cs_sig_tier cs_sig_tier_parse(const char *s)
{
    if (!s || !*s) return CS_SIG_TIER_NONE;
    for (int i = 1; i < CS_SIG_TIER_OTHER; i++)
        if (strcmp(s, tier_names[i]) == 0) return (enum cs_sig_tier)i;
    if (strcmp(s, "growth") == 0 || strcmp(s, "business") == 0) return CS_SIG_TIER_PRO;
    return CS_SIG_TIER_OTHER;
}

const char *cs_sig_tier_name(enum cs_sig_tier t)
{
    return (unsigned)t <= CS_SIG_TIER_OTHER ? tier_names[t] : "";
}

const char *cs_sig_band_name(enum cs_sig_band b)
{
    static const char *const n[] = {"healthy", "concerning", "poor"};
    return (unsigned)b <= CS_SIG_BAND_POOR ? n[b] : "";
}

const char *cs_sig_stage_name(enum cs_sig_stage s)
{
    static const char *const n[] = {"none", "first_key_action", "activated"};
    return (unsigned)s <= CS_SIG_STAGE_ACTIVATED ? n[s] : "";
}

/* Linear counting over a 128-bit bitmap: n = -m ln(zeros / m), from the
 * engine's table (lc[zeros]). */
static double lc_estimate(const cs_sig_engine *e, const uint64_t b[2])
{
    int ones = __builtin_popcountll(b[0]) + __builtin_popcountll(b[1]);
    return e->lc[128 - ones];
}

static void bit_set(uint64_t b[2], uint64_t h)
{
    unsigned bit = (unsigned)(h >> 57); /* top 7 bits: independent of the table's low bits */
    b[bit >> 6] |= 1ull << (bit & 63);
}

/* ================================================================ config */

void cs_sig_config_defaults(cs_sig_config *c)
{
    memset(c, 0, sizeof *c);
    c->lateness_us = 3600LL * 1000000;
    c->max_accounts = 1000000;
    c->usage_half_life_days = 7;
    c->usage_half_units = 20;
    c->units_feature = 1;
    c->units_key_feature = 3;
    static const char *const keys[] = {"export_csv", "dashboards", "api", "integrations", "alerts"};
    c->n_key_features = 5;
    for (int i = 0; i < 5; i++) snprintf(c->key_features[i], sizeof c->key_features[i], "%s", keys[i]);
    c->activation_features = 3;
    c->activation_days = 14;
    c->trial_days_default = 14;
    c->drop_ratio = 0.5;
    c->drop_min_baseline = 10;
    c->spike_tickets = 3;
    c->spike_window_days = 14;
    c->spike_renewal_days = 60;
    c->handoff_usage_score = 60;
    c->w_usage = 0.40;
    c->w_trend = 0.25;
    c->w_features = 0.10;
    c->w_users = 0.10;
    c->w_support = 0.15;
    c->features_target = 5;
    c->users_target = 5;
    c->support_penalty = 25;
    c->band_healthy = 70;
    c->band_poor = 40;
    c->usage_epsilon = 2.0;
    c->health_epsilon = 2.0;
}

int cs_sig_config_check(const cs_sig_config *c, char *err, size_t errlen)
{
#define BAD(...) do { snprintf(err, errlen, __VA_ARGS__); return -1; } while (0)
    if (c->lateness_us < 0 || c->lateness_us > DAY_US)
        BAD("signals.allowed_lateness: must be 0..1d (the day rings keep no more)");
    if (c->max_accounts < 1 || c->max_accounts > (1u << 30)) BAD("signals.max_accounts: must be 1..2^30");
    if (!(c->usage_half_life_days >= 0.5 && c->usage_half_life_days <= 365))
        BAD("signals.usage_score.half_life: must be 0.5..365 days");
    if (!(c->usage_half_units > 0 && c->usage_half_units <= 1e9)) BAD("signals.usage_score.half_units: must be > 0");
    if (c->units_feature > 1000 || c->units_key_feature > 1000) BAD("signals.usage_score.units_*: must be 0..1000");
    if (c->n_key_features < 0 || c->n_key_features > CS_SIG_MAX_KEY_FEATURES)
        BAD("signals.key_features: at most %d", CS_SIG_MAX_KEY_FEATURES);
    for (int i = 0; i < c->n_key_features; i++)
        if (!c->key_features[i][0]) BAD("signals.key_features: empty name");
    if (c->activation_features < 1 || c->activation_features > CS_SIG_MAX_KEY_FEATURES)
        BAD("signals.activation.features: must be 1..%d", CS_SIG_MAX_KEY_FEATURES);
    if (c->activation_days < 0 || c->activation_days > 3650) BAD("signals.activation.within: must be 0..3650 days");
    if (c->trial_days_default < 1 || c->trial_days_default > 255) BAD("signals.trial_days_default: must be 1..255");
    if (!(c->drop_ratio > 0 && c->drop_ratio <= 1)) BAD("signals.engagement_drop.ratio: must be in (0, 1]");
    if (!(c->drop_min_baseline >= 0)) BAD("signals.engagement_drop.min_baseline: must be >= 0");
    if (c->spike_tickets < 1 || c->spike_tickets > 255) BAD("signals.renewal_ticket_spike.tickets: must be 1..255");
    if (c->spike_window_days < 1 || c->spike_window_days > SIG_TICKET_DAYS)
        BAD("signals.renewal_ticket_spike.window: must be 1..%d days", SIG_TICKET_DAYS);
    if (c->spike_renewal_days < 0 || c->spike_renewal_days > 3650)
        BAD("signals.renewal_ticket_spike.renewal_within: must be 0..3650 days");
    if (!(c->handoff_usage_score >= 0 && c->handoff_usage_score <= 100))
        BAD("signals.trial_handoff.usage_score: must be 0..100");
    double w = c->w_usage + c->w_trend + c->w_features + c->w_users + c->w_support;
    if (!(c->w_usage >= 0 && c->w_trend >= 0 && c->w_features >= 0 && c->w_users >= 0 && c->w_support >= 0) ||
        !(w > 0))
        BAD("signals.health.weights: must be >= 0 with a positive sum");
    if (!(c->features_target > 0 && c->users_target > 0)) BAD("signals.health.*_target: must be > 0");
    if (!(c->support_penalty >= 0)) BAD("signals.health.support_penalty: must be >= 0");
    if (!(c->band_poor >= 0 && c->band_poor <= c->band_healthy && c->band_healthy <= 100))
        BAD("signals.health.bands: need 0 <= poor <= healthy <= 100");
    if (!(c->usage_epsilon >= 0 && c->health_epsilon >= 0)) BAD("signals.*.epsilon: must be >= 0");
    return 0;
#undef BAD
}

uint64_t sig_config_fingerprint(const cs_sig_config *c)
{
    /* Only what shapes the aggregates: thresholds may change across a
     * restart, the stored windows stay valid. */
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    uint32_t u[3] = {c->units_feature, c->units_key_feature, (uint32_t)c->n_key_features};
    XXH3_64bits_update(st, u, sizeof u);
    char half[32];
    snprintf(half, sizeof half, "%.17g", c->usage_half_life_days);
    XXH3_64bits_update(st, half, strlen(half));
    for (int i = 0; i < c->n_key_features; i++)
        XXH3_64bits_update(st, c->key_features[i], strlen(c->key_features[i]) + 1);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

/* ================================================================ changes */

void cs_sig_changes_init(cs_sig_changes *c)
{
    memset(c, 0, sizeof *c);
}

void cs_sig_changes_reset(cs_sig_changes *c)
{
    c->n = 0;
}

void cs_sig_changes_free(cs_sig_changes *c)
{
    free(c->v);
    memset(c, 0, sizeof *c);
}

static cs_sig_change *change_add(cs_sig_engine *e, cs_sig_changes *out, const cs_sig_acct *a, const char *signal,
                                 int64_t at_us)
{
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 16;
        out->v = cs_realloc(out->v, out->cap * sizeof *out->v);
    }
    cs_sig_change *c = &out->v[out->n++];
    memcpy(c->account_id, sig_acct_id(a), a->id_len);
    c->account_id[a->id_len] = 0;
    c->signal = signal;
    c->has_old = 1;
    c->old_value = c->new_value = 0;
    c->old_text = c->new_text = NULL;
    c->at_us = at_us;
    e->changes++;
    return c;
}

/* ================================================================ table */

cs_sig_engine *cs_sig_engine_new(const cs_sig_config *cfg, char *err, size_t errlen)
{
    if (cs_sig_config_check(cfg, err, errlen)) return NULL;
    cs_sig_engine *e = cs_calloc(1, sizeof *e);
    e->cfg = *cfg;
    for (int i = 0; i < cfg->n_key_features; i++)
        e->key_hash[i] = cs_sig_hash(cfg->key_features[i], strlen(cfg->key_features[i]));
    e->r1 = pow(2.0, -1.0 / cfg->usage_half_life_days);
    for (int k = 0; k <= SIG_RING_DAYS; k++) e->rpow[k] = pow(e->r1, k);
    for (int z = 0; z <= 128; z++) e->lc[z] = z ? -128.0 * log((double)z / 128.0) : 128.0 * log(128.0);
    e->mask = 1023;
    e->slots = cs_calloc(e->mask + 1, sizeof *e->slots);
    e->max_ts = INT64_MIN;
    e->wm_day = CS_SIG_NO_DAY;
    e->sweep_day = CS_SIG_NO_DAY;
    return e;
}

void cs_sig_engine_free(cs_sig_engine *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->n; i++) {
        cs_sig_acct *a = sig_acct(e, i);
        if (a->id_len >= CS_SIG_ID_INLINE) free(a->id.heap);
    }
    for (size_t p = 0; p < e->npages; p++) free(e->pages[p]);
    free(e->pages);
    free(e->slots);
    free(e);
}

static int id_eq(const cs_sig_acct *a, const char *id, size_t len)
{
    return a->id_len == len && memcmp(sig_acct_id(a), id, len) == 0;
}

cs_sig_acct *sig_find(const cs_sig_engine *e, uint64_t key, const char *id, size_t len)
{
    for (size_t h = key & e->mask;; h = (h + 1) & e->mask) {
        const sig_slot *s = &e->slots[h];
        if (!s->key) return NULL;
        if (s->key == key) {
            cs_sig_acct *a = sig_acct(e, s->idx);
            if (id_eq(a, id, len)) return a;
        }
    }
}

static void slot_put(sig_slot *slots, size_t mask, uint64_t key, uint32_t idx)
{
    size_t h = key & mask;
    while (slots[h].key) h = (h + 1) & mask;
    slots[h].key = key;
    slots[h].idx = idx;
}

cs_sig_acct *sig_insert(cs_sig_engine *e, uint64_t key, const char *id, size_t len)
{
    if ((e->n + 1) * 2 > e->mask + 1) { /* keep load <= 1/2 */
        size_t nmask = e->mask * 2 + 1;
        sig_slot *ns = cs_calloc(nmask + 1, sizeof *ns);
        for (size_t i = 0; i <= e->mask; i++)
            if (e->slots[i].key) slot_put(ns, nmask, e->slots[i].key, e->slots[i].idx);
        free(e->slots);
        e->slots = ns;
        e->mask = nmask;
    }
    if ((e->n >> SIG_PAGE_SHIFT) >= e->npages) {
        if (e->npages == e->pages_cap) {
            e->pages_cap = e->pages_cap ? e->pages_cap * 2 : 16;
            e->pages = cs_realloc(e->pages, e->pages_cap * sizeof *e->pages);
        }
        void *pg = aligned_alloc(64, SIG_PAGE * sizeof(cs_sig_acct));
        if (!pg) abort(); /* STYLE: abort on a failed internal allocation */
        e->pages[e->npages++] = pg;
    }
    size_t idx = e->n++;
    cs_sig_acct *a = sig_acct(e, idx);
    memset(a, 0, sizeof *a);
    a->key = key;
    a->id_len = (uint8_t)len;
    if (len < CS_SIG_ID_INLINE) {
        memcpy(a->id.in, id, len);
        a->id.in[len] = 0;
    } else {
        a->id.heap = cs_strndup(id, len);
        e->long_id_bytes += len + 1;
    }
    a->first_us = INT64_MAX;
    a->last_us = INT64_MIN;
    a->trial_us = INT64_MIN;
    a->plan_ts = INT64_MIN;
    a->renew_ts = INT64_MIN;
    a->renewal_day = CS_SIG_NO_DAY;
    a->cursor = CS_SIG_NO_DAY;
    for (int i = 0; i < CS_SIG_MAX_KEY_FEATURES; i++) a->key_first[i] = SIG_KEY_NONE;
    slot_put(e->slots, e->mask, key, (uint32_t)idx);
    return a;
}

/* Backward-shift deletion of the slot holding idx, for linear probing. */
static void slot_del(cs_sig_engine *e, uint64_t key, uint32_t idx)
{
    size_t h = key & e->mask;
    while (!(e->slots[h].key == key && e->slots[h].idx == idx)) h = (h + 1) & e->mask;
    size_t hole = h;
    for (size_t j = (hole + 1) & e->mask; e->slots[j].key; j = (j + 1) & e->mask) {
        size_t home = e->slots[j].key & e->mask;
        /* move j into the hole when its home is not in (hole, j] cyclically */
        int between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!between) {
            e->slots[hole] = e->slots[j];
            hole = j;
        }
    }
    e->slots[hole].key = 0;
    e->slots[hole].idx = 0;
}

size_t cs_sig_evict_idle(cs_sig_engine *e, int64_t before_us)
{
    size_t removed = 0;
    for (size_t i = 0; i < e->n;) {
        cs_sig_acct *a = sig_acct(e, i);
        if (a->last_us >= before_us) {
            i++;
            continue;
        }
        slot_del(e, a->key, (uint32_t)i);
        if (a->id_len >= CS_SIG_ID_INLINE) {
            e->long_id_bytes -= (size_t)a->id_len + 1;
            free(a->id.heap);
        }
        size_t last = e->n - 1;
        if (i != last) {
            cs_sig_acct *m = sig_acct(e, last);
            size_t h = m->key & e->mask;
            while (!(e->slots[h].key == m->key && e->slots[h].idx == last)) h = (h + 1) & e->mask;
            e->slots[h].idx = (uint32_t)i;
            *a = *m;
        }
        e->n--;
        removed++;
    }
    if ((e->n >> SIG_PAGE_SHIFT) + 1 < e->npages) { /* give back whole empty pages */
        size_t keep = (e->n + SIG_PAGE - 1) >> SIG_PAGE_SHIFT;
        for (size_t p = keep; p < e->npages; p++) free(e->pages[p]);
        e->npages = keep;
    }
    e->sweep_pos = 0;
    e->sweep_end = 0;
    return removed;
}

/* ================================================================ windows */

/* Move the account's newest day forward to day, one day at a time: the day
 * leaving the usage ring is folded into the tail, the slots entering the
 * rings are cleared. The same steps whatever event caused the move. */
static void advance(const cs_sig_engine *e, cs_sig_acct *a, int32_t day)
{
    int32_t d = a->cursor;
    int32_t wk = week_of(d);
    while (d < day) {
        d++;
        int s = mod(d, SIG_RING_DAYS);
        a->tail = a->tail * e->r1 + a->units[s];
        if (a->tail < 1e-3) a->tail = 0;
        a->units[s] = 0;
        a->tickets[mod(d, SIG_TICKET_DAYS)] = 0;
        int32_t w = week_of(d);
        if (w != wk) {
            wk = w;
            a->users[mod(w, SIG_USER_WEEKS)][0] = a->users[mod(w, SIG_USER_WEEKS)][1] = 0;
        }
        /* Once 35 days have passed every ring is clear; with no tail left the
         * remaining steps change nothing. */
        if (a->tail == 0 && d - a->cursor >= SIG_RING_DAYS) break;
    }
    a->cursor = day;
}

static void update(const cs_sig_engine *e, cs_sig_acct *a, const cs_sig_event *ev)
{
    int32_t day = day_of(ev->ts_us);
    if (a->cursor == CS_SIG_NO_DAY) a->cursor = day;
    else if (day > a->cursor) advance(e, a, day);
    /* day >= cursor - 1 here: lateness <= 1 day keeps late days inside every ring */

    a->events++;
    if (ev->ts_us < a->first_us) a->first_us = ev->ts_us;
    if (ev->ts_us > a->last_us) a->last_us = ev->ts_us;

    if (ev->plan_tier != CS_SIG_TIER_NONE && (ev->ts_us > a->plan_ts || (ev->ts_us == a->plan_ts &&
                                                                         (uint8_t)ev->plan_tier > a->plan_tier))) {
        a->plan_tier = (uint8_t)ev->plan_tier;
        a->plan_ts = ev->ts_us;
    }
    if (ev->renewal_day != CS_SIG_NO_DAY &&
        (ev->ts_us > a->renew_ts || (ev->ts_us == a->renew_ts && ev->renewal_day > a->renewal_day))) {
        a->renewal_day = ev->renewal_day;
        a->renew_ts = ev->ts_us;
    }
    if (ev->type != CS_SIG_EV_LEAD && ev->user_hash) bit_set(a->users[mod(week_of(day), SIG_USER_WEEKS)], ev->user_hash);

    switch (ev->type) {
    case CS_SIG_EV_FEATURE_USED: {
        int key = -1;
        for (int i = 0; i < e->cfg.n_key_features; i++)
            if (e->key_hash[i] == ev->feature_hash) key = i;
        uint32_t cnt = ev->count ? ev->count : 1;
        if (cnt > 65535) cnt = 65535;
        uint32_t u = cnt * (key >= 0 ? e->cfg.units_key_feature : e->cfg.units_feature);
        int s = mod(day, SIG_RING_DAYS);
        u += a->units[s];
        a->units[s] = (uint16_t)(u > 65535 ? 65535 : u);
        if (ev->feature_hash) bit_set(a->feat, ev->feature_hash);
        if (key >= 0 && day < a->key_first[key]) a->key_first[key] = day;
        break;
    }
    case CS_SIG_EV_TRIAL_ACTIVATED: {
        int td = ev->trial_days > 0 ? ev->trial_days : e->cfg.trial_days_default;
        if (td > 255) td = 255;
        if (ev->ts_us < a->trial_us || a->trial_us == INT64_MIN ||
            (ev->ts_us == a->trial_us && td > a->trial_days)) {
            a->trial_us = ev->ts_us;
            a->trial_days = (uint8_t)td;
        }
        break;
    }
    case CS_SIG_EV_SUPPORT_ESCALATED: {
        int s = mod(day, SIG_TICKET_DAYS);
        if (a->tickets[s] < 255) a->tickets[s]++;
        break;
    }
    default:
        break;
    }
}

/* ================================================================ evaluate */

int32_t sig_asof(const cs_sig_engine *e, const cs_sig_acct *a)
{
    return e->wm_day != CS_SIG_NO_DAY && e->wm_day > a->cursor ? e->wm_day : a->cursor;
}

void sig_eval(const cs_sig_engine *e, const cs_sig_acct *a, int32_t asof, cs_sig_view *v)
{
    const cs_sig_config *c = &e->cfg;
    memset(v, 0, sizeof *v);
    v->asof_day = asof;
    v->first_seen_us = a->events ? a->first_us : INT64_MIN;
    v->last_seen_us = a->last_us;
    v->trial_start_us = a->trial_us;
    v->renewal_day = a->renewal_day;
    v->plan_tier = (enum cs_sig_tier)a->plan_tier;
    v->events = a->events;

    /* usage ring, newest day first: k = cursor - day */
    int32_t gap = asof - a->cursor; /* >= 0 */
    double sum = 0;
    uint32_t u7 = 0, b28 = 0;
    int s = mod(a->cursor, SIG_RING_DAYS);
    for (int k = 0; k < SIG_RING_DAYS; k++) {
        uint32_t u = a->units[s];
        if (u) {
            sum += u * e->rpow[k];
            int32_t age = gap + k; /* asof - day */
            if (age < 7) u7 += u;
            else if (age < 35) b28 += u;
        }
        s = s ? s - 1 : SIG_RING_DAYS - 1;
    }
    sum += a->tail * e->rpow[SIG_RING_DAYS];
    double U = gap == 0 ? sum : sum * (gap <= SIG_RING_DAYS ? e->rpow[gap] : pow(e->r1, gap));
    v->decayed_units = U;
    v->usage_score = 100.0 * U / (U + c->usage_half_units);
    v->units_7d = u7;
    v->units_base28 = b28;
    v->baseline_week = b28 / 4.0;

    /* tickets in [asof - W + 1, asof] */
    uint32_t t = 0;
    for (int k = 0; k < SIG_TICKET_DAYS; k++) {
        int32_t age = gap + k;
        if (age >= c->spike_window_days) break;
        t += a->tickets[mod(a->cursor - k, SIG_TICKET_DAYS)];
    }
    v->tickets_window = t;

    v->features_distinct = lc_estimate(e, a->feat);
    int32_t wa = week_of(asof), wc = week_of(a->cursor);
    uint64_t u28[2] = {0, 0};
    for (int k = 0; k < SIG_USER_WEEKS; k++) {
        int32_t w = wc - k;
        if (w <= wa - SIG_USER_WEEKS) break;
        const uint64_t *b = a->users[mod(w, SIG_USER_WEEKS)];
        if (w == wa) v->users_week = lc_estimate(e, b);
        u28[0] |= b[0];
        u28[1] |= b[1];
    }
    v->users_28d = lc_estimate(e, u28);

    /* activation: key features first used by anchor + D */
    int32_t anchor = a->trial_us != INT64_MIN ? day_of(a->trial_us) : (a->events ? day_of(a->first_us) : 0);
    int any = 0, by = 0;
    for (int i = 0; i < c->n_key_features; i++) {
        if (a->key_first[i] == SIG_KEY_NONE) continue;
        any = 1;
        if ((int64_t)a->key_first[i] <= (int64_t)anchor + c->activation_days) by++;
    }
    v->key_features_by_deadline = by;
    v->stage = by >= c->activation_features ? CS_SIG_STAGE_ACTIVATED
               : any                          ? CS_SIG_STAGE_FIRST_KEY_ACTION
                                              : CS_SIG_STAGE_NONE;

    double B = v->baseline_week;
    v->engagement_drop = B >= c->drop_min_baseline && B > 0 && (double)u7 < c->drop_ratio * B;
    v->renewal_spike = (int)t >= c->spike_tickets && a->renewal_day != CS_SIG_NO_DAY &&
                       a->renewal_day >= asof && a->renewal_day - asof <= c->spike_renewal_days;
    int trial = a->plan_tier == CS_SIG_TIER_TRIAL || (a->plan_tier == CS_SIG_TIER_NONE && a->trial_us != INT64_MIN);
    v->trial_handoff = trial && v->usage_score >= c->handoff_usage_score;

    v->comp[0] = v->usage_score;
    v->comp[1] = B >= c->drop_min_baseline && B > 0 ? 100.0 * fmin(1.0, u7 / B) : (u7 > 0 ? 100.0 : 50.0);
    v->comp[2] = 100.0 * fmin(1.0, v->features_distinct / c->features_target);
    v->comp[3] = 100.0 * fmin(1.0, v->users_28d / c->users_target);
    v->comp[4] = fmax(0.0, 100.0 - c->support_penalty * t);
    double w[5] = {c->w_usage, c->w_trend, c->w_features, c->w_users, c->w_support};
    double hs = 0, ws = 0;
    for (int i = 0; i < 5; i++) {
        hs += w[i] * v->comp[i];
        ws += w[i];
    }
    v->health = hs / ws;
    v->band = v->health >= c->band_healthy ? CS_SIG_BAND_HEALTHY
              : v->health >= c->band_poor  ? CS_SIG_BAND_CONCERNING
                                           : CS_SIG_BAND_POOR;
}

/* A change when a flag differs from what was last written, else NULL. */
static cs_sig_change *flag_change(cs_sig_engine *e, cs_sig_changes *out, cs_sig_acct *a, const char *signal,
                                  unsigned bit, int now, int64_t at)
{
    int was = (a->emit_flags & bit) != 0;
    if (was == now) return NULL;
    cs_sig_change *c = change_add(e, out, a, signal, at);
    c->old_value = was;
    c->new_value = now;
    c->old_text = was ? "on" : "off";
    c->new_text = now ? "on" : "off";
    a->emit_flags = (uint8_t)(now ? a->emit_flags | bit : a->emit_flags & ~bit);
    return c;
}

/* Compare the account's signals as of asof with what was last written;
 * append a change for each difference that passes the write filter (exact:
 * any difference, for cs_sig_settle). */
static void emit(cs_sig_engine *e, cs_sig_acct *a, int32_t asof, int64_t at, int exact, cs_sig_changes *out)
{
    const cs_sig_config *c = &e->cfg;
    cs_sig_view v;
    sig_eval(e, a, asof, &v);
    cs_sig_change *ch;

    float us = (float)v.usage_score;
    double du = fabs((double)us - a->usage_emit);
    if (exact ? us != a->usage_emit : du >= c->usage_epsilon && du > 0) {
        ch = change_add(e, out, a, CS_SIG_USAGE_SCORE, at);
        ch->has_old = (a->emit_flags & SIG_W_USAGE) != 0;
        ch->old_value = a->usage_emit;
        ch->new_value = us;
        ch->why[0] = v.decayed_units;
        ch->why[1] = c->usage_half_life_days;
        ch->why[2] = c->usage_half_units;
        ch->why[3] = v.units_7d;
        a->usage_emit = us;
        a->emit_flags |= SIG_W_USAGE;
    }

    if (v.stage != a->stage_emit) {
        ch = change_add(e, out, a, CS_SIG_ACTIVATION, at);
        ch->old_value = a->stage_emit;
        ch->new_value = v.stage;
        ch->old_text = cs_sig_stage_name((enum cs_sig_stage)a->stage_emit);
        ch->new_text = cs_sig_stage_name(v.stage);
        ch->why[0] = v.key_features_by_deadline;
        ch->why[1] = c->activation_features;
        ch->why[2] = c->activation_days;
        ch->why[3] = a->trial_us != INT64_MIN;
        a->stage_emit = (uint8_t)v.stage;
    }

    if ((ch = flag_change(e, out, a, CS_SIG_ENGAGEMENT_DROP, SIG_W_DROP, v.engagement_drop, at))) {
        ch->why[0] = v.units_7d;
        ch->why[1] = v.baseline_week;
        ch->why[2] = c->drop_ratio;
        ch->why[3] = c->drop_min_baseline;
    }
    if ((ch = flag_change(e, out, a, CS_SIG_RENEWAL_SPIKE, SIG_W_SPIKE, v.renewal_spike, at))) {
        ch->why[0] = v.tickets_window;
        ch->why[1] = c->spike_window_days;
        ch->why[2] = a->renewal_day == CS_SIG_NO_DAY ? NAN : (double)(a->renewal_day - asof);
        ch->why[3] = c->spike_tickets;
    }
    if ((ch = flag_change(e, out, a, CS_SIG_TRIAL_HANDOFF, SIG_W_HANDOFF, v.trial_handoff, at))) {
        ch->why[0] = a->plan_tier;
        ch->why[1] = v.usage_score;
        ch->why[2] = c->handoff_usage_score;
    }

    float hs = (float)v.health;
    int first = !(a->emit_flags & SIG_W_HEALTH);
    double dh = fabs((double)hs - a->health_emit);
    int band_changed = first || v.band != a->band_emit;
    if (first || band_changed || (exact ? hs != a->health_emit : dh >= c->health_epsilon && dh > 0)) {
        ch = change_add(e, out, a, CS_SIG_HEALTH_SCORE, at);
        ch->has_old = !first;
        ch->old_value = a->health_emit;
        ch->new_value = hs;
        double w[5] = {c->w_usage, c->w_trend, c->w_features, c->w_users, c->w_support};
        for (int i = 0; i < 5; i++) {
            ch->why[i] = v.comp[i];
            ch->why[5 + i] = w[i];
        }
        if (band_changed) {
            ch = change_add(e, out, a, CS_SIG_HEALTH_BAND, at);
            ch->has_old = !first;
            ch->old_value = a->band_emit;
            ch->new_value = v.band;
            ch->old_text = first ? NULL : cs_sig_band_name((enum cs_sig_band)a->band_emit);
            ch->new_text = cs_sig_band_name(v.band);
            ch->why[0] = v.health;
            ch->why[1] = c->band_healthy;
            ch->why[2] = c->band_poor;
        }
        a->health_emit = hs;
        a->band_emit = (uint8_t)v.band;
        a->emit_flags |= SIG_W_HEALTH;
    }
}

const char *cs_sig_change_reason(const cs_sig_change *c, char *buf, size_t len)
{
    const double *x = c->why;
    const char *s = c->signal;
    if (strcmp(s, CS_SIG_USAGE_SCORE) == 0)
        snprintf(buf, len, "decayed usage %.2f units (half-life %g d); score = 100*U/(U+%g); %.0f units in the last 7 days",
                 x[0], x[1], x[2], x[3]);
    else if (strcmp(s, CS_SIG_ACTIVATION) == 0)
        snprintf(buf, len, "%.0f of %.0f key features first used within %.0f days of %s", x[0], x[1], x[2],
                 x[3] != 0 ? "TrialActivated" : "first seen");
    else if (strcmp(s, CS_SIG_ENGAGEMENT_DROP) == 0)
        snprintf(buf, len,
                 "%.0f units in the last 7 days vs weekly baseline %.2f of the 28 days before (ratio %g, min baseline %g)",
                 x[0], x[1], x[2], x[3]);
    else if (strcmp(s, CS_SIG_RENEWAL_SPIKE) == 0) {
        if (isnan(x[2]))
            snprintf(buf, len, "%.0f escalations in the last %.0f days (threshold %.0f); no renewal date", x[0], x[1],
                     x[3]);
        else
            snprintf(buf, len, "%.0f escalations in the last %.0f days (threshold %.0f); renewal in %.0f days", x[0],
                     x[1], x[3], x[2]);
    } else if (strcmp(s, CS_SIG_TRIAL_HANDOFF) == 0) {
        const char *t = cs_sig_tier_name((enum cs_sig_tier)(int)x[0]);
        snprintf(buf, len, "%s account with usage_score %.1f (threshold %g)", *t ? t : "trial", x[1], x[2]);
    } else if (strcmp(s, CS_SIG_HEALTH_SCORE) == 0)
        snprintf(buf, len,
                 "usage %.1f*%.2f + trend %.1f*%.2f + features %.1f*%.2f + users %.1f*%.2f + support %.1f*%.2f", x[0],
                 x[5], x[1], x[6], x[2], x[7], x[3], x[8], x[4], x[9]);
    else if (strcmp(s, CS_SIG_HEALTH_BAND) == 0)
        snprintf(buf, len, "health %.1f (healthy >= %g, poor < %g)", x[0], x[1], x[2]);
    else
        snprintf(buf, len, "%s", "");
    return buf;
}

/* ================================================================ apply */

int cs_sig_apply(cs_sig_engine *e, const cs_sig_event *ev, cs_sig_changes *out)
{
    if (!ev->account_id || ev->account_len == 0 || ev->account_len > CS_SIG_ID_MAX || ev->ts_us == INT64_MIN) {
        e->invalid++;
        return CS_SIG_EINVAL;
    }
    if (e->max_ts != INT64_MIN && ev->ts_us < e->max_ts - e->cfg.lateness_us) {
        e->late++;
        return CS_SIG_LATE;
    }
    uint64_t key = ev->account_hash ? ev->account_hash : cs_sig_hash(ev->account_id, ev->account_len);
    cs_sig_acct *a = sig_find(e, key, ev->account_id, ev->account_len);
    if (!a) {
        if (e->n >= e->cfg.max_accounts) {
            e->refused++;
            return CS_SIG_FULL;
        }
        a = sig_insert(e, key, ev->account_id, ev->account_len);
    }
    if (ev->ts_us > e->max_ts) {
        e->max_ts = ev->ts_us;
        int32_t wd = day_of(e->max_ts - e->cfg.lateness_us);
        if (wd != e->wm_day) {
            if (e->wm_day != CS_SIG_NO_DAY) { /* a new day: every account is due */
                e->sweep_day = wd;
                e->sweep_pos = 0;
                e->sweep_end = e->n;
            }
            e->wm_day = wd;
        }
    }
    update(e, a, ev);
    e->applied++;
    emit(e, a, sig_asof(e, a), ev->ts_us, 0, out);
    return CS_SIG_OK;
}

static void prefetch_slot(const cs_sig_engine *e, const cs_sig_event *ev)
{
    __builtin_prefetch(&e->slots[ev->account_hash & e->mask]);
}

static void prefetch_acct(const cs_sig_engine *e, const cs_sig_event *ev)
{
    uint64_t key = ev->account_hash;
    for (size_t h = key & e->mask;; h = (h + 1) & e->mask) {
        const sig_slot *s = &e->slots[h];
        if (!s->key) return;
        if (s->key == key) {
            const char *p = (const char *)sig_acct(e, s->idx);
            for (size_t off = 0; off < sizeof(cs_sig_acct); off += 64) __builtin_prefetch(p + off, 1);
            return;
        }
    }
}

size_t cs_sig_apply_batch(cs_sig_engine *e, const cs_sig_event *ev, size_t n, int *rc, cs_sig_changes *out)
{
    enum { SLOT_AHEAD = 12, ACCT_AHEAD = 6 };
    size_t ok = 0;
    for (size_t i = 0; i < n && i < SLOT_AHEAD; i++)
        if (ev[i].account_hash) prefetch_slot(e, &ev[i]);
    for (size_t i = 0; i < n; i++) {
        if (i + SLOT_AHEAD < n && ev[i + SLOT_AHEAD].account_hash) prefetch_slot(e, &ev[i + SLOT_AHEAD]);
        if (i + ACCT_AHEAD < n && ev[i + ACCT_AHEAD].account_hash) prefetch_acct(e, &ev[i + ACCT_AHEAD]);
        rc[i] = cs_sig_apply(e, &ev[i], out);
        ok += rc[i] == CS_SIG_OK;
    }
    return ok;
}

size_t cs_sig_sweep_due(const cs_sig_engine *e)
{
    return e->sweep_end > e->sweep_pos ? e->sweep_end - e->sweep_pos : 0;
}

size_t cs_sig_sweep(cs_sig_engine *e, size_t budget, cs_sig_changes *out)
{
    if (e->sweep_end > e->n) e->sweep_end = e->n;
    if (e->sweep_pos >= e->sweep_end) return 0;
    int64_t at = (int64_t)e->sweep_day * DAY_US;
    while (budget-- && e->sweep_pos < e->sweep_end) {
        cs_sig_acct *a = sig_acct(e, e->sweep_pos++);
        emit(e, a, sig_asof(e, a), at, 0, out);
    }
    return cs_sig_sweep_due(e);
}

void cs_sig_settle(cs_sig_engine *e, cs_sig_changes *out)
{
    int64_t at = e->wm_day == CS_SIG_NO_DAY ? 0 : (int64_t)e->wm_day * DAY_US;
    for (size_t i = 0; i < e->n; i++) {
        cs_sig_acct *a = sig_acct(e, i);
        emit(e, a, sig_asof(e, a), at, 1, out);
    }
    e->sweep_pos = e->sweep_end = 0;
}

/* ================================================================ reading */

int cs_sig_view_account(const cs_sig_engine *e, const char *account_id, size_t len, cs_sig_view *v)
{
    const cs_sig_acct *a = sig_find(e, cs_sig_hash(account_id, len), account_id, len);
    if (!a) return -1;
    sig_eval(e, a, sig_asof(e, a), v);
    return 0;
}

size_t cs_sig_account_size(void)
{
    return sizeof(cs_sig_acct);
}

void cs_sig_stats_get(const cs_sig_engine *e, cs_sig_stats *s)
{
    s->applied = e->applied;
    s->late = e->late;
    s->refused = e->refused;
    s->invalid = e->invalid;
    s->changes = e->changes;
    s->accounts = e->n;
    s->bytes = sizeof *e + (e->mask + 1) * sizeof(sig_slot) + e->pages_cap * sizeof(cs_sig_acct *) +
               e->npages * (size_t)SIG_PAGE * sizeof(cs_sig_acct) + e->long_id_bytes;
    s->max_ts_us = e->max_ts;
    s->watermark_us = e->max_ts == INT64_MIN ? INT64_MIN : e->max_ts - e->cfg.lateness_us;
}
