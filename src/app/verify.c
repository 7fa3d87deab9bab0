/*
 * app/verify — `crmstream verify warehouse`: the command around
 * warehouse/verify.c. The embedded log is opened like `replay` does, so only
 * on a data directory no server holds (DIR/LOCK); with a Kafka bus the log
 * is read from the brokers and a server may keep running.
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
#include "warehouse/verify.h"

static const char verify_usage[] =
    "usage: crmstream verify warehouse [--from T] [--to T] [--json] [--data DIR] [--config FILE]\n"
    "\n"
    "Compare each configured warehouse destination (warehouse.postgres: the events table;\n"
    "warehouse.dir: the zstd NDJSON files and their manifest) with the log: counts per event\n"
    "type per day (event time, UTC), and every event_id's count against the log's, which finds\n"
    "events missing, duplicated or not in the log. Prints the table and a line per destination.\n"
    "\n"
    "  --from T          only events whose time is at or after T (RFC 3339)\n"
    "  --to T            only events whose time is before T (RFC 3339)\n"
    "  --json            one JSON object instead of the table\n"
    "  --ids-per-pass N  event ids held in memory at once (~48 bytes each; default 2000000);\n"
    "                    a larger log is compared in several passes\n"
    "  --data DIR        data directory (default: ./data, or `data:` in the config)\n"
    "  --config FILE     configuration (default: config/crmstream.yaml if present)\n"
    "  -h, --help        this help\n"
    "\n"
    "With the embedded log, stop the server first (only one process may open the log).\n"
    "Exit 0 when every destination holds exactly the log's events, 1 on any difference or when\n"
    "a destination or the log cannot be read, 2 on bad usage.\n";

int cs_cmd_verify(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(verify_usage, stdout);
        return 0;
    }
    if (argc < 2) cs_die_usage("verify", "say what to verify: crmstream verify warehouse (see --help)");
    if (strcmp(argv[1], "warehouse") != 0) {
        char why[160];
        snprintf(why, sizeof why, "unknown subject \"%.60s\" (only: warehouse)", argv[1]);
        cs_die_usage("verify", why);
    }
    argc--, argv++;
    static const struct option opts[] = {{"from", required_argument, 0, 'f'},
                                         {"to", required_argument, 0, 't'},
                                         {"json", no_argument, 0, 'j'},
                                         {"ids-per-pass", required_argument, 0, 'n'},
                                         {"data", required_argument, 0, 'd'},
                                         {"config", required_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *config = NULL, *data = NULL;
    cs_wh_verify_opts o = {0};
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (cs_parse_time(optarg, &o.from_us) != 0)
                cs_die_usage("verify", "--from: expected an RFC 3339 time (2026-11-27T00:00:00Z)");
            o.has_from = 1;
            break;
        case 't':
            if (cs_parse_time(optarg, &o.to_us) != 0)
                cs_die_usage("verify", "--to: expected an RFC 3339 time (2026-11-28T00:00:00Z)");
            o.has_to = 1;
            break;
        case 'n': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || v < 1) cs_die_usage("verify", "--ids-per-pass: expected a count >= 1");
            o.ids_per_pass = v;
            break;
        }
        case 'j': json = 1; break;
        case 'd': data = optarg; break;
        case 'c': config = optarg; break;
        case 'h': fputs(verify_usage, stdout); return 0;
        default: cs_die_usage("verify", "unknown option or missing value (see crmstream verify --help)");
        }
    }
    if (optind < argc) cs_die_usage("verify", "unexpected argument (see crmstream verify --help)");
    if (o.has_from && o.has_to && o.to_us <= o.from_us) cs_die_usage("verify", "--to must be after --from");

    cs_log_set_level(CS_LOG_WARN); /* the table on stdout; only problems on stderr */
    static cs_config cfg;
    if (cs_app_load_config(&cfg, config)) return 1;
    if (data) free(cfg.data_dir), cfg.data_dir = cs_strdup(data);
    const char *dir = cfg.data_dir;
    char path[4200], err[1024];
    int kafka = strncmp(cfg.bus, "kafka://", 8) == 0, lockfd = -1, rc = 1;
    cs_bus *bus = NULL;
    cs_wh_verify *v = NULL;
    if (!kafka) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/log", dir);
        if (stat(path, &sb) != 0) {
            snprintf(err, sizeof err, "no log in this data directory (%.900s)", path);
            cs_fail("verify", err);
            goto out;
        }
        /* serve holds DIR/LOCK: the embedded log has one process at a time. */
        snprintf(path, sizeof path, "%s/LOCK", dir);
        lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
            snprintf(err, sizeof err, "%.900s: a running server holds this data directory; stop it first", dir);
            cs_fail("verify", err);
            goto out;
        }
    }
    bus = kafka ? cs_bus_kafka_open(cfg.bus, &cfg, err, sizeof err) : cs_bus_embedded_open_cfg(dir, &cfg, err, sizeof err);
    if (!bus) {
        cs_fail(kafka ? "kafka" : "log", err);
        goto out;
    }
    v = cs_wh_verify_run(bus, &cfg, &o, err, sizeof err);
    if (!v) {
        cs_fail("verify", err);
        goto out;
    }
    cs_wh_verify_print(v, stdout, json);
    fflush(stdout);
    rc = cs_wh_verify_equal(v) ? 0 : 1;
out:
    cs_wh_verify_free(v);
    if (bus) bus->ops->close(bus);
    cs_config_free(&cfg);
    if (lockfd >= 0) close(lockfd);
    return rc;
}
