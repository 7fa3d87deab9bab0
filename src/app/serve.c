/*
 * app/serve — `crmstream serve`: open the log and the store, start the
 * pipeline and the HTTP server, wait for SIGINT/SIGTERM, stop in order.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "app/app.h"
#include "core/logging.h"
#include "metrics/metrics.h"
#include "warehouse/warehouse.h"

static const char serve_usage[] =
    "usage: crmstream serve [--config FILE] [--data DIR] [--http HOST:PORT] [--log-level LEVEL] [--role LIST]\n"
    "\n"
    "Run everything: the embedded log, the pipeline, the SQLite store and the HTTP API.\n"
    "\n"
    "  --config FILE     configuration (default: config/crmstream.yaml if present)\n"
    "  --data DIR        data directory (default: ./data, or `data:` in the config)\n"
    "  --http HOST:PORT  listen address (default 127.0.0.1:8080; port 0 picks a free one,\n"
    "                    written to DIR/http.addr once ready)\n"
    "  --log-level L     debug | info | warn | error (default info)\n"
    "  --role LIST       parts to run, comma-separated: ingest, pipeline, dispatch (default all);\n"
    "                    a subset needs bus: kafka://... and a PostgreSQL store (docs/DEPLOY.md)\n"
    "  -h, --help        this help\n";

/* Load --config, or config/crmstream.yaml when present, over the defaults. */
int cs_app_load_config(cs_config *cfg, const char *path)
{
    char err[512];
    cs_config_defaults(cfg);
    if (!path && access("config/crmstream.yaml", R_OK) == 0) path = "config/crmstream.yaml";
    if (path && cs_config_load(cfg, path, err, sizeof err) != 0) {
        cs_fail("config", err);
        return -1;
    }
    return 0;
}

static int write_addr(const char *dir, const char *addr)
{
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s/http.addr.tmp", dir);
    snprintf(path, sizeof path, "%s/http.addr", dir);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%s\n", addr);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

unsigned cs_app_parse_roles(const char *list, char *err, size_t errlen)
{
    unsigned roles = 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (n == 6 && strncmp(p, "ingest", n) == 0) roles |= CS_ROLE_INGEST;
        else if (n == 8 && strncmp(p, "pipeline", n) == 0) roles |= CS_ROLE_PIPELINE;
        else if (n == 8 && strncmp(p, "dispatch", n) == 0) roles |= CS_ROLE_DISPATCH;
        else if (n == 3 && strncmp(p, "all", n) == 0) roles |= CS_ROLE_ALL;
        else {
            snprintf(err, errlen, "--role: unknown role \"%.*s\" (expected ingest, pipeline, dispatch or all, "
                     "comma-separated)", (int)n, p);
            return 0;
        }
        if (!p[n]) return roles;
        p += n + 1;
    }
}

static int64_t pipeline_backlog(void *pl)
{
    return cs_pipeline_lag(pl);
}

int cs_cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'}, {"data", required_argument, 0, 'd'},
                                         {"http", required_argument, 0, 'H'}, {"log-level", required_argument, 0, 'l'},
                                         {"help", no_argument, 0, 'h'}, {"role", required_argument, 0, 'r'},
                                         {0, 0, 0, 0}};
    const char *config = NULL, *data = NULL, *http = NULL;
    unsigned roles = CS_ROLE_ALL;
    char roleerr[300];
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'd': data = optarg; break;
        case 'H': http = optarg; break;
        case 'l':
            if (cs_log_level_parse(optarg) < 0) cs_die_usage("serve", "--log-level: expected debug, info, warn or error");
            cs_log_set_level((enum cs_log_level)cs_log_level_parse(optarg));
            break;
        case 'h': fputs(serve_usage, stdout); return 0;
        case 'r':
            if (!(roles = cs_app_parse_roles(optarg, roleerr, sizeof roleerr))) cs_die_usage("serve", roleerr);
            break;
        default: cs_die_usage("serve", "unknown option or missing value (see crmstream serve --help)");
        }
    }
    if (optind < argc) cs_die_usage("serve", "unexpected argument (see crmstream serve --help)");

    /* Signals are taken by sigwait below: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP); /* reload the rules */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    static cs_app app;
    char err[1024];
    if (cs_app_load_config(&app.cfg, config)) return 1;
    if (data) free(app.cfg.data_dir), app.cfg.data_dir = cs_strdup(data);
    if (http) free(app.cfg.http_addr), app.cfg.http_addr = cs_strdup(http);
    const char *dir = app.cfg.data_dir;
    if (cs_mkdirs(dir, 0755) != 0) {
        cs_fail(dir, strerror(errno));
        return 1;
    }
    char lockpath[4200];
    snprintf(lockpath, sizeof lockpath, "%s/LOCK", dir);
    int lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        cs_fail(dir, "the data directory is in use by another crmstream process");
        return 1;
    }
    unlink(strcat(strcpy(err, dir), "/http.addr"));

    int64_t t0 = cs_mono_us();
    /* bus: embedded (default) or kafka://host:port[,host:port] */
    int kafka = strncmp(app.cfg.bus, "kafka://", 8) == 0;
    /* Roles split across processes share Kafka and PostgreSQL; the embedded
     * log and SQLite belong to the one process holding the data dir LOCK. */
    if (roles != CS_ROLE_ALL && (!kafka || strncmp(app.cfg.store, "postgres", 8) != 0))
        cs_die_usage("serve", "--role: running only some roles needs bus: kafka://host:port and a PostgreSQL store "
                              "(store: postgresql://...) shared by every process; the embedded log and SQLite belong "
                              "to one process (docs/DEPLOY.md)");
    app.roles = roles;
    app.bus = kafka ? cs_bus_kafka_open(app.cfg.bus, &app.cfg, err, sizeof err)
                    : cs_bus_embedded_open_cfg(dir, &app.cfg, err, sizeof err);
    if (!app.bus) {
        cs_fail(kafka ? "kafka" : "log", err);
        return 1;
    }
    app.store = cs_store_open(app.cfg.store, dir, err, sizeof err);
    if (!app.store) {
        cs_fail("store", err);
        app.bus->ops->close(app.bus);
        return 1;
    }
    if ((roles & CS_ROLE_INGEST) && cs_ingest_init(&app.ingest, app.bus, &app.cfg, err, sizeof err) != 0) {
        cs_fail("ingest", err);
        cs_ingest_destroy(&app.ingest);
        app.store->ops->close(app.store);
        app.bus->ops->close(app.bus);
        return 1;
    }
    cs_info("ingest", "dedupe window rebuilt from the log",
            "\"ids\":%llu,\"records\":%llu,\"ms\":%.1f,\"window_s\":%ld,\"max_ids\":%ld,\"bytes\":%zu",
            (unsigned long long)app.ingest.dedupe_rebuilt_ids, (unsigned long long)app.ingest.dedupe_rebuild_records,
            app.ingest.dedupe_rebuild_ms, app.cfg.dedupe_window_s, app.cfg.dedupe_max_ids, app.ingest.dedupe_bytes);
    if (app.cfg.nwrite_keys == 0)
        cs_warn("ingest", "no write keys configured: ingest is open to anyone who can reach the HTTP port",
                "\"hint\":\"set auth.write_keys (docs/CONFIG.md)\"");
    app.pipeline = (roles & CS_ROLE_PIPELINE) ? cs_pipeline_start(app.bus, app.store, &app.cfg, err, sizeof err) : NULL;
    if (!app.pipeline && (roles & CS_ROLE_PIPELINE)) {
        cs_fail("pipeline", err);
        cs_ingest_destroy(&app.ingest);
        app.store->ops->close(app.store);
        app.bus->ops->close(app.bus);
        return 1;
    }
    cs_metrics_disable(strcmp(app.cfg.metrics_enabled, "false") == 0);
    /* The warehouse sink (group "warehouse", src/warehouse): its own threads;
     * an unreachable destination is retried there and never slows the rest. */
    cs_warehouse *warehouse = NULL;
    if ((roles & CS_ROLE_PIPELINE) && cs_warehouse_configured(&app.cfg) && !(warehouse = cs_warehouse_start(app.bus, &app.cfg, err, sizeof err))) {
        cs_fail("warehouse", err);
        cs_pipeline_stop(app.pipeline);
        cs_ingest_destroy(&app.ingest);
        app.store->ops->close(app.store);
        app.bus->ops->close(app.bus);
        return 1;
    }
    app.warehouse = warehouse;
    /* The outbound dispatcher (app/outbound.c), when destinations are
     * configured: delivers the outbox the pipeline's commits fill. */
    *err = 0;
    app.outbound = (roles & CS_ROLE_DISPATCH) ? cs_outbound_start(app.store, &app.cfg, err, sizeof err) : NULL;
    if (!app.outbound && *err) {
        cs_fail("outbound", err);
        cs_warehouse_stop(warehouse);
        cs_pipeline_stop(app.pipeline);
        cs_ingest_destroy(&app.ingest);
        app.store->ops->close(app.store);
        app.bus->ops->close(app.bus);
        return 1;
    }
    /* Without a pipeline here (--role) ingest has no lag to slow down for. */
    app.ingest.backlog = app.pipeline ? pipeline_backlog : NULL;
    app.ingest.backlog_arg = app.pipeline;
    cs_http_opts ho = {.addr = app.cfg.http_addr, .threads = app.cfg.http_threads,
                       .max_body = (size_t)app.cfg.max_body_bytes, .routes = cs_app_routes,
                       /* 0 in the config means "no limit": negative for cs_http */
                       .header_timeout_s = app.cfg.http_header_timeout_s ? (int)app.cfg.http_header_timeout_s : -1,
                       .body_timeout_s = app.cfg.http_body_timeout_s ? (int)app.cfg.http_body_timeout_s : -1,
                       .idle_timeout_s = app.cfg.http_idle_timeout_s ? (int)app.cfg.http_idle_timeout_s : -1,
                       .max_connections = app.cfg.http_max_connections ? app.cfg.http_max_connections : -1,
                       .max_connections_per_ip =
                           app.cfg.http_max_connections_per_ip ? app.cfg.http_max_connections_per_ip : -1,
                       .nroutes = cs_app_nroutes, .app = &app};
    app.http = cs_http_start(&ho, err, sizeof err);
    int rc = 0;
    if (!app.http) {
        cs_fail("http", err);
        rc = 1;
    } else {
        char addr[300], host[256];
        snprintf(host, sizeof host, "%.*s", (int)(strrchr(app.cfg.http_addr, ':') - app.cfg.http_addr),
                 app.cfg.http_addr);
        snprintf(addr, sizeof addr, "%s:%d", host, cs_http_port(app.http));
        write_addr(dir, addr);
        cs_info("serve", "ready",
                "\"http\":\"%s\",\"data\":\"%s\",\"partitions\":%d,\"fsync\":\"%s\",\"reps\":%zu,"
                "\"pipeline_lag\":%lld,\"startup_ms\":%.1f,\"roles\":\"%s%s%s\"",
                addr, dir, app.cfg.partitions, app.cfg.fsync, app.cfg.nreps,
                app.pipeline ? (long long)cs_pipeline_lag(app.pipeline) : 0LL, (double)(cs_mono_us() - t0) / 1000.0,
                roles & CS_ROLE_INGEST ? "ingest," : "", roles & CS_ROLE_PIPELINE ? "pipeline," : "",
                roles & CS_ROLE_DISPATCH ? "dispatch" : "");
        int sig;
        for (;;) {
            sigwait(&sigs, &sig);
            if (sig != SIGHUP) break;
            char rerr[512];
            if (app.pipeline && cs_pipeline_reload_rules(app.pipeline, rerr, sizeof rerr) != 0)
                cs_error("rules", "reload on SIGHUP failed", "\"error\":\"%s\"", rerr);
        }
        cs_info("serve", "stopping", "\"signal\":%d", sig);
        cs_http_stop(app.http);
    }
    cs_warehouse_stop(warehouse);
    if (app.pipeline) cs_pipeline_stop(app.pipeline);
    cs_outbound_stop(app.outbound); /* after the pipeline (its commits wake it), before the store closes */
    if (roles & CS_ROLE_INGEST) cs_ingest_destroy(&app.ingest);
    app.store->ops->close(app.store);
    app.bus->ops->close(app.bus);
    cs_config_free(&app.cfg);
    close(lockfd);
    return rc;
}
