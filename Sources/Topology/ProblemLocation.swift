import Foundation

extension Topology {
    /// The JSON path of the value a ``validate()`` problem is about (`regions[0].brokers[1].listeners[0]`,
    /// `flows[2].tls`), found from the names the problem quotes; "" for the whole file.
    public func path(ofProblem p: String) -> String {
        if p.hasPrefix("version ") { return "version" }
        if p.hasPrefix("no regions") { return "regions" }
        if p.hasPrefix("flows[") {
            let index = p.dropFirst("flows[".count).prefix { $0.isNumber }
            let base = "flows[\(index)]"
            for (needle, field) in [("source region", "source"), ("target region", "target"), ("slo.", "slo"), ("topics pattern", "topics"),
                                    ("topics.include", "topics"), ("groups pattern", "groups"), ("tls is true", "tls"),
                                    ("clientCert", "clientCert"), ("groupSyncIntervalMs", "groupSyncIntervalMs"),
                                    ("flow name", "name"), ("same name", "name")] where p.contains(needle) {
                return "\(base).\(field)"
            }
            return base
        }
        if p.hasPrefix("flows '") {
            let first = p.dropFirst("flows '".count).prefix { $0 != "'" }
            return flows.firstIndex { $0.name == first }.map { "flows[\($0)]" } ?? "flows"
        }
        if p.hasPrefix("region ") {
            let name = p.dropFirst("region ".count).drop { $0 == "'" }.prefix { $0 != "'" }
            guard let ri = regions.firstIndex(where: { $0.name == name }) else { return "regions" }
            let region = "regions[\(ri)]"
            let rest = p.dropFirst("region '\(name)'".count)
            if rest.hasPrefix(" broker ") {
                let id = Int32(rest.dropFirst(" broker ".count).prefix { $0.isNumber || $0 == "-" }) ?? -1
                guard let bi = regions[ri].brokers.firstIndex(where: { $0.id == id }) else { return "\(region).brokers" }
                let broker = "\(region).brokers[\(bi)]"
                for (li, l) in regions[ri].brokers[bi].listeners.enumerated() where p.contains("'\(l)'") { return "\(broker).listeners[\(li)]" }
                if p.contains("listener ") {
                    for (li, l) in regions[ri].brokers[bi].listeners.enumerated() where l.hasSuffix(p.components(separatedBy: "listener ").last?
                        .components(separatedBy: " clashes").first ?? "\u{0}") { return "\(broker).listeners[\(li)]" }
                    return "\(broker).listeners"
                }
                if p.contains("dataDir") { return "\(broker).dataDir" }
                if p.contains("tls.") { return "\(broker).tls" }
                if p.contains("broker id") { return "\(broker).id" }
                return broker
            }
            if p.contains("bootstrap") { return "\(region).bootstrap" }
            if p.contains("defined twice") || p.contains("region name") { return "\(region).name" }
            return region
        }
        return ""
    }
}
