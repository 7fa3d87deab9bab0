/*
 * routing/round_robin — rotate leads through the configured reps.
 */
#include <stdio.h>

#include "routing/router.h"

#define RR_COUNTER "routing.round_robin.default"

int cs_route_round_robin(const cs_config *cfg, cs_store *st, cs_route_decision *d)
{
    d->owner = NULL;
    d->next_pointer = -1;
    if (cfg->nreps == 0) {
        snprintf(d->reason, sizeof d->reason, "unassigned: no reps in routing.reps");
        return 0;
    }
    int64_t ptr;
    if (st->ops->counter_get(st, RR_COUNTER, &ptr)) return -1;
    size_t i = (size_t)(ptr % (int64_t)cfg->nreps);
    d->owner = cfg->reps[i].id;
    d->next_pointer = (long)((ptr + 1) % (int64_t)cfg->nreps);
    snprintf(d->reason, sizeof d->reason, "round_robin: pool default, rep %zu of %zu (%s) is next in rotation",
             i + 1, cfg->nreps, cfg->reps[i].id);
    return 0;
}

int cs_route_commit(cs_store *st, const cs_route_decision *d)
{
    if (d->next_pointer < 0) return 0;
    return st->ops->counter_set(st, RR_COUNTER, d->next_pointer);
}
