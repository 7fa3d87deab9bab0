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
    return strcmp(topic, CS_TOPIC_LEADS) == 0 ? 1 : bus->partitions;
}
