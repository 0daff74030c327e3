"""confluent-kafka: idempotent acks=all producer, then a consumer that assigns and seeks by offset
and by timestamp. Prints one JSON object with what it observed; exits non-zero on any client error."""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=10)

errors = []
delivered = []


def on_delivery(err, msg):
    if err is not None:
        errors.append(str(err))
    else:
        delivered.append((msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode()))


producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
base_ts = int(time.time() * 1000) - 100_000
for i in range(2000):
    producer.produce(topic, key=f"k{i % 10}", value=f"v{i}", partition=i % 2, timestamp=base_ts + i, on_delivery=on_delivery)
    if i % 500 == 0:
        producer.poll(0)
left = producer.flush(30)

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest"})


def read(tp, count):
    consumer.assign([tp])
    out = []
    deadline = time.time() + 20
    while len(out) < count and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        out.append((m.offset(), m.value().decode(), m.timestamp()[1]))
    return out


by_offset = read(TopicPartition(topic, 0, 250), 5)
# Partition 1 holds odd i; record i has timestamp base_ts + i, so target base_ts + 601 is record 601,
# the 301st record of partition 1 (offset 300).
times = consumer.offsets_for_times([TopicPartition(topic, 1, base_ts + 601)], timeout=10)
by_time = read(TopicPartition(topic, 1, times[0].offset), 3)
consumer.close()

print(json.dumps({
    "errors": errors, "unflushed": left, "delivered": len(delivered),
    "partition0_offsets": sorted(o for p, o, _, _ in delivered if p == 0)[:3],
    "by_offset": by_offset, "time_offset": times[0].offset, "by_time": by_time, "base_ts": base_ts,
}))
