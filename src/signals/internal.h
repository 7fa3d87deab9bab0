/*
 * signals/internal — the account record and the engine struct, shared by
 * signals.c (apply, evaluate, sweep), snapshot.c (hash, snapshot, restore).
 * Not for use outside src/signals/.
 */
#ifndef CS_SIGNALS_INTERNAL_H
#define CS_SIGNALS_INTERNAL_H

#include <stdint.h>

#include "signals/signals.h"

#define SIG_RING_DAYS    35  /* usage units per UTC day: the 7-day window + the 28-day baseline */
#define SIG_TICKET_DAYS  16  /* escalations per UTC day (spike window <= 16) */
#define SIG_USER_WEEKS   4   /* user bitmaps per tumbling UTC week (Monday-Sunday) */
#define SIG_PAGE_SHIFT   10  /* accounts are kept in pages of 1024: no realloc moves them */
#define SIG_PAGE         (1u << SIG_PAGE_SHIFT)
#define SIG_KEY_NONE     INT32_MAX /* key_first: never used */

/* Written-filter bits (emit_flags): what was last written, and whether it was. */
#define SIG_W_DROP    0x01u
#define SIG_W_SPIKE   0x02u
#define SIG_W_HANDOFF 0x04u
#define SIG_W_USAGE   0x08u /* usage_score written at least once */
#define SIG_W_HEALTH  0x10u /* health_score and band written at least once */

/* One account: 320 bytes, five cache lines (pages are 64-byte aligned). Aggregates first (all order-independent: sums,
 * ORs, mins, maxes, last-writer-wins by event time), the write filter last. */
typedef struct cs_sig_acct {
    uint64_t key;          /* cs_sig_hash(account id) */
    int64_t  first_us;     /* min event time */
    int64_t  last_us;      /* max event time */
    int64_t  trial_us;     /* min TrialActivated time, INT64_MIN: none */
    int64_t  plan_ts;      /* event time of the event that set plan_tier (LWW) */
    int64_t  renew_ts;     /* ... that set renewal_day (LWW) */
    double   tail;         /* decayed units of every day older than the ring, as of day cursor-35 */
    uint64_t feat[2];      /* distinct features ever used: 128-bit linear-counting bitmap */
    uint64_t users[SIG_USER_WEEKS][2]; /* distinct users per UTC week, slot = week mod 4 */
    int32_t  cursor;       /* newest UTC day (days since 1970-01-01) of any event */
    int32_t  renewal_day;  /* CS_SIG_NO_DAY: unknown */
    int32_t  key_first[CS_SIG_MAX_KEY_FEATURES]; /* first day each key feature was used */
    uint32_t events;       /* events applied */
    float    usage_emit;   /* write filter: last written usage_score */
    float    health_emit;  /* ... health_score */
    uint16_t units[SIG_RING_DAYS];     /* usage units per day, slot = day mod 35, saturating */
    uint8_t  tickets[SIG_TICKET_DAYS]; /* escalations per day, slot = day mod 16, saturating */
    uint8_t  plan_tier;    /* enum cs_sig_tier */
    uint8_t  trial_days;   /* of the first TrialActivated */
    uint8_t  emit_flags;   /* SIG_W_* */
    uint8_t  stage_emit;   /* last written activation stage */
    uint8_t  band_emit;    /* last written band */
    uint8_t  id_len;
    union {
        char  in[CS_SIG_ID_INLINE]; /* id_len < CS_SIG_ID_INLINE: NUL-terminated here */
        char *heap;                 /* else: a heap copy */
    } id;
} cs_sig_acct;

_Static_assert(sizeof(cs_sig_acct) == 320, "an account is five cache lines");

typedef struct sig_slot {
    uint64_t key; /* 0: empty */
    uint32_t idx; /* into the account pages */
    uint32_t pad;
} sig_slot;

struct cs_sig_engine {
    cs_sig_config cfg;
    uint64_t      key_hash[CS_SIG_MAX_KEY_FEATURES];
    double        r1;                     /* per-day decay factor 2^(-1/half_life) */
    double        rpow[SIG_RING_DAYS + 1]; /* r1^k */
    double        lc[129];                /* linear counting: estimate by zero bits */
    sig_slot     *slots;
    size_t        mask;                   /* slots - 1 (power of two) */
    cs_sig_acct **pages;
    size_t        npages, pages_cap;
    size_t        n;                      /* accounts */
    size_t        long_id_bytes;
    int64_t       max_ts;                 /* INT64_MIN: no event yet */
    int32_t       wm_day;                 /* day of the watermark, CS_SIG_NO_DAY: none */
    int32_t       sweep_day;              /* day being swept */
    size_t        sweep_pos, sweep_end;   /* accounts [pos, end) still due */
    uint64_t      applied, late, refused, invalid, changes;
};

static inline cs_sig_acct *sig_acct(const cs_sig_engine *e, size_t i)
{
    return &e->pages[i >> SIG_PAGE_SHIFT][i & (SIG_PAGE - 1)];
}

static inline const char *sig_acct_id(const cs_sig_acct *a)
{
    return a->id_len < CS_SIG_ID_INLINE ? a->id.in : a->id.heap;
}

/* Insert a new account (the caller checked it is absent and below the
 * limit); returns it, zeroed but for key, id and the "none" sentinels. */
cs_sig_acct *sig_insert(cs_sig_engine *e, uint64_t key, const char *id, size_t len);
cs_sig_acct *sig_find(const cs_sig_engine *e, uint64_t key, const char *id, size_t len);
/* Signals as of day asof (>= a->cursor). */
void sig_eval(const cs_sig_engine *e, const cs_sig_acct *a, int32_t asof, cs_sig_view *v);
int32_t sig_asof(const cs_sig_engine *e, const cs_sig_acct *a);
/* Fingerprint of the config fields that shape the aggregates. */
uint64_t sig_config_fingerprint(const cs_sig_config *c);

#endif
