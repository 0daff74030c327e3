"""One group member in its own process: prints its assignment whenever it changes (one JSON line
per change), until killed or after the given seconds."""
import json
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "session.timeout.ms": 3000, "heartbeat.interval.ms": 300})


def on_assign(consumer, partitions):
    print(json.dumps({"assigned": sorted(p.partition for p in partitions), "t": time.time()}), flush=True)


c.subscribe([topic], on_assign=on_assign)
end = time.time() + seconds
while time.time() < end:
    c.poll(0.2)
c.close()
