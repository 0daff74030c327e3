"""librdkafka's built-in mock cluster (a second Kafka implementation) for the tests.

Usage: mock_cluster.py BROKERS [TOPIC COUNT]
Starts a mock cluster of BROKERS brokers, optionally writes COUNT keyed records into TOPIC (which the
mock creates with its default 4 partitions), prints one JSON line {"bootstrap": "host:port,..."} and
keeps the cluster up until the process is killed (the test kills it; it also dies with the test).
"""
import json
import sys
import time

from confluent_kafka import Producer

brokers = int(sys.argv[1])
p = Producer({"test.mock.num.brokers": brokers, "linger.ms": 5})
md = p.list_topics(timeout=10)
bootstrap = ",".join(f"{b.host}:{b.port}" for b in sorted(md.brokers.values(), key=lambda b: b.id))
if len(sys.argv) > 3:
    topic, count = sys.argv[2], int(sys.argv[3])
    for i in range(count):
        while True:
            try:
                p.produce(topic, key=b"k%d" % (i % 101), value=b"v%d" % i)
                break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(60) != 0:
        raise SystemExit("records not delivered to the mock cluster")
print(json.dumps({"bootstrap": bootstrap}), flush=True)
while True:
    time.sleep(3600)
