import VSSMClient
import VSSMCrypto
import VSSMPostQuantumKeys
import VSSMWire

/// Key sizes we accept (the original accepted anything, from 0-byte AES keys to 2^40-byte keys that
/// killed the process).
enum KeyPolicy {
    static let symmetricSizes: Set<UInt64> = [8, 16, 24, 32]
    static let macSizes: ClosedRange<UInt64> = 16...1024
    /// Session keys (memory only, gone with the module instance) may also be RSA-1024, which
    /// PKCS#11 applications and test suites still ask for; stored keys stay at 2048 and above.
    static let sessionRSABits: ClosedRange<UInt64> = 1024...8192
    /// Stored keys: from `limits.minStoredRSABits` (2048 unless configured lower) to 8192 bits.
    static func rsaRange(session: Bool, minStored: Int = 2048) -> ClosedRange<UInt64> {
        session ? sessionRSABits : UInt64(clamping: max(1024, minStored))...8192
    }
    static let maxNameBytes = 256

    static func checkName(_ name: String) throws(ServiceError) {
        guard !name.isEmpty else { throw .badRequest("Key name cannot be blank.") }
        guard name.utf8.count <= maxNameBytes else { throw .badRequest("Key name is longer than \(maxNameBytes) bytes.") }
        guard !name.startsWithByte("~") else { throw .badRequest("Key names starting with ~ are reserved for session keys.") }
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw .badRequest("Key name contains control characters.")
        }
        guard !name.startsWithCombiningMark else { throw .badRequest("Key name starts with a combining mark.") }
    }

    /// A name for a new key: a token key name, or a session key name (`~owner/name`, ext routes only
    /// reach here with one).
    static func checkNewName(_ name: String) throws(ServiceError) {
        // `@ns/name` is how a namespace's keys are stored (`Namespace`): no caller makes one directly.
        guard !name.startsWithByte("@") else { throw .badRequest("Key names starting with @ are reserved for namespaces.") }
        if name.startsWithByte("~") { try EphemeralStore.checkName(name) } else { try checkName(name) }
    }

    static func keyType(_ text: String) throws(ServiceError) -> KeyType {
        guard let t = KeyType(rawValue: text) else { throw .badRequest("Invalid key type: \(text)") }
        return t
    }

    /// Cipher of a symmetric key from its length, unless the caller said (24 bytes: AES-192 or 3DES).
    static func cipher(forLength n: Int, requested: String?) throws(ServiceError) -> String {
        if let requested, !requested.isEmpty {
            guard let kind = BlockCipherKind(rawValue: requested) else { throw .badRequest("Invalid cipher: \(requested)") }
            guard kind.validKeySize(n) else { throw .badRequest("A \(requested) key cannot be \(n) bytes long.") }
            return requested
        }
        switch n {
        case 8: return "DES"
        case 16, 24, 32: return "AES"
        default: throw .badRequest("Unsupported symmetric key size: \(n) bytes (16, 24 or 32 for AES, 8 for DES, 24 for 3DES)")
        }
    }

    static func checkMacSize(_ n: UInt64, session: Bool = false) throws(ServiceError) {
        // A session key may be any generic secret (PKCS#11 derive and extract make short ones).
        let range: ClosedRange<UInt64> = session ? 1...1024 : macSizes
        guard range.contains(n) else { throw .badRequest("Unsupported MAC key size: \(n) bytes (\(range.lowerBound) to 1024)") }
    }

    static func checkAsymmetric(_ key: AsymmetricKey, session: Bool = false, minStored: Int = 2048) throws(ServiceError) {
        switch key.kind {
        case .rsa:
            let range = rsaRange(session: session, minStored: minStored)
            guard range.contains(UInt64(key.bits)) else {
                throw .badRequest("Unsupported RSA key size: \(key.bits) (\(range.lowerBound) to 8192 bits)")
            }
        case .ed25519, .ed448, .mldsa65, .mldsa87, .mlkem768, .mlkem1024:
            break
        case .dsa:
            // Legacy: 1024-bit domains for session keys only (as RSA-1024).
            guard key.bits >= (session ? 1024 : 2048) else {
                throw .badRequest("Unsupported DSA key size: \(key.bits) (2048 or 3072 bits; 1024 for session keys)")
            }
        case .ec:
            guard let curve = key.curve, curve.storable || session else {
                throw .badRequest("Unsupported EC curve (P-224, P-256, P-384 or P-521; P-192 for session keys)")
            }
        }
    }
}

extension KeyServiceNode {
    struct NewKey {
        var type: KeyType
        var name: String
        var attributes = KeyAttributes()
        /// The creating client's certificate fingerprint (session keys count against its quota).
        var client = "-"
    }

    /// Generates key material outside any lock (RSA-8192 takes many seconds).
    func generateMaterial(
        type: KeyType, spec: String, size: UInt64, cipher requested: String?, session: Bool = false
    ) throws(ServiceError) -> (secret: [UInt8]?, asym: AsymmetricKey?, cipher: String?) {
        switch type {
        case .symmetric where requested == "3DES" && size == 16:
            // Two-key Triple-DES (PKCS#11 CKK_DES2): K1 K2 K1, a 24-byte 3DES key.
            let k = SecureRandom.bytes(16)
            return (k + k.prefix(8), nil, "3DES")
        case .symmetric:
            guard KeyPolicy.symmetricSizes.contains(size) else {
                throw .badRequest("Unsupported symmetric key size: \(size) bytes (16, 24 or 32 for AES, 8 for DES, 24 for 3DES)")
            }
            let cipher = try KeyPolicy.cipher(forLength: Int(size), requested: requested)
            return (SecureRandom.bytes(Int(size)), nil, cipher)
        case .mac:
            try KeyPolicy.checkMacSize(size)
            return (SecureRandom.bytes(Int(size)), nil, nil)
        case .asymmetric:
            if let set = MLDSAParameterSet(rawValue: spec), !config.compatOnly {
                // Post-quantum signing keys (FIPS 204) are an extension, as Edwards keys are.
                do { return (nil, .mldsa(try MLDSAKey.generate(set)), nil) } catch { throw .internalError(error.message) }
            }
            if let set = MLKEMParameterSet(rawValue: spec), !config.compatOnly {
                do { return (nil, .mlkem(try MLKEMKey.generate(set)), nil) } catch { throw .internalError(error.message) }
            }
            switch spec {
            case "RSA":
                let range = KeyPolicy.rsaRange(session: session, minStored: config.limits.minStoredRSABits)
                guard range.contains(size) else {
                    throw .badRequest("Unsupported RSA key size: \(size) (\(range.lowerBound) to 8192 bits)")
                }
                do { return (nil, .classic(try PrivateKey.generateRSA(bits: Int(size))), nil) } catch {
                    throw .internalError(error.message)
                }
            case "EC":
                guard let curve = NamedCurve(bits: Int(size)), curve.storable || session else {
                    throw .badRequest("Unsupported ECDSA key size: \(size)")
                }
                do { return (nil, .classic(try PrivateKey.generateEC(curve)), nil) } catch { throw .internalError(error.message) }
            case "ED25519" where !config.compatOnly, "ED448" where !config.compatOnly:
                // Edwards keys are an extension (the original knows none: its peers cannot sync them).
                do { return (nil, .classic(try PrivateKey.generateEdwards(spec == "ED25519" ? .ed25519 : .ed448)), nil) } catch {
                    throw .internalError(error.message)
                }
            default:
                throw .badRequest("Unsupported key spec: \(spec)")
            }
        }
    }

    /// Stores a new key; 409 when the name exists in that type's namespace.
    func store(_ new: NewKey, secret: [UInt8]?, asym: AsymmetricKey?, pkcs8: [UInt8]? = nil) throws(ServiceError) {
        try checkReadable(new.attributes.pkcs11, session: EphemeralStore.owner(of: new.name) != nil)
        // A session key stays on this node (memory): its time orders nothing across the cluster.
        let now = EphemeralStore.owner(of: new.name) != nil ? KeyServiceNode.nowMillis() : try stampMillis()
        let entry: NewEntry
        if let asym {
            entry = .asymmetric(
                AsymmetricKeyEntry(
                    name: new.name, createdAt: now, keyType: asym.kind.rawValue, pkcs8: pkcs8 ?? asym.pkcs8DER,
                    key: asym, spki: asym.spkiDER, attributes: new.attributes))
        } else {
            guard new.type != .asymmetric else { throw .internalError("no key material") }
            entry = .secret(SecretKeyEntry(name: new.name, createdAt: now, key: secret ?? [], attributes: new.attributes))
        }
        if EphemeralStore.owner(of: new.name) != nil {
            try ephemeral.insert(entry, type: new.type, client: new.client)
        } else {
            try mutate { (s: inout KeyState) throws(ServiceError) in try s.insert(entry, type: new.type) }
        }
    }

    func generateKey(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.generateKeyRequest)
        // The credential was checked by the router (`RouteTable`: officer); session keys are an extension.
        try KeyPolicy.checkName(r.string("keyName"))
        try createGeneratedKey(r, ctx)
        return ok(WireWriter())
    }

    /// Base and extension generate requests alike: the extension fields (`id`, `cipher`, `label`,
    /// `attributes`) are simply absent from a base request.
    func createGeneratedKey(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) {
        let name = try newStoredName(r.string("keyName"), ctx)
        let type = try KeyPolicy.keyType(r.string("keyType"))
        if state.withLock({ $0.contains(name, type: type) }) { throw .conflict("Key with name \(r.string("keyName")) already exists.") }
        audit.info("Generating a \(type.rawValue) key named \(name)...")
        var m = (secret: [UInt8]?.none, asym: AsymmetricKey?.none, cipher: String?.none)
        if type == .asymmetric && r.string("keySpec") == "DSA" && r.has("dsaP") && !config.compatOnly {
            // DSA keys on the caller's domain parameters (PKCS#11 CKA_PRIME/SUBPRIME/BASE).
            let key: AsymmetricKey
            do {
                key = .classic(try PrivateKey.generateDSA(p: r.bytes("dsaP") ?? [], q: r.bytes("dsaQ") ?? [], g: r.bytes("dsaG") ?? []))
            } catch {
                throw .input(error)
            }
            try KeyPolicy.checkAsymmetric(key, session: name.hasPrefix("~"), minStored: config.limits.minStoredRSABits)
            m.asym = key
        } else {
            m = try generateMaterial(
                type: type, spec: r.string("keySpec"), size: r.uint64("keySize"), cipher: r.string("cipher"), session: name.hasPrefix("~"))
        }
        var attributes = KeyServiceNode.requestedAttributes(r, origin: "generated")
        attributes.cipher = m.cipher
        try store(NewKey(type: type, name: name, attributes: attributes, client: ctx.clientFingerprint), secret: m.secret, asym: m.asym)
    }

    /// The key attributes a create request carries (extension fields; absent in base requests).
    static func requestedAttributes(_ r: WireObject, origin: String) -> KeyAttributes {
        KeyAttributes(id: r.bytes("id"), label: r.has("label") ? r.string("label") : nil, origin: origin, pkcs11: r.bytes("attributes"))
    }

    func injectKey(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.injectKeyRequest)
        try KeyPolicy.checkName(r.string("keyName"))
        try createInjectedKey(r, ctx)
        return ok(WireWriter())
    }

    func createInjectedKey(_ r: WireObject, _ ctx: RequestContext) throws(ServiceError) {
        let name = try newStoredName(r.string("keyName"), ctx)
        let type = try KeyPolicy.keyType(r.string("keyType"))
        let material = r.bytes("key") ?? []
        var attributes = KeyServiceNode.requestedAttributes(r, origin: "injected")
        audit.info("Injecting a \(type.rawValue) key named \(name)...")
        switch type {
        case .symmetric:
            attributes.cipher = try KeyPolicy.cipher(forLength: material.count, requested: r.string("cipher"))
            try store(NewKey(type: type, name: name, attributes: attributes, client: ctx.clientFingerprint), secret: material, asym: nil)
        case .mac:
            try KeyPolicy.checkMacSize(UInt64(material.count), session: name.hasPrefix("~"))
            try store(NewKey(type: type, name: name, attributes: attributes, client: ctx.clientFingerprint), secret: material, asym: nil)
        case .asymmetric:
            let key: AsymmetricKey
            do { key = try AsymmetricKey(pkcs8: material) } catch {
                throw .badRequest("x509: failed to parse private key: \(error.message)")
            }
            try KeyPolicy.checkAsymmetric(key, session: name.hasPrefix("~"), minStored: config.limits.minStoredRSABits)
            try store(
                NewKey(type: type, name: name, attributes: attributes, client: ctx.clientFingerprint), secret: nil, asym: key,
                pkcs8: material)
        }
    }

    func listKeys(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.listKeysRequest)
        try checkCredential(r, ctx)
        audit.info("Listing keys in the key database...")
        _ = catchUp()
        let s = visibleKeys(snapshot, ctx)
        func secret(_ e: SecretKeyEntry) -> JSONValue {
            var w = WireWriter()
            w.string("name", e.name)
            w.int64("createdAt", e.createdAt)
            w.uint64("keyLength", UInt64(e.key.count))
            return w.value
        }
        func asym(_ e: AsymmetricKeyEntry) -> JSONValue {
            var w = WireWriter()
            w.string("name", e.name)
            w.int64("createdAt", e.createdAt)
            w.string("keySpec", e.keyType)
            w.bytes("publicKey", e.spki)
            return w.value
        }
        var w = WireWriter()
        let name = r.string("keyName")
        if name.isEmpty {
            // All keys of all types; sorted by name (the original used random map order).
            w.array("symmetricKey", s.symmetric.values.sorted { $0.name < $1.name }.map(secret))
            w.array("asymmetricKey", s.asymmetric.values.sorted { $0.name < $1.name }.map(asym))
            w.array("macKey", s.mac.values.sorted { $0.name < $1.name }.map(secret))
            return ok(w)
        }
        guard let type = KeyType(rawValue: r.string("keyType")) else {
            throw .badRequest("Unsupported key type: \(r.string("keyType"))")
        }
        let notFound = ServiceError.notFound("No key by that name exists.")
        switch type {
        case .symmetric:
            guard let e = s.symmetric[name] else { throw notFound }
            w.array("symmetricKey", [secret(e)])
        case .asymmetric:
            guard let e = s.asymmetric[name] else { throw notFound }
            w.array("asymmetricKey", [asym(e)])
        case .mac:
            guard let e = s.mac[name] else { throw notFound }
            w.array("macKey", [secret(e)])
        }
        return ok(w)
    }

    func getLogs(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        _ = try decode(body, Schemas.getLogsRequest)
        audit.info("Retrieving logs...")
        var w = WireWriter()
        w.strings("log", audit.lines)
        return ok(w)
    }

    // MARK: - Backup (original BackupBlob format, so Go and Swift nodes restore each other's)

    /// encryptionKey = RSA-OAEP(SHA-256, MGF1-SHA-256) of a random AES-256 key under the RPC
    /// certificate's key; encryptedState = nonce(12) || AES-256-GCM(SynchronizeStateResponse JSON) || tag.
    /// Version 1 is the original's format (keys only); version 2 (extension) adds our `ext` member
    /// (CKA_IDs, ciphers, certificate and data objects) and is refused cleanly by a Go node.
    func makeBackup(version: Int64) throws(ServiceError) -> JSONValue {
        guard let rpc = rpcKey, let pub = rpc.publicKey else { throw .unavailable("The key service is bootstrapping.") }
        guard rpc.kind == .rsa else { throw .badRequest("Backups need an RSA RPC certificate.") }
        var plain = StateCodec.encode(snapshot, extensions: version == 2)
        defer { zeroize(&plain) }
        var dataKey = SecureRandom.bytes(32)
        defer { zeroize(&dataKey) }
        let nonce = SecureRandom.bytes(12)
        var blob = WireWriter()
        do {
            let (ct, tag) = try BlockCipher(kind: .aes, key: dataKey).gcmSeal(nonce: nonce, aad: [], plain)
            blob.bytes("encryptionKey", try pub.encrypt(dataKey, padding: .oaep(.sha256, mgf1: .sha256, label: [])))
            blob.int64("version", version)
            blob.int64("timestamp", KeyServiceNode.nowMillis())
            blob.bytes("encryptedState", nonce + ct + tag)
            // Which deployment can open it (extension; the original's version 1 has no such member).
            if version == 2 { blob.bytes("rpcCertificateSha256", DigestAlgorithm.sha256.hash(config.rpcCertificate)) }
        } catch { throw .internalError("backup failed: \(error.message)") }
        return blob.value
    }

    func generateBackup(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        _ = try decode(body, Schemas.generateBackupRequest)
        audit.info("Generating a backup of the key database...")
        var w = WireWriter()
        w.object("backup", try makeBackup(version: 1))
        return ok(w)
    }

    /// Opens and merges a BackupBlob; `allowedVersions` is [1] on the base route, [1, 2] on ext.
    func restore(_ blob: WireObject?, allowedVersions: Set<Int64>) throws(ServiceError) {
        audit.info("Restoring from a backup of the key database...")
        guard let blob else { throw .badRequest("Missing backup.") }
        let version = blob.int64("version")
        guard allowedVersions.contains(version) else { throw .badRequest("Unsupported backup version.") }
        guard let rpc = rpcKey else { throw .unavailable("The key service is bootstrapping.") }
        guard rpc.kind == .rsa else { throw .badRequest("Backups need an RSA RPC certificate.") }
        var dataKey: [UInt8]
        do { dataKey = try rpc.decrypt(blob.bytes("encryptionKey") ?? [], padding: .oaep(.sha256, mgf1: .sha256, label: [])) } catch {
            let mine = Endpoint.fingerprintText(DigestAlgorithm.sha256.hash(config.rpcCertificate))
            if let theirs = blob.bytes("rpcCertificateSha256"), theirs.count == 32 {
                throw .badRequest(
                    """
                    This backup is encrypted to another deployment's RPC key (RPC certificate \(Endpoint.fingerprintText(theirs)); \
                    this node's is \(mine)): restore it into that deployment, or into a node bootstrapped with that deployment's RPC key.
                    """)
            }
            throw .badRequest(
                """
                This backup cannot be opened with this node's RPC key (RPC certificate \(mine)): it was made by another \
                deployment, or it is damaged. Restore it into the deployment that made it.
                """)
        }
        defer { zeroize(&dataKey) }
        let sealed = blob.bytes("encryptedState") ?? []
        guard sealed.count >= 12 + 16 else { throw .badRequest("encryptedState is too short (\(sealed.count) bytes).") }
        var plain: [UInt8]
        do {
            let aes = try BlockCipher(kind: .aes, key: dataKey)
            plain = try aes.gcmOpen(
                nonce: Array(sealed.prefix(12)), aad: [], Array(sealed.dropFirst(12).dropLast(16)), tag: Array(sealed.suffix(16)))
        } catch { throw .badRequest(error.message) }
        defer { zeroize(&plain) }
        let decoded: StateCodec.Decoded
        do { decoded = try StateCodec.decode(plain, allowExtensions: version == 2) } catch {
            throw .badRequest("Unable to decrypt backup.")
        }
        for name in decoded.skipped { audit.error("Backup entry \(name) is not a usable private key; skipped.") }
        let (admissible, refused) = KeyPolicy.admissible(decoded.state, nowMs: try stampMillis())
        for why in refused { audit.error("Backup entry refused: \(why)") }
        let taken = try mutate { (s: inout KeyState) throws(ServiceError) in merge(admissible, into: &s) }
        audit.info("Restored \(taken.count) of \(decoded.state.keyCount) keys from the backup.")
    }

    func restoreBackup(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.restoreBackupRequest)
        try restore(r.object("backup"), allowedVersions: [1])
        return ok(WireWriter())
    }

    // MARK: - Internal sync (8082; callers hold the RPC certificate)

    func synchronizeState(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        _ = try decode(body, Schemas.synchronizeStateRequest)
        return ServiceResponse(status: 200, body: StateCodec.encode(snapshot, extensions: false))
    }

    func synchronizeStatePush(_ body: [UInt8], _ ctx: RequestContext) throws(ServiceError) -> ServiceResponse {
        let r = try decode(body, Schemas.synchronizeStatePushRequest)
        guard let message = r.object("synchronizeStateMessage") else { throw .badRequest("Missing synchronizeStateMessage.") }
        audit.info("Received state synchronization push.")
        try absorb(StateCodec.decodeKeys(message), from: ctx.peer)
        return ok(WireWriter())
    }

    /// Merges keys from a peer; persists when anything was taken (no push back: avoids ping-pong).
    func absorb(_ decoded: StateCodec.Decoded, from peer: String) throws(ServiceError) {
        let (admissible, refused) = KeyPolicy.admissible(decoded.state, nowMs: KeyServiceNode.nowMillis())
        for why in refused { audit.error("Synchronization entry from \(peer) refused: \(why)") }
        let cap = config.limits.maxStateBytes
        let (taken, overCap, otherChange): ([String], Bool, Bool) = state.withLock { s in
            var next = s
            let taken = merge(admissible, into: &next)
            guard next.estimatedBytes <= cap else { return ([], true, false) }
            let other =
                next.principalsVersion != s.principalsVersion || next.objects.count != s.objects.count
                || next.tombstones != s.tombstones || next.keyCount < s.keyCount
            s = next
            return (taken, false, other)
        }
        if otherChange { audit.info("Principals or objects updated from synchronization with \(peer).") }
        if overCap {
            audit.error("Synchronization from \(peer) not merged: the key store would exceed its limit of \(cap) bytes.")
        }
        for name in taken { audit.info("New key added from synchronization message: \(name)") }
        for name in decoded.skipped { audit.error("Synchronization entry \(name) from \(peer) is not a usable private key; skipped.") }
        if !taken.isEmpty || otherChange { try persist() }
    }
}
