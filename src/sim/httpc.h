/*
 * sim/httpc — a small blocking HTTP/1.1 client with keep-alive, for the
 * simulator, the demo and the integration tests. Loopback only in practice;
 * not a general-purpose client (no TLS, no redirects, Content-Length or
 * chunked responses).
 */
#ifndef CS_SIM_HTTPC_H
#define CS_SIM_HTTPC_H

#include <stddef.h>

#include "core/util.h"

typedef struct cs_httpc {
    int    fd;
    char   host[128];
    int    port;
    int    timeout_ms;
    cs_buf in;       /* bytes read past the last response */
} cs_httpc;

/* Parse "http://HOST:PORT" or "HOST:PORT" and remember it (connects lazily). */
int cs_httpc_init(cs_httpc *c, const char *target);
/* One request; reconnects once when a kept-alive connection was closed.
 * extra_headers: NULL or "Name: value\r\n..." lines.
 * Returns 0 with *status and body set, or -1 (connection or protocol error). */
int cs_httpc_request(cs_httpc *c, const char *method, const char *path, const char *extra_headers,
                     const char *body, size_t len, int *status, cs_buf *resp);
/* Send raw bytes and read one response (for malformed-request tests). */
int cs_httpc_raw(cs_httpc *c, const char *raw, size_t len, int *status, cs_buf *resp);
void cs_httpc_close(cs_httpc *c);

#endif
