/*
 * out/sign — Standard Webhooks signatures (standardwebhooks.com):
 *   webhook-signature: v1,<base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))>
 * with the key given as "whsec_<base64>" (the prefix is optional), and one
 * space-separated signature per secret during a rotation.
 *
 * Pure functions over OpenSSL; no state, no I/O.
 */
#ifndef CS_OUT_SIGN_H
#define CS_OUT_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define CS_OUT_KEY_MAX 128   /* decoded secret bytes */

typedef struct cs_out_key {
    unsigned char bytes[CS_OUT_KEY_MAX];
    size_t        len;
} cs_out_key;

/* Decode "whsec_<base64>" (or bare base64). 0, or -1 when the text is not
 * base64, decodes to nothing, or to more than CS_OUT_KEY_MAX bytes. */
int cs_out_key_parse(const char *secret, cs_out_key *key);

/* Write "v1,<base64>" for one key into out (>= 48 bytes); returns its length. */
size_t cs_out_sign1(const cs_out_key *key, const char *id, int64_t ts_s, const void *body,
                    size_t len, char *out, size_t outlen);

/* The webhook-signature header value for nkeys keys, space-separated. out >=
 * 48 * nkeys bytes; returns the length. */
size_t cs_out_sign(const cs_out_key *keys, int nkeys, const char *id, int64_t ts_s,
                   const void *body, size_t len, char *out, size_t outlen);

#endif
