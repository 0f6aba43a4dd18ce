//! A [`Snapshot`] in the Prometheus text exposition format (version 0.0.4).
//!
//! Names follow Prometheus's rules: one `tcpipe_` prefix, base units
//! (seconds, bytes) in the name, `_total` on counters, `_info` for build
//! data, and labels of bounded cardinality only (route and target as
//! configured, a close reason, a direction; never a client address).

use crate::operator::TargetState;
use std::fmt::Write;

use super::{unix_seconds, Histogram, Snapshot, CLOSE_REASON_LABELS, REFUSAL_LABELS};

/// The Content-Type of what [`render`] writes.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The build, as `--version` describes it (`src/build.rs` finds them).
const BUILD: [(&str, &str); 4] = [
    ("version", env!("CARGO_PKG_VERSION")),
    ("commit", env!("TCPIPE_COMMIT")),
    ("rustc", env!("TCPIPE_RUSTC")),
    ("target", env!("TCPIPE_TARGET")),
];

pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = Out(String::with_capacity(4096 + 2048 * snapshot.routes.len()));
    out.family("tcpipe_build_info", "gauge", "The running build; always 1.");
    let build = BUILD.map(|(key, value)| (key, value.trim_start_matches("rustc ")));
    out.sample("tcpipe_build_info", &build, 1);
    out.single(
        "tcpipe_start_time_seconds",
        "gauge",
        "When the forwarder started, in seconds since the Unix epoch.",
        unix_seconds(snapshot.started),
    );
    out.single(
        "tcpipe_buffered_bytes",
        "gauge",
        "Bytes read and not yet written now, in rings and kernel pipes, both directions of every pipe.",
        snapshot.buffered_bytes,
    );
    out.single(
        "tcpipe_rings_in_use",
        "gauge",
        "Rings lent to a direction with bytes in flight (idle pipes hold none).",
        snapshot.rings_in_use,
    );
    out.single(
        "tcpipe_spliced_bytes_total",
        "counter",
        "Bytes delivered through kernel pipes with splice(2), both directions (also in tcpipe_forwarded_bytes_total).",
        snapshot.spliced_bytes,
    );
    out.single(
        "tcpipe_kernel_pipes_in_use",
        "gauge",
        "Kernel pipes (two descriptors each) lent to spliced directions with bytes in flight.",
        snapshot.kernel_pipes_in_use,
    );
    out.single(
        "tcpipe_accept_backoffs_total",
        "counter",
        "Times accepting backed off for lack of descriptors or memory (one per episode).",
        snapshot.accept_backoffs,
    );
    out.single(
        "tcpipe_connection_limit_reached_total",
        "counter",
        "Times every listener paused at the process-wide max-connections (clients wait in the backlog).",
        snapshot.connection_limit_reached,
    );
    out.single(
        "tcpipe_awaiting_proxy_header",
        "gauge",
        "Clients of accept-proxy routes whose PROXY header has not arrived yet.",
        snapshot.awaiting_proxy_header,
    );
    out.family(
        "tcpipe_reloads_total",
        "counter",
        "Config reloads, by result (failed: the running config stayed).",
    );
    out.sample(
        "tcpipe_reloads_total",
        &[("result", "ok")],
        snapshot.reloads_ok,
    );
    out.sample(
        "tcpipe_reloads_total",
        &[("result", "failed")],
        snapshot.reloads_failed,
    );
    out.family(
        "tcpipe_upgrades_total",
        "counter",
        "Live upgrades, by result (ok: this process took over from another; failed: this one tried and carried on).",
    );
    out.sample(
        "tcpipe_upgrades_total",
        &[("result", "ok")],
        snapshot.upgrades_ok,
    );
    out.sample(
        "tcpipe_upgrades_total",
        &[("result", "failed")],
        snapshot.upgrades_failed,
    );

    let routes = &snapshot.routes;
    per_route(
        &mut out,
        routes,
        "tcpipe_connections_accepted_total",
        "counter",
        "Clients accepted.",
        |r| r.stats.accepted,
    );
    per_route(
        &mut out,
        routes,
        "tcpipe_connections_active",
        "gauge",
        "Pipes accepted and not yet closed.",
        |r| r.active,
    );
    per_route(&mut out, routes, "tcpipe_route_connection_limit_reached_total", "counter",
        "Times the route's listeners paused at its own max-connections (clients wait in the backlog).",
        |r| r.stats.limit_reached);
    out.family(
        "tcpipe_route_rate_limited_seconds_total",
        "counter",
        "Time the route's pipes spent with reading paused by upload-rate, download-rate or \
         their share of the route's rate, summed over pipes, by direction.",
    );
    for route in routes {
        for (direction, ns) in ["upload", "download"]
            .iter()
            .zip(route.stats.rate_limited_ns)
        {
            out.sample(
                "tcpipe_route_rate_limited_seconds_total",
                &[("route", &route.name), ("direction", direction)],
                ns as f64 / 1e9,
            );
        }
    }
    out.family(
        "tcpipe_pipes_closed_total",
        "counter",
        "Pipes ended, by how they ended (every reason but clean ends with a reset on both sides).",
    );
    for route in routes {
        for (reason, count) in CLOSE_REASON_LABELS.iter().zip(route.stats.closed) {
            out.sample(
                "tcpipe_pipes_closed_total",
                &[("route", &route.name), ("reason", reason)],
                count,
            );
        }
    }
    out.family(
        "tcpipe_connections_refused_total",
        "counter",
        "Clients reset before any target was dialed, by why: denied by allow/deny, \
         over max-connections-per-source, a bad PROXY header, none within proxy-timeout, \
         over max-connection-rate-per-source, or no route matching its first bytes on a \
         shared address without a default.",
    );
    for route in routes {
        for (reason, count) in REFUSAL_LABELS.iter().zip(route.stats.refused) {
            out.sample(
                "tcpipe_connections_refused_total",
                &[("route", &route.name), ("reason", reason)],
                count,
            );
        }
    }
    out.family(
        "tcpipe_route_matched_total",
        "counter",
        "Clients of a shared address given to the route, by what chose it: the exact server name, \
         a wildcard name, ALPN, the protocol, or nothing (the default route).",
    );
    for route in routes {
        for (by, count) in crate::config::By::ALL.iter().zip(route.stats.matched) {
            out.sample(
                "tcpipe_route_matched_total",
                &[("route", &route.name), ("by", by.label())],
                count,
            );
        }
    }
    out.family(
        "tcpipe_inspect_failures_total",
        "counter",
        "Clients of a shared address whose first bytes chose no route, by kind (a malformed, \
         too large or truncated ClientHello, or nothing within inspect-timeout), counted under \
         the address's default route (or its first).",
    );
    for route in routes {
        for (kind, count) in super::INSPECT_FAILURE_LABELS
            .iter()
            .zip(route.stats.inspect_failures)
        {
            out.sample(
                "tcpipe_inspect_failures_total",
                &[("route", &route.name), ("kind", kind)],
                count,
            );
        }
    }
    out.family(
        "tcpipe_pipe_duration_seconds",
        "histogram",
        "How long pipes lived, from accept to close.",
    );
    for route in routes {
        out.histogram(
            "tcpipe_pipe_duration_seconds",
            &[("route", &route.name)],
            &route.stats.duration,
        );
    }

    let targets = || {
        routes
            .iter()
            .flat_map(|r| r.targets.iter().map(move |t| (r.name.as_str(), t)))
    };
    type Value = fn(&super::TargetSnapshot) -> u64;
    let per_target: [(&str, &str, &str, Value); 8] = [
        (
            "tcpipe_target_up",
            "gauge",
            "1 while health checks find the target up, 0 while they hold it down or the operator has put it in maintenance.",
            |t| u64::from(t.up),
        ),
        (
            "tcpipe_target_weight",
            "gauge",
            "The target's weight now: its share of new clients against the others' (0 takes none).",
            |t| u64::from(t.weight),
        ),
        (
            "tcpipe_target_backup",
            "gauge",
            "1 for a backup target, which takes clients only while no primary can.",
            |t| u64::from(t.backup),
        ),
        (
            "tcpipe_target_connections_active",
            "gauge",
            "Pipes sent to the target, connecting or open.",
            |t| t.active,
        ),
        (
            "tcpipe_target_pool_idle_connections",
            "gauge",
            "Connected idle pooled connections ready for clients.",
            |t| t.pool_idle,
        ),
        (
            "tcpipe_target_connect_attempts_total",
            "counter",
            "Connects made for clients (each failover attempt counts).",
            |t| t.stats.connect_attempts,
        ),
        (
            "tcpipe_target_connect_failures_total",
            "counter",
            "Connects for clients refused or failed (timeouts not included).",
            |t| t.stats.connect_failures,
        ),
        (
            "tcpipe_target_connect_timeouts_total",
            "counter",
            "Connects for clients not accepted within the connect timeout.",
            |t| t.stats.connect_timeouts,
        ),
    ];
    for (name, kind, help, value) in per_target {
        out.family(name, kind, help);
        for (route, target) in targets() {
            out.sample(
                name,
                &[("route", route), ("target", &target.name)],
                value(target),
            );
        }
    }
    out.family(
        "tcpipe_target_state",
        "gauge",
        "1 for the operator's state of the target now (ready, drain or maint), 0 for the others.",
    );
    for (route, target) in targets() {
        for state in [TargetState::Ready, TargetState::Drain, TargetState::Maint] {
            let labels = [
                ("route", route),
                ("target", &target.name),
                ("state", state.as_str()),
            ];
            out.sample(
                "tcpipe_target_state",
                &labels,
                u64::from(target.state == state),
            );
        }
    }
    out.family(
        "tcpipe_forwarded_bytes_total",
        "counter",
        "Bytes delivered, by direction: to_target (sent by clients) and to_client (sent by the target).",
    );
    for (route, target) in targets() {
        for (direction, bytes) in ["to_target", "to_client"].into_iter().zip(target.bytes) {
            let labels = [
                ("route", route),
                ("target", &target.name),
                ("direction", direction),
            ];
            out.sample("tcpipe_forwarded_bytes_total", &labels, bytes);
        }
    }
    type Series = fn(&super::TargetSnapshot) -> &Histogram;
    let histograms: [(&str, &str, Series); 2] = [
        (
            "tcpipe_target_connect_duration_seconds",
            "Time connects for clients took to be accepted.",
            |t| &t.stats.connect_time,
        ),
        (
            "tcpipe_target_first_byte_seconds",
            "Time from accepting a client to the first byte its target sent.",
            |t| &t.stats.first_byte,
        ),
    ];
    for (name, help, series) in histograms {
        out.family(name, "histogram", help);
        for (route, target) in targets() {
            out.histogram(
                name,
                &[("route", route), ("target", &target.name)],
                series(target),
            );
        }
    }
    out.0
}

fn per_route(
    out: &mut Out,
    routes: &[super::RouteSnapshot],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&super::RouteSnapshot) -> u64,
) {
    out.family(name, kind, help);
    for route in routes {
        out.sample(name, &[("route", &route.name)], value(route));
    }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = write!(self.0, "# HELP {name} ");
        escape(&mut self.0, help, false);
        let _ = writeln!(self.0, "\n# TYPE {name} {kind}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Number) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Number) {
        self.0.push_str(name);
        self.labels(labels, None);
        self.0.push(' ');
        value.write(&mut self.0);
        self.0.push('\n');
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<f64>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.0.push('{');
        for (i, (key, value)) in labels.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(key);
            self.0.push_str("=\"");
            escape(&mut self.0, value, true);
            self.0.push('"');
        }
        if let Some(le) = le {
            if !labels.is_empty() {
                self.0.push(',');
            }
            self.0.push_str("le=\"");
            le.write(&mut self.0);
            self.0.push('"');
        }
        self.0.push('}');
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        for (bound, count) in histogram.cumulative() {
            self.0.push_str(name);
            self.0.push_str("_bucket");
            self.labels(labels, Some(bound));
            let _ = writeln!(self.0, " {count}");
        }
        for (suffix, value) in [
            ("_sum", histogram.sum_seconds()),
            ("_count", histogram.count() as f64),
        ] {
            self.0.push_str(name);
            self.0.push_str(suffix);
            self.labels(labels, None);
            self.0.push(' ');
            value.write(&mut self.0);
            self.0.push('\n');
        }
    }
}

/// Label values escape `\`, `"` and newlines; HELP text `\` and newlines.
fn escape(out: &mut String, text: &str, quotes: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

trait Number {
    fn write(self, out: &mut String);
}

impl Number for u64 {
    fn write(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Number for f64 {
    fn write(self, out: &mut String) {
        if self == f64::INFINITY {
            out.push_str("+Inf");
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::time::{Duration, SystemTime};

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        escape(&mut out, "a\"b\\c\nd", true);
        assert_eq!(out, r#"a\"b\\c\nd"#);
    }

    #[test]
    fn a_histogram_ends_with_inf_sum_and_count() {
        let mut snapshot = Snapshot::new(&Metrics::default(), SystemTime::UNIX_EPOCH);
        let route = snapshot.route("web");
        route.stats.duration.observe(Duration::from_millis(20));
        let text = render(&snapshot);
        assert!(
            text.contains("tcpipe_pipe_duration_seconds_bucket{route=\"web\",le=\"0.01\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("tcpipe_pipe_duration_seconds_bucket{route=\"web\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tcpipe_pipe_duration_seconds_bucket{route=\"web\",le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tcpipe_pipe_duration_seconds_count{route=\"web\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tcpipe_pipe_duration_seconds_sum{route=\"web\"} 0.02\n"),
            "{text}"
        );
    }
}
