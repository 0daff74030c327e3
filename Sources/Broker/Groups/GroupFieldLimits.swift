import KafkaProtocol

/// Lengths the coordinator can store: `__consumer_offsets` records keep strings with int16 lengths,
/// while flexible request versions carry strings of any length (and lossy UTF-8 repair can make a
/// decoded string longer than its bytes on the wire). Group requests are checked against these
/// limits before they reach the coordinator, so nothing a client sends can make a record unwritable.
enum GroupFieldLimits {
    static let maxStringBytes = Int(Int16.max)
    /// Member ids the coordinator makes are `<client id>-<UUID>` (37 bytes more).
    static let maxClientIDBytes = maxStringBytes - 37

    /// The first field that is too long, with the error code a client should see; nil when all fit.
    static func violation(group: GroupID, memberID: String? = nil, instanceID: String? = nil,
                          protocolType: String? = nil, protocolNames: [String] = [], clientID: String? = nil)
        -> (code: ErrorCode, message: String)?
    {
        func tooLong(_ s: String?, _ limit: Int = maxStringBytes) -> Bool { (s?.utf8.count ?? 0) > limit }
        if tooLong(group.rawValue) { return (.invalidGroupID, "group id longer than \(maxStringBytes) bytes") }
        if tooLong(memberID) { return (.unknownMemberID, "member id longer than \(maxStringBytes) bytes") }
        if tooLong(instanceID) { return (.invalidRequest, "group instance id longer than \(maxStringBytes) bytes") }
        if tooLong(protocolType) || protocolNames.contains(where: { tooLong($0) }) {
            return (.invalidRequest, "protocol type or name longer than \(maxStringBytes) bytes")
        }
        if tooLong(clientID, maxClientIDBytes) { return (.invalidRequest, "client id longer than \(maxClientIDBytes) bytes") }
        return nil
    }
}
