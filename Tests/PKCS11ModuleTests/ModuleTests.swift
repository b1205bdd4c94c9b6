import CPKCS11
import Glibc
import Testing
import VSSMCrypto
import VSSMServer
import VSSMTestSupport
import VSSMWire

/// The built libvssm-pkcs11.so, loaded as a host loads it (dlopen + C_GetFunctionList).
final class LoadedModule: @unchecked Sendable {
    static let shared = LoadedModule()
    let handle: UnsafeMutableRawPointer?
    let list: UnsafeMutablePointer<CK_FUNCTION_LIST>?
    let path: String

    init() {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        let exe = n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        // .../debug/vssm-pkcs11PackageTests.xctest -> .../debug/libvssm-pkcs11.so
        let dir = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        path = getenv("VSSM_PKCS11_MODULE").map { String(cString: $0) } ?? dir + "/libvssm-pkcs11.so"
        handle = dlopen(path, RTLD_NOW | RTLD_LOCAL)
        var l: UnsafeMutablePointer<CK_FUNCTION_LIST>? = nil
        if let handle, let sym = dlsym(handle, "C_GetFunctionList") {
            let get = unsafeBitCast(sym, to: CK_C_GetFunctionList.self)
            _ = get(&l)
        }
        list = l
    }

    var f: CK_FUNCTION_LIST { list!.pointee }
}

func rv(_ x: some BinaryInteger) -> CK_RV { CK_RV(x) }

/// Writes a module config for a running test node; returns its path.
func writeConfig(for n: TestNode, userPinIsAdmin: Bool = true, extra: String = "") throws -> String {
    let dir = TestNode.tempDir()
    let pki = TestNode.shared.pki
    try FileUtil.writeAtomically(path: dir + "/ca.pem", bytes: Array(X509Info.pem(certificates: [pki.rpcCertificateDER]).utf8), mode: 0o600)
    try FileUtil.writeAtomically(
        path: dir + "/cert.pem", bytes: Array(X509Info.pem(certificates: [pki.clientCertificateDER]).utf8), mode: 0o600)
    try FileUtil.writeAtomically(path: dir + "/key.pem", bytes: Array(pki.clientKeyPEM.utf8), mode: 0o600)
    let json = """
        {"slots": [{"label": "test-token", "endpoints": ["https://127.0.0.1:\(n.ports[.api] ?? 0)"], "ca": "ca.pem",
                    "clientCert": "cert.pem", "clientKey": "key.pem", "userPinIsAdminPassword": \(userPinIsAdmin)\(extra)}]}
        """
    try FileUtil.writeAtomically(path: dir + "/pkcs11.json", bytes: Array(json.utf8), mode: 0o600)
    return dir + "/pkcs11.json"
}

@Suite(.serialized) struct ModuleTests {
    let m = LoadedModule.shared

    @Test func loadsAndExportsCompleteFunctionLists() throws {
        #expect(m.handle != nil, "dlopen \(m.path): \(String(cString: dlerror()))")
        let list = try #require(m.list)
        #expect(list.pointee.version.major == 2 && list.pointee.version.minor == 40)
        // Every slot of both lists is non-NULL (hosts call entries without checking).
        func allSet<T>(_ p: UnsafeMutablePointer<T>, slots: Int) -> Bool {
            let words = UnsafeRawPointer(p).advanced(by: 8).assumingMemoryBound(to: UInt.self)
            return (0..<slots).allSatisfy { words[$0] != 0 }
        }
        #expect(allSet(list, slots: 68))
        let getIface = unsafeBitCast(try #require(dlsym(m.handle, "C_GetInterface")), to: CK_C_GetInterface.self)
        var iface: UnsafeMutablePointer<CK_INTERFACE>? = nil
        #expect(getIface(nil, nil, &iface, 0) == rv(CKR_OK))
        let fl30 = try #require(iface?.pointee.pFunctionList?.assumingMemoryBound(to: CK_FUNCTION_LIST_3_0.self))
        #expect(fl30.pointee.version.major == 3 && fl30.pointee.version.minor == 0)
        #expect(allSet(fl30, slots: 92))
        #expect(
            String(cString: UnsafeRawPointer(try #require(iface?.pointee.pInterfaceName)).assumingMemoryBound(to: CChar.self)) == "PKCS 11")
        // PKCS#11 3.2, asked for by version: the 3.0 list plus 12 entries, C_EncapsulateKey and
        // C_DecapsulateKey implemented, the other 3.2 calls answering CKR_FUNCTION_NOT_SUPPORTED.
        var v32 = CK_VERSION(major: 3, minor: 2)
        #expect(getIface(nil, &v32, &iface, 0) == rv(CKR_OK))
        let fl32 = try #require(iface?.pointee.pFunctionList?.assumingMemoryBound(to: CK_FUNCTION_LIST_3_2.self))
        #expect(fl32.pointee.version.major == 3 && fl32.pointee.version.minor == 2)
        #expect(allSet(fl32, slots: 104))
        #expect(unsafeBitCast(fl32.pointee.C_EncapsulateKey, to: UnsafeMutableRawPointer?.self) == dlsym(m.handle, "C_EncapsulateKey"))
        #expect(fl32.pointee.C_VerifySignatureFinal?(0) == rv(CKR_FUNCTION_NOT_SUPPORTED))
        var v240 = CK_VERSION(major: 2, minor: 40)
        #expect(getIface(nil, &v240, &iface, 0) == rv(CKR_OK))
        #expect(iface?.pointee.pFunctionList == UnsafeMutableRawPointer(list))
        var bogus = Array("NOPE".utf8CString).map { UInt8(bitPattern: $0) }
        #expect(getIface(&bogus, nil, &iface, 0) == rv(CKR_ARGUMENTS_BAD))
        #expect(getIface(nil, nil, nil, 0) == rv(CKR_ARGUMENTS_BAD))
        let getList = unsafeBitCast(try #require(dlsym(m.handle, "C_GetInterfaceList")), to: CK_C_GetInterfaceList.self)
        var count: CK_ULONG = 0
        #expect(getList(nil, &count) == rv(CKR_OK) && count == 3)
        var one: CK_ULONG = 1
        var buf = [CK_INTERFACE](repeating: CK_INTERFACE(), count: 3)
        #expect(getList(&buf, &one) == rv(CKR_BUFFER_TOO_SMALL) && one == 3)
        #expect(getList(nil, nil) == rv(CKR_ARGUMENTS_BAD))
    }

    @Test func misuseBeforeInitializeReturnsSpecCodes() {
        let f = m.f
        var info = CK_INFO()
        #expect(f.C_GetInfo!(&info) == rv(CKR_CRYPTOKI_NOT_INITIALIZED))
        #expect(f.C_Finalize!(nil) == rv(CKR_CRYPTOKI_NOT_INITIALIZED))
        var h: CK_SESSION_HANDLE = 0
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION), nil, nil, &h) == rv(CKR_CRYPTOKI_NOT_INITIALIZED))
        var count: CK_ULONG = 0
        #expect(f.C_GetSlotList!(0, nil, &count) == rv(CKR_CRYPTOKI_NOT_INITIALIZED))
        #expect(f.C_Sign!(1, nil, 0, nil, &count) == rv(CKR_CRYPTOKI_NOT_INITIALIZED))
        #expect(f.C_GetInfo!(nil) == rv(CKR_CRYPTOKI_NOT_INITIALIZED))
        // A missing config file is a clear, specific failure, not a crash.
        var args = CK_C_INITIALIZE_ARGS()
        let missing = strdup("/nonexistent/pkcs11.json")
        defer { free(missing) }
        args.pReserved = UnsafeMutableRawPointer(missing)
        #expect(f.C_Initialize!(&args) == rv(CKR_ARGUMENTS_BAD))
        // Regression: an invalid pReserved was read as a C string (SIGSEGV in the host).
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let unmapped = mmap(nil, pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        munmap(unmapped, pageSize)
        for bad in [UnsafeMutableRawPointer(bitPattern: 0x10), unmapped] {
            args.pReserved = bad
            #expect(f.C_Initialize!(&args) == rv(CKR_ARGUMENTS_BAD))
        }
        // A path that runs into an unmapped page without its NUL is refused too.
        let twoPages = mmap(nil, 2 * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if let twoPages, twoPages != MAP_FAILED {
            memset(twoPages, 0x41, pageSize)
            munmap(twoPages + pageSize, pageSize)
            args.pReserved = twoPages + pageSize - 8
            #expect(f.C_Initialize!(&args) == rv(CKR_ARGUMENTS_BAD))
            munmap(twoPages, pageSize)
        }
        args.pReserved = nil
        #expect(f.C_EncryptInit!(1, nil, 0) == rv(CKR_CRYPTOKI_NOT_INITIALIZED))
        #expect(f.C_WrapKey!(1, nil, 0, 0, nil, nil) == rv(CKR_CRYPTOKI_NOT_INITIALIZED))
        #expect(f.C_InitToken!(0, nil, 0, nil) == rv(CKR_FUNCTION_NOT_SUPPORTED))
    }

    /// `endpointOrder` is "ordered" or "round-robin"; anything else is a clear C_Initialize failure.
    @Test func endpointOrderIsCheckedAtInitialize() throws {
        let node = try TestNode()
        defer { node.stop() }
        let f = m.f
        for (extra, expected) in [
            (#", "endpointOrder": "round-robin""#, CKR_OK), (#", "endpointOrder": "ordered""#, CKR_OK),
            (#", "endpointOrder": "sideways""#, CKR_FUNCTION_FAILED), (#", "endpointOrder": 1"#, CKR_FUNCTION_FAILED),
        ] {
            var args = CK_C_INITIALIZE_ARGS()
            let path = strdup(try writeConfig(for: node, extra: extra))
            defer { free(path) }
            args.pReserved = UnsafeMutableRawPointer(path)
            #expect(f.C_Initialize!(&args) == rv(expected), "\(extra)")
            if expected == CKR_OK {
                var count: CK_ULONG = 0
                #expect(f.C_GetSlotList!(1, nil, &count) == rv(CKR_OK) && count == 1)
                _ = f.C_Finalize!(nil)
            }
        }
    }

    /// `namespace`/`namespaces` in a slot: one slot per namespace, labelled with it; "auto" asks the
    /// service for the principal's namespaces (one slot while none are registered); bad names fail.
    @Test func namespaceSlotsAreCheckedAndExpanded() throws {
        let node = try TestNode()
        defer { node.stop() }
        let f = m.f
        func slots(_ extra: String) throws -> (CK_RV, [String]) {
            var args = CK_C_INITIALIZE_ARGS()
            let path = strdup(try writeConfig(for: node, extra: extra))
            defer { free(path) }
            args.pReserved = UnsafeMutableRawPointer(path)
            let r = f.C_Initialize!(&args)
            guard r == rv(CKR_OK) else { return (r, []) }
            defer { _ = f.C_Finalize!(nil) }
            var count: CK_ULONG = 0
            _ = f.C_GetSlotList!(1, nil, &count)
            var ids = [CK_SLOT_ID](repeating: 0, count: Int(count))
            _ = f.C_GetSlotList!(1, &ids, &count)
            return (
                r,
                ids.map { id in
                    var info = CK_TOKEN_INFO()
                    _ = f.C_GetTokenInfo!(id, &info)
                    return withUnsafeBytes(of: info.label) { String(decoding: $0, as: UTF8.self) }.split(separator: " ").joined(
                        separator: " ")
                }
            )
        }
        #expect(try slots(#", "namespaces": ["a", "b-2"]"#) == (rv(CKR_OK), ["a", "b-2"]))
        #expect(try slots(#", "namespace": "a""#) == (rv(CKR_OK), ["test-token"]))
        #expect(try slots(#", "namespaces": "auto""#) == (rv(CKR_OK), ["test-token"]))  // no principals: one slot
        #expect(try slots(#", "namespaces": ["A B"]"#).0 == rv(CKR_FUNCTION_FAILED))
        #expect(try slots(#", "namespace": "@x""#).0 == rv(CKR_FUNCTION_FAILED))
        #expect(try slots(#", "namespaces": []"#).0 == rv(CKR_FUNCTION_FAILED))
        // With principals: "auto" gives the principal's namespaces.
        let api = try node.client()
        _ = try api.addPrincipal(
            password: TestNode.password, name: "test", certificate: TestNode.shared.pki.clientCertificateDER,
            role: "officer", namespaces: ["one", "two"], pin: nil)
        #expect(try slots(#", "namespaces": "auto""#) == (rv(CKR_OK), ["one", "two"]))
    }

    @Test func signsFindsAndReadsAttributesAgainstARealNode() throws {
        let node = try TestNode()
        defer { node.stop() }
        let api = try node.client()
        try api.generateKey(password: TestNode.password, name: "ec", type: .asymmetric, spec: .ec, size: 256)
        try api.generateKey(password: TestNode.password, name: "rsa", type: .asymmetric, spec: .rsa, size: 2048)
        let f = m.f
        var args = CK_C_INITIALIZE_ARGS()
        let path = strdup(try writeConfig(for: node))
        defer { free(path) }
        args.pReserved = UnsafeMutableRawPointer(path)
        args.flags = CK_FLAGS(CKF_OS_LOCKING_OK)
        #expect(f.C_Initialize!(&args) == rv(CKR_OK))
        defer { _ = f.C_Finalize!(nil) }
        #expect(f.C_Initialize!(&args) == rv(CKR_CRYPTOKI_ALREADY_INITIALIZED))

        var count: CK_ULONG = 0
        #expect(f.C_GetSlotList!(1, nil, &count) == rv(CKR_OK) && count == 1)
        var slots = [CK_SLOT_ID](repeating: 99, count: 1)
        #expect(f.C_GetSlotList!(1, &slots, &count) == rv(CKR_OK) && slots[0] == 0)
        var tinfo = CK_TOKEN_INFO()
        #expect(f.C_GetTokenInfo!(0, &tinfo) == rv(CKR_OK))
        let label = withUnsafeBytes(of: tinfo.label) { String(decoding: $0, as: UTF8.self) }
        #expect(label == "test-token" + String(repeating: " ", count: 22))
        #expect(tinfo.flags & CK_FLAGS(CKF_LOGIN_REQUIRED) != 0, "the user PIN is the admin password: key management needs a login")
        #expect(f.C_GetTokenInfo!(7, &tinfo) == rv(CKR_SLOT_ID_INVALID))

        var mcount: CK_ULONG = 0
        #expect(f.C_GetMechanismList!(0, nil, &mcount) == rv(CKR_OK))
        var mechs = [CK_MECHANISM_TYPE](repeating: 0, count: Int(mcount))
        #expect(f.C_GetMechanismList!(0, &mechs, &mcount) == rv(CKR_OK))
        #expect(mechs.contains(CK_MECHANISM_TYPE(CKM_ECDSA)) && mechs.contains(CK_MECHANISM_TYPE(CKM_SHA256_RSA_PKCS_PSS)))

        var s: CK_SESSION_HANDLE = 0
        #expect(f.C_OpenSession!(0, 0, nil, nil, &s) == rv(CKR_SESSION_PARALLEL_NOT_SUPPORTED))
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION), nil, nil, &s) == rv(CKR_OK))
        // Find the private keys.
        let cls = CK_OBJECT_CLASS(CKO_PRIVATE_KEY)
        var tmpl = [
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_CLASS), pValue: pinned(cls), ulValueLen: CK_ULONG(MemoryLayout<CK_OBJECT_CLASS>.size))
        ]
        #expect(f.C_FindObjectsInit!(s, &tmpl, 1) == rv(CKR_OK))
        #expect(f.C_FindObjectsInit!(s, &tmpl, 1) == rv(CKR_OPERATION_ACTIVE))
        var found = [CK_OBJECT_HANDLE](repeating: 0, count: 10)
        var nfound: CK_ULONG = 0
        #expect(f.C_FindObjects!(s, &found, 1, &nfound) == rv(CKR_OK) && nfound == 1)
        // A huge count (ULONG_MAX) must not overflow inside the module.
        #expect(f.C_FindObjects!(s, &found[1], CK_ULONG.max, &nfound) == rv(CKR_OK) && nfound == 1)
        nfound = 2
        #expect(f.C_FindObjectsFinal!(s) == rv(CKR_OK))
        #expect(f.C_FindObjectsFinal!(s) == rv(CKR_OPERATION_NOT_INITIALIZED))

        func attr(_ h: CK_OBJECT_HANDLE, _ t: UInt) -> (CK_RV, [UInt8]) {
            var a = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(t), pValue: nil, ulValueLen: 0)
            var r = f.C_GetAttributeValue!(s, h, &a, 1)
            guard r == rv(CKR_OK) else { return (r, []) }
            var buf = [UInt8](repeating: 0, count: Int(a.ulValueLen))
            buf.withUnsafeMutableBytes {
                a.pValue = $0.baseAddress; r = f.C_GetAttributeValue!(s, h, &a, 1)
            }
            return (r, buf)
        }
        var ecKey: CK_OBJECT_HANDLE = 0
        var rsaKey: CK_OBJECT_HANDLE = 0
        for h in found.prefix(Int(nfound)) {
            let (_, l) = attr(h, UInt(CKA_LABEL))
            if l == Array("ec".utf8) { ecKey = h } else if l == Array("rsa".utf8) { rsaKey = h }
        }
        #expect(ecKey != 0 && rsaKey != 0)
        let ecSPKI = try #require(node.node.snapshot.asymmetric["ec"]?.spki)
        let (_, id) = attr(ecKey, UInt(CKA_ID))
        #expect(
            id == DigestAlgorithm.sha1.hash(try #require(DER.subjectPublicKeyBitsForTest(ecSPKI))), "CKA_ID = SHA-1 of the public key bits")
        #expect(attr(ecKey, UInt(CKA_EC_PARAMS)).1 == NamedCurve.p256.oidDER)
        #expect(attr(ecKey, UInt(CKA_VALUE)).0 == rv(CKR_ATTRIBUTE_SENSITIVE))
        #expect(attr(ecKey, 0x7FFF_0000).0 == rv(CKR_ATTRIBUTE_TYPE_INVALID))
        #expect(attr(rsaKey, UInt(CKA_PUBLIC_EXPONENT)).1 == [1, 0, 1])
        var small = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_LABEL), pValue: nil, ulValueLen: 1)
        small.pValue = pinned(UInt8(0))
        #expect(
            f.C_GetAttributeValue!(s, rsaKey, &small, 1) == rv(CKR_BUFFER_TOO_SMALL) && small.ulValueLen == cpkcs11_unavailable_information)

        // ECDSA: size query keeps the operation active; short buffer reports the length; then sign.
        var mech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_ECDSA_SHA256), pParameter: nil, ulParameterLen: 0)
        #expect(f.C_SignInit!(s, &mech, ecKey) == rv(CKR_OK))
        var data = Array("to be signed".utf8)
        var sigLen: CK_ULONG = 0
        #expect(f.C_Sign!(s, &data, CK_ULONG(data.count), nil, &sigLen) == rv(CKR_OK) && sigLen == 64)
        var tiny = [UInt8](repeating: 0, count: 10)
        var tinyLen: CK_ULONG = 10
        #expect(f.C_Sign!(s, &data, CK_ULONG(data.count), &tiny, &tinyLen) == rv(CKR_BUFFER_TOO_SMALL) && tinyLen == 64)
        var sig = [UInt8](repeating: 0, count: 64)
        #expect(f.C_Sign!(s, &data, CK_ULONG(data.count), &sig, &sigLen) == rv(CKR_OK))
        let pub = try PublicKey(spki: ecSPKI)
        #expect(
            pub.verify(signature: try #require(ECDSASignature.rawToDER(sig)), digest: DigestAlgorithm.sha256.hash(data), scheme: .ecdsa))
        #expect(f.C_Sign!(s, &data, CK_ULONG(data.count), &sig, &sigLen) == rv(CKR_OPERATION_NOT_INITIALIZED))
        // The module verifies locally.
        #expect(f.C_VerifyInit!(s, &mech, ecKey) == rv(CKR_OK))
        #expect(f.C_Verify!(s, &data, CK_ULONG(data.count), &sig, 64) == rv(CKR_OK))
        sig[5] ^= 1
        #expect(f.C_VerifyInit!(s, &mech, ecKey) == rv(CKR_OK))
        #expect(f.C_Verify!(s, &data, CK_ULONG(data.count), &sig, 64) == rv(CKR_SIGNATURE_INVALID))

        // RSA: multi-part SHA256_RSA_PKCS and PSS, checked with the public key.
        let rsaPub = try PublicKey(spki: try #require(node.node.snapshot.asymmetric["rsa"]?.spki))
        var rmech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_SHA256_RSA_PKCS), pParameter: nil, ulParameterLen: 0)
        #expect(f.C_SignInit!(s, &rmech, rsaKey) == rv(CKR_OK))
        #expect(f.C_SignUpdate!(s, &data, 5) == rv(CKR_OK))
        var rest = Array(data.dropFirst(5))
        #expect(f.C_SignUpdate!(s, &rest, CK_ULONG(rest.count)) == rv(CKR_OK))
        var rsig = [UInt8](repeating: 0, count: 256)
        var rlen: CK_ULONG = 256
        #expect(f.C_SignFinal!(s, &rsig, &rlen) == rv(CKR_OK) && rlen == 256)
        #expect(rsaPub.verify(signature: rsig, digest: DigestAlgorithm.sha256.hash(data), scheme: .pkcs1(.sha256)))
        let pss = CK_RSA_PKCS_PSS_PARAMS(hashAlg: CK_MECHANISM_TYPE(CKM_SHA256), mgf: CK_RSA_PKCS_MGF_TYPE(CKG_MGF1_SHA256), sLen: 32)
        var pmech = CK_MECHANISM(
            mechanism: CK_MECHANISM_TYPE(CKM_SHA256_RSA_PKCS_PSS), pParameter: pinned(pss),
            ulParameterLen: CK_ULONG(MemoryLayout<CK_RSA_PKCS_PSS_PARAMS>.size))
        #expect(f.C_SignInit!(s, &pmech, rsaKey) == rv(CKR_OK))
        #expect(f.C_Sign!(s, &data, CK_ULONG(data.count), &rsig, &rlen) == rv(CKR_OK))
        #expect(
            rsaPub.verify(signature: rsig, digest: DigestAlgorithm.sha256.hash(data), scheme: .pss(.sha256, mgf1: .sha256, saltLength: 32)))
        #expect(f.C_SignInit!(s, &mech, rsaKey) == rv(CKR_KEY_TYPE_INCONSISTENT))

        // The service's answer to a failure reaches the caller: delete the key behind the module's
        // back; the (local) SignInit works, the sign is CKR_DEVICE_ERROR and ulDeviceError is 404.
        var del = WireWriter()
        del.string("adminPassword", TestNode.password)
        del.string("keyName", "rsa")
        del.string("keyType", "ASYMMETRIC")
        _ = try api.call(Route.extDeleteKey, del, response: Schemas.empty, idempotent: false)
        #expect(f.C_SignInit!(s, &rmech, rsaKey) == rv(CKR_OK))
        #expect(f.C_Sign!(s, &data, CK_ULONG(data.count), &rsig, &rlen) == rv(CKR_DEVICE_ERROR))
        var devInfo = CK_SESSION_INFO()
        #expect(f.C_GetSessionInfo!(s, &devInfo) == rv(CKR_OK) && devInfo.ulDeviceError == 404)

        // Digest and random are local.
        var dmech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_SHA384), pParameter: nil, ulParameterLen: 0)
        #expect(f.C_DigestInit!(s, &dmech) == rv(CKR_OK))
        var digest = [UInt8](repeating: 0, count: 48)
        var dlen: CK_ULONG = 48
        #expect(f.C_Digest!(s, &data, CK_ULONG(data.count), &digest, &dlen) == rv(CKR_OK) && digest == DigestAlgorithm.sha384.hash(data))
        // Single-part C_Digest after C_DigestUpdate is refused and ends the operation.
        #expect(f.C_DigestInit!(s, &dmech) == rv(CKR_OK))
        #expect(f.C_DigestUpdate!(s, &data, CK_ULONG(data.count)) == rv(CKR_OK))
        #expect(f.C_Digest!(s, &data, CK_ULONG(data.count), &digest, &dlen) == rv(CKR_OPERATION_ACTIVE))
        #expect(f.C_DigestFinal!(s, &digest, &dlen) == rv(CKR_OPERATION_NOT_INITIALIZED))
        // Operation state (issue 22, item 3): half a SHA-256 digest saved in this session and
        // finished in another gives the single-pass digest; the first session goes on as well.
        var sha256 = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_SHA256), pParameter: nil, ulParameterLen: 0)
        #expect(f.C_DigestInit!(s, &sha256) == rv(CKR_OK))
        var firstHalf = Array(data.prefix(5))
        var secondHalf = Array(data.dropFirst(5))
        #expect(f.C_DigestUpdate!(s, &firstHalf, CK_ULONG(firstHalf.count)) == rv(CKR_OK))
        var stateLen: CK_ULONG = 0
        #expect(f.C_GetOperationState!(s, nil, &stateLen) == rv(CKR_OK) && stateLen > 0)
        var state = [UInt8](repeating: 0, count: Int(stateLen))
        #expect(f.C_GetOperationState!(s, &state, &stateLen) == rv(CKR_OK))
        var s2: CK_SESSION_HANDLE = 0
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION), nil, nil, &s2) == rv(CKR_OK))
        #expect(f.C_SetOperationState!(s2, &state, stateLen, 0, 0) == rv(CKR_OK))
        #expect(f.C_DigestUpdate!(s2, &secondHalf, CK_ULONG(secondHalf.count)) == rv(CKR_OK))
        var resumed = [UInt8](repeating: 0, count: 32)
        var resumedLen: CK_ULONG = 32
        #expect(f.C_DigestFinal!(s2, &resumed, &resumedLen) == rv(CKR_OK) && resumed == DigestAlgorithm.sha256.hash(data))
        #expect(f.C_DigestUpdate!(s, &secondHalf, CK_ULONG(secondHalf.count)) == rv(CKR_OK))
        #expect(f.C_DigestFinal!(s, &resumed, &resumedLen) == rv(CKR_OK) && resumed == DigestAlgorithm.sha256.hash(data))
        #expect(f.C_GetOperationState!(s2, nil, &stateLen) == rv(CKR_OPERATION_NOT_INITIALIZED))
        var junk: [UInt8] = [1, 2, 3]
        #expect(f.C_SetOperationState!(s2, &junk, 3, 0, 0) == rv(CKR_SAVED_STATE_INVALID))
        #expect(f.C_SetOperationState!(s2, &state, stateLen, 7, 0) == rv(CKR_KEY_NOT_NEEDED))
        #expect(f.C_CloseSession!(s2) == rv(CKR_OK))
        var random = [UInt8](repeating: 0, count: 32)
        #expect(f.C_GenerateRandom!(s, &random, 32) == rv(CKR_OK) && random != [UInt8](repeating: 0, count: 32))

        // Login: SO needs read-write sessions only; the SO PIN is the admin password, checked by the service.
        var wrong = Array("wrong".utf8)
        var pin = Array(TestNode.password.utf8)
        #expect(f.C_Login!(s, CK_USER_TYPE(CKU_SO), &pin, CK_ULONG(pin.count)) == rv(CKR_SESSION_READ_ONLY_EXISTS))
        #expect(f.C_Login!(s, CK_USER_TYPE(CKU_USER), &pin, CK_ULONG(pin.count)) == rv(CKR_OK))
        #expect(f.C_Login!(s, CK_USER_TYPE(CKU_USER), &pin, CK_ULONG(pin.count)) == rv(CKR_USER_ALREADY_LOGGED_IN))
        var sinfo = CK_SESSION_INFO()
        #expect(f.C_GetSessionInfo!(s, &sinfo) == rv(CKR_OK) && sinfo.state == CK_STATE(CKS_RO_USER_FUNCTIONS))
        #expect(f.C_Logout!(s) == rv(CKR_OK))
        #expect(f.C_CloseSession!(s) == rv(CKR_OK))
        #expect(f.C_CloseSession!(s) == rv(CKR_SESSION_HANDLE_INVALID))
        var rw: CK_SESSION_HANDLE = 0
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION | CKF_RW_SESSION), nil, nil, &rw) == rv(CKR_OK))
        #expect(f.C_Login!(rw, CK_USER_TYPE(CKU_SO), &wrong, CK_ULONG(wrong.count)) == rv(CKR_PIN_INCORRECT))
        #expect(f.C_Login!(rw, CK_USER_TYPE(CKU_SO), &pin, CK_ULONG(pin.count)) == rv(CKR_OK))
        #expect(f.C_GetSessionInfo!(rw, &sinfo) == rv(CKR_OK) && sinfo.state == CK_STATE(CKS_RW_SO_FUNCTIONS))
        #expect(f.C_CloseAllSessions!(0) == rv(CKR_OK))
        #expect(f.C_GetSessionInfo!(rw, &sinfo) == rv(CKR_SESSION_HANDLE_INVALID))
    }

    /// Misuse never crashes the host: NULL pointers, bad handles, wrong order, double init and
    /// calls after finalize return the codes of PKCS#11 2.40 §5.
    @Test func misuseReturnsSpecCodesNeverCrashes() throws {
        let node = try TestNode()
        defer { node.stop() }
        let api = try node.client()
        try api.generateKey(password: TestNode.password, name: "ec", type: .asymmetric, spec: .ec, size: 256)
        let f = m.f
        var args = CK_C_INITIALIZE_ARGS()
        let path = strdup(try writeConfig(for: node))
        defer { free(path) }
        args.pReserved = UnsafeMutableRawPointer(path)
        // Some but not all mutex callbacks: CKR_ARGUMENTS_BAD (§5.4).
        var partial = args
        partial.CreateMutex = { _ in CK_RV(CKR_OK) }
        #expect(f.C_Initialize!(&partial) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_Initialize!(&args) == rv(CKR_OK))
        defer { _ = f.C_Finalize!(nil) }
        var dummy: UInt8 = 0
        #expect(f.C_Finalize!(&dummy) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_GetInfo!(nil) == rv(CKR_ARGUMENTS_BAD))

        // NULL output pointers.
        #expect(f.C_GetSlotList!(0, nil, nil) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_GetSlotInfo!(0, nil) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_GetTokenInfo!(0, nil) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_GetMechanismList!(0, nil, nil) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_GetMechanismInfo!(0, CK_MECHANISM_TYPE(CKM_ECDSA), nil) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION), nil, nil, nil) == rv(CKR_ARGUMENTS_BAD))
        var slots = [CK_SLOT_ID](repeating: 0, count: 1)
        var zero: CK_ULONG = 0
        #expect(f.C_GetSlotList!(0, &slots, &zero) == rv(CKR_BUFFER_TOO_SMALL) && zero == 1)
        var minfo = CK_MECHANISM_INFO()
        #expect(f.C_GetMechanismInfo!(0, 0x7FFF_FFFF, &minfo) == rv(CKR_MECHANISM_INVALID))
        #expect(f.C_GetMechanismInfo!(5, CK_MECHANISM_TYPE(CKM_ECDSA), &minfo) == rv(CKR_SLOT_ID_INVALID))

        var s: CK_SESSION_HANDLE = 0
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION), nil, nil, &s) == rv(CKR_OK))
        defer { _ = f.C_CloseSession!(s) }
        #expect(f.C_GetSessionInfo!(s, nil) == rv(CKR_ARGUMENTS_BAD))
        // Invalid session handles everywhere.
        let bad: CK_SESSION_HANDLE = 0xDEAD
        var info = CK_SESSION_INFO()
        #expect(f.C_GetSessionInfo!(bad, &info) == rv(CKR_SESSION_HANDLE_INVALID))
        #expect(f.C_CloseSession!(0) == rv(CKR_SESSION_HANDLE_INVALID))
        #expect(f.C_FindObjectsInit!(bad, nil, 0) == rv(CKR_SESSION_HANDLE_INVALID))
        #expect(f.C_Logout!(bad) == rv(CKR_SESSION_HANDLE_INVALID))
        var buf = [UInt8](repeating: 0, count: 8)
        #expect(f.C_GenerateRandom!(bad, &buf, 8) == rv(CKR_SESSION_HANDLE_INVALID))
        // Wrong order.
        var n: CK_ULONG = 0
        var handles = [CK_OBJECT_HANDLE](repeating: 0, count: 4)
        #expect(f.C_FindObjects!(s, &handles, 4, &n) == rv(CKR_OPERATION_NOT_INITIALIZED))
        #expect(f.C_Sign!(s, &buf, 8, nil, &n) == rv(CKR_OPERATION_NOT_INITIALIZED))
        #expect(f.C_SignFinal!(s, nil, &n) == rv(CKR_OPERATION_NOT_INITIALIZED))
        var sigBuf = [UInt8](repeating: 0, count: 8)
        #expect(f.C_Verify!(s, &buf, 8, &sigBuf, 8) == rv(CKR_OPERATION_NOT_INITIALIZED))
        #expect(f.C_DigestUpdate!(s, &buf, 8) == rv(CKR_OPERATION_NOT_INITIALIZED))
        #expect(f.C_Decrypt!(s, &buf, 8, nil, &n) == rv(CKR_OPERATION_NOT_INITIALIZED))
        #expect(f.C_Logout!(s) == rv(CKR_USER_NOT_LOGGED_IN))
        // Bad object handles and NULL mechanisms/templates.
        var mech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_ECDSA), pParameter: nil, ulParameterLen: 0)
        #expect(f.C_SignInit!(s, &mech, 0) == rv(CKR_KEY_HANDLE_INVALID))
        #expect(f.C_SignInit!(s, &mech, 0xFFFF) == rv(CKR_KEY_HANDLE_INVALID))
        #expect(f.C_SignInit!(s, nil, 1) == rv(CKR_ARGUMENTS_BAD))
        var a = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_LABEL), pValue: nil, ulValueLen: 0)
        #expect(f.C_GetAttributeValue!(s, 0xFFFF, &a, 1) == rv(CKR_OBJECT_HANDLE_INVALID))
        #expect(f.C_GetAttributeValue!(s, 1, nil, 1) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_FindObjectsInit!(s, nil, 3) == rv(CKR_ARGUMENTS_BAD))
        // A template whose value pointer is NULL but whose length is not.
        var lying = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_LABEL), pValue: nil, ulValueLen: 4)
        #expect(f.C_FindObjectsInit!(s, &lying, 1) == rv(CKR_ARGUMENTS_BAD))
        // A parameter with the wrong length.
        let pss = CK_RSA_PKCS_PSS_PARAMS()
        var badMech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_RSA_PKCS_PSS), pParameter: pinned(pss), ulParameterLen: 3)
        #expect(f.C_SignInit!(s, &badMech, 1) == rv(CKR_MECHANISM_PARAM_INVALID))
        #expect(f.C_GenerateRandom!(s, nil, 8) == rv(CKR_ARGUMENTS_BAD))
        // Token-object management without login, and on a read-only session.
        let cls = CK_OBJECT_CLASS(CKO_DATA)
        let onToken: CK_BBOOL = 1
        var tmpl = [
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_CLASS), pValue: pinned(cls), ulValueLen: CK_ULONG(MemoryLayout<CK_OBJECT_CLASS>.size)),
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: pinned(onToken), ulValueLen: 1),
        ]
        var obj: CK_OBJECT_HANDLE = 0
        #expect(f.C_CreateObject!(s, &tmpl, 2, &obj) == rv(CKR_SESSION_READ_ONLY))
        var rw: CK_SESSION_HANDLE = 0
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION | CKF_RW_SESSION), nil, nil, &rw) == rv(CKR_OK))
        #expect(f.C_CreateObject!(rw, &tmpl, 2, &obj) == rv(CKR_USER_NOT_LOGGED_IN))
        var pin = Array(TestNode.password.utf8)
        #expect(f.C_Login!(rw, CK_USER_TYPE(CKU_USER), &pin, CK_ULONG(pin.count)) == rv(CKR_OK))
        #expect(f.C_CreateObject!(rw, &tmpl, 2, &obj) == rv(CKR_TEMPLATE_INCOMPLETE))
        // Without CKA_TOKEN (default FALSE) a data object is a session object: no R/W session or
        // login needed, and its CKA_VALUE defaults to empty.
        #expect(f.C_CreateObject!(s, &tmpl, 1, &obj) == rv(CKR_OK))
        let isToken = pinned(CK_BBOOL(1))
        var tokAttr = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: isToken, ulValueLen: 1)
        #expect(f.C_GetAttributeValue!(s, obj, &tokAttr, 1) == rv(CKR_OK) && isToken.load(as: CK_BBOOL.self) == 0)
        #expect(f.C_DestroyObject!(s, obj) == rv(CKR_OK))
        #expect(f.C_Login!(rw, 7, &pin, CK_ULONG(pin.count)) == rv(CKR_USER_ANOTHER_ALREADY_LOGGED_IN))
        // Entries that are present but not offered.
        #expect(f.C_InitToken!(0, nil, 0, nil) == rv(CKR_FUNCTION_NOT_SUPPORTED))
        #expect(f.C_WrapKey!(s, nil, 0, 0, nil, nil) == rv(CKR_ARGUMENTS_BAD), "NULL mechanism")
        #expect(f.C_DeriveKey!(s, nil, 0, nil, 0, nil) == rv(CKR_ARGUMENTS_BAD), "NULL phKey")
        #expect(f.C_GetFunctionStatus!(s) == rv(CKR_FUNCTION_NOT_PARALLEL))
        #expect(f.C_CloseSession!(rw) == rv(CKR_OK))
    }

    /// Session keys (CKA_TOKEN defaults to FALSE): generated in a read-only session without a
    /// login, kept by the service for this module instance, destroyed with their session.
    @Test func sessionKeysGoWithTheirSession() throws {
        let node = try TestNode()
        defer { node.stop() }
        let f = m.f
        var args = CK_C_INITIALIZE_ARGS()
        let path = strdup(try writeConfig(for: node))
        defer { free(path) }
        args.pReserved = UnsafeMutableRawPointer(path)
        #expect(f.C_Initialize!(&args) == rv(CKR_OK))
        defer { _ = f.C_Finalize!(nil) }
        var s: CK_SESSION_HANDLE = 0
        var other: CK_SESSION_HANDLE = 0
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION), nil, nil, &s) == rv(CKR_OK))
        #expect(f.C_OpenSession!(0, CK_FLAGS(CKF_SERIAL_SESSION), nil, nil, &other) == rv(CKR_OK))
        var mech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_AES_KEY_GEN), pParameter: nil, ulParameterLen: 0)
        let len = CK_ULONG(16)
        var tmpl = [
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_VALUE_LEN), pValue: pinned(len), ulValueLen: CK_ULONG(MemoryLayout<CK_ULONG>.size))
        ]
        var key: CK_OBJECT_HANDLE = 0
        #expect(f.C_GenerateKey!(s, &mech, &tmpl, 1, &key) == rv(CKR_OK))
        #expect(node.node.sessionKeyCount == 1 && node.node.snapshot.keyCount == 0)
        let token = pinned(CK_BBOOL(1))
        var a = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: token, ulValueLen: 1)
        #expect(
            f.C_GetAttributeValue!(other, key, &a, 1) == rv(CKR_OK) && token.load(as: CK_BBOOL.self) == 0,
            "visible to the application's other sessions")
        // A token key still needs a read-write session (and the admin password).
        let yes: CK_BBOOL = 1
        var tokTmpl = tmpl + [CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: pinned(yes), ulValueLen: 1)]
        var key2: CK_OBJECT_HANDLE = 0
        #expect(f.C_GenerateKey!(s, &mech, &tokTmpl, 2, &key2) == rv(CKR_SESSION_READ_ONLY))
        #expect(f.C_CloseSession!(s) == rv(CKR_OK))
        #expect(node.node.sessionKeyCount == 0, "destroyed with its session")
        #expect(f.C_GetAttributeValue!(other, key, &a, 1) == rv(CKR_OBJECT_HANDLE_INVALID))
        // C_Finalize releases what is left.
        #expect(f.C_GenerateKey!(other, &mech, &tmpl, 1, &key) == rv(CKR_OK))
        #expect(node.node.sessionKeyCount == 1)
        #expect(f.C_Finalize!(nil) == rv(CKR_OK))
        #expect(node.node.sessionKeyCount == 0)
        #expect(f.C_Initialize!(&args) == rv(CKR_OK))
    }

    /// Initializes the module for `node`, opens one session, runs `body`, finalizes.
    func withSession(
        _ node: TestNode, readWrite: Bool = false, userPinIsAdmin: Bool = true,
        _ body: (CK_FUNCTION_LIST, CK_SESSION_HANDLE) throws -> Void
    ) throws {
        let f = m.f
        var args = CK_C_INITIALIZE_ARGS()
        let path = strdup(try writeConfig(for: node, userPinIsAdmin: userPinIsAdmin))
        defer { free(path) }
        args.pReserved = UnsafeMutableRawPointer(path)
        #expect(f.C_Initialize!(&args) == rv(CKR_OK))
        defer { _ = f.C_Finalize!(nil) }
        var s: CK_SESSION_HANDLE = 0
        let flags = CK_FLAGS(CKF_SERIAL_SESSION) | (readWrite ? CK_FLAGS(CKF_RW_SESSION) : 0)
        #expect(f.C_OpenSession!(0, flags, nil, nil, &s) == rv(CKR_OK))
        try body(f, s)
    }

    /// Login model: a slot whose user PIN is the admin password says CKF_LOGIN_REQUIRED (so
    /// SunPKCS11/NSS/libp11 log in); a key made with CKA_PRIVATE=TRUE exists only while the user is
    /// logged in, in this and in any other process; its public half and CKA_PRIVATE=FALSE keys
    /// stay visible. A headless slot (no user PIN) does not say CKF_LOGIN_REQUIRED.
    @Test func loginRequiredAndPrivateObjects() throws {
        let node = try TestNode()
        defer { node.stop() }
        try withSession(node, readWrite: true) { f, s in
            var info = CK_TOKEN_INFO()
            #expect(f.C_GetTokenInfo!(0, &info) == rv(CKR_OK))
            #expect(info.flags & CK_FLAGS(CKF_LOGIN_REQUIRED) != 0)
            var pin = Array(TestNode.password.utf8)
            #expect(f.C_Login!(s, CK_USER_TYPE(CKU_USER), &pin, CK_ULONG(pin.count)) == rv(CKR_OK))
            var mech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_EC_KEY_PAIR_GEN), pParameter: nil, ulParameterLen: 0)
            let params = NamedCurve.p256.oidDER
            let yes: CK_BBOOL = 1
            let label = Array("hidden-key".utf8)
            var pubT = [
                CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_EC_PARAMS), pValue: pinned(params), ulValueLen: CK_ULONG(params.count)),
                CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: pinned(yes), ulValueLen: 1),
            ]
            var privT = [
                CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_PRIVATE), pValue: pinned(yes), ulValueLen: 1),
                CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: pinned(yes), ulValueLen: 1),
                CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_LABEL), pValue: pinned(label), ulValueLen: CK_ULONG(label.count)),
            ]
            var pub: CK_OBJECT_HANDLE = 0
            var priv: CK_OBJECT_HANDLE = 0
            #expect(f.C_GenerateKeyPair!(s, &mech, &pubT, 2, &privT, 3, &pub, &priv) == rv(CKR_OK))
            func count(_ cls: CK_ULONG) -> Int {
                let c = cls
                var t = [
                    CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_CLASS), pValue: pinned(c), ulValueLen: CK_ULONG(MemoryLayout<CK_ULONG>.size)),
                    CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_LABEL), pValue: pinned(label), ulValueLen: CK_ULONG(label.count)),
                ]
                _ = f.C_FindObjectsInit!(s, &t, 2)
                var found = [CK_OBJECT_HANDLE](repeating: 0, count: 8)
                var n: CK_ULONG = 0
                _ = f.C_FindObjects!(s, &found, 8, &n)
                _ = f.C_FindObjectsFinal!(s)
                return Int(n)
            }
            #expect(count(CK_ULONG(CKO_PRIVATE_KEY)) == 1)
            let value = pinned(CK_BBOOL(0))
            var a = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_PRIVATE), pValue: value, ulValueLen: 1)
            #expect(f.C_GetAttributeValue!(s, priv, &a, 1) == rv(CKR_OK) && value.load(as: CK_BBOOL.self) == 1)
            #expect(f.C_Logout!(s) == rv(CKR_OK))
            #expect(count(CK_ULONG(CKO_PRIVATE_KEY)) == 0, "a private object is not found before C_Login")
            #expect(count(CK_ULONG(CKO_PUBLIC_KEY)) == 1, "its public half is")
            #expect(f.C_GetAttributeValue!(s, priv, &a, 1) == rv(CKR_OBJECT_HANDLE_INVALID))
            var ecdsa = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_ECDSA), pParameter: nil, ulParameterLen: 0)
            #expect(f.C_SignInit!(s, &ecdsa, priv) == rv(CKR_KEY_HANDLE_INVALID))
            #expect(f.C_Login!(s, CK_USER_TYPE(CKU_USER), &pin, CK_ULONG(pin.count)) == rv(CKR_OK))
            #expect(f.C_SignInit!(s, &ecdsa, priv) == rv(CKR_OK))
            #expect(count(CK_ULONG(CKO_PRIVATE_KEY)) == 1)
        }
        // Headless: no user PIN, no CKF_LOGIN_REQUIRED.
        try withSession(node, userPinIsAdmin: false) { f, _ in
            var info = CK_TOKEN_INFO()
            #expect(f.C_GetTokenInfo!(0, &info) == rv(CKR_OK))
            #expect(info.flags & CK_FLAGS(CKF_LOGIN_REQUIRED) == 0)
        }
    }

    /// C_CopyObject: a session key becomes a token key inside the service (as Java's keystore does);
    /// usage flags are kept with the key and enforced; CKA_COPYABLE=FALSE forbids the copy.
    /// What the module asks the service is what the host asked (issue 21): CKM_ECDSA_SHA384 is
    /// signed and audited as SHA384withECDSA (it was SHA256withECDSA whatever the hash), and a
    /// CKM_RSA_X_509 signature is a signature, judged by CKA_SIGN (it was sent as a decryption, so
    /// a key with CKA_DECRYPT=FALSE could not make one).
    @Test func signaturesAreAskedForAsTheHostAskedForThem() throws {
        let dir = TestNode.tempDir()
        let node = try TestNode(stateDir: dir)
        defer { node.stop() }
        try withSession(node, readWrite: true) { f, s in
            let yes: CK_BBOOL = 1, no: CK_BBOOL = 0
            var ecMech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_EC_KEY_PAIR_GEN), pParameter: nil, ulParameterLen: 0)
            let p384 = NamedCurve.p384.oidDER
            var ecPubT = [CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_EC_PARAMS), pValue: pinned(p384), ulValueLen: CK_ULONG(p384.count))]
            var ecPrivT = [CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_SIGN), pValue: pinned(yes), ulValueLen: 1)]
            var ecPub: CK_OBJECT_HANDLE = 0, ecPriv: CK_OBJECT_HANDLE = 0
            #expect(f.C_GenerateKeyPair!(s, &ecMech, &ecPubT, 1, &ecPrivT, 1, &ecPub, &ecPriv) == rv(CKR_OK))
            var mech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_ECDSA_SHA384), pParameter: nil, ulParameterLen: 0)
            var data = Array("audited as what it is".utf8)
            var sig = [UInt8](repeating: 0, count: 96)
            var sigLen = CK_ULONG(sig.count)
            #expect(f.C_SignInit!(s, &mech, ecPriv) == rv(CKR_OK))
            #expect(f.C_Sign!(s, &data, CK_ULONG(data.count), &sig, &sigLen) == rv(CKR_OK) && sigLen == 96)
            #expect(f.C_VerifyInit!(s, &mech, ecPub) == rv(CKR_OK))
            #expect(f.C_Verify!(s, &data, CK_ULONG(data.count), &sig, sigLen) == rv(CKR_OK))
            let trail = String(decoding: try FileUtil.readFile(dir + "/audit.jsonl"), as: UTF8.self)
            let signs = trail.split(separator: "\n").filter { $0.contains("\"route\":\"/REST/v1/ext/sign\"") }
            #expect(signs.last?.contains("\"mechanism\":\"SHA384withECDSA\"") == true, "\(signs.last ?? "no sign record")")

            var rsaMech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_RSA_PKCS_KEY_PAIR_GEN), pParameter: nil, ulParameterLen: 0)
            let bits = CK_ULONG(2048)
            var rsaPubT = [
                CK_ATTRIBUTE(
                    type: CK_ATTRIBUTE_TYPE(CKA_MODULUS_BITS), pValue: pinned(bits), ulValueLen: CK_ULONG(MemoryLayout<CK_ULONG>.size))
            ]
            var rsaPrivT = [
                CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_SIGN), pValue: pinned(yes), ulValueLen: 1),
                CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_DECRYPT), pValue: pinned(no), ulValueLen: 1),
            ]
            var rsaPub: CK_OBJECT_HANDLE = 0, rsaPriv: CK_OBJECT_HANDLE = 0
            #expect(f.C_GenerateKeyPair!(s, &rsaMech, &rsaPubT, 1, &rsaPrivT, 2, &rsaPub, &rsaPriv) == rv(CKR_OK))
            var raw = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_RSA_X_509), pParameter: nil, ulParameterLen: 0)
            var rsig = [UInt8](repeating: 0, count: 256)
            var rlen = CK_ULONG(256)
            #expect(f.C_SignInit!(s, &raw, rsaPriv) == rv(CKR_OK))
            #expect(
                f.C_Sign!(s, &data, CK_ULONG(data.count), &rsig, &rlen) == rv(CKR_OK) && rlen == 256,
                "a raw RSA signature with CKA_SIGN=TRUE, CKA_DECRYPT=FALSE")
            #expect(f.C_VerifyInit!(s, &raw, rsaPub) == rv(CKR_OK))
            #expect(f.C_Verify!(s, &data, CK_ULONG(data.count), &rsig, rlen) == rv(CKR_OK))
            // ... and decrypting with it is still refused.
            #expect(f.C_DecryptInit!(s, &raw, rsaPriv) == rv(CKR_KEY_FUNCTION_NOT_PERMITTED))
        }
    }

    @Test func copyObjectSessionToTokenAndUsageFlags() throws {
        let node = try TestNode()
        defer { node.stop() }
        try withSession(node, readWrite: true) { f, s in try copyObjectChecks(node, f, s) }
    }

    func copyObjectChecks(_ node: TestNode, _ f: CK_FUNCTION_LIST, _ s: CK_SESSION_HANDLE) throws {
        var mech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_EC_KEY_PAIR_GEN), pParameter: nil, ulParameterLen: 0)
        let params = NamedCurve.p256.oidDER
        let no: CK_BBOOL = 0
        var pubT = [CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_EC_PARAMS), pValue: pinned(params), ulValueLen: CK_ULONG(params.count))]
        var privT = [CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_SIGN), pValue: pinned(no), ulValueLen: 1)]
        var pub: CK_OBJECT_HANDLE = 0
        var priv: CK_OBJECT_HANDLE = 0
        #expect(f.C_GenerateKeyPair!(s, &mech, &pubT, 1, &privT, 1, &pub, &priv) == rv(CKR_OK))
        // CKA_SIGN=FALSE is kept and enforced.
        var ecdsa = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_ECDSA), pParameter: nil, ulParameterLen: 0)
        #expect(f.C_SignInit!(s, &ecdsa, priv) == rv(CKR_KEY_FUNCTION_NOT_PERMITTED))
        // Copy to the token: needs the admin password (user PIN here), CKA_SIGN set TRUE on the copy.
        let yes: CK_BBOOL = 1
        let label = Array("copied".utf8)
        var copyT = [
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: pinned(yes), ulValueLen: 1),
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_LABEL), pValue: pinned(label), ulValueLen: CK_ULONG(label.count)),
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_SIGN), pValue: pinned(yes), ulValueLen: 1),
        ]
        var copy: CK_OBJECT_HANDLE = 0
        #expect(f.C_CopyObject!(s, priv, &copyT, 3, &copy) == rv(CKR_USER_NOT_LOGGED_IN))
        var pin = Array(TestNode.password.utf8)
        #expect(f.C_Login!(s, CK_USER_TYPE(CKU_USER), &pin, CK_ULONG(pin.count)) == rv(CKR_OK))
        #expect(f.C_CopyObject!(s, priv, &copyT, 3, &copy) == rv(CKR_OK))
        #expect(copy != priv && copy != 0)
        let stored = try #require(node.node.snapshot.asymmetric["copied"])
        #expect(node.node.sessionKeyCount == 1, "the session original stays")
        let token = pinned(CK_BBOOL(0))
        var a = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_TOKEN), pValue: token, ulValueLen: 1)
        #expect(f.C_GetAttributeValue!(s, copy, &a, 1) == rv(CKR_OK) && token.load(as: CK_BBOOL.self) == 1)
        #expect(f.C_SignInit!(s, &ecdsa, copy) == rv(CKR_OK))
        var digest = [UInt8](repeating: 7, count: 32)
        var sig = [UInt8](repeating: 0, count: 64)
        var sigLen = CK_ULONG(64)
        #expect(f.C_Sign!(s, &digest, 32, &sig, &sigLen) == rv(CKR_OK) && sigLen == 64)
        let verifier = try PublicKey(spki: stored.spki)
        let der = try #require(ECDSASignature.rawToDER(Array(sig.prefix(Int(sigLen)))))
        #expect(verifier.verify(signature: der, digest: digest, scheme: .ecdsa))
        // Input the module cannot take (over 64 MiB) ends the operation (PKCS#11 §5.2): the next
        // C_SignInit works (regression: CKR_OPERATION_ACTIVE forever).
        #expect(f.C_SignInit!(s, &ecdsa, copy) == rv(CKR_OK))
        #expect(f.C_Sign!(s, &digest, CK_ULONG(65 << 20), &sig, &sigLen) == rv(CKR_ARGUMENTS_BAD))
        #expect(f.C_SignInit!(s, &ecdsa, copy) == rv(CKR_OK))
        sigLen = 64
        #expect(f.C_Sign!(s, &digest, 32, &sig, &sigLen) == rv(CKR_OK))
        // A hashing mechanism takes any length: 80 MiB hashed in place (size query first, as callers do).
        var big = [UInt8](repeating: 0x61, count: 80 << 20)
        var hashed = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_ECDSA_SHA256), pParameter: nil, ulParameterLen: 0)
        #expect(f.C_SignInit!(s, &hashed, copy) == rv(CKR_OK))
        sigLen = 0
        #expect(f.C_Sign!(s, &big, CK_ULONG(big.count), nil, &sigLen) == rv(CKR_OK) && sigLen == 64)
        #expect(f.C_Sign!(s, &big, CK_ULONG(big.count), &sig, &sigLen) == rv(CKR_OK))
        let bigDER = try #require(ECDSASignature.rawToDER(Array(sig.prefix(Int(sigLen)))))
        #expect(verifier.verify(signature: bigDER, digest: DigestAlgorithm.sha256.hash(big), scheme: .ecdsa))
        var sha = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_SHA256), pParameter: nil, ulParameterLen: 0)
        #expect(f.C_DigestInit!(s, &sha) == rv(CKR_OK))
        var out = [UInt8](repeating: 0, count: 32)
        var outLen = CK_ULONG(32)
        #expect(f.C_Digest!(s, &big, CK_ULONG(big.count), &out, &outLen) == rv(CKR_OK))
        #expect(out == DigestAlgorithm.sha256.hash(big))
        // CKA_COPYABLE=FALSE forbids copies; the flag survives in the service.
        var aesMech = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_AES_KEY_GEN), pParameter: nil, ulParameterLen: 0)
        let len = CK_ULONG(16)
        var aesT = [
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_VALUE_LEN), pValue: pinned(len), ulValueLen: CK_ULONG(MemoryLayout<CK_ULONG>.size)),
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_COPYABLE), pValue: pinned(no), ulValueLen: 1),
        ]
        var aes: CK_OBJECT_HANDLE = 0
        #expect(f.C_GenerateKey!(s, &aesMech, &aesT, 2, &aes) == rv(CKR_OK))
        #expect(f.C_CopyObject!(s, aes, nil, 0, &copy) == rv(CKR_ACTION_PROHIBITED))
    }

    /// Multi-part AES streams: each update returns its whole blocks; the IV (CBC) and the counter
    /// (CTR, carried across all 128 bits) move on, so any split gives the single-part result.
    @Test func multiPartBlockModesMatchSinglePart() throws {
        let node = try TestNode()
        defer { node.stop() }
        try withSession(node) { f, s in try multiPartChecks(f, s) }
    }

    func multiPartChecks(_ f: CK_FUNCTION_LIST, _ s: CK_SESSION_HANDLE) throws {
        var gen = CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(CKM_AES_KEY_GEN), pParameter: nil, ulParameterLen: 0)
        let len = CK_ULONG(32)
        var tmpl = [
            CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(CKA_VALUE_LEN), pValue: pinned(len), ulValueLen: CK_ULONG(MemoryLayout<CK_ULONG>.size))
        ]
        var key: CK_OBJECT_HANDLE = 0
        #expect(f.C_GenerateKey!(s, &gen, &tmpl, 1, &key) == rv(CKR_OK))
        let data = (0..<100).map { UInt8($0) }
        for (type, ivByte) in [(CKM_AES_CBC_PAD, UInt8(7)), (CKM_AES_CTR, UInt8(0xFF))] {
            var iv = [UInt8](repeating: ivByte, count: 16)
            func run(encrypt: Bool, _ input: [UInt8], parts: [Int]) -> [UInt8] {
                var out: [UInt8] = []
                iv.withUnsafeMutableBytes { ivp in
                    var ctrParams = CK_AES_CTR_PARAMS()
                    ctrParams.ulCounterBits = 128
                    withUnsafeMutableBytes(of: &ctrParams.cb) { $0.copyBytes(from: UnsafeRawBufferPointer(ivp)) }
                    withUnsafeMutablePointer(to: &ctrParams) { cp in
                        var mech =
                            type == CKM_AES_CTR
                            ? CK_MECHANISM(
                                mechanism: CK_MECHANISM_TYPE(type), pParameter: UnsafeMutableRawPointer(cp),
                                ulParameterLen: CK_ULONG(MemoryLayout<CK_AES_CTR_PARAMS>.size))
                            : CK_MECHANISM(mechanism: CK_MECHANISM_TYPE(type), pParameter: ivp.baseAddress, ulParameterLen: 16)
                        _ = encrypt ? f.C_EncryptInit!(s, &mech, key) : f.C_DecryptInit!(s, &mech, key)
                        var rest = input[...]
                        for n in parts {
                            var part = Array(rest.prefix(n))
                            rest = rest.dropFirst(n)
                            var buf = [UInt8](repeating: 0, count: 256)
                            var outLen = CK_ULONG(256)
                            let r =
                                encrypt
                                ? f.C_EncryptUpdate!(s, &part, CK_ULONG(part.count), &buf, &outLen)
                                : f.C_DecryptUpdate!(s, &part, CK_ULONG(part.count), &buf, &outLen)
                            #expect(r == rv(CKR_OK))
                            out += buf.prefix(Int(outLen))
                        }
                        var buf = [UInt8](repeating: 0, count: 256)
                        var outLen = CK_ULONG(256)
                        let r = encrypt ? f.C_EncryptFinal!(s, &buf, &outLen) : f.C_DecryptFinal!(s, &buf, &outLen)
                        #expect(r == rv(CKR_OK))
                        out += buf.prefix(Int(outLen))
                    }
                }
                return out
            }
            let single = run(encrypt: true, data, parts: [100])
            #expect(single.count == (type == CKM_AES_CBC_PAD ? 112 : 100))
            #expect(run(encrypt: true, data, parts: [7, 33, 1, 59]) == single, "\(type)")
            #expect(run(encrypt: true, data, parts: [16, 16, 68]) == single, "\(type)")
            #expect(run(encrypt: false, single, parts: [5, 50, single.count - 55]) == data, "\(type)")
        }
        // GCM (96-bit IV): encryption updates return the ciphertext of their whole blocks, Final the
        // rest and the tag; the result equals the single-part one. Decryption returns everything
        // at Final, after the tag is checked.
        var iv = [UInt8](repeating: 9, count: 12)
        var aad = Array("header".utf8)
        func gcm(encrypt: Bool, _ input: [UInt8], parts: [Int], sizeQueryFirst: Bool = false) -> [UInt8] {
            var params = CK_GCM_PARAMS()
            var out: [UInt8] = []
            iv.withUnsafeMutableBufferPointer { ivp in
                aad.withUnsafeMutableBufferPointer { ap in
                    params.pIv = ivp.baseAddress
                    params.ulIvLen = 12
                    params.ulIvBits = 96
                    params.pAAD = ap.baseAddress
                    params.ulAADLen = CK_ULONG(ap.count)
                    params.ulTagBits = 128
                    withUnsafeMutablePointer(to: &params) { pp in
                        var mech = CK_MECHANISM(
                            mechanism: CK_MECHANISM_TYPE(CKM_AES_GCM), pParameter: UnsafeMutableRawPointer(pp),
                            ulParameterLen: CK_ULONG(MemoryLayout<CK_GCM_PARAMS>.size))
                        #expect((encrypt ? f.C_EncryptInit!(s, &mech, key) : f.C_DecryptInit!(s, &mech, key)) == rv(CKR_OK))
                        var rest = input[...]
                        for n in parts {
                            var part = Array(rest.prefix(n))
                            rest = rest.dropFirst(n)
                            var outLen = CK_ULONG(0)
                            if sizeQueryFirst {
                                // PyKCS11's pattern: a size query, then the same part again.
                                _ =
                                    encrypt
                                    ? f.C_EncryptUpdate!(s, &part, CK_ULONG(part.count), nil, &outLen)
                                    : f.C_DecryptUpdate!(s, &part, CK_ULONG(part.count), nil, &outLen)
                            }
                            var buf = [UInt8](repeating: 0, count: 256)
                            outLen = 256
                            let r =
                                encrypt
                                ? f.C_EncryptUpdate!(s, &part, CK_ULONG(part.count), &buf, &outLen)
                                : f.C_DecryptUpdate!(s, &part, CK_ULONG(part.count), &buf, &outLen)
                            #expect(r == rv(CKR_OK))
                            if !encrypt { #expect(outLen == 0, "nothing before the tag is checked") }
                            out += buf.prefix(Int(outLen))
                        }
                        var buf = [UInt8](repeating: 0, count: 256)
                        var outLen = CK_ULONG(256)
                        #expect((encrypt ? f.C_EncryptFinal!(s, &buf, &outLen) : f.C_DecryptFinal!(s, &buf, &outLen)) == rv(CKR_OK))
                        out += buf.prefix(Int(outLen))
                    }
                }
            }
            return out
        }
        let single = gcm(encrypt: true, data, parts: [100])
        #expect(single.count == 116)
        #expect(gcm(encrypt: true, data, parts: [7, 33, 1, 59]) == single)
        #expect(gcm(encrypt: true, data, parts: [16, 40, 44], sizeQueryFirst: true) == single)
        #expect(gcm(encrypt: false, single, parts: [20, 96]) == data)
        #expect(gcm(encrypt: false, single, parts: [3, 100, 13], sizeQueryFirst: true) == data)
    }
}

extension DER {
    static func subjectPublicKeyBitsForTest(_ spki: [UInt8]) -> [UInt8]? {
        guard spki.count > 2 else { return nil }
        // SPKI: SEQUENCE { AlgorithmIdentifier, BIT STRING }: walk with the module-independent reader.
        var p = 0
        func len(_ at: inout Int) -> Int {
            let l = Int(spki[at]); at += 1
            if l < 0x80 { return l }
            var v = 0
            for _ in 0..<(l & 0x7F) { v = v << 8 | Int(spki[at]); at += 1 }
            return v
        }
        p = 1; _ = len(&p)  // outer SEQUENCE
        p += 1; let algLen = len(&p)  // AlgorithmIdentifier
        p += algLen
        p += 1; let bitsLen = len(&p)  // BIT STRING
        return Array(spki[(p + 1)..<(p + bitsLen)])
    }

}

enum DER {}

/// Memory a C struct may point to for the rest of the test: `&value` handed to a struct's
/// initializer is valid only during that call (the compiler's TemporaryPointers warning). A copy
/// of the value (an array: its elements), never freed: a few bytes per template in a test process.
func pinned<T>(_ value: T) -> UnsafeMutableRawPointer {
    let p = UnsafeMutableRawPointer.allocate(byteCount: max(MemoryLayout<T>.size, 1), alignment: MemoryLayout<T>.alignment)
    p.storeBytes(of: value, as: T.self)
    return p
}

func pinned(_ bytes: [UInt8]) -> UnsafeMutableRawPointer {
    let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 1)
    bytes.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
    return p
}
