import Glibc
import Testing
import VSSMClient
import VSSMWire
@testable import VSSMServer
import VSSMTestSupport

/// `GET /metrics` on the API listener: requests per route and status, latency histograms, open
/// connections, keys, in Prometheus' text format; unknown paths are one `other` series.
@Suite struct MetricsTests {
    let pw = TestNode.password

    /// The value of the series that starts with `prefix` (name and labels), if present.
    func value(_ text: String, _ prefix: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(prefix + " ") {
            return Double(line.dropFirst(prefix.count + 1))
        }
        return nil
    }

    @Test func countsLatenciesConnectionsAndKeys() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        try c.generateKey(password: pw, name: "ec", type: .asymmetric, spec: .ec, size: 256)
        let sign = #"{"keyName":"ec","algorithm":"SHA256withECDSA","input":"\#(b64("data"))"}"#
        for _ in 0..<5 { #expect(try n.post(c, Route.asymmetricSign, sign).0 == 200) }
        #expect(try n.post(c, Route.asymmetricSign, #"{"keyName":"missing","algorithm":"SHA256withECDSA","input":"AAAA"}"#).0 != 200)
        for i in 0..<3 { _ = try n.post(c, "/REST/v1/random-\(i)", "{}") }
        let (status, text) = try n.post(c, ServiceMetrics.route, "")
        #expect(status == 200)
        let signRoute = #"listener="api",route="/REST/v1/asymmetric/sign""#
        #expect(value(text, #"vssm_requests_total{\#(signRoute),status="200"}"#) == 5)
        #expect(value(text, #"vssm_requests_total{listener="api",route="other",status="404"}"#) == 3, "one series for unknown paths")
        #expect(!text.contains("random-"))
        #expect(value(text, #"vssm_request_duration_seconds_count{\#(signRoute)}"#) == 6)
        #expect((value(text, #"vssm_request_duration_seconds_sum{\#(signRoute)}"#) ?? 0) > 0)
        #expect(value(text, #"vssm_request_duration_seconds_bucket{\#(signRoute),le="+Inf"}"#) == 6)
        #expect((value(text, #"vssm_open_connections{listener="api"}"#) ?? 0) >= 1)
        #expect(value(text, #"vssm_keys{type="asymmetric"}"#) == 1)
        #expect(value(text, #"vssm_keys{type="symmetric"}"#) == 0)
    }

    /// Every series has `# HELP`; the process, build, readiness, login, TLS and audit series are
    /// there (issue 19); and every query of docs/grafana-dashboard.json names a series the service
    /// exports (the etcd-only ones are declared).
    @Test func everySeriesHasHelpAndTheDashboardQueriesExistingSeries() throws {
        let n = try TestNode()
        defer { n.stop() }
        let c = try n.client()
        // A wrong admin password four times: failures, then a throttled attempt.
        for _ in 0..<5 { _ = try n.post(c, Route.listKeys, #"{"adminPassword":"wrong"}"#) }
        // A handshake that is no TLS at all.
        let fd = HardeningTests.tcp(n.ports[.api] ?? 0)
        _ = "GET / HTTP/1.1\r\n\r\n".withCString { send(fd, $0, strlen($0), 0) }
        _ = HardeningTests.drain(fd)
        close(fd)
        let (status, text) = try n.post(c, ServiceMetrics.route, "")
        #expect(status == 200)
        var helped = Set<String>(), sampled = Set<String>()
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") {
                let parts = line.split(separator: " ", maxSplits: 3)
                if parts.count == 4, !parts[3].isEmpty { helped.insert(String(parts[2])) }
            } else if !line.hasPrefix("#") {
                var name = String(line.prefix(while: { $0 != "{" && $0 != " " }))
                for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) && name.hasPrefix("vssm_request_duration") {
                    name = String(name.dropLast(suffix.count))
                }
                sampled.insert(name)
            }
        }
        #expect(sampled.subtracting(helped).isEmpty, "series without # HELP: \(sampled.subtracting(helped).sorted())")
        for name in [
            "vssm_build_info", "vssm_ready", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds",
            "process_cpu_seconds_total", "vssm_login_failures_total", "vssm_login_throttled_total",
            "vssm_tls_handshake_failures_total", "vssm_audit_write_errors_total", "vssm_store_reachable",
        ] {
            #expect(sampled.contains(name), "\(name) is exported")
        }
        #expect(value(text, #"vssm_build_info{version="\#(VSSMVersion.string)"}"#) == 1)
        #expect(value(text, "vssm_ready") == 1)
        #expect((value(text, "vssm_login_throttled_total") ?? 0) >= 1)
        #expect(value(text, #"vssm_tls_handshake_failures_total{listener="api",reason="not_tls"}"#) == 1)

        // The dashboard: valid JSON; each expression's series names are exported (or etcd-only).
        let path = #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
        let bytes = try FileUtil.readFile("/" + path + "/docs/grafana-dashboard.json")
        let dashboard = try JSONParser.parse(bytes)
        guard case .array(let panels)? = dashboard["panels"] else { Issue.record("no panels"); return }
        let etcdOnly: Set<String> = [
            "vssm_store_revision_lag", "vssm_store_last_success_timestamp_seconds", "vssm_peer_sync_failures_total", "vssm_store_watching",
        ]
        var queried = 0
        for panel in panels {
            guard case .array(let targets)? = panel["targets"] else { continue }
            for target in targets {
                guard case .string(let expr)? = target["expr"] else { continue }
                for name in MetricsTests.seriesNames(expr) {
                    queried += 1
                    #expect(
                        sampled.contains(name) || (etcdOnly.contains(name) && ServiceMetrics.help[name] != nil),
                        "the dashboard queries \(name), which the service does not export")
                }
            }
        }
        #expect(queried >= 14)
    }

    /// `vssm_*` and `process_*` names in a PromQL expression (histogram suffixes removed).
    static func seriesNames(_ expr: String) -> [String] {
        var names: [String] = []
        var current = ""
        for ch in expr + " " {
            if ch.isLetter || ch.isNumber || ch == "_" { current.append(ch); continue }
            if current.hasPrefix("vssm_") || current.hasPrefix("process_") {
                var n = current
                if n.hasSuffix("_bucket") { n = String(n.dropLast(7)) }
                names.append(n)
            }
            current = ""
        }
        return names
    }
}
