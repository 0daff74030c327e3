"""Three confluent-kafka consumers in one group share a 6-partition topic like a queue while
30,000 keyed records are produced; one consumer leaves midway. Commits are synchronous after
every processed batch, so every record must be processed exactly once. Prints JSON."""
import json
import sys
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
TOTAL = 30_000
admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(timeout=10)

lock = threading.Lock()
seen = {}            # value -> list of consumer names
assignments = {}     # consumer -> list of partition sets over time
stop = threading.Event()
leave = threading.Event()
assigned_everyone = threading.Event()


def consume(name, leaves):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})

    def on_assign(consumer, partitions):
        with lock:
            assignments.setdefault(name, []).append(sorted(p.partition for p in partitions))
            if len(assignments) == 3 and all(a[-1] for a in assignments.values()):
                assigned_everyone.set()

    def on_revoke(consumer, partitions):
        with lock:
            assignments.setdefault(name, []).append([])

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stop.is_set():
        if leaves and leave.is_set():
            break
        msgs = c.consume(num_messages=500, timeout=0.2)
        ok = [m for m in msgs if m.error() is None]
        if ok:
            with lock:
                for m in ok:
                    seen.setdefault(m.value().decode(), []).append(name)
            c.commit(asynchronous=False)
    c.close()


threads = [threading.Thread(target=consume, args=(f"c{i}", i == 0)) for i in range(3)]
for t in threads:
    t.start()
assigned_everyone.wait(60)
initial = {k: v[-1] for k, v in assignments.items()}

producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
for i in range(TOTAL):
    while True:
        try:
            producer.produce(topic, key=f"key-{i % 300}", value=f"value-{i}")
            break
        except BufferError:
            producer.poll(0.05)
    if i % 1000 == 0:
        producer.poll(0)
    if i == TOTAL // 3:
        producer.flush(30)
        time.sleep(0.5)
        leave.set()          # c0 closes while records keep coming
    if i % 5000 == 0:
        time.sleep(0.2)
producer.flush(30)

deadline = time.time() + 90
while time.time() < deadline:
    with lock:
        if len(seen) >= TOTAL:
            break
    time.sleep(0.2)
time.sleep(1)
with lock:
    final = {k: v[-1] for k, v in assignments.items()}
stop.set()
for t in threads:
    t.join(30)

with lock:
    dups = sum(1 for v in seen.values() if len(v) > 1)
    by_consumer = {}
    for v in seen.values():
        for n in v:
            by_consumer[n] = by_consumer.get(n, 0) + 1
    print(json.dumps({"distinct": len(seen), "duplicates": dups, "initial": initial,
                      "final": final, "by_consumer": by_consumer,
                      "missing": [f"value-{i}" for i in range(TOTAL) if f"value-{i}" not in seen][:10]}))
