/*
 * tests/webhook/recv — see recv.h. Deliberately simple: blocking sockets,
 * a thread per connection, one mutex; enough for hundreds of connections.
 */
#include "recv.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef struct rv_conn {
    rv_server      *s;
    int             fd;
    pthread_t       th;
    int             done;     /* the thread ended and closed fd (under mu) */
    struct rv_conn *next;
} rv_conn;

struct rv_server {
    int             lfd, port, keep_bodies;
    rv_handler      h;
    void           *ctx;
    pthread_t       th;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             stopping;
    unsigned        release_gen;
    int             holding;
    rv_req         *reqs;
    int             n, cap;
    rv_conn        *conns;
};

static int64_t rv_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

static void hdr_val(const char *hdrs, const char *name, char *out, size_t len)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = hdrs; p && *p; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            p += nl + 1;
            while (*p == ' ') p++;
            size_t n = strcspn(p, "\r\n");
            if (n >= len) n = len - 1;
            memcpy(out, p, n);
            out[n] = '\0';
            return;
        }
    }
}

/* Wait until deadline (delay) or a release (hold), or the server stops. */
static void rv_wait_answer(rv_server *s, const rv_answer *a)
{
    pthread_mutex_lock(&s->mu);
    if (a->hold) {
        unsigned gen = s->release_gen;
        s->holding++;
        while (!s->stopping && gen == s->release_gen) pthread_cond_wait(&s->cv, &s->mu);
        s->holding--;
    } else if (a->delay_ms > 0) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += a->delay_ms / 1000;
        dl.tv_nsec += (long)(a->delay_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
        while (!s->stopping && pthread_cond_timedwait(&s->cv, &s->mu, &dl) != ETIMEDOUT) {}
    }
    pthread_mutex_unlock(&s->mu);
}

static void *conn_main(void *arg)
{
    rv_conn *c = arg;
    rv_server *s = c->s;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        /* headers */
        char *end = NULL;
        while (!(end = (buf[len] = '\0', strstr(buf, "\r\n\r\n")))) {
            if (len == cap) goto out;
            ssize_t r = recv(c->fd, buf + len, cap - len, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) goto out;
            len += (size_t)r;
        }
        size_t hlen = (size_t)(end - buf) + 4;
        char *hdrs = malloc(hlen + 1);
        memcpy(hdrs, buf, hlen);
        hdrs[hlen] = '\0';
        char cl[32];
        hdr_val(strstr(hdrs, "\r\n") + 2, "content-length", cl, sizeof cl);
        size_t blen = (size_t)strtoull(cl, NULL, 10);
        char *body = malloc(blen + 1);
        size_t have = len - hlen < blen ? len - hlen : blen;
        memcpy(body, buf + hlen, have);
        memmove(buf, buf + hlen + have, len - hlen - have);
        len -= hlen + have;
        while (have < blen) {
            ssize_t r = recv(c->fd, body + have, blen - have, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                free(hdrs), free(body);
                goto out;
            }
            have += (size_t)r;
        }
        body[blen] = '\0';

        rv_req q;
        memset(&q, 0, sizeof q);
        const char *sp = strchr(hdrs, ' ');
        if (sp) {
            size_t pl = strcspn(sp + 1, " \r\n");
            if (pl >= sizeof q.path) pl = sizeof q.path - 1;
            memcpy(q.path, sp + 1, pl);
        }
        const char *h1 = strstr(hdrs, "\r\n") + 2;
        hdr_val(h1, "webhook-id", q.id, sizeof q.id);
        hdr_val(h1, "webhook-timestamp", q.ts, sizeof q.ts);
        hdr_val(h1, "webhook-signature", q.sig, sizeof q.sig);
        q.at_us = rv_now_us();
        q.body = body;
        q.body_len = blen;
        free(hdrs);

        rv_answer a;
        memset(&a, 0, sizeof a);
        a.status = 200;
        pthread_mutex_lock(&s->mu);
        q.seq = s->n;
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 256;
            s->reqs = realloc(s->reqs, (size_t)s->cap * sizeof *s->reqs);
        }
        s->h(s->ctx, &q, &a);
        if (!s->keep_bodies) {
            free(body);
            q.body = NULL;
        }
        s->reqs[s->n++] = q;
        pthread_mutex_unlock(&s->mu);

        rv_wait_answer(s, &a);
        pthread_mutex_lock(&s->mu);
        int stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop) goto out;
        char head[512];
        size_t bodylen = a.huge ? a.huge : (a.body ? strlen(a.body) : 0);
        int hn = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n",
                          a.status, bodylen, a.headers);
        if (send_all(c->fd, head, (size_t)hn) != 0) goto out;
        if (a.huge) {
            static const char chunk[16384] = {0};
            for (size_t sent = 0; sent < a.huge;) {
                size_t n = a.huge - sent < sizeof chunk ? a.huge - sent : sizeof chunk;
                if (send_all(c->fd, chunk, n) != 0) goto out;
                sent += n;
            }
        } else if (bodylen && send_all(c->fd, a.body, bodylen) != 0) {
            goto out;
        }
    }
out:
    free(buf);
    pthread_mutex_lock(&s->mu);
    close(c->fd);
    c->fd = -1;
    c->done = 1;
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Join the threads of closed connections (a benchmark opens thousands). */
static void reap(rv_server *s)
{
    rv_conn *dead = NULL;
    pthread_mutex_lock(&s->mu);
    for (rv_conn **pp = &s->conns; *pp;) {
        rv_conn *c = *pp;
        if (c->done) {
            *pp = c->next;
            c->next = dead;
            dead = c;
        } else {
            pp = &c->next;
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (rv_conn *c = dead, *next; c; c = next) {
        next = c->next;
        pthread_join(c->th, NULL);
        free(c);
    }
}

static void *accept_main(void *arg)
{
    rv_server *s = arg;
    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return NULL; /* shut down */
        }
        reap(s);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        rv_conn *c = calloc(1, sizeof *c);
        c->s = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mu);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            close(fd);
            free(c);
            return NULL;
        }
        c->next = s->conns;
        s->conns = c;
        pthread_create(&c->th, NULL, conn_main, c);
        pthread_mutex_unlock(&s->mu);
    }
}

rv_server *rv_start(rv_handler h, void *ctx, int keep_bodies)
{
    rv_server *s = calloc(1, sizeof *s);
    s->h = h, s->ctx = ctx, s->keep_bodies = keep_bodies;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(s->lfd, 512) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&sa, &sl) != 0) {
        close(s->lfd);
        free(s);
        return NULL;
    }
    s->port = ntohs(sa.sin_port);
    pthread_create(&s->th, NULL, accept_main, s);
    return s;
}

int rv_port(rv_server *s) { return s->port; }

void rv_stop(rv_server *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    for (rv_conn *c = s->conns; c; c = c->next)
        if (c->fd >= 0) shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->mu);
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->lfd);
    /* no new connections now */
    for (rv_conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        pthread_join(c->th, NULL);
        free(c);
    }
    for (int i = 0; i < s->n; i++) free(s->reqs[i].body);
    free(s->reqs);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int rv_count(rv_server *s, const char *path)
{
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n; i++)
        if (!path || strcmp(s->reqs[i].path, path) == 0) n++;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int rv_wait(rv_server *s, const char *path, int n, int timeout_ms)
{
    struct timespec ms1 = {0, 1000000L};
    int have = 0;
    for (int waited = 0; waited <= timeout_ms; waited++) {
        have = rv_count(s, path);
        if (have >= n) return have;
        nanosleep(&ms1, NULL);
    }
    return have;
}

int rv_get(rv_server *s, int i, rv_req *out)
{
    pthread_mutex_lock(&s->mu);
    int ok = i >= 0 && i < s->n;
    if (ok) *out = s->reqs[i];
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : -1;
}

int rv_holding(rv_server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->holding;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void rv_release(rv_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->release_gen++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}
