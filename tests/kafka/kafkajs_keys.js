// kafkajs 2.2.4 (default partitioner: Java-compatible murmur2) produces one
// record per line of stdin (key = the line, value = "kafkajs:" + line) and
// prints "partition<TAB>offset<TAB>key" per record, in input order.
//   node tests/kafka/kafkajs_keys.js BOOTSTRAP TOPIC < keys
const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic] = process.argv.slice(2);
  const keys = require('fs').readFileSync(0, 'utf8').split('\n').filter((l) => l.length > 0);
  const kafka = new Kafka({ clientId: 'crmstream-test-kafkajs', brokers: bootstrap.split(','), logLevel: logLevel.ERROR });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const out = [];
  for (const key of keys) {
    const [md] = await producer.send({ topic, acks: -1, messages: [{ key, value: 'kafkajs:' + key }] });
    out.push(`${md.partition}\t${md.baseOffset}\t${key}`);
  }
  await producer.disconnect();
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((e) => { console.error(e); process.exit(1); });
