// KafkaClient: the producer, consumer, admin and cluster cache that the CLI, the benchmarks and
// the mirror use. It speaks only standard Kafka requests, so it works against Apache Kafka too.
//
// Concurrency model (one for the whole module):
// - Decisions live in value-type state machines that take the time as an argument and return what
//   to do: `ProducerAccumulator` (batching, linger, in-flight limits, retries, sequence numbers,
//   epoch bumps) and `GroupMembership` (join, sync, heartbeats, rebalances, fencing, commit on
//   revoke). Tests drive them without sockets or clocks (`Tests/KafkaClientTests`).
// - Each public type (`KafkaCluster`, `KafkaProducer`, `KafkaConsumer`) is a final class that owns
//   its state machine and bookkeeping behind one `NIOLock`. The lock is never held across an
//   `await` or a network call: a method takes what it needs under the lock, performs the actions
//   outside it, and feeds answers back under the lock. No actors, so no hop per record.
// - Network I/O is NIO futures on the cluster's event loops, bridged to async/await at the public
//   API. Tasks are per activity (a metadata refresh, a connection attempt, one heartbeat loop per
//   consumer), never per record.
// - Connections are per broker and traffic class (`KafkaCluster.TrafficClass`), so a long-poll
//   Fetch or a JoinGroup held for a rebalance never delays a produce or an offset lookup.
// - Errors: `KafkaClientError` and `KafkaConnectionError`; `KafkaClientError.isRetriable(_:)`
//   decides retries by type and error code. Advice for people lives in the `meridian` executable.
