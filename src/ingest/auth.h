/*
 * ingest/auth — write keys: who may send events, and how fast.
 *
 * Keys come from config (auth.write_keys) as SHA-256 digests; a presented
 * key is hashed and compared with every configured digest in constant time
 * (CRYPTO_memcmp, all keys compared whatever matches), so neither timing nor
 * a memory dump gives a key away. Each key may carry a rate limit enforced
 * by a token bucket (burst = one second of rate). Owns the buckets. Never
 * decides anything about the events themselves.
 */
#ifndef CS_INGEST_AUTH_H
#define CS_INGEST_AUTH_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef struct cs_auth_key {
    const char   *name;      /* borrowed from the config */
    unsigned char sha256[32];
    double        rate;      /* events per second; 0 = unlimited */
    double        tokens;
    int64_t       last_us;   /* monotonic time of the last refill */
} cs_auth_key;

typedef struct cs_auth {
    cs_auth_key    *keys;
    size_t          nkeys;    /* 0 = open ingest: every request is let in */
    pthread_mutex_t lock;     /* guards the buckets */
} cs_auth;

void cs_auth_init(cs_auth *a, const cs_config *cfg);
void cs_auth_destroy(cs_auth *a);

/* The key of an Authorization header "Basic base64(key:password)" (the
 * username; the password is ignored), NUL-terminated in out. Returns 0, or
 * -1 when the header is absent or not Basic / not decodable. */
int cs_auth_basic_user(const char *authorization, char *out, size_t outlen);

/* The configured key matching key, or NULL. */
cs_auth_key *cs_auth_lookup(cs_auth *a, const char *key, size_t len);

/* Take n events from k's bucket at monotonic time now_us. Returns 0, or the
 * seconds to wait (>= 1) when the bucket cannot cover n now; a request larger
 * than the burst is let through when the bucket is full (else it could never
 * pass) and drives the bucket negative. */
int cs_auth_take(cs_auth *a, cs_auth_key *k, size_t n, int64_t now_us);

#endif
