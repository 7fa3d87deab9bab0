/*
 * pipeline/replay — moving the pipeline's authoritative position (its store
 * offsets) for a replay; see cs_pipeline_replay_move in pipeline.h. The
 * running-pipeline variant (cs_pipeline_replay) is in pipeline.c, because it
 * pauses the worker between batches.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/logging.h"
#include "core/util.h"
#include "pipeline/pipeline.h"

void cs_replay_result_free(cs_replay_result *r)
{
    if (!r) return;
    free(r->v);
    r->v = NULL;
    r->n = 0;
    r->events = 0;
}

int cs_pipeline_replay_move(cs_bus *bus, cs_store *st, const cs_replay_req *req, cs_replay_result *res, int *usage,
                            char *err, size_t errlen)
{
    int P = bus->partitions;
    *usage = 0;
    res->v = NULL, res->n = 0, res->events = 0;
    if (req->partition < -1 || req->partition >= P) {
        snprintf(err, errlen, "partition %d does not exist (the topic has %d: 0..%d)", req->partition, P, P - 1);
        *usage = 1;
        return -1;
    }
    if (!req->rebuild && req->from_offset < 0 && !bus->ops->offset_for_time) {
        snprintf(err, errlen, "the %s bus cannot look offsets up by time", bus->ops->name);
        return -1;
    }
    int first = req->partition < 0 ? 0 : req->partition, last = req->partition < 0 ? P - 1 : req->partition;
    res->v = cs_calloc((size_t)(last - first + 1), sizeof *res->v);
    for (int p = first; p <= last; p++) {
        cs_replay_part *x = &res->v[res->n++];
        x->partition = p;
        x->start = bus->ops->start_offset ? bus->ops->start_offset(bus, CS_TOPIC_EVENTS, p) : 0;
        x->end = bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p);
        if (x->start < 0 || x->end < 0) {
            snprintf(err, errlen, "partition %d: cannot read the log's offsets", p);
            goto fail;
        }
        if (st->ops->offset_get(st, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, p, &x->before)) {
            snprintf(err, errlen, "reading the pipeline's offsets: %s", st->errmsg);
            goto fail;
        }
        int64_t target;
        if (req->rebuild) target = x->start;
        else if (req->from_offset >= 0) target = req->from_offset;
        else {
            target = bus->ops->offset_for_time(bus, CS_TOPIC_EVENTS, p, req->from_time_us);
            if (target < 0) {
                snprintf(err, errlen, "partition %d: the time lookup failed (a damaged log? see the server log)", p);
                goto fail;
            }
        }
        if (target < x->start) target = x->start; /* the first offset at or after it that is kept */
        if (target > x->end) target = x->end;
        /* Never forward: that would skip events never applied. */
        x->after = target < x->before ? target : x->before;
        res->events += x->end - x->after;
    }
    if (req->rebuild && !st->ops->signals_clear) {
        snprintf(err, errlen, "the %s store cannot clear signal state", st->ops->name);
        goto fail;
    }
    if (st->ops->begin(st)) {
        snprintf(err, errlen, "store: %s", st->errmsg);
        goto fail;
    }
    for (int i = 0; i < res->n; i++)
        if (st->ops->offset_set(st, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, res->v[i].partition, res->v[i].after))
            goto fail_tx;
    if (req->rebuild && st->ops->signals_clear(st, req->partition)) goto fail_tx;
    /* Snapshots past the new position no longer describe the state there;
     * --rebuild recomputes from nothing. */
    for (int i = 0; i < res->n && st->ops->snapshot_put && st->ops->snapshot_get; i++) {
        int64_t at;
        void *data = NULL;
        size_t len;
        int g = st->ops->snapshot_get(st, CS_SNAPSHOT_SIGNALS, res->v[i].partition, &at, &data, &len);
        free(data);
        if (g < 0) goto fail_tx;
        if (g == 0 && (req->rebuild || at > res->v[i].after) &&
            st->ops->snapshot_put(st, CS_SNAPSHOT_SIGNALS, res->v[i].partition, 0, NULL, 0))
            goto fail_tx;
    }
    if (st->ops->commit(st)) goto fail_tx;
    /* The log's group offsets follow (retention keeps what is to be
     * replayed); the store's are the authority, so this is best effort. */
    for (int i = 0; i < res->n && bus->ops->commit; i++)
        if (bus->ops->commit(bus, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, res->v[i].partition, res->v[i].after))
            cs_warn("replay", "cannot move the log's group offset (retention may delete what is replayed)",
                    "\"partition\":%d", res->v[i].partition);
    for (int i = 0; i < res->n; i++)
        cs_info("replay", "pipeline position moved",
                "\"partition\":%d,\"from\":%lld,\"to\":%lld,\"log_end\":%lld,\"rebuild\":%s", res->v[i].partition,
                (long long)res->v[i].before, (long long)res->v[i].after, (long long)res->v[i].end,
                req->rebuild ? "true" : "false");
    return 0;
fail_tx:
    snprintf(err, errlen, "store: %s", st->errmsg);
    st->ops->rollback(st);
fail:
    cs_replay_result_free(res);
    return -1;
}
