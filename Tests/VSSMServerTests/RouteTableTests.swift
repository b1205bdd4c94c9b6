import Testing
import VSSMClient
import VSSMCrypto
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// The route table (issue 21): every served route is declared, and the router enforces each
/// declared access for every kind of caller, through a real node.
@Suite(.serialized) struct RouteTableTests {
    let pw = TestNode.password

    @Test func everyHandlerRouteIsDeclaredAndNothingElse() {
        let handlers = Set(KeyServiceNode.apiRoutes.keys).union([ServiceMetrics.route])
        let declared = Set(RouteTable.api.keys)
        #expect(handlers.subtracting(declared).isEmpty, "handlers without a declared access: \(handlers.subtracting(declared).sorted())")
        #expect(declared.subtracting(handlers).isEmpty, "declared routes without a handler: \(declared.subtracting(handlers).sorted())")
    }

    /// What the table says, in words a reviewer can check against the README's tenants section.
    @Test func theAccessRules() {
        #expect(RouteTable.refusal(.keyUser, role: nil, sessionKey: false) != nil, "unregistered certificates use no key")
        #expect(RouteTable.refusal(.root, role: nil, sessionKey: false) == nil, "the root admin works from any trusted certificate")
        #expect(RouteTable.refusal(.keyUser, role: .auditor, sessionKey: false) != nil, "an auditor uses no key")
        #expect(RouteTable.refusal(.audit, role: .auditor, sessionKey: false) == nil)
        #expect(RouteTable.refusal(.officer, role: .user, sessionKey: false) != nil, "a user manages no token key")
        #expect(RouteTable.refusal(.officer, role: .user, sessionKey: true) == nil, "but its own session keys")
        #expect(RouteTable.refusal(.officer, role: .officer, sessionKey: false) == nil)
    }

    /// Every declared route × {no principals, unregistered (also the root admin's certificate),
    /// user, officer, auditor, officer of another namespace}: refused by the router exactly where
    /// the table says, and only there.
    @Test func theRouterEnforcesTheTableForEveryRouteAndRole() throws {
        let open = try TestNode()
        defer { open.stop() }
        let n = try TestNode()
        defer { n.stop() }
        let root = try n.client()
        let pki = TestNode.shared.pki
        var callers: [(name: String, role: PrincipalRole?, client: VSSMAPIClient)] = [("unregistered", nil, root)]
        for (name, role, namespace) in [
            ("user", PrincipalRole.user, "default"), ("officer", .officer, "default"),
            ("auditor", .auditor, "default"), ("other-officer", .officer, "other"),
        ] {
            let issued = try DevPKI.issueClient(name: name, caCertificateDER: pki.clientCACertificateDER, caKeyPEM: pki.clientCAKeyPEM)
            _ = try root.addPrincipal(
                password: pw, name: name, certificate: issued.der, role: role.rawValue, namespaces: [namespace], pin: nil)
            callers.append((name, role, try VSSMAPIClient(n.clientConfig(certDER: issued.der, keyPEM: issued.keyPEM))))
        }
        let openClient = try open.client()
        var checked = 0
        for (path, spec) in RouteTable.api.sorted(by: { $0.key < $1.key }) {
            for session in [false, true] {
                let body = #"{"adminPassword":"\#(pw)","keyName":"\#(session ? "~" + String(repeating: "ab", count: 16) + "/k" : "k")"}"#
                let (status, text) = try open.post(openClient, path, body)
                #expect(!text.contains("route access:"), "no principals: \(path) is refused by the router (\(status) \(text))")
                for caller in callers {
                    let (status, text) = try n.post(caller.client, path, body)
                    let refused = status == 403 && text.contains("route access: \(spec.access.rawValue)")
                    let expected = RouteTable.refusal(spec.access, role: caller.role, sessionKey: session) != nil
                    #expect(
                        refused == expected,
                        "\(caller.name) → \(path) (\(spec.access.rawValue), session \(session)): \(status) \(text.prefix(160))")
                    checked += 1
                }
            }
        }
        #expect(checked == RouteTable.api.count * 2 * callers.count)
        // The declared credential is the router's too: a wrong one stops a root or officer route
        // (token key) before its handler reads anything else (403, or 429 once throttled).
        for (path, spec) in RouteTable.api.sorted(by: { $0.key < $1.key }) where spec.access == .root || spec.access == .officer {
            for (client, name) in [(callers[2].client, "officer"), (openClient, "no principals")] {
                let node = name == "officer" ? n : open
                let (status, text) = try node.post(client, path, #"{"adminPassword":"wrong","keyName":"k"}"#)
                #expect(
                    (status == 403 && text.contains("Incorrect administrator password")) || status == 429,
                    "\(name) → \(path) with a wrong credential: \(status) \(text.prefix(160))")
            }
        }
    }
}
