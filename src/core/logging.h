/*
 * core/logging — structured logs: one JSON object per line on stderr, with
 * time, level, component, message and the ids involved.
 *
 * Thread-safe (one write(2) per line). Never allocates on the caller's behalf
 * beyond a stack buffer; lines longer than 4 KiB are cut.
 */
#ifndef CS_CORE_LOGGING_H
#define CS_CORE_LOGGING_H

enum cs_log_level { CS_LOG_DEBUG, CS_LOG_INFO, CS_LOG_WARN, CS_LOG_ERROR };

void cs_log_set_level(enum cs_log_level lvl);
/* Parses "debug|info|warn|error"; returns -1 when unknown. */
int cs_log_level_parse(const char *s);

/* fields: extra JSON members without braces, e.g. "\"partition\":%d", or NULL. */
void cs_log(enum cs_log_level lvl, const char *component, const char *msg,
            const char *fields, ...) __attribute__((format(printf, 4, 5)));

#define cs_info(comp, msg, ...)  cs_log(CS_LOG_INFO, comp, msg, __VA_ARGS__)
#define cs_warn(comp, msg, ...)  cs_log(CS_LOG_WARN, comp, msg, __VA_ARGS__)
#define cs_error(comp, msg, ...) cs_log(CS_LOG_ERROR, comp, msg, __VA_ARGS__)

#endif
