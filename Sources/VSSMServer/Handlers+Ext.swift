import VSSMCrypto
import VSSMPostQuantumKeys
import VSSMWire

/// `/REST/v1/ext/` handlers: what PKCS#11 needs beyond the original API. Off with `compatOnly`.
extension KeyServiceNode {
    /// Everything this build offers (the features are cumulative: a node lists them all).
    static let extFeatures = Feature.allCases.map(\.rawValue)

    static let extRoutes: [String: Handler] = [
        Route.extCapabilities: { n, b, _ throws(ServiceError) in
            _ = try n.decode(b, Schemas.empty)
            var w = WireWriter()
            w.int64("version", ExtSchemas.version)
            w.strings("features", KeyServiceNode.extFeatures)
            return n.ok(w)
        },
        Route.extListKeys: { n, b, c throws(ServiceError) in try n.extListKeys(b, c) },
        Route.extSign: { n, b, c throws(ServiceError) in try n.extSign(b, c) },
        Route.extVerify: { n, b, c throws(ServiceError) in try n.extVerify(b, c) },
        Route.extAttest: { n, b, c throws(ServiceError) in try n.extAttest(b, c) },
        Route.extChanges: { n, b, _ throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.changesRequest)
            let current = n.store.changes.revision
            let waitMs = Int(min(r.uint64("waitMs"), UInt64(ChangeFeed.maxWaitMs)))
            if r.string("revision") != current || waitMs == 0 {
                return n.ok(KeyServiceNode.changesAnswer(current, changed: r.string("revision") != current))
            }
            var response = n.ok(WireWriter())
            response.waitForChange = (r.string("revision"), waitMs)
            return response
        },
        Route.extDecrypt: { n, b, c throws(ServiceError) in try n.extDecrypt(b, c) },
        Route.extSymmetricEncrypt: { n, b, c throws(ServiceError) in try n.extSymmetric(b, c, encrypt: true) },
        Route.extSymmetricDecrypt: { n, b, c throws(ServiceError) in try n.extSymmetric(b, c, encrypt: false) },
        // Session keys (`~owner/name`) need no admin password: they are visible to, and
        // destroyed with, the module instance that made them, and never persisted.
        Route.extGenerateKey: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.generateKeyRequest)
            try n.createGeneratedKey(r, c)
            return n.ok(WireWriter())
        },
        Route.extInjectKey: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.injectKeyRequest)
            try n.createInjectedKey(r, c)
            return n.ok(WireWriter())
        },
        Route.extReleaseSession: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, ExtSchemas.releaseSessionRequest)
            guard EphemeralStore.isOwner(r.string("owner")) else { throw .badRequest("owner must be 32 lowercase hex digits") }
            var w = WireWriter()
            w.uint64("released", UInt64(n.ephemeral.release(n.boundOwner(r.string("owner"), c))))
            return n.ok(w)
        },
        Route.extSetAttributes: { n, b, c throws(ServiceError) in try n.extSetAttributes(b, c) },
        Route.extDeleteKey: { n, b, c throws(ServiceError) in try n.extDeleteKey(b, c) },
        Route.extCopyKey: { n, b, c throws(ServiceError) in try n.extCopyKey(b, c) },
        Route.extDerive: { n, b, c throws(ServiceError) in try n.extDerive(b, c) },
        Route.extWrap: { n, b, c throws(ServiceError) in try n.extWrap(b, c) },
        Route.extUnwrap: { n, b, c throws(ServiceError) in try n.extUnwrap(b, c) },
        Route.extKeyValue: { n, b, c throws(ServiceError) in try n.extKeyValue(b, c) },
        Route.extMAC: { n, b, c throws(ServiceError) in try n.extMAC(b, c) },
        Route.extCreateObject: { n, b, c throws(ServiceError) in try n.extCreateObject(b, c) },
        Route.extUpdateObject: { n, b, c throws(ServiceError) in try n.extUpdateObject(b, c) },
        Route.extDeleteObject: { n, b, c throws(ServiceError) in try n.extDeleteObject(b, c) },
        Route.extGenerateBackup: { n, b, c throws(ServiceError) in
            _ = try n.decode(b, Schemas.generateBackupRequest)
            n.audit.info("Generating a backup of the key database (with extension data)...")
            var w = WireWriter()
            w.object("backup", try n.makeBackup(version: 2))
            return n.ok(w)
        },
        Route.extRestoreBackup: { n, b, c throws(ServiceError) in
            let r = try n.decode(b, Schemas.restoreBackupRequest)
            try n.restore(r.object("backup"), allowedVersions: [1, 2])
            return n.ok(WireWriter())
        },
        Route.extAudit: { n, b, c throws(ServiceError) in try n.extAudit(b, c) },
        Route.extBootstrapShare: { _, _, _ throws(ServiceError) in
            throw .badRequest("The key service is running: RPC key shares are taken only while it bootstraps.")
        },
        Route.extVerifyPassword: { n, b, c throws(ServiceError) in
            // C_Login: as CKU_SO the admin password; as CKU_USER a principal's PIN too.
            let r = try n.decode(b, ExtSchemas.verifyPasswordRequest)
            if r.bool("so") { try n.checkRootPassword(r, c) } else { try n.checkCredential(r, c) }
            return n.ok(WireWriter())
        },
    ]

    /// The audit trail (admin password), filtered, and its chain verified on request.
    func extAudit(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.auditRequest)
        // The root admin reads every record; an auditor (its PIN or the admin password) those of
        // its namespaces.
        var namespaces: Set<String>? = nil
        if let p = ctx.principal, p.role == .auditor {
            try checkCredential(r, ctx)
            namespaces = Set(p.namespaces)
        } else {
            try checkRootPassword(r, ctx)
        }
        var w = WireWriter()
        guard let trail = auditTrail.withLock({ $0 }) else {
            // No state directory (or still bootstrapping): the log ring is all there is.
            return ok(w)
        }
        w.bool("enabled", true)
        let principal = r.string("principal"), key = r.string("key"), since = r.string("since")
        let limit = Int(clamping: r.uint64("limit") == 0 ? 1000 : min(r.uint64("limit"), 100_000))
        func text(_ o: JSONValue, _ f: String) -> String { if case .string(let s)? = o[f] { s } else { "" } }
        // A head seen outside the trail: given (`--head SEQ:MAC`, from syslog) or etcd's anchor.
        var expect: (seq: UInt64, mac: String?)? = nil
        let head = r.string("head")
        if !head.isEmpty {
            let parts = head.split(separator: ":", maxSplits: 1).map(String.init)
            guard let seq = UInt64(parts[0]), parts.count == 1 || Hex.decode(parts[1]) != nil else {
                throw .badRequest(
                    "head: expected SEQ or SEQ:MAC (the seq= and mac= of an AUDIT line in syslog), not \"\(AuditNames.clean(head))\"")
            }
            expect = (seq, parts.count == 2 ? parts[1] : nil)
        } else if r.bool("verify"), let anchored = auditHeadInStore() {
            expect = (anchored.seq, anchored.mac)
        }
        let v = trail.verify(limit: limit, expect: expect) { o in
            if let namespaces, !namespaces.contains(text(o, "namespace")) { return false }
            if !principal.isEmpty && !text(o, "principal").contains(principal) && text(o, "fingerprint") != principal.lowercased() {
                return false
            }
            if !key.isEmpty && text(o, "key") != key { return false }
            if !since.isEmpty && text(o, "time") < since { return false }
            return true
        }
        var matching: [JSONValue] = []
        for o in v.records {
            var rec = WireWriter()
            if case .number(let s)? = o["seq"] { rec.uint64("seq", UInt64(s) ?? 0) }
            for f in ["time", "principal", "fingerprint", "route", "key", "mechanism", "namespace"] { rec.string(f, text(o, f)) }
            if case .number(let s)? = o["status"] { rec.int64("status", Int64(s) ?? 0) }
            rec.string("request", text(o, "request"))
            matching.append(rec.value)
        }
        w.array("records", matching)
        w.uint64("checked", UInt64(v.checked))
        if r.bool("verify") {
            w.string("problem", v.problem ?? "")
            w.uint64("chainStart", v.firstSeq ?? 0)
        }
        return ok(w)
    }

    /// Public information of every key and object; any mTLS client may call it (no password).
    /// Carries the feature list of `ext/capabilities` too, so a module's first listing is one round
    /// trip (it asks for the listing first; a 404 tells it the service speaks the original API only).
    func extListKeys(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.listKeysRequest)
        let owner = r.string("owner")
        _ = catchUp()  // in a cluster: what another node made a moment ago is listed too
        var keys: [JSONValue] = []
        let visible = visibleKeys(snapshot, ctx)
        try appendListing(visible, ephemeral: false, to: &keys)
        if !owner.isEmpty {
            guard EphemeralStore.isOwner(owner) else { throw .badRequest("owner must be 32 lowercase hex digits") }
            try appendListing(visibleKeys(ephemeral.keys(of: boundOwner(owner, ctx)), ctx, owner: owner), ephemeral: true, to: &keys)
        }
        var w = WireWriter()
        w.array("keys", keys)
        w.array("objects", visible.objects.values.sorted { $0.uid < $1.uid }.map { ObjectCodec.encode($0, stored: false) })
        w.strings("features", KeyServiceNode.extFeatures)
        return ok(w)
    }

    private func appendListing(_ s: KeyState, ephemeral: Bool, to keys: inout [JSONValue]) throws(ServiceError) {
        func secret(_ e: SecretKeyEntry, _ type: KeyType) -> JSONValue {
            var w = WireWriter()
            w.string("name", e.name)
            w.string("keyType", type.rawValue)
            w.uint64("keyLength", UInt64(e.key.count))
            w.int64("createdAt", e.createdAt)
            w.bytes("id", e.attributes.id)
            w.string("cipher", e.attributes.cipher ?? "")
            w.string("label", e.attributes.label ?? "")
            w.bool("ephemeral", ephemeral)
            w.string("origin", e.attributes.origin ?? "")
            w.bytes("attributes", e.attributes.pkcs11)
            return w.value
        }
        for e in s.symmetric.values.sorted(by: { $0.name < $1.name }) { keys.append(secret(e, .symmetric)) }
        for e in s.mac.values.sorted(by: { $0.name < $1.name }) { keys.append(secret(e, .mac)) }
        for e in s.asymmetric.values.sorted(by: { $0.name < $1.name }) {
            var w = WireWriter()
            w.string("name", e.name)
            w.string("keyType", KeyType.asymmetric.rawValue)
            w.string("keySpec", e.keyType)
            w.uint64("bits", UInt64(e.key.bits))
            w.string("curve", e.key.curve?.rawValue ?? "")
            w.bytes("publicKey", e.spki)
            w.int64("createdAt", e.createdAt)
            w.bytes("id", e.attributes.id)
            w.string("label", e.attributes.label ?? "")
            w.bool("ephemeral", ephemeral)
            w.string("origin", e.attributes.origin ?? "")
            w.bytes("attributes", e.attributes.pkcs11)
            keys.append(w.value)
        }
    }

    static func changesAnswer(_ revision: String, changed: Bool) -> WireWriter {
        var w = WireWriter()
        w.string("revision", revision)
        w.bool("changed", changed)
        return w
    }

    /// An ML-DSA signature checked with the key's public half (the module has no ML-DSA of its own).
    func extVerify(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.verifyRequest)
        let key = try asymmetricKey(r.string("keyName"), ctx, for: .verify)
        guard r.string("algorithm") == "ML-DSA" else { throw .invalidAlgorithm(r.string("algorithm")) }
        guard case .mldsa(let k) = key.key else {
            throw .badRequest("Algorithm ML-DSA does not fit key \(key.name), an \(key.keyType) key")
        }
        var w = WireWriter()
        w.bool(
            "valid",
            MLDSAKey.verify(
                k.parameterSet, publicKey: k.publicKey, signature: r.bytes("signature") ?? [], message: r.bytes("input") ?? [],
                context: r.bytes("context") ?? []))
        return ok(w)
    }

    static func hash(_ name: String, default d: DigestAlgorithm? = nil) throws(ServiceError) -> DigestAlgorithm {
        if name.isEmpty, let d { return d }
        guard let h = DigestAlgorithm(rawValue: name) else { throw .badRequest("Invalid hash algorithm: \(name)") }
        return h
    }

    func extSign(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.signRequest)
        let key = try asymmetricKey(r.string("keyName"), ctx, for: .sign)
        let name = r.string("algorithm")
        let scheme: SignatureScheme
        var digest: [UInt8]
        switch name {
        case "NONEwithRSA":
            try requireRSA(key)
            scheme = .pkcs1Raw
            digest = r.bytes("hashed") ?? []
        case "RSA-RAW":
            // PKCS#11 CKM_RSA_X_509 signing: the private-key operation on a modulus-sized input,
            // under CKA_SIGN (sent as a decryption before, it was judged by CKA_DECRYPT).
            try requireRSA(key)
            var w = WireWriter()
            do { w.bytes("output", try key.key.decrypt(r.bytes("hashed") ?? [], padding: .none)) } catch { throw .input(error) }
            return ok(w)
        case "EdDSA":
            // PureEdDSA signs the message itself (`input`), not a digest.
            guard key.key.kind.isEdwards else { throw .badRequest("Algorithm EdDSA does not fit key \(key.name), an \(key.keyType) key") }
            var w = WireWriter()
            do { w.bytes("output", try key.key.signEdDSA(message: r.bytes("input") ?? [])) } catch { throw .input(error) }
            return ok(w)
        case "ML-DSA":
            // Pure ML-DSA (FIPS 204) over the message itself, with the caller's context string.
            guard case .mldsa(let k) = key.key else {
                throw .badRequest("Algorithm ML-DSA does not fit key \(key.name), an \(key.keyType) key")
            }
            var w = WireWriter()
            do { w.bytes("output", try k.sign(r.bytes("input") ?? [], context: r.bytes("context") ?? [])) } catch { throw .input(error) }
            return ok(w)
        case "NONEwithDSA":
            guard key.key.kind == .dsa else { throw .badRequest("Algorithm \(name) does not fit key \(key.name), an \(key.keyType) key") }
            scheme = .dsa
            digest = r.bytes("hashed") ?? []
        case "NONEwithECDSA":
            guard key.key.kind == .ec else { throw .badRequest("Algorithm \(name) does not fit key \(key.name), an \(key.keyType) key") }
            scheme = .ecdsa
            digest = r.bytes("hashed") ?? []
        default:
            let parts = name.split(separator: "with", maxSplits: 1, omittingEmptySubsequences: false)
            guard name.hasPrefix("SHA"), parts.count == 2 else { throw .invalidAlgorithm(name) }
            let hash = try KeyServiceNode.hash(String(parts[0]))
            let rest = parts[1]
            digest = KeyServiceNode.digest(r, hash)
            switch rest {
            case "RSA":
                try requireRSA(key)
                scheme = .pkcs1(hash)
            case "RSA/PSS":
                try requireRSA(key)
                let salt = r.has("saltLength") ? Int(min(r.uint64("saltLength"), 1 << 16)) : hash.size
                scheme = .pss(hash, mgf1: try KeyServiceNode.hash(r.string("mgf1Hash"), default: hash), saltLength: salt)
            case "ECDSA":
                guard key.key.kind == .ec else {
                    throw .badRequest("Algorithm \(name) does not fit key \(key.name), an \(key.keyType) key")
                }
                // The hash is named (the audit record says which): a digest of another size is not it.
                if (r.bytes("input") ?? []).isEmpty, digest.count != hash.size {
                    throw .badRequest(
                        "\(name): the hashed input must be a \(hash.rawValue) digest (\(hash.size) bytes), not \(digest.count) bytes")
                }
                scheme = .ecdsa
            default:
                throw .invalidAlgorithm(name)
            }
            if case .pkcs1 = scheme, digest.count != hash.size { throw .badRequest("crypto/rsa: input must be hashed message") }
            if case .pss = scheme, digest.count != hash.size { throw .badRequest("crypto/rsa: input must be hashed message") }
        }
        var w = WireWriter()
        do { w.bytes("output", try key.key.sign(digest: digest, scheme: scheme)) } catch { throw .input(error) }
        return ok(w)
    }

    func extDecrypt(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.decryptRequest)
        let key = try asymmetricKey(r.string("keyName"), ctx, for: .decrypt)
        let padding: EncryptionPadding
        switch r.string("algorithm") {
        case "RSA": padding = .pkcs1
        case "RSA-RAW": padding = .none  // PKCS#11 CKM_RSA_X_509: input is the modulus size
        case "RSA-OAEP":
            let h = try KeyServiceNode.hash(r.string("hash"), default: .sha1)
            padding = .oaep(h, mgf1: try KeyServiceNode.hash(r.string("mgf1Hash"), default: h), label: r.bytes("label") ?? [])
        default: throw .invalidAlgorithm(r.string("algorithm"))
        }
        try requireRSA(key)
        var w = WireWriter()
        do { w.bytes("output", try key.key.decrypt(r.bytes("input") ?? [], padding: padding)) } catch { throw .input(error) }
        return ok(w)
    }

    func extSymmetric(_ body: [UInt8], _ ctx: RequestContext, encrypt: Bool) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.symmetricRequest)
        let key = try symmetricKey(r.string("keyName"), ctx, for: encrypt ? .encrypt : .decrypt)
        let alg = try SymmetricAlgorithm(r.string("algorithm"))
        let tagLength = r.has("tagLength") ? Int(min(r.uint64("tagLength"), 64)) : 16
        guard (4...16).contains(tagLength) else { throw .badRequest("tagLength must be 4 to 16 bytes") }
        let iv = r.bytes("iv")
        if let iv {
            let expected = alg.mode == .gcm ? 1...128 : alg.cipher.blockSize...alg.cipher.blockSize
            guard alg.mode != .ecb else { throw .badRequest("ECB takes no IV") }
            guard expected.contains(iv.count) else {
                throw .badRequest(
                    "IV must be \(expected.lowerBound == expected.upperBound ? "\(expected.lowerBound)" : "1 to 128") bytes for \(alg.mode.rawValue)"
                )
            }
        }
        let cipher = try blockCipher(key, alg)
        let input = r.bytes("input") ?? []
        let aad = r.bytes("aad") ?? []
        var w = WireWriter()
        if encrypt {
            w.bytes("output", try symmetricEncrypt(alg, cipher: cipher, input: input, iv: iv, aad: aad, tagLength: tagLength))
        } else {
            w.bytes("output", try symmetricDecrypt(alg, cipher: cipher, input: input, iv: iv, aad: aad, tagLength: tagLength) ?? [])
        }
        return ok(w)
    }

    /// CMAC and CBC-MAC with an AES key (PKCS#11 CKM_AES_CMAC, CKM_AES_MAC), and `HMAC/<hash>`
    /// with a MAC key for any hash this node knows (the original's `hmac/create` has four).
    func extMAC(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.macRequest)
        let algorithm = r.string("algorithm")
        if algorithm.hasPrefix("HMAC/") {
            let key = try macKey(r.string("keyName"), ctx, for: .mac)
            let hash = try KeyServiceNode.hash(String(algorithm.dropFirst(5)))
            let input = r.bytes("input") ?? []
            guard input.count <= config.limits.maxCryptoInputBytes else { throw .tooLarge("Input is larger than the crypto input limit.") }
            var w = WireWriter()
            w.bytes("output", hash.hmac(key: key.key, data: input))
            return ok(w)
        }
        let key = try symmetricKey(r.string("keyName"), ctx, for: .mac)
        guard (key.attributes.cipher ?? "AES") == "AES", [16, 24, 32].contains(key.key.count) else {
            throw .badRequest("AES MACs need an AES key")
        }
        let input = r.bytes("input") ?? []
        guard input.count <= config.limits.maxCryptoInputBytes else { throw .tooLarge("Input is larger than the crypto input limit.") }
        var mac: [UInt8]
        do {
            let cipher = try BlockCipher(kind: .aes, key: key.key)
            switch r.string("algorithm") {
            case "AES-CMAC": mac = try cipher.cmac(input)
            case "AES-MAC": mac = try cipher.cbcMAC(input)
            default: throw ServiceError.invalidAlgorithm(r.string("algorithm"))
            }
        } catch { throw KeyServiceNode.serviceError(error) }
        let length = r.uint64("length")
        if length > 0 {
            guard length <= 16 else { throw .badRequest("length must be 1 to 16 bytes") }
            mac = Array(mac.prefix(Int(length)))
        }
        var w = WireWriter()
        w.bytes("output", mac)
        return ok(w)
    }

    func extSetAttributes(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.setAttributesRequest)
        let given = r.string("keyName")
        let name = try storedName(given, ctx)
        let type = try KeyPolicy.keyType(r.string("keyType"))
        let id = r.bytes("id")
        let pkcs11 = r.bytes("attributes")
        let label = r.has("label") ? r.string("label") : nil
        if let pkcs11 {
            let current = try keyMaterial(given, r.string("keyType"), ctx, for: .changeAttributes).attributes.pkcs11
            try KeyServiceNode.checkFlagChange(from: current, to: pkcs11)
        }
        func change(_ a: inout KeyAttributes) {
            a.id = id
            if let pkcs11 { a.pkcs11 = pkcs11 }
            // CKA_LABEL: a token key is listed under its name unless a label is stored.
            if let label { a.label = label }
        }
        if name.startsWithByte("~") {
            // A session key's label is its CKA_LABEL (token keys are labelled by their name).
            let done = ephemeral.updateAttributes(name, type: type) { a in change(&a) }
            guard done else { throw .invalidKeyName(given) }
            return ok(WireWriter())
        }
        try mutate { (s: inout KeyState) throws(ServiceError) in
            guard s.updateAttributes(name, type: type, change) else { throw .invalidKeyName(given) }
        }
        return ok(WireWriter())
    }

    /// Copies a key under a new name, the key bytes staying in the service (PKCS#11
    /// C_CopyObject, e.g. a session key made a token key as Java's keystore does). The copy takes
    /// the request's CKA_ID, label and attributes; its origin is the source's.
    func extCopyKey(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.copyKeyRequest)
        let from = r.string("keyName")
        let to = try newStoredName(r.string("newName"), ctx)
        let type = try KeyPolicy.keyType(r.string("keyType"))
        if !from.startsWithByte("~") || !to.startsWithByte("~") { try checkPassword(r, ctx) }
        var attributes: KeyAttributes
        var secret: [UInt8]? = nil
        var asym: AsymmetricKeyEntry? = nil
        switch type {
        case .asymmetric:
            let e = try asymmetricKey(from, ctx, for: .copy)
            // A stored key meets the stored-key policy (a session RSA-1024 key stays a session key).
            if !to.startsWithByte("~") { try KeyPolicy.checkAsymmetric(e.key, minStored: config.limits.minStoredRSABits) }
            asym = e
            attributes = e.attributes
        case .symmetric:
            let e = try symmetricKey(from, ctx, for: .copy)
            secret = e.key
            attributes = e.attributes
        case .mac:
            let e = try macKey(from, ctx, for: .copy)
            secret = e.key
            attributes = e.attributes
        }
        attributes.id = r.bytes("id")
        attributes.label = r.has("label") ? r.string("label") : nil
        if let a = r.bytes("attributes") {
            try KeyServiceNode.checkFlagChange(from: attributes.pkcs11, to: a)
            attributes.pkcs11 = a
        }
        audit.info("Copying the \(type.rawValue) key \(from) to \(to)...")
        try store(
            NewKey(type: type, name: to, attributes: attributes, client: ctx.clientFingerprint), secret: secret, asym: asym?.key,
            pkcs8: asym?.pkcs8)
        return ok(WireWriter())
    }

    /// Deletes a key; its tombstone keeps peers and backups that still hold it from bringing it back.
    func extDeleteKey(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.deleteKeyRequest)
        let given = r.string("keyName")
        let name = try storedName(given, ctx)
        let type = try KeyPolicy.keyType(r.string("keyType"))
        if name.startsWithByte("~") {
            guard ephemeral.delete(name, type: type) else { throw .invalidKeyName(given) }
            return ok(WireWriter())
        }
        audit.info("Deleting the \(type.rawValue) key named \(name)...")
        let now = try stampMillis()
        try mutate { (s: inout KeyState) throws(ServiceError) in
            guard s.remove(name, type: type) else { throw .invalidKeyName(given) }
            s.bury(Tombstone.id(type, name), at: now)
        }
        return ok(WireWriter())
    }

    func extCreateObject(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.createObjectRequest)
        let cls = r.string("class")
        guard ["CERTIFICATE", "DATA", "PUBLIC_KEY"].contains(cls) else {
            throw .badRequest("Invalid object class: \(cls) (CERTIFICATE, DATA or PUBLIC_KEY)")
        }
        let value = r.bytes("value") ?? []
        guard value.count <= ServiceLimits.maxObjectBytes else { throw .tooLarge("Object value is larger than 1 MiB.") }
        if cls == "CERTIFICATE" {
            do { _ = try X509Info.subjectPublicKeyInfo(certificateDER: value) } catch {
                throw .badRequest("CERTIFICATE value is not a DER X.509 certificate")
            }
        }
        // A key pair's public half kept after its private key went (PKCS#11: the halves are
        // objects of their own): a DER SubjectPublicKeyInfo.
        if cls == "PUBLIC_KEY" {
            do { _ = try PublicKey(spki: value) } catch { throw .badRequest("PUBLIC_KEY value is not a DER SubjectPublicKeyInfo") }
        }
        let uid = SecureRandom.hex(16)
        let obj = StoredObject(
            uid: uid, objectClass: cls, label: r.string("label"), id: r.bytes("id") ?? [], value: value,
            application: r.string("application"), createdAt: try stampMillis(),
            namespace: ctx.restricted && ctx.namespace != Namespace.defaultName ? ctx.namespace : nil)
        audit.info("Storing a \(cls) object labelled \(obj.label)...")
        try mutate { (s: inout KeyState) throws(ServiceError) in s.objects[uid] = obj }
        var w = WireWriter()
        w.string("uid", uid)
        return ok(w)
    }

    func extUpdateObject(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.updateObjectRequest)
        let uid = r.string("uid")
        try mutate { (s: inout KeyState) throws(ServiceError) in
            try checkObjectNamespace(s.objects[uid], uid: uid, ctx)
            guard var o = s.objects[uid] else { throw .notFound("No object with uid \(uid).") }
            if r.has("label") { o.label = r.string("label") }
            if r.has("id") { o.id = r.bytes("id") ?? [] }
            s.objects[uid] = o
        }
        return ok(WireWriter())
    }

    func extDeleteObject(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, ExtSchemas.deleteObjectRequest)
        let uid = r.string("uid")
        let now = try stampMillis()
        try mutate { (s: inout KeyState) throws(ServiceError) in
            try checkObjectNamespace(s.objects[uid], uid: uid, ctx)
            guard s.objects.removeValue(forKey: uid) != nil else { throw .notFound("No object with uid \(uid).") }
            s.bury(Tombstone.object(uid), at: now)
        }
        return ok(WireWriter())
    }
}
