import Foundation
import NIOSSL

/// TLS material given as file paths, turned into `NIOSSL` configurations with errors that name the
/// missing or unreadable file.
public struct TLSSettings: Sendable, Equatable {
    /// PEM certificate chain presented by this side (server certificate, or client certificate for mTLS).
    public var certificatePath: String?
    /// PEM private key for `certificatePath`.
    public var keyPath: String?
    /// PEM bundle of CAs trusted to sign the peer's certificate. Nil means the system trust store.
    public var caPath: String?
    /// Server side: whether clients must, may or need not present a certificate.
    public var clientAuth: ClientAuth = .none
    /// Client side: check that the server certificate names the host we dialled.
    public var verifyHostname: Bool = true

    public enum ClientAuth: String, Sendable, CaseIterable {
        case required, requested, none
    }

    public init(certificatePath: String? = nil, keyPath: String? = nil, caPath: String? = nil,
                clientAuth: ClientAuth = .none, verifyHostname: Bool = true) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.caPath = caPath
        self.clientAuth = clientAuth
        self.verifyHostname = verifyHostname
    }

    public enum TLSSetupError: Error, CustomStringConvertible {
        case missingFile(role: String, path: String)
        case unreadable(role: String, path: String, reason: String)
        case incomplete(String)

        public var description: String {
            switch self {
            case .missingFile(let role, let path):
                return "TLS \(role) file '\(path)' does not exist; create certificates with deploy/make-certs.sh or fix the path"
            case .unreadable(let role, let path, let reason):
                return "TLS \(role) file '\(path)' could not be loaded: \(reason)"
            case .incomplete(let what):
                return what
            }
        }
    }

    private static func check(_ path: String, role: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw TLSSetupError.missingFile(role: role, path: path) }
    }

    private func loadChainAndKey() throws -> ([NIOSSLCertificateSource], NIOSSLPrivateKeySource)? {
        guard let certificatePath else { return nil }
        guard let keyPath else { throw TLSSetupError.incomplete("a TLS certificate needs its private key (--tls-key)") }
        try Self.check(certificatePath, role: "certificate")
        try Self.check(keyPath, role: "private key")
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
            return (chain, .privateKey(key))
        } catch {
            throw TLSSetupError.unreadable(role: "certificate/key", path: certificatePath, reason: "\(error)")
        }
    }

    private func trustRoots() throws -> NIOSSLTrustRoots {
        guard let caPath else { return .default }
        try Self.check(caPath, role: "CA")
        do {
            return .certificates(try NIOSSLCertificate.fromPEMFile(caPath))
        } catch {
            throw TLSSetupError.unreadable(role: "CA", path: caPath, reason: "\(error)")
        }
    }

    /// Configuration for a broker listener.
    public func serverConfiguration() throws -> TLSConfiguration {
        guard let (chain, key) = try loadChainAndKey() else {
            throw TLSSetupError.incomplete("an SSL listener needs --tls-cert and --tls-key")
        }
        var c = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: key)
        c.minimumTLSVersion = .tlsv12
        switch clientAuth {
        case .none: c.certificateVerification = .none
        case .requested: c.certificateVerification = .optionalVerification
        case .required: c.certificateVerification = .noHostnameVerification
        }
        if clientAuth != .none {
            guard caPath != nil else {
                throw TLSSetupError.incomplete("client authentication needs the CA that signs client certificates (--tls-ca)")
            }
            c.trustRoots = try trustRoots()
        }
        return c
    }

    /// Configuration for a client connection.
    public func clientConfiguration() throws -> TLSConfiguration {
        var c = TLSConfiguration.makeClientConfiguration()
        c.minimumTLSVersion = .tlsv12
        c.trustRoots = try trustRoots()
        c.certificateVerification = verifyHostname ? .fullVerification : .noHostnameVerification
        if let (chain, key) = try loadChainAndKey() {
            c.certificateChain = chain
            c.privateKey = key
        }
        return c
    }
}
