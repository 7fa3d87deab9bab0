/*
 * signals/snapshot.c — the engine's state hash (T13/T14) and its snapshot
 * format (restart = restore the snapshot + replay the log from its offset).
 *
 * Snapshot format, version 1. All integers little-endian; doubles and floats
 * as their IEEE-754 bits.
 *
 *   off  size  field
 *     0     4  magic "CSSG"
 *     4     1  version (1)
 *     5     3  zero
 *     8     8  config fingerprint: XXH3 of the fields that shape the
 *              aggregates (units per feature, key features, half-life);
 *              a snapshot taken under other values is refused (rebuild by
 *              replay). Thresholds may change freely between runs.
 *    16     8  max event time (INT64_MIN: none)
 *    24     4  sweep day, 28  8 sweep position, 36  8 sweep end
 *    44    40  counters: applied, late, refused, invalid, changes
 *    84     8  N, the number of accounts (<= max_accounts of the restoring config)
 *    92     .  N account records: 280 fixed bytes (see put_acct, in the
 *              order of cs_sig_acct) then id_len bytes of account id
 *   end-4   4  CRC-32C of every byte before it
 *
 * Validity: the length is at least the header and the CRC; the CRC matches;
 * magic, version and fingerprint match; every record lies inside the buffer
 * and is internally consistent (its key is the hash of its id, its newest day
 * is the day of its last event, enums in range, no duplicate account); the
 * records end exactly at the CRC. Anything else is CS_SIG_ECORRUPT: the
 * caller falls back to a replay from offset 0.
 */
#include "signals/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/hash.h"

#define SNAP_MAGIC   "CSSG"
#define SNAP_VERSION 1
#define SNAP_HEADER  92
#define REC_FIXED    280
#define DAY_US       86400000000LL

/* ---- encoding ----------------------------------------------------------- */

static void put_u8(cs_buf *b, uint8_t v)
{
    cs_buf_add(b, &v, 1);
}

static void put_u32(cs_buf *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    cs_buf_add(b, x, 4);
}

static void put_u64(cs_buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    cs_buf_add(b, x, 8);
}

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline uint8_t *w64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); /* one store on little-endian hosts */
    return p + 8;
}

static inline uint8_t *w32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static inline uint8_t *w16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

/* The account's fixed record; filter = 0 leaves the write-filter fields out
 * (zeros), as the state hash wants. Built in a local array and appended at
 * once (one buffer call per account, not one per field). */
static void put_acct(cs_buf *b, const cs_sig_acct *a, int filter)
{
    uint8_t r[REC_FIXED], *p = r;
    p = w64(p, a->key);
    p = w64(p, (uint64_t)a->first_us);
    p = w64(p, (uint64_t)a->last_us);
    p = w64(p, (uint64_t)a->trial_us);
    p = w64(p, (uint64_t)a->plan_ts);
    p = w64(p, (uint64_t)a->renew_ts);
    p = w64(p, dbits(a->tail));
    p = w64(p, a->feat[0]);
    p = w64(p, a->feat[1]);
    for (int w = 0; w < SIG_USER_WEEKS; w++) {
        p = w64(p, a->users[w][0]);
        p = w64(p, a->users[w][1]);
    }
    p = w32(p, (uint32_t)a->cursor);
    p = w32(p, (uint32_t)a->renewal_day);
    for (int i = 0; i < CS_SIG_MAX_KEY_FEATURES; i++) p = w32(p, (uint32_t)a->key_first[i]);
    p = w32(p, a->events);
    p = w32(p, filter ? fbits(a->usage_emit) : 0);
    p = w32(p, filter ? fbits(a->health_emit) : 0);
    for (int i = 0; i < SIG_RING_DAYS; i++) p = w16(p, a->units[i]);
    memcpy(p, a->tickets, SIG_TICKET_DAYS);
    p += SIG_TICKET_DAYS;
    *p++ = a->plan_tier;
    *p++ = a->trial_days;
    *p++ = filter ? a->emit_flags : 0;
    *p++ = filter ? a->stage_emit : 0;
    *p++ = filter ? a->band_emit : 0;
    *p++ = a->id_len;
    cs_buf_add(b, r, (size_t)(p - r)); /* == REC_FIXED: restore checks every record's length */
}

/* ---- state hash ----------------------------------------------------------- */

uint64_t cs_sig_state_hash(const cs_sig_engine *e)
{
    /* Sum of per-account hashes: independent of the table's order. */
    uint64_t sum = 0;
    cs_buf b;
    cs_buf_init(&b);
    for (size_t i = 0; i < e->n; i++) {
        const cs_sig_acct *a = sig_acct(e, i);
        cs_buf_reset(&b);
        put_acct(&b, a, 0);
        cs_buf_add(&b, sig_acct_id(a), a->id_len);
        cs_sig_view v;
        sig_eval(e, a, sig_asof(e, a), &v);
        put_u64(&b, dbits(v.usage_score));
        put_u64(&b, dbits(v.health));
        put_u32(&b, (uint32_t)v.asof_day);
        put_u8(&b, (uint8_t)v.stage);
        put_u8(&b, (uint8_t)v.band);
        put_u8(&b, (uint8_t)(v.engagement_drop | v.renewal_spike << 1 | v.trial_handoff << 2));
        sum += XXH3_64bits(b.data, b.len);
    }
    cs_buf_reset(&b);
    put_u64(&b, sum);
    put_u64(&b, e->n);
    put_u64(&b, (uint64_t)e->max_ts);
    put_u64(&b, e->applied);
    uint64_t h = XXH3_64bits(b.data, b.len);
    cs_buf_free(&b);
    return h;
}

/* ---- snapshot ------------------------------------------------------------- */

void cs_sig_snapshot(const cs_sig_engine *e, cs_buf *out)
{
    size_t start = out->len;
    cs_buf_reserve(out, SNAP_HEADER + e->n * (REC_FIXED + 16) + 4);
    cs_buf_add(out, SNAP_MAGIC, 4);
    put_u8(out, SNAP_VERSION);
    cs_buf_add(out, "\0\0\0", 3);
    put_u64(out, sig_config_fingerprint(&e->cfg));
    put_u64(out, (uint64_t)e->max_ts);
    put_u32(out, (uint32_t)e->sweep_day);
    put_u64(out, e->sweep_pos);
    put_u64(out, e->sweep_end);
    put_u64(out, e->applied);
    put_u64(out, e->late);
    put_u64(out, e->refused);
    put_u64(out, e->invalid);
    put_u64(out, e->changes);
    put_u64(out, e->n);
    for (size_t i = 0; i < e->n; i++) {
        const cs_sig_acct *a = sig_acct(e, i);
        put_acct(out, a, 1);
        cs_buf_add(out, sig_acct_id(a), a->id_len);
    }
    put_u32(out, cs_crc32c(0, out->data + start, out->len - start));
}

/* ---- restore: bounds-checked reads, one error label ------------------------ */

struct rd {
    const uint8_t *p, *end;
};

#define NEED(r, n) do { if ((size_t)((r)->end - (r)->p) < (size_t)(n)) goto err; } while (0)

static uint64_t get_n(struct rd *r, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

static double get_d(struct rd *r)
{
    uint64_t u = get_n(r, 8);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static float get_f(struct rd *r)
{
    uint32_t u = (uint32_t)get_n(r, 4);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static int32_t day_of(int64_t us)
{
    int64_t d = us / DAY_US;
    if (us % DAY_US < 0) d--;
    return (int32_t)d;
}

cs_sig_engine *cs_sig_restore(const cs_sig_config *cfg, const void *data, size_t len, int *rc, char *err,
                              size_t errlen)
{
    const char *why = "truncated";
    cs_sig_engine *e = NULL;
    if (rc) *rc = CS_SIG_ECORRUPT;
    if (len < SNAP_HEADER + 4) goto err;
    uint32_t crc = (uint32_t)((const uint8_t *)data)[len - 4] | (uint32_t)((const uint8_t *)data)[len - 3] << 8 |
                   (uint32_t)((const uint8_t *)data)[len - 2] << 16 | (uint32_t)((const uint8_t *)data)[len - 1] << 24;
    why = "checksum mismatch";
    if (cs_crc32c(0, data, len - 4) != crc) goto err;
    struct rd r = {data, (const uint8_t *)data + len - 4};
    why = "bad magic";
    if (memcmp(r.p, SNAP_MAGIC, 4) != 0) goto err;
    r.p += 4;
    why = "unknown version";
    if (get_n(&r, 1) != SNAP_VERSION || get_n(&r, 3) != 0) goto err;
    e = cs_sig_engine_new(cfg, err, errlen);
    if (!e) {
        if (rc) *rc = CS_SIG_EINVAL;
        return NULL;
    }
    why = "taken under another config (units, key features or half-life differ)";
    if (get_n(&r, 8) != sig_config_fingerprint(cfg)) goto err;
    e->max_ts = (int64_t)get_n(&r, 8);
    e->sweep_day = (int32_t)get_n(&r, 4);
    uint64_t sweep_pos = get_n(&r, 8), sweep_end = get_n(&r, 8);
    e->applied = get_n(&r, 8);
    e->late = get_n(&r, 8);
    e->refused = get_n(&r, 8);
    e->invalid = get_n(&r, 8);
    e->changes = get_n(&r, 8);
    uint64_t n = get_n(&r, 8);
    why = "more accounts than max_accounts";
    if (n > cfg->max_accounts) goto err;
    why = "sweep position out of range";
    if (sweep_pos > sweep_end || sweep_end > n) goto err;
    if (e->max_ts != INT64_MIN) e->wm_day = day_of(e->max_ts - cfg->lateness_us);
    for (uint64_t i = 0; i < n; i++) {
        why = "truncated account record";
        NEED(&r, REC_FIXED);
        cs_sig_acct a;
        memset(&a, 0, sizeof a);
        a.key = get_n(&r, 8);
        a.first_us = (int64_t)get_n(&r, 8);
        a.last_us = (int64_t)get_n(&r, 8);
        a.trial_us = (int64_t)get_n(&r, 8);
        a.plan_ts = (int64_t)get_n(&r, 8);
        a.renew_ts = (int64_t)get_n(&r, 8);
        a.tail = get_d(&r);
        a.feat[0] = get_n(&r, 8);
        a.feat[1] = get_n(&r, 8);
        for (int w = 0; w < SIG_USER_WEEKS; w++) {
            a.users[w][0] = get_n(&r, 8);
            a.users[w][1] = get_n(&r, 8);
        }
        a.cursor = (int32_t)get_n(&r, 4);
        a.renewal_day = (int32_t)get_n(&r, 4);
        for (int k = 0; k < CS_SIG_MAX_KEY_FEATURES; k++) a.key_first[k] = (int32_t)get_n(&r, 4);
        a.events = (uint32_t)get_n(&r, 4);
        a.usage_emit = get_f(&r);
        a.health_emit = get_f(&r);
        for (int k = 0; k < SIG_RING_DAYS; k++) a.units[k] = (uint16_t)get_n(&r, 2);
        memcpy(a.tickets, r.p, SIG_TICKET_DAYS);
        r.p += SIG_TICKET_DAYS;
        a.plan_tier = (uint8_t)get_n(&r, 1);
        a.trial_days = (uint8_t)get_n(&r, 1);
        a.emit_flags = (uint8_t)get_n(&r, 1);
        a.stage_emit = (uint8_t)get_n(&r, 1);
        a.band_emit = (uint8_t)get_n(&r, 1);
        a.id_len = (uint8_t)get_n(&r, 1);
        why = "truncated account id";
        NEED(&r, a.id_len);
        const char *id = (const char *)r.p;
        r.p += a.id_len;
        why = "inconsistent account record";
        if (a.id_len == 0 || a.key != cs_sig_hash(id, a.id_len)) goto err;
        if (a.events == 0 || a.first_us > a.last_us || a.cursor != day_of(a.last_us)) goto err;
        if (!(a.tail >= 0 && isfinite(a.tail))) goto err;
        if (a.plan_tier > CS_SIG_TIER_OTHER || a.stage_emit > CS_SIG_STAGE_ACTIVATED ||
            a.band_emit > CS_SIG_BAND_POOR || (a.emit_flags & ~0x1fu))
            goto err;
        for (int k = 0; k < CS_SIG_MAX_KEY_FEATURES; k++)
            if (a.key_first[k] != SIG_KEY_NONE && a.key_first[k] > a.cursor) goto err;
        if (e->max_ts == INT64_MIN || a.last_us > e->max_ts) goto err;
        why = "duplicate account";
        if (sig_find(e, a.key, id, a.id_len)) goto err;
        cs_sig_acct *dst = sig_insert(e, a.key, id, a.id_len);
        a.id = dst->id; /* keep the storage sig_insert made */
        *dst = a;
    }
    why = "trailing bytes after the accounts";
    if (r.p != r.end) goto err;
    e->sweep_pos = sweep_pos;
    e->sweep_end = sweep_end;
    if (rc) *rc = CS_SIG_OK;
    return e;
err:
    snprintf(err, errlen, "signals snapshot rejected: %s", why);
    cs_sig_engine_free(e);
    return NULL;
}
