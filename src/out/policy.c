/*
 * out/policy — see policy.h. Kept apart from the dispatcher so each rule has
 * a unit test of its own (tests/unit/test_out.c).
 */
#include "out/policy.h"

#include <curl/curl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

cs_out_result cs_out_classify(long status)
{
    if (status >= 200 && status < 300) return CS_OUT_OK;
    if (status == 410) return CS_OUT_GONE;
    if (status == 408 || status == 429) return CS_OUT_RETRY;
    if (status >= 400 && status < 500) return CS_OUT_DEAD;
    return CS_OUT_RETRY; /* 0 (no answer), 1xx left over, 3xx, 5xx */
}

int64_t cs_out_backoff_ms(int64_t base_ms, int64_t max_ms, int attempt, uint64_t r)
{
    if (base_ms < 1) base_ms = 1;
    if (max_ms < base_ms) max_ms = base_ms;
    int64_t d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++) d = d > max_ms / 2 ? max_ms : d * 2;
    if (d > max_ms) d = max_ms;
    int64_t half = d / 2;
    return half + (int64_t)(r % (uint64_t)(d - half + 1));
}

int cs_out_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms)
{
    if (!value) return -1;
    while (*value == ' ' || *value == '\t') value++;
    if (*value >= '0' && *value <= '9') {
        char *end;
        long long s = strtoll(value, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
        if (*end) return -1;
        if (s > 10LL * 365 * 86400) s = 10LL * 365 * 86400; /* absurd: clamp, the horizon decides */
        *delay_ms = s * 1000;
        return 0;
    }
    time_t t = curl_getdate(value, NULL);
    if (t == (time_t)-1) return -1;
    int64_t d = (int64_t)t * 1000 - now_ms;
    *delay_ms = d > 0 ? d : 0;
    return 0;
}

static int v4_allowed(uint32_t a /* host order */)
{
    uint32_t b0 = a >> 24, b1 = (a >> 16) & 0xff;
    if (b0 == 0 || b0 == 10 || b0 == 127) return 0;          /* this net, private, loopback */
    if (b0 == 100 && (b1 & 0xc0) == 64) return 0;            /* 100.64/10 CGNAT */
    if (b0 == 169 && b1 == 254) return 0;                    /* link-local (cloud metadata) */
    if (b0 == 172 && (b1 & 0xf0) == 16) return 0;            /* 172.16/12 */
    if (b0 == 192 && b1 == 168) return 0;                    /* 192.168/16 */
    if (b0 == 192 && b1 == 0 && ((a >> 8) & 0xff) == 0) return 0; /* 192.0.0/24 IETF */
    if (b0 == 198 && (b1 & 0xfe) == 18) return 0;            /* 198.18/15 benchmarking */
    if (b0 >= 224) return 0;                                 /* multicast, reserved, broadcast */
    return 1;
}

int cs_out_addr_allowed(const struct sockaddr *sa, int allow_private)
{
    if (!sa) return 0;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) return 0;
    if (allow_private) return 1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return v4_allowed(ntohl(in->sin_addr.s_addr));
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    const unsigned char *b = in6->sin6_addr.s6_addr;
    static const unsigned char zero[16];
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 ||
        memcmp(b, zero, 12) == 0 /* deprecated IPv4-compatible, and :: and ::1 */) {
        uint32_t a = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
        if (memcmp(b, zero, 12) == 0 && a <= 1) return 0;    /* :: and ::1 */
        return v4_allowed(a);
    }
    if ((b[0] & 0xfe) == 0xfc) return 0;                     /* fc00::/7 unique local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return 0;     /* fe80::/10 link-local */
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return 0;     /* fec0::/10 site-local (old) */
    if (b[0] == 0xff) return 0;                              /* multicast */
    return 1;
}

uint64_t cs_out_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ULL;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dULL;
}
