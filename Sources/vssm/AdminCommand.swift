import ArgumentParser
import Glibc
import VSSMClient
import VSSMCrypto
import VSSMServer
import VSSMWire

/// How to reach a node: explicit options, else the files of a `vssm init` directory, else the
/// variables `conformance/dev-env.sh` exports.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Directory made by `vssm init` (ca.pem, client-cert.pem, client-key.pem).") var dir: String?
    @Option(
        help: ArgumentHelp(
            "API URL (env VSSM_URL: one URL or several, comma-separated); repeatable.",
            discussion: "With several, each call goes to the first node that answers."))
    var url: [String] = []
    @Option(help: "PEM CA that verifies the server (env VSSM_CA).") var ca: String?
    @Option(help: "Client certificate PEM (env VSSM_CLIENT_CERT).") var cert: String?
    @Option(help: "Client key PEM (env VSSM_CLIENT_KEY).") var key: String?
    @Option(help: "Admin password (env VSSM_ADMIN_PASSWORD).") var password: String?
    @Option(help: "File holding the admin password.") var passwordFile: String?

    func client() throws -> VSSMAPIClient {
        let d = dir ?? environment("VSSM_DEV_DIR")
        let urls = try ConnectionOptions.endpoints(url.isEmpty ? [environment("VSSM_URL") ?? "https://127.0.0.1:8080"] : url)
        // An explicit option, then an explicit --dir, then the environment, then VSSM_DEV_DIR.
        func path(_ explicit: String?, _ env: String, _ file: String) throws -> String {
            if let explicit { return explicit }
            if let dir { return dir + "/" + file }
            if let e = environment(env) { return e }
            if let d { return d + "/" + file }
            throw CLIError("no \(file): pass --dir, --\(file.split(separator: ".").first ?? "") or set \(env)")
        }
        var cfg = TLSClientConfiguration(endpoints: urls)
        // A node that cannot be reached is skipped for this command's life; a call that may have
        // reached a node is never sent to a second one (see HTTPSClient).
        cfg.connectTimeoutMs = 3000
        let caPath = try path(ca, "VSSM_CA", "ca.pem")
        cfg.trustPEM = try readFile(caPath)
        cfg.trustDescription = "the CA file \(caPath)"
        cfg.clientCertificatePEM = try readFile(try path(cert, "VSSM_CLIENT_CERT", "client-cert.pem"))
        cfg.clientKeyPEM = try readFile(try path(key, "VSSM_CLIENT_KEY", "client-key.pem"))
        cfg.requestTimeoutMs = 300_000
        return try VSSMAPIClient(cfg)
    }

    /// Endpoints from `--url` values and `VSSM_URL`, each of which may be a comma-separated list.
    static func endpoints(_ texts: [String]) throws -> [Endpoint] {
        let parts = texts.flatMap { $0.split(separator: ",").map { String($0).filter { !$0.isWhitespace } } }.filter { !$0.isEmpty }
        guard !parts.isEmpty else { throw CLIError("no URL given") }
        return try parts.map { text in
            guard let ep = Endpoint(text), ep.port > 0 else { throw CLIError("invalid URL: \(text) (expected https://host:port)") }
            return ep
        }
    }

    /// One admin call: the client, the admin password, and the call's error as the CLI's.
    func admin<T>(_ body: (VSSMAPIClient, String) throws -> T) throws -> T {
        let c = try client()
        let pw = try adminPassword()
        do { return try body(c, pw) } catch let e as ClientError { throw CLIError(e.description) }
    }

    func adminPassword() throws -> String {
        if let password { return password }
        if let passwordFile {
            return String(decoding: try readFile(passwordFile), as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first
                .map(String.init) ?? ""
        }
        if let e = environment("VSSM_ADMIN_PASSWORD") { return e }
        throw CLIError("no admin password: pass --password, --password-file or set VSSM_ADMIN_PASSWORD")
    }
}

func run<T>(_ body: () throws(ClientError) -> T) throws -> T {
    do { return try body() } catch { throw CLIError(error.description) }
}

struct AdminCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin",
        abstract: "Manage keys of a running node (needs the admin password).",
        subcommands: [
            GenerateKey.self, InjectKey.self, ListKeys.self, DeleteKey.self, Backup.self, Restore.self, Logs.self,
            SplitRPCKey.self, PrincipalCommand.self, WhoAmI.self, NodeCommand.self, AttestCommand.self,
        ])

    struct GenerateKey: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "generate-key", abstract: "Generate a key inside the service.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Key name.") var name: String
        @Option(help: "SYMMETRIC, ASYMMETRIC or MAC.") var type: String
        @Option(help: "RSA or EC; extensions: ED25519, ED448, ML-DSA-65, ML-DSA-87 (ASYMMETRIC only).") var spec: String?
        @Option(
            help:
                "Bytes for SYMMETRIC/MAC (AES 16/24/32, DES 8), bits for ASYMMETRIC (RSA 2048-8192, EC 224/256/384/521); not for Edwards or ML-DSA keys."
        ) var size: UInt64?

        func run() throws {
            guard let t = KeyType(rawValue: type.uppercased()) else { throw CLIError("--type must be SYMMETRIC, ASYMMETRIC or MAC") }
            // A spec this build does not know is an error here, not a request without one.
            let keySpec = try spec.map { (s: String) throws -> KeySpec in
                guard let k = KeySpec(rawValue: s.uppercased()) else {
                    throw CLIError("--spec must be one of \(KeySpec.allCases.map(\.rawValue).joined(separator: ", ")), not \(s)")
                }
                return k
            }
            guard let size = size ?? (keySpec?.sizeImplied == true ? 0 : nil) else { throw CLIError("--size is needed for this key") }
            let c = try connection.client()
            let pw = try connection.adminPassword()
            if t == .asymmetric && size >= 4096 { printErr("Generating a \(size)-bit key; this can take a while...") }
            try vssm.run { () throws(ClientError) in
                try c.generateKey(password: pw, name: name, type: t, spec: keySpec, size: size)
            }
            print("generated \(t.rawValue) key \(name)")
        }
    }

    struct InjectKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inject-key", abstract: "Import a key (ASYMMETRIC: PEM or PKCS#8 DER private key; SYMMETRIC/MAC: raw key bytes).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Key name.") var name: String
        @Option(help: "SYMMETRIC, ASYMMETRIC or MAC.") var type: String
        @Option(help: "File with the key.") var file: String

        func run() throws {
            guard let t = KeyType(rawValue: type.uppercased()) else { throw CLIError("--type must be SYMMETRIC, ASYMMETRIC or MAC") }
            var material = t == .asymmetric ? try loadPKCS8(file) : try readFile(file)
            defer { zeroize(&material) }
            let c = try connection.client()
            let pw = try connection.adminPassword()
            try vssm.run { () throws(ClientError) in try c.injectKey(password: pw, name: name, type: t, key: material) }
            print("injected \(t.rawValue) key \(name)")
        }
    }

    struct ListKeys: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list-keys", abstract: "List keys (one line each, or --json for the service's answer).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Only this key (needs --type).") var name: String?
        @Option(help: "Type of the named key.") var type: String?
        @Flag(help: "Print the JSON answer.") var json = false

        func run() throws {
            let c = try connection.client()
            let pw = try connection.adminPassword()
            let t = type.flatMap { KeyType(rawValue: $0.uppercased()) }
            let r = try vssm.run { () throws(ClientError) in try c.listKeys(password: pw, name: name ?? "", type: t) }
            if json {
                var w = WireWriter()
                for (field, _) in [("symmetricKey", 0), ("asymmetricKey", 1), ("macKey", 2)] where r.has(field) {
                    w.array(
                        field,
                        r.objects(field).map { o in
                            var x = WireWriter()
                            x.string("name", o.string("name"))
                            x.int64("createdAt", o.int64("createdAt"))
                            x.uint64("keyLength", o.uint64("keyLength"))
                            x.string("keySpec", o.string("keySpec"))
                            x.bytes("publicKey", o.bytes("publicKey"))
                            return x.value
                        })
                }
                print(JSONWriter.string(w.value))
                return
            }
            func row(_ type: String, _ spec: String, _ bits: String, _ name: String) {
                print(type.padding(12) + spec.padding(10) + bits.padding(6) + name)
            }
            row("TYPE", "SPEC", "BITS", "NAME")
            for o in r.objects("symmetricKey") { row("SYMMETRIC", "-", String(o.uint64("keyLength") * 8), o.string("name")) }
            for o in r.objects("macKey") { row("MAC", "-", String(o.uint64("keyLength") * 8), o.string("name")) }
            for o in r.objects("asymmetricKey") {
                let bits = (try? PublicKey(spki: o.bytes("publicKey") ?? []))?.bits ?? 0
                row("ASYMMETRIC", o.string("keySpec"), String(bits), o.string("name"))
            }
        }
    }

    struct DeleteKey: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete-key", abstract: "Delete a key (extension API).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Key name.") var name: String
        @Option(help: "SYMMETRIC, ASYMMETRIC or MAC.") var type: String

        func run() throws {
            guard let t = KeyType(rawValue: type.uppercased()) else { throw CLIError("--type must be SYMMETRIC, ASYMMETRIC or MAC") }
            let c = try connection.client()
            var w = WireWriter()
            w.string("adminPassword", try connection.adminPassword())
            w.string("keyName", name)
            w.string("keyType", t.rawValue)
            _ = try vssm.run { () throws(ClientError) in try c.call(Route.extDeleteKey, w, response: Schemas.empty, idempotent: false) }
            print("deleted \(t.rawValue) key \(name)")
        }
    }

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "backup",
            abstract:
                "Write an encrypted backup to a file: `backup` (the original BackupBlob, restorable on any VSSM node) and, where the node has the extensions, `extBackup` (also keeps CKA_IDs and certificate/data objects)."
        )
        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Output file (repeat for copies, e.g. two removable media).") var out: [String]

        func run() throws {
            guard !out.isEmpty else { throw CLIError("give at least one --out file") }
            let c = try connection.client()
            var w = WireWriter()
            w.string("adminPassword", try connection.adminPassword())
            let base = try vssm.run { () throws(ClientError) in
                try c.call(Route.generateBackup, w, response: Schemas.generateBackupResponse, idempotent: true)
            }
            var file = WireWriter()
            file.object("backup", try backupJSON(base))
            var withExt = false
            do throws(ClientError) {
                let ext = try c.call(Route.extGenerateBackup, w, response: Schemas.generateBackupResponse, idempotent: true)
                file.object("extBackup", try? backupJSON(ext))
                withExt = true
            } catch .http(status: 404, message: _) {
                // A node without our extensions (original VSSM or --compat-only).
            } catch { throw CLIError(error.description) }
            for path in out { try writeFile(path, JSONWriter.serialize(file.value) + [10]) }
            print(
                "backup written to \(out.joined(separator: ", "))\(withExt ? " (with extension data)" : "") — encrypted to the RPC key; restoring needs a node bootstrapped with it"
            )
        }

        func backupJSON(_ r: WireObject) throws -> JSONValue {
            guard let blob = r.object("backup") else { throw CLIError("the node answered without a backup") }
            var w = WireWriter()
            w.bytes("encryptionKey", blob.bytes("encryptionKey"))
            w.int64("version", blob.int64("version"))
            w.int64("timestamp", blob.int64("timestamp"))
            w.bytes("encryptedState", blob.bytes("encryptedState"))
            w.bytes("rpcCertificateSha256", blob.bytes("rpcCertificateSha256"))
            return w.value
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restore", abstract: "Restore keys from a backup file (newer keys win; nothing is deleted).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "File written by `vssm admin backup`, a generatebackup answer, or a bare BackupBlob.") var file: String

        func run() throws {
            let text = try readFile(file)
            var root: JSONValue
            do { root = try JSONParser.parse(text) } catch { throw CLIError("\(file): \(error.message)") }
            let base = root["backup"] ?? root
            let c = try connection.client()
            let pw = try connection.adminPassword()
            if let ext = root["extBackup"] {
                var w = WireWriter()
                w.string("adminPassword", pw)
                w.object("backup", ext)
                do throws(ClientError) {
                    _ = try c.call(Route.extRestoreBackup, w, response: Schemas.empty, idempotent: false)
                    print("restored \(file) (with extension data)")
                    return
                } catch .http(status: 404, message: _) {
                    printErr("the node has no extensions; restoring the keys only")
                } catch { throw CLIError(error.description) }
            }
            try vssm.run { () throws(ClientError) in try c.restoreBackup(password: pw, blob: base) }
            print("restored \(file)")
        }
    }

    /// k-of-n shares of the RPC private key: no single operator can bootstrap a node alone.
    struct SplitRPCKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "split-rpc-key",
            abstract: "Write N shares of the RPC private key, any K of which bootstrap a node (`vssm bootstrap --share`).",
            discussion: """
                Shamir's secret sharing over GF(256); each share file is labelled, checksummed and tied to the RPC \
                certificate. Give each share to a different person; then destroy the key file if the shares are to \
                be the only way to bootstrap. Runs locally: no node is contacted.
                """)
        @Option(name: .customLong("rpc-key"), help: "The RPC private key (PEM or PKCS#8 DER).") var rpcKey = "rpc-key.pem"
        @Option(help: "The node's config.json (its rpcCertificate).") var config = "config.json"
        @Option(help: "Shares needed to bootstrap (K).") var threshold: Int
        @Option(help: "Shares written (N).") var shares: Int
        @Option(help: "Directory for the share files.") var out = "."
        @Option(help: "A label per share, in order (e.g. the holder's name); repeat.") var label: [String] = []

        func run() throws {
            let key = try loadPKCS8(rpcKey)
            let cfg: ServerConfig
            do { cfg = try ServerConfig(json: try readFile(config), path: config) } catch let e as ServiceError {
                throw CLIError(e.message)
            }
            let matches: Bool
            do { matches = try cfg.isRPCKey(try PrivateKey(pkcs8: key)) } catch { throw CLIError("\(config): \(error)") }
            guard matches else { throw CLIError("\(rpcKey) is not the key of the RPC certificate in \(config)") }
            let parts: [RPCKeyShare]
            do {
                parts = try RPCKeyShare.split(
                    rpcKey: key, certificateDER: cfg.rpcCertificate, threshold: threshold, count: shares, labels: label)
            } catch { throw CLIError(error.message) }
            for p in parts {
                let path = out + "/rpc-key-share-\(p.index)-of-\(p.count).json"
                do { try FileUtil.writeAtomically(path: path, bytes: p.json, mode: 0o600) } catch { throw CLIError(error.message) }
                print("\(path)  share \(p.index) of \(p.count) (\(p.label)), \(p.threshold) needed, split \(p.set)")
            }
        }
    }

    struct Logs: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "logs",
            abstract: "Print the node's log ring (oldest first), or its audit trail with --audit, a filter or --verify.",
            discussion: """
                The audit trail holds one record a request (time, principal, fingerprint, route, key, mechanism, \
                status, request ID), each chained to the one before by an HMAC under a key derived from the RPC \
                key. --verify checks the whole chain and exits 1 naming the first record that was changed, \
                removed or inserted. The trail's head is also kept outside it: in audit.anchor (MACed), in etcd \
                for a cluster node, and in syslog with auditSyslog (each AUDIT line carries seq= and mac=); \
                --head SEQ:MAC (the newest AUDIT line's) finds a trail cut or replaced together with its anchor.
                """)
        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print the audit trail instead of the log ring.") var audit = false
        @Flag(help: "Check the audit trail's chain (exit 1 if broken).") var verify = false
        @Option(help: "Only records of this principal (part of the certificate subject, or its SHA-256 fingerprint).") var principal:
            String?
        @Option(name: .customLong("key-name"), help: "Only records of this key name (--key is the client key file).") var keyName: String?
        @Option(help: "Only records at or after this time (RFC 3339, e.g. 2026-11-29T08:00:00Z).") var since: String?
        @Option(help: "At most this many records, the newest (default 1000).") var limit: UInt64 = 0
        @Option(help: "With --verify: a record the trail must hold, SEQ:MAC from the newest AUDIT line in syslog.") var head: String?

        func run() throws {
            let c = try connection.client()
            let pw = try connection.adminPassword()
            if head != nil && !verify { throw CLIError("--head goes with --verify") }
            guard audit || verify || principal != nil || keyName != nil || since != nil else {
                for line in try vssm.run({ () throws(ClientError) in try c.logs(password: pw) }) { print(line) }
                return
            }
            let r = try vssm.run { () throws(ClientError) in
                try c.audit(
                    password: pw, principal: principal ?? "", key: keyName ?? "", since: since ?? "", verify: verify, limit: limit,
                    head: head ?? "")
            }
            guard r.bool("enabled") else {
                throw CLIError("this node keeps no audit trail (it has no state directory); see `vssm admin logs`")
            }
            for rec in r.objects("records") {
                let fields = [
                    rec.string("time"), "seq=\(rec.uint64("seq"))", "principal=\"\(rec.string("principal"))\"",
                    "route=\(rec.string("route"))", "key=\"\(rec.string("key"))\"", "mechanism=\(rec.string("mechanism"))",
                    rec.string("namespace").isEmpty ? "" : "namespace=\(rec.string("namespace"))",
                    "status=\(rec.int64("status"))", "request=\(rec.string("request"))",
                ]
                print(fields.filter { !$0.isEmpty }.joined(separator: " "))
            }
            if verify {
                let problem = r.string("problem")
                if problem.isEmpty {
                    print("audit trail verified: \(r.uint64("checked")) records, chain intact from seq \(r.uint64("chainStart"))")
                } else {
                    print("audit trail BROKEN: \(problem) (\(r.uint64("checked")) records read)")
                    throw ExitCode(1)
                }
            }
        }
    }
}

/// `vssm admin principal add|list|remove|set-pin`: tenants (root admin, the admin password).
struct PrincipalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "principal",
        abstract: "Register client certificates as principals with a role and namespaces (tenants).",
        discussion: """
            While no principal is registered every client with a certificate from the trusted CA uses \
            every key (the original VSSM's model). Once one is, only registered certificates are served: \
            a user uses the keys of its namespaces, an officer also creates, imports and deletes them, \
            an auditor reads their audit records. The admin password stays the root credential \
            (principals, backups, restore, the whole audit trail) from any trusted certificate.
            """,
        subcommands: [Add.self, List.self, Remove.self, SetPIN.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Register a principal.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Principal name (shown in the audit trail).") var name: String
        @Option(help: "The principal's client certificate (PEM or DER; --cert is the connection's own).") var certificate: String
        @Option(help: "user, officer or auditor.") var role: String
        @Option(help: "Namespace (repeatable; the first is its default). Default: default.") var namespace: [String] = []
        @Option(help: "File holding the principal's PIN (its C_Login PIN; default: none, the admin password is its credential).")
        var pinFile: String?
        @Option(help: "The principal's PIN (prefer --pin-file).") var pin: String?

        func run() throws {
            let der = try loadCertificateDER(certificate)
            let pinText =
                try pinFile.map {
                    String(decoding: try readFile($0), as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first.map(
                        String.init) ?? ""
                } ?? pin
            let fp = try connection.admin {
                try $0.addPrincipal(password: $1, name: name, certificate: der, role: role, namespaces: namespace, pin: pinText)
            }
            print(
                "registered principal \(name) (\(role), namespaces \(namespace.isEmpty ? "default" : namespace.joined(separator: ","))), certificate SHA-256 \(fp)"
            )
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List principals.")
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            let all = try connection.admin { try $0.listPrincipals(password: $1) }
            print("NAME".padding(16) + "ROLE".padding(9) + "PIN".padding(4) + "NAMESPACES".padding(24) + "SUBJECT / SHA-256")
            for p in all {
                let pin: String = p.bool("hasPin") ? "yes" : "no"
                let columns: [String] = [
                    p.string("name").padding(16), p.string("role").padding(9), pin.padding(4),
                    p.strings("namespaces").joined(separator: ",").padding(24), p.string("subject") + " " + p.string("fingerprint"),
                ]
                print(columns.joined())
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove", abstract: "Remove a principal (its certificate is refused from then on).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Principal name.") var name: String

        func run() throws {
            try connection.admin { try $0.removePrincipal(password: $1, name: name) }
            print("removed principal \(name)")
        }
    }

    struct SetPIN: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set-pin", abstract: "Set or remove (--clear) a principal's PIN.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Principal name.") var name: String
        @Option(help: "File holding the new PIN.") var pinFile: String?
        @Option(help: "The new PIN (prefer --pin-file).") var pin: String?
        @Flag(help: "Remove the PIN (the admin password is then its credential).") var clear = false

        func run() throws {
            let pinText =
                try pinFile.map {
                    String(decoding: try readFile($0), as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first.map(
                        String.init) ?? ""
                } ?? pin ?? ""
            guard clear || !pinText.isEmpty else { throw CLIError("give --pin-file, --pin or --clear") }
            try connection.admin { try $0.setPrincipalPIN(password: $1, name: name, pin: clear ? "" : pinText) }
            print(clear ? "removed the PIN of \(name)" : "set the PIN of \(name)")
        }
    }
}

/// `vssm admin node add|remove|list`: join credentials for new cluster nodes (root admin).
struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract:
            "Join credentials: a new node started with `vssm serve --join URL --join-credential FILE` obtains the RPC key from a running node.",
        subcommands: [Add.self, Remove.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Issue a join credential (written once, to --out).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Node name (shown in the audit trail).") var name: String
        @Option(help: "File to write the credential to (mode 0600; hand it to the new node only).") var out: String

        func run() throws {
            let r = try connection.admin { try $0.addNode(password: $1, name: name) }
            var w = WireWriter()
            w.string("name", r.string("name"))
            w.bytes("secret", r.bytes("secret"))
            try writeFile(out, w.bytes)
            print("join credential for node \(name) written to \(out)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove", abstract: "Revoke a node's join credential (it can no longer join).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Node name.") var name: String

        func run() throws {
            try connection.admin { try $0.removeNode(password: $1, name: name) }
            print("revoked the join credential of node \(name)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "Nodes that may join.")
        @OptionGroup var connection: ConnectionOptions

        func run() throws {
            for n in try connection.admin({ try $0.listNodes(password: $1) }) { print(n) }
        }
    }
}

/// `vssm admin whoami`: the principal, role and namespaces of this client certificate.
struct WhoAmI: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whoami", abstract: "Show which principal this client certificate is.")
    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let c = try connection.client()
        let r = try vssm.run { () throws(ClientError) in try c.whoAmI() }
        if !r.bool("restricted") {
            print("no principals are registered: this certificate (SHA-256 \(r.string("fingerprint"))) uses every key")
        } else {
            print(
                "principal \(r.string("principal")), role \(r.string("role")), namespaces \(r.strings("namespaces").joined(separator: ",")) (this request: \(r.string("namespace")))"
            )
        }
    }
}

/// A certificate file, PEM or DER, as DER.
func loadCertificateDER(_ path: String) throws -> [UInt8] {
    let bytes = try readFile(path)
    guard let text = String(validating: bytes, as: UTF8.self), text.contains("-----BEGIN CERTIFICATE-----") else { return bytes }
    guard let der = X509Info.derBlocks(pem: text).first else { throw CLIError("\(path): not a PEM certificate") }
    return der
}

extension String {
    /// Left-aligned in a column of width n (at least one space after).
    func padding(_ n: Int) -> String { count >= n ? self + " " : self + String(repeating: " ", count: n - count) }
}
