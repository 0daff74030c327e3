"""confluent-kafka AdminClient group operations. Prints JSON."""
import json
import sys
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
admin = AdminClient({"bootstrap.servers": bootstrap})

c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([topic])
n = 0
deadline = time.time() + 30
while n < 100 and time.time() < deadline:
    for m in c.consume(num_messages=100, timeout=0.5):
        if m.error() is None:
            n += 1
c.commit(asynchronous=False)

listed = admin.list_consumer_groups().result(timeout=10)
listed_ids = sorted(g.group_id for g in listed.valid)
described = admin.describe_consumer_groups([group])[group].result(timeout=10)
desc = {"state": str(described.state), "members": len(described.members),
        "assigned": sorted(tp.partition for m in described.members for tp in m.assignment.topic_partitions)}
delete_active = admin.delete_consumer_groups([group])[group]
try:
    delete_active.result(timeout=10)
    delete_active_error = None
except Exception as e:  # noqa: BLE001
    delete_active_error = e.args[0].name() if hasattr(e.args[0], "name") else str(e)
c.close()

offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
before = {str(tp.partition): tp.offset for tp in offsets.topic_partitions}
admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 7)])])[group].result(timeout=10)
after = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=10)
after_map = {str(tp.partition): tp.offset for tp in after.topic_partitions}
admin.delete_consumer_groups([group])[group].result(timeout=10)
listed_after = sorted(g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid)
print(json.dumps({"consumed": n, "listed": listed_ids, "describe": desc, "delete_active_error": delete_active_error,
                  "offsets_before": before, "offsets_after": after_map, "listed_after_delete": listed_after}))
