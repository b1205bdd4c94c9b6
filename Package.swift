// swift-tools-version:6.2
import PackageDescription

// Layers (dependencies point one way), see ../shared/DESIGN.md:
//   COpenSSL (C shim) <- VSSMCrypto <- VSSMServer <- vssm
//   VSSMWire (jsonpb messages, routes)  <- VSSMClient (blocking OpenSSL mTLS pool)
//   wire -> transport (VSSMClient) -> service adapter (VSSMServiceAdapter) -> token core -> module;
//   the server links the transport (peer sync) but not the token core.
let package = Package(
    name: "vssm-pkcs11",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vssm", targets: ["vssm"]),
        // libvssm-pkcs11.so; release artifact: `make module-release` (static Swift runtime, stripped).
        .library(name: "vssm-pkcs11", type: .dynamic, targets: ["PKCS11Module"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .target(
            name: "COpenSSL",
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),
        .target(name: "VSSMWire"),
        // The lock every request path takes (a glibc mutex; see Locked.swift for why not `Mutex`).
        .target(name: "VSSMSync"),
        // Vendored PKCS#11 header (p11-kit 2.40 + our 3.0 additions) and the constant function tables.
        .target(name: "CPKCS11", path: "include", publicHeadersPath: "."),
        // The function tables reference the module's entry points, so only the module links them.
        .target(name: "CPKCS11Table", dependencies: ["CPKCS11"]),
        .target(
            name: "PKCS11Module",
            dependencies: ["CPKCS11", "CPKCS11Table", "TokenCore", "VSSMClient", "VSSMServiceAdapter", "VSSMWire", "VSSMSync"],
            exclude: ["exports.map"],
            linkerSettings: [
                .unsafeFlags([
                    "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/PKCS11Module/exports.map",
                    "-Xlinker", "-z", "-Xlinker", "nodelete",
                    "-Xlinker", "-z", "-Xlinker", "defs",
                ])
            ]
        ),
        .target(name: "VSSMCrypto", dependencies: ["COpenSSL", "VSSMSync", "VSSMWire"]),
        .target(name: "VSSMClient", dependencies: ["COpenSSL", "VSSMWire", "VSSMSync"]),
        // TokenCore's KeyService over the VSSM REST API (the module's seam to the service).
        .target(name: "VSSMServiceAdapter", dependencies: ["VSSMClient", "VSSMWire", "TokenCore", "VSSMSync", "VSSMCrypto"]),
        .target(name: "TokenCore", dependencies: ["VSSMCrypto", "VSSMWire", "VSSMSync"]),
        // The service's ML-DSA and ML-KEM keys (swift-crypto), shared with the fake key service.
        .target(
            name: "VSSMPostQuantumKeys", dependencies: ["VSSMCrypto", .product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "VSSMServer",
            dependencies: [
                "VSSMWire", "VSSMCrypto", "VSSMClient", "VSSMSync", "VSSMPostQuantumKeys",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "vssm",
            dependencies: [
                "VSSMServer", "VSSMClient", "VSSMWire", "VSSMSync", "VSSMCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "VSSMWireTests", dependencies: ["VSSMWire"]),
        .testTarget(name: "VSSMCryptoTests", dependencies: ["VSSMCrypto", "VSSMWire"]),
        // A real node in-process over real mTLS, shared by the server and module tests.
        .target(
            name: "VSSMTestSupport",
            dependencies: [
                "VSSMServer", "VSSMClient", "VSSMWire", "VSSMCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]),
        .testTarget(
            name: "VSSMServerTests",
            dependencies: ["VSSMServer", "VSSMClient", "VSSMWire", "VSSMCrypto", "VSSMTestSupport", "VSSMSync", "VSSMPostQuantumKeys"]),
        .testTarget(
            name: "VSSMClientTests",
            dependencies: ["VSSMClient", "VSSMServiceAdapter", "TokenCore", "VSSMCrypto", "VSSMServer", "VSSMTestSupport", "VSSMWire"]),
        // An in-memory KeyService with the service's rules, for TokenCore's unit tests (no server,
        // no network); ContractTests keep it honest against a real node.
        .target(
            name: "FakeKeyService",
            dependencies: ["TokenCore", "VSSMCrypto", "VSSMWire", "VSSMPostQuantumKeys"],
            path: "Tests/FakeKeyService"),
        .testTarget(name: "TokenCoreTests", dependencies: ["TokenCore", "FakeKeyService", "VSSMCrypto", "VSSMWire", "VSSMSync"]),
        .testTarget(
            name: "ContractTests",
            dependencies: [
                "TokenCore", "FakeKeyService", "VSSMCrypto", "VSSMClient", "VSSMServiceAdapter", "VSSMTestSupport", "VSSMWire",
            ]),
        .testTarget(name: "PKCS11ModuleTests", dependencies: ["CPKCS11", "VSSMTestSupport", "VSSMServer", "VSSMCrypto", "VSSMWire"]),
    ]
)

// Warnings are errors in the product's own Swift code (issue 21): a deprecation or an unsafe
// capture is fixed when it appears, not collected. C shims are not included.
for target in package.targets where !target.name.hasPrefix("C") {
    // Tests too: a warning there was 32 dangling template pointers in ModuleTests.
    target.swiftSettings = (target.swiftSettings ?? []) + [.treatAllWarnings(as: .error)]
    if target.type != .test { target.swiftSettings? += [.enableUpcomingFeature("InternalImportsByDefault")] }
}
