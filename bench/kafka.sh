#!/usr/bin/env bash
# bench/kafka.sh — crmstream on Apache Kafka: events/s through
# ingest -> Kafka -> pipeline -> PostgreSQL (bench/kafka.c: one
# `serve --role ingest` and one `serve --role pipeline,dispatch` process,
# a throwaway PostgreSQL 15, log.partitions 8), and, on the same broker in
# the same run, Kafka's own org.apache.kafka.tools.ProducerPerformance
# (kafka-producer-perf-test from the Maven jars: acks=all, idempotent,
# linger.ms=1, 250-byte records, 8 partitions) for reference. The pipeline
# run is done with one, then two pipeline processes sharing the partitions
# as the consumer group "pipeline".
#
#   BUILD=build bench/kafka.sh          (or: make bench-kafka)
#   BENCH_QUICK=1   20 k events (whole script under a minute), else 200 k
#   BENCH_EVENTS=N  override the count
#
# The broker: one KRaft node from tests/kafka (tests/kafka/broker.sh, `make
# deps` fetches the jars), on free 127.0.0.1 ports, in a temp dir, stopped
# at the end. The LAST line is one JSON object with events_per_s_1,
# events_per_s_2, kafka_producer_perf_events_per_s.
set -euo pipefail
BUILD=${BUILD:-build}
BIN="$BUILD/bench/kafka"
die() { echo "kafka.sh: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN not built (run: make $BIN)"
[ -x "$BUILD/crmstream" ] || die "$BUILD/crmstream not built"
command -v java >/dev/null || die "java not found (make deps)"
[ -s tests/kafka/classpath.txt ] || die "tests/kafka/classpath.txt missing (make deps fetches the Kafka jars)"
command -v jq >/dev/null || die "jq not installed (make deps)"
N=${BENCH_EVENTS:-$([ -n "${BENCH_QUICK:-}" ] && echo 20000 || echo 200000)}
export CRMSTREAM_BIN="$BUILD/crmstream"

dir=$(mktemp -d /tmp/crmstream-kafka-bench-XXXXXX)
cleanup() { tests/kafka/broker.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
t0=$(date +%s.%N)
bs=$(tests/kafka/broker.sh start "$dir" $$) || die "broker did not start (see $dir/broker.log)"
echo "kafka.sh: broker at $bs (Apache Kafka 4.4.0, KRaft), started in $(echo "$(date +%s.%N) - $t0" | bc) s" >&2

crm=$("$BIN" "$bs" "$N" | tail -n 1)
echo "$crm" | jq -e .events_per_s_1 >/dev/null || die "bench/kafka failed: $crm"

# Kafka's own producer, same broker, same partition count (perf-events was
# created with 8 partitions by bench/kafka), same durability settings.
perf=$(java -Xmx512m -XX:+UseSerialGC -Dlog4j2.configurationFile=tests/kafka/log4j2.properties \
  -cp "$(cat tests/kafka/classpath.txt)" org.apache.kafka.tools.ProducerPerformance \
  --topic perf-events --num-records "$N" --record-size 250 --throughput -1 \
  --producer-props bootstrap.servers="$bs" acks=all enable.idempotence=true linger.ms=1 2>"$dir/perf.err" | tail -n 1) ||
  die "ProducerPerformance failed: $(tail -n 3 "$dir/perf.err")"
# "N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, ..."
kperf=$(echo "$perf" | sed -E 's/^[0-9]+ records sent, ([0-9.]+) records\/sec.*/\1/')
[[ "$kperf" =~ ^[0-9.]+$ ]] || die "cannot parse ProducerPerformance: $perf"
echo "kafka.sh: ProducerPerformance: $perf" >&2

e1=$(echo "$crm" | jq .events_per_s_1)
e2=$(echo "$crm" | jq .events_per_s_2)
ing=$(echo "$crm" | jq .ingest_events_per_s)
printf '%-58s %12s\n' "figure" "events/s"
printf '%-58s %12.0f\n' "crmstream ingest -> Kafka (HTTP 200 = Kafka ack)" "$ing"
printf '%-58s %12.0f\n' "crmstream ingest -> Kafka -> pipeline -> PostgreSQL, 1 proc" "$e1"
printf '%-58s %12.0f\n' "same with 2 pipeline processes (one consumer group)" "$e2"
printf '%-58s %12.0f\n' "Kafka ProducerPerformance (Java, acks=all, idempotent)" "$kperf"
echo "$crm" | jq -c --argjson k "$kperf" '. + {
  kafka_producer_perf_events_per_s: $k,
  ingest_vs_kafka_producer: ((.ingest_events_per_s / $k * 1000 | round) / 1000),
  end_to_end_vs_kafka_producer: ((.events_per_s_1 / $k * 1000 | round) / 1000)}'
