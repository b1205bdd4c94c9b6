import CPKCS11
import TokenCore

/// The one place a CK_RV is chosen for a core error (STYLE.md rule 2).
extension TokenError {
    var returnCode: CK_RV {
        switch self {
        case .notInitialized: CK_RV(CKR_CRYPTOKI_NOT_INITIALIZED)
        case .alreadyInitialized: CK_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED)
        case .argumentsBad: CK_RV(CKR_ARGUMENTS_BAD)
        case .slotIDInvalid: CK_RV(CKR_SLOT_ID_INVALID)
        case .sessionHandleInvalid: CK_RV(CKR_SESSION_HANDLE_INVALID)
        case .sessionReadOnly: CK_RV(CKR_SESSION_READ_ONLY)
        case .sessionReadOnlyExists: CK_RV(CKR_SESSION_READ_ONLY_EXISTS)
        case .sessionParallelNotSupported: CK_RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
        case .objectHandleInvalid: CK_RV(CKR_OBJECT_HANDLE_INVALID)
        case .keyHandleInvalid: CK_RV(CKR_KEY_HANDLE_INVALID)
        case .keyTypeInconsistent: CK_RV(CKR_KEY_TYPE_INCONSISTENT)
        case .keyFunctionNotPermitted: CK_RV(CKR_KEY_FUNCTION_NOT_PERMITTED)
        case .operationActive: CK_RV(CKR_OPERATION_ACTIVE)
        case .operationNotInitialized: CK_RV(CKR_OPERATION_NOT_INITIALIZED)
        case .bufferTooSmall: CK_RV(CKR_BUFFER_TOO_SMALL)
        case .userNotLoggedIn: CK_RV(CKR_USER_NOT_LOGGED_IN)
        case .userAlreadyLoggedIn: CK_RV(CKR_USER_ALREADY_LOGGED_IN)
        case .anotherUserAlreadyLoggedIn: CK_RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
        case .userTypeInvalid: CK_RV(CKR_USER_TYPE_INVALID)
        case .pinIncorrect, .adminPasswordRejected: CK_RV(CKR_PIN_INCORRECT)
        case .pinLocked: CK_RV(CKR_PIN_LOCKED)
        case .actionProhibited: CK_RV(CKR_ACTION_PROHIBITED)
        case .keyUnextractable: CK_RV(CKR_KEY_UNEXTRACTABLE)
        case .keyIndigestible: CK_RV(CKR_KEY_INDIGESTIBLE)
        case .stateUnsaveable: CK_RV(CKR_STATE_UNSAVEABLE)
        case .savedStateInvalid: CK_RV(CKR_SAVED_STATE_INVALID)
        case .keyNotNeeded: CK_RV(CKR_KEY_NOT_NEEDED)
        case .keyNeeded: CK_RV(CKR_KEY_NEEDED)
        case .keyChanged: CK_RV(CKR_KEY_CHANGED)
        case .keyNotWrappable: CK_RV(CKR_KEY_NOT_WRAPPABLE)
        case .wrappedKeyInvalid: CK_RV(CKR_WRAPPED_KEY_INVALID)
        case .wrappedKeyLenRange: CK_RV(CKR_WRAPPED_KEY_LEN_RANGE)
        case .wrappingKeyHandleInvalid: CK_RV(CKR_WRAPPING_KEY_HANDLE_INVALID)
        case .unwrappingKeyHandleInvalid: CK_RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID)
        case .pinLenRange: CK_RV(CKR_PIN_LEN_RANGE)
        case .mechanismInvalid: CK_RV(CKR_MECHANISM_INVALID)
        case .mechanismParamInvalid: CK_RV(CKR_MECHANISM_PARAM_INVALID)
        case .attributeTypeInvalid: CK_RV(CKR_ATTRIBUTE_TYPE_INVALID)
        case .attributeValueInvalid: CK_RV(CKR_ATTRIBUTE_VALUE_INVALID)
        case .attributeReadOnly: CK_RV(CKR_ATTRIBUTE_READ_ONLY)
        case .templateIncomplete: CK_RV(CKR_TEMPLATE_INCOMPLETE)
        case .templateInconsistent: CK_RV(CKR_TEMPLATE_INCONSISTENT)
        case .dataLenRange: CK_RV(CKR_DATA_LEN_RANGE)
        case .dataInvalid: CK_RV(CKR_DATA_INVALID)
        case .encryptedDataInvalid: CK_RV(CKR_ENCRYPTED_DATA_INVALID)
        case .encryptedDataLenRange: CK_RV(CKR_ENCRYPTED_DATA_LEN_RANGE)
        case .signatureInvalid: CK_RV(CKR_SIGNATURE_INVALID)
        case .signatureLenRange: CK_RV(CKR_SIGNATURE_LEN_RANGE)
        case .functionNotSupported: CK_RV(CKR_FUNCTION_NOT_SUPPORTED)
        case .tokenWriteProtected: CK_RV(CKR_TOKEN_WRITE_PROTECTED)
        case .device: CK_RV(CKR_DEVICE_ERROR)
        case .functionFailed: CK_RV(CKR_FUNCTION_FAILED)
        case .rateLimited: ckrVSSMRateLimited
        }
    }
}

/// Runs one entry point's body and resolves it to a CK_RV; logs failures once (kmsp11's
/// LogAndResolve). Expected outcomes of the two-call convention are not logged as errors.
@inline(__always)
func entry(_ name: StaticString, initialized: Bool = true, _ body: () throws(TokenError) -> CK_RV) -> CK_RV {
    do throws(TokenError) {
        // Calls before C_Initialize (or in a forked child) get CKR_CRYPTOKI_NOT_INITIALIZED first (§5.4).
        if initialized && !Library.shared.isInitialized { throw TokenError.notInitialized }
        let rv = try body()
        Log.write(.debug, "\(name) -> \(rv)")
        return rv
    } catch {
        let rv = error.returnCode
        // Only failures of the module or the service reach the default (error) log: the host's
        // stderr is someone's nginx or ssh session, and a bad signature or a probing call is an
        // answer, not a fault.
        // A locked PIN is logged at the default level too: the host shows only CKR_PIN_LOCKED,
        // and the reason (how long, for which client identity) is what the operator needs.
        let line = "\(name) failed with \(returnCodeName(rv)): \(error.message)"
        switch error {
        case .device, .functionFailed, .pinLocked, .rateLimited:
            Log.write(.error, line)
        case .pinIncorrect, .adminPasswordRejected:
            Log.write(.warn, line)
        default:
            Log.write(.info, line)
        }
        return rv
    }
}

let ok = CK_RV(CKR_OK)

/// The service's per-client request rate limit was reached (README "Limits"): a vendor-defined
/// code, so a host can tell "slow down" from a failure. Retry after the time the log line names.
let ckrVSSMRateLimited = CK_RV(0x8000_0000 | 0x429)  // CKR_VENDOR_DEFINED | 0x429

/// `CKR_PIN_LOCKED (0xa4)`: the name of every code the module returns, and the number.
func returnCodeName(_ rv: CK_RV) -> String {
    if rv == ckrVSSMRateLimited { return "CKR_VSSM_RATE_LIMITED (0x80000429)" }
    let hex = "0x" + String(rv, radix: 16)
    guard let name = returnCodeNames[rv] else { return hex }
    return "\(name) (\(hex))"
}

private let returnCodeNames: [CK_RV: String] = {
    let names: [UInt: String] = [
        CKR_CRYPTOKI_NOT_INITIALIZED: "CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_ALREADY_INITIALIZED: "CKR_CRYPTOKI_ALREADY_INITIALIZED",
        CKR_ARGUMENTS_BAD: "CKR_ARGUMENTS_BAD", CKR_SLOT_ID_INVALID: "CKR_SLOT_ID_INVALID",
        CKR_SESSION_HANDLE_INVALID: "CKR_SESSION_HANDLE_INVALID", CKR_SESSION_READ_ONLY: "CKR_SESSION_READ_ONLY",
        CKR_OBJECT_HANDLE_INVALID: "CKR_OBJECT_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID: "CKR_KEY_HANDLE_INVALID",
        CKR_KEY_FUNCTION_NOT_PERMITTED: "CKR_KEY_FUNCTION_NOT_PERMITTED", CKR_USER_NOT_LOGGED_IN: "CKR_USER_NOT_LOGGED_IN",
        CKR_PIN_INCORRECT: "CKR_PIN_INCORRECT", CKR_PIN_LOCKED: "CKR_PIN_LOCKED", CKR_ACTION_PROHIBITED: "CKR_ACTION_PROHIBITED",
        CKR_MECHANISM_INVALID: "CKR_MECHANISM_INVALID", CKR_MECHANISM_PARAM_INVALID: "CKR_MECHANISM_PARAM_INVALID",
        CKR_TEMPLATE_INCONSISTENT: "CKR_TEMPLATE_INCONSISTENT", CKR_TEMPLATE_INCOMPLETE: "CKR_TEMPLATE_INCOMPLETE",
        CKR_DEVICE_ERROR: "CKR_DEVICE_ERROR", CKR_FUNCTION_FAILED: "CKR_FUNCTION_FAILED",
        CKR_FUNCTION_NOT_SUPPORTED: "CKR_FUNCTION_NOT_SUPPORTED", CKR_SIGNATURE_INVALID: "CKR_SIGNATURE_INVALID",
    ]
    return Dictionary(uniqueKeysWithValues: names.map { (CK_RV($0.key), $0.value) })
}()
