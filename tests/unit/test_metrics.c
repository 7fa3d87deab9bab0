/*
 * The metrics registry renders valid Prometheus text 0.0.4: HELP/TYPE,
 * counters, labelled series, cumulative histogram buckets with +Inf, _sum
 * and _count; series past the cap go to one overflow series; concurrent
 * increments are all counted.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "metrics/metrics.h"

static int has(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "%s\n", line);
    return strstr(text, want) != NULL;
}

static int reset(void **state)
{
    (void)state;
    cs_metrics_reset();
    return 0;
}

static void test_counter_and_labels(void **state)
{
    (void)state;
    cs_metric *m = cs_metric_counter("crmstream_events_received_total", "Events received.");
    cs_metric_inc(m, "source=\"native\"", 3);
    cs_metric_inc(m, "source=\"segment\"", 1);
    cs_metric_inc(m, "source=\"native\"", 2);
    assert_ptr_equal(cs_metric_counter("crmstream_events_received_total", "x"), m); /* found by name */
    cs_buf b;
    cs_buf_init(&b);
    cs_metrics_render(&b);
    assert_true(has(b.data, "# HELP crmstream_events_received_total Events received."));
    assert_true(has(b.data, "# TYPE crmstream_events_received_total counter"));
    assert_true(has(b.data, "crmstream_events_received_total{source=\"native\"} 5"));
    assert_true(has(b.data, "crmstream_events_received_total{source=\"segment\"} 1"));
    cs_buf_free(&b);
}

static void test_histogram_buckets_are_cumulative(void **state)
{
    (void)state;
    static const double bounds[] = {0.001, 0.01, 0.1};
    cs_metric *h = cs_metric_histogram("crmstream_latency_seconds", "Latency.", bounds, 3);
    cs_series *s = cs_metric_series(h, "stage=\"routed\"");
    cs_hist_observe(s, 0.0005);
    cs_hist_observe(s, 0.005);
    cs_hist_observe(s, 0.005);
    cs_hist_observe(s, 5);
    cs_buf b;
    cs_buf_init(&b);
    cs_metrics_render(&b);
    assert_true(has(b.data, "# TYPE crmstream_latency_seconds histogram"));
    assert_true(has(b.data, "crmstream_latency_seconds_bucket{stage=\"routed\",le=\"0.001\"} 1"));
    assert_true(has(b.data, "crmstream_latency_seconds_bucket{stage=\"routed\",le=\"0.01\"} 3"));
    assert_true(has(b.data, "crmstream_latency_seconds_bucket{stage=\"routed\",le=\"0.1\"} 3"));
    assert_true(has(b.data, "crmstream_latency_seconds_bucket{stage=\"routed\",le=\"+Inf\"} 4"));
    assert_true(has(b.data, "crmstream_latency_seconds_count{stage=\"routed\"} 4"));
    assert_true(has(b.data, "crmstream_latency_seconds_sum{stage=\"routed\"} 5.0105"));
    cs_buf_free(&b);
}

static void test_series_cap_overflows_into_one_series(void **state)
{
    (void)state;
    cs_metric *m = cs_metric_counter("crmstream_many_total", "Many.");
    for (int i = 0; i < CS_METRIC_MAX_SERIES + 10; i++) {
        char l[32];
        snprintf(l, sizeof l, "k=\"%d\"", i);
        cs_metric_inc(m, l, 1);
    }
    cs_buf b;
    cs_buf_init(&b);
    cs_metrics_render(&b);
    assert_true(has(b.data, "crmstream_many_total{k=\"0\"} 1"));
    assert_true(has(b.data, "crmstream_many_total{overflow=\"true\"} 10"));
    char l[64];
    snprintf(l, sizeof l, "crmstream_many_total{k=\"%d\"}", CS_METRIC_MAX_SERIES);
    assert_null(strstr(b.data, l));
    cs_buf_free(&b);
}

static cs_series *shared;
static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) cs_counter_add(shared, 1);
    return NULL;
}

static void test_concurrent_increments_all_counted(void **state)
{
    (void)state;
    shared = cs_metric_series(cs_metric_counter("crmstream_conc_total", "C."), NULL);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, bump, NULL);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_true(cs_series_value(shared) == 400000.0);
}

static void collect(cs_buf *out, void *arg)
{
    cs_metrics_line(out, "kafka_consumergroup_lag", "consumergroup=\"pipeline\",topic=\"events\",partition=\"0\"",
                    (double)*(int *)arg);
}

static void test_collectors_render_at_scrape_time(void **state)
{
    (void)state;
    int lag = 7;
    cs_metric_collector("kafka_consumergroup_lag", "Lag.", "gauge", collect, &lag);
    cs_buf b;
    cs_buf_init(&b);
    lag = 9;
    cs_metrics_render(&b);
    assert_true(has(b.data, "# TYPE kafka_consumergroup_lag gauge"));
    assert_true(has(b.data, "kafka_consumergroup_lag{consumergroup=\"pipeline\",topic=\"events\",partition=\"0\"} 9"));
    cs_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_counter_and_labels, reset),
        cmocka_unit_test_setup(test_histogram_buckets_are_cumulative, reset),
        cmocka_unit_test_setup(test_series_cap_overflows_into_one_series, reset),
        cmocka_unit_test_setup(test_concurrent_increments_all_counted, reset),
        cmocka_unit_test_setup(test_collectors_render_at_scrape_time, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
