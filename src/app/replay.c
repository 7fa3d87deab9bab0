/*
 * app/replay — `crmstream replay`: move the pipeline's position back
 * (pipeline.h, cs_pipeline_replay_move) on a data directory no server holds,
 * then re-apply the log from there to its end with the pipeline itself,
 * showing progress on a terminal. A running server is replayed through
 * POST /api/v1/replay instead (handlers.c); the data directory's LOCK tells
 * the two cases apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/app.h"
#include "core/logging.h"

static const char replay_usage[] =
    "usage: crmstream replay (--from-offset N | --from-time RFC3339 | --rebuild) [--partition P] [--rebuild]\n"
    "                        [--data DIR] [--config FILE]\n"
    "\n"
    "Move the pipeline's position (its store offsets) back and re-apply the log from there.\n"
    "Effects are not emitted twice (leads are unique by event id, signal history by cause);\n"
    "the signals state is rebuilt. For a running server use POST /api/v1/replay.\n"
    "\n"
    "  --from-offset N       from the first kept offset at or after N, in every partition\n"
    "  --from-time T         from the first offset appended at or after T (RFC 3339)\n"
    "  --partition P         only partition P (default: all)\n"
    "  --rebuild             from the start, clearing the derived signal state (values and\n"
    "                        history) first so every signal is recomputed\n"
    "  --data DIR            data directory (default: ./data, or `data:` in the config)\n"
    "  --config FILE         configuration (default: config/crmstream.yaml if present)\n"
    "  -h, --help            this help\n"
    "\n"
    "Prints one line per partition (\"partition P: offset A -> B (log end E)\") and a summary.\n"
    "Exit 0 on success, 1 on failure (e.g. a server holds the data directory), 2 on bad usage.\n";

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0) return -1;
    *out = v;
    return 0;
}

/* A bar with rate and time left on stderr, only on a terminal. */
static void progress(int64_t done, int64_t total, int64_t t0_us)
{
    double el = (double)(cs_mono_us() - t0_us) / 1e6, rate = el > 0 ? (double)done / el : 0;
    int width = 30, fill = total > 0 ? (int)((double)done * width / (double)total) : width;
    if (fill > width) fill = width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    char left[32] = "--";
    if (rate > 0 && total > done) snprintf(left, sizeof left, "%.0f s", (double)(total - done) / rate);
    else if (total <= done) snprintf(left, sizeof left, "0 s");
    fprintf(stderr, "\r[%s] %3d%% %lld/%lld events  %.0f ev/s  %s left   ", bar,
            total > 0 ? (int)(100.0 * (double)done / (double)total) : 100, (long long)done, (long long)total, rate,
            left);
    fflush(stderr);
}

/* Events the pipeline has to apply, over every partition (also those the
 * replay did not touch but that were behind). */
static int64_t backlog(cs_bus *bus, cs_store *st)
{
    int64_t total = 0, next;
    for (int p = 0; p < bus->partitions; p++)
        if (st->ops->offset_get(st, CS_CONSUMER_PIPELINE, CS_TOPIC_EVENTS, p, &next) == 0)
            total += bus->ops->end_offset(bus, CS_TOPIC_EVENTS, p) - next;
    return total;
}

int cs_cmd_replay(int argc, char **argv)
{
    static const struct option opts[] = {{"from-offset", required_argument, 0, 'o'},
                                         {"from-time", required_argument, 0, 't'},
                                         {"partition", required_argument, 0, 'p'},
                                         {"rebuild", no_argument, 0, 'r'},
                                         {"data", required_argument, 0, 'd'},
                                         {"config", required_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *config = NULL, *data = NULL;
    cs_replay_req req = {.partition = -1, .from_offset = -1};
    int have_offset = 0, have_time = 0, c;
    int64_t v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if (parse_i64(optarg, &req.from_offset)) cs_die_usage("replay", "--from-offset: expected an offset >= 0");
            have_offset = 1;
            break;
        case 't':
            if (cs_parse_time(optarg, &req.from_time_us) != 0)
                cs_die_usage("replay", "--from-time: expected an RFC 3339 time (2026-11-27T10:00:00Z)");
            have_time = 1;
            break;
        case 'p':
            if (parse_i64(optarg, &v) || v > 1000000) cs_die_usage("replay", "--partition: expected a partition number");
            req.partition = (int)v;
            break;
        case 'r': req.rebuild = 1; break;
        case 'd': data = optarg; break;
        case 'c': config = optarg; break;
        case 'h': fputs(replay_usage, stdout); return 0;
        default: cs_die_usage("replay", "unknown option or missing value (see crmstream replay --help)");
        }
    }
    if (optind < argc) cs_die_usage("replay", "unexpected argument (see crmstream replay --help)");
    if (have_offset && have_time) cs_die_usage("replay", "--from-offset and --from-time exclude each other");
    if (!have_offset && !have_time && !req.rebuild)
        cs_die_usage("replay", "say where from: --from-offset N, --from-time RFC3339 or --rebuild");
    if (req.rebuild && (have_time || (have_offset && req.from_offset != 0)))
        cs_die_usage("replay", "--rebuild replays from the start: drop --from-time, or use --from-offset 0");

    static cs_config cfg;
    if (cs_app_load_config(&cfg, config)) return 1;
    if (data) free(cfg.data_dir), cfg.data_dir = cs_strdup(data);
    const char *dir = cfg.data_dir;
    if (req.partition >= cfg.partitions) {
        char why[160];
        snprintf(why, sizeof why, "--partition: partition %d does not exist (log.partitions is %d)", req.partition,
                 cfg.partitions);
        cs_die_usage("replay", why);
    }
    struct stat sb;
    char path[4200], err[1024];
    int kafka = strncmp(cfg.bus, "kafka://", 8) == 0;
    snprintf(path, sizeof path, "%s/log", dir);
    if (!kafka && stat(path, &sb) != 0) {
        snprintf(err, sizeof err, "no log in this data directory (%.900s): nothing to replay", path);
        cs_fail("replay", err);
        cs_config_free(&cfg);
        return 1;
    }
    if (kafka && cs_mkdirs(dir, 0755) != 0) { /* the LOCK below; the log is Kafka's */
        cs_fail(dir, strerror(errno));
        cs_config_free(&cfg);
        return 1;
    }
    /* serve holds DIR/LOCK for its lifetime: never write under a server. */
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, sizeof err,
                 "%.900s: a running server holds this data directory; replay it online with POST /api/v1/replay", dir);
        cs_fail("replay", err);
        if (lockfd >= 0) close(lockfd);
        cs_config_free(&cfg);
        return 1;
    }
    int rc = 1, usage = 0;
    cs_store *st = NULL;
    cs_pipeline *pl = NULL;
    cs_replay_result res = {0};
    /* On Kafka the log is the cluster's: the store's offsets move, and the
     * pipeline started below joins the consumer group like any member
     * (running members see the moved offsets through their fence and
     * resync from the store). */
    cs_bus *bus = kafka ? cs_bus_kafka_open(cfg.bus, &cfg, err, sizeof err) : cs_bus_embedded_open_cfg(dir, &cfg, err, sizeof err);
    if (!bus) {
        cs_fail(kafka ? "kafka" : "log", err);
        goto out;
    }
    st = cs_store_open(cfg.store, dir, err, sizeof err);
    if (!st) {
        cs_fail("store", err);
        goto out;
    }
    if (cs_pipeline_replay_move(bus, st, &req, &res, &usage, err, sizeof err) != 0) {
        cs_fail("replay", err);
        if (usage) rc = 2;
        goto out;
    }
    for (int i = 0; i < res.n; i++)
        printf("partition %d: offset %lld -> %lld (log end %lld)\n", res.v[i].partition, (long long)res.v[i].before,
               (long long)res.v[i].after, (long long)res.v[i].end);
    fflush(stdout);
    /* Re-apply with the pipeline itself: it rebuilds the signals state up
     * to the new offsets at start, then applies from them. */
    int64_t t0 = cs_mono_us(), total = backlog(bus, st);
    pl = cs_pipeline_start(bus, st, &cfg, err, sizeof err);
    if (!pl) {
        cs_fail("pipeline", err);
        goto out;
    }
    int tty = isatty(STDERR_FILENO);
    int64_t lag, last = 0;
    while ((lag = cs_pipeline_lag(pl)) > 0) {
        if (tty && cs_mono_us() - last >= 200000) {
            last = cs_mono_us();
            progress(total - lag, total, t0);
        }
        usleep(20000);
    }
    if (tty) {
        progress(total, total, t0);
        fputs("\n", stderr);
    }
    cs_pipeline_stop(pl);
    pl = NULL;
    double secs = (double)(cs_mono_us() - t0) / 1e6;
    printf("replayed %lld events in %.2f s (%.0f ev/s)%s\n", (long long)total, secs,
           secs > 0 ? (double)total / secs : 0.0, req.rebuild ? "; signals recomputed from the start" : "");
    rc = 0;
out:
    if (pl) cs_pipeline_stop(pl);
    cs_replay_result_free(&res);
    if (st) st->ops->close(st);
    if (bus) bus->ops->close(bus);
    cs_config_free(&cfg);
    close(lockfd);
    return rc;
}
