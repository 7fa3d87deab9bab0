/*
 * metrics — a process-wide registry of counters, gauges and histograms,
 * rendered in Prometheus text format 0.0.4 for GET /metrics.
 *
 * Owns metric families and their series. Labels are a fixed, low-cardinality
 * string chosen by the caller (`source="native",reason="missing_field"`);
 * never an account id. Each family holds at most CS_METRIC_MAX_SERIES
 * series; past that, observations go to one series labelled
 * `overflow="true"` and are still counted. Hot paths keep the series
 * pointer and update it with one atomic add.
 */
#ifndef CS_METRICS_METRICS_H
#define CS_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define CS_METRIC_MAX_SERIES 64
#define CS_METRIC_MAX_BUCKETS 16

typedef struct cs_metric cs_metric;
typedef struct cs_series cs_series;

enum cs_metric_kind { CS_COUNTER, CS_GAUGE, CS_HISTOGRAM };

/* Register (or find, by name) a family. Names follow Prometheus rules:
 * counters end in _total, durations are _seconds. buckets: upper bounds,
 * ascending, for histograms (+Inf is implicit). */
cs_metric *cs_metric_counter(const char *name, const char *help);
cs_metric *cs_metric_gauge(const char *name, const char *help);
cs_metric *cs_metric_histogram(const char *name, const char *help, const double *buckets, size_t nbuckets);

/* The series with these labels (NULL or "" for none); created on first use.
 * NULL when m is NULL (a family not registered yet) or collection is off;
 * every update function accepts NULL and does nothing. */
cs_series *cs_metric_series(cs_metric *m, const char *labels);

void cs_counter_add(cs_series *s, uint64_t n);
void cs_gauge_set(cs_series *s, double v);
void cs_hist_observe(cs_series *s, double v);

/* Shorthands that look the series up each time (for cold paths). */
void cs_metric_inc(cs_metric *m, const char *labels, uint64_t n);

/* Gauges computed at scrape time: fn writes series lines with
 * cs_metrics_line(). */
typedef void (*cs_metric_collect_fn)(cs_buf *out, void *arg);
void cs_metric_collector(const char *name, const char *help, const char *type, cs_metric_collect_fn fn,
                         void *arg);
/* Registering fn = NULL under a name removes that collector (its arg is
 * about to be freed). */
void cs_metrics_line(cs_buf *out, const char *name, const char *labels, double v);

/* metrics.enabled: false switches collection off (for bench-metrics'
 * with/without comparison); rendering then shows empty families. */
void cs_metrics_disable(int off);
/* Mute metrics on the calling thread only (on = 1): every counter, gauge
 * and histogram update it makes is a no-op. The backtest's dry pipeline
 * threads set it, so a rehearsal never shows in the server's metrics. */
void cs_metrics_mute_thread(int on);

/* Render everything. */
void cs_metrics_render(cs_buf *out);

/* Read back (tests, summaries): value of a counter/gauge series, or the
 * count of a histogram series. */
double cs_series_value(const cs_series *s);

/* Forget every family (tests). */
void cs_metrics_reset(void);

#endif
