#!/usr/bin/env bash
# A throwaway Apache Kafka broker for the tests: one KRaft node that is both
# broker and controller, on free 127.0.0.1 ports, storage in DIR.
#
#   tests/kafka/broker.sh start DIR [OWNER_PID]
#                                     prints 127.0.0.1:PORT (the bootstrap
#                                     address) once the broker accepts
#                                     connections; exit 1 with the reason on
#                                     stderr if it cannot (no Java, jars not
#                                     fetched: run `make deps`); with
#                                     OWNER_PID the broker is also stopped
#                                     when that process dies (a crashed test
#                                     leaves no JVM behind)
#   tests/kafka/broker.sh stop DIR    stops it (TERM, then KILL after 10 s)
#
# Jars: Maven resolves tests/kafka/pom.xml into tests/kafka/m2 and writes the
# classpath to tests/kafka/classpath.txt (`make deps` does it).
set -u
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "$cmd" in
start)
  command -v java >/dev/null || { echo "java not found (Debian: openjdk-17-jre-headless)" >&2; exit 1; }
  [ -s "$here/classpath.txt" ] || { echo "$here/classpath.txt missing: run make deps (Maven fetches the Kafka jars)" >&2; exit 1; }
  cp=$(cat "$here/classpath.txt")
  mkdir -p "$dir/data"
  bport=$(free_port); cport=$(free_port)
  while [ "$cport" = "$bport" ]; do cport=$(free_port); done
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  jvm=(java -Xms256m -Xmx768m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
       "-Dlog4j2.configurationFile=$here/log4j2.properties" -cp "$cp")
  id=$("${jvm[@]}" kafka.tools.StorageTool random-uuid 2>>"$dir/broker.log" | tail -n 1)
  if ! "${jvm[@]}" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >>"$dir/broker.log" 2>&1; then
    echo "kafka StorageTool format failed: $(tail -n 3 "$dir/broker.log" | tr '\n' ' ')" >&2; exit 1
  fi
  setsid "${jvm[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/broker.log" 2>&1 < /dev/null &
  bpid=$!
  echo $bpid > "$dir/pid"
  if [ -n "${3:-}" ]; then
    owner=$3
    ( while kill -0 "$owner" 2>/dev/null && kill -0 "$bpid" 2>/dev/null; do sleep 1; done
      kill -KILL "$bpid" 2>/dev/null ) >/dev/null 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 600); do   # up to 60 s
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "kafka broker exited: $(grep -E 'ERROR|Exception' "$dir/broker.log" | head -n 3 | tr '\n' ' ')" >&2; exit 1
    fi
    if grep -q 'Kafka Server started\|\[KafkaRaftServer nodeId=1\] Kafka Server started' "$dir/broker.log" 2>/dev/null &&
       (exec 3<>"/dev/tcp/127.0.0.1/$bport") 2>/dev/null; then
      echo "127.0.0.1:$bport" > "$dir/bootstrap"
      echo "127.0.0.1:$bport"; exit 0
    fi
    sleep 0.1
  done
  echo "kafka broker did not start within 60 s (log: $dir/broker.log)" >&2
  "$0" stop "$dir"; exit 1
  ;;
stop)
  [ -f "$dir/pid" ] || exit 0
  pid=$(cat "$dir/pid")
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; exit 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; rm -f "$dir/pid"
  ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
