/*
 * sim/world — the deterministic world: accounts with roles, an hourly
 * generator, perturbations and the ground truth. See world.h.
 */
#include "sim/world.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HOUR_US 3600000000LL
#define DAY_US  (24 * HOUR_US)

enum role { R_NORMAL, R_CHURN, R_CHURN_DECOY, R_SPIKE, R_SPIKE_DECOY, R_PQL, R_PQL_DECOY };
static const char *const role_pattern[] = {NULL, "churn", "churn", "ticket_spike", "ticket_spike", "trial_pql",
                                           "trial_pql"};

struct account {
    enum role role;
    double    level;        /* FeatureUsed per active weekday */
    int       users;
    int       tier;         /* index into tiers */
    int       mrr;
    int64_t   renewal_us;
    int64_t   start_us;     /* the pattern's start (drop, first ticket, trial start) */
    int       tickets;      /* spike size */
};

struct burst {
    int     decoy;
    int64_t start_us;
    int     n;
    int64_t spread_us;      /* all signups fall in [start, start + spread) */
};

/* A generated event before formatting, sorted by time within an hour. */
struct gen {
    int64_t  ts;
    uint64_t key;           /* tie-break: stable order */
    cs_buf   json;
    int      is_lead;
    int      invalid;
    int      late, ooo, segment;
};

struct cs_world {
    cs_world_opts   o;
    struct account *acc;
    struct burst   *bursts;
    int             nbursts;
    int64_t         begin_us;
    int64_t         hour;          /* next hour to generate */
    int64_t         nhours;
    struct gen     *q;             /* the current hour's events, sorted */
    size_t          nq, capq, qi;
    struct gen     *late;          /* held back, emitted two hours later */
    size_t          nlate, caplate;
    struct gen     *dups;          /* repeats waiting for their slot */
    size_t          ndups, capdups;
    uint64_t        seq;           /* event ids */
};

static const char *const tiers[] = {"trial", "starter", "pro", "enterprise"};
static const int tier_mrr[] = {0, 99, 499, 2499};
static const char *const features[] = {"reports", "export_csv", "dashboards", "api", "sso", "alerts",
                                       "integrations", "billing", "workflows", "audit_log"};
#define NFEAT 10

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Deterministic uniform [0,1) from (seed, a, b, c). */
static double u01(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t h = mix(seed ^ mix(a ^ mix(b ^ mix(c))));
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

/* Poisson sample with mean lambda from a uniform stream (Knuth; lambda small). */
static int poisson(double lambda, uint64_t seed, uint64_t a, uint64_t b)
{
    if (lambda <= 0) return 0;
    if (lambda > 30) { /* normal approximation */
        double u1 = u01(seed, a, b, 1) + 1e-12, u2 = u01(seed, a, b, 2);
        double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
        int n = (int)llround(lambda + z * sqrt(lambda));
        return n < 0 ? 0 : n;
    }
    double L = exp(-lambda), p = 1;
    int k = 0;
    do {
        k++;
        p *= u01(seed, a, b, 100 + (uint64_t)k);
    } while (p > L && k < 200);
    return k - 1;
}

static void push(struct gen **v, size_t *n, size_t *cap, struct gen g)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 256;
        *v = cs_realloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = g;
}

cs_world *cs_world_new(const cs_world_opts *o)
{
    cs_world *w = cs_calloc(1, sizeof *w);
    w->o = *o;
    if (w->o.accounts < 1) w->o.accounts = 1;
    if (w->o.days < 1) w->o.days = 1;
    w->nhours = (int64_t)w->o.days * 24;
    /* Whole hours, ending at end_us. */
    w->begin_us = o->end_us - w->nhours * HOUR_US;
    uint64_t s = o->seed;
    w->acc = cs_calloc((size_t)w->o.accounts, sizeof *w->acc);
    int64_t span = w->nhours * HOUR_US;
    for (int i = 0; i < w->o.accounts; i++) {
        struct account *a = &w->acc[i];
        /* Roles in a fixed rotation: each planted pattern and decoy on a
         * tenth of the accounts, the rest normal. */
        static const enum role rot[10] = {R_CHURN, R_CHURN_DECOY, R_SPIKE, R_SPIKE_DECOY, R_PQL,
                                          R_PQL_DECOY, R_NORMAL, R_NORMAL, R_NORMAL, R_NORMAL};
        a->role = rot[i % 10];
        a->level = 8 + 60 * u01(s, 1, (uint64_t)i, 0);
        a->users = 1 + (int)(12 * u01(s, 2, (uint64_t)i, 0));
        a->tier = a->role == R_PQL || a->role == R_PQL_DECOY ? 0 : 1 + (int)(3 * u01(s, 3, (uint64_t)i, 0));
        a->mrr = tier_mrr[a->tier] * (1 + (int)(4 * u01(s, 4, (uint64_t)i, 0)));
        a->renewal_us = o->end_us + (int64_t)((90 + 270 * u01(s, 5, (uint64_t)i, 0)) * DAY_US);
        /* Starts fall 25-45% of the window before its end: baselines exist
         * before them, and a week of evidence after them. */
        a->start_us = o->end_us - (int64_t)((0.25 + 0.2 * u01(s, 6, (uint64_t)i, 0)) * (double)span);
        a->start_us -= a->start_us % 60000000; /* whole minutes */
        if (a->role == R_SPIKE) a->renewal_us = o->end_us + (int64_t)((10 + 40 * u01(s, 7, (uint64_t)i, 0)) * DAY_US);
        if (a->role == R_SPIKE_DECOY) a->renewal_us = o->end_us + (int64_t)((200 + 100 * u01(s, 7, (uint64_t)i, 0)) * DAY_US);
        a->tickets = 4 + (int)(3 * u01(s, 8, (uint64_t)i, 0));
        if (a->role == R_PQL || a->role == R_PQL_DECOY) a->level = 0.5 + 0.5 * u01(s, 9, (uint64_t)i, 0);
    }
    w->nbursts = w->o.accounts / 5; /* half abuse bursts, half busy legitimate domains */
    if (w->nbursts < 2) w->nbursts = 2;
    w->bursts = cs_calloc((size_t)w->nbursts, sizeof *w->bursts);
    for (int b = 0; b < w->nbursts; b++) {
        struct burst *x = &w->bursts[b];
        x->decoy = b % 2;
        x->start_us = w->begin_us + (int64_t)((0.05 + 0.9 * u01(s, 10, (uint64_t)b, 0)) * (double)span);
        x->start_us -= x->start_us % 60000000;
        x->n = x->decoy ? 20 : 15 + (int)(16 * u01(s, 11, (uint64_t)b, 0));
        x->spread_us = x->decoy ? 5 * DAY_US : 5 * 60000000LL;
        if (x->decoy && x->start_us + x->spread_us > o->end_us) x->start_us = o->end_us - x->spread_us - HOUR_US;
    }
    return w;
}

void cs_world_free(cs_world *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->nq; i++) cs_buf_free(&w->q[i].json);
    for (size_t i = 0; i < w->nlate; i++) cs_buf_free(&w->late[i].json);
    for (size_t i = 0; i < w->ndups; i++) cs_buf_free(&w->dups[i].json);
    free(w->q);
    free(w->late);
    free(w->dups);
    free(w->acc);
    free(w->bursts);
    free(w);
}

/* Usage multiplier at time t for an account: daily and weekly seasonality. */
static double season(int64_t t)
{
    int64_t secs = t / 1000000;
    int hour = (int)((secs / 3600) % 24), dow = (int)(((secs / 86400) + 4) % 7); /* 1970-01-01 was a Thursday */
    double d = hour >= 8 && hour < 19 ? 2.0 : 0.25;
    double wk = dow == 0 || dow == 6 ? 0.3 : 1.0;
    return d * wk;
}

static void ev_head(cs_buf *b, cs_world *w, const char *type, int64_t ts, const char *account)
{
    char t[40];
    cs_fmt_time_ms(ts, t, sizeof t);
    cs_buf_printf(b, "{\"event_id\":\"w%llu-%llu\",\"type\":\"%s\",", (unsigned long long)w->o.seed,
                  (unsigned long long)w->seq++, type);
    if (account) cs_buf_printf(b, "\"account_id\":\"%s\",\"context\":{\"groupId\":\"%s\"},", account, account);
    cs_buf_printf(b, "\"timestamp\":\"%s\"", t);
}

static void gen_hour(cs_world *w, int64_t h)
{
    uint64_t s = w->o.seed;
    int64_t t0 = w->begin_us + h * HOUR_US;
    for (int i = 0; i < w->o.accounts; i++) {
        struct account *a = &w->acc[i];
        char acc[32];
        snprintf(acc, sizeof acc, "acc_%05d", i);
        double level = a->level;
        int trial = a->role == R_PQL || a->role == R_PQL_DECOY;
        if (trial && t0 + HOUR_US <= a->start_us) continue; /* trial accounts start at TrialActivated */
        if (a->role == R_CHURN && t0 >= a->start_us) level *= 0.15;
        if (a->role == R_CHURN_DECOY && t0 >= a->start_us) level *= 0.8;
        if (a->role == R_PQL && t0 >= a->start_us)
            level = 4 + 60 * fmin(1.0, (double)(t0 - a->start_us) / (double)(4 * DAY_US));
        double lambda = level / 24.0 * season(t0) * (0.8 + 0.4 * u01(s, 20, (uint64_t)i, (uint64_t)h));
        int n = poisson(lambda, s, 21 + (uint64_t)i * 7919, (uint64_t)h);
        for (int k = 0; k < n; k++) {
            struct gen g = {0};
            g.ts = t0 + (int64_t)(u01(s, 22, (uint64_t)i * 1000003 + (uint64_t)k, (uint64_t)h) * (double)HOUR_US);
            g.ts -= g.ts % 1000;
            g.key = mix((uint64_t)i << 20 ^ (uint64_t)k);
            cs_buf_init(&g.json);
            int f = (int)(NFEAT * u01(s, 23, (uint64_t)i * 31 + (uint64_t)k, (uint64_t)h));
            int user = (int)(a->users * u01(s, 24, (uint64_t)i * 37 + (uint64_t)k, (uint64_t)h));
            push(&w->q, &w->nq, &w->capq, g);
            struct gen *p = &w->q[w->nq - 1];
            ev_head(&p->json, w, "FeatureUsed", g.ts, acc);
            /* No top-level product_area/plan_tier: a Segment track call has
             * no field for them, and every world event must map to the same
             * canonical event through either door. Trials are known by
             * their TrialActivated, as the signals engine allows. */
            cs_buf_printf(&p->json, ",\"user_id\":\"%s_u%d\",\"properties\":{\"feature\":\"%s\",\"count\":1}}",
                          acc, user, features[f]);
        }
        /* The account's CRM record (a Segment group call): name, plan,
         * MRR and the renewal date the renewal signals need. */
        if (h == 0 && !trial) {
            struct gen g = {.ts = t0, .key = mix((uint64_t)i ^ 0x6e0)};
            char rd[40];
            cs_fmt_time_ms(a->renewal_us, rd, sizeof rd);
            rd[10] = '\0';
            cs_buf_init(&g.json);
            ev_head(&g.json, w, "AccountGrouped", g.ts, acc);
            cs_buf_printf(&g.json, ",\"properties\":{\"name\":\"Account %d\",\"domain\":\"acct%05d.example\","
                                   "\"plan_tier\":\"%s\",\"mrr\":%d,\"renewal_date\":\"%s\"}}",
                          i, i, tiers[a->tier], a->mrr, rd);
            push(&w->q, &w->nq, &w->capq, g);
            /* Its people (Segment identify calls). */
            for (int u = 0; u < a->users; u++) {
                struct gen c = {.ts = t0 + 1000 * (1 + u), .key = mix((uint64_t)i ^ 0x1d0 ^ (uint64_t)u << 24)};
                cs_buf_init(&c.json);
                ev_head(&c.json, w, "ContactIdentified", c.ts, acc);
                cs_buf_printf(&c.json, ",\"user_id\":\"%s_u%d\",\"properties\":{\"email\":\"user%d@acct%05d.example\","
                                       "\"name\":\"User %d of Account %d\"}}",
                              acc, u, u, i, u, i);
                push(&w->q, &w->nq, &w->capq, c);
            }
        }
        /* Planted one-off events that fall in this hour. */
        if (trial && a->start_us >= t0 && a->start_us < t0 + HOUR_US) {
            struct gen g = {.ts = a->start_us, .key = mix((uint64_t)i)};
            cs_buf_init(&g.json);
            ev_head(&g.json, w, "TrialActivated", g.ts, acc);
            cs_buf_printf(&g.json, ",\"properties\":{\"trial_days\":14,\"email\":\"owner@acct%05d.example\"}}", i);
            push(&w->q, &w->nq, &w->capq, g);
        }
        if (a->role == R_SPIKE || a->role == R_SPIKE_DECOY) {
            for (int k = 0; k < a->tickets; k++) {
                int64_t ts = a->start_us + (int64_t)k * (3 * DAY_US) / a->tickets;
                if (ts < t0 || ts >= t0 + HOUR_US) continue;
                struct gen g = {.ts = ts, .key = mix((uint64_t)i ^ 0xabc ^ (uint64_t)k)};
                cs_buf_init(&g.json);
                ev_head(&g.json, w, "SupportCaseEscalated", ts, acc);
                cs_buf_printf(&g.json, ",\"properties\":{\"case_id\":\"case-%d-%d\",\"severity\":\"high\"}}", i, k);
                push(&w->q, &w->nq, &w->capq, g);
            }
        }
    }
    /* Signup bursts (abuse) and busy legitimate domains (decoys). */
    for (int b = 0; b < w->nbursts; b++) {
        struct burst *x = &w->bursts[b];
        for (int k = 0; k < x->n; k++) {
            int64_t ts = x->start_us + (int64_t)k * x->spread_us / x->n;
            if (ts < t0 || ts >= t0 + HOUR_US) continue;
            struct gen g = {.ts = ts, .key = mix(0xb00 ^ (uint64_t)b << 16 ^ (uint64_t)k)};
            cs_buf_init(&g.json);
            int lead = k % 2;
            /* A self-serve TrialActivated creates its own account. */
            char self[48];
            snprintf(self, sizeof self, "self_%d_%d", b, k);
            ev_head(&g.json, w, lead ? "LeadCreated" : "TrialActivated", ts, lead ? NULL : self);
            cs_buf_printf(&g.json, ",\"properties\":{\"email\":\"user%d@%s%03d.example\",\"ip\":\"%s.%d.%d\","
                                   "\"device_id\":\"dev-%d-%d\"%s}}",
                          k, x->decoy ? "bigcorp" : "abuse", b, x->decoy ? "198.51" : "203.0", b % 256,
                          x->decoy ? k : 7, b, x->decoy ? k : 1, lead ? ",\"source\":\"website\"" : "");
            g.is_lead = lead;
            push(&w->q, &w->nq, &w->capq, g);
        }
    }
    /* Inbound leads: ~2 per hour, 20% from existing accounts' domains. */
    int nl = poisson(2.0, s, 30, (uint64_t)h);
    for (int k = 0; k < nl; k++) {
        struct gen g = {0};
        g.ts = t0 + (int64_t)(u01(s, 31, (uint64_t)k, (uint64_t)h) * (double)HOUR_US);
        g.ts -= g.ts % 1000;
        g.key = mix(0x1ead ^ (uint64_t)h << 8 ^ (uint64_t)k);
        cs_buf_init(&g.json);
        int existing = u01(s, 32, (uint64_t)k, (uint64_t)h) < 0.2;
        int ai = (int)(w->o.accounts * u01(s, 33, (uint64_t)k, (uint64_t)h));
        ev_head(&g.json, w, "LeadCreated", g.ts, NULL);
        if (existing)
            cs_buf_printf(&g.json, ",\"properties\":{\"email\":\"buyer%lld@acct%05d.example\",\"company\":\"Account %d\","
                                   "\"country\":\"US\",\"employee_count\":%d,\"source\":\"website\"}}",
                          (long long)h * 10 + k, ai, ai, 50 + ai);
        else
            cs_buf_printf(&g.json, ",\"properties\":{\"email\":\"lead%lld@prospect%lld.example\",\"company\":\"Prospect %lld\","
                                   "\"country\":\"%s\",\"employee_count\":%d,\"source\":\"%s\"}}",
                          (long long)h * 10 + k, (long long)h * 10 + k, (long long)h * 10 + k,
                          k % 3 ? "US" : "DE", 10 + (int)(2000 * u01(s, 34, (uint64_t)k, (uint64_t)h)),
                          k % 2 ? "webinar" : "paid_search");
        g.is_lead = 1;
        push(&w->q, &w->nq, &w->capq, g);
    }
}

static int cmp_gen(const void *x, const void *y)
{
    const struct gen *a = x, *b = y;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    return a->key < b->key ? -1 : a->key > b->key;
}

/* Perturb the sorted hour: invalid, out-of-order, late, duplicates. */
static void perturb(cs_world *w, int64_t h)
{
    uint64_t s = w->o.seed ^ 0x5eed;
    /* The door: Segment or native (a duplicate goes through its original's). */
    for (size_t i = 0; i < w->nq; i++) w->q[i].segment = u01(s, 41, (uint64_t)h, i) < w->o.segment_share;
    for (size_t i = 0; i < w->nq; i++) {
        struct gen *g = &w->q[i];
        double r = u01(s, 40, (uint64_t)h, i);
        if (r < w->o.invalid_share) {
            /* Drop the required account_id / email: the server must reject it. */
            cs_buf_reset(&g->json);
            ev_head(&g->json, w, "FeatureUsed", g->ts, NULL);
            cs_buf_adds(&g->json, ",\"properties\":{\"feature\":\"reports\"}}");
            g->invalid = 1;
            g->is_lead = 0;
        } else if (r < w->o.invalid_share + w->o.late_share) {
            g->late = 1;
            push(&w->late, &w->nlate, &w->caplate, *g);
            g->json.data = NULL; /* moved */
            g->ts = -1;
        } else if (r < w->o.invalid_share + w->o.late_share + w->o.ooo_share && i + 1 < w->nq) {
            struct gen t = w->q[i];
            w->q[i] = w->q[i + 1];
            w->q[i + 1] = t;
            w->q[i + 1].ooo = w->q[i + 1].ts < w->q[i].ts; /* sent after a later event */
            i++;
        }
    }
    /* Compact the moved-out slots. */
    size_t k = 0;
    for (size_t i = 0; i < w->nq; i++)
        if (w->q[i].ts != -1 || w->q[i].json.data) w->q[k++] = w->q[i];
    w->nq = k;
}

int cs_world_next(cs_world *w, cs_wevent *ev)
{
    for (;;) {
        if (w->ndups) { /* a duplicate goes out right after its original */
            struct gen g = w->dups[--w->ndups];
            cs_buf_reset(&ev->json);
            cs_buf_add(&ev->json, g.json.data, g.json.len);
            cs_buf_free(&g.json);
            ev->ts_us = g.ts, ev->invalid = g.invalid, ev->is_lead = g.is_lead, ev->duplicate = 1;
            ev->late = ev->ooo = 0, ev->segment = g.segment;
            return 0;
        }
        if (w->qi < w->nq) {
            struct gen *g = &w->q[w->qi++];
            cs_buf_reset(&ev->json);
            cs_buf_add(&ev->json, g->json.data, g->json.len);
            ev->ts_us = g->ts, ev->invalid = g->invalid, ev->is_lead = g->is_lead, ev->duplicate = 0;
            ev->late = g->late, ev->ooo = g->ooo, ev->segment = g->segment;
            if (!g->invalid && u01(w->o.seed, 50, (uint64_t)w->hour, w->qi) < w->o.dup_share) {
                struct gen d = *g;
                cs_buf_init(&d.json);
                cs_buf_add(&d.json, g->json.data, g->json.len);
                push(&w->dups, &w->ndups, &w->capdups, d);
            }
            return 0;
        }
        /* Next hour: free the last one, generate, release late events that
         * were held two hours. */
        for (size_t i = 0; i < w->nq; i++) cs_buf_free(&w->q[i].json);
        w->nq = w->qi = 0;
        if (w->hour >= w->nhours && w->nlate == 0) return -1;
        int64_t h = w->hour++;
        if (h < w->nhours) {
            gen_hour(w, h);
            qsort(w->q, w->nq, sizeof *w->q, cmp_gen);
            perturb(w, h);
        }
        int64_t now_t = w->begin_us + (h + 1) * HOUR_US;
        size_t keep = 0;
        for (size_t i = 0; i < w->nlate; i++) {
            if (w->late[i].ts + 2 * HOUR_US <= now_t || h >= w->nhours)
                push(&w->q, &w->nq, &w->capq, w->late[i]);
            else
                w->late[keep++] = w->late[i];
        }
        w->nlate = keep;
    }
}

void cs_world_truth(const cs_world *w, FILE *out)
{
    char t[40];
    /* The world's scope: an alert outside it (other traffic on the same
     * server) is not the world's to judge. */
    fprintf(out, "{\"scope\":{\"account_prefixes\":[\"acc_\",\"self_\"],\"accounts\":%d,\"days\":%d}}\n",
            w->o.accounts, w->o.days);
    for (int i = 0; i < w->o.accounts; i++) {
        const struct account *a = &w->acc[i];
        if (a->role == R_NORMAL) continue;
        int decoy = a->role == R_CHURN_DECOY || a->role == R_SPIKE_DECOY || a->role == R_PQL_DECOY;
        cs_fmt_time_ms(a->start_us, t, sizeof t);
        fprintf(out, "{\"pattern\":\"%s\",\"decoy\":%s,\"account_id\":\"acc_%05d\",\"start\":\"%s\"}\n",
                role_pattern[a->role], decoy ? "true" : "false", i, t);
    }
    for (int b = 0; b < w->nbursts; b++) {
        const struct burst *x = &w->bursts[b];
        cs_fmt_time_ms(x->start_us, t, sizeof t);
        fprintf(out, "{\"pattern\":\"signup_abuse\",\"decoy\":%s,\"domain\":\"%s%03d.example\",\"start\":\"%s\"}\n",
                x->decoy ? "true" : "false", x->decoy ? "bigcorp" : "abuse", b, t);
    }
}

int cs_world_planted(const cs_world *w, const char *pattern, int decoy)
{
    int n = 0;
    for (int i = 0; i < w->o.accounts; i++) {
        enum role r = w->acc[i].role;
        if (r == R_NORMAL || strcmp(role_pattern[r], pattern) != 0) continue;
        int d = r == R_CHURN_DECOY || r == R_SPIKE_DECOY || r == R_PQL_DECOY;
        n += d == decoy;
    }
    if (strcmp(pattern, "signup_abuse") == 0)
        for (int b = 0; b < w->nbursts; b++) n += w->bursts[b].decoy == decoy;
    return n;
}

int cs_world_to_segment(const char *json, size_t len, cs_buf *out)
{
    cJSON *e = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(e)) {
        cJSON_Delete(e);
        return -1;
    }
    static const char *const known[] = {"event_id", "type", "account_id", "user_id", "timestamp", "properties",
                                        "context"};
    int ok = 1;
    for (const cJSON *f = e->child; f && ok; f = f->next) {
        size_t k = 0;
        while (k < sizeof known / sizeof known[0] && strcmp(f->string, known[k]) != 0) k++;
        ok = k < sizeof known / sizeof known[0]; /* product_area, plan_tier, ...: no Segment field */
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(e, "account_id");
    const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(e, "context");
    const cJSON *gid = cJSON_IsObject(ctx) ? cJSON_GetObjectItemCaseSensitive(ctx, "groupId") : NULL;
    if (!cJSON_IsString(type)) ok = 0;
    if (ctx && !cJSON_IsObject(ctx)) ok = 0;
    /* The account travels as context.groupId (the group call also names it
     * as groupId): both or neither, and the same. */
    if ((acc != NULL) != (gid != NULL)) ok = 0;
    if (acc && (!cJSON_IsString(acc) || !cJSON_IsString(gid) || strcmp(acc->valuestring, gid->valuestring) != 0))
        ok = 0;
    if (!ok) {
        cJSON_Delete(e);
        return -1;
    }
    const char *t = type->valuestring;
    int identify = strcmp(t, "ContactIdentified") == 0, group = strcmp(t, "AccountGrouped") == 0 && acc;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", identify ? "identify" : group ? "group" : "track");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "event_id");
    if (id) cJSON_AddItemReferenceToObject(m, "messageId", (cJSON *)id);
    if (!identify && !group) cJSON_AddItemReferenceToObject(m, "event", (cJSON *)type);
    if (group) cJSON_AddItemReferenceToObject(m, "groupId", (cJSON *)acc);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "user_id");
    if (v) cJSON_AddItemReferenceToObject(m, "userId", (cJSON *)v);
    v = cJSON_GetObjectItemCaseSensitive(e, "timestamp");
    if (v) cJSON_AddItemReferenceToObject(m, "timestamp", (cJSON *)v);
    v = cJSON_GetObjectItemCaseSensitive(e, "properties");
    if (v) cJSON_AddItemReferenceToObject(m, identify || group ? "traits" : "properties", (cJSON *)v);
    if (ctx) cJSON_AddItemReferenceToObject(m, "context", (cJSON *)ctx);
    char *s = cJSON_PrintUnformatted(m);
    cs_buf_adds(out, s);
    cJSON_free(s);
    cJSON_Delete(m);
    cJSON_Delete(e);
    return 0;
}
