import Glibc
import Synchronization

/// Module logging. Settings, the later overriding the earlier: the configuration's
/// `"log": {"level": "warn", "file": "/var/log/vssm-pkcs11.log", "syslog": true}`, then
/// `VSSM_PKCS11_LOG=level[:file]`. Levels: error (default), warn, info, debug. Lines go to standard
/// error, or to the file, and to syslog (facility user) when asked; never to standard output (it
/// would corrupt tool output); never PINs or key bytes. A bad level or a file that cannot be opened
/// is said once, on standard error, and the default is used.
enum Log {
    enum Level: Int, Sendable { case error = 0, warn, info, debug }

    /// Read on every call without a lock: level and destination are single words.
    private static let level = Atomic<Int>(Level.error.rawValue)
    private static let fd = Atomic<Int32>(2)
    private static let syslog = Atomic<Bool>(false)
    /// What the environment says is applied once (the first call); the configuration at C_Initialize.
    private static let fromEnvironment: Void = { apply(level: nil, file: nil, syslog: nil, source: "") }()

    static func parseLevel(_ text: String) -> Level? {
        switch text {
        case "error": .error
        case "warn", "warning": .warn
        case "info": .info
        case "debug": .debug
        default: nil
        }
    }

    /// Applies the configuration's settings (nil: not given); `VSSM_PKCS11_LOG` still overrides.
    static func apply(level configLevel: String?, file configFile: String?, syslog useSyslog: Bool?, source: String) {
        // The environment's settings first (once), so they cannot later undo the configuration's.
        if !source.isEmpty { _ = fromEnvironment }
        var wanted = Level.error
        var file = configFile
        var problems: [String] = []
        if let configLevel {
            if let l = parseLevel(configLevel) {
                wanted = l
            } else {
                problems.append("\(source): log.level \"\(configLevel)\" is not error, warn, info or debug; using error")
            }
        }
        if let v = getenv("VSSM_PKCS11_LOG") {
            let parts = String(cString: v).split(separator: ":", maxSplits: 1).map(String.init)
            if let first = parts.first, let l = parseLevel(first) {
                wanted = l
            } else {
                problems.append(
                    "VSSM_PKCS11_LOG=\(String(cString: v)): \"\(parts.first ?? "")\" is not error, warn, info or debug; using error")
            }
            if parts.count == 2 { file = parts[1] }
        }
        var target: Int32 = 2
        if let file, !file.isEmpty {
            let f = open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            if f >= 0 {
                target = f
            } else {
                problems.append("cannot open the log file \(file): \(String(cString: strerror(errno))); logging to standard error")
            }
        }
        let old = fd.exchange(target, ordering: .relaxed)
        if old > 2 && old != target { close(old) }
        level.store(wanted.rawValue, ordering: .relaxed)
        if let useSyslog { syslog.store(useSyslog, ordering: .relaxed) }
        for p in problems { emit("warning: " + p, to: 2, level: .warn) }
    }

    static func write(_ level: Level, _ message: @autoclosure () -> String) {
        _ = fromEnvironment
        guard level.rawValue <= self.level.load(ordering: .relaxed) else { return }
        let text = message()
        emit(text, to: fd.load(ordering: .relaxed), level: level)
        if syslog.load(ordering: .relaxed) {
            let priority = level == .error ? LOG_ERR : level == .warn ? LOG_WARNING : level == .info ? LOG_INFO : LOG_DEBUG
            text.withCString { c in withVaList([c]) { vsyslog(LOG_USER | priority, "vssm-pkcs11: %s", $0) } }
        }
    }

    /// `2026-12-07T04:47:07Z vssm-pkcs11[1234] error: message` in one write call.
    private static func emit(_ text: String, to target: Int32, level: Level) {
        var now = time(nil)
        var t = tm()
        gmtime_r(&now, &t)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, "%Y-%m-%dT%H:%M:%SZ", &t)
        let stamp = String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let line = "\(stamp) vssm-pkcs11[\(getpid())] \(level): \(text)\n"
        _ = line.withCString { Glibc.write(target, $0, strlen($0)) }
    }
}
