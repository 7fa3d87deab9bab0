/*
 * sim — the world simulator: a deterministic (seeded) stream of the six
 * seed event types for a set of accounts, leads among them, sent through
 * the real front door (POST /v1/events) at a paced rate; in world mode
 * (--days) the world of sim/world.h through both front doors (native and
 * Segment POST /v1/batch), one lead in flight at a time so that each lead's
 * round-robin owner is known in advance (docs/SIMULATOR.md).
 *
 * Owns event generation and pacing. Never reads the server's store; what it
 * knows is what the server acknowledged.
 */
#ifndef CS_SIM_SIM_H
#define CS_SIM_SIM_H

#include <stdint.h>

typedef struct cs_sim_opts {
    const char *target;     /* http://HOST:PORT */
    double      rate;       /* events per second */
    double      duration;   /* seconds */
    uint64_t    seed;
    int         accounts;
    int         batch;      /* events per request, at most */
    int         progress;   /* show a progress line on stderr */
    int         days;       /* > 0: the world in event time (sim/world.h) over this many days */
    const char *truth;      /* world mode: write the ground truth here */
    double      dup_share, ooo_share, late_share, invalid_share; /* world mode perturbations */
    int         duration_set; /* world mode: --duration caps the run */
    double      segment_share;/* world mode: share of events sent as Segment POST /v1/batch */
    int64_t     end_us;       /* world mode: the world's end in event time; 0: now */
    int         lead_barrier; /* world mode: send a lead only once the previous one is routed
                                 (for a server whose leads are not routed in ingest order) */
    const char *reps;         /* world mode: rep ids in routing order, comma-separated;
                                 NULL: routing.reps of config/crmstream.yaml */
} cs_sim_opts;

typedef struct cs_sim_result {
    uint64_t sent, acked, rejected, failed;  /* events */
    uint64_t leads_acked;                    /* LeadCreated acknowledged */
    uint64_t duplicates;                     /* answered as duplicates */
    uint64_t sent_invalid, sent_duplicate;   /* world mode: deliberately bad or repeated */
    uint64_t sent_native, sent_segment;      /* world mode: events per door */
    uint64_t sent_ooo, sent_late;            /* world mode: out of order (within the bound), late (beyond) */
    uint64_t requests_native, requests_segment;
    uint64_t lead_waits;                     /* world mode: waits for the routing of the previous lead */
    double   lead_wait_s;
    uint64_t requests, request_errors;
    double   elapsed_s;
} cs_sim_result;

/* Run the simulation; returns 0, or -1 when the target could not be reached. */
int cs_sim_run(const cs_sim_opts *o, cs_sim_result *r);

/* Event i of the world with this seed, as canonical JSON (appended to out);
 * *is_lead tells whether it is a LeadCreated. Exposed for tests. */
struct cs_buf;
void cs_sim_event(uint64_t seed, uint64_t i, int accounts, int64_t now_us, struct cs_buf *out, int *is_lead);

/* Parse simulate's options (shared with demo); exits 0 on --help, 2 on bad usage. */
/* Where a world run ends: given_us (--end) to the millisecond, or by
 * default the last whole UTC hour before now_us, so the world's hours are
 * the clock's hours and the signals' UTC days cut every run within an hour
 * the same way. (Ends between hours shift every day's boundary: seed 2's
 * trial_pql recall measured 0.92-0.94 at such ends, 0.98-1.00 at whole
 * hours; docs/SIMULATOR.md.) */
int64_t cs_sim_world_end(int64_t given_us, int64_t now_us);

void cs_sim_parse(int argc, char **argv, cs_sim_opts *o, const char *cmd, const char *usage_text);

/* Detection quality against a truth file (sim/evaluate.c); prints a table
 * (or one JSON object) to out. Returns the exit status. */
#include <stdio.h>
int cs_evaluate(const char *target, const char *truth_path, int json, FILE *out);

#endif
