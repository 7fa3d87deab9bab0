/*
 * Integration: the HTTP front door under hostile clients (RELIABILITY.md
 * T18, T20 headers, T21, T23) against a real `crmstream serve`:
 *
 *  - T18 oversize and lying requests: a Content-Length over the limit gets
 *    413 before a byte of body is sent; a Content-Length too long for a
 *    number, a chunk size past 64 bits → 413; a chunked body far past the
 *    limit is cut off after at most twice the limit; 10,000 headers → 431;
 *    a 70 KB URL → 414; a gzip bomb → 413 (decompressed size); corrupt
 *    gzip → 400; Content-Length smaller than the body → the rest is parsed
 *    as the next request (400); larger → closed at the body deadline.
 *    Meanwhile a control client's requests all succeed.
 *  - T20 invalid UTF-8 in a header value → 400 invalid_utf8 with the offset.
 *  - T21 schema errors: missing ids, wrong types, 10,000 properties, unknown
 *    type (ingest.unknown_types: reject), one bad lead among 99 good → 200
 *    with exactly that index rejected and 99 leads, never 100.
 *  - T23 slowloris and idle floods from 127.0.0.2 (the server listens on
 *    127.0.0.1; the whole 127/8 is loopback, so an attacker socket bound to
 *    127.0.0.2 is a different client address): the per-IP cap closes the
 *    surplus at once, the header and body deadlines close the rest, and
 *    every request of a control client on 127.0.0.1 succeeds meanwhile.
 * Assertions are on answers and counts; timing only bounds loops.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "harness.c"

#define MAX_BODY 262144
static const char limits_yaml[] = "http:\n"
                                  "  header_timeout: 1\n"
                                  "  body_timeout: 2\n"
                                  "  idle_timeout: 5\n"
                                  "  max_connections_per_ip: 16\n"
                                  "ingest:\n"
                                  "  max_body_bytes: 262144\n"
                                  "  unknown_types: reject\n";

static th_server srv;
static int port;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ raw sockets */

/* A TCP connection to the server from src (e.g. "127.0.0.2"; NULL: the
 * raw-request tests' own 127.0.0.3, so that they never share the per-IP cap
 * with the control client on 127.0.0.1); -1 on error. */
static int dial(const char *src)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src ? src : "127.0.0.3", &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w, n -= (size_t)w;
    }
    return 0;
}

/* Read until EOF, reset or timeout_ms; returns bytes read into buf (NUL-terminated). */
static size_t read_all(int fd, char *buf, size_t cap, int timeout_ms, int *eof)
{
    size_t n = 0;
    int64_t end = now_ms() + timeout_ms;
    *eof = 0;
    for (;;) {
        int left = (int)(end - now_ms());
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0) continue;
        char tmp[65536];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            *eof = 1;
            break;
        }
        size_t take = (size_t)r < cap - 1 - n ? (size_t)r : cap - 1 - n;
        memcpy(buf + n, tmp, take);
        n += take;
    }
    buf[n] = '\0';
    return n;
}

/* The status of the first response in buf, or -1. */
static int status_of(const char *buf)
{
    int st = -1;
    if (sscanf(buf, "HTTP/1.%*d %d", &st) != 1) return -1;
    return st;
}

/* Send raw and read the whole answer (the server closes after these). */
static int raw_exchange(const void *req, size_t len, char *buf, size_t cap, int timeout_ms)
{
    int fd = dial(NULL);
    if (fd < 0) return -1;
    int eof;
    send_all(fd, req, len);
    read_all(fd, buf, cap, timeout_ms, &eof);
    close(fd);
    return status_of(buf);
}

/* ------------------------------------------------------- control client */

struct control {
    pthread_t t;
    volatile int stop;
    long ok, failed, n;
    char first_failure[200];
};

/* Requests on 127.0.0.1 in a loop: a valid event and /healthz. Every one
 * must succeed whatever the attackers do. */
static void *control_run(void *arg)
{
    struct control *c = arg;
    cs_httpc h;
    cs_httpc_init(&h, srv.target);
    h.timeout_ms = 20000;
    cs_buf resp;
    cs_buf_init(&resp);
    while (!c->stop) {
        char body[256];
        int st = -1;
        snprintf(body, sizeof body,
                 "{\"event_id\":\"ctl-%ld-%ld\",\"type\":\"FeatureUsed\",\"account_id\":\"acc_ctl\","
                 "\"properties\":{\"feature\":\"f\"}}",
                 (long)getpid(), c->n);
        cs_buf_reset(&resp);
        int rc = c->n % 2 ? cs_httpc_request(&h, "GET", "/healthz", NULL, NULL, 0, &st, &resp)
                          : cs_httpc_request(&h, "POST", "/v1/events", NULL, body, strlen(body), &st, &resp);
        c->n++;
        if (rc == 0 && st == 200) {
            c->ok++;
        } else {
            if (!c->failed)
                snprintf(c->first_failure, sizeof c->first_failure, "rc %d status %d: %.120s", rc, st,
                         resp.data ? resp.data : "");
            c->failed++;
        }
    }
    cs_buf_free(&resp);
    cs_httpc_close(&h);
    return NULL;
}

static void control_start(struct control *c)
{
    memset(c, 0, sizeof *c);
    assert_int_equal(pthread_create(&c->t, NULL, control_run, c), 0);
}

static void control_stop(struct control *c)
{
    c->stop = 1;
    pthread_join(c->t, NULL);
    if (c->failed) fprintf(stderr, "control: %s\n", c->first_failure);
    assert_int_equal(c->failed, 0);
    assert_true(c->ok >= 10);
}

/* ---------------------------------------------------------------- setup */

static int setup(void **state)
{
    (void)state;
    th_init(&srv, limits_yaml);
    if (th_start(&srv) != 0) return -1;
    const char *colon = strrchr(srv.target, ':');
    port = atoi(colon + 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int st = th_stop(&srv, SIGTERM);
    th_cleanup(&srv);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static char *big(size_t n)
{
    char *b = malloc(n);
    assert_non_null(b);
    return b;
}

/* -------------------------------------------------------------- T18 */

static void t18_oversize_and_lying(void **state)
{
    (void)state;
    struct control ctl;
    control_start(&ctl);
    size_t cap = 1 << 20;
    char *buf = big(cap);

    /* Content-Length over the limit: 413 with our JSON before any body. */
    const char *r1 = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n";
    assert_int_equal(raw_exchange(r1, strlen(r1), buf, cap, 5000), 413);
    assert_non_null(strstr(buf, "\"body_too_large\""));

    /* A Content-Length too long to be a number: 413 (libmicrohttpd's). */
    const char *r2 = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
    assert_int_equal(raw_exchange(r2, strlen(r2), buf, cap, 5000), 413);

    /* A chunk size past 64 bits: 413 (libmicrohttpd's). */
    const char *r3 = "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "FFFFFFFFFFFFFFFFFF\r\nabc";
    assert_int_equal(raw_exchange(r3, strlen(r3), buf, cap, 5000), 413);

    /* A chunked body just over the limit, then its end: 413 with our JSON. */
    {
        int fd = dial(NULL);
        assert_true(fd >= 0);
        const char *h = "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        size_t n = MAX_BODY + 4096;
        char *chunk = big(n + 64);
        int hl = snprintf(chunk, 64, "%zx\r\n", n);
        memset(chunk + hl, ' ', n);
        memcpy(chunk + hl + n, "\r\n0\r\n\r\n", 7);
        assert_int_equal(send_all(fd, h, strlen(h)), 0);
        assert_int_equal(send_all(fd, chunk, (size_t)hl + n + 7), 0);
        int eof;
        read_all(fd, buf, cap, 3000, &eof);
        assert_int_equal(status_of(buf), 413);
        assert_non_null(strstr(buf, "\"body_too_large\""));
        free(chunk);
        close(fd);
    }

    /* A huge announced chunk streamed for ever: the server hangs up after
     * reading at most twice the limit (it cannot answer mid-body). */
    {
        int fd = dial(NULL);
        assert_true(fd >= 0);
        const char *h = "POST /v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7FFFFFFFFFFF\r\n";
        assert_int_equal(send_all(fd, h, strlen(h)), 0);
        char *junk = big(65536);
        memset(junk, 'a', 65536);
        size_t sent = 0;
        int closed = 0;
        int64_t end = now_ms() + 10000;
        while (!closed && now_ms() < end && sent < (256u << 20)) {
            struct pollfd p = {fd, POLLOUT | POLLIN, 0};
            if (poll(&p, 1, 200) <= 0) continue;
            if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
                char t[256];
                if (recv(fd, t, sizeof t, MSG_DONTWAIT) <= 0) closed = 1;
            }
            if (!closed && (p.revents & POLLOUT)) {
                ssize_t w = send(fd, junk, 65536, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0 && errno != EAGAIN) closed = 1;
                else if (w > 0) sent += (size_t)w;
            }
        }
        assert_true(closed);
        /* The server read ≤ 2 × MAX_BODY; the rest sat in socket buffers. */
        assert_true(sent < (64u << 20));
        free(junk);
        close(fd);
    }

    /* 10,000 headers: 431 (libmicrohttpd's answer, its memory limit). */
    {
        size_t n = 0;
        char *req = big(400000);
        n += (size_t)sprintf(req, "POST /v1/events HTTP/1.1\r\nHost: x\r\n");
        for (int i = 0; i < 10000; i++) n += (size_t)sprintf(req + n, "X-H%d: v\r\n", i);
        n += (size_t)sprintf(req + n, "Content-Length: 2\r\n\r\n{}");
        assert_int_equal(raw_exchange(req, n, buf, cap, 5000), 431);
        /* One header of 40 KB too. */
        n = (size_t)sprintf(req, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
        memset(req + n, 'b', 40000);
        n += 40000;
        n += (size_t)sprintf(req + n, "\r\n\r\n");
        assert_int_equal(raw_exchange(req, n, buf, cap, 5000), 431);
        /* A 70 KB URL: 414. */
        n = (size_t)sprintf(req, "GET /healthz?");
        memset(req + n, 'a', 70000);
        n += 70000;
        n += (size_t)sprintf(req + n, " HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_int_equal(raw_exchange(req, n, buf, cap, 5000), 414);
        free(req);
    }

    /* A gzip bomb: 64 MiB of zeros in ~64 KB; 413 on the decompressed size. */
    {
        size_t plain = 64u << 20;
        char *zeros = calloc(1, plain);
        uLongf zl = compressBound(plain) + 64;
        unsigned char *z = malloc(zl);
        z_stream zs = {0};
        assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
        zs.next_in = (Bytef *)zeros, zs.avail_in = (uInt)plain;
        zs.next_out = z, zs.avail_out = (uInt)zl;
        assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
        size_t zn = zs.total_out;
        deflateEnd(&zs);
        free(zeros);
        assert_true(zn < MAX_BODY);
        cs_buf resp;
        cs_buf_init(&resp);
        int st = -1;
        assert_int_equal(cs_httpc_request(&srv.c, "POST", "/v1/events", "Content-Encoding: gzip\r\n", (char *)z, zn,
                                          &st, &resp), 0);
        assert_int_equal(st, 413);
        assert_non_null(strstr(resp.data, "decompressed"));
        /* Corrupt gzip (a small body, cut in the middle): 400 invalid_encoding. */
        const char ev[] = "{\"event_id\":\"gz-1\",\"type\":\"FeatureUsed\",\"account_id\":\"a\","
                          "\"properties\":{\"feature\":\"f\"}}";
        memset(&zs, 0, sizeof zs);
        assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY), Z_OK);
        zs.next_in = (Bytef *)ev, zs.avail_in = sizeof ev - 1;
        zs.next_out = z, zs.avail_out = (uInt)zl;
        assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
        zn = zs.total_out;
        deflateEnd(&zs);
        cs_buf_reset(&resp);
        assert_int_equal(cs_httpc_request(&srv.c, "POST", "/v1/events", "Content-Encoding: gzip\r\n", (char *)z,
                                          zn / 2, &st, &resp), 0);
        assert_int_equal(st, 400);
        assert_non_null(strstr(resp.data, "\"invalid_encoding\""));
        /* The same gzip body whole: accepted. */
        cs_buf_reset(&resp);
        assert_int_equal(cs_httpc_request(&srv.c, "POST", "/v1/events", "Content-Encoding: gzip\r\n", (char *)z, zn,
                                          &st, &resp), 0);
        assert_int_equal(st, 200);
        cs_buf_free(&resp);
        free(z);
    }

    /* Content-Length smaller than the body: the first 2 bytes are the
     * request (422: not an event); the rest is read as the next request,
     * which is not HTTP: 400, and the connection closes. */
    {
        const char *r = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}garbage garbage\r\n\r\n";
        int st = raw_exchange(r, strlen(r), buf, cap, 5000);
        assert_int_equal(st, 422);
        const char *second = strstr(buf + 12, "HTTP/1.1 ");
        assert_non_null(second);
        assert_int_equal(status_of(second), 400);
    }

    /* Content-Length larger than the body: no answer can be right; the
     * connection is closed at the body deadline (2 s), not held for ever. */
    {
        int fd = dial(NULL);
        assert_true(fd >= 0);
        const char *r = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}";
        assert_int_equal(send_all(fd, r, strlen(r)), 0);
        int eof;
        int64_t t0 = now_ms();
        read_all(fd, buf, cap, 15000, &eof);
        assert_true(eof);
        assert_true(now_ms() - t0 < 14000);
        close(fd);
    }

    /* Twelve announced 1 TB bodies in parallel (under the per-IP cap of 16):
     * each 413 at once. */
    {
        int fds[12];
        const char *r = "POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n";
        for (int i = 0; i < 12; i++) {
            fds[i] = dial(NULL);
            assert_true(fds[i] >= 0);
            assert_int_equal(send_all(fds[i], r, strlen(r)), 0);
        }
        for (int i = 0; i < 12; i++) {
            int eof;
            read_all(fds[i], buf, cap, 5000, &eof);
            assert_int_equal(status_of(buf), 413);
            close(fds[i]);
        }
    }
    free(buf);
    control_stop(&ctl);
}

/* ------------------------------------------------------ T20: headers */

static void t20_invalid_utf8_in_headers(void **state)
{
    (void)state;
    char buf[8192];
    const char r[] = "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Trace: ab\xc3\x28z\r\nContent-Length: 2\r\n\r\n{}";
    assert_int_equal(raw_exchange(r, sizeof r - 1, buf, sizeof buf, 5000), 400);
    assert_non_null(strstr(buf, "\"invalid_utf8\""));
    assert_non_null(strstr(buf, "at byte 2 of its value"));
    const char r2[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\r\n\r\n";
    assert_int_equal(raw_exchange(r2, sizeof r2 - 1, buf, sizeof buf, 5000), 400);
    assert_non_null(strstr(buf, "at byte 0 of its value"));
    /* Valid multi-byte UTF-8 in a header is fine. */
    const char r3[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Name: J\xc3\xbcrgen \xf0\x9f\x98\x80\r\nConnection: close\r\n\r\n";
    assert_int_equal(raw_exchange(r3, sizeof r3 - 1, buf, sizeof buf, 5000), 200);
}

/* ------------------------------------------------------ T21: schema */

static int post_json(const char *body, cJSON **j)
{
    return th_req(&srv, "POST", "/v1/events", body, j);
}

static const char *rej_code(cJSON *j, int k, int *index, const char **field)
{
    cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "rejected"), k);
    if (!r) return NULL;
    *index = cJSON_GetObjectItem(r, "index")->valueint;
    *field = cJSON_GetObjectItem(r, "field")->valuestring;
    return cJSON_GetObjectItem(r, "code")->valuestring;
}

static void t21_schema_errors(void **state)
{
    (void)state;
    /* One request, each event wrong in its own way, plus one good one. */
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "[");
    cs_buf_adds(&b, "{\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"feature\":\"f\"}},");     /* 0 */
    cs_buf_adds(&b, "{\"event_id\":7,\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"feature\":\"f\"}},"); /* 1 */
    cs_buf_adds(&b, "{\"event_id\":\"s2\",\"type\":\"FeatureUsed\",\"properties\":{\"feature\":\"f\"}},");          /* 2 */
    cs_buf_adds(&b, "{\"event_id\":\"s3\",\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":\"x\"},");  /* 3 */
    cs_buf_adds(&b, "{\"event_id\":\"s4\",\"type\":\"Unheard\",\"account_id\":\"a\"},");                         /* 4 */
    cs_buf_adds(&b, "{\"event_id\":\"s5\",\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"feature\":\"f\"},"
                    "\"timestamp\":\"yesterday\"},");                                                           /* 5 */
    cs_buf_adds(&b, "{\"event_id\":\"s6\",\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"feature\":\"f\"}},"); /* 6 ok */
    cs_buf_adds(&b, "17,");                                                                                      /* 7 */
    cs_buf_adds(&b, "{\"event_id\":\"s8\",\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"feature\":\"f\"},"
                    "\"extra\":1}");                                                                             /* 8 */
    cs_buf_adds(&b, "]");
    cJSON *j;
    assert_int_equal(post_json(b.data, &j), 200);
    assert_int_equal(cJSON_GetObjectItem(j, "accepted")->valueint, 1);
    struct {
        int index;
        const char *code, *field;
    } want[] = {{0, "missing_field", "event_id"}, {1, "wrong_type", "event_id"},   {2, "missing_field", "account_id"},
                {3, "wrong_type", "properties"}, {4, "unknown_type", "type"},       {5, "invalid_value", "timestamp"},
                {7, "wrong_type", ""},           {8, "unknown_field", "extra"}};
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rejected")), 8);
    for (int k = 0; k < 8; k++) {
        int index;
        const char *field;
        const char *code = rej_code(j, k, &index, &field);
        assert_non_null(code);
        assert_int_equal(index, want[k].index);
        assert_string_equal(code, want[k].code);
        if (*want[k].field) assert_string_equal(field, want[k].field);
    }
    cJSON_Delete(j);

    /* 10,000 properties: too_many_keys, the request is otherwise fine. */
    cs_buf_reset(&b);
    cs_buf_adds(&b, "{\"event_id\":\"wide\",\"type\":\"FeatureUsed\",\"account_id\":\"a\",\"properties\":{\"feature\":\"f\"");
    for (int i = 0; i < 10000; i++) cs_buf_printf(&b, ",\"p%d\":%d", i, i);
    cs_buf_adds(&b, "}}");
    assert_true(b.len < MAX_BODY);
    assert_int_equal(post_json(b.data, &j), 422);
    int index;
    const char *field;
    const char *code = rej_code(j, 0, &index, &field);
    assert_non_null(code);
    assert_string_equal(code, "too_many_keys");
    assert_string_equal(field, "properties");
    cJSON_Delete(j);

    /* One bad lead among 99 good: 200, exactly that index rejected, and its
     * lead never exists (99 leads; a sentinel afterwards makes 100). */
    long before = th_count_leads(&srv);
    assert_true(before >= 0);
    cs_buf_reset(&b);
    cs_buf_adds(&b, "[");
    for (int i = 0; i < 100; i++) {
        if (i == 37)
            cs_buf_printf(&b, "%s{\"event_id\":\"lead-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%d\","
                              "\"properties\":{\"company\":\"no email\"}}",
                          i ? "," : "", i, i);
        else
            cs_buf_printf(&b, "%s{\"event_id\":\"lead-%d\",\"type\":\"LeadCreated\",\"account_id\":\"acc_%d\","
                              "\"properties\":{\"email\":\"p%d@example.com\"}}",
                          i ? "," : "", i, i, i);
    }
    cs_buf_adds(&b, "]");
    assert_int_equal(post_json(b.data, &j), 200);
    assert_int_equal(cJSON_GetObjectItem(j, "accepted")->valueint, 99);
    assert_int_equal(cJSON_GetObjectItem(j, "duplicates")->valueint, 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "rejected")), 1);
    code = rej_code(j, 0, &index, &field);
    assert_non_null(code);
    assert_string_equal(code, "missing_field");
    assert_int_equal(index, 37);
    assert_string_equal(field, "properties.email");
    cJSON_Delete(j);
    assert_int_equal(th_wait_leads(&srv, before + 99, 30000), before + 99);
    assert_int_equal(post_json("{\"event_id\":\"lead-sentinel\",\"type\":\"LeadCreated\",\"account_id\":\"acc_s\","
                               "\"properties\":{\"email\":\"s@example.com\"}}",
                               &j),
                     200);
    cJSON_Delete(j);
    /* The sentinel was appended after the batch; once it is a lead, the
     * pipeline has applied everything before it: exactly 100, never 101. */
    for (int64_t end = now_ms() + 30000; now_ms() < end;) {
        cJSON *l = NULL;
        if (th_req(&srv, "GET", "/api/v1/leads?limit=1000", NULL, &l) == 200 && l) {
            int found_sentinel = 0, found_bad = 0;
            cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItem(l, "items"))
            {
                const char *e = cJSON_GetObjectItem(it, "event_id")->valuestring;
                found_sentinel |= strcmp(e, "lead-sentinel") == 0;
                found_bad |= strcmp(e, "lead-37") == 0;
            }
            cJSON_Delete(l);
            assert_false(found_bad);
            if (found_sentinel) break;
        } else {
            cJSON_Delete(l);
        }
    }
    assert_int_equal(th_count_leads(&srv), before + 100);
    /* The rejected id is not burnt: sent again, correct, it is accepted. */
    assert_int_equal(post_json("{\"event_id\":\"lead-37\",\"type\":\"LeadCreated\",\"account_id\":\"acc_37\","
                               "\"properties\":{\"email\":\"p37@example.com\"}}",
                               &j),
                     200);
    assert_int_equal(cJSON_GetObjectItem(j, "accepted")->valueint, 1);
    cJSON_Delete(j);
    cs_buf_free(&b);
}

/* ------------------------------------------------------ T23: floods */

enum { A_SLOW_HEADER, A_IDLE, A_SLOW_BODY, A_KINDS };
struct att {
    int     fd;
    int     kind;
    int64_t opened, next_byte, reopen_at;
    size_t  sent;
};

static void t23_slowloris_and_idle_floods(void **state)
{
    (void)state;
    struct control ctl;
    control_start(&ctl);
    enum { N = 48 };
    struct att a[N];
    long refused = 0, deadline_closed[A_KINDS] = {0}, longest_ms = 0, opened = 0;
    for (int i = 0; i < N; i++) a[i] = (struct att){.fd = -1, .kind = i % A_KINDS};
    int64_t t_end = now_ms() + 6000;
    while (now_ms() < t_end) {
        int64_t t = now_ms();
        struct pollfd p[N];
        for (int i = 0; i < N; i++) {
            if (a[i].fd < 0 && t >= a[i].reopen_at) {
                a[i].fd = dial("127.0.0.2");
                assert_true(a[i].fd >= 0);
                a[i].opened = t, a[i].next_byte = t, a[i].sent = 0;
                opened++;
                if (a[i].kind == A_SLOW_BODY) {
                    const char *h = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
                    send(a[i].fd, h, strlen(h), MSG_NOSIGNAL);
                }
            }
            /* Slowloris: one byte of header (or body) every 150 ms. */
            if (a[i].fd >= 0 && a[i].kind != A_IDLE && t >= a[i].next_byte) {
                static const char hdr[] = "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-A: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
                char c = a[i].kind == A_SLOW_HEADER ? hdr[a[i].sent % (sizeof hdr - 1)] : ' ';
                if (a[i].kind == A_SLOW_HEADER && a[i].sent >= sizeof hdr - 1) c = 'b';
                send(a[i].fd, &c, 1, MSG_NOSIGNAL);
                a[i].sent++;
                a[i].next_byte = t + 150;
            }
            p[i] = (struct pollfd){a[i].fd, POLLIN, 0};
        }
        poll(p, N, 20);
        t = now_ms();
        for (int i = 0; i < N; i++) {
            if (a[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char tmp[512];
            ssize_t r = recv(a[i].fd, tmp, sizeof tmp, 0);
            if (r > 0) continue; /* an answer would be a surprise; the close follows */
            long age = (long)(t - a[i].opened);
            if (age < 500) refused++; /* the per-IP cap: closed at once */
            else deadline_closed[a[i].kind]++;
            if (age > longest_ms) longest_ms = age;
            close(a[i].fd);
            a[i].fd = -1;
            a[i].reopen_at = t + 100; /* no busy reconnect loop */
        }
    }
    /* Anyone still open must be younger than its deadline plus slack. */
    for (int i = 0; i < N; i++) {
        if (a[i].fd < 0) continue;
        long age = (long)(now_ms() - a[i].opened);
        if (age > longest_ms) longest_ms = age;
        close(a[i].fd);
    }
    control_stop(&ctl);
    fprintf(stderr, "# attack: %ld connections, %ld refused by the per-IP cap, closed by deadline: header %ld, "
                    "idle %ld, body %ld; longest-lived %ld ms; control ok %ld\n",
            opened, refused, deadline_closed[A_SLOW_HEADER], deadline_closed[A_IDLE], deadline_closed[A_SLOW_BODY],
            longest_ms, ctl.ok);
    assert_true(refused > 0);                            /* 48 sockets, cap 16 */
    assert_true(deadline_closed[A_SLOW_HEADER] > 0);     /* header deadline 1 s */
    assert_true(deadline_closed[A_IDLE] > 0);            /* idle ones too (header deadline) */
    assert_true(deadline_closed[A_SLOW_BODY] > 0);       /* body deadline 2 s */
    /* The trickle never lets libmicrohttpd's 5 s inactivity timeout fire:
     * only our deadlines (1 s header, 2 s body; +100 ms reaper, + slack for
     * sanitizer builds) can have closed them. */
    assert_true(longest_ms < 4500);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t18_oversize_and_lying),
        cmocka_unit_test(t20_invalid_utf8_in_headers),
        cmocka_unit_test(t21_schema_errors),
        cmocka_unit_test(t23_slowloris_and_idle_floods),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
