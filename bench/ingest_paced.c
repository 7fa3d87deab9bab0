/*
 * bench/ingest_paced — the load generators of bench/ingest.sh that wrk
 * cannot be (FACTS.md: wrk cannot pace):
 *
 *   ingest_paced http  -a HOST:PORT [-r RATE] [-d SECONDS] [-c CONNS] [-k RUN]
 *       Open-loop single-event requests: POST /v1/track with one Segment
 *       track event (unique messageId) at a fixed RATE per second over CONNS
 *       keep-alive connections. Request k is DUE at t0 + k/RATE; its latency
 *       is measured from that due time, not from when a connection was free
 *       to send it, so a stall shows in the percentiles instead of silently
 *       lowering the rate (coordinated omission corrected, as wrk2 does).
 *       Prints: RESULT sent= ok= non200= rate= p50_ms= p90_ms= p99_ms=
 *       p999_ms= max_ms=
 *
 *   ingest_paced redis -a HOST:PORT [-d SECONDS] [-c CONNS] [-P PIPE] [-k RUN]
 *       The peer: XADD events * v <the same Segment event JSON> to a Redis
 *       stream, PIPE commands per round trip (100: one batch of /v1/batch),
 *       CONNS connections (one thread each), for SECONDS. Counts replies.
 *       Prints: RESULT events= eps= errors=
 *
 *   ingest_paced event   prints one event (the shape bench/ingest_segment.lua
 *       sends, ~250 bytes) and exits.
 *
 * Only 127.0.0.1-style numeric addresses; no DNS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *const features[] = {"reports", "export_csv", "dashboards", "api", "sso", "alerts"};

/* One Segment track message, as bench/ingest_segment.lua builds it. */
static int event_json(char *out, size_t n, const char *ts, int run, int tid, long seq, int i)
{
    int acc = (int)((seq * 7 + i * 13) % 5000);
    const char *f = features[i % 6];
    return snprintf(out, n,
                    "{\"type\":\"track\",\"event\":\"FeatureUsed\",\"messageId\":\"p%d-%d-%ld-%d\","
                    "\"userId\":\"u_%05d_%d\",\"timestamp\":\"%s\",\"context\":{\"groupId\":\"acc_%05d\","
                    "\"ip\":\"10.1.%d.%d\"},"
                    "\"properties\":{\"feature\":\"%s\",\"count\":%d,\"browser\":\"firefox\",\"path\":\"/app/%s\"}}",
                    run, tid, seq, i, acc, i % 7, ts, acc, acc % 250, i % 250, f, 1 + i % 3, f);
}

static void now_rfc3339(char *out, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

static int dial(const char *addr)
{
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) return -1;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------ http mode */

typedef struct hconn {
    int     fd;
    int     busy;
    int64_t due;          /* due time of the request in flight */
    char    in[8192];
    size_t  inlen;
    char    out[1024];
    size_t  outlen, outoff;
} hconn;

static int run_http(const char *addr, double rate, double secs, int nconn, int run)
{
    hconn *c = calloc((size_t)nconn, sizeof *c);
    int ep = epoll_create1(0);
    for (int i = 0; i < nconn; i++) {
        if ((c[i].fd = dial(addr)) < 0) {
            fprintf(stderr, "ingest_paced: cannot connect to %s: %s\n", addr, strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev);
    }
    long total = (long)(rate * secs);
    int64_t *lat = calloc((size_t)total + 1, sizeof *lat);
    int64_t interval_ns = (int64_t)(1e9 / rate);
    char ts[40];
    now_rfc3339(ts, sizeof ts);
    long next = 0, done = 0, ok = 0, non200 = 0;
    int64_t t0 = now_us() + 1000;
    while (done < total) {
        int64_t now = now_us();
        /* Send every due request that has a free connection. */
        for (int i = 0; i < nconn && next < total && t0 + next * interval_ns / 1000 <= now; i++) {
            if (c[i].busy) continue;
            char ev[600], *o = c[i].out;
            int el = event_json(ev, sizeof ev, ts, run, 0, next, (int)(next % 100));
            int hl = snprintf(o, sizeof c[i].out,
                              "POST /v1/track HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\n\r\n%s",
                              addr, el, ev);
            c[i].outlen = (size_t)hl, c[i].outoff = 0;
            c[i].busy = 1;
            c[i].due = t0 + next * interval_ns / 1000;
            c[i].inlen = 0;
            next++;
            while (c[i].outoff < c[i].outlen) {
                ssize_t w = write(c[i].fd, o + c[i].outoff, c[i].outlen - c[i].outoff);
                if (w <= 0) {
                    fprintf(stderr, "ingest_paced: write: %s\n", strerror(errno));
                    return 1;
                }
                c[i].outoff += (size_t)w;
            }
        }
        /* Sleep until the next due time or an answer, to the microsecond
         * (epoll_pwait2): a millisecond timeout would round the 200 us
         * gaps down to 0 and spin a core the server needs (2 vCPU). */
        int64_t wait_us = next < total ? t0 + next * interval_ns / 1000 - now_us() : 1000;
        if (wait_us < 0) wait_us = 0;
        struct timespec tmo = {.tv_sec = wait_us / 1000000, .tv_nsec = (wait_us % 1000000) * 1000};
        struct epoll_event evs[64];
        int ne = epoll_pwait2(ep, evs, 64, &tmo, NULL);
        if (ne < 0 && errno == ENOSYS) ne = epoll_wait(ep, evs, 64, wait_us > 0 && wait_us < 1000 ? 1 : (int)(wait_us / 1000));
        for (int k = 0; k < ne; k++) {
            hconn *h = &c[evs[k].data.u32];
            ssize_t r = read(h->fd, h->in + h->inlen, sizeof h->in - 1 - h->inlen);
            if (r <= 0) {
                fprintf(stderr, "ingest_paced: connection closed by the server\n");
                return 1;
            }
            h->inlen += (size_t)r;
            h->in[h->inlen] = '\0';
            char *eoh = strstr(h->in, "\r\n\r\n");
            if (!eoh) continue;
            char *cl = strcasestr(h->in, "\r\nContent-Length:");
            size_t blen = cl && cl < eoh ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
            if (h->inlen < (size_t)(eoh + 4 - h->in) + blen) continue;
            int status = atoi(h->in + 9);
            if (status == 200) ok++;
            else non200++;
            lat[done++] = now_us() - h->due;
            h->busy = 0;
        }
    }
    int64_t t1 = now_us();
    qsort(lat, (size_t)done, sizeof *lat, cmp_i64);
#define PCT(p) ((double)lat[(size_t)((double)(done - 1) * (p))] / 1000.0)
    printf("RESULT sent=%ld ok=%ld non200=%ld rate=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f "
           "max_ms=%.3f\n",
           done, ok, non200, (double)done / ((double)(t1 - t0) / 1e6), PCT(0.50), PCT(0.90), PCT(0.99), PCT(0.999),
           (double)lat[done - 1] / 1000.0);
    for (int i = 0; i < nconn; i++) close(c[i].fd);
    free(lat);
    free(c);
    return non200 ? 2 : 0;
}

/* ----------------------------------------------------------- redis mode */

struct rctx {
    const char *addr;
    int         tid, pipe, run;
    int64_t     end_us;
    long        events, errors;
    int         fail;
};

static void *redis_thread(void *arg)
{
    struct rctx *x = arg;
    int fd = dial(x->addr);
    if (fd < 0) {
        x->fail = 1;
        return NULL;
    }
    size_t cap = (size_t)x->pipe * 700 + 1024;
    char *out = malloc(cap), *in = malloc(1 << 16), ts[40], ev[600];
    now_rfc3339(ts, sizeof ts);
    long seq = 0;
    while (now_us() < x->end_us) {
        size_t ol = 0;
        for (int i = 0; i < x->pipe; i++) {
            int el = event_json(ev, sizeof ev, ts, x->run, x->tid, seq, i);
            ol += (size_t)snprintf(out + ol, cap - ol, "*5\r\n$4\r\nXADD\r\n$6\r\nevents\r\n$1\r\n*\r\n$1\r\nv\r\n$%d\r\n%s\r\n",
                                   el, ev);
        }
        seq++;
        for (size_t off = 0; off < ol;) {
            ssize_t w = write(fd, out + off, ol - off);
            if (w <= 0) {
                x->fail = 1;
                goto done;
            }
            off += (size_t)w;
        }
        /* Replies: $<len>\r\n<id>\r\n each, or -ERR ...\r\n */
        int got = 0;
        size_t il = 0, pos = 0;
        while (got < x->pipe) {
            ssize_t r = read(fd, in + il, (1 << 16) - il);
            if (r <= 0) {
                x->fail = 1;
                goto done;
            }
            il += (size_t)r;
            for (;;) {
                char *nl = memchr(in + pos, '\n', il - pos);
                if (!nl) break;
                if (in[pos] == '$') {
                    long len = strtol(in + pos + 1, NULL, 10);
                    size_t need = (size_t)(nl + 1 - in) + (size_t)len + 2;
                    if (need > il) break;
                    pos = need;
                    x->events++;
                } else {
                    x->errors++;
                    pos = (size_t)(nl + 1 - in);
                }
                got++;
            }
            memmove(in, in + pos, il - pos);
            il -= pos;
            pos = 0;
        }
    }
done:
    close(fd);
    free(out);
    free(in);
    return NULL;
}

static int run_redis(const char *addr, double secs, int nconn, int pipe, int run)
{
    pthread_t *th = calloc((size_t)nconn, sizeof *th);
    struct rctx *x = calloc((size_t)nconn, sizeof *x);
    int64_t t0 = now_us(), end = t0 + (int64_t)(secs * 1e6);
    for (int i = 0; i < nconn; i++) {
        x[i] = (struct rctx){.addr = addr, .tid = i, .pipe = pipe, .run = run, .end_us = end};
        pthread_create(&th[i], NULL, redis_thread, &x[i]);
    }
    long ev = 0, err = 0;
    int fail = 0;
    for (int i = 0; i < nconn; i++) {
        pthread_join(th[i], NULL);
        ev += x[i].events, err += x[i].errors, fail |= x[i].fail;
    }
    int64_t t1 = now_us();
    printf("RESULT events=%ld eps=%.0f errors=%ld\n", ev, (double)ev / ((double)(t1 - t0) / 1e6), err);
    free(th);
    free(x);
    return fail || err ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ingest_paced http|redis|event [-a HOST:PORT] [-r RATE] [-d S] [-c CONNS] [-P PIPE] [-k RUN]\n");
        return 2;
    }
    const char *mode = argv[1], *addr = "127.0.0.1:8080";
    double rate = 5000, secs = 5;
    int nconn = 16, pipe = 100, run = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-a") == 0) addr = argv[i + 1];
        else if (strcmp(argv[i], "-r") == 0) rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-d") == 0) secs = atof(argv[i + 1]);
        else if (strcmp(argv[i], "-c") == 0) nconn = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-P") == 0) pipe = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-k") == 0) run = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "ingest_paced: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (strcmp(mode, "event") == 0) {
        char ts[40], ev[600];
        now_rfc3339(ts, sizeof ts);
        event_json(ev, sizeof ev, ts, 0, 0, 1, 1);
        printf("%s\n", ev);
        return 0;
    }
    if (rate <= 0 || secs <= 0 || nconn < 1 || pipe < 1) return 2;
    if (strcmp(mode, "http") == 0) return run_http(addr, rate, secs, nconn, run);
    if (strcmp(mode, "redis") == 0) return run_redis(addr, secs, nconn, pipe, run);
    fprintf(stderr, "ingest_paced: unknown mode %s\n", mode);
    return 2;
}
