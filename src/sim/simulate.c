/*
 * sim/simulate — `crmstream simulate`: generate and send the world's events.
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app/app.h"
#include "core/util.h"
#include "sim/httpc.h"
#include "sim/sim.h"
#include "sim/world.h"

/* splitmix64: a tiny, well-mixed PRNG; event i's randomness depends only on
 * (seed, i), so any event of the world can be regenerated on its own. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static const char *const features[] = {"reports", "export_csv", "dashboards", "api", "sso", "alerts",
                                       "integrations", "billing"};
static const char *const tiers[] = {"free", "trial", "starter", "pro", "enterprise"};
static const char *const countries[] = {"US", "DE", "FR", "GB", "IN", "BR", "JP", "CA"};
static const char *const sources[] = {"website", "webinar", "paid_search", "referral", "event"};

void cs_sim_event(uint64_t seed, uint64_t i, int accounts, int64_t now_us, cs_buf *out, int *is_lead)
{
    uint64_t r = mix(seed * 0x100000001b3ull ^ mix(i));
    uint64_t r2 = mix(r);
    int acc = (int)(r2 % (uint64_t)accounts);
    unsigned pick = (unsigned)(r % 100);
    char ts[40];
    cs_fmt_time_ms(now_us, ts, sizeof ts);
    const char *type = pick < 55   ? "FeatureUsed"
                       : pick < 70 ? "LeadCreated"
                       : pick < 77 ? "DemoRequested"
                       : pick < 85 ? "TrialActivated"
                       : pick < 91 ? "SubscriptionUpgraded"
                                   : "SupportCaseEscalated";
    *is_lead = strcmp(type, "LeadCreated") == 0;
    cs_buf_printf(out, "{\"event_id\":\"sim-%llu-%llu\",\"type\":\"%s\",\"account_id\":\"live_acc_%05d\","
                       "\"user_id\":\"u_%05d_%d\",\"timestamp\":\"%s\",\"plan_tier\":\"%s\"",
                  (unsigned long long)seed, (unsigned long long)i, type, acc, acc, (int)(r2 >> 20) % 7, ts,
                  tiers[acc % 5]);
    if (strcmp(type, "FeatureUsed") == 0) {
        const char *f = features[(r2 >> 8) % 8];
        cs_buf_printf(out, ",\"product_area\":\"%s\",\"properties\":{\"feature\":\"%s\",\"count\":%d}}", f, f,
                      1 + (int)((r2 >> 16) % 5));
    } else if (*is_lead || strcmp(type, "DemoRequested") == 0) {
        cs_buf_printf(out, ",\"properties\":{\"email\":\"person%llu@company%d.example\",\"company\":\"Company %d\","
                           "\"country\":\"%s\",\"employee_count\":%d,\"source\":\"%s\"}}",
                      (unsigned long long)(i % 100000), acc, acc, countries[(r2 >> 12) % 8],
                      10 + (int)((r2 >> 24) % 5000), sources[(r2 >> 32) % 5]);
    } else if (strcmp(type, "TrialActivated") == 0) {
        cs_buf_printf(out, ",\"properties\":{\"trial_days\":14}}");
    } else if (strcmp(type, "SubscriptionUpgraded") == 0) {
        cs_buf_printf(out, ",\"properties\":{\"plan_tier\":\"%s\",\"mrr\":%d}}", tiers[2 + (r2 >> 9) % 3],
                      100 * (1 + (int)((r2 >> 40) % 50)));
    } else {
        cs_buf_printf(out, ",\"properties\":{\"case_id\":\"case-%llu\",\"severity\":\"high\"}}",
                      (unsigned long long)i);
    }
}

static void sleep_until(int64_t t_us)
{
    int64_t d = t_us - cs_mono_us();
    if (d <= 0) return;
    struct timespec ts = {d / 1000000, (long)(d % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* The leads a world run had acknowledged, in sending order (for their
 * expected owners in the truth file). */
struct lead_log {
    char  (*ids)[64];
    size_t n, cap;
};

/* Send one body (a JSON array to /v1/events, or a Segment batch to
 * /v1/batch); account the answer. is_lead[k] marks LeadCreated events,
 * lead_id[k] their event ids; acknowledged ones are logged in order. */
static int send_batch(cs_httpc *c, const char *path, cs_buf *body, const int *is_lead, char (*lead_id)[64], size_t n,
                      cs_sim_result *r, cs_buf *resp, struct lead_log *ll)
{
    int status;
    r->requests++;
    r->sent += n;
    if (cs_httpc_request(c, "POST", path, NULL, body->data, body->len, &status, resp) != 0) {
        r->request_errors++;
        r->failed += n;
        return -1;
    }
    if (status != 200) {
        /* 422: every event of the request was invalid; 400: the request was */
        if (status != 422 && status != 400) r->request_errors++, r->failed += n;
        else r->rejected += n;
        return 0;
    }
    cJSON *j = cJSON_Parse(resp->data);
    cJSON *acc = cJSON_GetObjectItem(j, "accepted"), *dup = cJSON_GetObjectItem(j, "duplicates");
    r->acked += cJSON_IsNumber(acc) ? (uint64_t)acc->valuedouble : 0;
    r->duplicates += cJSON_IsNumber(dup) ? (uint64_t)dup->valuedouble : 0;
    cJSON *rej = cJSON_GetObjectItem(j, "rejected");
    r->rejected += (uint64_t)cJSON_GetArraySize(rej);
    for (size_t k = 0; k < n; k++) {
        int bad = 0;
        for (cJSON *e = rej ? rej->child : NULL; e; e = e->next)
            if ((size_t)cJSON_GetObjectItem(e, "index")->valuedouble == k) bad = 1;
        if (is_lead[k] && !bad) {
            r->leads_acked++;
            if (ll) {
                if (ll->n == ll->cap) ll->cap = ll->cap ? ll->cap * 2 : 1024, ll->ids = cs_realloc(ll->ids, ll->cap * 64);
                memcpy(ll->ids[ll->n++], lead_id[k], 64);
            }
        }
    }
    cJSON_Delete(j);
    return 0;
}

/* Wait until the pipeline has applied everything acknowledged (GET /readyz
 * pipeline_lag 0), bounded. */
static int wait_applied(cs_httpc *c, cs_buf *resp, double timeout_s)
{
    int64_t deadline = cs_mono_us() + (int64_t)(timeout_s * 1e6);
    useconds_t pause = 200; /* backs off to 5 ms: polls are work for the server too */
    for (;;) {
        int st;
        if (cs_httpc_request(c, "GET", "/readyz", NULL, NULL, 0, &st, resp) == 0) {
            cJSON *j = cJSON_Parse(resp->data);
            cJSON *lag = cJSON_GetObjectItem(j, "pipeline_lag");
            int done = st == 200 && cJSON_IsNumber(lag) && lag->valuedouble == 0;
            cJSON_Delete(j);
            if (done) return 0;
        }
        if (cs_mono_us() > deadline) return -1;
        usleep(pause);
        if (pause < 5000) pause *= 2;
    }
}

/* The reps routing rotates through, in order. */
static int load_reps(const cs_sim_opts *o, char (**reps)[64], size_t *n)
{
    *n = 0;
    *reps = NULL;
    if (o->reps) {
        const char *p = o->reps;
        while (*p) {
            size_t l = strcspn(p, ",");
            *reps = cs_realloc(*reps, (*n + 1) * 64);
            snprintf((*reps)[(*n)++], 64, "%.*s", (int)l, p);
            p += l + (p[l] == ',');
        }
        return 0;
    }
    cs_config cfg;
    if (cs_app_load_config(&cfg, NULL)) return -1;
    for (size_t i = 0; i < cfg.nreps; i++) {
        *reps = cs_realloc(*reps, (*n + 1) * 64);
        snprintf((*reps)[(*n)++], 64, "%s", cfg.reps[i].id);
    }
    cs_config_free(&cfg);
    return 0;
}

/* A lead's partition key, as ingest derives it (src/ingest/event.c):
 * account_id, else "domain:" and the email's domain in lower case. */
static void lead_key(const char *json, size_t len, char *out, size_t n)
{
    cJSON *j = cJSON_ParseWithLength(json, len);
    const char *acc = cJSON_GetStringValue(cJSON_GetObjectItem(j, "account_id"));
    const char *email = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "properties"), "email"));
    const char *at = email ? strrchr(email, '@') : NULL;
    if (acc) snprintf(out, n, "%s", acc);
    else snprintf(out, n, "domain:%s", at ? at + 1 : "");
    for (char *c = out; *c; c++)
        if (!acc && *c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    cJSON_Delete(j);
}

/* One door's pending request. */
struct door {
    const char *path;
    cs_buf      body;
    int         is_lead[2500];
    char        lead_id[2500][64];
    size_t      n;
    int         segment;
    int         has_lead;  /* holds a lead */
    int64_t     first_ts;  /* event time of its first on-time event; INT64_MIN: none */
};

static void door_flush(struct door *d, cs_httpc *c, cs_sim_result *r, cs_buf *resp, struct lead_log *ll,
                       int *lead_inflight, int *err)
{
    if (!d->n) return;
    if (d->segment) {
        char now[40];
        cs_fmt_time_ms(cs_now_us(), now, sizeof now);
        cs_buf_printf(&d->body, "],\"sentAt\":\"%s\"}", now);
    } else {
        cs_buf_adds(&d->body, "]");
    }
    if (d->segment) r->requests_segment++;
    else r->requests_native++;
    if (send_batch(c, d->path, &d->body, d->is_lead, d->lead_id, d->n, r, resp, ll) != 0 && r->acked == 0) *err = 1;
    cs_buf_reset(&d->body);
    d->n = 0;
    d->first_ts = INT64_MIN;
    if (d->has_lead) *lead_inflight = 1;
    d->has_lead = 0;
}

int64_t cs_sim_world_end(int64_t given_us, int64_t now_us)
{
    int64_t e = given_us ? given_us : now_us - now_us % (3600LL * 1000000);
    return e - e % 1000;
}

static int run_world(const cs_sim_opts *o, cs_sim_result *r)
{
    cs_world_opts wo = {.seed = o->seed, .accounts = o->accounts, .days = o->days, .end_us = cs_now_us(),
                        .dup_share = o->dup_share, .ooo_share = o->ooo_share, .late_share = o->late_share,
                        .invalid_share = o->invalid_share, .segment_share = o->segment_share};
    wo.end_us = cs_sim_world_end(o->end_us, wo.end_us);
    char(*reps)[64] = NULL;
    size_t nreps = 0;
    if (o->truth && load_reps(o, &reps, &nreps)) return -2;
    cs_world *w = cs_world_new(&wo);
    if (o->truth) {
        FILE *f = fopen(o->truth, "w");
        if (!f) {
            cs_world_free(w);
            free(reps);
            return -2;
        }
        cs_world_truth(w, f);
        fclose(f);
    }
    cs_httpc c;
    if (cs_httpc_init(&c, o->target)) {
        cs_world_free(w);
        free(reps);
        return -1;
    }
    cs_buf resp;
    cs_buf_init(&resp);
    cs_wevent ev = {0};
    cs_buf_init(&ev.json);
    struct door *doors = cs_calloc(2, sizeof *doors);
    doors[0].path = "/v1/events";
    doors[1].path = "/v1/batch", doors[1].segment = 1;
    doors[0].first_ts = doors[1].first_ts = INT64_MIN;
    cs_buf_init(&doors[0].body), cs_buf_init(&doors[1].body);
    struct lead_log ll = {0};
    /* Round robin hands out owners in the order the pipeline applies leads.
     * The leads lane applies them in ingest order (one topic partition that
     * ingest appends to in request order), and this sender's requests go one
     * after the other on one connection, each acknowledged before the next:
     * so the k-th acknowledged lead goes to rep k mod N (on a fresh server).
     * --lead-barrier is for a server without the lane, whose workers take
     * partitions in turn: each lead then waits for the previous one. */
    int lead_inflight = 0, err = 0;
    char lead_key_now[300] = "";
    uint64_t i = 0;
    int64_t start = cs_mono_us(), last_progress = 0;
    cs_buf msg;
    cs_buf_init(&msg);
    int more = 1;
    while (more && !err) {
        more = cs_world_next(w, &ev) == 0;
        if (!more) {
            door_flush(&doors[0], &c, r, &resp, &ll, &lead_inflight, &err);
            door_flush(&doors[1], &c, r, &resp, &ll, &lead_inflight, &err);
            break;
        }
        int lead = ev.is_lead && !ev.duplicate; /* a repeat is answered as a duplicate */
        struct door *d = &doors[0];
        cs_buf_reset(&msg);
        if (ev.segment && cs_world_to_segment(ev.json.data, ev.json.len, &msg) == 0) d = &doors[1];
        if (lead && o->lead_barrier) {
            /* Leads with the same partition key (a signup burst's domain)
             * share a partition, whose order the pipeline keeps: they may be
             * in flight together, provided they are appended in order. */
            char key[300];
            lead_key(ev.json.data, ev.json.len, key, sizeof key);
            int same = strcmp(key, lead_key_now) == 0;
            for (int k = 0; k < 2; k++)
                if (doors[k].has_lead && (!same || &doors[k] != d))
                    door_flush(&doors[k], &c, r, &resp, &ll, &lead_inflight, &err);
            snprintf(lead_key_now, sizeof lead_key_now, "%s", key);
            if (lead_inflight && !same) {
                int64_t t0 = cs_mono_us();
                if (wait_applied(&c, &resp, 60) != 0) err = 1;
                r->lead_waits++;
                r->lead_wait_s += (double)(cs_mono_us() - t0) / 1e6;
                lead_inflight = 0;
            }
        }
        /* A door's request spans at most 40 min of event time: what one door
         * sends must not run ahead of what the other still holds by the
         * allowed lateness (1 h), or those events arrive late through no
         * fault of the world. */
        for (int k = 0; k < 2 && !ev.late; k++)
            if (doors[k].n && doors[k].first_ts != INT64_MIN && ev.ts_us - doors[k].first_ts > 2400000000LL)
                door_flush(&doors[k], &c, r, &resp, &ll, &lead_inflight, &err);
        cs_buf_adds(&d->body, d->n ? "," : d->segment ? "{\"batch\":[" : "[");
        if (d->segment) cs_buf_add(&d->body, msg.data, msg.len);
        else cs_buf_add(&d->body, ev.json.data, ev.json.len);
        if (!ev.late && d->first_ts == INT64_MIN) d->first_ts = ev.ts_us;
        d->is_lead[d->n] = lead;
        d->lead_id[d->n][0] = '\0';
        if (lead) {
            const char *p = strstr(ev.json.data, "\"event_id\":\"");
            if (p) snprintf(d->lead_id[d->n], 64, "%.*s", (int)strcspn(p + 12, "\""), p + 12);
            d->has_lead = 1;
        }
        d->n++;
        if (d->segment) r->sent_segment++;
        else r->sent_native++;
        r->sent_invalid += (uint64_t)ev.invalid;
        r->sent_duplicate += (uint64_t)ev.duplicate;
        r->sent_ooo += (uint64_t)ev.ooo;
        r->sent_late += (uint64_t)ev.late;
        i++;
        if (d->n == (size_t)o->batch) {
            /* Pace: event i is due at i / rate seconds. */
            int64_t due = start + (int64_t)((double)i * 1e6 / o->rate), dl = due - cs_mono_us();
            if (dl > 0) usleep((useconds_t)dl);
            door_flush(d, &c, r, &resp, &ll, &lead_inflight, &err);
        }
        if (o->duration_set && (double)(cs_mono_us() - start) / 1e6 >= o->duration) {
            door_flush(&doors[0], &c, r, &resp, &ll, &lead_inflight, &err);
            door_flush(&doors[1], &c, r, &resp, &ll, &lead_inflight, &err);
            break;
        }
        if (o->progress && cs_mono_us() - last_progress > 250000) {
            last_progress = cs_mono_us();
            char t[40];
            cs_fmt_time_ms(ev.ts_us, t, sizeof t);
            fprintf(stderr, "\rsimulate  event time %.19s  %llu events  %.0f ev/s   ", t, (unsigned long long)i,
                    (double)i / ((double)(last_progress - start) / 1e6 + 1e-9));
        }
    }
    if (o->progress) fputs("\n", stderr);
    r->elapsed_s = (double)(cs_mono_us() - start) / 1e6;
    /* The expected owner of each acknowledged lead under round robin. */
    if (o->truth && !err) {
        FILE *f = fopen(o->truth, "a");
        if (f) {
            fprintf(f, "{\"routing\":{\"policy\":\"round_robin\",\"order\":\"%s\",\"reps\":[",
                    o->lead_barrier ? "one lead in flight" : "ingest (leads lane)");
            for (size_t k = 0; k < nreps; k++) fprintf(f, "%s\"%s\"", k ? "," : "", reps[k]);
            fprintf(f, "]}}\n");
            fprintf(f, "{\"sent\":{\"events\":%llu,\"native\":%llu,\"segment\":%llu,\"duplicate\":%llu,"
                       "\"out_of_order\":%llu,\"late\":%llu,\"invalid\":%llu},\"answered\":{\"accepted\":%llu,"
                       "\"duplicates\":%llu,\"rejected\":%llu,\"failed\":%llu}}\n",
                    (unsigned long long)r->sent, (unsigned long long)r->sent_native,
                    (unsigned long long)r->sent_segment, (unsigned long long)r->sent_duplicate,
                    (unsigned long long)r->sent_ooo, (unsigned long long)r->sent_late,
                    (unsigned long long)r->sent_invalid, (unsigned long long)r->acked,
                    (unsigned long long)r->duplicates, (unsigned long long)r->rejected,
                    (unsigned long long)r->failed);
            for (size_t k = 0; k < ll.n; k++)
                fprintf(f, "{\"lead_event_id\":\"%s\",\"expected_owner\":%s%s%s}\n", ll.ids[k], nreps ? "\"" : "",
                        nreps ? reps[k % nreps] : "null", nreps ? "\"" : "");
            fclose(f);
        }
    }
    free(ll.ids);
    free(reps);
    cs_buf_free(&ev.json);
    cs_buf_free(&doors[0].body), cs_buf_free(&doors[1].body);
    cs_buf_free(&msg);
    free(doors);
    cs_buf_free(&resp);
    cs_httpc_close(&c);
    cs_world_free(w);
    return err ? -1 : 0;
}

int cs_sim_run(const cs_sim_opts *o, cs_sim_result *r)
{
    memset(r, 0, sizeof *r);
    if (o->days > 0) return run_world(o, r);
    cs_httpc c;
    if (cs_httpc_init(&c, o->target)) return -1;
    uint64_t total = (uint64_t)llround(o->rate * o->duration);
    int64_t start = cs_mono_us(), last_progress = 0;
    cs_buf body, resp;
    cs_buf_init(&body);
    cs_buf_init(&resp);
    int leads_in[4096];
    uint64_t i = 0;
    while (i < total) {
        /* Send what is due now, at most `batch` events per request. */
        int64_t due_us = start + (int64_t)((double)i * 1e6 / o->rate);
        sleep_until(due_us);
        uint64_t due_n = (uint64_t)((double)(cs_mono_us() - start) * o->rate / 1e6) + 1;
        if (due_n > total) due_n = total;
        uint64_t n = due_n > i ? due_n - i : 1;
        if (n > (uint64_t)o->batch) n = (uint64_t)o->batch;
        cs_buf_reset(&body);
        cs_buf_adds(&body, "[");
        int64_t now = cs_now_us();
        for (uint64_t k = 0; k < n; k++) {
            if (k) cs_buf_adds(&body, ",");
            cs_sim_event(o->seed, i + k, o->accounts, now, &body, &leads_in[k]);
        }
        cs_buf_adds(&body, "]");
        int status;
        r->requests++;
        r->sent += n;
        if (cs_httpc_request(&c, "POST", "/v1/events", NULL, body.data, body.len, &status, &resp) != 0) {
            if (r->acked == 0 && r->failed == 0 && i == 0) {
                cs_buf_free(&body), cs_buf_free(&resp), cs_httpc_close(&c);
                return -1;
            }
            r->request_errors++;
            r->failed += n;
        } else if (status == 200) {
            cJSON *j = cJSON_Parse(resp.data);
            cJSON *acc = cJSON_GetObjectItem(j, "accepted");
            r->acked += cJSON_IsNumber(acc) ? (uint64_t)acc->valuedouble : 0;
            cJSON *rej = cJSON_GetObjectItem(j, "rejected");
            r->rejected += (uint64_t)cJSON_GetArraySize(rej);
            cJSON *dup = cJSON_GetObjectItem(j, "duplicates");
            r->duplicates += cJSON_IsNumber(dup) ? (uint64_t)dup->valuedouble : 0;
            /* Count acknowledged leads: every event not in `rejected`. */
            for (uint64_t k = 0; k < n; k++) {
                int rejected = 0;
                for (cJSON *e = rej ? rej->child : NULL; e; e = e->next)
                    if ((uint64_t)cJSON_GetObjectItem(e, "index")->valuedouble == k) rejected = 1;
                if (leads_in[k] && !rejected) r->leads_acked++;
            }
            cJSON_Delete(j);
        } else {
            r->request_errors++;
            r->failed += n;
        }
        i += n;
        if (o->progress && cs_mono_us() - last_progress > 250000) {
            last_progress = cs_mono_us();
            double el = (double)(last_progress - start) / 1e6;
            fprintf(stderr, "\rsimulate [%-30.*s] %3.0f%%  %llu/%llu events  %.0f ev/s  %.0fs left   ",
                    (int)(30 * i / total), "##############################", 100.0 * (double)i / (double)total,
                    (unsigned long long)i, (unsigned long long)total, (double)i / (el > 0 ? el : 1),
                    o->duration - el > 0 ? o->duration - el : 0);
        }
    }
    if (o->progress) fputs("\n", stderr);
    r->elapsed_s = (double)(cs_mono_us() - start) / 1e6;
    cs_buf_free(&body);
    cs_buf_free(&resp);
    cs_httpc_close(&c);
    return 0;
}

static const char sim_usage[] =
    "usage: crmstream simulate [--target URL] [--rate EPS] [--duration S] [--seed S]\n"
    "                          [--accounts N] [--batch N]\n"
    "\n"
    "Send a deterministic mix of the six seed event types (FeatureUsed, LeadCreated,\n"
    "DemoRequested, TrialActivated, SubscriptionUpgraded, SupportCaseEscalated) to a\n"
    "running server's POST /v1/events, paced at EPS events per second. The same seed\n"
    "gives the same events. Prints one JSON line of counts at the end.\n"
    "\n"
    "  --target URL    server (default http://127.0.0.1:8080)\n"
    "  --rate EPS      events per second (default 1000)\n"
    "  --duration S    seconds to run (default 10)\n"
    "  --seed S        world seed (default 1)\n"
    "  --accounts N    accounts in the world (default 200)\n"
    "  --batch N       most events per request (default 20)\n"
    "  --days D        send the world (sim/world.h) over D days of event time ending now,\n"
    "                  as fast as --rate allows (--duration then caps the run)\n"
    "  --truth FILE    with --days: write the ground truth (planted patterns) as JSON lines\n"
    "  --duplicates F, --late F, --out-of-order F, --invalid F\n"
    "                  with --days: shares of events sent twice, held back 2 h (past the\n"
    "                  allowed lateness), swapped out of order, or made invalid\n"
    "                  (defaults 0.02, 0.005, 0.05, 0.005)\n"
    "  --segment-share F  with --days: share of events sent as Segment track/identify/group\n"
    "                  calls to POST /v1/batch, the rest to POST /v1/events (default 0.5);\n"
    "                  both doors map to the same canonical events\n"
    "  --reps A,B,...  with --truth: rep ids in routing order (default: routing.reps of\n"
    "                  config/crmstream.yaml); the truth gives each lead its expected owner\n"
    "                  under round robin on a fresh server\n"
    "  --end TIME      with --days: the world ends at this RFC 3339 time instead of the last\n"
    "                  whole hour before now (the\n"
    "                  same seed and end give a byte-identical stream)\n"
    "  --lead-barrier  with --days: send a lead only once the previous one is routed\n"
    "                  (GET /readyz lag 0), for a server that does not route leads in\n"
    "                  ingest order; not needed with the leads lane\n"
    "  -h, --help      this help\n";

static double num_arg(const char *opt, const char *v, double lo, double hi)
{
    char *end;
    double d = strtod(v, &end);
    if (*end || end == v || !(d >= lo && d <= hi)) {
        char why[160];
        snprintf(why, sizeof why, "%s: expected a number from %g to %g, got \"%.40s\"", opt, lo, hi, v);
        cs_die_usage("simulate", why);
    }
    return d;
}

/* Parse simulate's options into o (shared with demo). */
void cs_sim_parse(int argc, char **argv, cs_sim_opts *o, const char *cmd, const char *usage_text)
{
    static const struct option opts[] = {{"target", required_argument, 0, 't'}, {"rate", required_argument, 0, 'r'},
                                         {"duration", required_argument, 0, 'd'}, {"seed", required_argument, 0, 's'},
                                         {"accounts", required_argument, 0, 'a'}, {"batch", required_argument, 0, 'b'},
                                         {"days", required_argument, 0, 'D'}, {"truth", required_argument, 0, 'T'},
                                         {"duplicates", required_argument, 0, '1'}, {"late", required_argument, 0, '2'},
                                         {"out-of-order", required_argument, 0, '3'}, {"invalid", required_argument, 0, '4'},
                                         {"segment-share", required_argument, 0, '5'}, {"reps", required_argument, 0, '6'},
                                         {"lead-barrier", no_argument, 0, '7'}, {"end", required_argument, 0, '8'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 't': o->target = optarg; break;
        case 'r': o->rate = num_arg("--rate", optarg, 1, 1e7); break;
        case 'd': o->duration = num_arg("--duration", optarg, 0.1, 86400 * 7), o->duration_set = 1; break;
        case 'D': o->days = (int)num_arg("--days", optarg, 1, 3650); break;
        case 'T': o->truth = optarg; break;
        case '1': o->dup_share = num_arg("--duplicates", optarg, 0, 0.5); break;
        case '2': o->late_share = num_arg("--late", optarg, 0, 0.5); break;
        case '3': o->ooo_share = num_arg("--out-of-order", optarg, 0, 0.5); break;
        case '4': o->invalid_share = num_arg("--invalid", optarg, 0, 0.5); break;
        case '5': o->segment_share = num_arg("--segment-share", optarg, 0, 1); break;
        case '6': o->reps = optarg; break;
        case '7': o->lead_barrier = 1; break;
        case '8':
            if (cs_parse_time(optarg, &o->end_us) != 0 || o->end_us <= 0) {
                char why[160];
                snprintf(why, sizeof why, "--end: expected an RFC 3339 time such as 2026-11-27T10:00:00Z, got \"%.40s\"",
                         optarg);
                cs_die_usage(cmd, why);
            }
            break;
        case 's': o->seed = (uint64_t)num_arg("--seed", optarg, 0, 1e15); break;
        case 'a': o->accounts = (int)num_arg("--accounts", optarg, 1, 1e7); break;
        case 'b': o->batch = (int)num_arg("--batch", optarg, 1, 2500); break;
        case 'h': fputs(usage_text, stdout); exit(0);
        default: {
            char why[160];
            snprintf(why, sizeof why, "unknown option or missing value (see crmstream %s --help)", cmd);
            cs_die_usage(cmd, why);
        }
        }
    }
    if (o->truth && o->days == 0) cs_die_usage(cmd, "--truth needs --days (the world mode)");
    if (optind < argc) {
        char why[160];
        snprintf(why, sizeof why, "unexpected argument \"%.40s\" (see crmstream %s --help)", argv[optind], cmd);
        cs_die_usage(cmd, why);
    }
}

int cs_cmd_simulate(int argc, char **argv)
{
    cs_sim_opts o = {.target = "http://127.0.0.1:8080", .rate = 1000, .duration = 10, .seed = 1, .accounts = 0,
                     .batch = 20, .progress = isatty(STDERR_FILENO), .dup_share = 0.02, .ooo_share = 0.05,
                     .late_share = 0.005, .invalid_share = 0.005, .segment_share = 0.5};
    cs_sim_parse(argc, argv, &o, "simulate", sim_usage);
    if (o.accounts == 0) o.accounts = o.days ? 500 : 200;
    if (o.days && o.rate == 1000) o.rate = 20000; /* compressed time: as fast as the server takes it */
    cs_sim_result r;
    int rc = cs_sim_run(&o, &r);
    if (rc == -2) {
        cs_fail(o.truth, "cannot write the truth file");
        return 1;
    }
    if (rc != 0) {
        char why[256];
        snprintf(why, sizeof why, "cannot reach %s (is `crmstream serve` running?)", o.target);
        cs_fail("simulate", why);
        return 1;
    }
    printf("{\"sent\":%llu,\"acked\":%llu,\"duplicates\":%llu,\"rejected\":%llu,\"failed\":%llu,"
           "\"sent_native\":%llu,\"sent_segment\":%llu,\"sent_out_of_order\":%llu,\"sent_late\":%llu,"
           "\"sent_invalid\":%llu,\"sent_duplicate\":%llu,\"leads_acked\":%llu,"
           "\"requests\":%llu,\"request_errors\":%llu,\"elapsed_s\":%.3f,\"rate\":%.1f}\n",
           (unsigned long long)r.sent, (unsigned long long)r.acked, (unsigned long long)r.duplicates,
           (unsigned long long)r.rejected, (unsigned long long)r.failed, (unsigned long long)r.sent_native,
           (unsigned long long)r.sent_segment, (unsigned long long)r.sent_ooo, (unsigned long long)r.sent_late,
           (unsigned long long)r.sent_invalid,
           (unsigned long long)r.sent_duplicate, (unsigned long long)r.leads_acked, (unsigned long long)r.requests,
           (unsigned long long)r.request_errors, r.elapsed_s, (double)r.acked / (r.elapsed_s > 0 ? r.elapsed_s : 1));
    return r.request_errors ? 1 : 0;
}
