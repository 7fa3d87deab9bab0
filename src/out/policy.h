/*
 * out/policy — the decisions of one delivery attempt, as pure functions:
 * what an answer means (OK / RETRY / DEAD / GONE, Fluent Bit's output
 * contract plus "the destination is gone"), when to try again (exponential
 * backoff with jitter, Retry-After), and which addresses we may connect to.
 *
 * No state, no I/O; the dispatcher applies the result.
 */
#ifndef CS_OUT_POLICY_H
#define CS_OUT_POLICY_H

#include <stdint.h>
#include <sys/socket.h>

typedef enum cs_out_result {
    CS_OUT_OK = 0,     /* 2xx: delivered */
    CS_OUT_RETRY = 1,  /* 5xx, 408, 429, 3xx (redirects are not followed), network errors */
    CS_OUT_DEAD = 2,   /* other 4xx, refused address: to the DLQ now */
    CS_OUT_GONE = 3,   /* 410: to the DLQ, and disable the destination */
} cs_out_result;

/* status: the HTTP status, 0 when no answer arrived (timeout, refused, ...). */
cs_out_result cs_out_classify(long status);

/* The delay before attempt number `attempt` + 1, attempt >= 1 being the
 * number of attempts made: base * 2^(attempt-1), capped at max, then "equal
 * jitter": a uniform value in [d/2, d]. r is a uniform 64-bit random. */
int64_t cs_out_backoff_ms(int64_t base_ms, int64_t max_ms, int attempt, uint64_t r);

/* Retry-After: delay-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015
 * 07:28:00 GMT"). Sets *delay_ms (>= 0; a date in the past gives 0) and
 * returns 0, or -1 when the value is neither. */
int cs_out_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms);

/* The outbound address policy: 1 when we may connect to sa. Without
 * allow_private, refuses loopback (127/8, ::1), private (10/8, 172.16/12,
 * 192.168/16, fc00::/7), carrier-grade NAT (100.64/10), link-local
 * (169.254/16, fe80::/10), "this network" (0/8, ::), multicast, reserved
 * (240/4) and broadcast; IPv4-mapped and NAT64 IPv6 addresses are judged by
 * the IPv4 address inside. Other families are refused. */
int cs_out_addr_allowed(const struct sockaddr *sa, int allow_private);

/* xorshift64*: the jitter source (not for secrets). */
uint64_t cs_out_rand(uint64_t *state);

#endif
