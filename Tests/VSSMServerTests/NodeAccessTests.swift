import Testing
import VSSMCrypto
import VSSMWire

@testable import VSSMServer

/// `NodeAccess` on its own (issue 21: access split out of `KeyServiceNode`), over a `NodeStore`
/// holding the principals: the declared access of a route and its credential, decided before any
/// handler; a credential check never runs scrypt on an event loop.
@Suite struct NodeAccessTests {
    static let hash = try! PasswordHash.create(password: "root-pw")

    static func access() throws -> NodeAccess {
        let store = NodeStore(maxStateBytes: 1 << 20, audit: AuditLog(echo: false), metrics: ServiceMetrics(knownRoutes: []))
        return NodeAccess(password: try PasswordHash(parsing: hash), passwordGuard: PasswordGuard(), store: store)
    }

    static func context(_ fingerprint: String) -> RequestContext {
        var c = RequestContext(listener: .api, clientSubject: "CN=\(fingerprint)", peer: "127.0.0.1:1", authenticated: true)
        c.clientFingerprint = fingerprint
        return c
    }

    static func status(_ body: () throws(ServiceError) -> Void) -> Int {
        do { try body() } catch { return error.status }
        return 200
    }

    @Test func routesAreDecidedByTheirDeclaredAccessAndCredential() throws {
        let a = try NodeAccessTests.access()
        let sign = Array(#"{"keyName":"k","algorithm":"SHA256withECDSA"}"#.utf8)
        let generate = { (pw: String) in Array(#"{"adminPassword":"\#(pw)","keyName":"k","keyType":"MAC","keySize":32}"#.utf8) }
        // No principals (the original model): any trusted client signs; management needs the admin password.
        var c = NodeAccessTests.context("aa")
        #expect(NodeAccessTests.status { () throws(ServiceError) in try a.authorize(path: Route.asymmetricSign, body: sign, &c) } == 200)
        #expect(
            NodeAccessTests.status { () throws(ServiceError) in try a.authorize(path: Route.generateKey, body: generate("nope"), &c) }
                == 403)
        #expect(
            NodeAccessTests.status { () throws(ServiceError) in try a.authorize(path: Route.generateKey, body: generate("root-pw"), &c) }
                == 200)
        #expect(NodeAccessTests.status { () throws(ServiceError) in try a.authorize(path: "/REST/v1/undeclared", body: [], &c) } == 404)
        // On an event loop the password check is handed on (scrypt never runs there)... unless remembered.
        var loop = NodeAccessTests.context("bb")
        loop.noHashing = true
        #expect(
            NodeAccessTests.status { () throws(ServiceError) in try a.authorize(path: Route.generateKey, body: generate("other"), &loop) }
                == 0)
        // With principals: a user signs in its namespace and may not manage; a stranger may not sign.
        try a.store.mutate { s in
            s.principals["cc"] = Principal(
                name: "team-a", fingerprint: "cc", subject: "CN=cc", role: .user, namespaces: ["team-a"], pinHash: nil, createdAt: 1)
        }
        var user = NodeAccessTests.context("cc")
        #expect(NodeAccessTests.status { () throws(ServiceError) in try a.authorize(path: Route.asymmetricSign, body: sign, &user) } == 200)
        #expect(user.restricted && user.namespace == "team-a" && user.principalName == "team-a")
        var manage = NodeAccessTests.context("cc")
        #expect(
            NodeAccessTests.status { () throws(ServiceError) in try a.authorize(path: Route.generateKey, body: generate("root-pw"), &manage)
            } == 403)
        var stranger = NodeAccessTests.context("dd")
        #expect(
            NodeAccessTests.status { () throws(ServiceError) in try a.authorize(path: Route.asymmetricSign, body: sign, &stranger) } == 403)
        // Wrong admin passwords from one certificate are throttled (429), others unaffected.
        let guesser = NodeAccessTests.context("ee")
        var throttled = false
        for _ in 0..<12 {
            let s = NodeAccessTests.status { () throws(ServiceError) in try a.checkRootPassword(given: "guess", guesser) }
            if s == 429 { throttled = true }
        }
        #expect(throttled)
        #expect(
            NodeAccessTests.status { () throws(ServiceError) in try a.checkRootPassword(given: "root-pw", NodeAccessTests.context("ff")) }
                == 200)
    }
}
