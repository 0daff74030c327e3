"""kafka-python: two KafkaConsumers in one group split a 4-partition topic; a second group reads
everything again. Prints JSON."""
import json
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

bootstrap, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
KafkaAdminClient(bootstrap_servers=bootstrap).create_topics([NewTopic(topic, 4, 1)])
p = KafkaProducer(bootstrap_servers=bootstrap)
for i in range(total):
    p.send(topic, key=f"k{i % 50}".encode(), value=f"v{i}".encode())
p.flush()
p.close()

lock = threading.Lock()
seen = {}
parts = {}


def run(name, group, stop_after):
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=True, auto_commit_interval_ms=200, consumer_timeout_ms=stop_after)
    for m in c:
        with lock:
            seen.setdefault(group, {}).setdefault(m.value.decode(), []).append(name)
            parts.setdefault(name, set()).add(m.partition)
    c.close()


ts = [threading.Thread(target=run, args=(f"q{i}", "kp-queue", 8000)) for i in range(2)]
for t in ts:
    t.start()
for t in ts:
    t.join()
run("b0", "kp-broadcast", 5000)
queue = seen.get("kp-queue", {})
print(json.dumps({"queue_distinct": len(queue), "queue_dups": sum(1 for v in queue.values() if len(v) > 1),
                  "partitions": {k: sorted(v) for k, v in parts.items()},
                  "broadcast_distinct": len(seen.get("kp-broadcast", {}))}))
