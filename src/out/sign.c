/*
 * out/sign — Standard Webhooks signing (see sign.h). The signed content is
 * exactly the bytes sent as the body, so the caller signs after formatting.
 */
#include "out/sign.h"

#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fetched once: EVP_MAC_fetch looks the algorithm up in the provider tables. */
static EVP_MAC *g_hmac;
static pthread_once_t g_hmac_once = PTHREAD_ONCE_INIT;
static void hmac_fetch(void) { g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL); }

int cs_out_key_parse(const char *secret, cs_out_key *key)
{
    memset(key, 0, sizeof *key);
    if (!secret) return -1;
    if (strncmp(secret, "whsec_", 6) == 0) secret += 6;
    size_t n = strlen(secret);
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > CS_OUT_KEY_MAX) return -1;
    for (size_t i = 0; i < n; i++) {
        char c = secret[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/' || (c == '=' && i >= n - 2);
        if (!ok) return -1;
    }
    unsigned char tmp[CS_OUT_KEY_MAX + 3];
    int m = EVP_DecodeBlock(tmp, (const unsigned char *)secret, (int)n);
    if (m < 0) return -1;
    /* EVP_DecodeBlock counts padding as zero bytes: take them off. */
    if (secret[n - 1] == '=') m--;
    if (secret[n - 2] == '=') m--;
    if (m <= 0) return -1;
    memcpy(key->bytes, tmp, (size_t)m);
    key->len = (size_t)m;
    return 0;
}

size_t cs_out_sign1(const cs_out_key *key, const char *id, int64_t ts_s, const void *body,
                    size_t len, char *out, size_t outlen)
{
    char prefix[160];
    int pn = snprintf(prefix, sizeof prefix, "%s.%lld.", id, (long long)ts_s);
    if (pn < 0 || (size_t)pn >= sizeof prefix || outlen < 48) {
        if (outlen) out[0] = '\0';
        return 0;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    pthread_once(&g_hmac_once, hmac_fetch);
    EVP_MAC_CTX *ctx = g_hmac ? EVP_MAC_CTX_new(g_hmac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t ml = 0;
    int ok = ctx && EVP_MAC_init(ctx, key->bytes, key->len, params) &&
             EVP_MAC_update(ctx, (const unsigned char *)prefix, (size_t)pn) &&
             EVP_MAC_update(ctx, body, len) && EVP_MAC_final(ctx, mac, &ml, sizeof mac);
    EVP_MAC_CTX_free(ctx);
    if (!ok) abort(); /* HMAC-SHA256 is always there: a broken OpenSSL install */
    memcpy(out, "v1,", 3);
    int bn = EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)ml);
    return 3 + (size_t)bn;
}

size_t cs_out_sign(const cs_out_key *keys, int nkeys, const char *id, int64_t ts_s,
                   const void *body, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < nkeys; i++) {
        if (n + 1 + 48 > outlen) break;
        if (i) out[n++] = ' ';
        n += cs_out_sign1(&keys[i], id, ts_s, body, len, out + n, outlen - n);
    }
    out[n] = '\0';
    return n;
}
