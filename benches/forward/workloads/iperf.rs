//! iperf3 through the forwarder: one or four streams, upload (client to
//! target) then download (`-R`), with the forwarder's CPU per GB. Counted
//! by iperf3's receiver, the way people quote forwarders.

use std::process::Command;
use std::time::Duration;

use super::{cpu_now, cpu_used, metric, Metric, Sample, Settings, Start, Workload};
use crate::peers::Tuning;
use crate::tools::{program, run_client, whole_seconds, ToolServer};

pub const METRICS: [Metric; 8] = [
    metric(
        "iperf1_up_gbps",
        Workload::Iperf1,
        "iperf3, 1 stream, upload",
        "Gbit/s",
        true,
        true,
    ),
    metric(
        "iperf1_down_gbps",
        Workload::Iperf1,
        "iperf3, 1 stream, download",
        "Gbit/s",
        true,
        true,
    ),
    metric(
        "iperf1_up_cpu_s_per_gb",
        Workload::Iperf1,
        "iperf3, 1 stream, upload: CPU",
        "CPU-s/GB",
        false,
        false,
    ),
    metric(
        "iperf1_down_cpu_s_per_gb",
        Workload::Iperf1,
        "iperf3, 1 stream, download: CPU",
        "CPU-s/GB",
        false,
        false,
    ),
    metric(
        "iperf4_up_gbps",
        Workload::Iperf4,
        "iperf3, 4 streams, upload",
        "Gbit/s",
        true,
        true,
    ),
    metric(
        "iperf4_down_gbps",
        Workload::Iperf4,
        "iperf3, 4 streams, download",
        "Gbit/s",
        true,
        true,
    ),
    metric(
        "iperf4_up_cpu_s_per_gb",
        Workload::Iperf4,
        "iperf3, 4 streams, upload: CPU",
        "CPU-s/GB",
        false,
        true,
    ),
    metric(
        "iperf4_down_cpu_s_per_gb",
        Workload::Iperf4,
        "iperf3, 4 streams, download: CPU",
        "CPU-s/GB",
        false,
        true,
    ),
];

/// Beyond the test's own length: connect, setup and the final exchange.
const SLACK: Duration = Duration::from_secs(20);

/// What iperf3's receiver counted: bytes and seconds.
fn received(json: &str) -> Result<(f64, f64), String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("iperf3 output is not JSON: {e}"))?;
    if let Some(error) = v.get("error").and_then(|e| e.as_str()) {
        return Err(format!("iperf3: {error}"));
    }
    let sum = &v["end"]["sum_received"];
    match (sum["bytes"].as_f64(), sum["seconds"].as_f64()) {
        (Some(bytes), Some(seconds)) if bytes > 0.0 && seconds > 0.0 => Ok((bytes, seconds)),
        _ => Err("iperf3 reported no received bytes".into()),
    }
}

pub(super) fn run(streams: usize, settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let iperf3 = program("iperf3")?;
    let server = ToolServer::iperf3()?;
    let mut forwarder = start(server.addr, Tuning::default())?;
    let meter = forwarder.meter();
    let seconds = whole_seconds(settings.duration);
    let mut sample = Sample::new();
    let keys: [(&str, &str, &str); 2] = if streams == 1 {
        [
            ("", "iperf1_up_gbps", "iperf1_up_cpu_s_per_gb"),
            ("-R", "iperf1_down_gbps", "iperf1_down_cpu_s_per_gb"),
        ]
    } else {
        [
            ("", "iperf4_up_gbps", "iperf4_up_cpu_s_per_gb"),
            ("-R", "iperf4_down_gbps", "iperf4_down_cpu_s_per_gb"),
        ]
    };
    for (reverse, rate_key, cpu_key) in keys {
        let mut command = Command::new(&iperf3);
        command
            .args(["-c", &forwarder.addr.ip().to_string()])
            .args(["-p", &forwarder.addr.port().to_string()])
            .args(["-t", &seconds.to_string(), "-P", &streams.to_string(), "-J"]);
        if !reverse.is_empty() {
            command.arg(reverse);
        }
        let before = cpu_now(&meter)?;
        let out = run_client(command, Duration::from_secs(seconds) + SLACK)?;
        let after = cpu_now(&meter)?;
        let direction = if reverse.is_empty() {
            "upload"
        } else {
            "download"
        };
        let (bytes, secs) = received(&out).map_err(|e| format!("{direction}: {e}"))?;
        forwarder.ensure_alive()?;
        sample.push((rate_key, bytes * 8.0 / secs / 1e9));
        if let Some(cpu) = cpu_used(before, after) {
            sample.push((cpu_key, cpu / (bytes / 1e9)));
        }
    }
    Ok(sample)
}
