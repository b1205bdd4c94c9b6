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
    case keyNotWrappable
    case wrappedKeyInvalid
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
}
