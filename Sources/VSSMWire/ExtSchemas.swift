/// Our extensions under `/REST/v1/ext/` (absent on the original Go VSSM, which answers 404).
/// Same jsonpb conventions as the base API. Discovered with `ext/capabilities`.
public enum ExtSchemas {
    public static let version: Int64 = 1

    public static let capabilitiesResponse = MessageSchema(
        "ExtCapabilitiesResponse",
        [
            .init("version", .int64), .init("features", .repeatedString),
        ])

    /// A key as the module needs it: public material and PKCS#11 attributes, no secrets.
    public static let key = MessageSchema(
        "ExtKey",
        [
            .init("name", .string), .init("keyType", .string), .init("keySpec", .string),
            .init("keyLength", .uint64), .init("bits", .uint64), .init("curve", .string),
            .init("publicKey", .bytes), .init("createdAt", .int64), .init("id", .bytes), .init("cipher", .string),
            .init("label", .string), .init("ephemeral", .bool), .init("origin", .string), .init("attributes", .bytes),
        ])
    public static let object = MessageSchema(
        "ExtObject",
        [
            .init("uid", .string), .init("class", .string), .init("label", .string), .init("id", .bytes),
            .init("value", .bytes), .init("application", .string), .init("createdAt", .int64),
        ])
    /// `owner`: also list that module instance's session keys (and renew their lease).
    public static let listKeysRequest = MessageSchema("ExtListKeysRequest", [.init("owner", .string)])
    /// Drops every session key of `owner` (C_Finalize).
    public static let releaseSessionRequest = MessageSchema("ExtReleaseSessionRequest", [.init("owner", .string)])
    public static let releaseSessionResponse = MessageSchema("ExtReleaseSessionResponse", [.init("released", .uint64)])
    public static let listKeysResponse = MessageSchema(
        "ExtListKeysResponse",
        [
            .init("keys", .repeatedMessage(key)), .init("objects", .repeatedMessage(object)),
            // The same list as ext/capabilities (absent from services before it was added).
            .init("features", .repeatedString),
        ])

    /// algorithm: `SHA<n>withRSA`, `SHA<n>withRSA/PSS`, `SHA<n>withECDSA` (n = 1, 224, 256, 384, 512),
    /// `EdDSA` (PureEdDSA over `input`, the message, with an ED25519 or ED448 key),
    /// `NONEwithRSA` (PKCS#1 v1.5 padding over `hashed` as given, e.g. a DigestInfo),
    /// `NONEwithECDSA` (`hashed` signed as given). PSS: `saltLength` (default: hash length),
    /// `mgf1Hash` (default: the signature hash).
    public static let signRequest = MessageSchema(
        "ExtSignRequest",
        [
            .init("input", .bytes), .init("hashed", .bytes), .init("keyName", .string), .init("algorithm", .string),
            .init("saltLength", .uint64), .init("mgf1Hash", .string), .init("context", .bytes),
        ])
    /// algorithm `ML-DSA`: a pure ML-DSA signature of `input` (the message) with an ML-DSA key,
    /// checked here with its public key; `context` (at most 255 bytes) as signed.
    public static let verifyRequest = MessageSchema(
        "ExtVerifyRequest",
        [
            .init("keyName", .string), .init("algorithm", .string), .init("input", .bytes), .init("signature", .bytes),
            .init("context", .bytes),
        ])
    public static let verifyResponse = MessageSchema("ExtVerifyResponse", [.init("valid", .bool)])
    /// An attestation statement for `keyName` (a key generated here): the statement certificate,
    /// the attestation key's certificate and the attestation CA (DER), and the claims (JSON).
    public static let attestRequest = MessageSchema("ExtAttestRequest", [.init("keyName", .string)])
    public static let attestResponse = MessageSchema(
        "ExtAttestResponse",
        [.init("certificate", .bytes), .init("attestationCertificate", .bytes), .init("attestationCA", .bytes), .init("claims", .string)])
    /// `revision`: the last one the caller saw ("" at first); `waitMs`: how long to wait for a
    /// change (at most 300000; 0: answer at once).
    public static let changesRequest = MessageSchema("ExtChangesRequest", [.init("revision", .string), .init("waitMs", .uint64)])
    public static let changesResponse = MessageSchema("ExtChangesResponse", [.init("revision", .string), .init("changed", .bool)])
    public static let outputResponse = MessageSchema("ExtOutputResponse", [.init("output", .bytes)])

    /// algorithm `RSA` (PKCS#1 v1.5), `RSA-RAW` (no padding: PKCS#11 CKM_RSA_X_509, for raw
    /// decryption and raw signatures; input of exactly the modulus size) or `RSA-OAEP` with `hash` (default SHA1), `mgf1Hash`
    /// (default: `hash`) and `label`.
    public static let decryptRequest = MessageSchema(
        "ExtDecryptRequest",
        [
            .init("input", .bytes), .init("keyName", .string), .init("algorithm", .string),
            .init("hash", .string), .init("mgf1Hash", .string), .init("label", .bytes),
        ])

    /// Base algorithm strings; with `iv` the output/input carries no IV prefix. GCM: `aad`,
    /// `tagLength` in bytes (default 16); output is ciphertext || tag.
    public static let symmetricRequest = MessageSchema(
        "ExtSymmetricRequest",
        [
            .init("input", .bytes), .init("keyName", .string), .init("algorithm", .string),
            .init("iv", .bytes), .init("aad", .bytes), .init("tagLength", .uint64),
        ])

    public static let generateKeyRequest = MessageSchema(
        "ExtGenerateKeyRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string),
            .init("keySpec", .string), .init("keySize", .uint64), .init("id", .bytes), .init("cipher", .string),
            .init("label", .string), .init("attributes", .bytes),
            // keySpec DSA: the domain parameters.
            .init("dsaP", .bytes), .init("dsaQ", .bytes), .init("dsaG", .bytes),
        ])
    public static let injectKeyRequest = MessageSchema(
        "ExtInjectKeyRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string),
            .init("key", .bytes), .init("id", .bytes), .init("cipher", .string), .init("label", .string),
            .init("attributes", .bytes),
        ])
    public static let setAttributesRequest = MessageSchema(
        "ExtSetAttributesRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string), .init("id", .bytes),
            .init("label", .string), .init("attributes", .bytes),
        ])
    public static let deleteKeyRequest = MessageSchema(
        "ExtDeleteKeyRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string),
        ])
    public static let createObjectRequest = MessageSchema(
        "ExtCreateObjectRequest",
        [
            .init("adminPassword", .string), .init("class", .string), .init("label", .string),
            .init("id", .bytes), .init("value", .bytes), .init("application", .string),
        ])
    public static let createObjectResponse = MessageSchema("ExtCreateObjectResponse", [.init("uid", .string)])
    public static let updateObjectRequest = MessageSchema(
        "ExtUpdateObjectRequest",
        [
            .init("adminPassword", .string), .init("uid", .string), .init("label", .string), .init("id", .bytes),
        ])
    public static let deleteObjectRequest = MessageSchema(
        "ExtDeleteObjectRequest",
        [
            .init("adminPassword", .string), .init("uid", .string),
        ])
    /// Copies a key inside the service (PKCS#11 C_CopyObject): session <-> token. The admin
    /// password is needed when either side is a token key.
    public static let copyKeyRequest = MessageSchema(
        "ExtCopyKeyRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string),
            .init("newName", .string), .init("id", .bytes), .init("label", .string), .init("attributes", .bytes),
        ])
    /// Derives a new key from `keyName` inside the service (PKCS#11 C_DeriveKey). mechanism:
    /// `AES-ECB-ENCRYPT-DATA` (`data`), `AES-CBC-ENCRYPT-DATA` (`iv`, `data`),
    /// `CONCATENATE-BASE-AND-KEY` (`otherKeyName`/`otherKeyType`), `CONCATENATE-BASE-AND-DATA`,
    /// `CONCATENATE-DATA-AND-BASE`, `XOR-BASE-AND-DATA` (`data`), `EXTRACT-KEY-FROM-KEY`
    /// (`bitIndex`), `ECDH1` (`publicData`: the peer's point; `kdf` NULL or SHA1…SHA512 with
    /// `sharedData`). The new key: `newName` (a `~owner/` name for a session key), `newType`
    /// SYMMETRIC or MAC, `cipher`, `length` in bytes (0: the mechanism's natural length), `id`,
    /// `label`, `attributes`. The base key must allow CKA_DERIVE.
    public static let deriveRequest = MessageSchema(
        "ExtDeriveRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string), .init("mechanism", .string),
            .init("data", .bytes), .init("iv", .bytes), .init("otherKeyName", .string), .init("otherKeyType", .string),
            .init("bitIndex", .uint64), .init("publicData", .bytes), .init("kdf", .string), .init("sharedData", .bytes),
            .init("newName", .string), .init("newType", .string), .init("cipher", .string), .init("length", .uint64),
            .init("id", .bytes), .init("label", .string), .init("attributes", .bytes),
        ])
    /// `ML-KEM-ENCAPSULATE` answers the ciphertext that goes with the new key's shared secret.
    public static let deriveResponse = MessageSchema("ExtDeriveResponse", [.init("ciphertext", .bytes)])
    /// Wraps `targetName` with `keyName` (PKCS#11 C_WrapKey): mechanism `AES-KEY-WRAP`,
    /// `AES-KEY-WRAP-PAD`, `RSA-OAEP` (`hash`, `mgf1Hash`, `label`) or `RSA`. The target must be
    /// CKA_EXTRACTABLE, the wrapping key CKA_WRAP (and CKA_TRUSTED for CKA_WRAP_WITH_TRUSTED
    /// targets). Secret keys are wrapped as their value, private keys as PKCS#8.
    public static let wrapRequest = MessageSchema(
        "ExtWrapRequest",
        [
            .init("keyName", .string), .init("keyType", .string), .init("mechanism", .string),
            .init("hash", .string), .init("mgf1Hash", .string), .init("label", .bytes),
            .init("targetName", .string), .init("targetType", .string),
        ])
    /// Unwraps `input` with `keyName` (CKA_UNWRAP) into a new key (fields as for derive; newType
    /// ASYMMETRIC takes a wrapped PKCS#8 private key).
    public static let unwrapRequest = MessageSchema(
        "ExtUnwrapRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string), .init("mechanism", .string),
            .init("hash", .string), .init("mgf1Hash", .string), .init("label", .bytes), .init("input", .bytes),
            .init("newName", .string), .init("newType", .string), .init("cipher", .string),
            .init("id", .bytes), .init("newLabel", .string), .init("attributes", .bytes),
        ])
    /// The value of a secret key that its creator made readable (CKA_SENSITIVE=FALSE and
    /// CKA_EXTRACTABLE=TRUE); 403 for every other key.
    public static let keyValueRequest = MessageSchema("ExtKeyValueRequest", [.init("keyName", .string), .init("keyType", .string)])
    /// A MAC with a symmetric key: algorithm `AES-CMAC` or `AES-MAC` (CBC-MAC, zero IV, zero
    /// padding); `length` truncates (default: the whole block).
    public static let macRequest = MessageSchema(
        "ExtMACRequest",
        [
            .init("keyName", .string), .init("algorithm", .string), .init("input", .bytes), .init("length", .uint64),
        ])
    /// `so`: the password must be the admin password (C_Login as CKU_SO); otherwise a registered
    /// principal's own PIN is accepted too (C_Login as CKU_USER).
    public static let verifyPasswordRequest = MessageSchema(
        "ExtVerifyPasswordRequest", [.init("adminPassword", .string), .init("so", .bool)])

    /// Principals (tenants): registered client certificates with a role and namespaces. Root
    /// admin calls (the admin password). `certificate` is DER; `pin` the principal's optional PIN
    /// in clear (the service keeps only its scrypt hash); `namespaces` the first is its default.
    public static let principalAddRequest = MessageSchema(
        "ExtPrincipalAddRequest",
        [
            .init("adminPassword", .string), .init("name", .string), .init("certificate", .bytes), .init("role", .string),
            .init("namespaces", .repeatedString), .init("pin", .string),
        ])
    public static let nodeRequest = MessageSchema("ExtNodeRequest", [.init("adminPassword", .string), .init("name", .string)])
    public static let nodeAddResponse = MessageSchema("ExtNodeAddResponse", [.init("name", .string), .init("secret", .bytes)])
    public static let nodeListResponse = MessageSchema("ExtNodeListResponse", [.init("names", .repeatedString)])
    public static let joinRequest = MessageSchema("ExtJoinRequest", [.init("name", .string), .init("secret", .bytes)])
    public static let principalAddResponse = MessageSchema("ExtPrincipalAddResponse", [.init("fingerprint", .string)])
    public static let principalListRequest = MessageSchema("ExtPrincipalListRequest", [.init("adminPassword", .string)])
    public static let principalRemoveRequest = MessageSchema(
        "ExtPrincipalRemoveRequest", [.init("adminPassword", .string), .init("name", .string)])
    /// An empty `pin` removes the principal's PIN.
    public static let principalSetPINRequest = MessageSchema(
        "ExtPrincipalSetPINRequest",
        [
            .init("adminPassword", .string), .init("name", .string), .init("pin", .string),
        ])
    public static let principal = MessageSchema(
        "ExtPrincipal",
        [
            .init("name", .string), .init("fingerprint", .string), .init("subject", .string), .init("role", .string),
            .init("namespaces", .repeatedString), .init("hasPin", .bool), .init("createdAt", .int64),
        ])
    public static let principalListResponse = MessageSchema("ExtPrincipalListResponse", [.init("principals", .repeatedMessage(principal))])
    /// Who the caller is: `restricted` is false while no principal is registered (every trusted
    /// client sees every key, as the original); else its principal, role, namespaces and the
    /// namespace this request resolved in (`X-VSSM-Namespace`, default its first).
    public static let whoAmIResponse = MessageSchema(
        "ExtWhoAmIResponse",
        [
            .init("restricted", .bool), .init("principal", .string), .init("role", .string),
            .init("namespaces", .repeatedString), .init("namespace", .string), .init("fingerprint", .string),
        ])

    /// The audit trail, filtered: `principal` (part of the subject, or the fingerprint), `key`,
    /// `since` (an RFC 3339 time: records at or after it), the newest `limit` (default 1,000) of
    /// what matches; `verify` checks the whole chain first.
    public static let auditRequest = MessageSchema(
        "ExtAuditRequest",
        [
            .init("adminPassword", .string), .init("principal", .string), .init("key", .string), .init("since", .string),
            .init("verify", .bool), .init("limit", .uint64), .init("head", .string),
        ])
    public static let bootstrapShareResponse = MessageSchema(
        "ExtBootstrapShareResponse",
        [
            .init("received", .int64), .init("threshold", .int64), .init("running", .bool),
        ])
    public static let auditRecord = MessageSchema(
        "ExtAuditRecord",
        [
            .init("seq", .uint64), .init("time", .string), .init("principal", .string), .init("fingerprint", .string),
            .init("route", .string), .init("key", .string), .init("mechanism", .string), .init("status", .int64),
            .init("request", .string), .init("namespace", .string),
        ])
    /// `checked`: records read; `problem`: the first break of the chain (absent when it holds);
    /// `chainStart`: seq of the oldest record kept (older files were rotated away).
    public static let auditResponse = MessageSchema(
        "ExtAuditResponse",
        [
            .init("records", .repeatedMessage(auditRecord)), .init("checked", .uint64), .init("problem", .string),
            .init("chainStart", .uint64), .init("enabled", .bool),
        ])
}

/// Tenants' namespace names (service, client header, module config): 1 to 64 of `a-z 0-9 . _ -`,
/// starting with a letter or digit.
public enum NamespaceName {
    public static func isValid(_ ns: String) -> Bool {
        let u = Array(ns.utf8)
        func ok(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2E || c == 0x5F || c == 0x2D }
        return !u.isEmpty && u.count <= 64 && u.allSatisfy(ok) && u[0] != 0x2E && u[0] != 0x5F && u[0] != 0x2D
    }
}

extension Route {
    public static let extListKeys = "/REST/v1/ext/listkeys"
    public static let extSign = "/REST/v1/ext/sign"
    public static let extVerify = "/REST/v1/ext/verify"
    public static let extAttest = "/REST/v1/ext/attest"
    /// Long poll: answers when the key state moves past `revision` (or `waitMs` is over).
    public static let extChanges = "/REST/v1/ext/changes"
    public static let extDecrypt = "/REST/v1/ext/decrypt"
    public static let extSymmetricEncrypt = "/REST/v1/ext/symmetric/encrypt"
    public static let extSymmetricDecrypt = "/REST/v1/ext/symmetric/decrypt"
    public static let extGenerateKey = "/REST/v1/ext/generatekey"
    public static let extInjectKey = "/REST/v1/ext/injectkey"
    public static let extSetAttributes = "/REST/v1/ext/setattributes"
    public static let extDeleteKey = "/REST/v1/ext/deletekey"
    public static let extCreateObject = "/REST/v1/ext/createobject"
    public static let extUpdateObject = "/REST/v1/ext/updateobject"
    public static let extDeleteObject = "/REST/v1/ext/deleteobject"
    public static let extVerifyPassword = "/REST/v1/ext/verifypassword"
    public static let extAudit = "/REST/v1/ext/audit"
    /// One share of a k-of-n split RPC key, while the node bootstraps (no client certificate then).
    public static let extBootstrapShare = "/REST/v1/ext/bootstrapshare"
    /// Session keys (names `~<owner>/<name>`, memory only) of one module instance: drop them all.
    public static let extReleaseSession = "/REST/v1/ext/session/release"
    public static let extCopyKey = "/REST/v1/ext/copykey"
    public static let extDerive = "/REST/v1/ext/derive"
    public static let extWrap = "/REST/v1/ext/wrap"
    public static let extUnwrap = "/REST/v1/ext/unwrap"
    public static let extKeyValue = "/REST/v1/ext/keyvalue"
    public static let extMAC = "/REST/v1/ext/mac"
    public static let extPrincipalAdd = "/REST/v1/ext/principals/add"
    public static let extPrincipalList = "/REST/v1/ext/principals/list"
    public static let extPrincipalRemove = "/REST/v1/ext/principals/remove"
    public static let extPrincipalSetPIN = "/REST/v1/ext/principals/setpin"
    public static let extWhoAmI = "/REST/v1/ext/whoami"
    /// Internal listener, between our nodes: the whole sealed-store state (keys with their
    /// attributes, objects, principals) pulled and pushed; a Go peer answers 404 and gets the
    /// original `synchronizestate` format instead.
    public static let extSynchronizeState = "/REST/v1/ext/internal/synchronizestate"
    public static let extSynchronizeStatePush = "/REST/v1/ext/internal/synchronizestatepush"
    /// Bootstrap-slave listener: a node with a join credential obtains the RPC key.
    public static let extJoin = "/REST/v1/ext/internal/join"
    /// Join credentials (root admin).
    public static let extNodeAdd = "/REST/v1/ext/nodes/add"
    public static let extNodeRemove = "/REST/v1/ext/nodes/remove"
    public static let extNodeList = "/REST/v1/ext/nodes/list"
    /// The header that picks one of a principal's namespaces for a request.
    public static let namespaceHeader = "X-VSSM-Namespace"
    /// Version-2 BackupBlob: the original format plus CKA_IDs, ciphers and stored objects.
    public static let extGenerateBackup = "/REST/v1/ext/generatebackup"
    /// Restores version 1 (original) or 2 (extension) blobs.
    public static let extRestoreBackup = "/REST/v1/ext/restorebackup"
}
