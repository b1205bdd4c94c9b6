import Prometheus
import VSSMSync
import VSSMWire

/// What an operator watches without a profiler, in Prometheus' text format at `GET /metrics` on
/// the API listener (mTLS like every API call; Prometheus scrapes with a client certificate):
/// - `vssm_requests_total{listener,route,status}`: requests answered, by HTTP status;
/// - `vssm_request_duration_seconds{listener,route}`: from the last byte of the request to the
///   answer written (queueing in the worker pool included);
/// - `vssm_open_connections{listener}`; `vssm_keys{type}` and `vssm_session_keys`: keys held.
/// Route labels are the known routes only (anything else is `other`), so a client sending random
/// paths cannot grow the series without bound.
public final class ServiceMetrics: Sendable {
    public static let route = "/metrics"
    let registry = PrometheusCollectorRegistry()
    private let counters = Locked<[String: Counter]>([:])
    private let histograms = Locked<[String: DurationHistogram]>([:])
    private let knownRoutes: Set<String>
    static let buckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
        .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100),
        .milliseconds(250), .seconds(1), .seconds(5),
    ]

    init(knownRoutes: Set<String>) {
        self.knownRoutes = knownRoutes.union([Route.healthcheck, Route.bootstrap, Route.synchronizeState,
                                              Route.synchronizeStatePush, Route.bootstrapSlave, ServiceMetrics.route])
    }

    func routeLabel(_ path: String) -> String { knownRoutes.contains(path) ? path : "other" }

    /// The two series one kind of answer is counted in.
    public struct RequestSeries: Sendable {
        let counter: Counter
        let histogram: DurationHistogram

        public func record(nanoseconds: Int64) {
            counter.increment()
            histogram.recordNanoseconds(max(0, nanoseconds))
        }
    }

    /// The series of answers with `status` to `path` on `listener` (made at first use).
    public func series(listener: String, path: String, status: Int) -> RequestSeries {
        let route = routeLabel(path)
        let counterKey = listener + " " + route + " " + String(status)
        let counter = counters.withLock { all -> Counter in
            if let c = all[counterKey] { return c }
            let c = registry.makeCounter(name: "vssm_requests_total",
                                         labels: [("listener", listener), ("route", route), ("status", String(status))])
            all[counterKey] = c
            return c
        }
        let histogramKey = listener + " " + route
        let histogram = histograms.withLock { all -> DurationHistogram in
            if let h = all[histogramKey] { return h }
            let h = registry.makeDurationHistogram(name: "vssm_request_duration_seconds",
                                                   labels: [("listener", listener), ("route", route)],
                                                   buckets: ServiceMetrics.buckets)
            all[histogramKey] = h
            return h
        }
        return RequestSeries(counter: counter, histogram: histogram)
    }

    public func gauge(_ name: String, _ labels: [(String, String)] = []) -> Gauge {
        labels.isEmpty ? registry.makeGauge(name: name) : registry.makeGauge(name: name, labels: labels)
    }

    /// The text exposition (version 0.0.4).
    public func render() -> [UInt8] { registry.emitToBuffer() }
}
