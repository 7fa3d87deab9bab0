/*
 * Unit tests for core/: murmur2 and partitioning, CRC-32C, RFC 3339 time
 * parsing/formatting, configuration loading, JSON string escaping and UTF-8
 * validation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "core/config.h"
#include "core/hash.h"
#include "core/util.h"
#include "ingest/event.h"

/* A small deterministic PRNG (splitmix64) so failures reproduce. */
static uint64_t rng_state;
static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------------- murmur2 */

struct mvec {
    const char *key;
    int32_t     want;
};

/* Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
 * testMurmur2 (checked against apache/kafka). */
static const struct mvec kafka_vectors[] = {
    {"21", -973932308},
    {"foobar", -790332482},
    {"a-little-bit-long-string", -985981536},
    {"a-little-bit-longer-string", -1486304829},
    {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
    {"abc", 479470107},
};

static void test_murmur2_kafka_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof kafka_vectors / sizeof kafka_vectors[0]; i++) {
        const char *k = kafka_vectors[i].key;
        int32_t got = cs_murmur2(k, strlen(k));
        if (got != kafka_vectors[i].want)
            fail_msg("murmur2(\"%s\") = %d, Kafka says %d", k, (int)got, (int)kafka_vectors[i].want);
    }
    /* The empty key is not in Kafka's UtilsTest; 0x106e08d9 = 275646681 is
     * librdkafka's unittest_murmur2 value (labelled as the Java result). */
    assert_int_equal(cs_murmur2("", 0), 275646681);
}

/* librdkafka src/rdmurmur2.c unittest_murmur2 (java_murmur2_results): the
 * same strings read at offsets 1..3 exercise unaligned input. */
static void test_murmur2_librdkafka_vectors_unaligned(void **state)
{
    (void)state;
    static const char short_unaligned[] = "1234";
    static const char unaligned[] = "PreAmbleWillBeRemoved,ThePrePartThatIs";
    struct {
        const char *key;
        uint32_t    want;
    } v[] = {
        {"kafka", 0xd067cf64u},           {"giberish123456789", 0x8f552b0cu},
        {short_unaligned, 0x9fc97b14u},   {short_unaligned + 1, 0xe7c009cau},
        {short_unaligned + 2, 0x873930dau}, {short_unaligned + 3, 0x5a4b5ca1u},
        {unaligned, 0x78424f1cu},         {unaligned + 1, 0x4a62b377u},
        {unaligned + 2, 0xe0e4e09eu},     {unaligned + 3, 0x62b8b43fu},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint32_t got = (uint32_t)cs_murmur2(v[i].key, strlen(v[i].key));
        if (got != v[i].want) fail_msg("murmur2(\"%s\") = 0x%08x, want 0x%08x", v[i].key, got, v[i].want);
    }
    /* Copies at every alignment hash identically. */
    char buf[64 + 8];
    size_t n = strlen(unaligned);
    for (size_t a = 0; a < 8; a++) {
        memcpy(buf + a, unaligned, n);
        assert_int_equal(cs_murmur2(buf + a, n), (int32_t)0x78424f1cu);
    }
}

static void test_partition_for_masks_sign_bit(void **state)
{
    (void)state;
    /* murmur2("21") = -973932308 (negative): Kafka clears the sign bit
     * (Utils.toPositive) rather than taking abs() or a signed remainder. */
    int32_t h = cs_murmur2("21", 2);
    assert_true(h < 0);
    assert_int_equal(cs_partition_for("21", 2, 100), 40);  /* abs() would give 8, signed % gives -8 */
    assert_int_equal(cs_partition_for("21", 2, 7), 3);     /* abs() would give 6 */
    assert_int_equal(cs_partition_for("21", 2, 8), 4);
    assert_int_equal(cs_partition_for("21", 2, 12), 0);
    assert_int_equal(cs_partition_for("foobar", 6, 100), 66);
    assert_int_equal(cs_partition_for("kafka", 5, 3), 1);
    assert_int_equal(cs_partition_for("kafka", 5, 12), 4);
    /* Positive hashes: plain remainder. */
    assert_int_equal(cs_partition_for("acc_00001", 9, 8), 7);
    assert_int_equal(cs_partition_for("acc_00042", 9, 100), 22);

    /* Every key lands in range, and equals the masked formula. */
    char key[32];
    int negatives = 0;
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "acc_%05d", i);
        int32_t hh = cs_murmur2(key, (size_t)n);
        negatives += hh < 0;
        for (int parts = 1; parts <= 64; parts *= 2) {
            int p = cs_partition_for(key, (size_t)n, parts + 3);
            assert_true(p >= 0 && p < parts + 3);
            assert_int_equal(p, (int)(((uint32_t)hh & 0x7fffffffu) % (uint32_t)(parts + 3)));
        }
        assert_int_equal(cs_partition_for(key, (size_t)n, 1), 0);
    }
    assert_true(negatives > 1000); /* the sample really exercised negative hashes */
}

/* ---------------------------------------------------------------- CRC-32C */

/* Bit-at-a-time reference, independent of the product's tables. */
static uint32_t crc32c_ref(uint32_t crc, const uint8_t *p, size_t len)
{
    crc = ~crc;
    while (len--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void test_crc32c_known_values(void **state)
{
    (void)state;
    assert_int_equal(cs_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(cs_crc32c_sw(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(cs_crc32c(0, "", 0), 0);
    assert_int_equal(cs_crc32c_sw(0, "", 0), 0);
    /* RFC 3720 (iSCSI) B.4 test vectors. */
    uint8_t b[32];
    memset(b, 0, sizeof b);
    assert_int_equal(cs_crc32c(0, b, 32), 0x8A9136AAu);
    assert_int_equal(cs_crc32c_sw(0, b, 32), 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    assert_int_equal(cs_crc32c(0, b, 32), 0x62A8AB43u);
    assert_int_equal(cs_crc32c_sw(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    assert_int_equal(cs_crc32c(0, b, 32), 0x46DD794Eu);
    assert_int_equal(cs_crc32c_sw(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    assert_int_equal(cs_crc32c(0, b, 32), 0x113FDB5Cu);
    assert_int_equal(cs_crc32c_sw(0, b, 32), 0x113FDB5Cu);
    /* Extending: crc(a||b) == crc(crc(a), b). */
    assert_int_equal(cs_crc32c(cs_crc32c(0, "12345", 5), "6789", 4), 0xE3069283u);
    assert_int_equal(cs_crc32c_sw(cs_crc32c_sw(0, "1234", 4), "56789", 5), 0xE3069283u);
}

static void test_crc32c_hw_sw_agree(void **state)
{
    (void)state;
#if defined(__x86_64__)
    if (!cs_crc32c_hw()) print_message("# note: no SSE4.2; cs_crc32c uses the table version\n");
#endif
    rng_state = 42;
    uint8_t *mem = malloc(300 + 16);
    assert_non_null(mem);
    for (size_t len = 0; len <= 300; len++) {
        for (size_t align = 0; align < 8; align++) {
            uint8_t *p = mem + align;
            for (size_t i = 0; i < len; i++) p[i] = (uint8_t)rng_next();
            uint32_t seed = (align & 1) ? (uint32_t)rng_next() : 0;
            uint32_t ref = crc32c_ref(seed, p, len);
            uint32_t hw = cs_crc32c(seed, p, len);
            uint32_t sw = cs_crc32c_sw(seed, p, len);
            if (hw != ref || sw != ref)
                fail_msg("len %zu align %zu seed %08x: cs_crc32c %08x sw %08x ref %08x", len, align, seed,
                         hw, sw, ref);
            /* Split at every 7th point: extension gives the same result. */
            for (size_t cut = 0; cut <= len; cut += 7) {
                uint32_t c = cs_crc32c(cs_crc32c(seed, p, cut), p + cut, len - cut);
                assert_int_equal(c, ref);
            }
        }
    }
    free(mem);
}

/* ------------------------------------------------------------------- time */

static int64_t parse_ok(const char *s)
{
    int64_t us = 0x5a5a5a5a;
    if (cs_parse_time(s, &us) != 0) fail_msg("cs_parse_time rejected valid \"%s\"", s);
    return us;
}

static void expect_reject(const char *s)
{
    int64_t us = 12345;
    if (cs_parse_time(s, &us) != -1) fail_msg("cs_parse_time accepted invalid \"%s\" (us=%lld)", s, (long long)us);
}

static void test_time_parse_basic(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse_ok("2026-11-27T10:00:00.123Z"), 1795773600123000LL);
    assert_int_equal(parse_ok("2026-11-27T10:00:00Z"), 1795773600000000LL);
    assert_int_equal(parse_ok("2026-11-27t10:00:00z"), 1795773600000000LL);
    assert_int_equal(parse_ok("2026-11-27 10:00:00Z"), 1795773600000000LL);
    assert_int_equal(parse_ok("1969-12-31T23:59:59.999Z"), -1000);
    assert_int_equal(parse_ok("0001-01-01T00:00:00Z"), -62135596800000000LL);
    assert_int_equal(parse_ok("9999-12-31T23:59:59.999Z"), 253402300799999000LL);
}

static void test_time_offsets(void **state)
{
    (void)state;
    int64_t z = parse_ok("2026-11-27T10:00:00Z");
    assert_int_equal(parse_ok("2026-11-27T12:00:00+02:00"), z);
    assert_int_equal(parse_ok("2026-11-27T04:30:00-05:30"), z);
    assert_int_equal(parse_ok("2026-11-27T10:00:00+00:00"), z);
    assert_int_equal(parse_ok("2026-11-27T10:00:00-00:00"), z);
    /* Offsets move across a day and a year boundary. */
    assert_int_equal(parse_ok("2027-01-01T01:30:00+02:00"), parse_ok("2026-12-31T23:30:00Z"));
    assert_int_equal(parse_ok("2026-12-31T23:00:00-23:59"), parse_ok("2027-01-01T22:59:00Z"));

    char buf[40];
    cs_fmt_time_ms(parse_ok("2026-11-27T12:00:00.5+02:00"), buf, sizeof buf);
    assert_string_equal(buf, "2026-11-27T10:00:00.500Z");
}

static void test_time_fractions(void **state)
{
    (void)state;
    int64_t base = parse_ok("2026-11-27T10:00:00Z");
    assert_int_equal(parse_ok("2026-11-27T10:00:00.1Z") - base, 100000);
    assert_int_equal(parse_ok("2026-11-27T10:00:00.12Z") - base, 120000);
    assert_int_equal(parse_ok("2026-11-27T10:00:00.000001Z") - base, 1);
    assert_int_equal(parse_ok("2026-11-27T10:00:00.123456Z") - base, 123456);
    /* More than microsecond precision is accepted and truncated. */
    assert_int_equal(parse_ok("2026-11-27T10:00:00.1234569Z") - base, 123456);
    assert_int_equal(parse_ok("2026-11-27T10:00:00.999999999Z") - base, 999999);
    assert_int_equal(parse_ok("2026-11-27T12:00:00.250+02:00") - base, 250000);
    expect_reject("2026-11-27T10:00:00.Z");
    expect_reject("2026-11-27T10:00:00.+02:00");
    expect_reject("2026-11-27T10:00:00,5Z");
}

static void test_time_leap_days(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("2024-02-29T23:59:59Z"), 1709251199000000LL);
    assert_int_equal(parse_ok("2000-02-29T00:00:00Z"), 951782400000000LL);
    assert_int_equal(parse_ok("2024-03-01T00:00:00Z") - parse_ok("2024-02-28T00:00:00Z"),
                     2LL * 86400 * 1000000);
    assert_int_equal(parse_ok("2026-03-01T00:00:00Z") - parse_ok("2026-02-28T00:00:00Z"),
                     1LL * 86400 * 1000000);
    expect_reject("2026-02-29T00:00:00Z");
    expect_reject("1900-02-29T00:00:00Z"); /* divisible by 100, not 400 */
    expect_reject("2100-02-29T00:00:00Z");
    expect_reject("2024-02-30T00:00:00Z");
    /* Month lengths. */
    parse_ok("2026-01-31T00:00:00Z");
    parse_ok("2026-12-31T00:00:00Z");
    expect_reject("2026-04-31T00:00:00Z");
    expect_reject("2026-06-31T00:00:00Z");
    expect_reject("2026-09-31T00:00:00Z");
    expect_reject("2026-11-31T00:00:00Z");
}

static void test_time_rejections(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026",
        "2026-11-27",
        "2026-13-01T00:00:00Z",          /* bad month */
        "2026-00-10T00:00:00Z",
        "2026-11-00T00:00:00Z",
        "2026-11-32T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T10:60:00Z",
        "2026-11-27T10:00:61Z",
        "2026-11-27T10:00:00",           /* missing zone */
        "2026-11-27T10:00:00.123",
        "2026-11-27T10:00:00Zjunk",      /* trailing junk */
        "2026-11-27T10:00:00Z ",
        "2026-11-27T10:00:00+02:00x",
        "2026-11-27T10:00:00+02",
        "2026-11-27T10:00:00+0200",
        "2026-11-27T10:00:00+2:00",
        "2026-11-27T10:00:00+24:00",
        "2026-11-27T10:00:00+02:60",
        "2026-11-27X10:00:00Z",
        "2026/11/27T10:00:00Z",
        "26-11-27T10:00:00Z",
        "2026-1-27T10:00:00Z",
        "2026-11-27T1:00:00Z",
        "2026-11-27T10:0:00Z",
        "+2026-11-27T10:00:00Z",
        "2026-11-27T10:00Z",
        "２026-11-27T10:00:00Z",
        "yesterday",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_reject(bad[i]);
}

static void test_time_round_trip(void **state)
{
    (void)state;
    char buf[40];
    static const struct {
        int64_t     us;
        const char *text;
    } fixed[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1795773600123000LL, "2026-11-27T10:00:00.123Z"},
        {1709251199999000LL, "2024-02-29T23:59:59.999Z"},
        {-1000, "1969-12-31T23:59:59.999Z"},
        {-1000000, "1969-12-31T23:59:59.000Z"},
        {253402300799999000LL, "9999-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        cs_fmt_time_ms(fixed[i].us, buf, sizeof buf);
        assert_string_equal(buf, fixed[i].text);
        assert_int_equal(parse_ok(buf), fixed[i].us);
    }
    /* Sub-millisecond digits are dropped (floor, also before 1970). */
    cs_fmt_time_ms(1795773600123999LL, buf, sizeof buf);
    assert_string_equal(buf, "2026-11-27T10:00:00.123Z");
    cs_fmt_time_ms(-1, buf, sizeof buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");

    /* Random millisecond instants in years 1900..9999 survive format+parse,
     * and the text survives parse+format. */
    rng_state = 7;
    const int64_t lo = -2208988800000LL, hi = 253402300799999LL; /* ms */
    for (int i = 0; i < 20000; i++) {
        int64_t ms = lo + (int64_t)(rng_next() % (uint64_t)(hi - lo));
        cs_fmt_time_ms(ms * 1000, buf, sizeof buf);
        assert_int_equal(strlen(buf), 24);
        int64_t back = parse_ok(buf);
        if (back != ms * 1000) fail_msg("%lld -> %s -> %lld", (long long)(ms * 1000), buf, (long long)back);
        char again[40];
        cs_fmt_time_ms(back, again, sizeof again);
        assert_string_equal(again, buf);
    }
}

/* ----------------------------------------------------------------- config */

static void test_config_defaults(void **state)
{
    (void)state;
    cs_config c;
    cs_config_defaults(&c);
    assert_string_equal(c.data_dir, "./data");
    assert_string_equal(c.http_addr, "127.0.0.1:8080");
    assert_int_equal(c.partitions, 8);
    assert_string_equal(c.fsync, "always");
    assert_int_equal(c.fsync_policy, CS_FSYNC_ALWAYS);
    assert_int_equal(c.max_body_bytes, 524288);
    assert_int_equal(c.max_event_bytes, 32768);
    assert_int_equal(c.max_batch_events, 2500);
    assert_int_equal(c.http_threads, 0); /* a thread per connection */
    assert_int_equal(c.pipeline_batch_max, 5000);
    assert_int_equal(c.nreps, 0);
    assert_null(c.reps);

    /* An empty document and a comment-only one keep the defaults. */
    char err[512] = "";
    assert_int_equal(cs_config_load_string(&c, "empty.yaml", "", err, sizeof err), 0);
    assert_int_equal(cs_config_load_string(&c, "c.yaml", "# nothing\n", err, sizeof err), 0);
    assert_int_equal(c.partitions, 8);
    assert_string_equal(c.fsync, "always");
    assert_int_equal(c.fsync_policy, CS_FSYNC_ALWAYS);
    assert_int_equal(c.compress, 1); /* zstd */
    assert_int_equal(c.compression_level, -1);
    cs_config_free(&c);
    /* log.compression: zstd or none; anything else is named. */
    cs_config_defaults(&c);
    assert_int_equal(cs_config_load_string(&c, "n.yaml", "log:\n  compression: none\n  compression_level: 3\n", err,
                                           sizeof err), 0);
    assert_int_equal(c.compress, 0);
    assert_int_equal(c.compression_level, 3);
    cs_config_free(&c);
    cs_config_defaults(&c);
    assert_int_equal(cs_config_load_string(&c, "z.yaml", "log:\n  compression: lz4\n", err, sizeof err), -1);
    assert_string_equal(err, "z.yaml: log.compression: expected zstd or none, got \"lz4\"");
    cs_config_free(&c);
    cs_config_defaults(&c);
    assert_int_equal(cs_config_load_string(&c, "l.yaml", "log:\n  compression_level: 30\n", err, sizeof err), -1);
    assert_non_null(strstr(err, "log.compression_level"));
    cs_config_free(&c);
}

static void test_config_values(void **state)
{
    (void)state;
    cs_config c;
    cs_config_defaults(&c);
    char err[512] = "";
    const char *yaml = "data: /var/lib/crm\n"
                       "http: 0.0.0.0:9000\n"
                       "http_threads: 8\n"
                       "log:\n"
                       "  partitions: 16\n"
                       "  fsync: never\n"
                       "ingest:\n"
                       "  max_body_bytes: 2048\n"
                       "  max_event_bytes: 1024\n"
                       "  max_batch_events: 10\n"
                       "pipeline:\n"
                       "  batch_max_events: 99\n";
    int rc = cs_config_load_string(&c, "t.yaml", yaml, err, sizeof err);
    if (rc != 0) fail_msg("load failed: %s", err);
    assert_string_equal(c.data_dir, "/var/lib/crm");
    assert_string_equal(c.http_addr, "0.0.0.0:9000");
    assert_int_equal(c.http_threads, 8);
    assert_int_equal(c.partitions, 16);
    assert_string_equal(c.fsync, "never");
    assert_int_equal(c.fsync_policy, CS_FSYNC_NEVER);
    assert_int_equal(c.max_body_bytes, 2048);
    assert_int_equal(c.max_event_bytes, 1024);
    assert_int_equal(c.max_batch_events, 10);
    assert_int_equal(c.pipeline_batch_max, 99);
    cs_config_free(&c);

    /* Flow style works the same. */
    cs_config_defaults(&c);
    rc = cs_config_load_string(&c, "t.yaml", "{log: {partitions: 3}}", err, sizeof err);
    if (rc != 0) fail_msg("load failed: %s", err);
    assert_int_equal(c.partitions, 3);
    cs_config_free(&c);

    /* Through a file. */
    char path[] = "/tmp/cs_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "log:\n  partitions: 5\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cs_config_defaults(&c);
    rc = cs_config_load(&c, path, err, sizeof err);
    unlink(path);
    if (rc != 0) fail_msg("load failed: %s", err);
    assert_int_equal(c.partitions, 5);
    assert_int_equal(cs_config_load(&c, path, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    cs_config_free(&c);
}

static void test_config_reps(void **state)
{
    (void)state;
    cs_config c;
    cs_config_defaults(&c);
    char err[512] = "";
    const char *yaml = "routing:\n"
                       "  reps:\n"
                       "    - id: r1\n"
                       "      name: Ana\n"
                       "      email: ana@example.com\n"
                       "    - {id: r2, name: \"Bo \\\"B\\\"\"}\n"
                       "    - id: r3\n";
    int rc = cs_config_load_string(&c, "reps.yaml", yaml, err, sizeof err);
    if (rc != 0) fail_msg("load failed: %s", err);
    assert_int_equal(c.nreps, 3);
    assert_string_equal(c.reps[0].id, "r1");
    assert_string_equal(c.reps[0].name, "Ana");
    assert_string_equal(c.reps[0].email, "ana@example.com");
    assert_string_equal(c.reps[1].id, "r2");
    assert_string_equal(c.reps[1].name, "Bo \"B\"");
    assert_string_equal(c.reps[1].email, "");
    assert_string_equal(c.reps[2].id, "r3");
    assert_string_equal(c.reps[2].name, "r3"); /* name defaults to the id */
    assert_string_equal(c.reps[2].email, "");
    cs_config_free(&c);

    cs_config_defaults(&c);
    assert_int_equal(cs_config_load_string(&c, "reps.yaml", "routing:\n  reps: []\n", err, sizeof err), 0);
    assert_int_equal(c.nreps, 0);
    cs_config_free(&c);

    static const struct {
        const char *yaml;
        const char *want;
    } bad[] = {
        {"routing:\n  reps:\n    - id: a\n    - id: a\n", "reps.yaml:4:7: routing.reps: duplicate rep id \"a\""},
        {"routing:\n  reps:\n    - name: x\n", "reps.yaml:3:7: routing.reps: a rep needs an id"},
        {"routing:\n  reps:\n    - id: a\n      phone: 1\n", "reps.yaml:4:7: routing.reps: unknown rep field \"phone\""},
        {"routing:\n  reps: r1\n", "reps.yaml:2:9: routing.reps: expected a list"},
        {"routing:\n  reps:\n    - r1\n", "reps.yaml:3:7: routing.reps: each rep is a mapping"},
        {"routing:\n  reps:\n    - id: [a]\n", "reps.yaml:3:11: routing.reps: rep fields must be strings"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cs_config_defaults(&c);
        err[0] = '\0';
        rc = cs_config_load_string(&c, "reps.yaml", bad[i].yaml, err, sizeof err);
        if (rc != -1 || strncmp(err, bad[i].want, strlen(bad[i].want)) != 0)
            fail_msg("case %zu: rc %d err \"%s\", want prefix \"%s\"", i, rc, err, bad[i].want);
        cs_config_free(&c);
    }
}

static void expect_config_error(const char *yaml, const char *want_prefix, const char *want_sub)
{
    cs_config c;
    cs_config_defaults(&c);
    char err[512] = "";
    int rc = cs_config_load_string(&c, "t.yaml", yaml, err, sizeof err);
    cs_config_free(&c);
    if (rc != -1) fail_msg("accepted bad config:\n%s", yaml);
    if (want_prefix && strncmp(err, want_prefix, strlen(want_prefix)) != 0)
        fail_msg("error \"%s\" does not start with \"%s\"", err, want_prefix);
    if (want_sub && !strstr(err, want_sub)) fail_msg("error \"%s\" does not contain \"%s\"", err, want_sub);
}

static void test_config_errors(void **state)
{
    (void)state;
    /* Unknown key: file:line:col of the key. */
    expect_config_error("data: ./d\nlog:\n  bogus: 1\n", "t.yaml:3:3: ", "unknown key \"log.bogus\"");
    expect_config_error("partitions: 4\n", "t.yaml:1:1: ", "unknown key \"partitions\"");
    expect_config_error("log:\n  partitions: 4\nextra:\n  x: 1\n", "t.yaml:3:1: ", "\"extra\"");
    expect_config_error("http: a:1\nlog:\n  fsync: never\n  partitions: 2\n  partitons: 2\n", "t.yaml:5:3: ",
                        "log.partitons");
    /* Wrong types: position of the value. */
    expect_config_error("log:\n  partitions: abc\n", "t.yaml:2:15: ", "log.partitions: expected an integer in 1..1024");
    expect_config_error("log:\n  partitions: 0\n", "t.yaml:2:15: ", "1..1024");
    expect_config_error("log:\n  partitions: 1025\n", "t.yaml:2:15: ", "1..1024");
    expect_config_error("log:\n  partitions: 4.5\n", "t.yaml:2:15: ", "log.partitions");
    expect_config_error("log:\n  partitions: 99999999999999999999999\n", "t.yaml:2:15: ", "log.partitions");
    expect_config_error("http_threads: [1, 2]\n", "t.yaml:1:15: ", "http_threads: expected a single value");
    expect_config_error("data:\n  dir: x\n", "t.yaml:2:3: ", "data: expected a single value");
    expect_config_error("log: 5\n", "t.yaml:1:6: ", "log: expected a mapping");
    expect_config_error("- a\n- b\n", "t.yaml:1:1: ", "expected a mapping");
    expect_config_error("ingest:\n  max_body_bytes: 100\n", "t.yaml:2:19: ", "ingest.max_body_bytes");
    /* Not YAML at all. */
    expect_config_error("log: [1, 2\n", "t.yaml:", NULL);
}

static void test_config_fsync(void **state)
{
    (void)state;
    cs_config c;
    char err[512] = "";
    static const struct {
        const char *yaml;
        int         policy, ms;
    } good[] = {
        {"log:\n  fsync: always\n", CS_FSYNC_ALWAYS, 0},
        {"log:\n  fsync: never\n", CS_FSYNC_NEVER, 0},
        {"log:\n  fsync: interval:250\n", CS_FSYNC_INTERVAL, 250},
        {"log:\n  fsync: \"interval:1\"\n", CS_FSYNC_INTERVAL, 1},
        {"log:\n  fsync: interval:60000\n", CS_FSYNC_INTERVAL, 60000},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cs_config_defaults(&c);
        int rc = cs_config_load_string(&c, "t.yaml", good[i].yaml, err, sizeof err);
        if (rc != 0) fail_msg("rejected %s: %s", good[i].yaml, err);
        assert_int_equal(c.fsync_policy, good[i].policy);
        if (good[i].policy == CS_FSYNC_INTERVAL) assert_int_equal(c.fsync_interval_ms, good[i].ms);
        cs_config_free(&c);
    }
    /* Bad values name the key and echo the value. */
    static const char *const bad[] = {
        "log:\n  fsync: sometimes\n", "log:\n  fsync: Always\n",       "log:\n  fsync: interval\n",
        "log:\n  fsync: \"interval:\"\n", "log:\n  fsync: interval:0\n", "log:\n  fsync: interval:60001\n",
        "log:\n  fsync: interval:-5\n", "log:\n  fsync: interval:12x\n", "log:\n  fsync: interval:1.5\n",
        "log:\n  fsync: \"\"\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cs_config_defaults(&c);
        err[0] = '\0';
        int rc = cs_config_load_string(&c, "t.yaml", bad[i], err, sizeof err);
        if (rc != -1) fail_msg("accepted %s", bad[i]);
        assert_non_null(strstr(err, "t.yaml"));
        assert_non_null(strstr(err, "log.fsync"));
        const char *v = strstr(bad[i], "fsync: ") + 7;
        char val[64];
        snprintf(val, sizeof val, "%.*s", (int)strcspn(v, "\n"), v);
        if (val[0] != '"' && !strstr(err, val)) fail_msg("error \"%s\" does not echo \"%s\"", err, val);
        cs_config_free(&c);
    }
}

/* ------------------------------------------------------------ JSON escape */

static void test_json_str_escaping(void **state)
{
    (void)state;
    cs_buf b;
    cs_buf_init(&b);
    cs_buf_json_str(&b, "");
    assert_string_equal(b.data, "\"\"");
    cs_buf_reset(&b);
    cs_buf_json_str(&b, "a\"b\\c/d");
    assert_string_equal(b.data, "\"a\\\"b\\\\c/d\"");
    cs_buf_reset(&b);
    cs_buf_json_str(&b, "\n\r\t\b\f\x01\x1f\x7f");
    assert_string_equal(b.data, "\"\\n\\r\\t\\u0008\\u000c\\u0001\\u001f\x7f\"");
    cs_buf_reset(&b);
    cs_buf_json_str(&b, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"); /* UTF-8 passes through */
    assert_string_equal(b.data, "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* Appends after existing content. */
    cs_buf_reset(&b);
    cs_buf_adds(&b, "{\"k\":");
    cs_buf_json_str(&b, "v\"");
    cs_buf_adds(&b, "}");
    assert_string_equal(b.data, "{\"k\":\"v\\\"\"}");
    assert_int_equal(b.len, strlen(b.data));

    /* Every ASCII byte 1..127 in one string: no raw control character is
     * left and a JSON parser reads back the original. */
    char ascii[128];
    for (int i = 1; i < 128; i++) ascii[i - 1] = (char)i;
    ascii[127] = '\0';
    cs_buf_reset(&b);
    cs_buf_json_str(&b, ascii);
    for (size_t i = 0; i < b.len; i++) assert_true((unsigned char)b.data[i] >= 0x20);
    cJSON *j = cJSON_Parse(b.data);
    assert_non_null(j);
    assert_true(cJSON_IsString(j));
    assert_string_equal(j->valuestring, ascii);
    cJSON_Delete(j);
    cs_buf_free(&b);
}

/* ------------------------------------------------------------------ UTF-8 */

/* Reference: Unicode Table 3-7 (well-formed UTF-8 byte sequences). Returns
 * the length of the well-formed sequence at p, or 0. */
static size_t utf8_ref_seq(const uint8_t *p, size_t left)
{
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c == 0xe0) n = 3, lo = 0xa0;
    else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) n = 3;
    else if (c == 0xed) n = 3, hi = 0x9f;
    else if (c == 0xf0) n = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) n = 4;
    else if (c == 0xf4) n = 4, hi = 0x8f;
    else return 0;
    if (left < n) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t k = 2; k < n; k++)
        if (p[k] < 0x80 || p[k] > 0xbf) return 0;
    return n;
}

static long utf8_ref(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_ref_seq(s + i, len - i);
        if (!n) return (long)i;
        i += n;
    }
    return -1;
}

#define U8(lit) (lit), (sizeof(lit) - 1)

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_int_equal(cs_utf8_invalid_at(U8("")), -1);
    assert_int_equal(cs_utf8_invalid_at(U8("plain ascii")), -1);
    assert_int_equal(cs_utf8_invalid_at(U8("a\0b")), -1); /* NUL is a valid character */
    assert_int_equal(cs_utf8_invalid_at(U8("h\xc3\xa9llo")), -1);        /* é */
    assert_int_equal(cs_utf8_invalid_at(U8("\xc2\x80")), -1);            /* U+0080 */
    assert_int_equal(cs_utf8_invalid_at(U8("\xdf\xbf")), -1);            /* U+07FF */
    assert_int_equal(cs_utf8_invalid_at(U8("\xe0\xa0\x80")), -1);        /* U+0800 */
    assert_int_equal(cs_utf8_invalid_at(U8("\xe2\x82\xac")), -1);        /* € */
    assert_int_equal(cs_utf8_invalid_at(U8("\xed\x9f\xbf")), -1);        /* U+D7FF */
    assert_int_equal(cs_utf8_invalid_at(U8("\xee\x80\x80")), -1);        /* U+E000 */
    assert_int_equal(cs_utf8_invalid_at(U8("\xef\xbf\xbf")), -1);        /* U+FFFF */
    assert_int_equal(cs_utf8_invalid_at(U8("\xf0\x90\x80\x80")), -1);    /* U+10000 */
    assert_int_equal(cs_utf8_invalid_at(U8("\xf0\x9f\x98\x80 ok")), -1); /* 😀 */
    assert_int_equal(cs_utf8_invalid_at(U8("\xf4\x8f\xbf\xbf")), -1);    /* U+10FFFF */

    /* Every scalar value, encoded by hand, is valid; every surrogate is not. */
    uint8_t b[4];
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        size_t n;
        if (cp < 0x80) b[0] = (uint8_t)cp, n = 1;
        else if (cp < 0x800) b[0] = (uint8_t)(0xc0 | cp >> 6), b[1] = (uint8_t)(0x80 | (cp & 0x3f)), n = 2;
        else if (cp < 0x10000)
            b[0] = (uint8_t)(0xe0 | cp >> 12), b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)),
            b[2] = (uint8_t)(0x80 | (cp & 0x3f)), n = 3;
        else
            b[0] = (uint8_t)(0xf0 | cp >> 18), b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f)),
            b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f)), b[3] = (uint8_t)(0x80 | (cp & 0x3f)), n = 4;
        long want = (cp >= 0xd800 && cp <= 0xdfff) ? 0 : -1;
        long got = cs_utf8_invalid_at((const char *)b, n);
        if (got != want) fail_msg("U+%04X: got %ld want %ld", cp, got, want);
    }
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    /* Overlong encodings. */
    assert_int_equal(cs_utf8_invalid_at(U8("\xc0\x80")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("\xc1\xbf")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("ab\xe0\x80\x80")), 2);
    assert_int_equal(cs_utf8_invalid_at(U8("\xe0\x9f\xbf")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("\xf0\x80\x80\x80")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("\xf0\x8f\xbf\xbf")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("x\xc0\xaf")), 1); /* overlong '/' */
    /* Surrogates. */
    assert_int_equal(cs_utf8_invalid_at(U8("\xed\xa0\x80")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("abc\xed\xbf\xbf")), 3);
    assert_int_equal(cs_utf8_invalid_at(U8("\xed\xa0\xbd\xed\xb8\x80")), 0); /* CESU-8 pair */
    /* Above U+10FFFF and bytes that never occur. */
    assert_int_equal(cs_utf8_invalid_at(U8("\xf4\x90\x80\x80")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("\xf5\x80\x80\x80")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("\xf8\x88\x80\x80\x80")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("ok\xfe")), 2);
    assert_int_equal(cs_utf8_invalid_at(U8("ok\xff")), 2);
    /* Stray continuation bytes. */
    assert_int_equal(cs_utf8_invalid_at(U8("\x80")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("\xc3\xa9\xa9")), 2);
    /* Truncated sequences, at the end and followed by ASCII. */
    assert_int_equal(cs_utf8_invalid_at(U8("\xc3")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("abc\xe2\x82")), 3);
    assert_int_equal(cs_utf8_invalid_at(U8("\xe2\x82x")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("\xf0\x9f\x98")), 0);
    assert_int_equal(cs_utf8_invalid_at(U8("\xf0\x9f\x98!")), 0);
    /* The length bounds the scan: a valid sequence cut by len is invalid. */
    assert_int_equal(cs_utf8_invalid_at("\xe2\x82\xac", 2), 0);
    assert_int_equal(cs_utf8_invalid_at("a\xe2\x82\xac", 1), -1);
    assert_int_equal(cs_utf8_invalid_at("\xff", 0), -1);
}

/* Every 1-, 2- and 3-byte string, and 4-byte strings over every first and
 * second byte, agree with the Table 3-7 reference. */
static void test_utf8_exhaustive(void **state)
{
    (void)state;
    uint8_t b[4];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        assert_int_equal(cs_utf8_invalid_at((const char *)b, 1), utf8_ref(b, 1));
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            long want2 = utf8_ref(b, 2), got2 = cs_utf8_invalid_at((const char *)b, 2);
            if (got2 != want2) fail_msg("%02x %02x: got %ld want %ld", x, y, got2, want2);
            if (x < 0xc0 && x >= 0x80) continue; /* a lone continuation fails at 0 either way */
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                long want3 = utf8_ref(b, 3), got3 = cs_utf8_invalid_at((const char *)b, 3);
                if (got3 != want3) fail_msg("%02x %02x %02x: got %ld want %ld", x, y, z, got3, want3);
            }
            if (x < 0xf0 || x > 0xf7) continue;
            static const uint8_t tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0xbf, 0xc0, 0xff};
            for (size_t i = 0; i < sizeof tails; i++)
                for (size_t k = 0; k < sizeof tails; k++) {
                    b[2] = tails[i];
                    b[3] = tails[k];
                    long want4 = utf8_ref(b, 4), got4 = cs_utf8_invalid_at((const char *)b, 4);
                    if (got4 != want4)
                        fail_msg("%02x %02x %02x %02x: got %ld want %ld", x, y, b[2], b[3], got4, want4);
                }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur2_kafka_vectors),
        cmocka_unit_test(test_murmur2_librdkafka_vectors_unaligned),
        cmocka_unit_test(test_partition_for_masks_sign_bit),
        cmocka_unit_test(test_crc32c_known_values),
        cmocka_unit_test(test_crc32c_hw_sw_agree),
        cmocka_unit_test(test_time_parse_basic),
        cmocka_unit_test(test_time_offsets),
        cmocka_unit_test(test_time_fractions),
        cmocka_unit_test(test_time_leap_days),
        cmocka_unit_test(test_time_rejections),
        cmocka_unit_test(test_time_round_trip),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_values),
        cmocka_unit_test(test_config_reps),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_fsync),
        cmocka_unit_test(test_json_str_escaping),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_invalid),
        cmocka_unit_test(test_utf8_exhaustive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
