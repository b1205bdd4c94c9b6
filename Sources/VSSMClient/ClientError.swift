/// The one error type of the transport. `isTransport` failures may be retried on another endpoint
/// for idempotent calls; `http` carries the service's status and its `{"error": ...}` text.
public enum ClientError: Error, Sendable, Equatable, CustomStringConvertible {
    case configuration(String)
    case connect(String)
    case tls(String)
    case io(String)
    case timeout(String)
    case protocolError(String)
    case http(status: Int, message: String)

    public var isTransport: Bool {
        switch self {
        case .connect, .tls, .io, .timeout, .protocolError: true
        case .configuration, .http: false
        }
    }

    public var description: String {
        switch self {
        case .configuration(let m): "configuration: \(m)"
        case .connect(let m): "connect: \(m)"
        case .tls(let m): "TLS: \(m)"
        case .io(let m): "I/O: \(m)"
        case .timeout(let m): "timeout: \(m)"
        case .protocolError(let m): "protocol: \(m)"
        case .http(let s, let m): "HTTP \(s): \(m)"
        }
    }
}
