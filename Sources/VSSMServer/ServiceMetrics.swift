public import Prometheus
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
        self.knownRoutes = knownRoutes.union([
            Route.healthcheck, Route.bootstrap, Route.synchronizeState,
            Route.synchronizeStatePush, Route.bootstrapSlave, ServiceMetrics.route,
        ])
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
            let c = registry.makeCounter(
                descriptor: ServiceMetrics.descriptor("vssm_requests_total"),
                labels: [("listener", listener), ("route", route), ("status", String(status))])
            all[counterKey] = c
            return c
        }
        let histogramKey = listener + " " + route
        let histogram = histograms.withLock { all -> DurationHistogram in
            if let h = all[histogramKey] { return h }
            let h = registry.makeDurationHistogram(
                descriptor: ServiceMetrics.descriptor("vssm_request_duration_seconds"),
                labels: [("listener", listener), ("route", route)],
                buckets: ServiceMetrics.buckets)
            all[histogramKey] = h
            return h
        }
        return RequestSeries(counter: counter, histogram: histogram)
    }

    /// A counter (made at first use; the same name and labels give the same counter).
    public func counter(_ name: String, _ labels: [(String, String)] = [], help: String? = nil) -> Counter {
        let key = name + labels.map { " " + $0.0 + "=" + $0.1 }.joined()
        return counters.withLock { all -> Counter in
            if let c = all[key] { return c }
            let c = registry.makeCounter(descriptor: ServiceMetrics.descriptor(name, help: help), labels: labels)
            all[key] = c
            return c
        }
    }

    public func gauge(_ name: String, _ labels: [(String, String)] = []) -> Gauge {
        registry.makeGauge(descriptor: ServiceMetrics.descriptor(name), labels: labels)
    }

    /// A series' full name and `# HELP` (the whole name as the metric name: no unit suffix split off).
    static func descriptor(_ name: String, help: String? = nil) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help ?? ServiceMetrics.help[name] ?? "")
    }

    /// `# HELP` of every series the service exports (docs/metrics.md lists the same).
    static let help: [String: String] = [
        "vssm_requests_total": "Requests answered, by listener, route and HTTP status",
        "vssm_request_duration_seconds": "Time from a request's last byte to its answer written, by listener and route",
        "vssm_open_connections": "Open connections, by listener",
        "vssm_keys": "Keys held in the store, by type",
        "vssm_objects": "Certificate and data objects held in the store",
        "vssm_session_keys": "Session keys held in memory",
        "vssm_build_info": "Always 1; the version label is the running binary's",
        "vssm_ready": "1 when the node is bootstrapped and serving, 0 while it waits for its RPC key",
        "vssm_tls_handshake_failures_total": "TLS handshakes that failed, by listener and reason",
        "vssm_login_throttled_total": "Password and PIN attempts answered 429 because the client identity is throttled",
        "vssm_login_failures_total": "Wrong admin passwords and PINs",
        "vssm_audit_write_errors_total": "Audit records that could not be written to the trail",
        "vssm_store_reachable": "1 when the store answered its last read (etcd; always 1 for the state file)",
        "vssm_clock_offset_seconds":
            "Largest offset of etcd's or a peer's clock from this node's, in seconds (from their Date headers; positive: theirs is ahead)",
        "vssm_clock_out_of_step":
            "1 while this node's clock is beyond maxClockSkewSeconds from etcd's (or most peers'): it refuses key creation, deletion and restore",
        "vssm_store_revision_lag": "How many etcd revisions this node's view is behind the store's latest",
        "vssm_store_watching": "1 while this node follows etcd by its watch (0: by polling every 250 ms)",
        "vssm_store_last_success_timestamp_seconds": "Unix time of the last successful read of the store (etcd poll)",
        "vssm_peer_sync_failures_total": "Peer synchronisations (pull or push) that failed",
        "vssm_store_refused_records_total":
            "Records from the store refused as older than this node has seen, and vanished principal tables",
        "process_resident_memory_bytes": "Resident memory of the vssm process",
        "process_open_fds": "Open file descriptors of the vssm process",
        "process_max_fds": "The open-file limit of the vssm process",
        "process_start_time_seconds": "Unix time the vssm process started",
        "process_cpu_seconds_total": "CPU time (user and system) the vssm process used",
    ]

    /// The text exposition (version 0.0.4).
    public func render() -> [UInt8] { registry.emitToBuffer() }
}
