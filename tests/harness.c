/*
 * tests/harness — see harness.h. Included by integration tests
 * (#include "harness.c") so each test binary stays one file to build.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

static const char *th_bin(void)
{
    const char *b = getenv("CRMSTREAM_BIN");
    return b ? b : "build/crmstream";
}

void th_init(th_server *s, const char *extra_yaml)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "/tmp/crmstream-test-XXXXXX");
    if (!mkdtemp(s->dir)) abort();
    char path[512];
    snprintf(path, sizeof path, "%s/config.yaml", s->dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "log:\n  partitions: 4\nrouting:\n  reps:\n"
               "    - {id: rep_a, name: A, email: a@example.com}\n"
               "    - {id: rep_b, name: B, email: b@example.com}\n"
               "    - {id: rep_c, name: C, email: c@example.com}\n%s",
            extra_yaml ? extra_yaml : "");
    fclose(f);
    s->pid = -1;
    s->c.fd = -1;
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int th_start(th_server *s)
{
    return th_start_args(s, NULL);
}

int th_start_args(th_server *s, const char *const *extra)
{
    char addrpath[512], cfg[512], log[512];
    snprintf(addrpath, sizeof addrpath, "%s/data/http.addr", s->dir);
    snprintf(cfg, sizeof cfg, "%s/config.yaml", s->dir);
    snprintf(log, sizeof log, "%s/serve.log", s->dir);
    unlink(addrpath);
    char data[512];
    snprintf(data, sizeof data, "%s/data", s->dir);
    s->pid = fork();
    if (s->pid == 0) {
        /* A failed assertion leaves the test without its th_stop: the
         * server dies with the test process rather than outliving it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1), dup2(fd, 2), close(fd);
        const char *argv[32] = {th_bin(), "serve", "--config", cfg, "--data", data, "--http", "127.0.0.1:0"};
        int argc = 8;
        for (int i = 0; extra && extra[i] && argc < 31; i++) argv[argc++] = extra[i];
        argv[argc] = NULL;
        execv(th_bin(), (char *const *)argv);
        _exit(127);
    }
    /* The address file appears once the server is ready (a condition, polled
     * with a deadline; a scaled timeout for sanitizer builds). */
    char addr[128] = "";
    for (int i = 0; i < 3000 && !*addr; i++) {
        FILE *f = fopen(addrpath, "r");
        if (f) {
            if (!fgets(addr, sizeof addr, f)) addr[0] = '\0';
            addr[strcspn(addr, "\n")] = '\0';
            fclose(f);
        }
        if (!*addr) {
            if (waitpid(s->pid, NULL, WNOHANG) == s->pid) return -1;
            msleep(10);
        }
    }
    if (!*addr) return -1;
    snprintf(s->target, sizeof s->target, "http://%s", addr);
    cs_httpc_close(&s->c);
    if (cs_httpc_init(&s->c, s->target)) return -1;
    cJSON *j = NULL;
    int st = th_req(s, "GET", "/healthz", NULL, &j);
    cJSON_Delete(j);
    return st == 200 ? 0 : -1;
}

int th_stop(th_server *s, int sig)
{
    int st = 0;
    if (s->pid > 0) {
        kill(s->pid, sig);
        waitpid(s->pid, &st, 0);
    }
    s->pid = -1;
    cs_httpc_close(&s->c);
    return st;
}

void th_cleanup(th_server *s)
{
    if (s->pid > 0) th_stop(s, SIGKILL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", s->dir);
}

int th_req(th_server *s, const char *method, const char *path, const char *body, cJSON **json)
{
    cs_buf resp;
    cs_buf_init(&resp);
    int status = -1;
    if (json) *json = NULL;
    if (cs_httpc_request(&s->c, method, path, NULL, body, body ? strlen(body) : 0, &status, &resp) != 0)
        status = -1;
    else if (json)
        *json = cJSON_Parse(resp.data);
    cs_buf_free(&resp);
    return status;
}

long th_count_leads(th_server *s)
{
    long n = 0;
    char path[128], cursor[64] = "";
    for (;;) {
        snprintf(path, sizeof path, "/api/v1/leads?limit=1000%s%s", *cursor ? "&cursor=" : "", cursor);
        cJSON *j;
        if (th_req(s, "GET", path, NULL, &j) != 200 || !j) {
            cJSON_Delete(j);
            return -1;
        }
        n += cJSON_GetArraySize(cJSON_GetObjectItem(j, "items"));
        cJSON *nc = cJSON_GetObjectItem(j, "next_cursor");
        int more = cJSON_IsString(nc);
        if (more) snprintf(cursor, sizeof cursor, "%s", nc->valuestring);
        cJSON_Delete(j);
        if (!more) return n;
    }
}

long th_wait_leads(th_server *s, long n, int timeout_ms)
{
    long have = -1;
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        have = th_count_leads(s);
        if (have >= n) return have;
        msleep(20);
    }
    return have;
}

int th_wait_caught_up(th_server *s, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        cJSON *j;
        int st = th_req(s, "GET", "/readyz", NULL, &j);
        cJSON *lag = j ? cJSON_GetObjectItem(j, "pipeline_lag") : NULL;
        int done = st == 200 && cJSON_IsNumber(lag) && lag->valuedouble == 0;
        cJSON_Delete(j);
        if (done) return 0;
        msleep(10);
    }
    return -1;
}
