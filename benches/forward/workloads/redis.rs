//! redis-benchmark against redis-server through the forwarder: GET, 50
//! clients, 16 pipelined requests each, as the comparison ran it.

use std::process::Command;
use std::time::Duration;

use super::{cpu_now, cpu_used, metric, Metric, Sample, Settings, Start, Workload};
use crate::peers::Tuning;
use crate::tools::{program, run_client, ToolServer};

pub const REDIS_CLIENTS: usize = 50;
pub const REDIS_PIPELINE: usize = 16;
/// redis-benchmark runs a count, not a time: this many requests per second
/// of `--duration`, about a second each at the rates seen so far.
pub const REDIS_REQUESTS_PER_SECOND: f64 = 1_000_000.0;

pub const METRICS: [Metric; 2] = [
    metric(
        "redis_get_per_s",
        Workload::Redis,
        "redis GET, 50 clients, pipeline 16",
        "req/s",
        true,
        true,
    ),
    metric(
        "redis_cpu_s_per_mreq",
        Workload::Redis,
        "redis GET: CPU",
        "CPU-s/M req",
        false,
        false,
    ),
];

/// The rate of the GET line of `--csv` output: `"GET","1234.56",...`.
fn get_rate(csv: &str) -> Result<f64, String> {
    csv.lines()
        .find_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
            (fields.next()? == "GET").then(|| fields.next()?.parse::<f64>().ok())?
        })
        .filter(|rate| *rate > 0.0)
        .ok_or_else(|| format!("no GET rate in redis-benchmark's output: {:?}", csv.trim()))
}

pub(super) fn run(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let benchmark = program("redis-benchmark")?;
    let server = ToolServer::redis()?;
    let mut forwarder = start(server.addr, Tuning::default())?;
    let meter = forwarder.meter();
    let requests = (REDIS_REQUESTS_PER_SECOND * settings.duration.as_secs_f64()).max(10_000.0);
    let mut command = Command::new(&benchmark);
    command
        .args(["-h", &forwarder.addr.ip().to_string()])
        .args(["-p", &forwarder.addr.port().to_string()])
        .args([
            "-c",
            &REDIS_CLIENTS.to_string(),
            "-P",
            &REDIS_PIPELINE.to_string(),
        ])
        .args(["-t", "get", "-n", &format!("{requests:.0}"), "--csv"]);
    let before = cpu_now(&meter)?;
    // Even at 20k req/s it ends within this.
    let limit = Duration::from_secs_f64(requests / 20_000.0 + 10.0);
    let out = run_client(command, limit)?;
    let after = cpu_now(&meter)?;
    forwarder.ensure_alive()?;
    let mut sample = vec![("redis_get_per_s", get_rate(&out)?)];
    if let Some(cpu) = cpu_used(before, after) {
        sample.push(("redis_cpu_s_per_mreq", cpu / (requests / 1e6)));
    }
    Ok(sample)
}
