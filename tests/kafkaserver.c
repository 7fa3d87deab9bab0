/*
 * tests/kafkaserver — see kafkaserver.h.
 */
#include "kafkaserver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int tkafka_start(tkafka *k, char *why, size_t whylen)
{
    k->bootstrap[0] = 0;
    snprintf(k->dir, sizeof k->dir, "/tmp/crmstream-kafka-XXXXXX");
    if (!mkdtemp(k->dir)) {
        k->dir[0] = 0;
        snprintf(why, whylen, "mkdtemp failed");
        return -1;
    }
    if (access("tests/kafka/broker.sh", X_OK) != 0) {
        snprintf(why, whylen, "tests/kafka/broker.sh not found (run from the repository root)");
        return -1;
    }
    char cmd[800];
    snprintf(cmd, sizeof cmd, "tests/kafka/broker.sh start '%s' %d 2>'%s/start.err'", k->dir, (int)getpid(), k->dir);
    FILE *f = popen(cmd, "r");
    if (!f || !fgets(k->bootstrap, sizeof k->bootstrap, f)) k->bootstrap[0] = 0;
    int st = f ? pclose(f) : -1;
    k->bootstrap[strcspn(k->bootstrap, "\n")] = 0;
    if (st != 0 || !*k->bootstrap) {
        char path[400];
        snprintf(path, sizeof path, "%s/start.err", k->dir);
        FILE *e = fopen(path, "r");
        if (!e || !fgets(why, (int)whylen, e)) snprintf(why, whylen, "broker.sh start failed");
        if (e) fclose(e);
        why[strcspn(why, "\n")] = 0;
        return -1;
    }
    return 0;
}

void tkafka_stop(tkafka *k)
{
    if (!*k->dir) return;
    char cmd[800];
    snprintf(cmd, sizeof cmd, "tests/kafka/broker.sh stop '%s'; rm -rf '%s'", k->dir, k->dir);
    if (system(cmd) != 0) fprintf(stderr, "# cannot stop the broker in %s\n", k->dir);
    k->dir[0] = 0;
}
