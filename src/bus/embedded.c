/*
 * bus/embedded — the bus over the in-process log (src/log/log.h): one
 * topic directory per topic, and an event count that wakes consumers when
 * anything becomes durable.
 *
 * The wakeup is a futex on the count itself, not a mutex and condition
 * variable: a producer (an HTTP thread acknowledging events) never takes a
 * lock a consumer holds. With a mutex, a pipeline worker that had just been
 * woken and held it when preempted kept every acknowledgement behind it —
 * the longer, the lower the worker's priority (pipeline.nice).
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"
#include "metrics/metrics.h"

struct embedded {
    cs_topic       *events;
    cs_topic       *leads;      /* the leads lane's topic: one partition */
    uint32_t        seq;        /* bumped by every produce (atomic; the futex word) */
    int             waiters;    /* threads in emb_wait (atomic) */
};

static void bump(struct embedded *e)
{
    /* Dekker with emb_wait: the count before the waiters here, the waiters
     * before the count there (both seq_cst): one of the two sees the other,
     * and FUTEX_WAIT itself rechecks the count. */
    __atomic_add_fetch(&e->seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&e->waiters, __ATOMIC_SEQ_CST) > 0)
        syscall(SYS_futex, &e->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static cs_topic *find(cs_bus *bus, const char *topic)
{
    struct embedded *e = bus->impl;
    if (strcmp(topic, CS_TOPIC_EVENTS) == 0) return e->events;
    return strcmp(topic, CS_TOPIC_LEADS) == 0 ? e->leads : NULL;
}

cs_topic *cs_bus_embedded_topic(cs_bus *bus, const char *topic)
{
    if (!bus || strcmp(bus->ops->name, "embedded") != 0) return NULL;
    return find(bus, topic);
}

static int emb_produce(cs_bus *bus, const char *topic, cs_msg *msgs, size_t n)
{
    struct embedded *e = bus->impl;
    cs_topic *t = find(bus, topic);
    if (!t) {
        errno = ENOENT;
        return -1;
    }
    /* Group the request's records by partition: one batch per partition
     * touched, all made durable together (one journal commit, log.h). */
    cs_rec *recs = cs_malloc((n ? n : 1) * sizeof *recs);
    size_t *idx = cs_malloc((n ? n : 1) * sizeof *idx);
    int nparts = cs_bus_topic_partitions(bus, topic);
    cs_topic_batch *tb = cs_malloc((size_t)nparts * sizeof *tb);
    size_t nb = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        msgs[i].partition = nparts == 1 ? 0 : cs_bus_partition(bus, msgs[i].key, msgs[i].key_len);
    for (int p = 0; p < nparts; p++) {
        size_t k0 = k;
        for (size_t i = 0; i < n; i++) {
            if (msgs[i].partition != p) continue;
            recs[k] = (cs_rec){.ts_us = msgs[i].ts_us, .key = msgs[i].key, .key_len = msgs[i].key_len,
                               .value = msgs[i].value, .value_len = msgs[i].value_len};
            idx[k++] = i;
        }
        if (k > k0) tb[nb++] = (cs_topic_batch){.partition = p, .recs = recs + k0, .n = k - k0};
    }
    int rc = cs_topic_append_multi(t, tb, nb);
    int err = rc == 0 ? 0 : errno;
    if (rc == 0)
        for (size_t j = 0; j < k; j++) msgs[idx[j]].offset = recs[j].offset;
    free(tb);
    free(recs);
    free(idx);
    bump(e); /* wakes the consumers only when some wait */
    errno = err;
    return rc;
}

static int emb_fetch(cs_bus *bus, const char *topic, int partition, int64_t from, size_t max,
                     cs_rec_cb cb, void *arg)
{
    cs_topic *t = find(bus, topic);
    if (!t || partition < 0 || partition >= bus->partitions) return -1;
    return cs_topic_read(t, partition, from, max, cb, arg);
}

static int64_t emb_end(cs_bus *bus, const char *topic, int partition)
{
    cs_topic *t = find(bus, topic);
    if (!t || partition < 0 || partition >= bus->partitions) return -1;
    return cs_topic_end(t, partition);
}

static int64_t emb_start(cs_bus *bus, const char *topic, int partition)
{
    cs_topic *t = find(bus, topic);
    if (!t || partition < 0 || partition >= bus->partitions) return -1;
    return cs_topic_start(t, partition);
}

static int64_t emb_offset_for_time(cs_bus *bus, const char *topic, int partition, int64_t ts_us)
{
    cs_topic *t = find(bus, topic);
    if (!t || partition < 0 || partition >= bus->partitions) return -1;
    return cs_topic_offset_for_time(t, partition, ts_us);
}

static int emb_commit(cs_bus *bus, const char *group, const char *topic, int partition, int64_t next)
{
    cs_topic *t = find(bus, topic);
    if (!t) {
        errno = ENOENT;
        return -1;
    }
    return cs_topic_group_commit(t, group, partition, next);
}

static int64_t emb_committed(cs_bus *bus, const char *group, const char *topic, int partition)
{
    cs_topic *t = find(bus, topic);
    return t ? cs_topic_group_committed(t, group, partition) : -1;
}

static uint64_t emb_wait(cs_bus *bus, uint64_t seen, int timeout_ms)
{
    struct embedded *e = bus->impl;
    uint32_t want = (uint32_t)seen;
    __atomic_add_fetch(&e->waiters, 1, __ATOMIC_SEQ_CST);
    int64_t deadline = cs_mono_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        if (__atomic_load_n(&e->seq, __ATOMIC_SEQ_CST) != want) break;
        int64_t left = deadline - cs_mono_us();
        if (left <= 0) break;
        struct timespec rel = {.tv_sec = left / 1000000, .tv_nsec = (left % 1000000) * 1000};
        syscall(SYS_futex, &e->seq, FUTEX_WAIT_PRIVATE, want, &rel, NULL, 0); /* woken, timed out, EAGAIN or EINTR */
    }
    __atomic_sub_fetch(&e->waiters, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&e->seq, __ATOMIC_SEQ_CST);
}

static void emb_wakeup(cs_bus *bus)
{
    bump(bus->impl); /* every waiter returns; the caller's stop flag ends its loop */
}

/* The events topic's journal (log/journal.h), at scrape time. */
static const struct {
    const char *name, *help;
} journal_metrics[] = {
    {"crmstream_log_journal_commits_total",
     "fdatasyncs of the events topic's journal: each makes every batch written meanwhile, in any partition, durable."},
    {"crmstream_log_journal_checkpoints_total",
     "Full journal files whose partitions were fdatasynced (log.journal_bytes per file)."},
    {"crmstream_log_journal_fallbacks_total",
     "Writes made durable by partition fdatasyncs instead of the journal (larger than a journal file, or a failed journal write)."},
};

static void collect_journal(cs_buf *out, void *arg, int which)
{
    cs_topic_stats st;
    cs_topic_get_stats(((struct embedded *)arg)->events, -1, &st);
    double v = which == 0 ? (double)st.journal_commits : which == 1 ? (double)st.journal_checkpoints
                                                                    : (double)st.journal_fallbacks;
    cs_metrics_line(out, journal_metrics[which].name, NULL, v);
}
static void collect_journal0(cs_buf *out, void *arg) { collect_journal(out, arg, 0); }
static void collect_journal1(cs_buf *out, void *arg) { collect_journal(out, arg, 1); }
static void collect_journal2(cs_buf *out, void *arg) { collect_journal(out, arg, 2); }

static void emb_close(cs_bus *bus)
{
    if (!bus) return;
    struct embedded *e = bus->impl;
    if (e) {
        if (e->events)
            for (size_t i = 0; i < sizeof journal_metrics / sizeof journal_metrics[0]; i++)
                cs_metric_collector(journal_metrics[i].name, "", "counter", NULL, NULL);
        cs_topic_close(e->events);
        cs_topic_close(e->leads);
        free(e);
    }
    free(bus);
}

static const struct cs_bus_ops embedded_ops = {
    .name = "embedded",
    .produce = emb_produce,
    .fetch = emb_fetch,
    .end_offset = emb_end,
    .wait = emb_wait,
    .wakeup = emb_wakeup,
    .close = emb_close,
    .offset_for_time = emb_offset_for_time,
    .commit = emb_commit,
    .committed = emb_committed,
    .start_offset = emb_start,
};

cs_bus *cs_bus_embedded_open_opts(const char *data_dir, const cs_topic_opts *o, char *err, size_t errlen)
{
    cs_bus *bus = cs_calloc(1, sizeof *bus);
    struct embedded *e = cs_calloc(1, sizeof *e);
    bus->ops = &embedded_ops;
    bus->impl = e;
    bus->partitions = o->partitions;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/log/%s", data_dir, CS_TOPIC_EVENTS);
    int64_t t0 = cs_mono_us();
    e->events = cs_topic_open(dir, o, err, errlen);
    if (!e->events) {
        emb_close(bus);
        return NULL;
    }
    /* The pipeline's group is registered from the start, so retention
     * never deletes what it has not committed (DESIGN-BRIEF §3.1). */
    if (cs_topic_group_register(e->events, "pipeline") != 0) {
        snprintf(err, errlen, "%s/groups/pipeline.off: %s", dir, strerror(errno));
        emb_close(bus);
        return NULL;
    }
    /* The leads lane (DESIGN-BRIEF §3.5): lead and signup events, in
     * ingest order, one partition; same durability settings. */
    cs_topic_opts lo = *o;
    lo.partitions = 1;
    snprintf(dir, sizeof dir, "%s/log/%s", data_dir, CS_TOPIC_LEADS);
    e->leads = cs_topic_open(dir, &lo, err, errlen);
    if (!e->leads || cs_topic_group_register(e->leads, "pipeline") != 0) {
        if (e->leads) snprintf(err, errlen, "%s/groups/pipeline.off: %s", dir, strerror(errno));
        emb_close(bus);
        return NULL;
    }
    snprintf(dir, sizeof dir, "%s/log/%s", data_dir, CS_TOPIC_EVENTS);
    cs_topic_stats st;
    cs_topic_get_stats(e->events, -1, &st);
    cs_metric_collector(journal_metrics[0].name, journal_metrics[0].help, "counter", collect_journal0, e);
    cs_metric_collector(journal_metrics[1].name, journal_metrics[1].help, "counter", collect_journal1, e);
    cs_metric_collector(journal_metrics[2].name, journal_metrics[2].help, "counter", collect_journal2, e);
    cs_info("log", "opened", "\"dir\":\"%s\",\"partitions\":%d,\"segments\":%lld,\"bytes\":%lld,"
            "\"truncated_bytes\":%lld,\"indexes_rebuilt\":%lld,\"temp_removed\":%lld,\"ms\":%.1f",
            dir, o->partitions, (long long)st.segments, (long long)st.bytes, (long long)st.truncated_bytes,
            (long long)st.indexes_rebuilt, (long long)st.temp_removed, (double)(cs_mono_us() - t0) / 1000.0);
    return bus;
}

cs_bus *cs_bus_embedded_open_cfg(const char *data_dir, const cs_config *cfg, char *err, size_t errlen)
{
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.partitions = cfg->partitions;
    o.fsync_policy = cfg->fsync_policy;
    o.fsync_interval_ms = cfg->fsync_interval_ms;
    o.segment_bytes = cfg->segment_bytes;
    o.index_interval = (uint32_t)cfg->index_interval_bytes;
    o.retention_ms = cfg->retention_ms;
    o.retention_bytes = cfg->retention_bytes;
    o.journal_bytes = cfg->journal_bytes;
    o.compression = cfg->compress;
    o.compression_level = cfg->compression_level;
    return cs_bus_embedded_open_opts(data_dir, &o, err, errlen);
}

cs_bus *cs_bus_embedded_open(const char *data_dir, int partitions, int policy, int interval_ms,
                             char *err, size_t errlen)
{
    cs_topic_opts o;
    cs_topic_opts_default(&o);
    o.partitions = partitions;
    o.fsync_policy = policy;
    o.fsync_interval_ms = interval_ms;
    return cs_bus_embedded_open_opts(data_dir, &o, err, errlen);
}
