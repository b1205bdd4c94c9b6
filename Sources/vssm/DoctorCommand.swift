import ArgumentParser
import Glibc
import VSSMClient
import VSSMCrypto
import VSSMServer
import VSSMWire

/// `vssm doctor`: checks a PKCS#11 module configuration the way the module will use it, one line
/// per check, and for each failure what to do. Exit status 1 when anything failed.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract:
            "Check a PKCS#11 module configuration: its files, each endpoint (DNS, TCP, TLS, the service's certificate), the service's phase, features and what it makes of the client, and the login model.",
        discussion:
            "Without --config, the file the module would read: $VSSM_PKCS11_CONFIG, ~/.config/vssm/pkcs11.json, /etc/vssm/pkcs11.json.")

    @Option(help: "The module configuration (pkcs11.json) to check.") var config: String?

    final class Report {
        var failed = 0
        func ok(_ what: String) { print("OK    \(what)") }
        func note(_ what: String) { print("INFO  \(what)") }
        func warn(_ what: String, fix: String) { print("WARN  \(what)\n      fix: \(fix)") }
        func fail(_ what: String, fix: String) {
            failed += 1
            print("FAIL  \(what)\n      fix: \(fix)")
        }
    }

    func run() throws {
        let report = Report()
        let path: String
        if let config {
            path = config
        } else if let e = environment("VSSM_PKCS11_CONFIG") {
            path = e
        } else {
            var candidates: [String] = []
            if let x = environment("XDG_CONFIG_HOME") {
                candidates.append(x + "/vssm/pkcs11.json")
            } else if let h = environment("HOME") {
                candidates.append(h + "/.config/vssm/pkcs11.json")
            }
            candidates.append("/etc/vssm/pkcs11.json")
            guard let found = candidates.first(where: { access($0, R_OK) == 0 }) else {
                report.fail(
                    "no module configuration (looked at \(candidates.joined(separator: ", ")))",
                    fix: "write one: vssm pkcs11-config --dir DIR --out ~/.config/vssm/pkcs11.json (or set VSSM_PKCS11_CONFIG)")
                throw ExitCode(1)
            }
            path = found
        }
        let parsed: PKCS11Configuration
        do throws(ConfigFile.Problem) {
            let bytes: [UInt8]
            do throws(ServiceError) { bytes = try FileUtil.readFile(path, limit: 4 << 20) } catch {
                throw ConfigFile.Problem(error.message)
            }
            parsed = try PKCS11Configuration.parse(ConfigFile(path: path, bytes: bytes)) {
                (p: String) throws(ConfigFile.Problem) -> [UInt8] in
                do throws(ServiceError) { return try FileUtil.readFile(p, limit: 4 << 20) } catch {
                    throw ConfigFile.Problem(error.message)
                }
            }
        } catch {
            report.fail("configuration \(path): \(error.message)", fix: "correct the file (members: docs/config-module.md)")
            throw ExitCode(1)
        }
        report.ok("configuration \(path): valid, \(parsed.slots.count) slot(s)")
        for slot in parsed.slots { check(slot, report) }
        print(report.failed == 0 ? "all checks passed" : "\(report.failed) check(s) failed")
        if report.failed > 0 { throw ExitCode(1) }
    }

    func check(_ slot: PKCS11Configuration.Slot, _ report: Report) {
        let name = "slot \"\(slot.label)\""
        // Files: the CA, the client certificate, its dates, the key and whether they match.
        let cas = X509Info.derBlocks(pem: String(decoding: slot.caPEM, as: UTF8.self))
        if cas.isEmpty {
            report.fail("\(name): \(slot.ca) holds no PEM certificate", fix: "point ca at the deployment's ca.pem (the RPC certificate)")
        } else {
            report.ok("\(name): CA file \(slot.ca) (\(cas.count) certificate(s))")
        }
        let certs = X509Info.derBlocks(pem: String(decoding: slot.certPEM, as: UTF8.self))
        guard let cert = certs.first else {
            report.fail(
                "\(name): \(slot.clientCert) holds no PEM certificate",
                fix: "point clientCert at the client certificate (vssm init: client-cert.pem)")
            return
        }
        if let validity = CertificateValidity(pem: slot.certPEM) {
            if let warning = validity.warning(file: slot.clientCert) {
                if validity.secondsLeft < 0 || validity.notYetValid {
                    report.fail(
                        "\(name): \(warning)",
                        fix: "vssm issue-client DIR --name NAME, then register it if tenants are on (vssm admin principal add)")
                } else {
                    report.warn("\(name): \(warning)", fix: "vssm issue-client DIR --name NAME before it expires")
                }
            } else {
                report.ok(
                    "\(name): client certificate \(slot.clientCert) (\(validity.subject)), valid for \(validity.secondsLeft / 86400) more days"
                )
            }
        }
        let encrypted = String(decoding: slot.keyPEM, as: UTF8.self).contains("ENCRYPTED")
        if encrypted {
            report.note("\(name): \(slot.clientKey) is encrypted: the token's user PIN decrypts it (not checked here)")
        } else if let key = try? PrivateKey(pem: slot.keyPEM) {
            if let spki = try? X509Info.subjectPublicKeyInfo(certificateDER: cert), key.matches(spki: spki) {
                report.ok("\(name): client key \(slot.clientKey) matches the certificate")
            } else {
                report.fail(
                    "\(name): client key \(slot.clientKey) is not the key of \(slot.clientCert)",
                    fix: "use the key file issued with that certificate")
            }
        } else {
            report.fail(
                "\(name): \(slot.clientKey) is not a readable private key (PEM)",
                fix: "point clientKey at the client certificate's key (vssm init: client-key.pem)")
        }
        // Login model.
        if slot.userPinIsAdminPassword {
            report.note(
                "\(name): login: the user PIN is the admin password (or the principal's PIN), checked by the service at C_Login; the logged-in user manages keys"
            )
        } else if encrypted {
            report.note("\(name): login: the user PIN decrypts the client key; keys are managed with the SO PIN (admin password)")
        } else {
            report.note(
                "\(name): login: headless (no PIN): keys with CKA_PRIVATE=FALSE are used with the certificate alone; management needs the SO PIN"
            )
        }
        // Each endpoint: name, TCP, TLS with the server's certificate, then the service itself.
        for ep in slot.endpoints { checkEndpoint(ep, slot, name, encrypted: encrypted, report) }
    }

    func checkEndpoint(_ ep: Endpoint, _ slot: PKCS11Configuration.Slot, _ name: String, encrypted: Bool, _ report: Report) {
        let at = "\(name): \(ep)"
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(ep.host, String(ep.port), &hints, &res)
        guard rc == 0, let first = res else {
            report.fail(
                "\(at): cannot resolve \(ep.host): \(String(cString: gai_strerror(rc)))",
                fix: "correct the host name in endpoints, or its DNS entry")
            return
        }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: max(1, slot.connectTimeoutMs / 1000), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let connected = fd >= 0 && connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0
        let why = String(cString: strerror(errno))
        if fd >= 0 { close(fd) }
        freeaddrinfo(res)
        guard connected else {
            report.fail(
                "\(at): TCP connection failed: \(why)",
                fix: "is vssm serve running there, and is this its API port (listen.api)? a firewall?")
            return
        }
        report.ok("\(at): resolves and accepts TCP connections")
        guard !encrypted else {
            report.note("\(at): TLS not checked (the client key needs the PIN)")
            return
        }
        var tls = slot.tls(passphrase: nil)
        tls.endpoints = [ep]
        tls.requestTimeoutMs = max(1000, min(slot.requestTimeoutMs, 10_000))
        let client: VSSMAPIClient
        do { client = try VSSMAPIClient(tls) } catch {
            report.fail("\(at): \(error.description)", fix: "check the certificate and key files")
            return
        }
        let capabilities: HTTPResponse
        do { capabilities = try client.raw(Route.extCapabilities, body: Array("{}".utf8), idempotent: true) } catch {
            report.fail("\(at): \(error.description)", fix: DoctorCommand.fix(for: error, slot))
            return
        }
        report.ok(
            "\(at): TLS: the service's certificate verifies against \(slot.ca) under the name \(slot.serverName), and it accepts this client's certificate"
        )
        switch capabilities.status {
        case 200:
            let features = (try? JSONParser.parse(capabilities.body))?["features"]
            var list: [String] = []
            if case .array(let items)? = features { for case .string(let f) in items { list.append(f) } }
            report.ok("\(at): the service runs (extensions: \(list.isEmpty ? "none" : list.joined(separator: ", ")))")
        case 404:
            report.note(
                "\(at): the service offers the original API only (a Go VSSM, or vssm serve --compat-only): no listing without the admin password, no PSS, no objects"
            )
            return
        default:
            report.fail("\(at): capabilities answered HTTP \(capabilities.status): \(capabilities.text)", fix: "see the service's log")
            return
        }
        do {
            let me = try client.whoAmI()
            if !me.bool("restricted") {
                report.ok("\(at): no principals registered: this certificate uses every key (the original's model)")
            } else if me.string("principal").isEmpty {
                report.fail(
                    "\(at): this certificate is trusted but not registered as a principal",
                    fix: "vssm admin principal add NAME --certificate \(slot.clientCert) --role user|officer --namespace NS")
            } else {
                let role = me.string("role")
                report.ok(
                    "\(at): principal \(me.string("principal")), role \(role), namespaces \(me.strings("namespaces").joined(separator: ", ")); this token shows \(me.string("namespace"))"
                )
                if role == "user" && slot.userPinIsAdminPassword {
                    report.note(
                        "\(at): a user principal uses keys only: generating or deleting through this token will be refused (CKR_ACTION_PROHIBITED)"
                    )
                }
            }
        } catch {
            if case .http(let status, let message) = error, status == 403 {
                report.fail(
                    "\(at): the service refuses this certificate: \(message)",
                    fix: "register it: vssm admin principal add NAME --certificate \(slot.clientCert) ...")
            } else {
                report.warn("\(at): cannot ask who this certificate is: \(error.description)", fix: "see the service's log")
            }
        }
    }

    /// What to do about a failed connection, from the transport's description of it.
    static func fix(for error: ClientError, _ slot: PKCS11Configuration.Slot) -> String {
        let text = error.description
        if text.contains("waiting for `vssm bootstrap`") {
            return "bootstrap the node: vssm bootstrap --url URL --key rpc-key.pem (or --share), then retry"
        }
        if text.contains("does not carry the name") {
            return "set \"serverName\" to a name the certificate carries (vssm init certificates: VSSM)"
        }
        if text.contains("does not verify against") { return "set \"ca\" to the deployment's ca.pem (the RPC certificate of the nodes)" }
        if text.contains("refused this client's certificate") {
            return "use a client certificate issued by the deployment's client CA that has not expired (vssm issue-client)"
        }
        if text.contains("timed out") {
            return "the node does not answer: is it overloaded or stopped (SIGSTOP)? raise connectTimeoutMs if the network is slow"
        }
        return "see the service's log"
    }
}
