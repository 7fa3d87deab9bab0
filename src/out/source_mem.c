/*
 * out/source_mem — see source_mem.h. A flat array scanned under one mutex:
 * tests and the benchmark hold thousands of rows, not millions.
 */
#include "out/source_mem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct mem_row {
    cs_out_delivery d;        /* payload owned */
    cs_out_state    state;
    int64_t         lease_until;
    int64_t         delivered_ms;
    int             claims, releases;
    int64_t         seq;
    char            reason[512];
} mem_row;

struct cs_out_mem {
    pthread_mutex_t mu;
    mem_row        *rows;
    size_t          n, cap;
    size_t          lo;       /* rows[0..lo) are delivered or dead */
    size_t         *idx;      /* open addressing: row index + 1, 0 = empty */
    size_t          idxcap;   /* a power of two, > 2 n */
    int             frozen;
    int             counts[4];  /* rows per state */
};

cs_out_mem *cs_out_mem_new(void)
{
    cs_out_mem *m = cs_calloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void cs_out_mem_free(cs_out_mem *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) free(m->rows[i].d.payload);
    free(m->rows);
    free(m->idx);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static size_t hash_id(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (size_t)h;
}

static mem_row *find(cs_out_mem *m, const char *id)
{
    if (!m->idxcap) return NULL;
    for (size_t i = hash_id(id) & (m->idxcap - 1);; i = (i + 1) & (m->idxcap - 1)) {
        if (!m->idx[i]) return NULL;
        mem_row *r = &m->rows[m->idx[i] - 1];
        if (strcmp(r->d.id, id) == 0) return r;
    }
}

static void idx_put(cs_out_mem *m, size_t row)
{
    size_t i = hash_id(m->rows[row].d.id) & (m->idxcap - 1);
    while (m->idx[i]) i = (i + 1) & (m->idxcap - 1);
    m->idx[i] = row + 1;
}

int cs_out_mem_add(cs_out_mem *m, const char *id, const char *dest, const char *payload,
                   int64_t due_ms)
{
    pthread_mutex_lock(&m->mu);
    if (find(m, id)) {
        pthread_mutex_unlock(&m->mu);
        return -1;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->rows = cs_realloc(m->rows, m->cap * sizeof *m->rows);
        free(m->idx);
        m->idxcap = m->cap * 4;
        m->idx = cs_calloc(m->idxcap, sizeof *m->idx);
        for (size_t i = 0; i < m->n; i++) idx_put(m, i);
    }
    mem_row *r = &m->rows[m->n];
    memset(r, 0, sizeof *r);
    snprintf(r->d.id, sizeof r->d.id, "%s", id);
    snprintf(r->d.dest, sizeof r->d.dest, "%s", dest);
    r->d.payload = cs_strdup(payload);
    r->d.payload_len = strlen(payload);
    r->d.created_at_ms = due_ms;
    r->d.next_attempt_ms = due_ms;
    r->seq = (int64_t)m->n;
    idx_put(m, m->n);
    m->n++;
    m->counts[CS_OUT_PENDING]++;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static void set_state(cs_out_mem *m, mem_row *r, cs_out_state st)
{
    m->counts[r->state]--;
    m->counts[st]++;
    r->state = st;
}

static int due(const mem_row *r, const char *dest, int64_t now)
{
    if (strcmp(r->d.dest, dest) != 0) return 0;
    if (r->state == CS_OUT_PENDING) return r->d.next_attempt_ms <= now;
    if (r->state == CS_OUT_CLAIMED) return r->lease_until <= now;
    return 0;
}

static int mem_claim(void *ctx, const char *dest, int64_t now_ms, int64_t lease_until_ms,
                     cs_out_delivery *out, int max)
{
    cs_out_mem *m = ctx;
    int n = 0;
    pthread_mutex_lock(&m->mu);
    /* One pass keeping the max oldest due rows, ordered by (next_attempt_ms,
     * seq); rows before m->lo are all finished and skipped. */
    mem_row **pick = max > 0 ? cs_calloc((size_t)max, sizeof *pick) : NULL;
    while (m->lo < m->n && (m->rows[m->lo].state == CS_OUT_DELIVERED ||
                            m->rows[m->lo].state == CS_OUT_DEADLETTER))
        m->lo++;
    for (size_t i = m->lo; i < m->n; i++) {
        mem_row *r = &m->rows[i];
        if (!due(r, dest, now_ms)) continue;
        if (n == max && r->d.next_attempt_ms >= pick[n - 1]->d.next_attempt_ms) continue;
        int j = n < max ? n++ : n - 1;
        while (j > 0 && pick[j - 1]->d.next_attempt_ms > r->d.next_attempt_ms) {
            pick[j] = pick[j - 1];
            j--;
        }
        pick[j] = r;
    }
    for (int k = 0; k < n; k++) {
        mem_row *best = pick[k];
        set_state(m, best, CS_OUT_CLAIMED);
        best->lease_until = lease_until_ms;
        best->claims++;
        out[k] = best->d;
        out[k].payload = cs_strdup(best->d.payload);
    }
    free(pick);
    pthread_mutex_unlock(&m->mu);
    return n;
}

/* A report only counts for a row that is claimed (a late report after the
 * lease expired and someone else claimed it is still accepted: at least once). */
static mem_row *reportable(cs_out_mem *m, const char *id)
{
    if (m->frozen) return NULL;
    mem_row *r = find(m, id);
    return r && r->state == CS_OUT_CLAIMED ? r : NULL;
}

static int mem_delivered(void *ctx, const char *id, int attempt, int64_t at_ms)
{
    cs_out_mem *m = ctx;
    pthread_mutex_lock(&m->mu);
    mem_row *r = reportable(m, id);
    if (r) {
        set_state(m, r, CS_OUT_DELIVERED);
        r->d.attempt = attempt;
        r->delivered_ms = at_ms;
    }
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int mem_retry(void *ctx, const char *id, int attempt, int64_t next_ms, const char *error)
{
    cs_out_mem *m = ctx;
    pthread_mutex_lock(&m->mu);
    mem_row *r = reportable(m, id);
    if (r) {
        set_state(m, r, CS_OUT_PENDING);
        r->d.attempt = attempt;
        r->d.next_attempt_ms = next_ms;
        snprintf(r->reason, sizeof r->reason, "%s", error ? error : "");
    }
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int mem_dead(void *ctx, const char *id, int attempt, const char *reason)
{
    cs_out_mem *m = ctx;
    pthread_mutex_lock(&m->mu);
    mem_row *r = reportable(m, id);
    if (r) {
        set_state(m, r, CS_OUT_DEADLETTER);
        r->d.attempt = attempt;
        snprintf(r->reason, sizeof r->reason, "%s", reason ? reason : "");
    }
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int mem_release(void *ctx, const char *id)
{
    cs_out_mem *m = ctx;
    pthread_mutex_lock(&m->mu);
    mem_row *r = reportable(m, id);
    if (r) {
        set_state(m, r, CS_OUT_PENDING);
        r->releases++;
        /* due now: keep next_attempt_ms (already <= the claim time) */
    }
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static const cs_out_source_ops mem_ops = {
    .claim = mem_claim,
    .delivered = mem_delivered,
    .retry = mem_retry,
    .dead = mem_dead,
    .release = mem_release,
};

cs_out_source cs_out_mem_source(cs_out_mem *m)
{
    return (cs_out_source){.ops = &mem_ops, .ctx = m};
}

int cs_out_mem_get(cs_out_mem *m, const char *id, cs_out_mem_row *row)
{
    pthread_mutex_lock(&m->mu);
    mem_row *r = find(m, id);
    if (r) {
        memset(row, 0, sizeof *row);
        row->state = r->state;
        row->attempt = r->d.attempt;
        row->next_attempt_ms = r->d.next_attempt_ms;
        row->delivered_ms = r->delivered_ms;
        row->claims = r->claims;
        row->releases = r->releases;
        snprintf(row->reason, sizeof row->reason, "%s", r->reason);
    }
    pthread_mutex_unlock(&m->mu);
    return r ? 0 : -1;
}

int cs_out_mem_count(cs_out_mem *m, int state)
{
    pthread_mutex_lock(&m->mu);
    int n = state < 0 ? (int)m->n : state < 4 ? m->counts[state] : 0;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void cs_out_mem_freeze(cs_out_mem *m, int frozen)
{
    pthread_mutex_lock(&m->mu);
    m->frozen = frozen;
    pthread_mutex_unlock(&m->mu);
}
