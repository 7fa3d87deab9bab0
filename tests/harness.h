/*
 * tests/harness — start and stop a real `crmstream serve` for integration
 * tests: a temp data dir, a config with three reps, a free port (the server
 * picks it and publishes it in DATA/http.addr), and HTTP helpers.
 */
#ifndef CS_TESTS_HARNESS_H
#define CS_TESTS_HARNESS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

#include "sim/httpc.h"

typedef struct th_server {
    char     dir[256];      /* data dir (also holds config.yaml, serve.log) */
    char     target[160];   /* http://127.0.0.1:PORT */
    pid_t    pid;
    cs_httpc c;
} th_server;

/* Make a temp dir with config.yaml (extra_yaml appended when not NULL). */
void th_init(th_server *s, const char *extra_yaml);
/* Start serve on the data dir; waits until /healthz answers 200. Returns 0. */
int th_start(th_server *s);
/* th_start with extra serve arguments (NULL-terminated, may be NULL). */
int th_start_args(th_server *s, const char *const *extra);
/* SIGKILL (hard) or SIGTERM (clean) and reap. Returns the wait status. */
int th_stop(th_server *s, int sig);
/* Remove the temp dir. */
void th_cleanup(th_server *s);

/* Request; returns the status, body parsed into *json (may be NULL). */
int th_req(th_server *s, const char *method, const char *path, const char *body, cJSON **json);
/* Count leads via the paginated API; -1 on error. */
long th_count_leads(th_server *s);
/* Poll until th_count_leads() >= n or timeout_ms passes; returns the count. */
long th_wait_leads(th_server *s, long n, int timeout_ms);

/* Poll /readyz until the pipeline has applied everything in the log
 * (pipeline_lag 0); returns 0, or -1 after timeout_ms. */
int th_wait_caught_up(th_server *s, int timeout_ms);

#endif
