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
}
