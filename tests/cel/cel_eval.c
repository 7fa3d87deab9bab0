/*
 * tests/cel/cel_eval — the C side of the CEL differential test
 * (tests/check_cel.sh). Loads bindings from a JSON file (integral numbers are
 * CEL ints, others doubles; objects are maps), reads one expression per line
 * on stdin (JSON-encoded strings, so expressions may hold any character) and
 * prints one JSON result per line:
 *   {"v": <value>} | {"error": "message"} | {"compile": "line:col: message"}
 * <value>: {"int":"12"} {"double":1.5|"NaN"|"+Inf"|"-Inf"} {"string":"s"}
 * {"bool":true} {"null":true} {"list":[<value>...]} {"duration_us":"N"}
 * {"timestamp_us":"N"} {"map":true}
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "rules/expr.h"

struct bnode {
    const char   *key;
    cs_value      v;
    struct bnode *kids; /* object members (n), or list elements (nlist) */
    size_t        n, nlist;
};

static void build(struct bnode *b, const cJSON *j)
{
    b->key = j->string;
    if (cJSON_IsString(j)) b->v = cs_vstr(j->valuestring, strlen(j->valuestring));
    else if (cJSON_IsBool(j)) b->v = cs_vbool(cJSON_IsTrue(j));
    else if (cJSON_IsNull(j)) b->v = (cs_value){.type = CS_V_NULL};
    else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        b->v = d == floor(d) && fabs(d) < 9e15 ? cs_vint((int64_t)d) : cs_vdouble(d);
    } else if (cJSON_IsArray(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j);
        struct bnode *items = cs_calloc(n ? n : 1, sizeof *items);
        cs_value *vals = cs_calloc(n ? n : 1, sizeof *vals);
        size_t i = 0;
        for (const cJSON *c = j->child; c; c = c->next, i++) build(&items[i], c), vals[i] = items[i].v;
        b->v.type = CS_V_LIST, b->v.u.list.items = vals, b->v.u.list.n = n;
        b->kids = items, b->nlist = n; /* owned, freed by unbuild; not map members */
    } else {
        size_t n = (size_t)cJSON_GetArraySize(j);
        b->kids = cs_calloc(n ? n : 1, sizeof *b->kids);
        b->n = n;
        size_t i = 0;
        for (const cJSON *c = j->child; c; c = c->next, i++) build(&b->kids[i], c);
        b->v.type = CS_V_MAP, b->v.u.map.p = b, b->v.u.map.n = n;
    }
}

static void unbuild(struct bnode *b)
{
    if (b->v.type == CS_V_LIST) {
        /* items were built as bnodes next to the values: free both */
        free((void *)b->v.u.list.items);
    }
    for (size_t i = 0; i < b->n + b->nlist; i++) unbuild(&b->kids[i]);
    free(b->kids);
}

static const struct bnode *child(const struct bnode *b, const char *k, size_t len)
{
    for (size_t i = 0; i < b->n; i++)
        if (strlen(b->kids[i].key) == len && memcmp(b->kids[i].key, k, len) == 0) return &b->kids[i];
    return NULL;
}

static int lookup(void *ud, const char *path, size_t len, cs_value *out)
{
    const struct bnode *b = ud;
    const char *p = path, *end = path + len;
    while (b && p < end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t seg = dot ? (size_t)(dot - p) : (size_t)(end - p);
        b = b->v.type == CS_V_MAP ? child(b, p, seg) : NULL;
        p += seg + (dot ? 1 : 0);
    }
    if (!b) return 0;
    *out = b->v;
    return 1;
}

static int field(void *ud, const cs_value *m, const char *key, size_t len, cs_value *out)
{
    (void)ud;
    const struct bnode *b = child(m->u.map.p, key, len);
    if (!b) return 0;
    *out = b->v;
    return 1;
}

static void print_value(cs_buf *o, const cs_value *v)
{
    char tmp[64];
    switch (v->type) {
    case CS_V_INT: cs_buf_printf(o, "{\"int\":\"%lld\"}", (long long)v->u.i); break;
    case CS_V_DOUBLE:
        if (isnan(v->u.d)) cs_buf_adds(o, "{\"double\":\"NaN\"}");
        else if (isinf(v->u.d)) cs_buf_printf(o, "{\"double\":\"%s\"}", v->u.d > 0 ? "+Inf" : "-Inf");
        else cs_buf_printf(o, "{\"double\":%.17g}", v->u.d);
        break;
    case CS_V_STRING: {
        char *s = cs_strndup(v->u.s.p, v->u.s.len);
        cs_buf_adds(o, "{\"string\":");
        cs_buf_json_str(o, s);
        cs_buf_adds(o, "}");
        free(s);
        break;
    }
    case CS_V_BOOL: cs_buf_printf(o, "{\"bool\":%s}", v->u.b ? "true" : "false"); break;
    case CS_V_NULL: cs_buf_adds(o, "{\"null\":true}"); break;
    case CS_V_LIST:
        cs_buf_adds(o, "{\"list\":[");
        for (size_t i = 0; i < v->u.list.n; i++) {
            if (i) cs_buf_adds(o, ",");
            print_value(o, &v->u.list.items[i]);
        }
        cs_buf_adds(o, "]}");
        break;
    case CS_V_DURATION: cs_buf_printf(o, "{\"duration_us\":\"%lld\"}", (long long)v->u.us); break;
    case CS_V_TIMESTAMP: cs_buf_printf(o, "{\"timestamp_us\":\"%lld\"}", (long long)v->u.us); break;
    case CS_V_MAP: cs_buf_adds(o, "{\"map\":true}"); break;
    case CS_V_ERROR:
        snprintf(tmp, sizeof tmp, "%s", v->u.err);
        cs_buf_adds(o, "{\"error\":");
        cs_buf_json_str(o, tmp);
        cs_buf_adds(o, "}");
        break;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: cel_eval BINDINGS.json < expressions (one JSON string per line)\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) return perror(argv[1]), 1;
    cs_buf text;
    cs_buf_init(&text);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) cs_buf_add(&text, chunk, n);
    fclose(f);
    cJSON *j = cJSON_Parse(text.data ? text.data : "");
    if (!j) return fprintf(stderr, "cel_eval: bad bindings JSON\n"), 1;
    struct bnode root = {0};
    build(&root, j);
    static cs_expr_env env;
    cs_expr_env_init(&env, lookup, field, &root);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    cs_buf out;
    cs_buf_init(&out);
    while ((len = getline(&line, &cap, stdin)) > 0) {
        cJSON *s = cJSON_Parse(line);
        cs_buf_reset(&out);
        if (!cJSON_IsString(s)) {
            cs_buf_adds(&out, "{\"compile\":\"driver: line is not a JSON string\"}");
        } else {
            cs_expr_error err;
            cs_expr *e = cs_expr_compile(s->valuestring, strlen(s->valuestring), NULL, &err);
            if (!e) {
                char m[256];
                snprintf(m, sizeof m, "%d:%d: %s", err.line, err.col, err.msg);
                cs_buf_adds(&out, "{\"compile\":");
                cs_buf_json_str(&out, m);
                cs_buf_adds(&out, "}");
            } else {
                cs_value v = cs_expr_eval(e, &env);
                if (v.type == CS_V_ERROR) {
                    print_value(&out, &v);
                } else {
                    cs_buf_adds(&out, "{\"v\":");
                    print_value(&out, &v);
                    cs_buf_adds(&out, "}");
                }
                cs_expr_free(e);
            }
        }
        cJSON_Delete(s);
        puts(out.data);
    }
    free(line);
    cs_buf_free(&out);
    cs_buf_free(&text);
    unbuild(&root);
    cJSON_Delete(j);
    return 0;
}
