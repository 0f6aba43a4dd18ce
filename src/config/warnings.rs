//! Settings that run but are probably not what was meant: a target that
//! loops back into its own route, a target listed twice, more retries than
//! there are other targets, more connections than there are file
//! descriptors for. Logged at startup and on every reload, printed
//! by `--check`; never a reason to refuse the config.

use std::fmt;
use std::net::SocketAddr;

use super::{Config, Naming, Route};

/// A setting that works, but likely not as meant: which one, its value,
/// and what it will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The flag (`--target`) or key path (`route[0].targets[1]`).
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What it will do.
    pub reason: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' for '{}': {}", self.value, self.key, self.reason)
    }
}

impl Config {
    /// What in these settings will work, but probably not as meant; each
    /// names the setting the way `naming` says. Includes whether
    /// `max_connections` pipes fit in this process's descriptor limit as
    /// it is now (the binary raises it first).
    pub fn warnings(&self, naming: Naming) -> Vec<ConfigWarning> {
        self.warnings_within(naming, crate::descriptors::current_limit())
    }

    /// [`warnings`](Config::warnings) for a descriptor limit of `fd_limit`
    /// (`None`: none is checked).
    pub(crate) fn warnings_within(
        &self,
        naming: Naming,
        fd_limit: Option<u64>,
    ) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        self.worker_warnings(naming, &mut warnings);
        if let Some(limit) = fd_limit {
            warnings.extend(super::descriptor_budget::shortfall(self, limit, naming));
        }
        for (index, route) in self.routes.iter().enumerate() {
            route.warnings(index, naming, &mut warnings);
        }
        warnings
    }

    fn worker_warnings(&self, naming: Naming, out: &mut Vec<ConfigWarning>) {
        let workers = self.workers;
        let warn = |reason: String| ConfigWarning {
            key: naming.global_key("workers"),
            value: workers.to_string(),
            reason,
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if workers > cpus {
            out.push(warn(format!(
                "more workers than the {cpus} CPUs this process may run on; they take \
                 turns on the same cores"
            )));
        }
    }
}

impl Route {
    fn warnings(&self, index: usize, naming: Naming, out: &mut Vec<ConfigWarning>) {
        for (position, target) in self.targets.iter().enumerate() {
            let key = naming.target_key(index, position);
            let warn = |reason: String| ConfigWarning {
                key: key.clone(),
                value: target.name.clone(),
                reason,
            };
            if let Some(&listen) = self.listen.iter().find(|&&l| loops_to(l, target.addr)) {
                out.push(warn(format!(
                    "loops back into this route ({} {listen}); each client sent there \
                     opens another pipe, up to the connection limit",
                    naming.sibling("listen")
                )));
            }
            let earlier = self.targets[..position]
                .iter()
                .position(|other| other.addr == target.addr);
            if let Some(first) = earlier {
                let same = if self.targets[first].name == target.name {
                    "listed twice".to_string()
                } else {
                    format!("the same address as '{}'", self.targets[first].name)
                };
                out.push(warn(format!(
                    "{same} (target {} of {}); each listing is a target of its own and \
                     takes its own share of clients",
                    first + 1,
                    self.targets.len()
                )));
            }
        }
        if !self.targets.is_empty() && self.targets.iter().all(|t| t.weight == 0) {
            out.push(ConfigWarning {
                key: match naming {
                    Naming::Flags => "--target".into(),
                    Naming::File => format!("route[{index}].targets"),
                },
                value: format!(
                    "{} of weight 0",
                    crate::text::plural(self.targets.len(), "target")
                ),
                reason: "every target has weight 0: the route takes clients and resets them".into(),
            });
        }
        let others = self.targets.len().saturating_sub(1);
        if let Some(retries) = self.retries.filter(|&retries| retries > others) {
            let reason = match others {
                0 => "there is no other target; a client whose connect fails tries the \
                      same target again"
                    .to_string(),
                n => format!(
                    "more than the {}; a client whose connects fail tries the same \
                     targets again",
                    crate::text::plural(n, "other target")
                ),
            };
            out.push(ConfigWarning {
                key: naming.route_key(index, "retries"),
                value: retries.to_string(),
                reason,
            });
        }
    }
}

/// Whether connecting to `target` reaches the listener on `listen`. A
/// wildcard listener takes every local address of its port; of those,
/// the loopback ones are the ones we can know without asking the kernel.
fn loops_to(listen: SocketAddr, target: SocketAddr) -> bool {
    if listen.port() == 0 || listen.port() != target.port() {
        return false;
    }
    // `[::]` takes IPv4 clients too (tcpipe leaves IPV6_V6ONLY off);
    // `0.0.0.0` takes no IPv6 ones.
    let family = listen.is_ipv6() || target.is_ipv4();
    listen.ip() == target.ip()
        || (listen.ip().is_unspecified() && family && target.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    fn route(listen: &str, targets: &[&str]) -> Config {
        let mut config = Config::new(listen.parse().unwrap(), "127.0.0.1:9".parse().unwrap());
        config.routes[0].targets = targets
            .iter()
            .map(|t| Target::from(t.parse::<SocketAddr>().unwrap()))
            .collect();
        config
    }

    #[test]
    fn a_target_on_its_own_listen_address_loops() {
        let keys = |config: &Config| -> Vec<String> {
            config
                .warnings_within(Naming::File, None)
                .into_iter()
                .map(|w| w.key)
                .collect()
        };
        assert_eq!(
            keys(&route("127.0.0.1:7000", &["127.0.0.1:7000"])),
            ["route[0].targets[0]"]
        );
        assert_eq!(
            keys(&route("0.0.0.0:7000", &["127.0.0.2:7000"])),
            ["route[0].targets[0]"]
        );
        assert_eq!(
            keys(&route("[::]:7000", &["[::1]:7000"])),
            ["route[0].targets[0]"]
        );
        assert!(keys(&route("127.0.0.1:7000", &["127.0.0.1:7001"])).is_empty());
        assert!(keys(&route("127.0.0.1:7000", &["127.0.0.2:7000"])).is_empty());
        assert!(keys(&route("127.0.0.1:0", &["127.0.0.1:0"])).is_empty());
        assert!(keys(&route("0.0.0.0:7000", &["[::1]:7000"])).is_empty());
    }

    #[test]
    fn a_duplicate_target_and_too_many_retries_are_named() {
        let mut config = route(
            "127.0.0.1:7000",
            &["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80"],
        );
        config.routes[0].retries = Some(3);
        let warnings = config.warnings_within(Naming::Flags, None);
        let keys: Vec<&str> = warnings.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["--target", "--retries"], "{warnings:?}");
        assert!(
            warnings[0].reason.contains("target 1 of 3"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].reason.contains("2 other targets"),
            "{}",
            warnings[1]
        );
        config.routes[0].retries = Some(2);
        assert_eq!(config.warnings_within(Naming::Flags, None).len(), 1);
    }
}
