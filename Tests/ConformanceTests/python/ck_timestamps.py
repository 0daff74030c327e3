"""confluent-kafka reads what the broker stored for batches produced with a wrong header max timestamp:
record timestamps, offsets_for_times, and ListOffsets MAX_TIMESTAMP. Prints JSON."""
import json
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
lookups = [int(t) for t in sys.argv[4:]]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ck-ts", "enable.auto.commit": False})
# One lookup per request: a partition named twice in one ListOffsets is refused (as Kafka does).
found = [c.offsets_for_times([TopicPartition(topic, 0, t)], timeout=10)[0] for t in lookups]
c.assign([TopicPartition(topic, 0, 0)])
records = []
while len(records) < count:
    m = c.poll(10)
    if m is None:
        break
    if m.error():
        raise SystemExit(str(m.error()))
    records.append([m.offset(), m.timestamp()[1]])
c.close()
admin = AdminClient({"bootstrap.servers": bootstrap})
tp = TopicPartition(topic, 0)
maxts = admin.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(timeout=10)
print(json.dumps({
    "records": records,
    "offsets_for_times": [f.offset for f in found],
    "lookup_errors": [str(f.error) for f in found if f.error],
    "max_timestamp": [maxts.offset, maxts.timestamp],
}))
