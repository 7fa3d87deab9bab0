/*
 * ingest/auth — write-key lookup (SHA-256, constant-time compare) and
 * per-key token buckets. See auth.h.
 */
#include "ingest/auth.h"

#include <math.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/util.h"

void cs_auth_init(cs_auth *a, const cs_config *cfg)
{
    memset(a, 0, sizeof *a);
    pthread_mutex_init(&a->lock, NULL);
    a->nkeys = cfg->nwrite_keys;
    if (!a->nkeys) return;
    a->keys = cs_calloc(a->nkeys, sizeof *a->keys);
    int64_t now = cs_mono_us();
    for (size_t i = 0; i < a->nkeys; i++) {
        const cs_write_key_cfg *w = &cfg->write_keys[i];
        a->keys[i] = (cs_auth_key){.name = w->name, .rate = w->rate_limit, .tokens = w->rate_limit,
                                   .last_us = now};
        memcpy(a->keys[i].sha256, w->sha256, 32);
    }
}

void cs_auth_destroy(cs_auth *a)
{
    if (!a) return;
    free(a->keys);
    a->keys = NULL;
    a->nkeys = 0;
    pthread_mutex_destroy(&a->lock);
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

int cs_auth_basic_user(const char *h, char *out, size_t outlen)
{
    if (!h) return -1;
    while (*h == ' ') h++;
    if (strncasecmp(h, "Basic", 5) != 0 || (h[5] != ' ' && h[5] != '\t')) return -1;
    h += 5;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (const unsigned char *p = (const unsigned char *)h; *p && *p != '=' && *p != ' '; p++) {
        int v = b64val(*p);
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= outlen) return -1;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[n] = '\0';
    if (memchr(out, '\0', n)) return -1;
    char *colon = strchr(out, ':');
    if (colon) *colon = '\0';
    return *out ? 0 : -1;
}

cs_auth_key *cs_auth_lookup(cs_auth *a, const char *key, size_t len)
{
    unsigned char d[32];
    SHA256((const unsigned char *)key, len, d);
    cs_auth_key *found = NULL;
    for (size_t i = 0; i < a->nkeys; i++) /* no early exit: time does not depend on which matched */
        if (CRYPTO_memcmp(d, a->keys[i].sha256, 32) == 0) found = &a->keys[i];
    return found;
}

int cs_auth_take(cs_auth *a, cs_auth_key *k, size_t n, int64_t now_us)
{
    if (k->rate <= 0) return 0;
    pthread_mutex_lock(&a->lock);
    double burst = k->rate;
    k->tokens += (double)(now_us - k->last_us) / 1e6 * k->rate;
    if (k->tokens > burst) k->tokens = burst;
    k->last_us = now_us;
    int wait = 0;
    if (k->tokens >= (double)n || k->tokens >= burst) {
        k->tokens -= (double)n;
    } else {
        double need = ((double)n < burst ? (double)n : burst) - k->tokens;
        wait = (int)ceil(need / k->rate);
        if (wait < 1) wait = 1;
    }
    pthread_mutex_unlock(&a->lock);
    return wait;
}
