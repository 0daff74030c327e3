"""Phase 'first': consume some records of a group, commit synchronously, print the committed
offsets. Phase 'second': consume the rest and print the first offset seen per partition and the
total. Prints JSON."""
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition

bootstrap, topic, group, phase, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.subscribe([topic])
got = []
deadline = time.time() + 60
while len(got) < count and time.time() < deadline:
    for m in c.consume(num_messages=min(500, count - len(got)), timeout=0.5):
        if m.error() is None:
            got.append((m.partition(), m.offset(), m.value().decode()))
if phase == "first":
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    print(json.dumps({"consumed": len(got), "values": [v for _, _, v in got],
                      "committed": {str(tp.partition): tp.offset for tp in committed if tp.offset >= 0}}))
else:
    first = {}
    for p, o, _ in got:
        first.setdefault(str(p), o)
    print(json.dumps({"consumed": len(got), "first": first, "values": [v for _, _, v in got]}))
c.close()
