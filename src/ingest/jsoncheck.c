/*
 * ingest/jsoncheck — depth, duplicate keys and key counts over a cJSON tree.
 * Small objects compare keys pairwise; larger ones sort the key pointers.
 */
#include "ingest/jsoncheck.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static int err_at(cs_verr *err, const char *code, const char *path, const char *msg)
{
    err->code = code;
    snprintf(err->field, sizeof err->field, "%s", path);
    snprintf(err->message, sizeof err->message, "%s%s%s", *path ? path : "the event", *path ? ": " : ": ", msg);
    return -1;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* path holds the dotted path to v (truncated when long). */
static int walk(const cJSON *v, int depth, int max_depth, long max_keys, char *path, size_t plen, cs_verr *err)
{
    if (depth > max_depth) {
        char msg[96];
        snprintf(msg, sizeof msg, "nesting is deeper than the limit of %d", max_depth);
        return err_at(err, "too_deep", path, msg);
    }
    if (cJSON_IsObject(v)) {
        long n = 0;
        for (const cJSON *c = v->child; c; c = c->next) n++;
        if (n > max_keys) {
            char msg[128];
            snprintf(msg, sizeof msg, "an object with %ld keys; the limit is %ld", n, max_keys);
            return err_at(err, "too_many_keys", path, msg);
        }
        const char *dup = NULL;
        if (n <= 16) {
            for (const cJSON *a = v->child; a && !dup; a = a->next)
                for (const cJSON *b = a->next; b; b = b->next)
                    if (strcmp(a->string, b->string) == 0) {
                        dup = a->string;
                        break;
                    }
        } else {
            const char **keys = cs_malloc((size_t)n * sizeof *keys);
            size_t i = 0;
            for (const cJSON *c = v->child; c; c = c->next) keys[i++] = c->string;
            qsort(keys, (size_t)n, sizeof *keys, cmp_key);
            for (i = 1; i < (size_t)n && !dup; i++)
                if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
            free(keys);
        }
        if (dup) {
            size_t at = strlen(path);
            snprintf(path + at, plen - at, "%s%s", at ? "." : "", dup);
            return err_at(err, "duplicate_key", path, "the key appears more than once in its object");
        }
    }
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) return 0;
    size_t at = strlen(path);
    int index = 0;
    for (const cJSON *c = v->child; c; c = c->next, index++) {
        if (cJSON_IsObject(v)) snprintf(path + at, plen - at, "%s%s", at ? "." : "", c->string);
        else snprintf(path + at, plen - at, "[%d]", index);
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && walk(c, depth + 1, max_depth, max_keys, path, plen, err))
            return -1;
        path[at] = '\0';
    }
    return 0;
}

int cs_json_check(const cJSON *v, int depth0, int max_depth, long max_keys, cs_verr *err)
{
    char path[96] = "";
    return walk(v, depth0, max_depth, max_keys, path, sizeof path, err);
}

long cs_json_too_deep_at(const char *s, size_t len, int max)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max) return (long)i;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return -1;
}
