/*
 * tests/kafkaserver — a throwaway Apache Kafka broker for tests and
 * benchmarks: one KRaft node (broker + controller) from the Maven jars
 * (`make deps`), on free 127.0.0.1 ports, storage in a temp dir, stopped and
 * removed at the end (tests/kafka/broker.sh does the work; the broker also
 * dies with the owning process). Included by tests (#include "kafkaserver.c").
 */
#ifndef CS_TESTS_KAFKASERVER_H
#define CS_TESTS_KAFKASERVER_H

#include <stddef.h>

typedef struct tkafka {
    char dir[256];        /* temp dir: server.properties, data/, broker.log */
    char bootstrap[128];  /* 127.0.0.1:PORT */
} tkafka;

/* Start the broker (run from the repository root). 0, or -1 with the
 * reason in why (no Java, jars not fetched, broker failed): callers SKIP. */
int tkafka_start(tkafka *k, char *why, size_t whylen);
/* Stop it and remove the temp dir (safe to call twice or after a failed
 * start). */
void tkafka_stop(tkafka *k);

#endif
