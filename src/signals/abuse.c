/*
 * signals/abuse.c — signup velocity and disposable domains (abuse.h).
 *
 * Velocity per key (email domain, IP, device) is a ring of 16 buckets of
 * window/16 each, indexed by absolute bucket number, so an out-of-order event
 * lands where its event time says. The count "in the window" at bucket B is
 * the sum of buckets B-15..B: exact to one bucket (37.5 s for 10 minutes).
 */
#include "signals/abuse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/util.h"

#define NB 16

typedef struct vel {
    uint64_t key;     /* 0: empty */
    int64_t  newest;  /* newest bucket number counted */
    uint16_t cnt[NB]; /* slot = bucket mod 16 */
} vel;

typedef struct hset {
    uint64_t *v;
    size_t    mask, n;
} hset;

struct cs_abuse {
    cs_abuse_config cfg;
    vel            *t;
    size_t          mask, n;
    int64_t         now_bucket;
    hset            disposable, free_mail;
    uint64_t        checked, flagged, dropped;
};

static const char *const seed_disposable[] = {
    "mailinator.com", "guerrillamail.com", "guerrillamail.net", "sharklasers.com", "10minutemail.com",
    "temp-mail.org", "tempmail.com", "tempmailo.com", "yopmail.com", "trashmail.com", "getnada.com",
    "dispostable.com", "maildrop.cc", "throwawaymail.com", "fakeinbox.com", "mailnesia.com", "mintemail.com",
    "emailondeck.com", "mohmal.com", "discard.email", "spamgourmet.com", "mytemp.email", "tempail.com",
    "burnermail.io", "moakt.com", "mailcatch.com", "inboxkitten.com", "disposable.example",
};
static const char *const seed_free_mail[] = {
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "yahoo.com", "icloud.com",
    "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.com", "gmx.de", "web.de", "mail.ru", "yandex.ru",
    "qq.com", "163.com", "zoho.com",
};

static uint64_t h64(const char *s, size_t n, uint64_t seed)
{
    uint64_t h = XXH3_64bits_withSeed(s, n, seed);
    return h ? h : 1;
}

static void hset_add(hset *s, uint64_t h)
{
    if ((s->n + 1) * 2 > s->mask + 1) {
        size_t nm = s->mask ? s->mask * 2 + 1 : 63;
        uint64_t *nv = cs_calloc(nm + 1, sizeof *nv);
        for (size_t i = 0; s->v && i <= s->mask; i++) {
            if (!s->v[i]) continue;
            size_t j = s->v[i] & nm;
            while (nv[j]) j = (j + 1) & nm;
            nv[j] = s->v[i];
        }
        free(s->v);
        s->v = nv;
        s->mask = nm;
    }
    size_t j = h & s->mask;
    while (s->v[j]) {
        if (s->v[j] == h) return;
        j = (j + 1) & s->mask;
    }
    s->v[j] = h;
    s->n++;
}

static int hset_has(const hset *s, uint64_t h)
{
    if (!s->v) return 0;
    for (size_t j = h & s->mask; s->v[j]; j = (j + 1) & s->mask)
        if (s->v[j] == h) return 1;
    return 0;
}

/* The domain or any parent of it (a.b.mailinator.com) is in the set. */
static int domain_in(const hset *s, const char *d)
{
    while (d && *d) {
        if (hset_has(s, h64(d, strlen(d), 0))) return 1;
        d = strchr(d, '.');
        if (d) d++;
        if (d && !strchr(d, '.')) break; /* never match a bare TLD */
    }
    return 0;
}

static void add_domain(hset *s, const char *d)
{
    char low[128];
    size_t n = 0;
    for (; d[n] && n < sizeof low - 1; n++) low[n] = (char)(d[n] >= 'A' && d[n] <= 'Z' ? d[n] + 32 : d[n]);
    low[n] = 0;
    if (n) hset_add(s, h64(low, n, 0));
}

void cs_abuse_config_defaults(cs_abuse_config *c)
{
    memset(c, 0, sizeof *c);
    c->window_us = 10LL * 60 * 1000000;
    c->domain_max = 10;
    c->ip_max = 5;
    c->device_max = 3;
    c->w_disposable = 60;
    c->w_domain = 30;
    c->w_ip = 30;
    c->w_device = 40;
    c->flag_score = 50;
    c->max_keys = 1u << 20;
}

cs_abuse *cs_abuse_new(const cs_abuse_config *cfg)
{
    cs_abuse *a = cs_calloc(1, sizeof *a);
    a->cfg = *cfg;
    if (a->cfg.window_us < NB) a->cfg.window_us = NB;
    if (a->cfg.max_keys < 16) a->cfg.max_keys = 16;
    a->mask = 255;
    a->t = cs_calloc(a->mask + 1, sizeof *a->t);
    a->now_bucket = INT64_MIN;
    for (size_t i = 0; i < sizeof seed_disposable / sizeof *seed_disposable; i++)
        add_domain(&a->disposable, seed_disposable[i]);
    for (size_t i = 0; i < sizeof seed_free_mail / sizeof *seed_free_mail; i++)
        add_domain(&a->free_mail, seed_free_mail[i]);
    for (size_t i = 0; i < cfg->n_disposable; i++) add_domain(&a->disposable, cfg->disposable[i]);
    for (size_t i = 0; i < cfg->n_free_mail; i++) add_domain(&a->free_mail, cfg->free_mail[i]);
    a->cfg.disposable = a->cfg.free_mail = NULL; /* borrowed for this call only */
    a->cfg.n_disposable = a->cfg.n_free_mail = 0;
    return a;
}

void cs_abuse_free(cs_abuse *a)
{
    if (!a) return;
    free(a->t);
    free(a->disposable.v);
    free(a->free_mail.v);
    free(a);
}

void cs_abuse_add_disposable(cs_abuse *a, const char *domain)
{
    add_domain(&a->disposable, domain);
}

void cs_abuse_add_free_mail(cs_abuse *a, const char *domain)
{
    add_domain(&a->free_mail, domain);
}

static int live(const cs_abuse *a, const vel *v)
{
    return v->newest > a->now_bucket - NB;
}

/* Rebuild the table at newmask keeping only live entries. */
static void rebuild(cs_abuse *a, size_t newmask)
{
    vel *nt = cs_calloc(newmask + 1, sizeof *nt);
    size_t n = 0;
    for (size_t i = 0; i <= a->mask; i++) {
        if (!a->t[i].key || !live(a, &a->t[i])) continue;
        size_t j = a->t[i].key & newmask;
        while (nt[j].key) j = (j + 1) & newmask;
        nt[j] = a->t[i];
        n++;
    }
    free(a->t);
    a->t = nt;
    a->mask = newmask;
    a->n = n;
}

static vel *lookup(cs_abuse *a, uint64_t key, int *dropped)
{
    size_t j = key & a->mask;
    for (; a->t[j].key; j = (j + 1) & a->mask)
        if (a->t[j].key == key) return &a->t[j];
    if (a->n >= a->cfg.max_keys) {
        rebuild(a, a->mask); /* reclaim entries whose window has passed */
        if (a->n >= a->cfg.max_keys) {
            a->dropped++;
            *dropped = 1;
            return NULL;
        }
    } else if ((a->n + 1) * 2 > a->mask + 1) {
        rebuild(a, a->mask * 2 + 1);
    } else {
        goto put;
    }
    j = key & a->mask;
    while (a->t[j].key) j = (j + 1) & a->mask;
put:
    memset(&a->t[j], 0, sizeof a->t[j]);
    a->t[j].key = key;
    a->t[j].newest = INT64_MIN;
    a->n++;
    return &a->t[j];
}

/* Count one signup at bucket b; returns the count in the window ending at
 * the key's newest bucket (b included when it is inside it). */
static uint32_t count(vel *v, int64_t b)
{
    if (v->newest == INT64_MIN) {
        v->newest = b;
    } else if (b > v->newest) {
        int64_t steps = b - v->newest;
        if (steps >= NB) memset(v->cnt, 0, sizeof v->cnt);
        else
            for (int64_t k = v->newest + 1; k <= b; k++) v->cnt[((k % NB) + NB) % NB] = 0;
        v->newest = b;
    }
    if (b > v->newest - NB) {
        uint16_t *c = &v->cnt[((b % NB) + NB) % NB];
        if (*c < UINT16_MAX) (*c)++;
    }
    uint32_t sum = 0;
    for (int i = 0; i < NB; i++) sum += v->cnt[i];
    return sum;
}

static void reason(cs_abuse_result *r, const char *code, uint32_t cnt, uint32_t limit, int points)
{
    cs_abuse_reason *x = &r->reasons[r->n_reasons++];
    x->code = code;
    x->count = cnt;
    x->limit = limit;
    r->score += points;
}

void cs_abuse_check(cs_abuse *a, const cs_abuse_event *ev, cs_abuse_result *res)
{
    memset(res, 0, sizeof *res);
    int64_t width = a->cfg.window_us / NB;
    int64_t b = ev->ts_us / width - (ev->ts_us % width < 0);
    if (b > a->now_bucket) a->now_bucket = b;
    a->checked++;

    const char *at = ev->email ? strrchr(ev->email, '@') : NULL;
    if (at && at[1]) {
        size_t n = 0;
        for (const char *p = at + 1; *p && n < sizeof res->domain - 1; p++, n++)
            res->domain[n] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        res->domain[n] = 0;
    }
    if (res->domain[0]) {
        if (domain_in(&a->disposable, res->domain)) reason(res, "disposable_domain", 0, 0, a->cfg.w_disposable);
        res->free_mail = domain_in(&a->free_mail, res->domain);
        if (!res->free_mail) {
            vel *v = lookup(a, h64(res->domain, strlen(res->domain), 1), &res->velocity_dropped);
            if (v) res->domain_count = count(v, b);
            if (res->domain_count > a->cfg.domain_max)
                reason(res, "domain_velocity", res->domain_count, a->cfg.domain_max, a->cfg.w_domain);
        }
    }
    if (ev->ip && *ev->ip) {
        vel *v = lookup(a, h64(ev->ip, strlen(ev->ip), 2), &res->velocity_dropped);
        if (v) res->ip_count = count(v, b);
        if (res->ip_count > a->cfg.ip_max) reason(res, "ip_velocity", res->ip_count, a->cfg.ip_max, a->cfg.w_ip);
    }
    if (ev->device_id && *ev->device_id) {
        vel *v = lookup(a, h64(ev->device_id, strlen(ev->device_id), 3), &res->velocity_dropped);
        if (v) res->device_count = count(v, b);
        if (res->device_count > a->cfg.device_max)
            reason(res, "device_velocity", res->device_count, a->cfg.device_max, a->cfg.w_device);
    }
    if (res->score > 100) res->score = 100;
    res->flagged = res->score >= a->cfg.flag_score;
    if (res->flagged) a->flagged++;
}

void cs_abuse_stats_get(const cs_abuse *a, cs_abuse_stats *s)
{
    s->checked = a->checked;
    s->flagged = a->flagged;
    s->dropped = a->dropped;
    s->keys = a->n;
    s->bytes = sizeof *a + (a->mask + 1) * sizeof(vel) + (a->disposable.mask + 1 + a->free_mail.mask + 1) * 8;
}
