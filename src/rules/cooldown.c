/*
 * rules/cooldown — the bounded alert-suppression table behind raise_alert's
 * cooldown. Open addressing over 128-bit XXH3 fingerprints of the rendered
 * dedupe key (64-bit ones would collide visibly at 1e9 keys), with a probe
 * window of 8 slots; no allocation after creation. Every decision depends
 * only on the key and the event times passed in, so a replay of the same
 * events decides the same, whatever the wall clock says.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/util.h"
#include "rules/rules.h"

#define PROBE 8

struct slot {
    uint64_t h[2];   /* fingerprint; {0,0} = empty */
    int64_t  fired;  /* event time of the alert that fired */
    int64_t  until;  /* fired + cooldown */
};

struct cs_cooldown {
    struct slot *slots;
    size_t       mask;
    size_t       used;
    uint64_t     fired, suppressed, evicted;
};

cs_cooldown *cs_cooldown_new(size_t capacity)
{
    size_t cap = 16;
    while (cap < capacity && cap < ((size_t)1 << 30)) cap <<= 1;
    cs_cooldown *cd = cs_calloc(1, sizeof *cd);
    cd->slots = cs_calloc(cap, sizeof *cd->slots);
    cd->mask = cap - 1;
    return cd;
}

void cs_cooldown_free(cs_cooldown *cd)
{
    if (!cd) return;
    free(cd->slots);
    free(cd);
}

int cs_cooldown_check(cs_cooldown *cd, const char *key, size_t len, int64_t event_us, int64_t cooldown_us)
{
    if (cooldown_us <= 0) {
        cd->fired++;
        return 0;
    }
    XXH128_hash_t x = XXH3_128bits(key, len);
    uint64_t h0 = x.low64, h1 = x.high64;
    if (h0 == 0 && h1 == 0) h0 = 1; /* {0,0} marks an empty slot */
    size_t base = (size_t)h0 & cd->mask;
    struct slot *victim = NULL;
    for (size_t k = 0; k < PROBE; k++) {
        struct slot *s = &cd->slots[(base + k) & cd->mask];
        if (s->h[0] == h0 && s->h[1] == h1) {
            if (event_us >= s->fired && event_us < s->until) {
                cd->suppressed++;
                return 1;
            }
            s->fired = event_us;
            s->until = event_us > INT64_MAX - cooldown_us ? INT64_MAX : event_us + cooldown_us;
            cd->fired++;
            return 0;
        }
        if (s->h[0] == 0 && s->h[1] == 0) {
            if (!victim || victim->h[0] || victim->h[1]) victim = s; /* first empty slot wins */
            continue;
        }
        /* Occupied by another key: a candidate to replace if nothing is empty. */
        if (!victim || ((victim->h[0] || victim->h[1]) && s->until < victim->until)) victim = s;
    }
    if (victim->h[0] || victim->h[1]) {
        if (victim->until > event_us) cd->evicted++; /* still live: an early loss */
    } else {
        cd->used++;
    }
    victim->h[0] = h0, victim->h[1] = h1;
    victim->fired = event_us;
    victim->until = event_us > INT64_MAX - cooldown_us ? INT64_MAX : event_us + cooldown_us;
    cd->fired++;
    return 0;
}

void cs_cooldown_get_stats(const cs_cooldown *cd, cs_cooldown_stats *st)
{
    st->fired = cd->fired;
    st->suppressed = cd->suppressed;
    st->evicted = cd->evicted;
    st->entries = cd->used;
    st->capacity = cd->mask + 1;
}
