/*
 * core/util — checked allocation, the growable buffer, clocks and RFC 3339.
 */
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void oom(size_t n)
{
    fprintf(stderr, "crmstream: out of memory: allocating %zu bytes\n", n);
    abort();
}

void *cs_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *cs_calloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) oom(n * sz);
    return p;
}

void *cs_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *cs_strdup(const char *s)
{
    return cs_strndup(s, strlen(s));
}

char *cs_strndup(const char *s, size_t n)
{
    char *p = cs_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void cs_buf_init(cs_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void cs_buf_free(cs_buf *b)
{
    free(b->data);
    cs_buf_init(b);
}

void cs_buf_reset(cs_buf *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void cs_buf_grow(cs_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    b->data = cs_realloc(b->data, cap);
    b->cap = cap;
}

void cs_buf_adds(cs_buf *b, const char *s)
{
    cs_buf_add(b, s, strlen(s));
}

void cs_buf_vprintf(cs_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    cs_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void cs_buf_printf(cs_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cs_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void cs_buf_json_str(cs_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    cs_buf_reserve(b, strlen(s) + 2);
    cs_buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        switch (c) {
        case '"':  cs_buf_add(b, "\\\"", 2); break;
        case '\\': cs_buf_add(b, "\\\\", 2); break;
        case '\n': cs_buf_add(b, "\\n", 2); break;
        case '\r': cs_buf_add(b, "\\r", 2); break;
        case '\t': cs_buf_add(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                cs_buf_add(b, e, 6);
            } else {
                cs_buf_add(b, p, 1);
            }
        }
    }
    cs_buf_add(b, "\"", 1);
}

char *cs_buf_steal(cs_buf *b)
{
    char *p = b->data ? b->data : cs_strdup("");
    cs_buf_init(b);
    return p;
}

int64_t cs_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t clock_offset_us;
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;

static void clock_init(void)
{
    const char *e = getenv("CRMSTREAM_CLOCK_OFFSET_S");
    if (e && *e) __atomic_store_n(&clock_offset_us, (int64_t)strtoll(e, NULL, 10) * 1000000, __ATOMIC_RELAXED);
}

int64_t cs_clock_us(void)
{
    pthread_once(&clock_once, clock_init);
    return cs_now_us() + __atomic_load_n(&clock_offset_us, __ATOMIC_RELAXED);
}

void cs_clock_set_offset_us(int64_t offset_us)
{
    pthread_once(&clock_once, clock_init);
    __atomic_store_n(&clock_offset_us, offset_us, __ATOMIC_RELAXED);
}

int64_t cs_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cs_fmt_time_ms(int64_t us, char *buf, size_t len)
{
    time_t secs = (time_t)(us >= 0 ? us / 1000000 : (us - 999999) / 1000000);
    int ms = (int)((us - (int64_t)secs * 1000000) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static int digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9') return -1;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to the given civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int cs_parse_time(const char *s, int64_t *us)
{
    int y, mo, d, h, mi, se, frac_us = 0;
    if (digits(&s, 4, &y) || *s++ != '-' || digits(&s, 2, &mo) || *s++ != '-' ||
        digits(&s, 2, &d))
        return -1;
    if (*s != 'T' && *s != 't' && *s != ' ') return -1;
    s++;
    if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) || *s++ != ':' ||
        digits(&s, 2, &se))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (d > mdays[mo - 1]) return -1;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return -1;
    if (*s == '.') {
        s++;
        int n = 0, scale = 100000;
        while (*s >= '0' && *s <= '9') {
            if (n < 6) frac_us += (*s - '0') * scale, scale /= 10;
            s++, n++;
        }
        if (n == 0) return -1;
    }
    int offset_min = 0;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int sign = *s++ == '-' ? -1 : 1, oh, om;
        if (digits(&s, 2, &oh) || *s++ != ':' || digits(&s, 2, &om) || oh > 23 || om > 59)
            return -1;
        offset_min = sign * (oh * 60 + om);
    } else {
        return -1;
    }
    if (*s) return -1;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se -
                   (int64_t)offset_min * 60;
    *us = secs * 1000000 + frac_us;
    return 0;
}

int cs_mkdirs(const char *path, int mode)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST) return -1;
    return 0;
}
