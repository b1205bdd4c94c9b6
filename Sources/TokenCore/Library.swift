import Glibc
import VSSMSync
import VSSMCrypto

/// Result of an operation that follows the two-call length convention (PKCS#11 2.40 §5.2):
/// with no output buffer the length is reported and the operation stays active.
public enum SizedOutput: Sendable, Equatable {
    case length(Int)
    case bytes([UInt8])
}

/// An active operation of a session (at most one per kind group, as the spec allows one).
enum Operation: Sendable {
    case find(results: [ObjectHandle], position: Int)
    case sign(SignOperation)
    case verify(SignOperation)
    case digest(DigestState)
    case cipher(CipherOperation)
}

final class DigestState: @unchecked Sendable {
    // Owned by one session; sessions are used by one thread at a time (PKCS#11 §6.7.6).
    let context: DigestContext
    var multipart = false
    /// The data hashed so far, while it is at most `Library.savedStateLimit` bytes and holds no
    /// key value (C_DigestKey): what C_GetOperationState hands out. nil: the state is unsaveable.
    var saved: [UInt8]? = []
    init(_ c: DigestContext) { context = c }

    func remember(_ part: UnsafeRawBufferPointer) {
        guard let count = saved?.count else { return }
        if count + part.count <= Library.savedStateLimit { saved?.append(contentsOf: part) } else { saved = nil }
    }
}

/// A session as the operations see it: a snapshot of its entry.
struct Session: Sendable {
    let slot: UInt
    let readWrite: Bool
    var operation: Operation?
    var deviceError: UInt = 0
}

/// A session's entry in the handle table: what never changes, and the rest behind its own lock.
final class SessionEntry: Sendable {
    let slot: UInt
    let readWrite: Bool
    let token: Token
    /// The process that opened it: a forked child never uses its parent's sessions (§6.7.7).
    let pid: pid_t
    struct Mutable {
        var operation: Operation?
        var deviceError: UInt = 0
    }
    let state = Locked(Mutable())

    init(slot: UInt, readWrite: Bool, token: Token) {
        self.slot = slot
        self.readWrite = readWrite
        self.token = token
        pid = ProcessIdentity.current
    }

    var snapshot: Session {
        state.withLock { Session(slot: slot, readWrite: readWrite, operation: $0.operation, deviceError: $0.deviceError) }
    }
}

/// The library state behind every entry point. One instance per process (`Library.shared`).
public final class Library: Sendable {
    public static let shared = Library()

    struct State {
        var tokens: [Token]
        let pid: pid_t
    }
    let state = Locked<State?>(nil)
    /// Open sessions, each with its own lock; the library's lock is not taken on their path.
    let sessions = HandleTable<SessionEntry>()

    public init() {}

    // MARK: - General (PKCS#11 2.40 §5.4)

    public func initialize(tokens: [Token]) throws(TokenError) {
        try state.withLock { (s: inout State?) throws(TokenError) in
            if let current = s, current.pid == ProcessIdentity.current { throw .alreadyInitialized }
            s = State(tokens: tokens, pid: ProcessIdentity.current)
            // A forked child's inherited sessions go (its parent's handles mean nothing here).
            _ = sessions.removeAll { _ in true }
        }
    }

    public func finalize() throws(TokenError) {
        let tokens = try state.withLock { (s: inout State?) throws(TokenError) -> [Token] in
            guard let current = s else { throw .notInitialized }
            s = nil
            _ = sessions.removeAll { _ in true }
            return current.pid == ProcessIdentity.current ? current.tokens : []
        }
        // Session keys die with the application's use of the module (outside the lock: network);
        // the change-following threads end (their waits are interrupted).
        for t in tokens {
            t.stopFollowingChanges()
            t.releaseSessionKeys()
        }
    }

    /// The state of this process; a forked child must initialize again (PKCS#11 §6.7.7).
    func withState<R>(_ body: (inout State) throws(TokenError) -> R) throws(TokenError) -> R {
        try state.withLock { (s: inout State?) throws(TokenError) -> R in
            // Move the state out so it is uniquely referenced (no copy of the token list per call).
            guard var current = s.take() else { throw .notInitialized }
            defer { s = current }
            guard current.pid == ProcessIdentity.current else { throw .notInitialized }
            return try body(&current)
        }
    }

    /// fork() while another host thread is inside the module: the library lock is held across the
    /// fork by the forking thread (prepare) and released on both sides, so the child never inherits
    /// it locked (8 of 20 children hung before); the child then answers
    /// CKR_CRYPTOKI_NOT_INITIALIZED until it initializes (the state is the parent's by pid).
    public func prepareFork() {
        state.lockForFork()
        sessions.lockForFork()
    }
    public func afterFork() {
        sessions.unlockAfterFork()
        state.unlockAfterFork()
    }

    public var isInitialized: Bool { (try? withState { _ in true }) ?? false }

    public func tokens() throws(TokenError) -> [Token] { try withState { $0.tokens } }

    public func token(slot: UInt) throws(TokenError) -> Token {
        try withState { (s: inout State) throws(TokenError) -> Token in
            guard let t = s.tokens.first(where: { $0.slotID == slot }) else { throw .slotIDInvalid }
            return t
        }
    }

    // MARK: - Sessions (§5.6)

    public func openSession(slot: UInt, readWrite: Bool) throws(TokenError) -> UInt {
        let token = try token(slot: slot)
        return sessions.add { _ in SessionEntry(slot: slot, readWrite: readWrite, token: token) }
    }

    public func closeSession(_ h: UInt) throws(TokenError) {
        _ = try entry(h)
        guard let closed = sessions.remove(h) else { throw .sessionHandleInvalid }
        let others = sessions.entries.contains { $0.slot == closed.slot }
        // Its session objects go with it; closing the last session of a token logs it out (§5.6 C_CloseSession).
        closed.token.destroySessionKeys(session: h)
        if !others { try? closed.token.logout() }
    }

    public func closeAllSessions(slot: UInt) throws(TokenError) {
        let t = try token(slot: slot)
        _ = sessions.removeAll { $0.slot == slot }
        t.destroySessionKeys(session: nil)
        try? t.logout()
    }

    /// The entry of an open session of this process (the library lock is not taken: this is the
    /// path of every operation).
    func entry(_ h: UInt) throws(TokenError) -> SessionEntry {
        guard let e = sessions.entry(h) else {
            if !isInitialized { throw .notInitialized }
            throw .sessionHandleInvalid
        }
        guard e.pid == ProcessIdentity.current else { throw .notInitialized }
        return e
    }

    func session(_ h: UInt) throws(TokenError) -> (Session, Token) {
        let e = try entry(h)
        return (e.snapshot, e.token)
    }

    public func token(session h: UInt) throws(TokenError) -> Token { try session(h).1 }

    /// slot, state (CKS_*), read-write, last device error (HTTP status of the service).
    public func sessionInfo(_ h: UInt) throws(TokenError) -> (slot: UInt, state: UInt, readWrite: Bool, deviceError: UInt) {
        let (s, t) = try session(h)
        let st: UInt =
            switch t.loggedInUser {
            case .so?: 4  // CKS_RW_SO_FUNCTIONS
            case .user?: s.readWrite ? 3 : 1
            default: s.readWrite ? 2 : 0
            }
        return (s.slot, st, s.readWrite, s.deviceError)
    }

    func setOperation(_ h: UInt, _ op: Operation?) throws(TokenError) {
        try entry(h).state.withLock { $0.operation = op }
    }

    /// Records a service failure in the session (ulDeviceError) and passes the error on.
    func recordDevice<R>(_ h: UInt, _ body: () throws(TokenError) -> R) throws(TokenError) -> R {
        do {
            return try body()
        } catch {
            if case .device(_, let status) = error {
                (try? entry(h))?.state.withLock { $0.deviceError = UInt(max(status, 1)) }
            }
            throw error
        }
    }

    public func login(_ h: UInt, user: UserType, pin: String) throws(TokenError) {
        let (s, t) = try session(h)
        if user == .contextSpecific {
            // PKCS#11 §5.6: re-authentication for the operation just initialised with a
            // CKA_ALWAYS_AUTHENTICATE key; the normal user must be logged in already.
            guard t.loggedInUser != nil else { throw .userNotLoggedIn }
            guard case .sign(var op)? = s.operation else { throw .operationNotInitialized }
            try recordDevice(h) { () throws(TokenError) in try t.verifyUserPIN(pin) }
            op.reauthenticated = true
            try setOperation(h, .sign(op))
            return
        }
        if user == .so {
            let readOnly = sessions.entries.contains { $0.slot == s.slot && !$0.readWrite }
            if readOnly { throw .sessionReadOnlyExists }
        }
        try recordDevice(h) { () throws(TokenError) in try t.login(user, pin: pin) }
    }

    public func logout(_ h: UInt) throws(TokenError) { try session(h).1.logout() }

    // MARK: - Objects (§5.7)

    public func findInit(_ h: UInt, template: Template) throws(TokenError) {
        let (s, t) = try session(h)
        if s.operation != nil, case .find? = s.operation { throw .operationActive }
        let results = try recordDevice(h) { () throws(TokenError) in try t.find(template) }
        try setOperation(h, .find(results: results, position: 0))
    }

    public func find(_ h: UInt, max: Int) throws(TokenError) -> [ObjectHandle] {
        try entry(h).state.withLock { (s: inout SessionEntry.Mutable) throws(TokenError) in
            guard case .find(let results, let position)? = s.operation else { throw .operationNotInitialized }
            // No addition on the caller's count: ULONG_MAX must not overflow (a trap would kill the host).
            let end = position + min(results.count - position, Swift.max(0, max))
            s.operation = .find(results: results, position: end)
            return Array(results[position..<end])
        }
    }

    public func findFinal(_ h: UInt) throws(TokenError) {
        try entry(h).state.withLock { (s: inout SessionEntry.Mutable) throws(TokenError) in
            guard case .find? = s.operation else { throw .operationNotInitialized }
            s.operation = nil
        }
    }

    public enum AttributeResult: Sendable, Equatable { case value([UInt8]), sensitive, invalid }

    public func attributes(_ h: UInt, object: ObjectHandle, types: [AttributeType]) throws(TokenError) -> [AttributeResult] {
        let token = try session(h).1
        let o = try token.object(object)
        var out: [AttributeResult] = []
        for t in types {
            if o.sensitive.contains(t) {
                out.append(.sensitive)
            } else if let v = o.attributes[t] {
                out.append(.value(v))
            } else if t == .value, let v = try readableValue(h, token, o) {
                out.append(.value(v))
            } else {
                out.append(.invalid)
            }
        }
        return out
    }

    // MARK: - Mechanisms (the registry, with the service's features)

    public func mechanisms(slot: UInt) throws(TokenError) -> [MechanismType: MechanismInfo] {
        let t = try token(slot: slot)
        return (try? t.offeredMechanisms()) ?? MechanismTable.offered(features: nil)
    }

    // MARK: - Digest and random (§5.11, §5.15): local

    public func digestInit(_ h: UInt, mechanism: Mechanism) throws(TokenError) {
        let s = try session(h).0
        if case .digest? = s.operation { throw .operationActive }
        guard let hash = HashAlgorithm(mechanism: mechanism.type) else { throw .mechanismInvalid(mechanism.type) }
        try setOperation(h, .digest(DigestState(try digestContext(hash))))
    }

    func currentDigest(_ h: UInt) throws(TokenError) -> DigestState {
        guard case .digest(let d)? = try session(h).0.operation else { throw .operationNotInitialized }
        return d
    }

    public func digest(_ h: UInt, data: [UInt8], capacity: Int?) throws(TokenError) -> SizedOutput {
        let d = try currentDigest(h)
        // C_Digest after C_DigestUpdate is a caller error (2.40 §5.11) and ends the operation.
        if d.multipart { try? setOperation(h, nil); throw .operationActive }
        let size = d.context.algorithm.size
        guard let capacity else { return .length(size) }
        guard capacity >= size else { throw .bufferTooSmall(required: size) }
        defer { try? setOperation(h, nil) }
        d.context.update(data)
        return .bytes(d.context.finish())
    }

    public func digestUpdate(_ h: UInt, part: [UInt8]) throws(TokenError) {
        let d = try currentDigest(h)
        d.multipart = true
        part.withUnsafeBytes { d.remember($0) }
        d.context.update(part)
    }

    public func digestFinal(_ h: UInt, capacity: Int?) throws(TokenError) -> SizedOutput {
        let d = try currentDigest(h)
        let size = d.context.algorithm.size
        guard let capacity else { return .length(size) }
        guard capacity >= size else { throw .bufferTooSmall(required: size) }
        defer { try? setOperation(h, nil) }
        return .bytes(d.context.finish())
    }

    public func generateRandom(_ h: UInt, count: Int) throws(TokenError) -> [UInt8] {
        _ = try session(h)
        guard count >= 0, count <= 1 << 20 else { throw .argumentsBad("random length") }
        return SecureRandom.bytes(count)
    }

    /// Ends whatever operation the session has (an entry point could not take the caller's input).
    public func endOperation(_ h: UInt) { try? setOperation(h, nil) }

    public func seedRandom(_ h: UInt, seed: [UInt8]) throws(TokenError) {
        _ = try session(h)
        SecureRandom.mix(seed)
    }
}
