/*
 * sim/evaluate — `crmstream evaluate --truth FILE`: detection quality of a
 * running server against the simulator's ground truth, the way a data
 * scientist would measure it. For each planted pattern: recall (planted
 * cases that got their alert), precision (alerts of that kind that point at
 * a planted case, not at a decoy or a normal account), and time to detect
 * in event time (alert time minus the pattern's start), median and p95.
 *
 * Pattern → alert kind (config/rules.yaml): churn → churn_risk,
 * ticket_spike → renewal_risk, trial_pql → product_qualified,
 * signup_abuse → signup_abuse. Reads alerts through GET /api/v1/alerts only.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/app.h"
#include "core/util.h"
#include "sim/httpc.h"
#include "sim/sim.h"

static const char eval_usage[] =
    "usage: crmstream evaluate --truth FILE [--target URL] [--json]\n"
    "\n"
    "Compare a running server's alerts with the ground truth that\n"
    "`crmstream simulate --days D --truth FILE` wrote: per planted pattern, recall,\n"
    "precision and time to detect (event time from the pattern's start to its alert);\n"
    "routing correctness (share of the truth's leads routed to their expected owner,\n"
    "with examples of mismatches); the traffic the simulator sent (per door and per\n"
    "perturbation), the server's answers, and the world's late events in the events DLQ.\n"
    "\n"
    "  --truth FILE    the ground truth (JSON lines)\n"
    "  --target URL    server (default http://127.0.0.1:8080)\n"
    "  --json          one JSON object instead of the table\n"
    "  -h, --help      this help\n";

static const struct {
    const char *pattern, *kind;
} kinds[] = {{"churn", "churn_risk"},
             {"ticket_spike", "renewal_risk"},
             {"trial_pql", "product_qualified"},
             {"signup_abuse", "signup_abuse"}};
#define NPAT (sizeof kinds / sizeof kinds[0])

struct truth {
    int     pat;
    int     decoy;
    char    key[160];   /* account id or domain */
    int64_t start_us;
    int64_t detected_us; /* first matching alert; 0 = none */
};

struct alert {
    int     pat;
    char    key[160];
    int64_t at_us;
};

static int pattern_index(const char *name, int by_kind)
{
    for (size_t i = 0; i < NPAT; i++)
        if (strcmp(name, by_kind ? kinds[i].kind : kinds[i].pattern) == 0) return (int)i;
    return -1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Alerts are judged only inside the world's scope (its account prefixes and
 * the domains of its truth); other traffic on the server is not counted. */
static char scope_prefix[8][32];
static int nscope;

/* Routing truth: each acknowledged lead's expected owner (simulate wrote
 * them in sending order), and what the traffic held. */
struct lead_truth {
    char id[64];
    char owner[64];
};
static struct lead_truth *ltruth;
static size_t nltruth;
static char routing_desc[512];
static char sent_line[1024], answered_line[512];

static int cmp_lead(const void *a, const void *b)
{
    return strcmp(((const struct lead_truth *)a)->id, ((const struct lead_truth *)b)->id);
}

static int in_scope(const char *key, const struct truth *tr, size_t nt)
{
    if (nscope == 0) return 1;
    for (int i = 0; i < nscope; i++)
        if (strncmp(key, scope_prefix[i], strlen(scope_prefix[i])) == 0) return 1;
    for (size_t k = 0; k < nt; k++)
        if (strcmp(tr[k].key, key) == 0) return 1;
    return 0;
}

static int load_truth(const char *path, struct truth **out, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[1024];
    size_t cap = 0;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        cJSON *scope = cJSON_GetObjectItem(j, "scope");
        for (cJSON *p = scope ? cJSON_GetObjectItem(scope, "account_prefixes") : NULL; p && p->child && nscope < 8;
             p = NULL)
            for (cJSON *x = p->child; x && nscope < 8; x = x->next)
                if (cJSON_IsString(x)) snprintf(scope_prefix[nscope++], sizeof scope_prefix[0], "%s", x->valuestring);
        const char *lid = cJSON_GetStringValue(cJSON_GetObjectItem(j, "lead_event_id"));
        if (lid) {
            nltruth++;
            ltruth = cs_realloc(ltruth, nltruth * sizeof *ltruth);
            snprintf(ltruth[nltruth - 1].id, sizeof ltruth->id, "%s", lid);
            const char *ow = cJSON_GetStringValue(cJSON_GetObjectItem(j, "expected_owner"));
            snprintf(ltruth[nltruth - 1].owner, sizeof ltruth->owner, "%s", ow ? ow : "");
        }
        cJSON *routing = cJSON_GetObjectItem(j, "routing");
        if (routing) {
            char *rs = cJSON_PrintUnformatted(routing);
            snprintf(routing_desc, sizeof routing_desc, "%s", rs);
            cJSON_free(rs);
        }
        cJSON *sent = cJSON_GetObjectItem(j, "sent"), *ans = cJSON_GetObjectItem(j, "answered");
        if (sent && ans) {
            char *a1 = cJSON_PrintUnformatted(sent), *a2 = cJSON_PrintUnformatted(ans);
            snprintf(sent_line, sizeof sent_line, "%s", a1);
            snprintf(answered_line, sizeof answered_line, "%s", a2);
            cJSON_free(a1), cJSON_free(a2);
        }
        const char *pat = cJSON_GetStringValue(cJSON_GetObjectItem(j, "pattern"));
        const char *acc = cJSON_GetStringValue(cJSON_GetObjectItem(j, "account_id"));
        const char *dom = cJSON_GetStringValue(cJSON_GetObjectItem(j, "domain"));
        const char *start = cJSON_GetStringValue(cJSON_GetObjectItem(j, "start"));
        int p = pat ? pattern_index(pat, 0) : -1;
        int64_t t;
        if (p >= 0 && (acc || dom) && start && cs_parse_time(start, &t) == 0) {
            if (*n == cap) cap = cap ? cap * 2 : 256, *out = cs_realloc(*out, cap * sizeof **out);
            struct truth *x = &(*out)[(*n)++];
            memset(x, 0, sizeof *x);
            x->pat = p;
            x->decoy = cJSON_IsTrue(cJSON_GetObjectItem(j, "decoy"));
            snprintf(x->key, sizeof x->key, "%s", acc ? acc : dom);
            x->start_us = t;
        }
        cJSON_Delete(j);
    }
    fclose(f);
    return 0;
}

/* Every alert of a kind we evaluate, through the paginated API. */
static int load_alerts(cs_httpc *c, struct alert **out, size_t *n)
{
    char path[160], cursor[64] = "";
    cs_buf resp;
    cs_buf_init(&resp);
    size_t cap = 0;
    *n = 0;
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/alerts?limit=1000%s%s", *cursor ? "&cursor=" : "", cursor);
        int st;
        if (cs_httpc_request(c, "GET", path, NULL, NULL, 0, &st, &resp) || st != 200) {
            cs_buf_free(&resp);
            return -1;
        }
        cJSON *j = cJSON_Parse(resp.data);
        for (cJSON *it = cJSON_GetObjectItem(j, "items") ? cJSON_GetObjectItem(j, "items")->child : NULL; it;
             it = it->next) {
            const char *kind = cJSON_GetStringValue(cJSON_GetObjectItem(it, "kind"));
            const char *acc = cJSON_GetStringValue(cJSON_GetObjectItem(it, "account_id"));
            const char *at = cJSON_GetStringValue(cJSON_GetObjectItem(it, "at"));
            int p = kind ? pattern_index(kind, 1) : -1;
            int64_t t;
            if (p < 0 || !acc || !at || cs_parse_time(at, &t) != 0) continue;
            if (*n == cap) cap = cap ? cap * 2 : 256, *out = cs_realloc(*out, cap * sizeof **out);
            struct alert *a = &(*out)[(*n)++];
            a->pat = p;
            /* signup_abuse alerts are about a domain: "domain:<domain>" */
            snprintf(a->key, sizeof a->key, "%s", strncmp(acc, "domain:", 7) == 0 ? acc + 7 : acc);
            a->at_us = t;
        }
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        int more = cJSON_IsString(nc);
        if (more) snprintf(cursor, sizeof cursor, "%s", nc->valuestring);
        cJSON_Delete(j);
        if (!more) break;
    }
    cs_buf_free(&resp);
    return 0;
}

/* Page through a list endpoint; cb sees each item. */
static int each_item(cs_httpc *c, const char *base, void (*cb)(cJSON *it, void *arg), void *arg)
{
    char path[256], cursor[64] = "";
    cs_buf resp;
    cs_buf_init(&resp);
    for (;;) {
        snprintf(path, sizeof path, "%s%climit=1000%s%s", base, strchr(base, '?') ? '&' : '?', *cursor ? "&cursor=" : "",
                 cursor);
        int st;
        if (cs_httpc_request(c, "GET", path, NULL, NULL, 0, &st, &resp) || st != 200) {
            cs_buf_free(&resp);
            return -1;
        }
        cJSON *j = cJSON_Parse(resp.data);
        cJSON *items = cJSON_GetObjectItem(j, "items");
        for (cJSON *it = items ? items->child : NULL; it; it = it->next) cb(it, arg);
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        int more = cJSON_IsString(nc);
        if (more) snprintf(cursor, sizeof cursor, "%s", nc->valuestring);
        cJSON_Delete(j);
        if (!more) break;
    }
    cs_buf_free(&resp);
    return 0;
}

struct route_eval {
    size_t found, correct;
    char   examples[5][320];
    size_t nexamples;
};

static void on_lead_item(cJSON *it, void *arg)
{
    struct route_eval *re = arg;
    struct lead_truth key;
    memset(&key, 0, sizeof key);
    const char *eid = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event_id"));
    if (!eid) return;
    snprintf(key.id, sizeof key.id, "%s", eid);
    struct lead_truth *t = nltruth ? bsearch(&key, ltruth, nltruth, sizeof *ltruth, cmp_lead) : NULL;
    if (!t) return; /* not one of the world's leads */
    re->found++;
    const char *owner = cJSON_GetStringValue(cJSON_GetObjectItem(it, "owner"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(it, "id"));
    if (owner && strcmp(owner, t->owner) == 0) re->correct++;
    else if (re->nexamples < 5)
        snprintf(re->examples[re->nexamples++], sizeof re->examples[0], "lead %s (event %s): expected %s, routed to %s",
                 id ? id : "?", eid, t->owner, owner ? owner : "nobody");
}

static void on_dead_item(cJSON *it, void *arg)
{
    const char *eid = cJSON_GetStringValue(cJSON_GetObjectItem(it, "event_id"));
    if (eid && eid[0] == 'w') (*(size_t *)arg)++; /* the world's events: w<seed>-<n> */
}

int cs_evaluate(const char *target, const char *truth_path, int json, FILE *out)
{
    struct truth *tr = NULL;
    struct alert *al = NULL;
    size_t nt = 0, na = 0;
    if (load_truth(truth_path, &tr, &nt) != 0) {
        cs_fail(truth_path, "cannot read the truth file");
        return 1;
    }
    cs_httpc c;
    if (cs_httpc_init(&c, target) || load_alerts(&c, &al, &na) != 0) {
        char why[256];
        snprintf(why, sizeof why, "cannot read alerts from %s (is `crmstream serve` running?)", target);
        cs_fail("evaluate", why);
        cs_httpc_close(&c);
        free(tr);
        return 1;
    }
    qsort(ltruth, nltruth, sizeof *ltruth, cmp_lead);
    struct route_eval re;
    memset(&re, 0, sizeof re);
    size_t late_dead = 0;
    int leads_ok = nltruth == 0 || each_item(&c, "/api/v1/leads", on_lead_item, &re) == 0;
    int dlq_ok = each_item(&c, "/api/v1/dlq?kind=event&reason=late_event", on_dead_item, &late_dead) == 0;
    cs_httpc_close(&c);
    /* An alert detects a planted case when it is of the pattern's kind, on
     * its account, and not before the pattern began (a day of slack for
     * day-granular windows). Each alert counts once. */
    const int64_t slack = 86400LL * 1000000;
    size_t tp_alerts[NPAT] = {0}, all_alerts[NPAT] = {0};
    for (size_t i = 0; i < na; i++) {
        if (!in_scope(al[i].key, tr, nt)) continue;
        all_alerts[al[i].pat]++;
        int hit = 0;
        for (size_t k = 0; k < nt; k++) {
            struct truth *t = &tr[k];
            if (t->pat != al[i].pat || t->decoy || strcmp(t->key, al[i].key) != 0) continue;
            if (al[i].at_us + slack < t->start_us) continue;
            hit = 1;
            if (!t->detected_us || al[i].at_us < t->detected_us) t->detected_us = al[i].at_us;
        }
        tp_alerts[al[i].pat] += (size_t)hit;
    }
    if (!json) {
        fprintf(out, "%-14s %8s %9s %9s %10s %9s %11s %11s\n", "pattern", "planted", "detected", "recall",
                "alerts", "precision", "ttd p50 h", "ttd p95 h");
    } else {
        fprintf(out, "{\"patterns\":{");
    }
    for (size_t p = 0; p < NPAT; p++) {
        size_t planted = 0, detected = 0;
        int64_t *ttd = cs_malloc((nt ? nt : 1) * sizeof *ttd);
        for (size_t k = 0; k < nt; k++) {
            if (tr[k].pat != (int)p || tr[k].decoy) continue;
            planted++;
            if (tr[k].detected_us) ttd[detected++] = tr[k].detected_us - tr[k].start_us;
        }
        qsort(ttd, detected, sizeof *ttd, cmp_i64);
        double recall = planted ? (double)detected / (double)planted : 0;
        double precision = all_alerts[p] ? (double)tp_alerts[p] / (double)all_alerts[p] : 0;
        double p50 = detected ? (double)ttd[(detected - 1) / 2] / 3.6e9 : -1;
        double p95 = detected ? (double)ttd[(size_t)((double)(detected - 1) * 0.95)] / 3.6e9 : -1;
        if (!json)
            fprintf(out, "%-14s %8zu %9zu %9.3f %10zu %9.3f %11.1f %11.1f\n", kinds[p].pattern, planted, detected,
                    recall, all_alerts[p], precision, p50, p95);
        else
            fprintf(out, "%s\"%s\":{\"planted\":%zu,\"detected\":%zu,\"recall\":%.4f,\"alerts\":%zu,"
                         "\"precision\":%.4f,\"ttd_p50_h\":%.2f,\"ttd_p95_h\":%.2f}",
                    p ? "," : "", kinds[p].pattern, planted, detected, recall, all_alerts[p], precision, p50, p95);
        free(ttd);
    }
    double rc = nltruth ? (double)re.correct / (double)nltruth : 0;
    if (!json) {
        if (nltruth) {
            fprintf(out, "\nrouting        %zu leads in the truth, %zu routed, %zu to the expected owner: correctness %.3f%s\n",
                    nltruth, re.found, re.correct, rc, leads_ok ? "" : " (could not read /api/v1/leads)");
            if (*routing_desc) fprintf(out, "  rule: %s\n", routing_desc);
            for (size_t k = 0; k < re.nexamples; k++) fprintf(out, "  mismatch: %s\n", re.examples[k]);
            if (re.found < nltruth) fprintf(out, "  %zu leads of the truth not routed (or not found)\n", nltruth - re.found);
        }
        if (*sent_line) {
            fprintf(out, "\ntraffic sent   %s\nanswered       %s\n", sent_line, answered_line);
            fprintf(out, "late events in the events DLQ (reason late_event): %zu%s\n", late_dead,
                    dlq_ok ? "" : " (could not read /api/v1/dlq)");
        }
    } else {
        fprintf(out, "},\"alerts_read\":%zu", na);
        if (nltruth) {
            fprintf(out, ",\"routing\":{\"leads\":%zu,\"routed\":%zu,\"correct\":%zu,\"correctness\":%.4f,\"mismatches\":[",
                    nltruth, re.found, re.correct, rc);
            for (size_t k = 0; k < re.nexamples; k++) {
                cs_buf e;
                cs_buf_init(&e);
                cs_buf_json_str(&e, re.examples[k]);
                fprintf(out, "%s%s", k ? "," : "", e.data);
                cs_buf_free(&e);
            }
            fprintf(out, "]}");
        }
        if (*sent_line) fprintf(out, ",\"sent\":%s,\"answered\":%s,\"late_dead_lettered\":%zu", sent_line, answered_line, late_dead);
        fprintf(out, "}\n");
    }
    free(ltruth);
    ltruth = NULL;
    nltruth = 0;
    routing_desc[0] = sent_line[0] = answered_line[0] = '\0';
    nscope = 0;
    free(tr);
    free(al);
    return 0;
}

int cs_cmd_evaluate(int argc, char **argv)
{
    static const struct option opts[] = {{"truth", required_argument, 0, 'T'}, {"target", required_argument, 0, 't'},
                                         {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *truth = NULL, *target = "http://127.0.0.1:8080";
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'T': truth = optarg; break;
        case 't': target = optarg; break;
        case 'j': json = 1; break;
        case 'h': fputs(eval_usage, stdout); return 0;
        default: cs_die_usage("evaluate", "unknown option or missing value (see crmstream evaluate --help)");
        }
    }
    if (optind < argc) cs_die_usage("evaluate", "unexpected argument (see crmstream evaluate --help)");
    if (!truth) cs_die_usage("evaluate", "--truth FILE is required");
    return cs_evaluate(target, truth, json, stdout);
}
