/*
 * bench/store — CRM store write throughput: signal-field updates and lead
 * inserts per second through the cs_store interface (src/store/store.h),
 * batched the way the pipeline commits (one transaction per batch of B
 * events, the partition's next offset written in the same transaction)
 * against a naive baseline (the same statements in autocommit: one
 * statement per row, one transaction per statement), on one backend and
 * one account count per invocation. bench/store.sh runs it for SQLite and a
 * throwaway PostgreSQL at two account counts and prints the medians.
 *
 *   store -s SPEC -a ACCOUNTS [-B batch] [-d seconds] [-n max_events]
 *         [-r reps] [-w updates|leads|both] [-m batched|naive|both]
 *
 *   SPEC: what the `store` config key takes: sqlite:PATH (a fresh file) or a
 *   postgresql:// URI (an empty database). The store is opened with
 *   cs_store_open, so migrations and prepared statements are the product's.
 *   -a: accounts seeded before the clock starts (one bulk INSERT ... SELECT
 *       through the backend's own client, plus one current "health_score"
 *       signal per account), then VACUUM ANALYZE (PostgreSQL) or a WAL
 *       checkpoint (SQLite).
 *   -B: events per transaction in batched mode (default 500, the default of
 *       pipeline.batch_max_events).
 *   -d: seconds per measurement (default 2); -n caps the events of one
 *       measurement (default: no cap). A measurement stops at the first
 *       batch (batched) or event (naive) that ends past the deadline.
 *   -r: repetitions (default 3); each repetition runs every work x mode once,
 *       in the order updates/batched, updates/naive, leads/batched,
 *       leads/naive, on the same database (the audit and history grow).
 *
 * One "update" event is what applying a health-score change costs the
 * pipeline's store side, for a uniformly random account:
 *   signal_set(account, "health_score", v, cause)   history row + current value
 *   obj_upsert(account, {health_score, health_breakdown}, cause)
 *                                                   load, save, one audit row per
 *                                                   changed field (2)
 * i.e. 6 statements. One "lead" event is what apply_lead in
 * src/pipeline/pipeline.c does: counter_get (round-robin pointer),
 * lead_insert, counter_set, two audit rows (owner, status): 5 statements.
 * Batched mode adds offset_set once per batch (one partition); naive mode
 * does offset_set after every event (a consumer that commits per event).
 * Parsing is excluded: each event's fields are formatted with snprintf in
 * the timed loop (well under 1 us per event).
 *
 * Every measurement prints one line
 *   RESULT backend=.. accounts=.. work=.. mode=.. batch=.. rep=.. events=..
 *          secs=.. eps=.. audit_per_event=.. commit_us=.. wbytes_per_event=..
 * (commit_us: mean time of one COMMIT, batched only; wbytes_per_event:
 * bytes this process wrote per event, /proc/self/io wchar — for SQLite the
 * WAL and checkpoint writes, for PostgreSQL only the client's socket). After the last
 * repetition the database is checked: signal history rows, account and lead
 * audit rows, leads and the stored next offset must equal what the calls
 * reported; otherwise the program exits 1.
 */
#include <getopt.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/logging.h"
#include "store/store.h"

#define CONSUMER "pipeline"
#define TOPIC "events"
#define AT "2026-11-27T12:00:00.000Z"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "store bench: %s: %s\n", what, why);
    exit(1);
}

/* ---- raw access for seeding and the final check (not timed) ----------- */

struct raw {
    int      pg;
    sqlite3 *db;
    PGconn  *c;
};

static void raw_open(struct raw *r, const char *spec)
{
    memset(r, 0, sizeof *r);
    if (strncmp(spec, "sqlite:", 7) == 0) {
        if (sqlite3_open(spec + 7, &r->db) != SQLITE_OK) die("sqlite open", sqlite3_errmsg(r->db));
        sqlite3_busy_timeout(r->db, 10000);
    } else {
        r->pg = 1;
        r->c = PQconnectdb(spec);
        if (PQstatus(r->c) != CONNECTION_OK) die("postgres connect", PQerrorMessage(r->c));
    }
}

static void raw_close(struct raw *r)
{
    if (r->db) sqlite3_close(r->db);
    if (r->c) PQfinish(r->c);
}

static void raw_exec(struct raw *r, const char *sql)
{
    if (!r->pg) {
        char *msg = NULL;
        if (sqlite3_exec(r->db, sql, NULL, NULL, &msg) != SQLITE_OK) die(sql, msg ? msg : "error");
        return;
    }
    PGresult *res = PQexec(r->c, sql);
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) die(sql, PQresultErrorMessage(res));
    PQclear(res);
}

static long long raw_count(struct raw *r, const char *sql)
{
    long long v = -1;
    if (!r->pg) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(r->db, sql, -1, &s, NULL) != SQLITE_OK) die(sql, sqlite3_errmsg(r->db));
        if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        return v;
    }
    PGresult *res = PQexec(r->c, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) die(sql, PQresultErrorMessage(res));
    if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) v = atoll(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

#define BREAKDOWN0 "{\"usage\":25.00,\"engagement\":15.00,\"support\":10.00}"

static void seed(const char *spec, long accounts)
{
    struct raw r;
    char sql[2048];
    raw_open(&r, spec);
    if (!r.pg) {
        snprintf(sql, sizeof sql,
                 "BEGIN;"
                 "WITH RECURSIVE s(x) AS (SELECT 0 UNION ALL SELECT x+1 FROM s WHERE x+1<%ld)"
                 " INSERT INTO accounts(id,name,domain,plan_tier,mrr,renewal_date,owner,health_score,"
                 "health_breakdown) SELECT printf('acc_%%07d',x), printf('Account %%d',x),"
                 " printf('a%%d.example.com',x), CASE x%%3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro'"
                 " ELSE 'enterprise' END, (x%%500)*10.0, '2027-06-30', printf('rep_%%d',x%%20), 50.0,"
                 " '" BREAKDOWN0 "' FROM s;"
                 "INSERT INTO signals(account_id,name,value,at,cause_event_id,partition,\"offset\",rule_id)"
                 " SELECT id,'health_score',50.0,'2026-01-01T00:00:00.000Z','seed',0,0,'seed' FROM accounts;"
                 "COMMIT;"
                 "PRAGMA wal_checkpoint(TRUNCATE);",
                 accounts);
    } else {
        snprintf(sql, sizeof sql,
                 "BEGIN;"
                 "INSERT INTO accounts(id,name,domain,plan_tier,mrr,renewal_date,owner,health_score,"
                 "health_breakdown) SELECT 'acc_'||lpad(x::text,7,'0'), 'Account '||x, 'a'||x||'.example.com',"
                 " CASE x%%3 WHEN 0 THEN 'free' WHEN 1 THEN 'pro' ELSE 'enterprise' END, (x%%500)*10.0,"
                 " '2027-06-30', 'rep_'||(x%%20), 50.0, '" BREAKDOWN0 "' FROM generate_series(0,%ld) x;"
                 "INSERT INTO signals(account_id,name,value,at,cause_event_id,partition,\"offset\",rule_id)"
                 " SELECT id,'health_score',50.0,'2026-01-01T00:00:00.000Z','seed',0,0,'seed' FROM accounts;"
                 "COMMIT;",
                 accounts - 1);
    }
    raw_exec(&r, sql);
    if (r.pg) {
        raw_exec(&r, "VACUUM ANALYZE");
        raw_exec(&r, "CHECKPOINT");
    }
    if (raw_count(&r, "SELECT count(*) FROM accounts") != accounts) die("seed", "wrong account count");
    raw_close(&r);
}

/* ---- the timed loops ----------------------------------------------------- */

struct run {
    cs_store *st;
    long      accounts;
    double   *last;          /* current health score per account */
    int64_t   offset;        /* next log offset (partition 0) */
    long long ev_updates, ev_leads, audit_account, audit_lead;
};

static void check(cs_store *st, int rc, const char *what)
{
    if (rc < 0) die(what, st->errmsg);
}

static void one_update(struct run *R)
{
    cs_store *st = R->st;
    long a = (long)(next_rand() % (uint64_t)R->accounts);
    int64_t off = R->offset;
    char acc[24], eid[40], score[32], bd[128];
    snprintf(acc, sizeof acc, "acc_%07ld", a);
    snprintf(eid, sizeof eid, "ev_u_%lld", (long long)off);
    /* a new score each time, so every event changes the account */
    double v = (double)((off * 7919) % 10000) / 100.0;
    if (v == R->last[a]) v = v >= 99.0 ? v - 1.0 : v + 1.0;
    R->last[a] = v;
    snprintf(score, sizeof score, "%.2f", v);
    snprintf(bd, sizeof bd, "{\"usage\":%.3f,\"engagement\":%.3f,\"support\":%.3f}", v * 0.5, v * 0.3, v * 0.2);
    cs_cause c = {.event_id = eid, .partition = 0, .offset = off, .rule_id = "signals.health", .at = AT};
    int rc = st->ops->signal_set(st, acc, "health_score", v, &c);
    check(st, rc, "signal_set");
    if (rc != 1) die("signal_set", "event already recorded");
    cs_kv kv[2] = {{"health_score", score}, {"health_breakdown", bd}};
    rc = st->ops->obj_upsert(st, CS_OBJ_ACCOUNT, acc, kv, 2, &c);
    check(st, rc, "obj_upsert");
    if (rc < 1) die("obj_upsert", "nothing changed");
    R->audit_account += rc;
    R->ev_updates++;
    R->offset++;
}

#define RR_COUNTER "routing.round_robin.default"
#define NREPS 20

static void one_lead(struct run *R)
{
    cs_store *st = R->st;
    long a = (long)(next_rand() % (uint64_t)R->accounts);
    int64_t off = R->offset;
    cs_lead l;
    memset(&l, 0, sizeof l);
    snprintf(l.event_id, sizeof l.event_id, "ev_l_%lld", (long long)off);
    snprintf(l.id, sizeof l.id, "ld_%016llx", (unsigned long long)off * 0x9e3779b97f4a7c15ull);
    snprintf(l.account_id, sizeof l.account_id, "acc_%07ld", a);
    snprintf(l.email, sizeof l.email, "lead%lld@a%ld.example.com", (long long)off, a);
    snprintf(l.company, sizeof l.company, "Account %ld", a);
    snprintf(l.country, sizeof l.country, "DE");
    snprintf(l.source, sizeof l.source, "website");
    l.employee_count = 10 + (long)(off % 5000);
    snprintf(l.created_at, sizeof l.created_at, AT);
    l.partition = 0;
    l.offset = off;
    /* routing: round robin over NREPS reps, as cs_route_round_robin does */
    int64_t ptr;
    check(st, st->ops->counter_get(st, RR_COUNTER, &ptr), "counter_get");
    long i = (long)(ptr % NREPS);
    snprintf(l.status, sizeof l.status, "routed");
    snprintf(l.owner, sizeof l.owner, "rep_%ld", i);
    snprintf(l.route_reason, sizeof l.route_reason,
             "round_robin: pool default, rep %ld of %d (rep_%ld) is next in rotation", i + 1, NREPS, i);
    snprintf(l.routed_at, sizeof l.routed_at, AT);
    l.route_latency_ms = 0.5;
    int rc = st->ops->lead_insert(st, &l);
    check(st, rc, "lead_insert");
    if (rc != 1) die("lead_insert", "lead already there");
    check(st, st->ops->counter_set(st, RR_COUNTER, (ptr + 1) % NREPS), "counter_set");
    cs_audit au = {.object = "lead", .object_id = l.id, .field = "owner", .old_value = NULL,
                   .new_value = l.owner, .cause_event_id = l.event_id, .partition = 0,
                   .offset = off, .rule_id = "routing.round_robin", .at = l.routed_at};
    check(st, st->ops->audit_insert(st, &au), "audit_insert");
    au.field = "status";
    au.new_value = l.status;
    check(st, st->ops->audit_insert(st, &au), "audit_insert");
    R->audit_lead += 2;
    R->ev_leads++;
    R->offset++;
}

/* Bytes this process has passed to write(2)/pwrite(2) so far (/proc/self/io
 * wchar): for SQLite that is the WAL and checkpoint traffic (plus our own
 * stdout); for PostgreSQL only the client's socket writes. */
static long long wchar_now(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    long long v = -1;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "wchar: %lld", &v) == 1) break;
    if (f) fclose(f);
    return v;
}

struct result {
    long long wbytes;
    long long events;
    double    secs, commit_us;
    long long audit;
};

static struct result measure(struct run *R, int leads, int batched, int batch, double dur, long long cap)
{
    cs_store *st = R->st;
    void (*one)(struct run *) = leads ? one_lead : one_update;
    long long a0 = R->audit_account + R->audit_lead;
    struct result res = {0};
    double commit_total = 0;
    long long commits = 0;
    long long w0 = wchar_now();
    double t0 = now_s(), end = t0 + dur, t = t0;
    if (batched) {
        while (t < end && (!cap || res.events < cap)) {
            check(st, st->ops->begin(st), "begin");
            int n = 0;
            while (n < batch && (!cap || res.events + n < cap)) {
                one(R);
                n++;
            }
            check(st, st->ops->offset_set(st, CONSUMER, TOPIC, 0, R->offset), "offset_set");
            double c0 = now_s();
            check(st, st->ops->commit(st), "commit");
            t = now_s();
            commit_total += t - c0;
            commits++;
            res.events += n;
        }
    } else {
        while (t < end && (!cap || res.events < cap)) {
            one(R); /* every statement in its own (auto-committed) transaction */
            check(st, st->ops->offset_set(st, CONSUMER, TOPIC, 0, R->offset), "offset_set");
            res.events++;
            t = now_s();
        }
    }
    res.secs = t - t0;
    res.wbytes = wchar_now() - w0;
    res.commit_us = commits ? commit_total / (double)commits * 1e6 : 0;
    res.audit = R->audit_account + R->audit_lead - a0;
    return res;
}

static void verify(const char *spec, struct run *R)
{
    struct raw r;
    raw_open(&r, spec);
    struct {
        const char *sql;
        long long   want;
    } q[] = {
        {"SELECT count(*) FROM signal_history", R->ev_updates},
        {"SELECT count(*) FROM audit WHERE object='account'", R->audit_account},
        {"SELECT count(*) FROM leads", R->ev_leads},
        {"SELECT count(*) FROM audit WHERE object='lead'", R->audit_lead},
        {"SELECT next_offset FROM consumer_offsets WHERE consumer='" CONSUMER "' AND topic='" TOPIC
         "' AND partition=0",
         R->offset},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        long long got = raw_count(&r, q[i].sql);
        if (got != q[i].want) {
            fprintf(stderr, "store bench: check failed: %s = %lld, expected %lld\n", q[i].sql, got, q[i].want);
            bad = 1;
        }
    }
    raw_close(&r);
    if (bad) exit(1);
    printf("CHECK ok: %lld signal history rows, %lld account audit rows, %lld leads, %lld lead audit rows,"
           " next offset %lld\n",
           R->ev_updates, R->audit_account, R->ev_leads, R->audit_lead, (long long)R->offset);
}

/* -C: every SQLite connection opened after this gets PRAGMA cache_size=-KiB
 * (an auto extension runs on each sqlite3_open, so the store's own
 * connections get it without a change to src/store). Diagnostic only. */
static long cache_kib;
static int set_cache(sqlite3 *db, const char **errmsg, const void *api)
{
    (void)errmsg, (void)api;
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA cache_size=-%ld", cache_kib);
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void usage(void)
{
    fprintf(stderr, "usage: store -s sqlite:PATH|postgresql://URI -a ACCOUNTS [-B batch] [-d seconds]"
                    " [-n max_events] [-r reps] [-w updates|leads|both] [-m batched|naive|both] [-C cache_kib]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *spec = NULL, *work = "both", *modes = "both";
    long accounts = 10000, batch = 500;
    double dur = 2.0;
    long long cap = 0;
    int reps = 3, opt;
    while ((opt = getopt(argc, argv, "s:a:B:d:n:r:w:m:C:")) != -1) {
        switch (opt) {
        case 's': spec = optarg; break;
        case 'a': accounts = atol(optarg); break;
        case 'B': batch = atol(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'n': cap = atoll(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'w': work = optarg; break;
        case 'm': modes = optarg; break;
        case 'C': cache_kib = atol(optarg); break;
        default: usage();
        }
    }
    if (!spec || accounts < 1 || accounts > 9999999 || batch < 1 || dur <= 0 || reps < 1) usage();
    int do_upd = strcmp(work, "leads") != 0, do_leads = strcmp(work, "updates") != 0;
    int do_batched = strcmp(modes, "naive") != 0, do_naive = strcmp(modes, "batched") != 0;
    cs_log_set_level(CS_LOG_WARN);
    if (cache_kib > 0) sqlite3_auto_extension((void (*)(void))set_cache);

    char err[512];
    cs_store *st = cs_store_open(spec, NULL, err, sizeof err);
    if (!st) die("open", err);
    const char *backend = st->ops->name;
    double t0 = now_s();
    seed(spec, accounts);
    printf("SEED backend=%s accounts=%ld secs=%.2f\n", backend, accounts, now_s() - t0);
    fflush(stdout);

    struct run R = {.st = st, .accounts = accounts};
    R.last = malloc((size_t)accounts * sizeof *R.last);
    if (!R.last) die("malloc", "out of memory");
    for (long i = 0; i < accounts; i++) R.last[i] = 50.0;

    for (int rep = 1; rep <= reps; rep++) {
        for (int w = 0; w < 2; w++) {
            if (w == 0 ? !do_upd : !do_leads) continue;
            for (int m = 0; m < 2; m++) {
                int batched = m == 0;
                if (batched ? !do_batched : !do_naive) continue;
                struct result res = measure(&R, w, batched, (int)batch, dur, cap);
                printf("RESULT backend=%s accounts=%ld work=%s mode=%s batch=%ld rep=%d events=%lld secs=%.3f"
                       " eps=%.0f audit_per_event=%.2f commit_us=%.0f wbytes_per_event=%.0f\n",
                       backend, accounts, w ? "leads" : "updates", batched ? "batched" : "naive",
                       batched ? batch : 1, rep, res.events, res.secs, (double)res.events / res.secs,
                       res.events ? (double)res.audit / (double)res.events : 0.0, res.commit_us,
                       res.events ? (double)res.wbytes / (double)res.events : 0.0);
                fflush(stdout);
            }
        }
    }
    st->ops->close(st);
    verify(spec, &R);
    free(R.last);
    return 0;
}
