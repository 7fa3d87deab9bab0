// The reference for key -> partition: Apache Kafka's own Java producer
// (default partitioner: murmur2 of the key bytes, sign bit masked, modulo
// the partition count). Run in source-file mode by the Kafka bus tests:
//   java -cp $(cat tests/kafka/classpath.txt) tests/kafka/KeyPartitions.java BOOTSTRAP TOPIC < keys
// Produces one record per input line (key = the line, value = "java:" + line)
// with acks=all and prints "partition<TAB>offset<TAB>key" per record, in order.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringSerializer;

public class KeyPartitions {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        List<String> keys = new ArrayList<>();
        try (BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            for (String l; (l = r.readLine()) != null;) if (!l.isEmpty()) keys.add(l);
        }
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (String k : keys) fs.add(prod.send(new ProducerRecord<>(args[1], k, "java:" + k)));
            prod.flush();
            StringBuilder out = new StringBuilder();
            for (int i = 0; i < keys.size(); i++) {
                RecordMetadata m = fs.get(i).get();
                out.append(m.partition()).append('\t').append(m.offset()).append('\t').append(keys.get(i)).append('\n');
            }
            System.out.print(out);
        }
    }
}
