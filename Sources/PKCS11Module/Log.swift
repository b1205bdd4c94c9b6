import Glibc

/// Module logging: `VSSM_PKCS11_LOG=level[:path]` (error, warn, info, debug); default `error` to
/// stderr. Never stdout (it would corrupt tool output), never PINs or key bytes.
enum Log {
    enum Level: Int { case error = 0, warn, info, debug }

    struct Sink: @unchecked Sendable {
        // fd is owned for the process lifetime; writes are atomic per line (O_APPEND, one write call).
        let level: Level
        let fd: Int32
    }

    static let sink: Sink = {
        var level = Level.error
        var fd: Int32 = 2
        if let v = getenv("VSSM_PKCS11_LOG") {
            let parts = String(cString: v).split(separator: ":", maxSplits: 1)
            switch parts.first.map(String.init) {
            case "warn": level = .warn
            case "info": level = .info
            case "debug": level = .debug
            default: level = .error
            }
            if parts.count == 2 {
                let f = open(String(parts[1]), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
                if f >= 0 { fd = f }
            }
        }
        return Sink(level: level, fd: fd)
    }()

    static func write(_ level: Level, _ message: @autoclosure () -> String) {
        let s = sink
        guard level.rawValue <= s.level.rawValue else { return }
        let line = "vssm-pkcs11[\(getpid())] \(level): \(message())\n"
        _ = line.withCString { Glibc.write(s.fd, $0, strlen($0)) }
    }
}
