"""A confluent-kafka member of a group (range assignor, like Meridian's default); prints every
record value it consumes, one per line, and its assignments as '# [..]' lines, for `seconds`."""
import sys
import time

from confluent_kafka import Consumer

bootstrap, topic, group, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "partition.assignment.strategy": "range", "enable.auto.commit": False})


def on_assign(consumer, partitions):
    print("# " + ",".join(str(p.partition) for p in partitions), flush=True)


c.subscribe([topic], on_assign=on_assign)
end = time.time() + seconds
while time.time() < end:
    msgs = c.consume(num_messages=500, timeout=0.3)
    ok = [m for m in msgs if m.error() is None]
    for m in ok:
        print(m.value().decode(), flush=False)
    if ok:
        sys.stdout.flush()
        c.commit(asynchronous=False)
c.close()
