/*
 * core/hash — the hashes whose values are part of a contract.
 *
 * cs_murmur2 is Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2),
 * so the embedded log and an Apache Kafka topic written by Java, kafkajs or
 * librdkafka's murmur2_random partitioner agree on every key's partition.
 * cs_crc32c is CRC-32C (Castagnoli), the checksum of Kafka record batches and
 * of our log batches; it uses the SSE4.2 instruction where the CPU has it.
 */
#ifndef CS_CORE_HASH_H
#define CS_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

int32_t cs_murmur2(const void *data, size_t len);
/* Kafka's partition for a key: (murmur2(key) & 0x7fffffff) % partitions. */
int cs_partition_for(const void *key, size_t len, int partitions);

/* Extend crc (start with 0) over len bytes. */
uint32_t cs_crc32c(uint32_t crc, const void *data, size_t len);
/* The portable table implementation, exported so tests can compare both. */
uint32_t cs_crc32c_sw(uint32_t crc, const void *data, size_t len);
/* 1 when the hardware instruction is in use. */
int cs_crc32c_hw(void);

#endif
