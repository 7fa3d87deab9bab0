/*
 * sim/httpc — blocking keep-alive HTTP/1.1 client.
 */
#include "sim/httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

int cs_httpc_init(cs_httpc *c, const char *target)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->timeout_ms = 30000;
    cs_buf_init(&c->in);
    if (strncmp(target, "http://", 7) == 0) target += 7;
    const char *colon = strrchr(target, ':');
    if (!colon || (size_t)(colon - target) >= sizeof c->host) return -1;
    memcpy(c->host, target, (size_t)(colon - target));
    c->host[colon - target] = '\0';
    if (strcmp(c->host, "localhost") == 0) strcpy(c->host, "127.0.0.1");
    c->port = atoi(colon + 1);
    return c->port > 0 && c->port < 65536 ? 0 : -1;
}

static int do_connect(cs_httpc *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1) return -1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -1;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    cs_buf_reset(&c->in);
    return 0;
}

void cs_httpc_close(cs_httpc *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    cs_buf_free(&c->in);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read more bytes into c->in; 0 on data, -1 on EOF/error/timeout. */
static int fill(cs_httpc *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, c->timeout_ms);
    if (pr <= 0) return -1;
    cs_buf_reserve(&c->in, 65536);
    ssize_t r = recv(c->fd, c->in.data + c->in.len, 65536, 0);
    if (r <= 0) return -1;
    c->in.len += (size_t)r;
    c->in.data[c->in.len] = '\0';
    return 0;
}

static void consume(cs_buf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

static int read_response(cs_httpc *c, int *status, cs_buf *resp)
{
    char *end;
    while (!c->in.data || !(end = strstr(c->in.data, "\r\n\r\n")))
        if (fill(c)) return -1;
    size_t hlen = (size_t)(end - c->in.data) + 4;
    if (sscanf(c->in.data, "HTTP/1.%*d %d", status) != 1) return -1;
    long clen = -1;
    int chunked = 0, close_after = 0;
    for (char *line = strstr(c->in.data, "\r\n") + 2; line < end; line = strstr(line, "\r\n") + 2) {
        if (strncasecmp(line, "Content-Length:", 15) == 0) clen = atol(line + 15);
        else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strstr(line, "chunked")) chunked = 1;
        else if (strncasecmp(line, "Connection:", 11) == 0 && strcasestr(line, "close") && strcasestr(line, "close") < strstr(line, "\r\n"))
            close_after = 1;
    }
    consume(&c->in, hlen);
    if (resp) cs_buf_reset(resp);
    if (chunked) {
        for (;;) {
            char *crlf;
            while (!(crlf = strstr(c->in.data ? c->in.data : "", "\r\n")))
                if (fill(c)) return -1;
            long n = strtol(c->in.data, NULL, 16);
            size_t need = (size_t)(crlf - c->in.data) + 2 + (size_t)n + 2;
            while (c->in.len < need)
                if (fill(c)) return -1;
            if (resp && n > 0) cs_buf_add(resp, crlf + 2, (size_t)n);
            consume(&c->in, need);
            if (n == 0) break;
        }
    } else if (clen >= 0) {
        while (c->in.len < (size_t)clen)
            if (fill(c)) return -1;
        if (resp) cs_buf_add(resp, c->in.data, (size_t)clen);
        consume(&c->in, (size_t)clen);
    } else {
        while (fill(c) == 0) {}
        if (resp) cs_buf_add(resp, c->in.data ? c->in.data : "", c->in.len);
        c->in.len = 0;
        close_after = 1;
    }
    if (resp && !resp->data) cs_buf_add(resp, "", 0);
    if (close_after) {
        close(c->fd);
        c->fd = -1;
    }
    return 0;
}

int cs_httpc_raw(cs_httpc *c, const char *raw, size_t len, int *status, cs_buf *resp)
{
    if (c->fd < 0 && do_connect(c)) return -1;
    if (send_all(c->fd, raw, len)) return -1;
    return read_response(c, status, resp);
}

int cs_httpc_request(cs_httpc *c, const char *method, const char *path, const char *extra, const char *body,
                     size_t len, int *status, cs_buf *resp)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        int fresh = c->fd < 0;
        if (fresh && do_connect(c)) return -1;
        char head[1024];
        int n = snprintf(head, sizeof head,
                         "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s\r\n", method, path, c->host, c->port,
                         extra ? extra : "", body ? "Content-Type: application/json\r\n" : "", "");
        cs_buf req;
        cs_buf_init(&req);
        cs_buf_add(&req, head, (size_t)n - 2);
        if (body) cs_buf_printf(&req, "Content-Length: %zu\r\n", len);
        cs_buf_adds(&req, "\r\n");
        if (body) cs_buf_add(&req, body, len);
        int rc = send_all(c->fd, req.data, req.len);
        cs_buf_free(&req);
        if (rc == 0 && read_response(c, status, resp) == 0) return 0;
        /* A kept-alive connection the server closed: retry once on a new one. */
        close(c->fd);
        c->fd = -1;
        if (fresh) return -1;
    }
    return -1;
}
