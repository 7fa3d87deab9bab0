/*
 * app/backtest — `crmstream backtest --rules FILE [--from T] [--to T]
 * [--json] [--target URL]`: posts the candidate rules to the running
 * server (POST /api/v1/backtest, api_backtest.c), which replays its log
 * through them with no effects, and prints what would differ from what
 * happened. Through the API, like `crmstream dlq`: works on the embedded
 * log and on Kafka while the server runs, never opening the log behind its
 * back.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "sim/httpc.h"

static const char bt_usage[] =
    "usage: crmstream backtest --rules FILE [--from T] [--to T] [--json] [--target URL]\n"
    "\n"
    "Replay the running server's log through candidate rules with no effects (a dry pipeline\n"
    "into a scratch store) and print what would differ from what happened: leads routed to\n"
    "another owner, alerts and tasks added or removed, with counts and examples.\n"
    "\n"
    "  --rules FILE    the candidate rules file (docs/RULES.md); a bad one: file:line:column, exit 1\n"
    "  --from T        compare only effects whose cause's event time is >= T (RFC 3339)\n"
    "  --to T          ... and < T (default: everything)\n"
    "  --json          print the server's JSON answer\n"
    "  --target URL    server (default http://127.0.0.1:8080)\n"
    "  -h, --help      this help\n"
    "\n"
    "Exit status: 0 the backtest ran (differences are the answer, not an error), 1 the server\n"
    "could not run it (bad rules, busy, time limit, unreachable), 2 bad usage.\n";

#define BT_MAX_FILE (4u << 20)

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    cs_buf b;
    cs_buf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > BT_MAX_FILE) {
            fclose(f);
            cs_buf_free(&b);
            errno = EFBIG;
            return NULL;
        }
        cs_buf_add(&b, chunk, n);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        cs_buf_free(&b);
        errno = EIO;
        return NULL;
    }
    cs_buf_adds(&b, "");
    *len = b.len;
    return b.data;
}

static const char *s_or(const cJSON *o, const char *k, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double n_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void print_table(const cJSON *j)
{
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "window");
    printf("backtest of %s over %.0f events (%.0f on the leads lane), window [%s, %s), %.0f ms\n\n",
           s_or(j, "rules", "?"), n_of(j, "events"), n_of(j, "lead_events"), s_or(w, "from", "start"),
           s_or(w, "to", "end"), n_of(j, "ms"));
    const cJSON *leads = cJSON_GetObjectItemCaseSensitive(j, "leads");
    const cJSON *alerts = cJSON_GetObjectItemCaseSensitive(j, "alerts");
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(j, "tasks");
    printf("%-8s %10s %10s %10s\n", "KIND", "REROUTED", "ADDED", "REMOVED");
    printf("%-8s %10.0f %10s %10s\n", "leads", n_of(leads, "rerouted"), "-", "-");
    printf("%-8s %10s %10.0f %10.0f\n", "alerts", "-", n_of(alerts, "added"), n_of(alerts, "removed"));
    printf("%-8s %10s %10.0f %10.0f\n", "tasks", "-", n_of(tasks, "added"), n_of(tasks, "removed"));
    const cJSON *e;
    int any = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(leads, "examples"))
    {
        if (!any++) printf("\nleads routed to another owner (examples):\n");
        printf("  %-20s %-32s %-16s -> %s\n", s_or(e, "lead_id", ""), s_or(e, "email", ""), s_or(e, "before", "(none)"),
               s_or(e, "after", "(none)"));
    }
    static const char *const kinds[] = {"alerts", "tasks"};
    for (int k = 0; k < 2; k++) {
        any = 0;
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, kinds[k]);
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(o, "examples"))
        {
            if (!any++) printf("\n%s added or removed (examples):\n", kinds[k]);
            printf("  %-8s %-22s %-20s %-16s %s  %s\n", s_or(e, "change", ""), s_or(e, "id", ""), s_or(e, "rule_id", ""),
                   s_or(e, "account_id", "-"), s_or(e, "at", ""),
                   s_or(e, k == 0 ? "dedupe_key" : "title", ""));
        }
    }
}

int cs_cmd_backtest(int argc, char **argv)
{
    static const struct option opts[] = {{"rules", required_argument, 0, 'r'}, {"from", required_argument, 0, 'f'},
                                         {"to", required_argument, 0, 'u'},    {"json", no_argument, 0, 'j'},
                                         {"target", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *target = "http://127.0.0.1:8080", *rules = NULL, *from = NULL, *to = NULL;
    int json = 0, c;
    int64_t t;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': rules = optarg; break;
        case 'f':
            if (cs_parse_time(optarg, &t)) cs_die_usage("backtest", "--from: expected an RFC 3339 time");
            from = optarg;
            break;
        case 'u':
            if (cs_parse_time(optarg, &t)) cs_die_usage("backtest", "--to: expected an RFC 3339 time");
            to = optarg;
            break;
        case 'j': json = 1; break;
        case 't': target = optarg; break;
        case 'h': fputs(bt_usage, stdout); return 0;
        default: cs_die_usage("backtest", "unknown option or missing value (see crmstream backtest --help)");
        }
    }
    if (optind < argc) cs_die_usage("backtest", "takes no arguments but options (see crmstream backtest --help)");
    if (!rules) cs_die_usage("backtest", "--rules FILE is required");
    size_t len;
    char *text = read_all(rules, &len);
    if (!text) {
        char why[400];
        snprintf(why, sizeof why, "%s: %s", rules,
                 errno == EFBIG ? "larger than 4 MiB" : strerror(errno));
        cs_fail("backtest", why);
        return 1;
    }
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "rules", text);
    cJSON_AddStringToObject(b, "name", rules);
    if (from) cJSON_AddStringToObject(b, "from", from);
    if (to) cJSON_AddStringToObject(b, "to", to);
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    free(text);
    cs_httpc h;
    if (cs_httpc_init(&h, target)) cs_die_usage("backtest", "--target: expected http://HOST:PORT");
    h.timeout_ms = 24 * 3600 * 1000; /* the server bounds it (backtest.timeout_ms) */
    cs_buf resp;
    cs_buf_init(&resp);
    int status = 0, rc = 1;
    if (cs_httpc_request(&h, "POST", "/api/v1/backtest", "Content-Type: application/json\r\n", body, strlen(body),
                         &status, &resp) != 0) {
        char why[300];
        snprintf(why, sizeof why, "cannot reach %s (is `crmstream serve` running?)", target);
        cs_fail("backtest", why);
    } else {
        cJSON *j = resp.data ? cJSON_Parse(resp.data) : NULL;
        if (status == 200 && j) {
            if (json) puts(resp.data);
            else print_table(j);
            rc = 0;
        } else {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
            char why[700];
            snprintf(why, sizeof why, "HTTP %d: %s", status, s_or(e, "message", "unexpected answer"));
            cs_fail("backtest", why);
        }
        cJSON_Delete(j);
    }
    cJSON_free(body);
    cs_buf_free(&resp);
    cs_httpc_close(&h);
    return rc;
}
