import ArgumentParser
import Glibc
import VSSMClient
import VSSMServer
import VSSMWire

/// The module configuration (`pkcs11.json`) for one client identity of a deployment. `vssm init`
/// writes one for the identity it made; `vssm pkcs11-config` prints one for any other.
struct ModuleConfigFile {
    enum Login: String, ExpressibleByArgument, CaseIterable {
        /// The user PIN is the admin password (or the principal's PIN): C_Login, then manage keys.
        case adminPassword = "admin-password"
        /// No PIN: the mTLS identity alone uses keys with CKA_PRIVATE=FALSE (nginx, sshd host keys).
        case headless
    }
    var label = "vssm"
    var endpoints: [String]
    var serverName = "VSSM"
    var ca: String
    var clientCert: String
    var clientKey: String
    var login: Login = .adminPassword
    var namespace: String?

    /// The file's text: valid JSON (no comments), one member per line, paths absolute so the file
    /// can be copied to `~/.config/vssm/pkcs11.json` or `/etc/vssm/pkcs11.json` as it is.
    var text: String {
        func q(_ s: String) -> String { JSONWriter.string(.string(s)) }
        var lines = [
            "\"label\": \(q(label))",
            "\"endpoints\": [\(endpoints.map(q).joined(separator: ", "))]",
            "\"serverName\": \(q(serverName))",
            "\"ca\": \(q(ca))",
            "\"clientCert\": \(q(clientCert))",
            "\"clientKey\": \(q(clientKey))",
            "\"userPinIsAdminPassword\": \(login == .adminPassword)",
        ]
        if let namespace { lines.append("\"namespace\": \(q(namespace))") }
        return "{\n  \"slots\": [{\n    " + lines.joined(separator: ",\n    ") + "\n  }]\n}\n"
    }

    /// `https://HOST:PORT` that reaches a listener bound to `address` (a wildcard bind is reached
    /// on this machine's loopback).
    static func url(forListener address: String) -> String? {
        guard let ep = Endpoint(address) else { return nil }
        let host = ["0.0.0.0", "::", ""].contains(ep.host) ? "127.0.0.1" : ep.host
        return "https://" + Endpoint(host: host, port: ep.port).description
    }
}

/// `p` as an absolute path without `.` or empty components (files written into configs).
func absolutePath(_ p: String) -> String {
    let full = p.hasPrefix("/") ? p : currentDirectory() + "/" + p
    return "/" + full.split(separator: "/").filter { $0 != "." }.joined(separator: "/")
}

struct PKCS11ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pkcs11-config",
        abstract: "Print a PKCS#11 module configuration (pkcs11.json) for a client certificate of this deployment.",
        discussion: """
            Files default to those of a `vssm init` directory (--dir): ca.pem, client-cert.pem, client-key.pem, \
            and the API address of its config.json. The module reads the file named by VSSM_PKCS11_CONFIG, \
            else ~/.config/vssm/pkcs11.json, else /etc/vssm/pkcs11.json.
            """)

    @Option(help: "Directory made by `vssm init`.") var dir: String?
    @Option(help: "API URL of a node (https://host:port); repeatable, in the order the module tries them.") var url: [String] = []
    @Option(help: "PEM CA that verifies the service (default: DIR/ca.pem).") var ca: String?
    @Option(help: "Client certificate PEM (default: DIR/client-cert.pem).") var cert: String?
    @Option(help: "Client key PEM (default: DIR/client-key.pem).") var key: String?
    @Option(help: "Token label.") var label = "vssm"
    @Option(help: "Name the service certificate carries.") var serverName = "VSSM"
    @Option(
        help:
            "admin-password: the user PIN is the admin password or the principal's PIN (log in, manage keys); headless: no PIN, keys with CKA_PRIVATE=FALSE only."
    )
    var login: ModuleConfigFile.Login = .adminPassword
    @Option(help: "Tenants: the namespace this token shows.") var namespace: String?
    @Option(help: "Write the file here (mode 0644) instead of printing it.") var out: String?

    func run() throws {
        func file(_ explicit: String?, _ name: String, _ option: String) throws -> String {
            if let explicit { return absolutePath(explicit) }
            if let dir { return absolutePath(dir + "/" + name) }
            throw CLIError("no \(name): pass --dir (a `vssm init` directory) or --\(option)")
        }
        var urls = url
        if urls.isEmpty, let dir {
            let path = dir + "/config.json"
            let config: ServerConfig
            do { config = try ServerConfig(json: try readFile(path), path: path) } catch let e as ServiceError { throw CLIError(e.message) }
            guard let u = ModuleConfigFile.url(forListener: config.listen.api) else {
                throw CLIError("\(path): cannot make a URL of the API address \(config.listen.api); pass --url")
            }
            urls = [u]
        }
        guard !urls.isEmpty else { throw CLIError("no endpoint: pass --url https://host:port (or --dir)") }
        _ = try ConnectionOptions.endpoints(urls)  // each one an https://host:port URL
        if let namespace, !NamespaceName.isValid(namespace) { throw CLIError("\(namespace) is not a namespace (a-z, 0-9, '.', '_', '-')") }
        let cfg = ModuleConfigFile(
            label: label, endpoints: urls, serverName: serverName, ca: try file(ca, "ca.pem", "ca"),
            clientCert: try file(cert, "client-cert.pem", "cert"), clientKey: try file(key, "client-key.pem", "key"),
            login: login, namespace: namespace)
        for p in [cfg.ca, cfg.clientCert, cfg.clientKey] where access(p, F_OK) != 0 { throw CLIError("\(p) does not exist") }
        if let out {
            try writeFile(out, Array(cfg.text.utf8), mode: 0o644)
            printErr("wrote \(out); use it with: export VSSM_PKCS11_CONFIG=\(absolutePath(out))")
        } else {
            print(cfg.text, terminator: "")
        }
    }
}
