/*
 * out/dispatch — the dispatcher: one libcurl multi handle, one lane per
 * destination. Each turn (cs_out_step) every lane tops its bounded queue up
 * from the outbox source, starts requests while it is under its concurrency
 * and has a rate token, and every finished request is judged by out/policy
 * and reported back to the source (delivered / retry at / dead). A lane only
 * ever waits for its own slots and tokens, and the network is driven without
 * blocking, so a slow or failing destination never delays another.
 *
 * Ownership: the dispatcher owns each claimed delivery from the claim until
 * it reports its outcome (or releases it at destroy). A claim not reported
 * because the process died expires with its lease and is claimed again: at
 * least once, with the same id (the webhook-id).
 */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "core/logging.h"
#include "core/util.h"
#include "out/format.h"
#include "out/out.h"
#include "out/policy.h"
#include "out/sign.h"

#define DEF_CONCURRENCY      4
#define DEF_QUEUE_MAX        256
#define DEF_CONNECT_MS       5000
#define DEF_TIMEOUT_MS       15000
#define DEF_HORIZON_MS       (3LL * 24 * 3600 * 1000)
#define DEF_BACKOFF_BASE_MS  5000
#define DEF_BACKOFF_MAX_MS   (6LL * 3600 * 1000)
#define DEF_MAX_RESPONSE     (64 * 1024)
#define MAX_RESPONSE_LIMIT   (16 * 1024 * 1024)
#define REASON_BODY_MAX      200   /* response bytes quoted in a reason */

typedef struct lane lane;

typedef struct xfer {
    lane              *ln;
    CURL              *easy;
    cs_out_delivery    d;
    char              *body;        /* what is sent: d.payload or a Slack message */
    int                body_owned;
    struct curl_slist *hdrs;
    cs_buf             resp;        /* at most max_response bytes */
    int                truncated;   /* the answer was longer: the read was cut */
    char               retry_after[64];
    char               refused[INET6_ADDRSTRLEN]; /* address the policy refused */
    char               errbuf[CURL_ERROR_SIZE];
    struct xfer       *next, *prev; /* the dispatcher's in-flight list */
} xfer;

struct lane {
    cs_out_dest_conf c;             /* defaults applied; strings owned */
    cs_out_key       keys[2];
    int              nkeys;
    cs_out_delivery *q;             /* ring of c.queue_max */
    int              qhead, qlen;
    int              inflight;
    double           tokens;
    int64_t          tokens_ms;     /* clock time of the last refill */
    int64_t          next_poll_us;  /* monotonic: when to ask the source again */
    int64_t          lease_ms;
    int              disabled;      /* under o->mu */
    int              off;           /* the loop's copy of disabled */
    cs_out_stats     st;            /* under o->mu */
};

struct cs_out {
    lane           *lanes;
    int             nlanes;
    cs_out_source   src;
    cs_out_clock    clock;
    void          (*on_alert)(void *ctx, const cs_out_alert *a);
    void           *alert_ctx;
    int             poll_ms;
    int             verbose;       /* CS_OUT_VERBOSE set: curl traces on stderr (debugging) */
    char           *user_agent;
    uint64_t        rng;
    CURLM          *multi;
    xfer           *active;
    pthread_mutex_t mu;
    pthread_t       th;
    int             started;
    atomic_int      stopping;
    atomic_int      woken;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static int64_t real_now_ms(void *ctx)
{
    (void)ctx;
    return cs_now_us() / 1000;
}

static int64_t now_ms(cs_out *o) { return o->clock.now_ms(o->clock.ctx); }

/* ================================================================== config */

static int valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 63) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return 1;
}

static int lane_init(lane *ln, const cs_out_dest_conf *in, const cs_out_opts *opts, char *err,
                     size_t errlen)
{
    memset(ln, 0, sizeof *ln);
    ln->c = *in;
    cs_out_dest_conf *c = &ln->c;
    c->name = NULL, c->url = NULL, c->secrets[0] = c->secrets[1] = NULL;
    if (!valid_name(in->name)) {
        snprintf(err, errlen, "outbound destination name \"%s\": 1-63 of [a-zA-Z0-9_.-]",
                 in->name ? in->name : "");
        return -1;
    }
    if (in->kind != CS_OUT_WEBHOOK && in->kind != CS_OUT_SLACK) {
        snprintf(err, errlen, "outbound destination %s: unknown kind", in->name);
        return -1;
    }
    if (!in->url || (strncmp(in->url, "http://", 7) != 0 && strncmp(in->url, "https://", 8) != 0) ||
        strpbrk(in->url, " \r\n\t")) {
        snprintf(err, errlen, "outbound destination %s: url must be http:// or https://", in->name);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (!in->secrets[i]) continue;
        if (in->kind != CS_OUT_WEBHOOK) {
            snprintf(err, errlen, "outbound destination %s: secrets are for webhooks", in->name);
            return -1;
        }
        if (cs_out_key_parse(in->secrets[i], &ln->keys[ln->nkeys]) != 0) {
            snprintf(err, errlen,
                     "outbound destination %s: secret %d is not whsec_<base64> (1-%d bytes)",
                     in->name, i + 1, CS_OUT_KEY_MAX);
            return -1;
        }
        ln->nkeys++;
    }
    int slack = in->kind == CS_OUT_SLACK;
    if (c->concurrency <= 0) c->concurrency = slack ? 1 : DEF_CONCURRENCY;
    if (c->rate_per_s < 0) c->rate_per_s = 0;
    if (c->rate_per_s == 0 && slack) c->rate_per_s = 1; /* Slack: about 1 message/s */
    if (c->burst <= 0) c->burst = c->rate_per_s >= 1 ? (int)c->rate_per_s : 1;
    if (c->queue_max <= 0) c->queue_max = DEF_QUEUE_MAX;
    if (c->queue_max > 100000) c->queue_max = 100000;
    if (c->connect_timeout_ms <= 0) c->connect_timeout_ms = DEF_CONNECT_MS;
    if (c->timeout_ms <= 0) c->timeout_ms = DEF_TIMEOUT_MS;
    if (c->retry_horizon_ms <= 0) c->retry_horizon_ms = DEF_HORIZON_MS;
    if (c->backoff_base_ms <= 0) c->backoff_base_ms = DEF_BACKOFF_BASE_MS;
    if (c->backoff_max_ms <= 0) c->backoff_max_ms = DEF_BACKOFF_MAX_MS;
    if (c->max_attempts < 0) c->max_attempts = 0;
    if (c->max_response == 0) c->max_response = DEF_MAX_RESPONSE;
    if (c->max_response > MAX_RESPONSE_LIMIT) c->max_response = MAX_RESPONSE_LIMIT;
    c->name = cs_strdup(in->name);
    c->url = cs_strdup(in->url);
    ln->q = cs_calloc((size_t)c->queue_max, sizeof *ln->q);
    ln->tokens = c->burst;
    ln->tokens_ms = INT64_MIN;
    /* The lease covers the worst wait in the queue plus the request itself,
     * so a live dispatcher never loses a claim it still holds. */
    double per = (double)c->timeout_ms / c->concurrency;
    if (c->rate_per_s > 0 && 1000.0 / c->rate_per_s > per) per = 1000.0 / c->rate_per_s;
    int64_t lease = opts->lease_ms > 0 ? opts->lease_ms : 60000;
    ln->lease_ms = lease + c->timeout_ms + (int64_t)(per * c->queue_max);
    return 0;
}

static void lane_free(lane *ln)
{
    for (int i = 0; i < ln->qlen; i++) free(ln->q[(ln->qhead + i) % ln->c.queue_max].payload);
    free(ln->q);
    free((char *)ln->c.name);
    free((char *)ln->c.url);
    memset(ln->keys, 0, sizeof ln->keys);
}

cs_out *cs_out_new(const cs_out_dest_conf *dests, int ndests, const cs_out_opts *opts, char *err,
                   size_t errlen)
{
    pthread_once(&g_curl_once, curl_init_once);
    if (!opts || !opts->source.ops) {
        snprintf(err, errlen, "outbound: no outbox source");
        return NULL;
    }
    cs_out *o = cs_calloc(1, sizeof *o);
    pthread_mutex_init(&o->mu, NULL);
    o->src = opts->source;
    o->clock = opts->clock;
    if (!o->clock.now_ms) o->clock = (cs_out_clock){real_now_ms, NULL};
    o->on_alert = opts->on_alert;
    o->alert_ctx = opts->alert_ctx;
    o->poll_ms = opts->poll_ms > 0 ? opts->poll_ms : 100;
    o->verbose = getenv("CS_OUT_VERBOSE") != NULL;
    o->user_agent = cs_strdup(opts->user_agent ? opts->user_agent : "crmstream-webhooks/1");
    o->rng = opts->seed ? opts->seed : (uint64_t)cs_now_us() ^ 0x5851f42d4c957f2dULL;
    o->lanes = cs_calloc(ndests > 0 ? (size_t)ndests : 1, sizeof *o->lanes);
    for (int i = 0; i < ndests; i++) {
        for (int j = 0; j < i; j++)
            if (dests[j].name && dests[i].name && strcmp(dests[j].name, dests[i].name) == 0) {
                snprintf(err, errlen, "outbound destination %s: defined twice", dests[i].name);
                goto fail;
            }
        if (lane_init(&o->lanes[i], &dests[i], opts, err, errlen) != 0) goto fail;
        o->nlanes++;
    }
    o->multi = curl_multi_init();
    if (!o->multi) {
        snprintf(err, errlen, "outbound: curl_multi_init failed");
        goto fail;
    }
    /* HTTP/1.1 only, no multiplexing: a transfer never waits to see whether
     * a connection still being set up (maybe another lane's) could carry it. */
    curl_multi_setopt(o->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    return o;
fail:
    for (int i = 0; i < ndests && i <= o->nlanes; i++) lane_free(&o->lanes[i]);
    o->nlanes = 0;
    cs_out_destroy(o);
    return NULL;
}

static lane *lane_find(cs_out *o, const char *dest)
{
    for (int i = 0; i < o->nlanes; i++)
        if (strcmp(o->lanes[i].c.name, dest) == 0) return &o->lanes[i];
    return NULL;
}

/* ================================================================ reporting */

static void report_err(cs_out *o, const char *what, const char *id)
{
    cs_warn("out", "outbox source call failed", "\"call\":\"%s\",\"delivery\":\"%s\"", what, id);
    (void)o;
}

static void release(cs_out *o, cs_out_delivery *d)
{
    if (o->src.ops->release(o->src.ctx, d->id) != 0) report_err(o, "release", d->id);
}

static void dead(cs_out *o, lane *ln, cs_out_delivery *d, int attempt, const char *reason)
{
    if (o->src.ops->dead(o->src.ctx, d->id, attempt, reason) != 0) report_err(o, "dead", d->id);
    pthread_mutex_lock(&o->mu);
    ln->st.dead++;
    pthread_mutex_unlock(&o->mu);
    cs_warn("out", "delivery moved to the DLQ",
            "\"dest\":\"%s\",\"delivery\":\"%s\",\"attempt\":%d", ln->c.name, d->id, attempt);
}

/* Give the lane's whole queue back to the source (disabled, or shutting down). */
static void lane_release_queue(cs_out *o, lane *ln)
{
    while (ln->qlen > 0) {
        cs_out_delivery *d = &ln->q[ln->qhead];
        release(o, d);
        free(d->payload);
        ln->qhead = (ln->qhead + 1) % ln->c.queue_max;
        ln->qlen--;
    }
    pthread_mutex_lock(&o->mu);
    ln->st.queued = 0;
    pthread_mutex_unlock(&o->mu);
}

/* ================================================================ transfers */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    size_t room = x->ln->c.max_response - x->resp.len;
    if (n > room) {
        /* Bounded read: keep what fits, then stop reading (the transfer
         * ends with CURLE_WRITE_ERROR; the status line already arrived). */
        cs_buf_add(&x->resp, ptr, room);
        x->truncated = 1;
        return 0;
    }
    cs_buf_add(&x->resp, ptr, n);
    return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t n = size * nitems;
    /* A new status line (e.g. after 100 Continue): forget earlier headers. */
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) x->retry_after[0] = '\0';
    if (n > 12 && strncasecmp(buf, "retry-after:", 12) == 0) {
        size_t vlen = n - 12;
        if (vlen >= sizeof x->retry_after) vlen = sizeof x->retry_after - 1;
        memcpy(x->retry_after, buf + 12, vlen);
        x->retry_after[vlen] = '\0';
        x->retry_after[strcspn(x->retry_after, "\r\n")] = '\0';
    }
    return n;
}

/* The outbound address policy, applied to the address curl resolved and is
 * about to connect to (no window between the check and the use). */
static curl_socket_t on_open(void *ud, curlsocktype purpose, struct curl_sockaddr *addr)
{
    xfer *x = ud;
    (void)purpose;
    if (!cs_out_addr_allowed(&addr->addr, x->ln->c.allow_private)) {
        const void *a = addr->family == AF_INET6
                            ? (const void *)&((struct sockaddr_in6 *)&addr->addr)->sin6_addr
                            : (const void *)&((struct sockaddr_in *)&addr->addr)->sin_addr;
        if (!inet_ntop(addr->family, a, x->refused, sizeof x->refused))
            snprintf(x->refused, sizeof x->refused, "?");
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static void xfer_free(xfer *x)
{
    if (!x) return;
    if (x->easy) curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    if (x->body_owned) free(x->body);
    free(x->d.payload);
    cs_buf_free(&x->resp);
    free(x);
}

static int header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e) return 0;
    return 1;
}

/* Start one delivery; takes ownership of d. 0, or -1 when it was judged
 * without a request (it is reported already). */
static int xfer_start(cs_out *o, lane *ln, cs_out_delivery *d)
{
    if (!header_safe(d->id) || !d->id[0]) {
        dead(o, ln, d, d->attempt, "delivery id is not a printable ASCII token");
        free(d->payload);
        return -1;
    }
    xfer *x = cs_calloc(1, sizeof *x);
    x->ln = ln;
    x->d = *d;
    cs_buf_init(&x->resp);
    if (ln->c.kind == CS_OUT_SLACK) {
        x->body = cs_out_slack_format(d->payload, d->payload_len);
        x->body_owned = 1;
        if (!x->body) {
            dead(o, ln, d, d->attempt, "payload is not a JSON object (Slack message)");
            xfer_free(x);
            return -1;
        }
    } else {
        x->body = d->payload;
    }
    size_t blen = x->body_owned ? strlen(x->body) : d->payload_len;

    char h[512];
    x->hdrs = curl_slist_append(x->hdrs, "Content-Type: application/json");
    x->hdrs = curl_slist_append(x->hdrs, "Expect:"); /* no 100-continue round trip */
    if (ln->c.kind == CS_OUT_WEBHOOK) {
        int64_t ts = now_ms(o) / 1000;
        snprintf(h, sizeof h, "webhook-id: %s", d->id);
        x->hdrs = curl_slist_append(x->hdrs, h);
        snprintf(h, sizeof h, "webhook-timestamp: %lld", (long long)ts);
        x->hdrs = curl_slist_append(x->hdrs, h);
        if (ln->nkeys) {
            int n = snprintf(h, sizeof h, "webhook-signature: ");
            cs_out_sign(ln->keys, ln->nkeys, d->id, ts, x->body, blen, h + n, sizeof h - (size_t)n);
            x->hdrs = curl_slist_append(x->hdrs, h);
        }
    }
    if (!x->hdrs) abort();

    CURL *e = x->easy = curl_easy_init();
    if (!e) abort();
    curl_easy_setopt(e, CURLOPT_URL, ln->c.url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, o->user_agent);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ln->c.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ln->c.timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);           /* redirects are answers */
    curl_easy_setopt(e, CURLOPT_PROXY, "");                    /* ignore *_proxy variables */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    if (o->verbose) curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    if (curl_multi_add_handle(o->multi, e) != CURLM_OK) {
        /* cannot even start: treat as a failed attempt-less try, later */
        x->d.payload = NULL;
        xfer_free(x);
        release(o, d);
        free(d->payload);
        return -1;
    }
    x->next = o->active;
    if (o->active) o->active->prev = x;
    o->active = x;
    ln->inflight++;
    return 0;
}

/* The answer's first bytes for a reason text: printable ASCII only. */
static void quote_body(const xfer *x, char *out, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < x->resp.len && i < REASON_BODY_MAX && n + 1 < len; i++) {
        unsigned char c = (unsigned char)x->resp.data[i];
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : ' ';
    }
    out[n] = '\0';
}

static void alert(cs_out *o, lane *ln, const char *delivery_id, const char *detail)
{
    cs_error("out", "destination disabled", "\"dest\":\"%s\",\"detail\":\"%s\"", ln->c.name, detail);
    if (o->on_alert) {
        cs_out_alert a = {.dest = ln->c.name, .kind = "destination_disabled", .detail = detail,
                          .delivery_id = delivery_id};
        o->on_alert(o->alert_ctx, &a);
    }
}

/* Judge a finished request and report it. */
static void xfer_done(cs_out *o, xfer *x, CURLcode rc)
{
    lane *ln = x->ln;
    cs_out_delivery *d = &x->d;
    int attempt = d->attempt + 1;
    int64_t now = now_ms(o);
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    int answered = rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && x->truncated);
    if (!answered) status = 0;

    char err[512], body[REASON_BODY_MAX + 1];
    quote_body(x, body, sizeof body);
    if (answered)
        snprintf(err, sizeof err, "HTTP %ld%s%s%s", status, body[0] ? ": " : "", body,
                 x->truncated ? " (response cut)" : "");
    else if (x->refused[0])
        snprintf(err, sizeof err, "address %s refused by the outbound address policy "
                 "(allow_private is off)", x->refused);
    else
        snprintf(err, sizeof err, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));

    cs_out_result res = cs_out_classify(status);
    if (!answered && x->refused[0]) res = CS_OUT_DEAD;
    if (answered && status >= 300 && status < 400) {
        char *loc = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &loc);
        snprintf(err, sizeof err, "HTTP %ld redirect not followed%s%.300s", status,
                 loc ? " to " : "", loc ? loc : "");
    }

    pthread_mutex_lock(&o->mu);
    ln->st.attempts++;
    pthread_mutex_unlock(&o->mu);

    switch (res) {
    case CS_OUT_OK:
        if (o->src.ops->delivered(o->src.ctx, d->id, attempt, now) != 0)
            report_err(o, "delivered", d->id);
        pthread_mutex_lock(&o->mu);
        ln->st.delivered++;
        pthread_mutex_unlock(&o->mu);
        break;
    case CS_OUT_RETRY: {
        int64_t delay;
        if (!x->retry_after[0] || cs_out_retry_after(x->retry_after, now, &delay) != 0)
            delay = cs_out_backoff_ms(ln->c.backoff_base_ms, ln->c.backoff_max_ms, attempt,
                                      cs_out_rand(&o->rng));
        int64_t next = now + delay;
        char why[700];
        if (ln->c.max_attempts && attempt >= ln->c.max_attempts) {
            snprintf(why, sizeof why, "gave up after %d attempts: %s", attempt, err);
            dead(o, ln, d, attempt, why);
        } else if (next > d->created_at_ms + ln->c.retry_horizon_ms) {
            snprintf(why, sizeof why, "retry horizon of %lld s passed after %d attempts: %s",
                     (long long)(ln->c.retry_horizon_ms / 1000), attempt, err);
            dead(o, ln, d, attempt, why);
        } else {
            if (o->src.ops->retry(o->src.ctx, d->id, attempt, next, err) != 0)
                report_err(o, "retry", d->id);
            pthread_mutex_lock(&o->mu);
            ln->st.retried++;
            pthread_mutex_unlock(&o->mu);
        }
        break;
    }
    case CS_OUT_DEAD:
        dead(o, ln, d, attempt, err);
        break;
    case CS_OUT_GONE: {
        char why[700];
        snprintf(why, sizeof why, "%s (410 Gone: destination disabled)", err);
        dead(o, ln, d, attempt, why);
        pthread_mutex_lock(&o->mu);
        int was = ln->disabled;
        ln->disabled = 1;
        ln->st.disabled = 1;
        pthread_mutex_unlock(&o->mu);
        lane_release_queue(o, ln);
        if (!was) {
            char detail[600];
            snprintf(detail, sizeof detail, "HTTP 410 Gone from %.500s", ln->c.url);
            alert(o, ln, d->id, detail);
        }
        break;
    }
    }
}

static void xfer_unlink(cs_out *o, xfer *x)
{
    if (x->prev) x->prev->next = x->next;
    else o->active = x->next;
    if (x->next) x->next->prev = x->prev;
    curl_multi_remove_handle(o->multi, x->easy);
    x->ln->inflight--;
}

static int harvest(cs_out *o)
{
    int n = 0, left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(o->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        xfer *x = (xfer *)(void *)priv;
        CURLcode rc = m->data.result;
        xfer_unlink(o, x);
        xfer_done(o, x, rc);
        xfer_free(x);
        n++;
    }
    return n;
}

/* =============================================================== the loop */

static int take_token(lane *ln, int64_t now)
{
    if (ln->c.rate_per_s <= 0) return 1;
    if (ln->tokens_ms == INT64_MIN) ln->tokens_ms = now;
    if (now > ln->tokens_ms) {
        ln->tokens += (double)(now - ln->tokens_ms) * ln->c.rate_per_s / 1000.0;
        if (ln->tokens > ln->c.burst) ln->tokens = ln->c.burst;
        ln->tokens_ms = now;
    }
    if (ln->tokens < 1.0) return 0;
    ln->tokens -= 1.0;
    return 1;
}

/* Top the queue up and start what the lane's slots and tokens allow. */
static void lane_turn(cs_out *o, lane *ln, int woken, int64_t mono_us)
{
    pthread_mutex_lock(&o->mu);
    int disabled = ln->disabled;
    pthread_mutex_unlock(&o->mu);
    ln->off = disabled;
    if (disabled) return;
    int64_t now = now_ms(o);
    int room = ln->c.queue_max - ln->qlen;
    if (room > 0 && (woken || mono_us >= ln->next_poll_us)) {
        cs_out_delivery *buf = cs_calloc((size_t)room, sizeof *buf);
        int n = o->src.ops->claim(o->src.ctx, ln->c.name, now, now + ln->lease_ms, buf, room);
        if (n < 0) {
            report_err(o, "claim", ln->c.name);
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            ln->q[(ln->qhead + ln->qlen) % ln->c.queue_max] = buf[i];
            ln->qlen++;
        }
        free(buf);
        /* A full claim: there may be more, ask again next turn. */
        ln->next_poll_us = n == room ? mono_us : mono_us + (int64_t)o->poll_ms * 1000;
    }
    while (ln->qlen > 0 && ln->inflight < ln->c.concurrency && take_token(ln, now)) {
        cs_out_delivery d = ln->q[ln->qhead];
        ln->qhead = (ln->qhead + 1) % ln->c.queue_max;
        ln->qlen--;
        xfer_start(o, ln, &d);
    }
    pthread_mutex_lock(&o->mu);
    ln->st.queued = ln->qlen;
    ln->st.inflight = ln->inflight;
    pthread_mutex_unlock(&o->mu);
}

int cs_out_step(cs_out *o, int wait_ms)
{
    int woken = atomic_exchange(&o->woken, 0);
    int64_t mono = cs_mono_us();
    for (int i = 0; i < o->nlanes; i++) lane_turn(o, &o->lanes[i], woken, mono);
    int running = 0, done = 0;
    curl_multi_perform(o->multi, &running);
    done += harvest(o);
    if (done == 0 && wait_ms > 0) {
        /* Wait for the network, a wake-up, or the next lane poll. */
        int64_t until = mono + (int64_t)wait_ms * 1000;
        for (int i = 0; i < o->nlanes; i++)
            if (!o->lanes[i].off && o->lanes[i].qlen < o->lanes[i].c.queue_max &&
                o->lanes[i].next_poll_us < until)
                until = o->lanes[i].next_poll_us;
        int w = (int)((until - cs_mono_us()) / 1000);
        if (w > 0 && !atomic_load(&o->woken) && !atomic_load(&o->stopping))
            curl_multi_poll(o->multi, NULL, 0, w, NULL);
        curl_multi_perform(o->multi, &running);
        done += harvest(o);
    }
    if (done) { /* free slots: start the next ones now, not a turn later */
        mono = cs_mono_us();
        for (int i = 0; i < o->nlanes; i++) {
            lane *ln = &o->lanes[i];
            if (ln->qlen < ln->c.concurrency) ln->next_poll_us = mono; /* nearly drained: top up now */
            lane_turn(o, ln, 0, mono);
        }
        curl_multi_perform(o->multi, &running);
    }
    return done;
}

static void *loop(void *arg)
{
    cs_out *o = arg;
    pthread_setname_np(pthread_self(), "cs-dispatch");
    while (!atomic_load(&o->stopping)) cs_out_step(o, o->poll_ms);
    return NULL;
}

int cs_out_start(cs_out *o)
{
    if (o->started) return 0;
    atomic_store(&o->stopping, 0);
    if (pthread_create(&o->th, NULL, loop, o) != 0) return -1;
    o->started = 1;
    return 0;
}

void cs_out_wake(cs_out *o)
{
    atomic_store(&o->woken, 1);
    if (o->multi) curl_multi_wakeup(o->multi);
}

void cs_out_stop(cs_out *o)
{
    if (!o || !o->started) return;
    atomic_store(&o->stopping, 1);
    curl_multi_wakeup(o->multi);
    pthread_join(o->th, NULL);
    o->started = 0;
}

void cs_out_destroy(cs_out *o)
{
    if (!o) return;
    cs_out_stop(o);
    while (o->active) { /* abandoned mid-request: due again now, same id */
        xfer *x = o->active;
        xfer_unlink(o, x);
        release(o, &x->d);
        xfer_free(x);
    }
    for (int i = 0; i < o->nlanes; i++) {
        lane_release_queue(o, &o->lanes[i]);
        lane_free(&o->lanes[i]);
    }
    if (o->multi) curl_multi_cleanup(o->multi);
    free(o->lanes);
    free(o->user_agent);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

int cs_out_stats_get(cs_out *o, const char *dest, cs_out_stats *st)
{
    lane *ln = lane_find(o, dest);
    if (!ln) return -1;
    pthread_mutex_lock(&o->mu);
    *st = ln->st;
    pthread_mutex_unlock(&o->mu);
    return 0;
}

int cs_out_enable(cs_out *o, const char *dest)
{
    lane *ln = lane_find(o, dest);
    if (!ln) return -1;
    pthread_mutex_lock(&o->mu);
    ln->disabled = 0;
    ln->st.disabled = 0;
    pthread_mutex_unlock(&o->mu);
    cs_out_wake(o);
    return 0;
}
