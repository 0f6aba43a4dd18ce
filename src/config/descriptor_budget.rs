//! Whether `max-connections` pipes fit in the descriptor limit there is.
//!
//! A pipe holds two sockets (client and target) for its whole life; a
//! spliced direction borrows a kernel pipe (two more) only while bytes are
//! in it, and copies through its ring instead when none can be had, so
//! what decides whether a client is served is its two sockets. Around the
//! pipes the process holds a fixed set: stdio, each worker's poll, waker,
//! reserved upstream socket, listeners and spare kernel pipes, the warm
//! pools, probes, the metrics endpoint, the access log file and the
//! signal pipe.

use super::{Config, ConfigWarning, LogDestination, Naming, Splice};
use crate::kernel_pipe::SPARE_KERNEL_PIPES;

/// Descriptors every pipe holds: its client and its target socket.
const PER_PIPE: u64 = 2;
/// Stdio, the signal pipe, and the sockets reloads and re-resolution open
/// for a moment.
const PROCESS_FIXED: u64 = 8;
/// Each worker's poll, its waker, and the upstream socket it holds in
/// reserve before it accepts.
const WORKER_FIXED: u64 = 3;
/// Descriptors `config` holds besides its pipes' sockets.
fn fixed_descriptors(config: &Config) -> u64 {
    let count = |n: usize| n as u64;
    let listeners: usize = config.routes.iter().map(|r| r.listen.len()).sum();
    let splices = config.routes.iter().any(|r| r.splice != Splice::Never);
    let spare_pipes = if splices { 2 * SPARE_KERNEL_PIPES } else { 0 };
    let per_worker = WORKER_FIXED + count(listeners) + count(spare_pipes);
    let pooled: usize = config.routes.iter().map(|r| r.pool * r.targets.len()).sum();
    let probed: usize = config
        .routes
        .iter()
        .filter(|r| r.health_interval.is_some())
        .map(|r| r.targets.len())
        .sum();
    // The endpoint's listener and one scrape at a time.
    let metrics = if config.metrics.is_some() { 2 } else { 0 };
    let access_log = u64::from(matches!(
        config.access_log.destination,
        LogDestination::File(_)
    ));
    PROCESS_FIXED
        + count(config.workers) * per_worker
        + count(pooled)
        + count(probed)
        + metrics
        + access_log
}

/// A warning if `max-connections` pipes need more descriptors than `limit`.
pub(crate) fn shortfall(config: &Config, limit: u64, naming: Naming) -> Option<ConfigWarning> {
    let fixed = fixed_descriptors(config);
    let needed = (config.max_connections as u64)
        .saturating_mul(PER_PIPE)
        .saturating_add(fixed);
    if needed <= limit {
        return None;
    }
    let fit = limit.saturating_sub(fixed) / PER_PIPE;
    Some(ConfigWarning {
        key: naming.global_key("max-connections"),
        value: config.max_connections.to_string(),
        reason: format!(
            "needs about {needed} file descriptors but the limit is {limit} (ulimit -n): \
             about {fit} pipes fit, and clients beyond wait in the backlog; raise \
             LimitNOFILE / ulimit -n or lower max-connections"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn config(max_connections: usize) -> Config {
        let listen: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let mut config = Config::new(listen, "127.0.0.1:9".parse().unwrap());
        config.max_connections = max_connections;
        config.routes[0].splice = Splice::Never;
        config
    }

    #[test]
    fn two_descriptors_a_pipe_and_the_fixed_set_must_fit() {
        let plain = config(10_000);
        let fixed = fixed_descriptors(&plain);
        assert_eq!(fixed, PROCESS_FIXED + WORKER_FIXED + 1);
        assert!(shortfall(&plain, 20_000 + fixed, Naming::Flags).is_none());
        let warning = shortfall(&plain, 1024, Naming::Flags).expect("a warning");
        assert_eq!(warning.key, "--max-connections");
        assert_eq!(warning.value, "10000");
        let fit = (1024 - fixed) / PER_PIPE;
        assert!(
            warning
                .reason
                .contains(&format!("about {} file", 20_000 + fixed))
                && warning.reason.contains("limit is 1024")
                && warning.reason.contains(&format!("about {fit} pipes fit")),
            "{warning}"
        );
        assert_eq!(
            shortfall(&plain, 10, Naming::File).map(|w| w.key),
            Some("global.max-connections".to_string())
        );
    }

    #[test]
    fn workers_splicing_pools_and_outputs_add_to_the_fixed_set() {
        let plain = fixed_descriptors(&config(1));
        let mut more = config(1);
        more.workers = 2;
        more.routes[0].splice = Splice::Auto;
        more.routes[0].pool = 3;
        more.routes[0].health_interval = Some(std::time::Duration::from_secs(1));
        more.metrics = Some("127.0.0.1:0".parse().unwrap());
        more.access_log.destination = LogDestination::File("/tmp/access.log".into());
        let per_worker = WORKER_FIXED + 1 + 2 * SPARE_KERNEL_PIPES as u64;
        assert_eq!(
            fixed_descriptors(&more),
            PROCESS_FIXED + 2 * per_worker + 3 + 1 + 2 + 1
        );
        assert!(fixed_descriptors(&more) > plain);
    }
}
