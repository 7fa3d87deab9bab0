/*
 * app/dlq — `crmstream dlq list | show ID | redrive [ID... | --all]`: the
 * dead-letter queue of a running server, through its API (api_dlq.c), so
 * the command works the same against SQLite or PostgreSQL and never opens
 * the store behind the server's back.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "sim/httpc.h"

static const char dlq_usage[] =
    "usage: crmstream dlq list [--kind KIND] [--destination NAME] [--limit N] [--json] [--target URL]\n"
    "       crmstream dlq show ID [--target URL]\n"
    "       crmstream dlq redrive (ID... | --all) [--kind event] [--target URL]\n"
    "\n"
    "The dead-letter queue of a running server: failed deliveries (kind delivery: webhooks and\n"
    "Slack messages that got a permanent error or ran out of retries) and, with --kind event,\n"
    "events the pipeline could not apply (undecodable, late_event, signals_account_limit,\n"
    "rule_error: "
    "their original bytes and place in the log; `crmstream replay` re-applies the log).\n"
    "\n"
    "  list            one line per item: kind, id, destination, attempts, failed at, reason\n"
    "  show ID         the item as JSON, with its payload and cause\n"
    "  redrive         put deliveries back in the outbox (attempts reset, same id: receivers\n"
    "                  that drop repeated webhook-ids see each once); with --kind event, append\n"
    "                  the events to the log again (applied once, even when redriven twice);\n"
    "                  exit 1 when an ID is not in the DLQ\n"
    "  --target URL    server (default http://127.0.0.1:8080)\n"
    "  --kind KIND     list only delivery (or event) items\n"
    "  --destination NAME  list only this destination's deliveries\n"
    "  --limit N       list at most N items (default: all)\n"
    "  --json          list as JSON lines (one item per line)\n"
    "  --all           redrive every dead delivery\n"
    "  -h, --help      this help\n";

/* GET/POST; returns the status (or -1 unreachable) and the parsed body. */
static int call(cs_httpc *h, const char *target, const char *method, const char *path, const char *body, cJSON **out)
{
    cs_buf resp;
    cs_buf_init(&resp);
    int status = -1;
    *out = NULL;
    if (cs_httpc_request(h, method, path, body ? "Content-Type: application/json\r\n" : NULL, body,
                         body ? strlen(body) : 0, &status, &resp) != 0) {
        char why[300];
        snprintf(why, sizeof why, "cannot reach %s (is `crmstream serve` running?)", target);
        cs_fail("dlq", why);
        cs_buf_free(&resp);
        return -1;
    }
    *out = resp.data ? cJSON_Parse(resp.data) : NULL;
    if (status != 200) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(*out, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        char why[400];
        snprintf(why, sizeof why, "HTTP %d: %s", status, cJSON_IsString(m) ? m->valuestring : "unexpected answer");
        cs_fail("dlq", why);
        cJSON_Delete(*out);
        *out = NULL;
        status = -1;
    }
    cs_buf_free(&resp);
    return status;
}

static const char *s_or(const cJSON *o, const char *k, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* Append s to b with %XX for everything but unreserved characters. */
static void url_escape(cs_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch))
            cs_buf_add(b, s, 1);
        else
            cs_buf_printf(b, "%%%02X", ch);
    }
}

static int dlq_list(cs_httpc *h, const char *target, const char *kind, const char *dest, long limit, int json)
{
    char cursor[64] = "";
    long shown = 0;
    if (!json) printf("%-9s %-30s %-20s %8s  %-24s %s\n", "KIND", "ID", "DESTINATION", "ATTEMPTS", "FAILED_AT", "REASON");
    for (;;) {
        cs_buf path;
        cs_buf_init(&path);
        long page = limit > 0 && limit - shown < 1000 ? limit - shown : 1000;
        cs_buf_printf(&path, "/api/v1/dlq?limit=%ld", page);
        if (kind) cs_buf_adds(&path, "&kind="), url_escape(&path, kind);
        if (dest) cs_buf_adds(&path, "&destination="), url_escape(&path, dest);
        if (*cursor) cs_buf_adds(&path, "&cursor="), url_escape(&path, cursor);
        cJSON *j;
        int st = call(h, target, "GET", path.data, NULL, &j);
        cs_buf_free(&path);
        if (st < 0) return 1;
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "items"))
        {
            if (json) {
                char *line = cJSON_PrintUnformatted(it);
                puts(line);
                free(line);
            } else {
                const cJSON *att = cJSON_GetObjectItemCaseSensitive(it, "attempts");
                char reason[161];
                snprintf(reason, sizeof reason, "%s", s_or(it, "reason", "-"));
                for (char *p = reason; *p; p++)
                    if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
                printf("%-9s %-30s %-20s %8d  %-24s %s\n", s_or(it, "kind", "?"), s_or(it, "id", "?"),
                       s_or(it, "destination", "-"), cJSON_IsNumber(att) ? att->valueint : 0,
                       s_or(it, "failed_at", "-"), reason);
            }
            shown++;
        }
        const char *next = s_or(j, "next_cursor", NULL);
        int more = next && (limit <= 0 || shown < limit);
        if (more) snprintf(cursor, sizeof cursor, "%s", next);
        cJSON_Delete(j);
        if (!more) break;
    }
    return 0;
}

static int dlq_show(cs_httpc *h, const char *target, const char *id)
{
    cs_buf path;
    cs_buf_init(&path);
    cs_buf_adds(&path, "/api/v1/dlq/");
    url_escape(&path, id);
    cJSON *j;
    int st = call(h, target, "GET", path.data, NULL, &j);
    cs_buf_free(&path);
    if (st < 0) return 1;
    char *text = cJSON_Print(j);
    puts(text);
    free(text);
    cJSON_Delete(j);
    return 0;
}

static int dlq_redrive(cs_httpc *h, const char *target, const char *kind, char **ids, int nids, int all)
{
    cJSON *body = cJSON_CreateObject();
    if (kind) cJSON_AddStringToObject(body, "kind", kind);
    if (all) {
        cJSON_AddTrueToObject(body, "all");
    } else {
        cJSON *arr = cJSON_AddArrayToObject(body, "ids");
        for (int i = 0; i < nids; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(ids[i]));
    }
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    cJSON *j;
    int st = call(h, target, "POST", "/api/v1/dlq/redrive", text, &j);
    free(text);
    if (st < 0) return 1;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "redriven");
    printf("redriven %d\n", cJSON_IsNumber(n) ? n->valueint : 0);
    const cJSON *nf = cJSON_GetObjectItemCaseSensitive(j, "not_found");
    int rc = 0;
    /* Events: an entry redriven before is not redriven again (one effect). */
    const cJSON *it2;
    cJSON_ArrayForEach(it2, cJSON_GetObjectItemCaseSensitive(j, "already_redriven"))
        printf("already redriven %s\n", it2->valuestring);
    cJSON_ArrayForEach(it2, cJSON_GetObjectItemCaseSensitive(j, "not_redrivable")) {
        char why[200];
        snprintf(why, sizeof why, "%.100s cannot be redriven: not a JSON event, or no longer in the log", it2->valuestring);
        cs_fail("dlq redrive", why);
        rc = 1;
    }
    if (cJSON_GetArraySize(nf) > 0) {
        cs_buf b;
        cs_buf_init(&b);
        const cJSON *it;
        cJSON_ArrayForEach(it, nf) cs_buf_printf(&b, "%s%s", b.len ? ", " : "", it->valuestring);
        char why[600];
        snprintf(why, sizeof why, "not in the DLQ: %.500s", b.data);
        cs_fail("dlq redrive", why);
        cs_buf_free(&b);
        rc = 1;
    }
    cJSON_Delete(j);
    return rc;
}

int cs_cmd_dlq(int argc, char **argv)
{
    static const struct option opts[] = {{"target", required_argument, 0, 't'}, {"kind", required_argument, 0, 'k'},
                                         {"destination", required_argument, 0, 'd'},
                                         {"limit", required_argument, 0, 'n'}, {"json", no_argument, 0, 'j'},
                                         {"all", no_argument, 0, 'a'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *target = "http://127.0.0.1:8080", *kind = NULL, *dest = NULL;
    long limit = 0;
    int json = 0, all = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': target = optarg; break;
        case 'k':
            if (strcmp(optarg, "delivery") != 0 && strcmp(optarg, "event") != 0)
                cs_die_usage("dlq", "--kind: expected delivery or event");
            kind = optarg;
            break;
        case 'd': dest = optarg; break;
        case 'n': {
            char *end;
            errno = 0;
            limit = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || limit < 1) cs_die_usage("dlq", "--limit: expected a positive integer");
            break;
        }
        case 'j': json = 1; break;
        case 'a': all = 1; break;
        case 'h': fputs(dlq_usage, stdout); return 0;
        default: cs_die_usage("dlq", "unknown option or missing value (see crmstream dlq --help)");
        }
    }
    if (optind >= argc) cs_die_usage("dlq", "expected list, show ID or redrive (see crmstream dlq --help)");
    const char *sub = argv[optind++];
    int nargs = argc - optind;
    char **args = argv + optind;
    cs_httpc h;
    if (cs_httpc_init(&h, target)) cs_die_usage("dlq", "--target: expected http://HOST:PORT");
    int rc;
    if (strcmp(sub, "list") == 0) {
        if (nargs || all) cs_die_usage("dlq list", "takes no arguments but options (see crmstream dlq --help)");
        rc = dlq_list(&h, target, kind, dest, limit, json);
    } else if (strcmp(sub, "show") == 0) {
        if (nargs != 1 || all) cs_die_usage("dlq show", "expected exactly one ID");
        rc = dlq_show(&h, target, args[0]);
    } else if (strcmp(sub, "redrive") == 0) {
        if ((nargs > 0) == all) cs_die_usage("dlq redrive", "expected one or more IDs, or --all");
        rc = dlq_redrive(&h, target, kind, args, nargs, all);
    } else {
        char why[128];
        snprintf(why, sizeof why, "unknown subcommand \"%.40s\" (expected list, show or redrive)", sub);
        cs_die_usage("dlq", why);
    }
    cs_httpc_close(&h);
    return rc;
}
