"""kafka-python: admin create_topics, a KafkaProducer with its default idempotence, and a
KafkaConsumer reading from the beginning. Prints JSON."""
import json
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

bootstrap, topic = sys.argv[1], sys.argv[2]
admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="kp-admin")
admin.create_topics([NewTopic(topic, 3, 1)])
topics = admin.list_topics()
admin.close()

producer = KafkaProducer(bootstrap_servers=bootstrap)
futures = [producer.send(topic, key=f"key-{i % 7}".encode(), value=f"value-{i}".encode()) for i in range(3000)]
producer.flush()
metas = [f.get(timeout=10) for f in futures]
idempotent = bool(producer.config.get("enable_idempotence"))
producer.close()

consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
values = [m.value.decode() for m in consumer]
consumer.close()
print(json.dumps({
    "topics": topics, "idempotent": idempotent, "acked": len(metas),
    "partitions_used": sorted({m.partition for m in metas}), "consumed": sorted(values),
}))
