/*
 * app/main — the `crmstream` command: global help and subcommand dispatch.
 * Exit codes: 0 success, 1 runtime failure, 2 bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "core/version.h"
#include "metrics/catalog.h"


static const char usage[] =
    "usage: crmstream COMMAND [OPTIONS]\n"
    "\n"
    "A real-time CRM engine on an event log: product events in, routed leads out, in milliseconds.\n"
    "\n"
    "Commands:\n"
    "  serve       run the log, pipeline, store and HTTP API\n"
    "  simulate    send a deterministic mix of the six seed event types to a server\n"
    "  demo        serve + simulate on a fresh data dir, then print a summary\n"
    "  evaluate    detection quality (recall, precision, time to detect) against a truth file\n"
    "  status      live view of a running server: rates, lag, latency, errors\n"
    "  dlq         list, show and redrive failed deliveries of a running server\n"
    "  replay      move the pipeline back (--from-offset N | --from-time T | --rebuild) and re-apply\n"
    "  verify      verify warehouse: counts per event type and day in each warehouse destination vs the log\n"
    "  backtest    replay the log through candidate rules (no effects) and print what would differ\n"
    "  config-reference  print every configuration key with its default\n"
    "  metrics-reference print every metric with its type and labels\n"
    "  version     print the version\n"
    "\n"
    "Run `crmstream COMMAND --help` for a command's options.\n";

static int cmd_config_reference(int argc, char **argv)
{
    (void)argv;
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        puts("usage: crmstream config-reference\n\nPrint every configuration key, its default and meaning (Markdown).");
        return 0;
    }
    if (argc > 1) cs_die_usage("config-reference", "takes no arguments");
    cs_config_reference(stdout);
    return 0;
}

static int cmd_metrics_reference(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        puts("usage: crmstream metrics-reference\n\nPrint every exported metric, its type, labels and meaning (Markdown).");
        return 0;
    }
    if (argc > 1) cs_die_usage("metrics-reference", "takes no arguments");
    cs_metrics_reference(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) cs_die_usage("usage", "missing command (see crmstream --help)");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("crmstream %s\n", CS_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"serve", cs_cmd_serve},
                {"simulate", cs_cmd_simulate},
                {"demo", cs_cmd_demo},
                {"status", cs_cmd_status},
                {"dlq", cs_cmd_dlq},
                {"evaluate", cs_cmd_evaluate},
                {"replay", cs_cmd_replay},
                {"verify", cs_cmd_verify},
                {"backtest", cs_cmd_backtest},
                {"config-reference", cmd_config_reference},
                {"metrics-reference", cmd_metrics_reference}};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmd, cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    char why[128];
    snprintf(why, sizeof why, "unknown command \"%.60s\" (see crmstream --help)", cmd);
    cs_die_usage("usage", why);
}
