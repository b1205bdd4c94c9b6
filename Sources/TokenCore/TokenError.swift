/// The one error type of the token core. `PKCS11Module/ReturnCode.swift` maps it to a CK_RV in
/// one switch; nothing else chooses return codes.
public enum TokenError: Error, Sendable, Equatable {
    case notInitialized
    case alreadyInitialized
    case argumentsBad(String)
    case slotIDInvalid
    case sessionHandleInvalid
    case sessionReadOnly
    case sessionReadOnlyExists
    case sessionParallelNotSupported
    case objectHandleInvalid
    case keyHandleInvalid
    case keyTypeInconsistent
    case keyFunctionNotPermitted
    case operationActive
    case operationNotInitialized
    case bufferTooSmall(required: Int)
    case userNotLoggedIn
    case userAlreadyLoggedIn
    case anotherUserAlreadyLoggedIn
    case userTypeInvalid
    case pinIncorrect
    case pinLenRange
    case mechanismInvalid(MechanismType)
    case mechanismParamInvalid(String)
    case attributeTypeInvalid(AttributeType)
    case attributeValueInvalid(AttributeType)
    case attributeReadOnly(AttributeType)
    case templateIncomplete(String)
    case templateInconsistent(String)
    case dataLenRange
    case dataInvalid
    case encryptedDataInvalid
    case encryptedDataLenRange
    case signatureInvalid
    case signatureLenRange
    case functionNotSupported
    case tokenWriteProtected
    /// The object's CKA_DESTROYABLE (or CKA_COPYABLE) is FALSE.
    case actionProhibited
    case keyUnextractable
    case keyIndigestible
    /// C_GetOperationState: this operation's state cannot be handed out.
    case stateUnsaveable
    /// C_SetOperationState: not a state this module handed out.
    case savedStateInvalid
    /// C_SetOperationState: a key was given for an operation that needs none.
    case keyNotNeeded
    case keyNeeded
    case keyChanged
    case keyNotWrappable
    case wrappedKeyInvalid
    case wrappedKeyLenRange
    case wrappingKeyHandleInvalid
    case unwrappingKeyHandleInvalid
    /// The key service could not be reached or failed; `status` is its HTTP status (0: transport).
    case device(String, status: Int)
    /// The service refused the admin password.
    case adminPasswordRejected
    /// The service throttles this client's password attempts after repeated wrong ones (HTTP 429).
    case pinLocked(String)
    /// Anything unexpected (never silently CKR_OK).
    case functionFailed(String)
    /// The service's per-client request rate limit (HTTP 429 with Retry-After): CKR_VSSM_RATE_LIMITED.
    case rateLimited(String)
}

/// What a person reads (the module's log, messages built from an error): plain words, never the
/// case name or Swift's quoting of its payload.
extension TokenError: CustomStringConvertible {
    public var description: String { message }

    public var message: String {
        switch self {
        case .notInitialized: return "the library is not initialized (C_Initialize)"
        case .alreadyInitialized: return "the library is already initialized"
        case .argumentsBad(let m): return m
        case .slotIDInvalid: return "no such slot"
        case .sessionHandleInvalid: return "no such session"
        case .sessionReadOnly: return "the session is read-only"
        case .sessionReadOnlyExists: return "a read-only session exists"
        case .sessionParallelNotSupported: return "parallel sessions are not supported"
        case .objectHandleInvalid: return "no such object"
        case .keyHandleInvalid: return "no such key"
        case .keyTypeInconsistent: return "the key's type does not fit the mechanism"
        case .keyFunctionNotPermitted: return "the key's attributes do not permit this operation"
        case .operationActive: return "another operation is active in this session"
        case .operationNotInitialized: return "no operation is active in this session"
        case .bufferTooSmall(let required): return "the output buffer is too small (\(required) bytes needed)"
        case .userNotLoggedIn: return "not logged in"
        case .userAlreadyLoggedIn: return "already logged in"
        case .anotherUserAlreadyLoggedIn: return "another user is logged in"
        case .userTypeInvalid: return "unknown user type"
        case .pinIncorrect: return "the PIN is wrong"
        case .pinLenRange: return "the PIN's length is out of range"
        case .mechanismInvalid(let m): return "mechanism \(m) is not supported"
        case .mechanismParamInvalid(let m): return "bad mechanism parameter: \(m)"
        case .attributeTypeInvalid(let a): return "attribute \(a) is not valid here"
        case .attributeValueInvalid(let a): return "attribute \(a) has an invalid value"
        case .attributeReadOnly(let a): return "attribute \(a) cannot be changed"
        case .templateIncomplete(let m): return "incomplete template: \(m)"
        case .templateInconsistent(let m): return "inconsistent template: \(m)"
        case .dataLenRange: return "the data's length is out of range"
        case .dataInvalid: return "the data is invalid"
        case .encryptedDataInvalid: return "the encrypted data is invalid"
        case .encryptedDataLenRange: return "the encrypted data's length is out of range"
        case .signatureInvalid: return "the signature is invalid"
        case .signatureLenRange: return "the signature's length is out of range"
        case .functionNotSupported: return "the function is not supported"
        case .tokenWriteProtected: return "the token is write-protected"
        case .actionProhibited: return "the action is prohibited"
        case .keyUnextractable: return "the key cannot be extracted"
        case .keyIndigestible: return "the key cannot be digested"
        case .stateUnsaveable:
            return
                "the state of this operation cannot be saved (only digests, signatures and verifications with at most 64 KiB of data so far and no C_DigestKey)"
        case .savedStateInvalid: return "not an operation state this module saved"
        case .keyNotNeeded: return "this operation state needs no key"
        case .keyNeeded: return "this operation state needs its key: pass the signing key as hAuthenticationKey"
        case .keyChanged: return "this operation state was saved with another key"
        case .keyNotWrappable: return "the key cannot be wrapped"
        case .wrappedKeyInvalid: return "the wrapped key is invalid"
        case .wrappedKeyLenRange: return "the ciphertext is not of this key's size"
        case .wrappingKeyHandleInvalid: return "no such wrapping key"
        case .unwrappingKeyHandleInvalid: return "no such unwrapping key"
        case .device(let m, let status): return status > 0 ? "key service: HTTP \(status): \(m)" : "key service: \(m)"
        case .adminPasswordRejected: return "the service refused the password"
        case .pinLocked(let m): return m
        case .functionFailed(let m): return m
        case .rateLimited(let m): return m
        }
    }
}
