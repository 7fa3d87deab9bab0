/*
 * Unit tests for ingest/jsonarena: cJSON trees made between begin and end
 * live in the thread's arena, cJSON_Delete on them is harmless, everything
 * outside the span (and on other threads) is plain malloc/free, and the
 * arena keeps at most CS_JSON_ARENA_KEEP bytes between requests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "ingest/jsonarena.h"

static char *big_array(int n)
{
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_adds(&b, "[");
    for (int i = 0; i < n; i++) cs_buf_printf(&b, "%s{\"k\":\"value %d\",\"n\":%d}", i ? "," : "", i, i);
    cs_buf_adds(&b, "]");
    return cs_buf_steal(&b);
}

static void test_span(void **state)
{
    (void)state;
    cs_json_arena_install();
    /* Outside a span: plain malloc, the arena does not grow. */
    size_t before = cs_json_arena_bytes();
    cJSON *outside = cJSON_Parse("{\"a\":[1,2,3]}");
    assert_non_null(outside);
    assert_int_equal(cs_json_arena_bytes(), before);

    char *text = big_array(20000); /* several MB of nodes: several chunks */
    cs_json_arena_begin();
    cJSON *v = cJSON_Parse(text);
    assert_non_null(v);
    assert_int_equal(cJSON_GetArraySize(v), 20000);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(v, 19999), "k")->valuestring, "value 19999");
    assert_true(cs_json_arena_bytes() > CS_JSON_ARENA_KEEP);
    char *printed = cJSON_PrintUnformatted(cJSON_GetArrayItem(v, 7));
    assert_string_equal(printed, "{\"k\":\"value 7\",\"n\":7}");
    cJSON_free(printed);
    cJSON_Delete(v);                /* a no-op on arena memory */
    cJSON_Delete(outside);          /* a malloc'd tree freed inside a span: a real free */
    cs_json_arena_delete(NULL);
    cs_json_arena_end();
    assert_true(cs_json_arena_bytes() <= CS_JSON_ARENA_KEEP);

    /* The kept chunk is reused by the next span. */
    cs_json_arena_begin();
    cJSON *w = cJSON_Parse("{\"again\":true}");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(w, "again")));
    cs_json_arena_delete(w);
    cs_json_arena_end();
    free(text);
}

static void *other_thread(void *arg)
{
    (void)arg;
    /* No span on this thread: malloc'd trees, freed normally. */
    for (int i = 0; i < 1000; i++) {
        cJSON *v = cJSON_Parse("{\"x\":[1,{\"y\":\"z\"}]}");
        if (!v) return (void *)1;
        cJSON_Delete(v);
    }
    return cs_json_arena_bytes() == 0 ? NULL : (void *)2;
}

static void test_other_threads_unaffected(void **state)
{
    (void)state;
    cs_json_arena_begin();
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
    cJSON *mine = cJSON_Parse("[1,2,3]");
    void *rc;
    pthread_join(t, &rc);
    assert_null(rc);
    assert_int_equal(cJSON_GetArraySize(mine), 3);
    cs_json_arena_end();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span),
        cmocka_unit_test(test_other_threads_unaffected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
