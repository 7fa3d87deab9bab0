/*
 * core/logging — JSON-lines logger.
 */
#include "core/logging.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"

static int min_level = CS_LOG_INFO;
static const char *names[] = {"debug", "info", "warn", "error"};

void cs_log_set_level(enum cs_log_level lvl)
{
    __atomic_store_n(&min_level, (int)lvl, __ATOMIC_RELAXED);
}

int cs_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

void cs_log(enum cs_log_level lvl, const char *component, const char *msg, const char *fields, ...)
{
    if ((int)lvl < __atomic_load_n(&min_level, __ATOMIC_RELAXED)) return;
    char ts[40], line[4096];
    cs_fmt_time_ms(cs_now_us(), ts, sizeof ts);
    int n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"",
                     ts, names[lvl], component);
    /* msg is ours (a literal), but escape quotes defensively. */
    for (const char *p = msg; *p && n < (int)sizeof line - 8; p++) {
        if (*p == '"' || *p == '\\') line[n++] = '\\';
        line[n++] = (*p == '\n') ? ' ' : *p;
    }
    line[n++] = '"';
    if (fields && *fields && n < (int)sizeof line - 4) {
        line[n++] = ',';
        va_list ap;
        va_start(ap, fields);
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 3, fields, ap);
        va_end(ap);
        if (m > 0) n += m < (int)(sizeof line - (size_t)n - 3) ? m : (int)(sizeof line - (size_t)n - 4);
    }
    line[n++] = '}';
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
