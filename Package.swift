// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "meridian",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "meridian", targets: ["meridian"]),
        .executable(name: "protocol-codegen", targets: ["protocol-codegen"]),
        .library(name: "KafkaClient", targets: ["KafkaClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // CRC-32C with SSE4.2 / ARMv8 CRC instructions and a portable fallback.
        .target(name: "CCRC32C"),
        // fork/exec of child processes with the descriptors, signals and parent-death signal set up.
        .target(name: "CSpawn"),
        // Child processes that start reliably and die with their parent (`ChildProcess`).
        .target(name: "Spawn", dependencies: ["CSpawn"]),
        // Sans-I/O Kafka protocol: primitives, headers, generated messages, record batches.
        .target(
            name: "KafkaProtocol",
            dependencies: [
                "CCRC32C",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ]
        ),
        // NIO glue: framing, server request decoding, client connections, TLS configuration.
        .target(
            name: "KafkaWire",
            dependencies: [
                "KafkaProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]
        ),
        // The file operations storage uses, behind a protocol (tests swap in a crash-simulating one).
        .target(
            name: "FileLayer",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        // Partition logs on disk.
        .target(
            name: "LogStorage",
            dependencies: [
                "KafkaProtocol", "FileLayer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Durable cluster metadata (topics, ids); embedded files for a single node.
        .target(name: "ClusterMetadata", dependencies: ["FileLayer"]),
        // topology.json model and validation.
        .target(name: "Topology"),
        // The broker: listeners, request handlers, partition state.
        .target(
            name: "Broker",
            dependencies: [
                "KafkaProtocol", "KafkaWire", "LogStorage", "Topology", "ClusterMetadata", "FileLayer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "OrderedCollections", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // What `meridian up` starts and how it restarts crashed children, without processes.
        .target(
            name: "Launcher",
            dependencies: ["Mirror", "Topology"]
        ),
        // The HTTP endpoints of the broker and the mirror (/metrics, /lag, /history).
        .target(
            name: "MetricsHTTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // Kafka client used by the CLI, the benchmarks and (later) the mirror.
        .target(
            name: "KafkaClient",
            dependencies: [
                "KafkaProtocol", "KafkaWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A TCP proxy that adds latency and cuts connections: the WAN stand-in of tests and benchmarks.
        .target(
            name: "LinkSimulator",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // `meridian bench`: load generators, the loopback yardstick, process figures.
        .target(
            name: "MeridianBench",
            dependencies: [
                "KafkaClient", "KafkaProtocol", "KafkaWire", "LinkSimulator", "Spawn",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        // The mirror: flows, selection and naming, batch passthrough, offset mapping, group sync.
        .target(
            name: "Mirror",
            dependencies: [
                "KafkaClient", "KafkaProtocol", "KafkaWire", "Topology",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // Generator of Sources/KafkaProtocol/Generated from the Kafka JSON schemas.
        .target(name: "ProtocolCodegen"),
        .executableTarget(name: "protocol-codegen", dependencies: ["ProtocolCodegen"]),
        .executableTarget(
            name: "meridian",
            dependencies: [
                "Broker", "KafkaClient", "Launcher", "LinkSimulator", "MeridianBench", "MetricsHTTP", "Mirror", "Topology", "KafkaProtocol", "KafkaWire", "LogStorage", "Spawn",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Helpers shared by the test targets: in-process brokers, broker processes, external tools (and the TCP proxy, re-exported).
        .target(
            name: "TestSupport",
            dependencies: [
                "FileLayer", "Broker", "KafkaProtocol", "KafkaWire", "LinkSimulator", "Spawn",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/TestSupport"
        ),
        .testTarget(name: "KafkaProtocolTests", dependencies: ["KafkaProtocol", "ProtocolCodegen", .product(name: "NIOCore", package: "swift-nio")]),
        // The client's state machines without sockets.
        .testTarget(
            name: "KafkaClientTests",
            dependencies: ["KafkaClient", "KafkaProtocol", "KafkaWire", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(
            name: "LogStorageTests",
            dependencies: ["LogStorage", "KafkaProtocol", "FileLayer", "TestSupport",
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "BrokerTests",
            dependencies: [
                "Broker", "KafkaWire", "KafkaProtocol", "KafkaClient", "TestSupport", "LogStorage", "FileLayer",
                "ClusterMetadata",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The mirror: pure parts without sockets, flows between in-process brokers.
        .testTarget(
            name: "MirrorTests",
            dependencies: [
                "Mirror", "MetricsHTTP", "Launcher", "KafkaClient", "KafkaProtocol", "KafkaWire", "Topology", "TestSupport", "Broker", "LinkSimulator",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Framing and golden requests captured from real clients.
        // Child processes: start, signals, descriptors, exit status.
        .testTarget(name: "SpawnTests", dependencies: ["Spawn"]),
        .testTarget(
            name: "KafkaWireTests",
            dependencies: [
                "KafkaWire", "KafkaProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            exclude: ["Golden"]
        ),
        .testTarget(
            name: "ConformanceTests",
            dependencies: ["KafkaProtocol", "KafkaWire", "TestSupport", "meridian",
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOCore", package: "swift-nio")],
            exclude: ["python"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
