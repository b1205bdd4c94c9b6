/// Data in the caller's memory for a sign, verify or digest operation. When the operation hashes
/// here (CKM_SHA256_RSA_PKCS, CKM_ECDSA_SHA384, CKM_SHA256, …) it is hashed where it lies: no
/// copy and no size limit. Otherwise it is copied, up to `copyLimit`.
public struct CallerData {
    public let buffer: UnsafeRawBufferPointer
    public static let copyLimit = 64 << 20

    public init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    func bytes() throws(TokenError) -> [UInt8] {
        guard buffer.count <= CallerData.copyLimit else { throw .argumentsBad("length \(buffer.count) is too large for this mechanism") }
        return Array(buffer)
    }
}

extension Library {
    /// Runs `body` for an active operation; any error ends it (PKCS#11 §5.2), except a buffer too small.
    private func ending<R>(_ h: UInt, _ body: () throws(TokenError) -> R) throws(TokenError) -> R {
        do { return try body() } catch {
            if case .bufferTooSmall = error {} else { endOperation(h) }
            throw error
        }
    }

    public func sign(_ h: UInt, input: CallerData, capacity: Int?) throws(TokenError) -> SizedOutput {
        let op = try currentSign(h)
        guard let d = op.digest, !op.multipart else {
            return try ending(h) { () throws(TokenError) in try sign(h, data: try input.bytes(), capacity: capacity) }
        }
        // A size query or a short buffer leaves the data alone; the real call hashes it in place.
        if let capacity, capacity >= op.signatureLength { d.context.update(input.buffer) }
        return try sign(h, data: [], capacity: capacity)
    }

    public func signUpdate(_ h: UInt, input: CallerData) throws(TokenError) {
        var op = try currentSign(h)
        guard let d = op.digest else { return try ending(h) { () throws(TokenError) in try signUpdate(h, part: try input.bytes()) } }
        op.multipart = true
        d.remember(input.buffer)
        d.context.update(input.buffer)
        try setOperation(h, .sign(op))
    }

    public func verify(_ h: UInt, input: CallerData, signature: [UInt8]) throws(TokenError) {
        let op = try currentVerify(h)
        guard let d = op.digest else {
            return try ending(h) { () throws(TokenError) in try verify(h, data: try input.bytes(), signature: signature) }
        }
        d.context.update(input.buffer)
        try verify(h, data: [], signature: signature)
    }

    public func verifyUpdate(_ h: UInt, input: CallerData) throws(TokenError) {
        var op = try currentVerify(h)
        guard let d = op.digest else { return try ending(h) { () throws(TokenError) in try verifyUpdate(h, part: try input.bytes()) } }
        op.multipart = true
        d.remember(input.buffer)
        d.context.update(input.buffer)
        try setOperation(h, .verify(op))
    }

    public func digest(_ h: UInt, input: CallerData, capacity: Int?) throws(TokenError) -> SizedOutput {
        let d = try currentDigest(h)
        if let capacity, capacity >= d.context.algorithm.size, !d.multipart { d.context.update(input.buffer) }
        return try digest(h, data: [], capacity: capacity)
    }

    public func digestUpdate(_ h: UInt, input: CallerData) throws(TokenError) {
        let d = try currentDigest(h)
        d.multipart = true
        d.remember(input.buffer)
        d.context.update(input.buffer)
    }
}
