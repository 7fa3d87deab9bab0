/*
 * http/server — libmicrohttpd glue: routing, bounded bodies, responses.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/logging.h"
#include "http/errors.h"

struct cs_http {
    struct MHD_Daemon *d;
    cs_http_opts       o;
    int                port;
};

/* Per-request state, from the first callback to completion. */
struct req_state {
    const cs_http_route *route;
    char                 param[256];
    int                  has_param;
    int                  too_large;
    int                  status_early;  /* 404/405 decided at headers */
    int                  answered;      /* an early answer is queued */
    cs_buf               body;
    int64_t              received_us;
};

void cs_http_error(cs_http_resp *resp, int status, const char *code, const char *message, const char *field)
{
    resp->status = status;
    cs_buf_reset(&resp->body);
    cs_json_error(&resp->body, code, message, field);
}

const char *cs_http_query(const cs_http_req *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *cs_http_header(const cs_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

static int match(const char *pattern, const char *path, char *param, size_t n, int *has_param)
{
    const char *brace = strstr(pattern, "{id}");
    *has_param = 0;
    if (!brace) return strcmp(pattern, path) == 0;
    size_t pre = (size_t)(brace - pattern);
    if (strncmp(pattern, path, pre) != 0) return 0;
    const char *seg = path + pre;
    size_t len = strcspn(seg, "/");
    if (len == 0 || seg[len] != '\0' || len >= n) return 0;
    memcpy(param, seg, len);
    param[len] = '\0';
    *has_param = 1;
    return 1;
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, cs_http_resp *r)
{
    struct MHD_Response *m =
        MHD_create_response_from_buffer(r->body.len, r->body.data ? r->body.data : (void *)"",
                                        MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(m, "Content-Type", r->content_type ? r->content_type : "application/json");
    if (r->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", r->retry_after);
        MHD_add_response_header(m, "Retry-After", ra);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, m);
    MHD_destroy_response(m);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *code, const char *msg)
{
    cs_http_resp r = {0};
    cs_buf_init(&r.body);
    cs_http_error(&r, status, code, msg, NULL);
    enum MHD_Result ret = send_resp(conn, &r);
    cs_buf_free(&r.body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    cs_http *h = cls;
    struct req_state *rs = *con_cls;
    if (!rs) {
        rs = cs_calloc(1, sizeof *rs);
        cs_buf_init(&rs->body);
        rs->received_us = cs_now_us();
        *con_cls = rs;
        int path_known = 0;
        for (size_t i = 0; i < h->o.nroutes; i++) {
            char param[256];
            int hp;
            if (!match(h->o.routes[i].pattern, url, param, sizeof param, &hp)) continue;
            path_known = 1;
            if (strcmp(h->o.routes[i].method, method) != 0) continue;
            rs->route = &h->o.routes[i];
            rs->has_param = hp;
            if (hp) memcpy(rs->param, param, sizeof param);
            break;
        }
        if (!rs->route) rs->status_early = path_known ? 405 : 404;
        /* Refuse an announced oversize body before reading any of it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > h->o.max_body) rs->too_large = 1;
        rs->answered = rs->status_early || rs->too_large;
        if (rs->status_early == 404)
            return send_error(conn, 404, "not_found", "no such endpoint");
        if (rs->status_early == 405)
            return send_error(conn, 405, "method_not_allowed", "this endpoint does not take that method");
        if (rs->too_large) {
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is over the %zu-byte limit", h->o.max_body);
            return send_error(conn, 413, "body_too_large", msg);
        }
        return MHD_YES;
    }
    if (rs->answered) {
        *upload_size = 0; /* discard whatever still arrives */
        return MHD_YES;
    }
    if (*upload_size) {
        if (!rs->too_large && rs->body.len + *upload_size <= h->o.max_body)
            cs_buf_add(&rs->body, upload, *upload_size);
        else
            rs->too_large = 1, cs_buf_free(&rs->body);
        *upload_size = 0;
        return MHD_YES;
    }
    if (rs->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is over the %zu-byte limit", h->o.max_body);
        return send_error(conn, 413, "body_too_large", msg);
    }
    cs_http_req req = {.method = method, .path = url, .param = rs->has_param ? rs->param : NULL,
                       .body = rs->body.data ? rs->body.data : "", .body_len = rs->body.len,
                       .received_us = rs->received_us, .conn = conn};
    cs_http_resp resp = {.status = 200};
    cs_buf_init(&resp.body);
    rs->route->fn(h->o.app, &req, &resp);
    enum MHD_Result ret = send_resp(conn, &resp);
    cs_buf_free(&resp.body);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    struct req_state *rs = *con_cls;
    if (!rs) return;
    cs_buf_free(&rs->body);
    free(rs);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    cs_log(CS_LOG_DEBUG, "http", "libmicrohttpd", "\"detail\":\"%s\"", msg);
}

cs_http *cs_http_start(const cs_http_opts *o, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(o->addr, ':');
    if (!colon || (size_t)(colon - o->addr) >= sizeof host) {
        snprintf(err, errlen, "http address \"%s\": expected HOST:PORT", o->addr);
        return NULL;
    }
    memcpy(host, o->addr, (size_t)(colon - o->addr));
    host[colon - o->addr] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (*end || port < 0 || port > 65535 || inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1",
                                                       &sa.sin_addr) != 1) {
        snprintf(err, errlen, "http address \"%s\": expected IPv4-HOST:PORT", o->addr);
        return NULL;
    }
    cs_http *h = cs_calloc(1, sizeof *h);
    h->o = *o;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)o->threads,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
                            MHD_OPTION_NOTIFY_COMPLETED, on_done, h,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
                            MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not local?)", o->addr);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : (int)port;
    return h;
}

int cs_http_port(cs_http *h)
{
    return h->port;
}

void cs_http_stop(cs_http *h)
{
    if (!h) return;
    MHD_stop_daemon(h->d);
    free(h);
}
