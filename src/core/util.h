/*
 * core/util — small things every module uses: checked allocation, a growable
 * byte buffer, clocks and RFC 3339 time formatting.
 *
 * Owns no global state. Never does I/O. Allocation failure of these small
 * internal buffers aborts (STYLE.md: abort on a failed small internal
 * allocation); sizes that come from clients are checked by callers first.
 */
#ifndef CS_CORE_UTIL_H
#define CS_CORE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

void *cs_malloc(size_t n);
void *cs_calloc(size_t n, size_t sz);
void *cs_realloc(void *p, size_t n);
char *cs_strdup(const char *s);
char *cs_strndup(const char *s, size_t n);

/* A growable byte buffer; always NUL-terminated after len bytes. */
typedef struct cs_buf {
    char  *data;
    size_t len;
    size_t cap;
} cs_buf;

void cs_buf_init(cs_buf *b);
void cs_buf_free(cs_buf *b);
void cs_buf_reset(cs_buf *b);
/* Grow so extra more bytes (and the NUL) fit; cs_buf_reserve's slow path. */
void cs_buf_grow(cs_buf *b, size_t extra);
/* Inline: the ingest path appends a few bytes at a time, millions of times
 * a second, and the call cost more than the copy. */
static inline void cs_buf_reserve(cs_buf *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap) cs_buf_grow(b, extra);
}
static inline void cs_buf_add(cs_buf *b, const void *p, size_t n)
{
    cs_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}
void cs_buf_adds(cs_buf *b, const char *s);
void cs_buf_printf(cs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cs_buf_vprintf(cs_buf *b, const char *fmt, va_list ap);
/* Append s as a JSON string literal, quotes included. */
void cs_buf_json_str(cs_buf *b, const char *s);
/* Take ownership of the bytes; the buffer is reset. */
char *cs_buf_steal(cs_buf *b);

/* Wall-clock microseconds since the epoch (for measurements only). */
int64_t cs_now_us(void);
/* Monotonic microseconds (for deadlines and durations). */
int64_t cs_mono_us(void);
/* The injectable clock for timers that decide something (lead SLA
 * deadlines: the leads lane passes it to cs_routing_sla_sweep): wall time
 * plus an offset that tests set, with cs_clock_set_offset_us or, for a
 * whole server, the environment variable CRMSTREAM_CLOCK_OFFSET_S (seconds,
 * read at the first call). Thread-safe. */
int64_t cs_clock_us(void);
void cs_clock_set_offset_us(int64_t offset_us);

/* "2026-11-27T10:00:00.123Z" (millisecond precision, UTC); buf >= 32 bytes. */
void cs_fmt_time_ms(int64_t us, char *buf, size_t len);
/* Parse RFC 3339 ("2026-11-27T10:00:00Z", fraction and offset optional).
 * Returns 0 and sets *us, or -1 when the text is not a valid time. */
int cs_parse_time(const char *s, int64_t *us);

/* mkdir -p; returns 0 or -1 with errno. */
int cs_mkdirs(const char *path, int mode);

#endif
