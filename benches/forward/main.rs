//! Side-by-side forwarding benchmark: a direct connection, tcpipe, and
//! HAProxy, nginx stream and socat where installed, on the same workloads
//! in one run.
//!
//! ```text
//! cargo bench --bench forward                      # full: 5 reps x 3 s per cell
//! cargo bench --bench forward -- --quick           # 2 reps x 1 s, under 2 minutes
//! cargo bench --bench forward -- --only bulk,ping-pong --peers tcpipe,haproxy
//! ```
//!
//! Other flags: `--reps N`, `--duration SECONDS`, `--idle-pipes N`, and
//! `--baseline PATH`: another tcpipe binary run as one more contender, right
//! after tcpipe in every repetition, for a before/after in one run. Plain
//! `cargo bench -- --quick` also hands the flags to the lib's and bin's
//! libtest harnesses, which reject them unless `[lib]` and `[[bin]]` say
//! `bench = false`; `--bench forward` avoids that.
//! Workloads: bulk-1, bulk-4 (or `bulk` for both), ping-pong, rr-concurrent,
//! connect-rate, idle-memory, ttfb (time to first byte of new clients, tcpipe
//! also with `--pool`; needs root and iproute2, see `far`); with the
//! clients people benchmark with, each skipped with a note when not
//! installed: iperf-1 and iperf-4 (iperf3, both directions), redis
//! (redis-benchmark against redis-server), wrk (against nginx serving a
//! small file); scaling (N idle pipes, also drawn as scaling.svg; `tools`
//! selects the four third-party ones). Contenders:
//! direct, tcpipe, haproxy, nginx, socat. The table goes to stdout, progress
//! to stderr, and JSON, SVG and markdown to `$CARGO_TARGET_DIR/bench/` (else
//! `target/bench/`).
//!
//! Each cell starts a fresh target server (in this process; ttfb's in a
//! child, see `far`) and a fresh forwarder process, and repetitions cycle through the contenders,
//! in reverse every other time (A B C C B A ...), so that drift on a shared machine, and
//! whatever one contender leaves behind for the next, hit all alike.

#![deny(unsafe_code)]

mod far;
mod measure;
mod peers;
mod report;
mod targets;
mod tools;
mod workloads;

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use measure::{raise_fd_limit, Machine};
use peers::{Kind, Limits, Peer, Workdir};
use report::{PeerInfo, Run};
use workloads::{metrics, Sample, Settings, Workload};

/// Descriptors wanted: 5,000 idle pipes hold 10,000 in this process alone
/// and as many in the forwarder; where the hard limit is lower and cannot
/// be raised, forwarders get what there is and idle-memory says if it is
/// short.
const NOFILE_WANTED: u64 = 65_536;

struct Options {
    quick: bool,
    reps: usize,
    settings: Settings,
    workloads: Vec<Workload>,
    kinds: Vec<Kind>,
    baseline: Option<String>,
}

fn usage() -> String {
    let workloads: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    format!(
        "usage: cargo bench --bench forward -- [--quick] [--only WORKLOADS] [--peers PEERS] \
         [--reps N] [--duration SECONDS] [--idle-pipes N] [--baseline PATH]\n  workloads: {} (bulk = both bulk rows)\n  \
         peers: {}",
        workloads.join(", "),
        kinds.join(", ")
    )
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut peers: Option<String> = None;
    let mut reps = None;
    let mut duration = None;
    let mut idle_pipes = None;
    let mut baseline = None;
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (args[i].as_str(), None),
        };
        let takes_value = matches!(
            flag,
            "--only" | "--peers" | "--reps" | "--duration" | "--idle-pipes" | "--baseline"
        );
        let value = if takes_value {
            match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    Some(
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("{flag} needs a value"))?,
                    )
                }
            }
        } else {
            None
        };
        let number = |v: &Option<String>| -> Result<f64, String> {
            v.as_deref()
                .unwrap_or_default()
                .parse::<f64>()
                .ok()
                .filter(|n| *n > 0.0)
                .ok_or_else(|| format!("{flag} needs a positive number"))
        };
        match flag {
            "--quick" => quick = true,
            "--only" => only = value,
            "--peers" => peers = value,
            "--reps" => reps = Some(number(&value)? as usize),
            "--duration" => duration = Some(Duration::from_secs_f64(number(&value)?)),
            "--idle-pipes" => idle_pipes = Some(number(&value)? as usize),
            "--baseline" => baseline = value,
            // cargo passes --bench; other harness flags mean nothing here.
            _ => {}
        }
        i += 1;
    }
    let words = |list: &Option<String>| -> Vec<String> {
        list.as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|w| w.trim().to_ascii_lowercase())
            .filter(|w| !w.is_empty())
            .collect()
    };
    let workloads = match only {
        None => Workload::ALL.to_vec(),
        Some(_) => {
            let wanted = words(&only);
            if let Some(bad) = wanted
                .iter()
                .find(|w| !Workload::ALL.iter().any(|wl| wl.selected_by(w)))
            {
                return Err(format!("unknown workload '{bad}'\n{}", usage()));
            }
            Workload::ALL
                .into_iter()
                .filter(|wl| wanted.iter().any(|w| wl.selected_by(w)))
                .collect()
        }
    };
    let mut kinds = match peers {
        None => Kind::ALL.to_vec(),
        Some(_) => {
            let wanted = words(&peers);
            if let Some(bad) = wanted
                .iter()
                .find(|w| !Kind::ALL.iter().any(|k| k.name() == w.as_str()))
            {
                return Err(format!("unknown peer '{bad}'\n{}", usage()));
            }
            Kind::ALL
                .into_iter()
                .filter(|k| wanted.iter().any(|w| w == k.name()))
                .collect()
        }
    };
    if baseline.is_some() {
        let after_tcpipe = kinds
            .iter()
            .position(|&k| k == Kind::Tcpipe)
            .map_or(0, |i| i + 1);
        kinds.insert(after_tcpipe, Kind::Baseline);
    }
    let (default_reps, default_duration, warmup) = if quick {
        (2, Duration::from_secs(1), Duration::from_millis(100))
    } else {
        (5, Duration::from_secs(3), Duration::from_millis(300))
    };
    Ok(Options {
        quick,
        reps: reps.unwrap_or(default_reps).max(1),
        settings: Settings {
            duration: duration.unwrap_or(default_duration),
            warmup,
            idle_pipes: idle_pipes.unwrap_or(5000),
            scale_pipes: 0, // from the descriptor limit, once raised
        },
        workloads,
        kinds,
        baseline,
    })
}

/// One line of progress on stderr for a cell.
fn progress(result: &Result<Sample, String>) -> String {
    match result {
        Err(e) => format!("ERR {e}"),
        Ok(sample) => sample
            .iter()
            .map(|(key, value)| {
                let unit = metrics().find(|m| m.key == *key).map_or("", |m| m.unit);
                format!("{} {unit}", report::number(*value))
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // This binary is also the ttfb workload's far target server.
    if args.first().map(String::as_str) == Some(far::SERVE_FLAG) {
        return far::serve(&args[1..]);
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let began = Instant::now();
    // Before any thread or child: they all inherit the limit.
    let limits = Limits::from_nofile(raise_fd_limit(NOFILE_WANTED));
    let mut options = options;
    options.settings.scale_pipes = most_idle_pipes(limits);
    let tcpipe = Path::new(env!("CARGO_BIN_EXE_tcpipe"));
    let builds = peers::Builds {
        tcpipe,
        baseline: options.baseline.as_deref().map(Path::new),
    };
    let (peers, mut skipped) = peers::discover(&options.kinds, builds, limits);
    // A workload whose client or server is not installed is a note.
    options.workloads.retain(|w| {
        let missing: Vec<&str> = w
            .tools()
            .iter()
            .copied()
            .filter(|tool| peers::find_on_path(tool).is_none())
            .collect();
        if !missing.is_empty() {
            skipped.push(format!(
                "workload {}: `{}` not found on PATH",
                w.name(),
                missing.join("`, `")
            ));
        }
        missing.is_empty()
    });
    for note in &skipped {
        eprintln!("note: skipping {note}");
    }
    let workdir = match Workdir::create() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let machine = Machine::probe().describe();
    eprintln!("machine: {machine}");

    let cells: usize = options
        .workloads
        .iter()
        .map(|w| peers.iter().filter(|p| !sits_out(*w, p.kind)).count())
        .sum::<usize>()
        * options.reps;
    let mut done = 0;
    let mut outcomes: HashMap<(Workload, Kind), Vec<Result<Sample, String>>> = HashMap::new();
    for &workload in &options.workloads {
        for rep in 0..options.reps {
            // Every other repetition runs the contenders in reverse (A B C,
            // C B A, ...), so that no one always follows the same neighbour
            // or sits at the same place in a drifting machine's cycle.
            let order: Vec<&Peer> = if rep % 2 == 0 {
                peers.iter().collect()
            } else {
                peers.iter().rev().collect()
            };
            for peer in order {
                if sits_out(workload, peer.kind) {
                    continue;
                }
                done += 1;
                let cell_began = Instant::now();
                let result = run_cell(workload, peer, &options.settings, &workdir.0);
                eprintln!(
                    "[{done:>3}/{cells}] {:<13} rep {}/{} {:<8} {} ({:.1} s)",
                    workload.name(),
                    rep + 1,
                    options.reps,
                    peer.name(),
                    progress(&result),
                    cell_began.elapsed().as_secs_f64()
                );
                outcomes
                    .entry((workload, peer.kind))
                    .or_default()
                    .push(result);
            }
        }
    }

    let s = &options.settings;
    let method = vec![
        format!(
            "run: {}, {} repetitions per cell (median reported), {:.1} s measured per timed cell \
             after {:.1} s warm-up, contenders interleaved per repetition, in reverse order every \
             other one; took {:.0} s",
            if options.quick { "--quick" } else { "full" },
            options.reps,
            s.duration.as_secs_f64(),
            s.warmup.as_secs_f64(),
            began.elapsed().as_secs_f64()
        ),
        format!(
            "loads (clients and targets in the bench process, Rust, loopback): bulk = {} KiB writes \
             for the duration, bytes counted at the target; ping-pong = {} B echo, one connection; \
             rr-concurrent = {} connections x {} pipelined {} B requests (one epoll thread each side); \
             connect rate = {} in flight, connect + {} B each way + target closes first; \
             idle memory = {} pipes, one {} B exchange each, then idle; \
             ttfb = new clients one at a time, each connect + {} B request + {} B reply, timed to \
             the reply's last byte, to a target in a network namespace behind a wire with {} µs \
             of delay each way (carried by the bench process); tcpipe once with no pool and once \
             with --pool {}, clients alternating",
            256,
            targets::MESSAGE,
            workloads::RR_CONNECTIONS,
            workloads::RR_DEPTH,
            targets::MESSAGE,
            workloads::CONNECT_CONCURRENCY,
            targets::MESSAGE,
            s.idle_pipes,
            targets::MESSAGE,
            targets::MESSAGE,
            targets::MESSAGE,
            far::ONE_WAY_DELAY.as_micros(),
            workloads::TTFB_POOL,
        ),
        format!(
            "descriptor limit {} (inherited by the forwarders), so each allows {} pipes",
            limits.nofile, limits.pipes
        ),
        format!(
            "third-party clients against their own servers, each a fresh process per cell: \
             iperf3 -t {secs} with -P 1 and -P 4, upload then download (-R), receiver's count; \
             redis-benchmark -t get -c {} -P {} -n {:.0} per second of duration against \
             redis-server (no persistence); wrk -t1 -c{} -d{secs}s for a {} B file from nginx \
             (http, one process, access log off), keep-alive then with Connection: close",
            workloads::REDIS_CLIENTS,
            workloads::REDIS_PIPELINE,
            workloads::redis::REDIS_REQUESTS_PER_SECOND,
            workloads::WRK_CONNECTIONS,
            tools::SMALL_FILE_BYTES,
            secs = tools::whole_seconds(s.duration),
        ),
        format!(
            "scaling: one forwarder, idle pipes opened in steps to {} (one {} B exchange each), \
             at each step: settle {} ms, PSS, after {} ms more CPU over {:.1} s with nothing \
             moving, ping-pong \
             of one more pipe, connect rate; tcpipe with --idle-timeout 1h \
             --half-close-timeout 1h (the peers have 1h timeouts)",
            workloads::scaling::levels(s.scale_pipes)
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            targets::MESSAGE,
            workloads::IDLE_SETTLE.as_millis(),
            workloads::scaling::DEFERRED_SETUP.as_millis(),
            s.duration.as_secs_f64(),
        ),
    ];
    let run = Run {
        machine,
        method,
        peers: peers
            .iter()
            .map(|p| PeerInfo {
                kind: p.kind,
                version: p.version.clone(),
                setup: p.setup.clone(),
            })
            .collect(),
        skipped,
        workloads: options.workloads.clone(),
        outcomes,
    };
    let table = report::markdown::render(&run);
    println!("{table}");
    match report::write_files(&run, &table) {
        Ok(paths) => {
            for path in paths {
                eprintln!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The scaling workload's last level: as many idle pipes as every
/// forwarder accepts (HAProxy with splicing takes three quarters of the
/// pipes, see `peers`) and this process can hold (both ends of each),
/// less a reserve for the load measured beside them.
fn most_idle_pipes(limits: Limits) -> usize {
    let forwarders = limits.pipes as usize * 3 / 4;
    let here = (limits.nofile.saturating_sub(1000) / 2) as usize;
    forwarders
        .min(here)
        .saturating_sub(workloads::scaling::RESERVE_PIPES)
}

/// A workload that needs a forwarder skips the direct connection; one of
/// tcpipe's own features skips the others.
fn sits_out(workload: Workload, kind: Kind) -> bool {
    (workload.needs_forwarder() && kind == Kind::Direct)
        || (workload.tcpipe_only() && kind != Kind::Tcpipe)
}

fn run_cell(
    workload: Workload,
    peer: &Peer,
    settings: &Settings,
    workdir: &Path,
) -> Result<Sample, String> {
    let mut start = |target, tuning| peer.start(target, tuning, workdir);
    workload.run(settings, &mut start)
}
