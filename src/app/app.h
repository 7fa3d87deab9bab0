/*
 * app — the running server: wires config, bus, store, pipeline, ingest and
 * HTTP together (serve.c), and the REST handlers over them (handlers.c).
 *
 * Owns process lifecycle and the route table. Holds no business logic: each
 * handler calls one component.
 */
#ifndef CS_APP_APP_H
#define CS_APP_APP_H

#include "bus/bus.h"
#include "core/config.h"
#include "http/server.h"
#include "ingest/ingest.h"
#include "pipeline/pipeline.h"
#include "store/store.h"

typedef struct cs_app {
    cs_config    cfg;
    cs_bus      *bus;
    cs_store    *store;
    cs_pipeline *pipeline;
    cs_ingest    ingest;
    cs_http     *http;
    struct cs_outbound *outbound;   /* the webhook dispatcher (outbound.c); NULL without destinations */
    struct cs_warehouse *warehouse; /* the warehouse sink (src/warehouse); NULL when not configured */
    unsigned     roles;      /* CS_ROLE_* this process runs (serve --role); 0 = all */
} cs_app;

/* Roles of `crmstream serve --role` (docs/DEPLOY.md). */
#define CS_ROLE_INGEST   1u /* HTTP ingest endpoints (/v1/...) */
#define CS_ROLE_PIPELINE 2u /* pipeline workers, warehouse sink, pipeline admin endpoints */
#define CS_ROLE_DISPATCH 4u /* outbound webhook dispatcher */
#define CS_ROLE_ALL      7u
/* "ingest,pipeline" -> a CS_ROLE_* mask; 0 with a message in err on a bad
 * list (serve.c). */
unsigned cs_app_parse_roles(const char *list, char *err, size_t errlen);
/* 0 when the app runs `role` (or roles is 0); else sets a 404 naming the
 * role and returns -1 (handlers.c). */
int cs_app_role_check(const cs_app *app, unsigned role, cs_http_resp *resp);

/* Outbound (outbound.c): start the dispatcher over the outbox when the
 * config has destinations (NULL and err "" when it has none; NULL and err
 * set on a bad destination or store error); the pipeline's commits on main
 * wake it. Stop before the store closes. */
typedef struct cs_outbound cs_outbound;
cs_outbound *cs_outbound_start(cs_store *main, const cs_config *cfg, char *err, size_t errlen);
void cs_outbound_stop(cs_outbound *ob);

/* The DLQ (api_dlq.c): GET /api/v1/dlq, GET /api/v1/dlq/{id}, POST /api/v1/dlq/redrive. */
void cs_api_dlq_list(void *app, const cs_http_req *req, cs_http_resp *resp);
void cs_api_dlq_get(void *app, const cs_http_req *req, cs_http_resp *resp);
void cs_api_dlq_redrive(void *app, const cs_http_req *req, cs_http_resp *resp);

/* The warehouse sink (api_warehouse.c): GET /api/v1/warehouse (lag per
 * destination), POST /api/v1/warehouse/pause and /resume. */
void cs_api_warehouse(void *app, const cs_http_req *req, cs_http_resp *resp);
void cs_api_warehouse_pause(void *app, const cs_http_req *req, cs_http_resp *resp);
void cs_api_warehouse_resume(void *app, const cs_http_req *req, cs_http_resp *resp);

/* The backtest (api_backtest.c): POST /api/v1/backtest. */
void cs_api_backtest(void *app, const cs_http_req *req, cs_http_resp *resp);

extern const cs_http_route cs_app_routes[];
extern const size_t cs_app_nroutes;

/* REST for CRM objects (api_crm.c). One handler per route pattern; the
 * method decides read (store) or write (admin event on the log, 202). */
void cs_api_accounts(void *app, const cs_http_req *req, cs_http_resp *resp);  /* GET|POST /api/v1/accounts */
void cs_api_account(void *app, const cs_http_req *req, cs_http_resp *resp);   /* GET|PUT /api/v1/accounts/{id} */
void cs_api_reps(void *app, const cs_http_req *req, cs_http_resp *resp);      /* GET|POST /api/v1/reps */
void cs_api_rep(void *app, const cs_http_req *req, cs_http_resp *resp);       /* GET|PUT /api/v1/reps/{id} */
void cs_api_alerts(void *app, const cs_http_req *req, cs_http_resp *resp);    /* GET /api/v1/alerts */
void cs_api_tasks(void *app, const cs_http_req *req, cs_http_resp *resp);     /* GET /api/v1/tasks */
void cs_api_contacts(void *app, const cs_http_req *req, cs_http_resp *resp);  /* GET /api/v1/contacts */
void cs_api_audit(void *app, const cs_http_req *req, cs_http_resp *resp);     /* GET /api/v1/audit?object=&id= */
void cs_api_lead_accept(void *app, const cs_http_req *req, cs_http_resp *resp); /* POST /api/v1/leads/{id}/accept */

/* Subcommands (argv[0] is the subcommand name). Return the exit status. */
int cs_cmd_serve(int argc, char **argv);
int cs_cmd_simulate(int argc, char **argv);
int cs_cmd_demo(int argc, char **argv);
int cs_cmd_status(int argc, char **argv);
int cs_cmd_dlq(int argc, char **argv);
int cs_cmd_evaluate(int argc, char **argv);
int cs_cmd_replay(int argc, char **argv);   /* replay.c */
int cs_cmd_verify(int argc, char **argv);   /* verify.c: crmstream verify warehouse */
int cs_cmd_backtest(int argc, char **argv); /* backtest.c */

/* limit (1..1000, default 100) and cursor query parameters of a list
 * endpoint; 0, or -1 with the 400 answer set (src/app/api_crm.c). */
int cs_api_page_params(const cs_http_req *req, cs_http_resp *resp, int *limit, int64_t *cursor);

/* Load path (or config/crmstream.yaml when present) over the defaults;
 * prints the error and returns -1 on failure. */
int cs_app_load_config(cs_config *cfg, const char *path);

/* "crmstream: <what>: <why>" on stderr. */
void cs_die_usage(const char *what, const char *why) __attribute__((noreturn));
void cs_fail(const char *what, const char *why);

#endif
