/*
 * tests/webhook/recv — a scriptable HTTP/1.1 receiver for the webhook tests
 * and benchmark: listens on 127.0.0.1 on a free port, one thread per
 * connection (keep-alive), records every request (path, webhook-* headers,
 * arrival time, optionally the body) and answers what the handler says:
 * any status and headers, after a delay, held until released, or with a
 * huge streamed body. Included as source (#include "webhook/recv.c").
 */
#ifndef CS_TESTS_RECV_H
#define CS_TESTS_RECV_H

#include <stddef.h>
#include <stdint.h>

typedef struct rv_req {
    char    path[128];
    char    id[128];        /* webhook-id */
    char    ts[32];         /* webhook-timestamp */
    char    sig[512];       /* webhook-signature */
    char   *body;           /* only when keep_bodies; owned by the server */
    size_t  body_len;
    int64_t at_us;          /* wall clock when the body was complete */
    int     seq;            /* arrival order, from 0 */
} rv_req;

typedef struct rv_answer {
    int         status;       /* default 200 */
    char        headers[256]; /* extra header lines, each ending in \r\n */
    const char *body;         /* default "" */
    size_t      huge;         /* > 0: stream a body of this many bytes instead */
    int         delay_ms;     /* answer after this long (interrupted by rv_stop) */
    int         hold;         /* answer only after rv_release (or never: rv_stop) */
} rv_answer;

/* Called (under the server's lock) once a request is complete. */
typedef void (*rv_handler)(void *ctx, const rv_req *req, rv_answer *ans);

typedef struct rv_server rv_server;

rv_server *rv_start(rv_handler h, void *ctx, int keep_bodies);
int rv_port(rv_server *s);
/* Close everything, join every thread, free. */
void rv_stop(rv_server *s);
/* Requests received on path (NULL: all). */
int rv_count(rv_server *s, const char *path);
/* Poll (1 ms steps) until rv_count(path) >= n or timeout_ms; returns the count. */
int rv_wait(rv_server *s, const char *path, int n, int timeout_ms);
/* Copy of request i in arrival order (body pointer shared). 0 or -1. */
int rv_get(rv_server *s, int i, rv_req *out);
/* Requests currently held (hold = 1) and not yet answered. */
int rv_holding(rv_server *s);
/* Answer every held request. */
void rv_release(rv_server *s);

#endif
