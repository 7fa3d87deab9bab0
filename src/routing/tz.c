/*
 * routing/tz — UTC offsets of IANA time zones, read from the system's TZif
 * files (RFC 8536; Debian's tzdata in /usr/share/zoneinfo).
 *
 * Why not localtime_r: the C library converts in ONE zone per process (TZ),
 * and switching it with setenv + tzset is not thread-safe. Reps live in many
 * zones, so each zone's transitions are read once into a bounded cache
 * (CS_TZ_CACHE zones, each at most CS_TZ_MAX_TRANS transitions; a full
 * cache replaces its oldest entry) and an offset is a binary search.
 *
 * Times after a zone's last transition keep its last offset. Debian ships
 * "fat" TZif files with explicit transitions up to 2037, so DST is exact
 * until then; the POSIX-TZ footer that extends rules beyond is not read.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "routing/router.h"

#define CS_TZ_CACHE 64
#define CS_TZ_MAX_TRANS 4096
#define CS_TZ_MAX_FILE (1 << 20)
#define CS_TZ_DIR "/usr/share/zoneinfo"

struct zone {
    char     name[64];
    int      ok;          /* 0: unknown zone (cached as such) */
    int      n;           /* transitions */
    int64_t *at;          /* transition times (UTC seconds) */
    int32_t *off;         /* offset from each transition on */
    int32_t  before;      /* offset before the first transition */
};

static struct zone cache[CS_TZ_CACHE];
static int cache_n, cache_next;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static int valid_name(const char *z)
{
    size_t n = strlen(z);
    if (n == 0 || n >= 64 || z[0] == '/' || strstr(z, "..")) return 0;
    for (const char *p = z; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("/_+-", *p)) return 0;
    return 1;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Parse a TZif file; 0 ok. Uses the 64-bit block of version 2+ files. */
static int parse(const unsigned char *d, size_t len, struct zone *z)
{
    if (len < 44 || memcmp(d, "TZif", 4) != 0) return -1;
    int v2 = d[4] >= '2';
    const unsigned char *h = d;
    size_t tsize = 4;
    for (int pass = 0; pass < 2; pass++) {
        if ((size_t)(h - d) + 44 > len) return -1;
        uint32_t isut = be32(h + 20), isstd = be32(h + 24), leap = be32(h + 28), timecnt = be32(h + 32),
                 typecnt = be32(h + 36), charcnt = be32(h + 40);
        if (timecnt > CS_TZ_MAX_TRANS || typecnt == 0 || typecnt > 256 || charcnt > 4096 || leap > 4096 ||
            isut > 256 || isstd > 256)
            return -1;
        size_t body = timecnt * tsize + timecnt + typecnt * 6 + charcnt + leap * (tsize + 4) + isstd + isut;
        const unsigned char *p = h + 44;
        if ((size_t)(p - d) + body > len) return -1;
        if (pass == 0 && v2) {
            h = p + body; /* the 64-bit header follows */
            tsize = 8;
            continue;
        }
        const unsigned char *times = p, *idx = p + timecnt * tsize, *types = idx + timecnt;
        z->n = (int)timecnt;
        z->at = cs_malloc((timecnt ? timecnt : 1) * sizeof *z->at);
        z->off = cs_malloc((timecnt ? timecnt : 1) * sizeof *z->off);
        for (uint32_t i = 0; i < timecnt; i++) {
            if (idx[i] >= typecnt) return -1;
            z->at[i] = tsize == 8 ? be64(times + i * 8) : (int32_t)be32(times + i * 4);
            z->off[i] = (int32_t)be32(types + idx[i] * 6);
        }
        /* Before the first transition: the first standard-time type (RFC 8536 §3.2), else type 0. */
        z->before = (int32_t)be32(types);
        for (uint32_t t = 0; t < typecnt; t++)
            if (!types[t * 6 + 4]) {
                z->before = (int32_t)be32(types + t * 6);
                break;
            }
        return 0;
    }
    return -1;
}

static void load(struct zone *z, const char *name)
{
    memset(z, 0, sizeof *z);
    snprintf(z->name, sizeof z->name, "%s", name);
    if (!valid_name(name)) return;
    char path[160];
    snprintf(path, sizeof path, "%s/%s", CS_TZ_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    unsigned char *buf = cs_malloc(CS_TZ_MAX_FILE);
    size_t len = fread(buf, 1, CS_TZ_MAX_FILE, f);
    fclose(f);
    if (parse(buf, len, z) == 0) {
        z->ok = 1;
    } else {
        free(z->at);
        free(z->off);
        z->at = NULL;
        z->off = NULL;
        z->n = 0;
    }
    free(buf);
}

static int32_t offset_at(const struct zone *z, int64_t t)
{
    if (z->n == 0 || t < z->at[0]) return z->before;
    int lo = 0, hi = z->n - 1; /* last transition <= t */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (z->at[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return z->off[lo];
}

int cs_tz_offset(const char *zone, int64_t utc_s, int *off_s)
{
    *off_s = 0;
    if (!zone || !*zone || strcmp(zone, "UTC") == 0 || strcmp(zone, "Etc/UTC") == 0) return 0;
    if (strlen(zone) >= 64) return -1;
    pthread_mutex_lock(&cache_mu);
    struct zone *z = NULL;
    for (int i = 0; i < cache_n; i++)
        if (strcmp(cache[i].name, zone) == 0) {
            z = &cache[i];
            break;
        }
    if (!z) {
        if (cache_n < CS_TZ_CACHE) {
            z = &cache[cache_n++];
        } else {
            z = &cache[cache_next];
            cache_next = (cache_next + 1) % CS_TZ_CACHE;
            free(z->at);
            free(z->off);
        }
        load(z, zone);
    }
    int rc = z->ok ? 0 : -1;
    if (rc == 0) *off_s = offset_at(z, utc_s);
    pthread_mutex_unlock(&cache_mu);
    return rc;
}
