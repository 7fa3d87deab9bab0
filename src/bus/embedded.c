/*
 * bus/embedded — the bus over the in-process log (src/log): one directory
 * per topic, one plog file per partition, a condition variable that wakes
 * consumers when anything becomes durable.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "core/hash.h"
#include "core/logging.h"
#include "core/util.h"

struct topic {
    char     *name;
    cs_plog **parts;
};

struct embedded {
    struct topic    events;
    int             nparts;
    pthread_mutex_t mu;
    pthread_cond_t  cond;
    uint64_t        seq;
    int             stopping;
};

static struct topic *find(cs_bus *bus, const char *topic)
{
    struct embedded *e = bus->impl;
    return strcmp(topic, e->events.name) == 0 ? &e->events : NULL;
}

int cs_bus_partition(const cs_bus *bus, const char *key, size_t len)
{
    return cs_partition_for(key, len, bus->partitions);
}

static int emb_produce(cs_bus *bus, const char *topic, cs_msg *msgs, size_t n)
{
    struct embedded *e = bus->impl;
    struct topic *t = find(bus, topic);
    if (!t) {
        errno = ENOENT;
        return -1;
    }
    /* Group the request's records by partition: one batch (one write, one
     * shared fsync) per partition touched. */
    cs_rec *recs = cs_malloc(n * sizeof *recs);
    size_t *idx = cs_malloc(n * sizeof *idx);
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        msgs[i].partition = cs_bus_partition(bus, msgs[i].key, msgs[i].key_len);
    for (int p = 0; p < e->nparts && rc == 0; p++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (msgs[i].partition != p) continue;
            recs[k] = (cs_rec){.ts_us = msgs[i].ts_us, .key = msgs[i].key, .key_len = msgs[i].key_len,
                               .value = msgs[i].value, .value_len = msgs[i].value_len};
            idx[k++] = i;
        }
        if (k == 0) continue;
        if (cs_plog_append(t->parts[p], recs, k) != 0) {
            rc = -1;
            break;
        }
        for (size_t j = 0; j < k; j++) msgs[idx[j]].offset = recs[j].offset;
    }
    free(recs);
    free(idx);
    pthread_mutex_lock(&e->mu);
    e->seq++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

static int emb_fetch(cs_bus *bus, const char *topic, int partition, int64_t from, size_t max,
                     cs_rec_cb cb, void *arg)
{
    struct topic *t = find(bus, topic);
    if (!t || partition < 0 || partition >= bus->partitions) return -1;
    return cs_plog_read(t->parts[partition], from, max, cb, arg);
}

static int64_t emb_end(cs_bus *bus, const char *topic, int partition)
{
    struct topic *t = find(bus, topic);
    if (!t || partition < 0 || partition >= bus->partitions) return -1;
    return cs_plog_end(t->parts[partition]);
}

static uint64_t emb_wait(cs_bus *bus, uint64_t seen, int timeout_ms)
{
    struct embedded *e = bus->impl;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&e->mu);
    while (e->seq == seen && !e->stopping)
        if (pthread_cond_timedwait(&e->cond, &e->mu, &ts) == ETIMEDOUT) break;
    uint64_t s = e->seq;
    pthread_mutex_unlock(&e->mu);
    return s;
}

static void emb_wakeup(cs_bus *bus)
{
    struct embedded *e = bus->impl;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
}

static void emb_close(cs_bus *bus)
{
    if (!bus) return;
    struct embedded *e = bus->impl;
    if (e) {
        for (int p = 0; e->events.parts && p < e->nparts; p++) cs_plog_close(e->events.parts[p]);
        free(e->events.parts);
        free(e->events.name);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cond);
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
};

cs_bus *cs_bus_embedded_open(const char *data_dir, int partitions, int policy, int interval_ms,
                             char *err, size_t errlen)
{
    cs_bus *bus = cs_calloc(1, sizeof *bus);
    struct embedded *e = cs_calloc(1, sizeof *e);
    bus->ops = &embedded_ops;
    bus->impl = e;
    bus->partitions = partitions;
    e->nparts = partitions;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cond, NULL);
    e->events.name = cs_strdup(CS_TOPIC_EVENTS);
    e->events.parts = cs_calloc((size_t)partitions, sizeof *e->events.parts);
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/log/%s", data_dir, CS_TOPIC_EVENTS);
    if (cs_mkdirs(dir, 0755) != 0) {
        snprintf(err, errlen, "%s: mkdir: %s", dir, strerror(errno));
        emb_close(bus);
        return NULL;
    }
    for (int p = 0; p < partitions; p++) {
        snprintf(path, sizeof path, "%s/%05d.log", dir, p);
        e->events.parts[p] = cs_plog_open(path, policy, interval_ms, err, errlen);
        if (!e->events.parts[p]) {
            emb_close(bus);
            return NULL;
        }
    }
    return bus;
}
