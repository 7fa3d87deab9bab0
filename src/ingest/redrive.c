/*
 * ingest/redrive — put a dead-lettered event back on the log (`crmstream
 * dlq redrive --kind event`, POST /api/v1/dlq/redrive): its original bytes
 * with the marker "_redrive": "<dlq id>", appended to `events` under its
 * original key. The dedupe window holds the key "redrive:<dlq id>", so the
 * same entry redriven twice is appended once; the pipeline applies the
 * first copy it meets and marks the entry "redriven" (pipeline.c), so even
 * a copy the window no longer remembers has no second effect.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "bus/bus.h"
#include "ingest/ingest.h"

#define MARK "\"_redrive\":\""

void cs_ingest_redrive_key(const char *dlq_id, size_t len, uint64_t id[2])
{
    char k[160];
    int n = snprintf(k, sizeof k, "redrive:%.*s", (int)(len < 140 ? len : 140), dlq_id);
    XXH128_hash_t h = XXH3_128bits(k, (size_t)n);
    id[0] = h.high64, id[1] = h.low64;
}

int cs_ingest_redrive_mark(const char *v, size_t len, const char **id, size_t *idlen)
{
    /* The marker is the record's last member (cs_ingest_redrive puts it
     * there), so a property of the same name deeper inside never counts. */
    const char *m = NULL, *from = v;
    for (const char *x; (x = memmem(from, (size_t)(v + len - from), MARK, sizeof MARK - 1)); from = x + 1) m = x;
    if (!m) return 0;
    const char *s = m + sizeof MARK - 1, *e = memchr(s, '"', (size_t)(v + len - s));
    if (!e || e == s || e + 2 != v + len || e[1] != '}') return 0;
    *id = s;
    *idlen = (size_t)(e - s);
    return 1;
}

int cs_ingest_redrive(cs_ingest *ing, const char *dlq_id, const char *key, const char *json, size_t len)
{
    /* The original object with the marker as its last member. */
    const char *end = json + len;
    while (end > json && (end[-1] == ' ' || end[-1] == '\n' || end[-1] == '\r' || end[-1] == '\t')) end--;
    if (end == json || end[-1] != '}' || memmem(json, len, MARK, sizeof MARK - 1)) {
        errno = EINVAL;
        return -1;
    }
    cs_buf v;
    cs_buf_init(&v);
    cs_buf_add(&v, json, (size_t)(end - 1 - json));
    cs_buf_adds(&v, ",\"_redrive\":");
    cs_buf_json_str(&v, dlq_id);
    cs_buf_adds(&v, "}");
    uint64_t id[2];
    cs_ingest_redrive_key(dlq_id, strlen(dlq_id), id);
    cs_dedupe *d = &ing->dedupe;
    uint32_t owner = cs_dedupe_owner(d), now_s = (uint32_t)(cs_now_us() / 1000000);
    enum cs_dd_result r;
    while ((r = cs_dedupe_claim(d, id, 0, now_s, owner)) == CS_DD_BUSY) cs_dedupe_wait(d, id, 10000);
    if (r != CS_DD_NEW) {
        cs_buf_free(&v);
        return 0;
    }
    cs_msg m = {.key = key, .key_len = strlen(key), .value = v.data, .value_len = v.len, .ts_us = cs_now_us()};
    int rc = ing->bus->ops->produce(ing->bus, CS_TOPIC_EVENTS, &m, 1);
    cs_dedupe_resolve(d, owner, (const uint64_t(*)[2])id, 1, rc == 0);
    cs_buf_free(&v);
    return rc == 0 ? 1 : -1;
}
