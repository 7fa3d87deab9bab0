/*
 * out/format — Slack incoming-webhook messages (see format.h). Slack's
 * limits: a header's plain text <= 150 characters, a section's text <= 3000,
 * a field <= 2000, <= 10 fields per section; mrkdwn needs &, < and >
 * escaped. We cut at UTF-8 boundaries, in bytes (a safe under-estimate).
 */
#include "out/format.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

/* Append s escaped for mrkdwn, at most max bytes of output, cut on a UTF-8
 * character boundary with an ellipsis when cut. */
static void add_mrkdwn(cs_buf *b, const char *s, size_t max, int escape)
{
    size_t start = b->len;
    for (const char *p = s; *p; p++) {
        const char *rep = NULL;
        if (escape) {
            if (*p == '&') rep = "&amp;";
            else if (*p == '<') rep = "&lt;";
            else if (*p == '>') rep = "&gt;";
        }
        size_t n = rep ? strlen(rep) : 1;
        if (b->len - start + n > max - 3) {
            /* back off to a character boundary (never split a sequence) */
            while (b->len > start && ((unsigned char)b->data[b->len - 1] & 0xc0) == 0x80) b->len--;
            if (b->len > start && ((unsigned char)b->data[b->len - 1] & 0xc0) == 0xc0) b->len--;
            b->data[b->len] = '\0';
            cs_buf_adds(b, "...");
            return;
        }
        if (rep) cs_buf_adds(b, rep);
        else cs_buf_add(b, p, 1);
    }
}

static cJSON *text_obj(const char *type, const char *text)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "type", type);
    cJSON_AddStringToObject(t, "text", text);
    return t;
}

static const char *str_of(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

char *cs_out_slack_format(const char *payload, size_t len)
{
    cJSON *in = cJSON_ParseWithLength(payload, len);
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return NULL;
    }
    cJSON *blocks_in = cJSON_GetObjectItemCaseSensitive(in, "blocks");
    if (cJSON_IsArray(blocks_in)) { /* already a Slack message */
        cJSON *msg = cJSON_CreateObject();
        const char *text = str_of(in, "text");
        cJSON_AddStringToObject(msg, "text", text ? text : "crmstream");
        cJSON_AddItemToObject(msg, "blocks", cJSON_Duplicate(blocks_in, 1));
        char *out = cJSON_PrintUnformatted(msg);
        cJSON_Delete(msg);
        cJSON_Delete(in);
        return out;
    }
    const char *type = str_of(in, "type");
    const char *title = str_of(in, "title");
    const char *text = str_of(in, "text");
    const char *ts = str_of(in, "timestamp");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(in, "data");
    cs_buf b;
    cs_buf_init(&b);

    cJSON *msg = cJSON_CreateObject();
    /* text: the notification and accessibility fallback */
    add_mrkdwn(&b, text ? text : title ? title : type ? type : "crmstream event", 3000, 1);
    cJSON_AddStringToObject(msg, "text", b.data);
    cJSON *blocks = cJSON_AddArrayToObject(msg, "blocks");

    cs_buf_reset(&b);
    add_mrkdwn(&b, title ? title : type ? type : "crmstream event", 150, 0);
    cJSON *hdr = cJSON_CreateObject();
    cJSON_AddStringToObject(hdr, "type", "header");
    cJSON_AddItemToObject(hdr, "text", text_obj("plain_text", b.data));
    cJSON_AddItemToArray(blocks, hdr);

    if (text) {
        cs_buf_reset(&b);
        add_mrkdwn(&b, text, 3000, 1);
        cJSON *sec = cJSON_CreateObject();
        cJSON_AddStringToObject(sec, "type", "section");
        cJSON_AddItemToObject(sec, "text", text_obj("mrkdwn", b.data));
        cJSON_AddItemToArray(blocks, sec);
    }
    if (cJSON_IsObject(data)) {
        cJSON *fields = cJSON_CreateArray();
        int nf = 0;
        for (const cJSON *it = data->child; it && nf < 10; it = it->next) {
            char num[64];
            const char *val = NULL;
            if (cJSON_IsString(it)) val = it->valuestring;
            else if (cJSON_IsNumber(it)) {
                snprintf(num, sizeof num, "%.15g", it->valuedouble);
                val = num;
            } else if (cJSON_IsBool(it)) val = cJSON_IsTrue(it) ? "true" : "false";
            else continue; /* nested values: payloads stay shallow; skip */
            cs_buf_reset(&b);
            cs_buf_adds(&b, "*");
            add_mrkdwn(&b, it->string, 200, 1);
            cs_buf_adds(&b, "*\n");
            add_mrkdwn(&b, val, 1700, 1);
            cJSON_AddItemToArray(fields, text_obj("mrkdwn", b.data));
            nf++;
        }
        if (nf) {
            cJSON *sec = cJSON_CreateObject();
            cJSON_AddStringToObject(sec, "type", "section");
            cJSON_AddItemToObject(sec, "fields", fields);
            cJSON_AddItemToArray(blocks, sec);
        } else {
            cJSON_Delete(fields);
        }
    }
    if (type || ts) {
        cs_buf_reset(&b);
        if (type) add_mrkdwn(&b, type, 500, 1);
        if (type && ts) cs_buf_adds(&b, " · ");
        if (ts) add_mrkdwn(&b, ts, 100, 1);
        cJSON *ctx = cJSON_CreateObject();
        cJSON_AddStringToObject(ctx, "type", "context");
        cJSON *els = cJSON_AddArrayToObject(ctx, "elements");
        cJSON_AddItemToArray(els, text_obj("mrkdwn", b.data));
        cJSON_AddItemToArray(blocks, ctx);
    }
    char *out = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    cJSON_Delete(in);
    cs_buf_free(&b);
    return out;
}
