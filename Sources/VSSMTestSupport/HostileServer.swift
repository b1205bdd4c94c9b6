import Glibc
import NIOCore
import NIOPosix
import NIOSSL
import VSSMCrypto

/// A key service gone wrong, for client tests: a TLS server (the test PKI's RPC certificate, so
/// clients verify it) that answers every request with fixed bytes or never answers, or a TCP port
/// that the kernel accepts but nobody serves (a hung or SIGSTOPped node).
public final class HostileServer: @unchecked Sendable {
    public enum Behaviour: Sendable {
        /// Every read is answered with these bytes (a raw HTTP response, hostile or not).
        case reply([UInt8])
        /// Each request is answered with the reply of the first path its request line contains.
        case byPath([(path: String, reply: [UInt8])])
        /// TLS handshake completes, requests are read and never answered.
        case silent
        /// Listening socket that is never accepted from: connect succeeds, the handshake hangs.
        case unaccepted
    }

    public let port: Int
    private let group: MultiThreadedEventLoopGroup?
    private let channel: Channel?
    private let fd: Int32

    public init(_ behaviour: Behaviour) throws {
        if case .unaccepted = behaviour {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = 0
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            listen(fd, 64)
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            port = Int(UInt16(bigEndian: addr.sin_port))
            group = nil
            channel = nil
            return
        }
        fd = -1
        let pki = TestNode.shared.pki
        let cfg = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: pki.rpcCertificateDER, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: TestNode.rpcPKCS8, format: .der)))
        let context = try NIOSSLContext(configuration: cfg)
        let g = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        group = g
        let c = try ServerBootstrap(group: g)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try ch.pipeline.syncOperations.addHandler(Replay(behaviour))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        channel = c
        port = c.localAddress?.port ?? 0
    }

    public func stop() {
        if fd >= 0 { close(fd) }
        try? channel?.close().wait()
        try? group?.syncShutdownGracefully()
    }

    final class Replay: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let behaviour: Behaviour
        init(_ b: Behaviour) { behaviour = b }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes: [UInt8]
            switch behaviour {
            case .reply(let b): bytes = b
            case .byPath(let routes):
                var input = unwrapInboundIn(data)
                let text = input.readString(length: input.readableBytes) ?? ""
                let line = text.split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
                guard let hit = routes.first(where: { line.contains($0.path) }) else { return }
                bytes = hit.reply
            case .silent, .unaccepted: return
            }
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
    }
}
