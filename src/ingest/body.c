/*
 * ingest/body — Content-Encoding decoding with zlib (see body.h). The output
 * grows in steps and the inflate stops as soon as it would pass the limit,
 * so memory is bounded by the limit whatever the compression ratio.
 */
#include "ingest/body.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "http/errors.h"

static int fail(cs_buf *resp, int status, const char *code, const char *msg)
{
    cs_buf_reset(resp);
    cs_json_error(resp, code, msg, NULL);
    return status;
}

/* The encoding name without surrounding blanks, in name (lower case). */
static void trim(const char *enc, char *name, size_t n)
{
    while (*enc == ' ' || *enc == '\t') enc++;
    size_t len = strlen(enc);
    while (len && (enc[len - 1] == ' ' || enc[len - 1] == '\t')) len--;
    if (len >= n) len = n - 1;
    for (size_t i = 0; i < len; i++) name[i] = (char)((enc[i] >= 'A' && enc[i] <= 'Z') ? enc[i] + 32 : enc[i]);
    name[len] = '\0';
}

int cs_body_decode(const char *enc, const char *in, size_t len, size_t max, cs_buf *out, const char **body,
                   size_t *blen, cs_buf *resp)
{
    char name[32];
    trim(enc ? enc : "", name, sizeof name);
    if (!*name || strcmp(name, "identity") == 0) {
        *body = in, *blen = len;
        return 0;
    }
    int wbits;
    if (strcmp(name, "gzip") == 0 || strcmp(name, "x-gzip") == 0) wbits = 15 + 16;
    else if (strcmp(name, "deflate") == 0) wbits = 15 + 32; /* zlib or gzip wrapper, auto-detected */
    else {
        char msg[128];
        snprintf(msg, sizeof msg, "Content-Encoding \"%.40s\" is not supported (use gzip, deflate or identity)",
                 enc);
        return fail(resp, 415, "unsupported_encoding", msg);
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, wbits) != Z_OK) return fail(resp, 503, "decoder_unavailable", "cannot start zlib");
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    cs_buf_reset(out);
    int status = 0, zrc = Z_OK;
    size_t step = 16384;
    for (;;) {
        /* Room for the next step, never past max + 1 (one byte over = too large). */
        size_t room = step;
        if (out->len + room > max + 1) room = max + 1 - out->len;
        cs_buf_reserve(out, room);
        z.next_out = (Bytef *)out->data + out->len;
        z.avail_out = (uInt)room;
        zrc = inflate(&z, Z_NO_FLUSH);
        out->len += room - z.avail_out;
        if (out->len > max) {
            char msg[128];
            snprintf(msg, sizeof msg, "the decompressed request body is over the %zu-byte limit", max);
            status = fail(resp, 413, "body_too_large", msg);
            break;
        }
        if (zrc == Z_STREAM_END) {
            if (z.avail_in == 0) break;
            /* Concatenated gzip members (RFC 1952 allows them). */
            if (inflateReset(&z) != Z_OK) zrc = Z_DATA_ERROR;
            else continue;
        }
        if (zrc == Z_BUF_ERROR && z.avail_in == 0) zrc = Z_DATA_ERROR; /* truncated */
        if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            char msg[160];
            snprintf(msg, sizeof msg, "the %s body is corrupt or truncated (zlib: %s)", name,
                     z.msg ? z.msg : "data error");
            status = fail(resp, 400, "invalid_encoding", msg);
            break;
        }
        if (step < (1u << 20)) step *= 2;
    }
    inflateEnd(&z);
    if (status) {
        cs_buf_free(out);
        return status;
    }
    if (!out->data) cs_buf_reserve(out, 1);
    out->data[out->len] = '\0';
    *body = out->data, *blen = out->len;
    return 0;
}
