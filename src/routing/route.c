/*
 * routing/route — the routing decision, pure: policy + lead + candidate
 * reps with their state + time → owner and explanation (router.h).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "routing/router.h"

static const char *const strategy_names[] = {"round_robin", "weighted_round_robin", "account_owner", "territory"};

const char *cs_route_strategy_name(int s)
{
    return s >= 0 && s < 4 ? strategy_names[s] : "round_robin";
}

int cs_route_strategy_parse(const char *s)
{
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, strategy_names[i]) == 0) return i;
    return -1;
}

void cs_route_policy_normalise(cs_route_policy *p)
{
    if (p->strategy == CS_RS_ACCOUNT_OWNER) p->match_account = 1;
    if (p->strategy == CS_RS_TERRITORY) p->territory = 1;
    if (p->strategy == CS_RS_WEIGHTED_ROUND_ROBIN) p->weighted = 1;
    if (!p->fallback[0]) snprintf(p->fallback, sizeof p->fallback, "unassigned");
}

void cs_route_policy_from_config(const cs_config *cfg, cs_route_policy *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->rule_id, sizeof p->rule_id, "routing.default");
    int s = cs_route_strategy_parse(cfg->routing_strategy);
    p->strategy = s < 0 ? CS_RS_ROUND_ROBIN : s;
    p->match_account = cfg->routing_match_account && strcmp(cfg->routing_match_account, "true") == 0;
    p->territory = cfg->routing_territory && strcmp(cfg->routing_territory, "true") == 0;
    p->working_hours = cfg->routing_working_hours && strcmp(cfg->routing_working_hours, "true") == 0;
    snprintf(p->pool, sizeof p->pool, "%s", cfg->routing_pool ? cfg->routing_pool : "");
    snprintf(p->fallback, sizeof p->fallback, "%s", cfg->routing_fallback ? cfg->routing_fallback : "");
    p->max_open_leads = cfg->routing_max_open_leads;
    p->sla_us = (int64_t)cfg->routing_sla_s * 1000000;
    cs_route_policy_normalise(p);
}

/* ---- regions and segments -------------------------------------------- */

static const char *const amer[] = {"US", "CA", "MX", "BR", "AR", "CL", "CO", "PE", "UY", "CR", "PA", "EC", "VE",
                                   "GT", "DO", "PR", "BO", "PY", NULL};
static const char *const emea[] = {"GB", "UK", "IE", "DE", "FR", "ES", "IT", "PT", "NL", "BE", "LU", "CH", "AT",
                                   "SE", "NO", "DK", "FI", "IS", "PL", "CZ", "SK", "HU", "RO", "BG", "GR", "HR",
                                   "SI", "RS", "EE", "LV", "LT", "UA", "TR", "IL", "AE", "SA", "QA", "KW", "BH",
                                   "OM", "EG", "MA", "TN", "ZA", "NG", "KE", "GH", "CY", "MT", NULL};
static const char *const apac[] = {"JP", "CN", "IN", "AU", "NZ", "SG", "KR", "HK", "TW", "ID", "MY", "TH", "PH",
                                   "VN", "PK", "BD", "LK", NULL};

static int in_list(const char *const *l, const char *c)
{
    for (; *l; l++)
        if (strcasecmp(*l, c) == 0) return 1;
    return 0;
}

const char *cs_route_region(const char *country)
{
    if (!country || !*country) return "";
    if (in_list(amer, country)) return "amer";
    if (in_list(emea, country)) return "emea";
    if (in_list(apac, country)) return "apac";
    return "";
}

const char *cs_route_segment(long n)
{
    return n < 0 ? "" : n < 200 ? "smb" : n < 1000 ? "mid" : "enterprise";
}

/* ---- rep attributes --------------------------------------------------- */

void cs_route_rep_init(cs_route_rep *r, const char *id)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id ? id : "");
    r->capacity = -1;
    r->weight = 1;
}

static const char *parse_values(const cJSON *a, cs_route_values *out)
{
    out->n = 0;
    if (cJSON_IsString(a) && *a->valuestring && strlen(a->valuestring) < sizeof out->v[0]) {
        snprintf(out->v[out->n++], sizeof out->v[0], "%s", a->valuestring);
        return NULL;
    }
    if (!cJSON_IsArray(a)) return "expected a list of strings";
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !*e->valuestring) return "expected a list of strings";
        if (strlen(e->valuestring) >= sizeof out->v[0]) return "a value is longer than 31 bytes";
        if (out->n == CS_ROUTE_MAX_TERR) return "more than 16 values in one dimension";
        snprintf(out->v[out->n++], sizeof out->v[0], "%s", e->valuestring);
    }
    return NULL;
}

static const char *parse_territory(const char *text, cs_route_rep *r)
{
    cJSON *j = cJSON_Parse(text);
    const char *why = NULL;
    if (!cJSON_IsObject(j)) why = "expected an object {countries, regions, segments, plan_tiers}";
    for (const cJSON *d = j && !why ? j->child : NULL; d && !why; d = d->next) {
        const char *k = d->string;
        cs_route_values *v = strcmp(k, "countries") == 0 || strcmp(k, "country") == 0     ? &r->countries
                             : strcmp(k, "regions") == 0 || strcmp(k, "region") == 0      ? &r->regions
                             : strcmp(k, "segments") == 0 || strcmp(k, "segment") == 0    ? &r->segments
                             : strcmp(k, "plan_tiers") == 0 || strcmp(k, "plan_tier") == 0 ? &r->plan_tiers
                                                                                          : NULL;
        if (!v) why = "unknown dimension (expected countries, regions, segments, plan_tiers)";
        else why = parse_values(d, v);
    }
    cJSON_Delete(j);
    if (!why) r->has_territory = 1;
    return why;
}

/* "09:00-17:30" → minutes. */
static int parse_span(const char *s, short *start, short *end)
{
    int h1, m1, h2, m2, used = 0;
    if (sscanf(s, "%2d:%2d-%2d:%2d%n", &h1, &m1, &h2, &m2, &used) != 4 || s[used]) return -1;
    if (h1 < 0 || h1 > 24 || h2 < 0 || h2 > 24 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59) return -1;
    int a = h1 * 60 + m1, b = h2 * 60 + m2;
    if (a >= b || b > 24 * 60) return -1;
    *start = (short)a;
    *end = (short)b;
    return 0;
}

static const char *const day_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const char *parse_hours(const char *text, cs_route_rep *r)
{
    cJSON *j = cJSON_Parse(text);
    const char *why = NULL;
    for (int d = 0; d < 7; d++) r->start[d] = r->end[d] = -1;
    if (!cJSON_IsObject(j)) why = "expected an object of day: \"HH:MM-HH:MM\" (mon..sun, weekdays, everyday)";
    for (const cJSON *e = j && !why ? j->child : NULL; e && !why; e = e->next) {
        short a, b;
        char span[32] = "";
        if (cJSON_IsString(e)) snprintf(span, sizeof span, "%s", e->valuestring);
        else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && cJSON_IsString(e->child->next))
            snprintf(span, sizeof span, "%.8s-%.8s", e->child->valuestring, e->child->next->valuestring);
        if (parse_span(span, &a, &b)) {
            why = "a day's hours must be \"HH:MM-HH:MM\" (or [\"HH:MM\", \"HH:MM\"]), start before end, same day";
            break;
        }
        int from = -1, to = -1;
        if (strcmp(e->string, "weekdays") == 0) from = 1, to = 5;
        else if (strcmp(e->string, "everyday") == 0) from = 0, to = 6;
        else
            for (int d = 0; d < 7; d++)
                if (strcmp(e->string, day_names[d]) == 0) from = to = d;
        if (from < 0) why = "unknown day (expected mon, tue, wed, thu, fri, sat, sun, weekdays or everyday)";
        for (int d = from; !why && d <= to; d++) r->start[d] = a, r->end[d] = b;
    }
    cJSON_Delete(j);
    if (!why) r->has_hours = 1;
    return why;
}

static const char *parse_pools(const char *text, cs_route_rep *r)
{
    cJSON *j = cJSON_Parse(text);
    const char *why = NULL;
    r->npools = 0;
    if (!cJSON_IsArray(j)) why = "expected a list of pool names";
    for (const cJSON *e = j && !why ? j->child : NULL; e && !why; e = e->next) {
        if (!cJSON_IsString(e) || !*e->valuestring || strlen(e->valuestring) >= sizeof r->pools[0])
            why = "a pool name is a string of 1 to 63 bytes";
        else if (r->npools == CS_ROUTE_MAX_POOLS) why = "more than 8 pools";
        else snprintf(r->pools[r->npools++], sizeof r->pools[0], "%s", e->valuestring);
    }
    cJSON_Delete(j);
    if (why) r->npools = 0;
    return why;
}

static const char *parse_int(const char *text, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    double d = strtod(text, &end);
    if (!*text || *end || errno || d != floor(d) || d < (double)lo || d > (double)hi) return "out of range";
    *out = (int64_t)d;
    return NULL;
}

static const char *set_col(cs_route_rep *r, const char *col, const char *text)
{
    if (!text) return NULL; /* SQL NULL: the default */
    if (strcmp(col, "pools") == 0) return parse_pools(text, r);
    if (strcmp(col, "territory") == 0) return parse_territory(text, r);
    if (strcmp(col, "working_hours") == 0) return parse_hours(text, r);
    if (strcmp(col, "capacity") == 0) return parse_int(text, 0, 1000000, &r->capacity) ? "an integer from 0 to 1000000" : NULL;
    if (strcmp(col, "weight") == 0) {
        int64_t w;
        if (parse_int(text, 1, CS_ROUTE_MAX_WEIGHT, &w)) return "an integer from 1 to 100";
        r->weight = (int)w;
        return NULL;
    }
    if (strcmp(col, "timezone") == 0) {
        int off;
        if (cs_tz_offset(text, 0, &off)) return "not an IANA time zone known to this system";
        snprintf(r->tz, sizeof r->tz, "%s", text);
        return NULL;
    }
    if (strcmp(col, "out_of_office") == 0) {
        r->ooo = strcmp(text, "1") == 0 || strcmp(text, "true") == 0;
        return NULL;
    }
    return NULL;
}

void cs_route_rep_set(cs_route_rep *r, const char *column, const char *text)
{
    const char *why = set_col(r, column, text);
    if (!why) return;
    char *dst = strcmp(column, "territory") == 0 ? r->bad_territory
                : strcmp(column, "pools") == 0   ? r->bad_pools
                                                 : r->bad_hours; /* working_hours, timezone (capacity, weight: typed) */
    if (!dst[0]) snprintf(dst, sizeof r->bad_hours, "%s: %s", column, why);
}

const char *cs_route_rep_check(const char *column, const char *text)
{
    int64_t w;
    if (text && strcmp(column, "weight") == 0 && parse_int(text, 1, CS_ROUTE_MAX_WEIGHT, &w))
        return "must be an integer from 1 to 100";
    return NULL;
}

/* ---- time --------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Local wall time of r at t: day of week (0 = Sunday), minute of day, and
 * the local seconds since the epoch. -1 when the zone is unknown. */
static int local_time(const cs_route_rep *r, int64_t t_us, int *wday, int *minute, int64_t *local_s)
{
    int off = 0;
    int64_t s = floor_div(t_us, 1000000);
    if (r->tz[0] && cs_tz_offset(r->tz, s, &off)) return -1;
    int64_t l = s + off, days = floor_div(l, 86400);
    *wday = (int)(((days % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    *minute = (int)((l - days * 86400) / 60);
    if (local_s) *local_s = l;
    return 0;
}

int cs_route_in_hours(const cs_route_rep *r, int64_t now_us)
{
    if (!r->has_hours) return 1;
    int wd, m;
    if (local_time(r, now_us, &wd, &m, NULL)) return -1;
    return r->start[wd] >= 0 && m >= r->start[wd] && m < r->end[wd];
}

int64_t cs_route_sla_due(const cs_route_rep *r, int64_t from_us, int64_t sla_us)
{
    if (sla_us <= 0) return 0;
    int any = 0;
    for (int d = 0; d < 7; d++) any |= r->has_hours && r->start[d] >= 0;
    if (!any) return from_us + sla_us;
    int64_t t = from_us, left = sla_us;
    /* Walk the rep's calendar: at most a year of windows (a 1-minute
     * window once a week and a week-long SLA needs ~10k steps). */
    for (int step = 0; step < 20000; step++) {
        int wd, m;
        int64_t ls;
        if (local_time(r, t, &wd, &m, &ls)) return from_us + sla_us;
        int64_t sec_in_min = (ls % 60 + 60) % 60;
        int64_t sub_us = ((t % 1000000) + 1000000) % 1000000;
        int64_t into_day_us = ((int64_t)m * 60 + sec_in_min) * 1000000 + sub_us;
        int64_t st_us = (int64_t)r->start[wd] * 60000000, en_us = (int64_t)r->end[wd] * 60000000;
        if (r->start[wd] >= 0 && into_day_us >= st_us && into_day_us < en_us) {
            int64_t avail = en_us - into_day_us;
            if (left <= avail) return t + left;
            left -= avail;
            t += avail;
        } else if (r->start[wd] >= 0 && into_day_us < st_us) {
            t += st_us - into_day_us;
        } else {
            t += 86400LL * 1000000 - into_day_us; /* next local midnight (DST: re-read at the next step) */
        }
    }
    return from_us + sla_us;
}

/* ---- the decision ------------------------------------------------------ */

enum { X_PREVIOUS = 1, X_OOO = 2, X_TERRITORY = 4, X_HOURS = 8, X_CAPACITY = 16 };
static const char *const x_names[] = {"previous_owner", "out_of_office", "territory", "hours", "capacity"};
#define NX 5

static int in_pool(const cs_route_rep *r, const char *pool)
{
    if (!pool[0]) return 1;
    for (int i = 0; i < r->npools; i++)
        if (strcmp(r->pools[i], pool) == 0) return 1;
    return 0;
}

static int values_have(const cs_route_values *v, const char *x)
{
    for (int i = 0; i < v->n; i++)
        if (strcasecmp(v->v[i], x) == 0) return 1;
    return 0;
}

/* Territory: every dimension the rep lists must hold the lead's value. */
static int territory_miss(const cs_route_rep *r, const cs_route_lead *l, char *why, size_t n)
{
    if (r->bad_territory[0]) return snprintf(why, n, "invalid %.80s", r->bad_territory), 1;
    if (!r->has_territory) return snprintf(why, n, "no territory"), 1;
    const struct { const cs_route_values *v; const char *have, *name; } d[] = {
        {&r->countries, l->country, "country"},
        {&r->regions, l->region, "region"},
        {&r->segments, l->segment, "segment"},
        {&r->plan_tiers, l->plan_tier, "plan_tier"},
    };
    for (size_t i = 0; i < 4; i++) {
        if (!d[i].v->n) continue;
        if (!d[i].have || !*d[i].have) return snprintf(why, n, "lead has no %s", d[i].name), 1;
        if (!values_have(d[i].v, d[i].have))
            return snprintf(why, n, "%s %.40s not covered", d[i].name, d[i].have), 1;
    }
    return 0;
}

static int64_t cap_of(const cs_route_rep *r, const cs_route_policy *p)
{
    int64_t c = r->capacity;
    if (p->max_open_leads > 0 && (c < 0 || p->max_open_leads < c)) c = p->max_open_leads;
    return c;
}

/* Why rep r cannot take the lead now: a mask of X_*, 0 when eligible. */
static int exclusions(const cs_route_policy *p, const cs_route_lead *l, const cs_route_rep *r, int64_t now_us,
                      const char *const *exclude, size_t nexclude, char *terr_why, size_t twn)
{
    int x = 0;
    terr_why[0] = '\0';
    for (size_t i = 0; i < nexclude; i++)
        if (exclude[i] && strcmp(exclude[i], r->id) == 0) x |= X_PREVIOUS;
    if (r->ooo) x |= X_OOO;
    if (p->territory && territory_miss(r, l, terr_why, twn)) x |= X_TERRITORY;
    if (p->working_hours && (r->bad_hours[0] || cs_route_in_hours(r, now_us) != 1)) x |= X_HOURS;
    int64_t c = cap_of(r, p);
    if (c >= 0 && r->open_leads >= c) x |= X_CAPACITY;
    return x;
}

/* JSON string of at most max bytes of s (cut on a UTF-8 boundary). */
static void jstr(cs_buf *b, const char *s, size_t max)
{
    if (!s) {
        cs_buf_adds(b, "null");
        return;
    }
    size_t n = strlen(s);
    if (n > max) {
        n = max;
        while (n && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%.*s", (int)n, s);
    cs_buf_json_str(b, tmp);
}

static void jkey(cs_buf *b, int *first, const char *k)
{
    cs_buf_printf(b, "%s\"%s\":", *first ? "" : ",", k);
    *first = 0;
}

static void explain_rep(cs_buf *b, const cs_route_policy *p, const cs_route_rep *r, int x, const char *terr_why,
                        int64_t now_us)
{
    cs_buf_adds(b, "{\"rep\":");
    jstr(b, r->id, 160);
    if (r->open_leads >= 0) cs_buf_printf(b, ",\"open_leads\":%lld", (long long)r->open_leads);
    int64_t c = cap_of(r, p);
    if (c >= 0) cs_buf_printf(b, ",\"capacity\":%lld", (long long)c);
    if (r->weight != 1 || p->weighted) cs_buf_printf(b, ",\"weight\":%d", r->weight);
    if (!x) {
        cs_buf_adds(b, ",\"eligible\":true}");
        return;
    }
    cs_buf_adds(b, ",\"eligible\":false,\"excluded\":[");
    int k = 0;
    for (int i = 0; i < NX; i++)
        if (x & (1 << i)) cs_buf_printf(b, "%s\"%s\"", k++ ? "," : "", x_names[i]);
    cs_buf_adds(b, "]");
    if (x & X_TERRITORY) {
        cs_buf_adds(b, ",\"territory\":");
        jstr(b, terr_why, 80);
    }
    if (x & X_HOURS) {
        int wd = 0, m = 0;
        if (r->bad_hours[0]) {
            cs_buf_adds(b, ",\"invalid\":");
            jstr(b, r->bad_hours, 95);
        } else {
            if (local_time(r, now_us, &wd, &m, NULL) == 0)
                cs_buf_printf(b, ",\"local_time\":\"%s %02d:%02d\"", day_names[wd], m / 60, m % 60);
            cs_buf_adds(b, ",\"timezone\":");
            jstr(b, r->tz[0] ? r->tz : "UTC", 63);
        }
    }
    cs_buf_adds(b, "}");
}

/* The interleaved weighted round robin schedule over the pool: round k
 * (1..max weight) visits, in order, the reps whose weight >= k. A slot is a
 * position in that cycle. Returns the candidate at slot s. */
static size_t slot_to_cand(const int *w, size_t nc, int maxw, int64_t s, int *round)
{
    for (int k = 1; k <= maxw; k++) {
        for (size_t i = 0; i < nc; i++) {
            if (w[i] < k) continue;
            if (s-- == 0) {
                *round = k;
                return i;
            }
        }
    }
    *round = 1;
    return 0;
}

void cs_route_decide(const cs_route_policy *p, const cs_route_lead *lead, const cs_route_rep *reps, size_t n,
                     int64_t now_us, int64_t slot, const char *const *exclude, size_t nexclude,
                     cs_route_result *out)
{
    memset(out, 0, sizeof *out);
    out->rep = -1;
    out->next_slot = -1;
    char at[40], terr_why[96];
    cs_fmt_time_ms(now_us, at, sizeof at);
    int count[NX] = {0};

    /* Stage 1: the account's owner. */
    const char *acct_result = NULL;
    int acct_x = 0;
    if (p->match_account) {
        if (!lead->account_id) acct_result = "no_account";
        else if (!lead->account_owner || !*lead->account_owner) acct_result = "account_has_no_owner";
        else {
            acct_result = "owner_not_a_rep";
            for (size_t i = 0; i < n; i++) {
                if (strcmp(reps[i].id, lead->account_owner) != 0) continue;
                /* The owner keeps the account whatever the pool or territory. */
                cs_route_policy q = *p;
                q.territory = 0;
                acct_x = exclusions(&q, lead, &reps[i], now_us, exclude, nexclude, terr_why, sizeof terr_why);
                if (!acct_x) {
                    out->rep = (int)i;
                    out->via = "account_owner";
                    acct_result = "owner";
                } else {
                    acct_result = "owner_excluded";
                }
                break;
            }
        }
    }

    /* Stages 2-3: the pool and its filters. */
    size_t nc = 0;
    int maxw = 1;
    int *cw = cs_malloc((n ? n : 1) * 3 * sizeof *cw), *cidx = cw + n, *cx = cw + 2 * n;
    int eligible = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_pool(&reps[i], p->pool)) continue;
        cidx[nc] = (int)i;
        cw[nc] = p->weighted ? (reps[i].weight < 1 ? 1 : reps[i].weight) : 1;
        if (cw[nc] > maxw) maxw = cw[nc];
        cx[nc] = exclusions(p, lead, &reps[i], now_us, exclude, nexclude, terr_why, sizeof terr_why);
        if (!cx[nc]) eligible++;
        for (int k = 0; k < NX; k++)
            if (cx[nc] & (1 << k)) count[k]++;
        nc++;
    }
    out->candidates = (int)nc;
    out->eligible = eligible;

    /* Stage 4: the rotation. */
    if (out->rep < 0 && eligible) {
        int64_t W = 0;
        for (size_t i = 0; i < nc; i++) W += cw[i];
        int64_t cur = slot < 0 ? 0 : slot % W;
        int round;
        size_t c = slot_to_cand(cw, nc, maxw, cur, &round);
        for (int64_t step = 0; step < W; step++) {
            if (!cx[c]) {
                out->rep = cidx[c];
                out->next_slot = (cur + 1) % W;
                out->via = p->weighted ? "weighted_round_robin" : "round_robin";
                break;
            }
            /* the next slot of the cycle */
            cur = (cur + 1) % W;
            if (cur == 0) {
                round = 1, c = 0;
                continue;
            }
            for (c++;; c++) {
                if (c == nc) round++, c = 0;
                if (cw[c] >= round) break;
            }
        }
    }
    if (out->rep < 0) out->via = "fallback";
    out->owner = out->rep >= 0 ? reps[out->rep].id : NULL;
    if (out->rep >= 0) out->sla_due_us = cs_route_sla_due(&reps[out->rep], now_us, p->sla_us);

    /* The reason, for humans. */
    char excl[160] = "";
    size_t el = 0;
    for (int k = 0; k < NX; k++)
        if (count[k] && el < sizeof excl)
            el += (size_t)snprintf(excl + el, sizeof excl - el, "%s%s %d", el ? ", " : "", x_names[k], count[k]);
    char reason[640];
    if (out->rep >= 0 && strcmp(out->via, "account_owner") == 0)
        snprintf(reason, sizeof reason, "%.64s: account_owner: %.60s owns account %.60s", p->rule_id,
                 out->owner, lead->account_id);
    else if (out->rep >= 0)
        snprintf(reason, sizeof reason, "%.64s: %s: pool %.40s, %.60s is next in rotation (%d of %d eligible%s%.80s)",
                 p->rule_id, out->via, p->pool[0] ? p->pool : "default", out->owner, eligible, (int)nc,
                 el ? "; excluded: " : "", excl);
    else
        snprintf(reason, sizeof reason, "%.64s: fallback queue %.40s: no eligible rep among %d in pool %.40s%s%.80s",
                 p->rule_id, p->fallback, (int)nc, p->pool[0] ? p->pool : "default", el ? "; excluded: " : "", excl);
    size_t rl = strlen(reason);
    if (rl >= sizeof out->reason) rl = sizeof out->reason - 1;
    memcpy(out->reason, reason, rl);
    out->reason[rl] = '\0';

    /* The explanation, as JSON, bounded (CS_ROUTE_EXPLANATION_MAX). */
    cs_buf b;
    cs_buf_init(&b);
    int first = 1;
    cs_buf_adds(&b, "{");
    jkey(&b, &first, "rule");
    jstr(&b, p->rule_id, 128);
    jkey(&b, &first, "strategy");
    cs_buf_printf(&b, "\"%s\"", cs_route_strategy_name(p->strategy));
    jkey(&b, &first, "policy");
    cs_buf_adds(&b, "{\"pool\":");
    jstr(&b, p->pool, 63);
    cs_buf_printf(&b, ",\"match_account\":%s,\"territory\":%s,\"working_hours\":%s,\"weighted\":%s,"
                      "\"max_open_leads\":%lld,\"fallback\":",
                  p->match_account ? "true" : "false", p->territory ? "true" : "false",
                  p->working_hours ? "true" : "false", p->weighted ? "true" : "false", (long long)p->max_open_leads);
    jstr(&b, p->fallback, 63);
    cs_buf_printf(&b, ",\"sla_s\":%lld}", (long long)(p->sla_us / 1000000));
    jkey(&b, &first, "lead");
    cs_buf_adds(&b, "{\"domain\":");
    jstr(&b, lead->domain && *lead->domain ? lead->domain : NULL, 120);
    cs_buf_adds(&b, ",\"country\":");
    jstr(&b, lead->country && *lead->country ? lead->country : NULL, 40);
    cs_buf_adds(&b, ",\"region\":");
    jstr(&b, lead->region && *lead->region ? lead->region : NULL, 40);
    cs_buf_adds(&b, ",\"segment\":");
    jstr(&b, lead->segment && *lead->segment ? lead->segment : NULL, 40);
    cs_buf_adds(&b, ",\"plan_tier\":");
    jstr(&b, lead->plan_tier && *lead->plan_tier ? lead->plan_tier : NULL, 40);
    cs_buf_adds(&b, "}");
    if (p->match_account) {
        jkey(&b, &first, "account_match");
        cs_buf_adds(&b, "{\"account_id\":");
        jstr(&b, lead->account_id, 160);
        cs_buf_adds(&b, ",\"matched_by\":");
        jstr(&b, lead->matched_by, 20);
        cs_buf_adds(&b, ",\"owner\":");
        jstr(&b, lead->account_owner && *lead->account_owner ? lead->account_owner : NULL, 160);
        cs_buf_printf(&b, ",\"result\":\"%s\"", acct_result);
        if (acct_x) {
            cs_buf_adds(&b, ",\"excluded\":[");
            int k = 0;
            for (int i = 0; i < NX; i++)
                if (acct_x & (1 << i)) cs_buf_printf(&b, "%s\"%s\"", k++ ? "," : "", x_names[i]);
            cs_buf_adds(&b, "]");
        }
        cs_buf_adds(&b, "}");
    }
    if (nexclude) {
        jkey(&b, &first, "previous_owners");
        cs_buf_adds(&b, "[");
        for (size_t i = 0; i < nexclude && i < 16; i++) {
            if (i) cs_buf_adds(&b, ",");
            jstr(&b, exclude[i], 160);
        }
        cs_buf_adds(&b, "]");
    }
    jkey(&b, &first, "candidates");
    cs_buf_adds(&b, "[");
    size_t listed = 0;
    for (size_t c = 0; c < nc && listed < CS_ROUTE_EXPLAIN_MAX_CANDIDATES && b.len < CS_ROUTE_EXPLANATION_MAX - 2600;
         c++) {
        if (listed++) cs_buf_adds(&b, ",");
        (void)exclusions(p, lead, &reps[cidx[c]], now_us, exclude, nexclude, terr_why, sizeof terr_why);
        explain_rep(&b, p, &reps[cidx[c]], cx[c], terr_why, now_us);
    }
    cs_buf_printf(&b, "],\"candidates_total\":%zu,\"candidates_listed\":%zu,\"eligible\":%d,\"excluded\":{", nc,
                  listed, eligible);
    for (int k = 0; k < NX; k++) cs_buf_printf(&b, "%s\"%s\":%d", k ? "," : "", x_names[k], count[k]);
    cs_buf_adds(&b, "},\"winner\":");
    jstr(&b, out->owner, 160);
    cs_buf_printf(&b, ",\"via\":\"%s\"", out->via);
    if (out->rep < 0) {
        cs_buf_adds(&b, ",\"queue\":");
        jstr(&b, p->fallback, 63);
    }
    if (out->sla_due_us) {
        char due[40];
        cs_fmt_time_ms(out->sla_due_us, due, sizeof due);
        cs_buf_printf(&b, ",\"sla_due_at\":\"%s\"", due);
    }
    cs_buf_printf(&b, ",\"at\":\"%s\"}", at);
    if (b.len < sizeof out->explanation) memcpy(out->explanation, b.data, b.len + 1);
    else snprintf(out->explanation, sizeof out->explanation, "{\"truncated\":true,\"winner\":null}");
    cs_buf_free(&b);
    free(cw);
}
