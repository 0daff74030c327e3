"""confluent-kafka AdminClient: create_topics, list_topics, describe_configs. Prints JSON."""
import json
import sys

from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

bootstrap, topic = sys.argv[1], sys.argv[2]
admin = AdminClient({"bootstrap.servers": bootstrap})
created = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1,
                                        config={"retention.ms": "7200000", "cleanup.policy": "delete"})])
created[topic].result(timeout=10)
again = admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
try:
    again[topic].result(timeout=10)
    duplicate_error = None
except Exception as e:  # noqa: BLE001 - we report whatever the client raised
    duplicate_error = e.args[0].name() if hasattr(e.args[0], "name") else str(e)
md = admin.list_topics(timeout=10)
res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
configs = list(res.values())[0].result(timeout=10)
print(json.dumps({
    "topics": sorted(md.topics.keys()),
    "partitions": len(md.topics[topic].partitions),
    "retention_ms": configs["retention.ms"].value,
    "retention_is_default": configs["retention.ms"].is_default,
    "segment_bytes": configs["segment.bytes"].value,
    "segment_is_default": configs["segment.bytes"].is_default,
    "duplicate_error": duplicate_error,
}))
