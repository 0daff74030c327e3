"""Produces with acks=all (idempotent) and prints 'partition offset value' for every acknowledged
record as soon as its delivery report arrives, flushing stdout, until killed or done."""
import sys

from confluent_kafka import Producer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 1,
              "message.timeout.ms": 5000, "retries": 0 if False else 2147483647})


def on_delivery(err, msg):
    if err is None:
        sys.stdout.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
        sys.stdout.flush()


for i in range(count):
    while True:
        try:
            p.produce(topic, value=f"acked-{i}", on_delivery=on_delivery)
            break
        except BufferError:
            p.poll(0.05)
    p.poll(0)
p.flush(30)
