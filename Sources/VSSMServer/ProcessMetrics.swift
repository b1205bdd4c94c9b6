import Glibc

/// The standard `process_*` series (what Prometheus' own clients export), read from /proc at each
/// scrape: resident memory, open and maximum descriptors, start time, CPU time.
enum ProcessMetrics {
    /// Unix time this process started (the first use is at node start).
    static let startTime = Int64(time(nil))

    static func update(_ metrics: ServiceMetrics) {
        metrics.gauge("process_start_time_seconds").set(startTime)
        let page = Int64(sysconf(Int32(_SC_PAGESIZE)))
        if let statm = try? FileUtil.readFile("/proc/self/statm", limit: 4096) {
            let fields = String(decoding: statm, as: UTF8.self).split(separator: " ")
            if fields.count > 1, let pages = Int64(fields[1]) { metrics.gauge("process_resident_memory_bytes").set(pages * page) }
        }
        if let fds = FileUtil.listDirectory("/proc/self/fd") { metrics.gauge("process_open_fds").set(Int64(fds.count)) }
        var rl = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 { metrics.gauge("process_max_fds").set(Int64(clamping: rl.rlim_cur)) }
        var usage = rusage()
        if getrusage(RUSAGE_SELF.rawValue, &usage) == 0 {
            let seconds =
                Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
                + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1_000_000
            metrics.gauge("process_cpu_seconds_total").set(seconds)
        }
    }
}
