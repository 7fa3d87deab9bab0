/*
 * bus/bus — what every bus backend shares: partitioning and topic shapes.
 */
#include <string.h>

#include "bus/bus.h"
#include "core/hash.h"

int cs_bus_partition(const cs_bus *bus, const char *key, size_t len)
{
    return cs_partition_for(key, len, bus->partitions);
}

int cs_bus_topic_partitions(const cs_bus *bus, const char *topic)
{
    if (!topic) return 0;
    if (strcmp(topic, CS_TOPIC_LEADS) == 0) return 1;
    if (strcmp(topic, CS_TOPIC_EVENTS) == 0 || strcmp(topic, CS_TOPIC_DLQ) == 0) return bus->partitions;
    return 0;
}
