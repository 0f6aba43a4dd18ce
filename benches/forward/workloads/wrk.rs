//! wrk against nginx serving a small file through the forwarder: HTTP
//! keep-alive, then `Connection: close` (a new connection per request).

use std::process::Command;
use std::time::Duration;

use super::{metric, Metric, Sample, Settings, Start, Workload};
use crate::peers::Tuning;
use crate::tools::{program, run_client, whole_seconds, ToolServer, SMALL_FILE};

pub const WRK_CONNECTIONS: usize = 16;

pub const METRICS: [Metric; 2] = [
    metric(
        "wrk_keepalive_req_per_s",
        Workload::Wrk,
        "wrk, HTTP keep-alive",
        "req/s",
        true,
        false,
    ),
    metric(
        "wrk_close_req_per_s",
        Workload::Wrk,
        "wrk, Connection: close",
        "req/s",
        true,
        true,
    ),
];

const SLACK: Duration = Duration::from_secs(15);

/// Requests per second from wrk's summary, refusing a run with errors.
fn rate(out: &str) -> Result<f64, String> {
    for marker in ["Socket errors:", "Non-2xx or 3xx responses:"] {
        if let Some(line) = out.lines().find(|l| l.trim_start().starts_with(marker)) {
            return Err(format!("wrk: {}", line.trim()));
        }
    }
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|r| *r > 0.0)
        .ok_or_else(|| format!("no Requests/sec in wrk's output: {:?}", out.trim()))
}

pub(super) fn run(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let wrk = program("wrk")?;
    let server = ToolServer::nginx_http()?;
    let mut forwarder = start(server.addr, Tuning::default())?;
    let seconds = whole_seconds(settings.duration);
    let url = format!("http://{}/{SMALL_FILE}", forwarder.addr);
    let mut sample = Sample::new();
    for (key, close) in [
        ("wrk_keepalive_req_per_s", false),
        ("wrk_close_req_per_s", true),
    ] {
        let mut command = Command::new(&wrk);
        command
            .args([
                "-t1",
                &format!("-c{WRK_CONNECTIONS}"),
                &format!("-d{seconds}s"),
            ])
            .arg(&url);
        if close {
            command.args(["-H", "Connection: close"]);
        }
        let out = run_client(command, Duration::from_secs(seconds) + SLACK)?;
        forwarder.ensure_alive()?;
        sample.push((key, rate(&out)?));
    }
    Ok(sample)
}
