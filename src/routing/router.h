/*
 * routing — who gets a lead, and why. This first version rotates leads
 * round-robin through the reps in the config; the rotation pointer lives in
 * the store, inside the pipeline's transaction, so a restart or a replay
 * continues the same rotation.
 *
 * Owns routing decisions and their explanations. Never writes anything but
 * its own pointer; the pipeline writes the lead.
 */
#ifndef CS_ROUTING_ROUTER_H
#define CS_ROUTING_ROUTER_H

#include <stddef.h>

#include "core/config.h"
#include "store/store.h"

typedef struct cs_route_decision {
    const char *owner;        /* rep id, or NULL when nobody can take it */
    char        reason[256];
    long        next_pointer; /* to commit with the lead when it is new */
} cs_route_decision;

/* Decide the owner of the next lead. Reads (does not write) the pointer. */
int cs_route_round_robin(const cs_config *cfg, cs_store *st, cs_route_decision *d);
/* Commit the decision's pointer (call only when the lead was new). */
int cs_route_commit(cs_store *st, const cs_route_decision *d);

#endif
