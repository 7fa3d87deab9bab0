/*
 * http/server — the HTTP server glue over libmicrohttpd: a routing table,
 * request bodies bounded by a limit checked before allocation, and JSON
 * answers. Handlers see a plain request and fill a plain response; they
 * never touch libmicrohttpd.
 *
 * Owns connections, limits and the routing table. Never interprets bodies.
 */
#ifndef CS_HTTP_SERVER_H
#define CS_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

typedef struct cs_http cs_http;

typedef struct cs_http_req {
    const char *method;
    const char *path;
    const char *param;        /* the {id} segment of a pattern route, or NULL */
    const char *body;
    size_t      body_len;
    int64_t     received_us;  /* wall clock when the request arrived */
    void       *conn;         /* opaque, for cs_http_query/header */
} cs_http_req;

typedef struct cs_http_resp {
    int         status;
    cs_buf      body;         /* JSON unless content_type says otherwise */
    const char *content_type;
    int         retry_after;  /* seconds; 0 = no header */
} cs_http_resp;

typedef void (*cs_http_handler)(void *app, const cs_http_req *req, cs_http_resp *resp);

/* A route: exact path, or a prefix ending in "{id}" that binds one segment. */
typedef struct cs_http_route {
    const char     *method;
    const char     *pattern;
    cs_http_handler fn;
} cs_http_route;

typedef struct cs_http_opts {
    const char          *addr;        /* HOST:PORT; port 0 = any free port */
    int                  threads;     /* pool size; 0 = a thread per connection */
    size_t               max_body;
    /* Connection limits (0 = the default in brackets; docs/API.md "Limits"):
     * header_timeout_s [10]: a request's header section must be complete
     *   within this of the connection opening (for a later request on a
     *   keep-alive connection: of the previous answer, plus idle_timeout_s);
     * body_timeout_s [30]: its body within this of the headers;
     * idle_timeout_s [30]: libmicrohttpd's inactivity timeout;
     * max_connections [1000], max_connections_per_ip [256]: over either, a
     *   new connection is closed at once. Negative = no limit. */
    int                  header_timeout_s, body_timeout_s, idle_timeout_s;
    int                  max_connections, max_connections_per_ip;
    const cs_http_route *routes;
    size_t               nroutes;
    void                *app;
} cs_http_opts;

cs_http *cs_http_start(const cs_http_opts *o, char *err, size_t errlen);
int cs_http_port(cs_http *h);

/* Connections closed by our deadlines since start (for tests, logs, metrics). */
typedef struct cs_http_stats {
    uint64_t closed_header_timeout;  /* headers not complete in time */
    uint64_t closed_body_timeout;    /* body not complete in time */
    uint64_t closed_oversize_body;   /* a body far over max_body with no Content-Length */
    uint64_t open_connections;
} cs_http_stats;
void cs_http_get_stats(cs_http *h, cs_http_stats *st);
void cs_http_stop(cs_http *h);

const char *cs_http_query(const cs_http_req *req, const char *key);
const char *cs_http_header(const cs_http_req *req, const char *name);
/* Every request header in arrival order: cb(cbarg, name, value). */
void cs_http_each_header(const cs_http_req *req, void (*cb)(void *cbarg, const char *name, const char *value),
                         void *cbarg);

/* Convenience: set a JSON error answer. */
void cs_http_error(cs_http_resp *resp, int status, const char *code, const char *message,
                   const char *field);

#endif
