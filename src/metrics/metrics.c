/*
 * metrics — registry and Prometheus text rendering.
 */
#include "metrics/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct cs_series {
    struct cs_metric *m;                         /* the family (for bounds) */
    char     labels[160];
    uint64_t count;                              /* counter value or histogram count */
    uint64_t gauge_bits;                         /* gauge value, as double bits */
    uint64_t sum_bits;                           /* histogram sum, as double bits (CAS) */
    uint64_t buckets[CS_METRIC_MAX_BUCKETS];     /* histogram, non-cumulative */
};

struct cs_metric {
    char                name[96];
    char                help[200];
    enum cs_metric_kind kind;
    double              bounds[CS_METRIC_MAX_BUCKETS];
    size_t              nbounds;
    cs_series           series[CS_METRIC_MAX_SERIES + 1]; /* last: overflow */
    size_t              nseries;                          /* published with release */
};

struct collector {
    char                 name[96], help[200], type[16];
    cs_metric_collect_fn fn;
    void                *arg;
};

#define MAX_FAMILIES 96
#define MAX_COLLECTORS 16
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static cs_metric *families[MAX_FAMILIES];
static size_t nfamilies;
static struct collector collectors[MAX_COLLECTORS];
static size_t ncollectors;

static cs_metric *reg(const char *name, const char *help, enum cs_metric_kind kind, const double *b, size_t nb)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nfamilies; i++)
        if (strcmp(families[i]->name, name) == 0) {
            pthread_mutex_unlock(&mu);
            return families[i];
        }
    if (nfamilies == MAX_FAMILIES) abort(); /* a programming error: raise MAX_FAMILIES */
    cs_metric *m = cs_calloc(1, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    snprintf(m->help, sizeof m->help, "%s", help);
    m->kind = kind;
    m->nbounds = nb < CS_METRIC_MAX_BUCKETS ? nb : CS_METRIC_MAX_BUCKETS;
    for (size_t i = 0; i < m->nbounds; i++) m->bounds[i] = b[i];
    for (size_t k = 0; k <= CS_METRIC_MAX_SERIES; k++) m->series[k].m = m;
    snprintf(m->series[CS_METRIC_MAX_SERIES].labels, sizeof m->series[0].labels, "overflow=\"true\"");
    families[nfamilies++] = m;
    pthread_mutex_unlock(&mu);
    return m;
}

cs_metric *cs_metric_counter(const char *name, const char *help)
{
    return reg(name, help, CS_COUNTER, NULL, 0);
}

cs_metric *cs_metric_gauge(const char *name, const char *help)
{
    return reg(name, help, CS_GAUGE, NULL, 0);
}

cs_metric *cs_metric_histogram(const char *name, const char *help, const double *b, size_t nb)
{
    return reg(name, help, CS_HISTOGRAM, b, nb);
}

static int disabled;

void cs_metrics_disable(int off)
{
    __atomic_store_n(&disabled, off, __ATOMIC_RELAXED);
}

static _Thread_local int muted; /* cs_metrics_mute_thread */

/* Benchmarks only: CRMSTREAM_HIST_TRACE=FAMILY=PATH appends one line per
 * observation of histogram FAMILY to PATH: "<labels> <value> <wall_us>"
 * (wall_us: CLOCK_REALTIME when observed), so bench-e2e gets exact
 * per-lead figures instead of bucket bounds. At most 10 million lines. */
#define TRACE_MAX 10000000L
static pthread_once_t trace_once = PTHREAD_ONCE_INIT;
static char trace_family[96];
static FILE *trace_f;
static long trace_lines;
static pthread_mutex_t trace_mu = PTHREAD_MUTEX_INITIALIZER;

static void trace_init(void)
{
    const char *e = getenv("CRMSTREAM_HIST_TRACE");
    const char *eq = e ? strchr(e, '=') : NULL;
    if (!eq || (size_t)(eq - e) >= sizeof trace_family) return;
    memcpy(trace_family, e, (size_t)(eq - e));
    trace_f = fopen(eq + 1, "a");
    if (trace_f) setvbuf(trace_f, NULL, _IOLBF, 0);
}

static void trace_observe(const cs_series *s, double v)
{
    pthread_once(&trace_once, trace_init);
    if (!trace_f || strcmp(s->m->name, trace_family) != 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&trace_mu);
    if (trace_lines < TRACE_MAX) {
        trace_lines++;
        fprintf(trace_f, "%s %.9f %lld\n", s->labels, v, (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000);
    }
    pthread_mutex_unlock(&trace_mu);
}

void cs_metrics_mute_thread(int on)
{
    muted = on;
}

cs_series *cs_metric_series(cs_metric *m, const char *labels)
{
    /* A family not registered yet (a component used without its init), or
     * collection switched off: no series, and every update is a no-op. */
    if (!m || muted || __atomic_load_n(&disabled, __ATOMIC_RELAXED)) return NULL;
    if (!labels) labels = "";
    size_t n = __atomic_load_n(&m->nseries, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < n; i++)
        if (strcmp(m->series[i].labels, labels) == 0) return &m->series[i];
    pthread_mutex_lock(&mu);
    n = m->nseries;
    for (size_t i = 0; i < n; i++)
        if (strcmp(m->series[i].labels, labels) == 0) {
            pthread_mutex_unlock(&mu);
            return &m->series[i];
        }
    cs_series *s = &m->series[CS_METRIC_MAX_SERIES];
    if (n < CS_METRIC_MAX_SERIES && strlen(labels) < sizeof s->labels) {
        s = &m->series[n];
        snprintf(s->labels, sizeof s->labels, "%s", labels);
        __atomic_store_n(&m->nseries, n + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&mu);
    return s;
}

void cs_counter_add(cs_series *s, uint64_t n)
{
    if (!s || muted) return;
    __atomic_add_fetch(&s->count, n, __ATOMIC_RELAXED);
}

static uint64_t dbits(double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return u;
}

static double bitsd(uint64_t u)
{
    double v;
    memcpy(&v, &u, 8);
    return v;
}

void cs_gauge_set(cs_series *s, double v)
{
    if (!s || muted) return;
    __atomic_store_n(&s->gauge_bits, dbits(v), __ATOMIC_RELAXED);
}

void cs_hist_observe(cs_series *s, double v)
{
    if (!s || muted) return;
    const cs_metric *m = s->m;
    size_t b = 0;
    while (b < m->nbounds && v > m->bounds[b]) b++;
    if (b < m->nbounds) __atomic_add_fetch(&s->buckets[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
    uint64_t old = __atomic_load_n(&s->sum_bits, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&s->sum_bits, &old, dbits(bitsd(old) + v), 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
    trace_observe(s, v);
}

void cs_metric_inc(cs_metric *m, const char *labels, uint64_t n)
{
    cs_counter_add(cs_metric_series(m, labels), n);
}

void cs_metric_collector(const char *name, const char *help, const char *type, cs_metric_collect_fn fn, void *arg)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < ncollectors; i++)
        if (strcmp(collectors[i].name, name) == 0) {
            collectors[i].fn = fn;
            collectors[i].arg = arg;
            pthread_mutex_unlock(&mu);
            return;
        }
    if (ncollectors == MAX_COLLECTORS) abort();
    struct collector *c = &collectors[ncollectors++];
    snprintf(c->name, sizeof c->name, "%s", name);
    snprintf(c->help, sizeof c->help, "%s", help);
    snprintf(c->type, sizeof c->type, "%s", type);
    c->fn = fn;
    c->arg = arg;
    pthread_mutex_unlock(&mu);
}

static void fmt_num(cs_buf *out, double v)
{
    if (isinf(v)) cs_buf_adds(out, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v)) cs_buf_adds(out, "NaN");
    else if (v == floor(v) && fabs(v) < 1e15) cs_buf_printf(out, "%.0f", v);
    else cs_buf_printf(out, "%.9g", v);
}

void cs_metrics_line(cs_buf *out, const char *name, const char *labels, double v)
{
    cs_buf_adds(out, name);
    if (labels && *labels) cs_buf_printf(out, "{%s}", labels);
    cs_buf_adds(out, " ");
    fmt_num(out, v);
    cs_buf_adds(out, "\n");
}

static void render_hist(cs_buf *out, const cs_metric *m, const cs_series *s)
{
    char name[128], lab[256];
    uint64_t cum = 0;
    snprintf(name, sizeof name, "%s_bucket", m->name);
    for (size_t b = 0; b < m->nbounds; b++) {
        cum += __atomic_load_n(&s->buckets[b], __ATOMIC_RELAXED);
        cs_buf b2;
        cs_buf_init(&b2);
        fmt_num(&b2, m->bounds[b]);
        snprintf(lab, sizeof lab, "%s%sle=\"%s\"", s->labels, *s->labels ? "," : "", b2.data);
        cs_buf_free(&b2);
        cs_metrics_line(out, name, lab, (double)cum);
    }
    uint64_t count = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
    snprintf(lab, sizeof lab, "%s%sle=\"+Inf\"", s->labels, *s->labels ? "," : "");
    cs_metrics_line(out, name, lab, (double)count);
    snprintf(name, sizeof name, "%s_sum", m->name);
    cs_metrics_line(out, name, s->labels, bitsd(__atomic_load_n(&s->sum_bits, __ATOMIC_RELAXED)));
    snprintf(name, sizeof name, "%s_count", m->name);
    cs_metrics_line(out, name, s->labels, (double)count);
}

void cs_metrics_render(cs_buf *out)
{
    static const char *const kinds[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&mu);
    size_t nf = nfamilies, nc = ncollectors;
    pthread_mutex_unlock(&mu);
    for (size_t i = 0; i < nf; i++) {
        const cs_metric *m = families[i];
        size_t n = __atomic_load_n(&m->nseries, __ATOMIC_ACQUIRE);
        int overflow = __atomic_load_n(&m->series[CS_METRIC_MAX_SERIES].count, __ATOMIC_RELAXED) != 0;
        cs_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, kinds[m->kind]);
        if (n == 0 && !overflow && m->kind == CS_COUNTER) cs_metrics_line(out, m->name, NULL, 0);
        for (size_t k = 0; k <= CS_METRIC_MAX_SERIES; k++) {
            if (k >= n && !(k == CS_METRIC_MAX_SERIES && overflow)) continue;
            const cs_series *s = &m->series[k];
            if (m->kind == CS_HISTOGRAM) render_hist(out, m, s);
            else if (m->kind == CS_GAUGE)
                cs_metrics_line(out, m->name, s->labels, bitsd(__atomic_load_n(&s->gauge_bits, __ATOMIC_RELAXED)));
            else cs_metrics_line(out, m->name, s->labels, (double)__atomic_load_n(&s->count, __ATOMIC_RELAXED));
        }
    }
    for (size_t i = 0; i < nc; i++) {
        if (!collectors[i].fn) continue; /* removed */
        cs_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", collectors[i].name, collectors[i].help,
                      collectors[i].name, collectors[i].type);
        collectors[i].fn(out, collectors[i].arg);
    }
}

double cs_series_value(const cs_series *s)
{
    if (!s) return 0;
    uint64_t g = __atomic_load_n(&s->gauge_bits, __ATOMIC_RELAXED);
    return g ? bitsd(g) : (double)__atomic_load_n(&s->count, __ATOMIC_RELAXED);
}

void cs_metrics_reset(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nfamilies; i++) free(families[i]);
    nfamilies = 0;
    ncollectors = 0;
    pthread_mutex_unlock(&mu);
}
