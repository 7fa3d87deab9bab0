/*
 * http/server — libmicrohttpd glue: routing, bounded bodies, responses, and
 * the connection deadlines libmicrohttpd 0.9.75 lacks (it has only an
 * inactivity timeout, so a client trickling one header byte every few
 * seconds would hold a connection for ever).
 *
 * Deadlines: every connection has a socket context (MHD_OPTION_NOTIFY_CONNECTION)
 * holding its fd and a deadline, on a list. The deadline is "headers by T"
 * from accept (and after each answer: idle + header timeout), "body by T"
 * once the headers are in, and none while a handler runs. A reaper thread
 * scans the list every 100 ms and shutdown(2)s the sockets past their
 * deadline; libmicrohttpd then sees EOF and closes the connection itself.
 * The list mutex is held across the shutdown and across the CLOSED
 * notification (which libmicrohttpd sends before closing the fd), so the
 * reaper never touches an fd number that was already reused.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/logging.h"
#include "http/errors.h"

/* One TCP connection (libmicrohttpd's socket context). */
struct conn {
    struct conn *prev, *next;  /* on cs_http.conns, under cs_http.mu */
    int          fd;
    int64_t      deadline_us;  /* monotonic; 0 = none (atomic) */
    int          kind;         /* which deadline: DL_HEADER or DL_BODY (atomic) */
    int          reaped;       /* shut down by the reaper */
};
enum { DL_HEADER = 1, DL_BODY = 2 };

struct cs_http {
    struct MHD_Daemon *d;
    cs_http_opts       o;
    int                port;
    pthread_mutex_t    mu;
    pthread_cond_t     cv;
    struct conn        conns;   /* list head */
    int                stopping;
    pthread_t          reaper;
    int                have_reaper;
    uint64_t           closed_header, closed_body, open; /* under mu */
    uint64_t           closed_oversize;                  /* atomic */
};

static void set_deadline(struct conn *c, int kind, int64_t us)
{
    if (!c) return;
    __atomic_store_n(&c->kind, kind, __ATOMIC_RELAXED);
    __atomic_store_n(&c->deadline_us, us, __ATOMIC_RELEASE);
}

static int64_t after(int seconds)
{
    return seconds > 0 ? cs_mono_us() + (int64_t)seconds * 1000000 : 0;
}

static struct conn *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Per-request state, from the first callback to completion. */
struct req_state {
    const cs_http_route *route;
    char                 param[256];
    int                  has_param;
    int                  too_large;
    int                  status_early;  /* 404/405 decided at headers */
    int                  answered;      /* an early answer is queued */
    cs_buf               body;
    size_t               discarded;     /* body bytes dropped after too_large */
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

struct each_header {
    void (*cb)(void *cbarg, const char *name, const char *value);
    void *cbarg;
};

static enum MHD_Result each_header_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct each_header *e = cls;
    if (key) e->cb(e->cbarg, key, value ? value : "");
    return MHD_YES;
}

void cs_http_each_header(const cs_http_req *req, void (*cb)(void *cbarg, const char *name, const char *value),
                         void *cbarg)
{
    struct each_header e = {cb, cbarg};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, each_header_cb, &e);
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
    /* what follows {id} in the pattern ("" or e.g. "/accept") ends the path */
    if (len == 0 || strcmp(seg + len, brace + 4) != 0 || len >= n) return 0;
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

/* Content-Length over max (also when it is too long to be a number). */
static int content_length_over(const char *cl, size_t max)
{
    while (*cl == ' ' || *cl == '\t') cl++;
    unsigned long long v = 0;
    for (; *cl >= '0' && *cl <= '9'; cl++) {
        if (v > (unsigned long long)max) return 1;
        v = v * 10 + (unsigned)(*cl - '0');
    }
    return v > (unsigned long long)max;
}

/* A Content-Length already known not to be over the limit, as a size to
 * reserve: its leading digits (0 when there are none). */
static size_t content_length_hint(const char *cl)
{
    while (*cl == ' ' || *cl == '\t') cl++;
    size_t v = 0;
    for (; *cl >= '0' && *cl <= '9'; cl++) v = v * 10 + (size_t)(*cl - '0');
    return v;
}

/* Offset of the first byte of s that is not strict UTF-8 (no overlongs, no
 * surrogates, nothing past U+10FFFF), or -1. */
static long utf8_bad_at(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!n || i + n > len) return (long)i;
        unsigned lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0;
        else if (c == 0xED) hi = 0x9F;
        else if (c == 0xF0) lo = 0x90;
        else if (c == 0xF4) hi = 0x8F;
        if (s[i + 1] < lo || s[i + 1] > hi) return (long)i;
        for (size_t k = 2; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return (long)i;
        i += n;
    }
    return -1;
}

struct hdr_check {
    char msg[200];
    char field[64];
    int  bad;
};

static enum MHD_Result check_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                    const char *value, size_t value_size)
{
    (void)kind;
    struct hdr_check *hc = cls;
    long at = utf8_bad_at((const unsigned char *)key, key_size);
    if (at >= 0) {
        snprintf(hc->msg, sizeof hc->msg, "invalid UTF-8 in a header name at byte %ld of the name", at);
        hc->bad = 1;
        return MHD_NO;
    }
    at = value ? utf8_bad_at((const unsigned char *)value, value_size) : -1;
    if (at >= 0) {
        snprintf(hc->field, sizeof hc->field, "%.63s", key);
        snprintf(hc->msg, sizeof hc->msg, "invalid UTF-8 in the %.60s header at byte %ld of its value", key, at);
        hc->bad = 1;
        return MHD_NO;
    }
    return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    cs_http *h = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn *c = cs_calloc(1, sizeof *c);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->kind = DL_HEADER;
        c->deadline_us = after(h->o.header_timeout_s);
        pthread_mutex_lock(&h->mu);
        c->next = h->conns.next, c->prev = &h->conns;
        h->conns.next->prev = c, h->conns.next = c;
        h->open++;
        pthread_mutex_unlock(&h->mu);
        *socket_context = c;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct conn *c = *socket_context;
        if (!c) return;
        pthread_mutex_lock(&h->mu);
        c->prev->next = c->next, c->next->prev = c->prev;
        h->open--;
        pthread_mutex_unlock(&h->mu);
        free(c);
        *socket_context = NULL;
    }
}

/* Every 100 ms: shut down the connections past their deadline. */
static void *reaper(void *arg)
{
    cs_http *h = arg;
    pthread_setname_np(pthread_self(), "cs-http-reaper");
    pthread_mutex_lock(&h->mu);
    while (!h->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
        if (h->stopping) break;
        int64_t now = cs_mono_us();
        for (struct conn *c = h->conns.next; c != &h->conns; c = c->next) {
            int64_t dl = __atomic_load_n(&c->deadline_us, __ATOMIC_ACQUIRE);
            if (!dl || dl > now || c->reaped || c->fd < 0) continue;
            int kind = __atomic_load_n(&c->kind, __ATOMIC_RELAXED);
            c->reaped = 1;
            shutdown(c->fd, SHUT_RDWR);
            if (kind == DL_BODY) h->closed_body++;
            else h->closed_header++;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

void cs_http_get_stats(cs_http *h, cs_http_stats *st)
{
    pthread_mutex_lock(&h->mu);
    st->closed_header_timeout = h->closed_header;
    st->closed_body_timeout = h->closed_body;
    st->open_connections = h->open;
    pthread_mutex_unlock(&h->mu);
    st->closed_oversize_body = __atomic_load_n(&h->closed_oversize, __ATOMIC_RELAXED);
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
        set_deadline(conn_of(conn), DL_BODY, after(h->o.body_timeout_s));
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
        /* Header names and values must be UTF-8 (T20): 400 with the offset. */
        struct hdr_check hc = {0};
        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, check_header, &hc);
        if (hc.bad) {
            rs->answered = 1;
            cs_http_resp r = {0};
            cs_buf_init(&r.body);
            cs_http_error(&r, 400, "invalid_utf8", hc.msg, hc.field);
            enum MHD_Result ret = send_resp(conn, &r);
            cs_buf_free(&r.body);
            return ret;
        }
        /* Refuse an announced oversize body before reading any of it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && content_length_over(cl, h->o.max_body)) rs->too_large = 1;
        else if (cl) cs_buf_reserve(&rs->body, content_length_hint(cl)); /* one allocation, no regrowth */
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
        /* The limit is checked before the buffer grows: a body never costs
         * more than max_body, whatever Content-Length or chunk sizes say. */
        if (!rs->too_large && *upload_size <= h->o.max_body - rs->body.len) {
            cs_buf_add(&rs->body, upload, *upload_size);
        } else {
            if (!rs->too_large) rs->too_large = 1, cs_buf_free(&rs->body);
            /* Past the limit (chunked, so no Content-Length to refuse up
             * front): libmicrohttpd 0.9.75 cannot queue an answer in the
             * middle of a body, so read and drop up to max_body more (an
             * honest client slightly over gets its 413 at the end), then hang
             * up rather than read a stream of unbounded length. */
            rs->discarded += *upload_size;
            if (rs->discarded > h->o.max_body) {
                __atomic_add_fetch(&h->closed_oversize, 1, __ATOMIC_RELAXED);
                return MHD_NO;
            }
        }
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
    set_deadline(conn_of(conn), 0, 0); /* the handler's time is not the client's */
    rs->route->fn(h->o.app, &req, &resp);
    enum MHD_Result ret = send_resp(conn, &resp);
    cs_buf_free(&resp.body);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    cs_http *h = cls;
    /* The next request on this connection: idle time, then its headers. */
    int next = h->o.header_timeout_s > 0 ? h->o.header_timeout_s + (h->o.idle_timeout_s > 0 ? h->o.idle_timeout_s : 0) : 0;
    set_deadline(conn_of(conn), DL_HEADER, after(next));
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
#define DFLT(f, v) h->o.f = h->o.f == 0 ? (v) : h->o.f < 0 ? 0 : h->o.f
    DFLT(header_timeout_s, 10);
    DFLT(body_timeout_s, 30);
    DFLT(idle_timeout_s, 30);
    DFLT(max_connections, 1000);
    DFLT(max_connections_per_ip, 256);
#undef DFLT
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->conns.next = h->conns.prev = &h->conns;
    /* threads 0: a thread per connection (a request waiting on its fsync
     * holds up no other connection); else a pool of that many epoll threads. */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                     (o->threads > 0 ? MHD_USE_EPOLL : MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL);
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)((flags & MHD_USE_THREAD_PER_CONNECTION) ? 0 : o->threads),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)h->o.idle_timeout_s,
                            MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)(h->o.max_connections ? h->o.max_connections : 1000000),
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)h->o.max_connections_per_ip,
                            MHD_OPTION_NOTIFY_COMPLETED, on_done, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
                            MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "cannot listen on %s (address in use or not local?)", o->addr);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h);
        return NULL;
    }
    if (h->o.header_timeout_s > 0 || h->o.body_timeout_s > 0)
        h->have_reaper = pthread_create(&h->reaper, NULL, reaper, h) == 0;
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
    pthread_mutex_lock(&h->mu);
    h->stopping = 1;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (h->have_reaper) pthread_join(h->reaper, NULL);
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}
