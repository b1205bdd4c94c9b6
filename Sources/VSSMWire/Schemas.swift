/// The messages of the original VSSM protos (`vssm.proto`, `internal.proto`, `bootstrap.proto`)
/// as observed on the wire (`shared/reference/vssm-wire.md`), plus our `/REST/v1/ext/` extensions.
public enum Schemas {
    private static func crypto(_ name: String) -> MessageSchema {
        MessageSchema(name, [.init("input", .bytes), .init("keyName", .string), .init("algorithm", .string)])
    }
    private static let output = [FieldSpec("output", .bytes)]

    // MARK: - Crypto service (8080, mTLS)
    public static let symmetricEncryptRequest = crypto("SymmetricEncryptRequest")
    public static let symmetricEncryptResponse = MessageSchema("SymmetricEncryptResponse", output)
    public static let symmetricDecryptRequest = crypto("SymmetricDecryptRequest")
    public static let symmetricDecryptResponse = MessageSchema("SymmetricDecryptResponse", output)
    public static let asymmetricEncryptRequest = crypto("AsymmetricEncryptRequest")
    public static let asymmetricEncryptResponse = MessageSchema("AsymmetricEncryptResponse", output)
    public static let asymmetricDecryptRequest = crypto("AsymmetricDecryptRequest")
    public static let asymmetricDecryptResponse = MessageSchema("AsymmetricDecryptResponse", output)
    public static let asymmetricSignRequest = MessageSchema(
        "AsymmetricSignRequest",
        [
            .init("input", .bytes), .init("hashed", .bytes), .init("keyName", .string), .init("algorithm", .string),
        ])
    public static let asymmetricSignResponse = MessageSchema("AsymmetricSignResponse", output)
    public static let asymmetricVerifyRequest = MessageSchema(
        "AsymmetricVerifyRequest",
        [
            .init("input", .bytes), .init("hashed", .bytes), .init("signature", .bytes),
            .init("keyName", .string), .init("algorithm", .string),
        ])
    public static let verifyResponse = MessageSchema("AsymmetricVerifyResponse", [.init("valid", .bool)])
    public static let hmacCreateRequest = crypto("HmacCreateRequest")
    public static let hmacCreateResponse = MessageSchema("HmacCreateResponse", output)
    public static let hmacVerifyRequest = MessageSchema(
        "HmacVerifyRequest",
        [
            .init("input", .bytes), .init("hmac", .bytes), .init("keyName", .string), .init("algorithm", .string),
        ])
    public static let hmacVerifyResponse = MessageSchema("HmacVerifyResponse", [.init("valid", .bool)])

    // MARK: - Admin service (8080, mTLS + admin password)
    public static let generateKeyRequest = MessageSchema(
        "GenerateKeyRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string),
            .init("keySpec", .string), .init("keySize", .uint64),
        ])
    public static let injectKeyRequest = MessageSchema(
        "InjectKeyRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string), .init("key", .bytes),
        ])
    public static let backupBlob = MessageSchema(
        "BackupBlob",
        [
            .init("encryptionKey", .bytes), .init("version", .int64), .init("timestamp", .int64),
            .init("encryptedState", .bytes),
            // Extension, version 2 only: SHA-256 of the RPC certificate the backup is encrypted to.
            .init("rpcCertificateSha256", .bytes),
        ])
    public static let generateBackupRequest = MessageSchema("GenerateBackupRequest", [.init("adminPassword", .string)])
    public static let generateBackupResponse = MessageSchema("GenerateBackupResponse", [.init("backup", .message(backupBlob))])
    public static let restoreBackupRequest = MessageSchema(
        "RestoreBackupRequest",
        [
            .init("adminPassword", .string), .init("backup", .message(backupBlob)),
        ])
    public static let listKeysRequest = MessageSchema(
        "ListKeysRequest",
        [
            .init("adminPassword", .string), .init("keyName", .string), .init("keyType", .string),
        ])
    public static let listKeysSymmetricKey = MessageSchema(
        "ListKeysSymmetricKey",
        [
            .init("name", .string), .init("createdAt", .int64), .init("keyLength", .uint64),
        ])
    public static let listKeysAsymmetricKey = MessageSchema(
        "ListKeysAsymmetricKey",
        [
            .init("name", .string), .init("createdAt", .int64), .init("keySpec", .string), .init("publicKey", .bytes),
        ])
    public static let listKeysMacKey = MessageSchema(
        "ListKeysMacKey",
        [
            .init("name", .string), .init("createdAt", .int64), .init("keyLength", .uint64),
        ])
    public static let listKeysResponse = MessageSchema(
        "ListKeysResponse",
        [
            .init("symmetricKey", .repeatedMessage(listKeysSymmetricKey)),
            .init("asymmetricKey", .repeatedMessage(listKeysAsymmetricKey)),
            .init("macKey", .repeatedMessage(listKeysMacKey)),
        ])
    public static let getLogsRequest = MessageSchema("GetLogsRequest", [.init("adminPassword", .string)])
    public static let getLogsResponse = MessageSchema("GetLogsResponse", [.init("log", .repeatedString)])
    public static let bootstrapRequest = MessageSchema("BootstrapRequest", [.init("rpcPrivateKey", .bytes)])
    public static let empty = MessageSchema("Empty", [])
    public static let errorResponse = MessageSchema("ErrorResponse", [.init("error", .string)])

    // MARK: - Internal service (8082 mTLS with the RPC certificate, 8083 TLS)
    public static let symmetricKey = MessageSchema(
        "SymmetricKey",
        [
            .init("name", .string), .init("createdAt", .int64), .init("key", .bytes),
        ])
    public static let asymmetricKey = MessageSchema(
        "AsymmetricKey",
        [
            .init("name", .string), .init("createdAt", .int64), .init("keyType", .string), .init("key", .bytes),
        ])
    public static let macKey = MessageSchema(
        "MacKey",
        [
            .init("name", .string), .init("createdAt", .int64), .init("key", .bytes),
        ])
    public static let synchronizeStateRequest = MessageSchema("SynchronizeStateRequest", [.init("clientIp", .string)])
    public static let synchronizeStateResponse = MessageSchema(
        "SynchronizeStateResponse",
        [
            .init("knownClients", .repeatedString),
            .init("symmetricKey", .repeatedMessage(symmetricKey)),
            .init("asymmetricKey", .repeatedMessage(asymmetricKey)),
            .init("macKey", .repeatedMessage(macKey)),
        ])
    public static let synchronizeStatePushRequest = MessageSchema(
        "SynchronizeStatePushRequest",
        [
            .init("synchronizeStateMessage", .message(synchronizeStateResponse))
        ])
    public static let bootstrapSlaveRequest = MessageSchema("BootstrapSlaveRequest", [.init("attestation", .bytes)])
    public static let bootstrapSlaveResponse = MessageSchema("BootstrapSlaveResponse", [.init("rpcPrivateKey", .bytes)])
}

/// URL paths of the original API (identical on every VSSM node).
public enum Route {
    public static let symmetricEncrypt = "/REST/v1/symmetric/encrypt"
    public static let symmetricDecrypt = "/REST/v1/symmetric/decrypt"
    public static let asymmetricEncrypt = "/REST/v1/asymmetric/encrypt"
    public static let asymmetricDecrypt = "/REST/v1/asymmetric/decrypt"
    public static let asymmetricSign = "/REST/v1/asymmetric/sign"
    public static let asymmetricVerify = "/REST/v1/asymmetric/verify"
    public static let hmacCreate = "/REST/v1/hmac/create"
    public static let hmacVerify = "/REST/v1/hmac/verify"
    public static let generateKey = "/REST/v1/admin/generatekey"
    public static let injectKey = "/REST/v1/admin/injectkey"
    public static let generateBackup = "/REST/v1/admin/generatebackup"
    public static let restoreBackup = "/REST/v1/admin/restorebackup"
    public static let listKeys = "/REST/v1/admin/listkeys"
    public static let getLogs = "/REST/v1/admin/getlogs"
    public static let bootstrap = "/REST/v1/admin/bootstrap"
    public static let healthcheck = "/REST/v1/healthcheck"
    public static let synchronizeState = "/REST/v1/internal/synchronizestate"
    public static let synchronizeStatePush = "/REST/v1/internal/synchronizestatepush"
    public static let bootstrapSlave = "/REST/v1/internal/bootstrapslave"
    /// Our extensions; a Go node answers 404 here, which the client reads as "base API only".
    public static let extPrefix = "/REST/v1/ext/"
    public static let extCapabilities = "/REST/v1/ext/capabilities"
}

/// Key types as the wire spells them (`keyType`), and key specs (`keySpec`).
public enum KeyType: String, Sendable, CaseIterable {
    case symmetric = "SYMMETRIC"
    case asymmetric = "ASYMMETRIC"
    case mac = "MAC"
}

public enum KeySpec: String, Sendable, CaseIterable {
    case rsa = "RSA"
    case ec = "EC"
    /// Extensions (a node with `--compat-only`, like the original, refuses them).
    case ed25519 = "ED25519"
    case ed448 = "ED448"
    case mldsa65 = "ML-DSA-65"
    case mldsa87 = "ML-DSA-87"
    case mlkem768 = "ML-KEM-768"
    case mlkem1024 = "ML-KEM-1024"

    /// Whether the key size is implied by the spec (`--size` is then not needed).
    public var sizeImplied: Bool { self != .rsa && self != .ec }
}
