/*
 * app/status — `crmstream status`: a live view of a running server built
 * from its GET /metrics: ingest and pipeline rates, consumer lag, latency
 * percentiles and errors, refreshed every interval. On a terminal it
 * redraws in place; piped, it prints one JSON line per interval.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/app.h"
#include "core/util.h"
#include "sim/httpc.h"

static const char status_usage[] =
    "usage: crmstream status [--target URL] [--interval S] [--once]\n"
    "\n"
    "Show what a running server is doing, from its /metrics: events accepted,\n"
    "rejected and duplicated per second, pipeline events per second, consumer lag,\n"
    "ingest-to-routed latency (p50/p99 over the interval), store transaction p99.\n"
    "On a terminal the view refreshes in place; piped, one JSON line per interval.\n"
    "\n"
    "  --target URL    server (default http://127.0.0.1:8080)\n"
    "  --interval S    seconds between refreshes (default 1)\n"
    "  --once          print one JSON line of totals and exit\n"
    "  -h, --help      this help\n";

/* Totals read from one scrape. */
struct snap {
    double accepted, rejected, duplicate, applied, poison, lag;
    double routed_b[32], routed_le[32], routed_count; /* cumulative buckets */
    int    nb;
    double tx_b[32], tx_le[32], tx_count;
    int    ntx;
};

static double sum_family(const char *text, const char *name, const char *must_contain)
{
    double total = 0;
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (*p == '#' || strncmp(p, name, n) != 0 || (p[n] != '{' && p[n] != ' ')) continue;
        const char *eol = strchr(p, '\n');
        if (must_contain) {
            const char *hit = strstr(p, must_contain);
            if (!hit || (eol && hit > eol)) continue;
        }
        const char *sp = p[n] == '{' ? strchr(p, '}') : p + n;
        if (sp) total += strtod(strchr(sp, ' ') + 1, NULL);
    }
    return total;
}

static int read_buckets(const char *text, const char *name, const char *must, double *le, double *cum, int max)
{
    int k = 0;
    size_t n = strlen(name);
    for (const char *p = text; p && *p && k < max; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, n) != 0 || p[n] != '{') continue;
        const char *eol = strchr(p, '\n');
        if (must) {
            const char *hit = strstr(p, must);
            if (!hit || (eol && hit > eol)) continue;
        }
        const char *l = strstr(p, "le=\"");
        if (!l || (eol && l > eol)) continue;
        le[k] = strncmp(l + 4, "+Inf", 4) == 0 ? INFINITY : strtod(l + 4, NULL);
        cum[k] = strtod(strchr(strchr(p, '}'), ' ') + 1, NULL);
        k++;
    }
    return k;
}

static int scrape(cs_httpc *c, struct snap *s)
{
    cs_buf b;
    cs_buf_init(&b);
    int st;
    if (cs_httpc_request(c, "GET", "/metrics", NULL, NULL, 0, &st, &b) != 0 || st != 200) {
        cs_buf_free(&b);
        return -1;
    }
    memset(s, 0, sizeof *s);
    s->accepted = sum_family(b.data, "crmstream_events_accepted_total", NULL);
    s->rejected = sum_family(b.data, "crmstream_events_rejected_total", NULL);
    s->duplicate = sum_family(b.data, "crmstream_events_duplicate_total", NULL);
    s->applied = sum_family(b.data, "crmstream_pipeline_events_total", "result=\"applied\"");
    s->poison = sum_family(b.data, "crmstream_pipeline_events_total", "result=\"poison\"");
    s->lag = sum_family(b.data, "crmstream_consumer_lag_records", NULL);
    s->nb = read_buckets(b.data, "crmstream_e2e_latency_seconds_bucket", "stage=\"routed\"", s->routed_le,
                         s->routed_b, 32);
    s->ntx = read_buckets(b.data, "crmstream_store_transaction_seconds_bucket", NULL, s->tx_le, s->tx_b, 32);
    cs_buf_free(&b);
    return 0;
}

/* Quantile (seconds) of the observations between two cumulative bucket
 * snapshots, at the upper bound of the bucket holding it; -1 when none. */
static double quantile(const double *le, const double *now, const double *before, int n, double q)
{
    if (n == 0) return -1;
    double total = now[n - 1] - (before ? before[n - 1] : 0);
    if (total <= 0) return -1;
    for (int i = 0; i < n; i++)
        if (now[i] - (before ? before[i] : 0) >= q * total) return le[i];
    return le[n - 1];
}

static void fmt_ms(char *out, size_t n, double secs)
{
    if (secs < 0) snprintf(out, n, "-");
    else if (isinf(secs)) snprintf(out, n, ">10s");
    else snprintf(out, n, "<=%g ms", secs * 1000);
}

int cs_cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {{"target", required_argument, 0, 't'}, {"interval", required_argument, 0, 'i'},
                                         {"once", no_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *target = "http://127.0.0.1:8080";
    double interval = 1;
    int once = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': target = optarg; break;
        case 'i': {
            char *end;
            interval = strtod(optarg, &end);
            if (*end || !(interval >= 0.1 && interval <= 3600)) cs_die_usage("status", "--interval: expected seconds from 0.1 to 3600");
            break;
        }
        case 'o': once = 1; break;
        case 'h': fputs(status_usage, stdout); return 0;
        default: cs_die_usage("status", "unknown option or missing value (see crmstream status --help)");
        }
    }
    if (optind < argc) cs_die_usage("status", "unexpected argument (see crmstream status --help)");
    cs_httpc h;
    if (cs_httpc_init(&h, target)) cs_die_usage("status", "--target: expected http://HOST:PORT");
    struct snap prev, cur;
    if (scrape(&h, &prev) != 0) {
        char why[256];
        snprintf(why, sizeof why, "cannot read %s/metrics (is `crmstream serve` running?)", target);
        cs_fail("status", why);
        cs_httpc_close(&h);
        return 1;
    }
    if (once) {
        char p50[32], p99[32];
        fmt_ms(p50, sizeof p50, quantile(prev.routed_le, prev.routed_b, NULL, prev.nb, 0.5));
        fmt_ms(p99, sizeof p99, quantile(prev.routed_le, prev.routed_b, NULL, prev.nb, 0.99));
        printf("{\"accepted\":%.0f,\"rejected\":%.0f,\"duplicates\":%.0f,\"applied\":%.0f,\"poison\":%.0f,"
               "\"lag\":%.0f,\"routed_p50\":\"%s\",\"routed_p99\":\"%s\"}\n",
               prev.accepted, prev.rejected, prev.duplicate, prev.applied, prev.poison, prev.lag, p50, p99);
        cs_httpc_close(&h);
        return 0;
    }
    int tty = isatty(STDOUT_FILENO);
    for (;;) {
        usleep((useconds_t)(interval * 1e6));
        if (scrape(&h, &cur) != 0) {
            cs_fail("status", "lost contact with the server");
            cs_httpc_close(&h);
            return 1;
        }
        double d = interval;
        char p50[32], p99[32], tx99[32];
        fmt_ms(p50, sizeof p50, quantile(cur.routed_le, cur.routed_b, prev.nb == cur.nb ? prev.routed_b : NULL, cur.nb, 0.5));
        fmt_ms(p99, sizeof p99, quantile(cur.routed_le, cur.routed_b, prev.nb == cur.nb ? prev.routed_b : NULL, cur.nb, 0.99));
        fmt_ms(tx99, sizeof tx99, quantile(cur.tx_le, cur.tx_b, prev.ntx == cur.ntx ? prev.tx_b : NULL, cur.ntx, 0.99));
        if (tty) {
            printf("\033[H\033[2J crmstream status — %s (every %gs, Ctrl-C to quit)\n\n", target, interval);
            printf("  ingest     %10.0f accepted/s %8.0f rejected/s %8.0f duplicates/s\n",
                   (cur.accepted - prev.accepted) / d, (cur.rejected - prev.rejected) / d,
                   (cur.duplicate - prev.duplicate) / d);
            printf("  pipeline   %10.0f events/s   %8.0f poison (total)\n", (cur.applied - prev.applied) / d, cur.poison);
            printf("  lag        %10.0f events behind\n", cur.lag);
            printf("  routed     p50 %s   p99 %s   (ingest -> lead committed)\n", p50, p99);
            printf("  store tx   p99 %s\n", tx99);
            printf("\n  totals: %.0f accepted, %.0f rejected, %.0f applied\n", cur.accepted, cur.rejected, cur.applied);
        } else {
            printf("{\"accepted_per_s\":%.1f,\"rejected_per_s\":%.1f,\"duplicates_per_s\":%.1f,\"applied_per_s\":%.1f,"
                   "\"lag\":%.0f,\"routed_p50\":\"%s\",\"routed_p99\":\"%s\",\"store_tx_p99\":\"%s\"}\n",
                   (cur.accepted - prev.accepted) / d, (cur.rejected - prev.rejected) / d,
                   (cur.duplicate - prev.duplicate) / d, (cur.applied - prev.applied) / d, cur.lag, p50, p99, tx99);
        }
        fflush(stdout);
        prev = cur;
    }
}
