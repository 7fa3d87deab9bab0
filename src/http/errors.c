/*
 * http/errors — JSON error bodies.
 */
#include "http/errors.h"

void cs_json_error(cs_buf *out, const char *code, const char *message, const char *field)
{
    cs_buf_adds(out, "{\"error\":{\"code\":");
    cs_buf_json_str(out, code);
    cs_buf_adds(out, ",\"message\":");
    cs_buf_json_str(out, message);
    if (field && *field) {
        cs_buf_adds(out, ",\"field\":");
        cs_buf_json_str(out, field);
    }
    cs_buf_adds(out, "}}");
}
