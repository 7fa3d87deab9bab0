/*
 * tests/pgserver — see pgserver.h.
 */
#include "pgserver.h"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tpg_bin(void)
{
    const char *b = getenv("CRMSTREAM_PG_BIN");
    return b && *b ? b : "/usr/lib/postgresql/15/bin";
}

/* Run a server command as the server's owner (postgres when we are root),
 * from the temp dir so the owner can read the working directory. */
static int tpg_sh(const tpg *pg, const char *cmd)
{
    char full[2048];
    snprintf(full, sizeof full, "cd '%s' && %s%s", pg->dir, geteuid() == 0 ? "runuser -u postgres -- " : "", cmd);
    int rc = system(full);
    return rc == 0 ? 0 : -1;
}

static int tpg_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

int tpg_restart(tpg *pg)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s/pg_ctl -D data -l server.log -w -t 60 -o \"-p %d -k '%s' -c listen_addresses=127.0.0.1"
             " -c fsync=off -c full_page_writes=off -c max_connections=200\" start >>ctl.log 2>&1",
             tpg_bin(), pg->port, pg->dir);
    if (tpg_sh(pg, cmd)) {
        fprintf(stderr, "pgserver: pg_ctl start failed; see %s/server.log\n", pg->dir);
        return -1;
    }
    pg->running = 1;
    return 0;
}

int tpg_start(tpg *pg)
{
    memset(pg, 0, sizeof *pg);
    snprintf(pg->dir, sizeof pg->dir, "/tmp/crmstream-pg-XXXXXX");
    if (!mkdtemp(pg->dir)) return -1;
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
            fprintf(stderr, "pgserver: running as root needs the `postgres` user (Debian package postgresql)\n");
            return -1;
        }
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/initdb -D data -U crm -A trust -E UTF8 --locale=C --no-sync >initdb.log 2>&1",
             tpg_bin());
    if (tpg_sh(pg, cmd)) {
        fprintf(stderr, "pgserver: initdb failed; see %s/initdb.log\n", pg->dir);
        return -1;
    }
    /* A port found free can be taken before the server binds it: retry. */
    for (int attempt = 0; attempt < 5; attempt++) {
        if ((pg->port = tpg_free_port()) < 0) return -1;
        if (tpg_restart(pg) == 0) {
            snprintf(pg->uri, sizeof pg->uri, "postgresql://crm@127.0.0.1:%d/postgres", pg->port);
            return 0;
        }
    }
    return -1;
}

int tpg_stop(tpg *pg, const char *mode)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/pg_ctl -D data -m %s -w -t 60 stop >>ctl.log 2>&1", tpg_bin(), mode);
    int rc = tpg_sh(pg, cmd);
    if (rc == 0) pg->running = 0;
    return rc;
}

void tpg_destroy(tpg *pg)
{
    if (!pg->dir[0]) return;
    if (pg->running) tpg_stop(pg, "immediate");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", pg->dir);
    if (system(cmd) != 0) fprintf(stderr, "pgserver: cannot remove %s\n", pg->dir);
    pg->dir[0] = '\0';
}

int tpg_create_db(tpg *pg, const char *name, char *uri, size_t urilen)
{
    PGconn *c = PQconnectdb(pg->uri);
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        char sql[200];
        snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\"", name); /* test-made names only */
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) fprintf(stderr, "pgserver: %s", PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "pgserver: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    snprintf(uri, urilen, "postgresql://crm@127.0.0.1:%d/%s", pg->port, name);
    return ok ? 0 : -1;
}
