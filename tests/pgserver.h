/*
 * tests/pgserver — a throwaway PostgreSQL 15 server for tests, from Debian's
 * `postgresql` package: initdb into a temp dir, listen on 127.0.0.1 at a free
 * port (unix socket in the temp dir, never the system's), stop and remove at
 * the end. Independent of any server already running.
 *
 * PostgreSQL refuses to run as root, and CI runs as root: then every server
 * command runs as the `postgres` user (runuser) and the temp dir is chown'ed
 * to it. The binaries come from /usr/lib/postgresql/15/bin, or
 * $CRMSTREAM_PG_BIN. Included by tests (#include "pgserver.c").
 */
#ifndef CS_TESTS_PGSERVER_H
#define CS_TESTS_PGSERVER_H

typedef struct tpg {
    char dir[128];     /* temp dir: data/, server.log, the socket */
    int  port;
    int  running;
    char uri[256];     /* postgresql://crm@127.0.0.1:PORT/postgres (the admin database) */
} tpg;

/* initdb + start. 0, or -1 with the reason on stderr. */
int tpg_start(tpg *pg);
/* pg_ctl stop -m MODE ("immediate": like a crash; "fast": clean). */
int tpg_stop(tpg *pg, const char *mode);
/* Start again after tpg_stop (same data dir and port). */
int tpg_restart(tpg *pg);
/* Stop (immediate) and remove the temp dir. */
void tpg_destroy(tpg *pg);
/* CREATE DATABASE name; writes its URI to uri. 0 or -1. */
int tpg_create_db(tpg *pg, const char *name, char *uri, size_t urilen);

#endif
