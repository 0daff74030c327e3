"""Two groups read the same topic: each sees every record (broadcast). Prints JSON."""
import json
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
result = {}
for group in ("broadcast-a", "broadcast-b"):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    values = set()
    deadline = time.time() + 60
    while len(values) < total and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error() is None:
                values.add(m.value().decode())
    c.close()
    result[group] = len(values)
print(json.dumps(result))
