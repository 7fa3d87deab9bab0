/*
 * app/api_warehouse — the warehouse sink over HTTP: its lag per destination,
 * and pause/resume (a sink that is stopped or slow must never slow ingest
 * or the pipeline; tests and bench-warehouse use this to show it).
 */
#include "app/app.h"
#include "warehouse/warehouse.h"

static int configured(cs_app *app, cs_http_resp *resp)
{
    if (app->warehouse) return 1;
    cs_http_error(resp, 404, "not_configured",
                  "no warehouse destination is configured (warehouse.postgres, warehouse.dir)", NULL);
    return 0;
}

/* GET /api/v1/warehouse: {"paused","lag","destinations":[{"name","lag","failing","errors","parked"}]} */
void cs_api_warehouse(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)req;
    cs_app *app = a;
    if (configured(app, resp)) cs_warehouse_status_json(app->warehouse, &resp->body);
}

/* POST /api/v1/warehouse/pause: answers once no batch is in flight (or
 * after 10 s with "parked": false for a destination still busy). */
void cs_api_warehouse_pause(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)req;
    cs_app *app = a;
    if (!configured(app, resp)) return;
    cs_warehouse_pause(app->warehouse, 1, 10000);
    cs_warehouse_status_json(app->warehouse, &resp->body);
}

void cs_api_warehouse_resume(void *a, const cs_http_req *req, cs_http_resp *resp)
{
    (void)req;
    cs_app *app = a;
    if (!configured(app, resp)) return;
    cs_warehouse_pause(app->warehouse, 0, 0);
    cs_warehouse_status_json(app->warehouse, &resp->body);
}
