//! What a forwarder is told to do, validated before anything is bound.
//!
//! A [`Config`] is process-wide settings plus a list of [`Route`]s. Each
//! route has a unique name, the addresses it listens on, its targets and its
//! own options. The command line gives one route named `default`; a config
//! file ([`load_file`]) gives any number. The reactor only ever sees a config
//! that passed [`Config::validate`], at startup and at every reload.

mod descriptor_budget;
// The config file (TOML, through serde) is the CLI's: `cli` feature.
#[cfg(feature = "cli")]
mod file;
#[cfg(feature = "cli")]
mod keys;
#[cfg(feature = "cli")]
mod location;
#[cfg(feature = "cli")]
mod overrides;
#[cfg(feature = "cli")]
mod suggest;
// `parse_workers` is for the command line and the config file.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
mod values;
mod warnings;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::acl::Cidr;
use crate::proxy_protocol::ProxyVersion;

#[cfg(feature = "cli")]
pub use file::{load_file, load_file_with, FileError};
#[cfg(feature = "cli")]
pub use overrides::Overrides;
#[cfg(feature = "cli")]
pub(crate) use values::parse_workers;
pub use values::{format_duration, format_size, parse_address, parse_duration, parse_size};
pub use warnings::ConfigWarning;

/// Everything a forwarder runs: process-wide settings and the routes.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Names and listen addresses are unique. A file needs at least one
    /// route; a library forwarder may have none and pipe only the sockets
    /// it is handed ([`Handle::attach`](crate::Handle::attach)).
    pub routes: Vec<Route>,
    /// Live pipes of all routes together at which every listener pauses.
    pub max_connections: usize,
    /// How long live pipes may run on after a shutdown request, or after
    /// their route was removed by a reload; `None` waits for them however
    /// long they take.
    pub drain_timeout: Option<Duration>,
    /// Re-resolve target host names this often.
    pub resolve_interval: Option<Duration>,
    /// Where to serve `GET /metrics` in the Prometheus text format; `None`
    /// serves nothing.
    pub metrics: Option<SocketAddr>,
    /// The access log: where, in what format, and whether opens are logged.
    pub access_log: AccessLogConfig,
    /// Event loops, each on a thread of its own with its own listening
    /// sockets (`SO_REUSEPORT`); set at startup, a reload keeps the running
    /// number. 1 is one loop and no `SO_REUSEPORT`.
    pub workers: usize,
}

/// The access log's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// Where lines go.
    pub destination: LogDestination,
    /// How each line is written.
    pub format: LogFormat,
    /// Log a line when a pipe opens too, not only when it closes.
    pub opens: bool,
}

/// Where access-log lines go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LogDestination {
    /// Through the `log` crate at info level (target `tcpipe::access`),
    /// which the binary writes to stderr.
    #[default]
    Stderr,
    /// Nowhere.
    Off,
    /// Appended to this file, from a thread of its own; a reload reopens it.
    File(std::path::PathBuf),
}

impl LogDestination {
    /// `off`, `-` (stderr) or a file path, as `--access-log` takes it.
    pub fn parse(text: &str) -> Result<LogDestination, String> {
        match text {
            "" => Err("give a file, '-' for stderr, or 'off'".into()),
            "off" => Ok(LogDestination::Off),
            "-" | "stderr" => Ok(LogDestination::Stderr),
            path => Ok(LogDestination::File(path.into())),
        }
    }
}

impl fmt::Display for LogDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogDestination::Stderr => f.write_str("stderr"),
            LogDestination::Off => f.write_str("off"),
            LogDestination::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How an access-log line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "cli",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum LogFormat {
    /// `key=value` pairs separated by spaces; values with spaces quoted.
    #[default]
    Text,
    /// One JSON object per line, with the same keys.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// One service: where clients come in, where they go, and how. Build it
/// with [`Route::new`] and adjust the public fields; every duration of
/// `None` means "off".
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// Unique among the routes: how logs, reloads and (later) metrics name it.
    pub name: String,
    /// At least one address to accept clients on.
    pub listen: Vec<SocketAddr>,
    /// Where clients are forwarded; at least one.
    pub targets: Vec<Target>,
    /// How a new client's target is chosen.
    pub balance: Balance,
    /// Further targets tried when a connect fails; `None` means one fewer
    /// than the number of targets.
    pub retries: Option<usize>,
    /// Consecutive connect failures that mark a target down.
    pub fail_threshold: u32,
    /// How long a down target first waits for its trial (doubling up to
    /// 60 s); `None` never marks a target down.
    pub cooldown: Option<Duration>,
    /// Probe every target with a connect this often.
    pub health_interval: Option<Duration>,
    /// Connected idle upstream connections kept ready per target.
    pub pool: usize,
    /// A pooled connection idle this long is replaced.
    pub pool_max_idle: Duration,
    /// Capacity of each direction's ring: the high-water mark.
    pub buffer_size: usize,
    /// Reading resumes once the bytes waiting drain to this many.
    pub low_water: usize,
    /// A target that has not accepted by then counts as refused.
    pub connect_timeout: Option<Duration>,
    /// Reset a pipe after this long with no byte either way.
    pub idle_timeout: Option<Duration>,
    /// Once one direction has ended, reset the pipe if the other moves no
    /// byte for this long.
    pub half_close_timeout: Option<Duration>,
    /// Idle time before TCP keepalive probes start, on both sides.
    pub keepalive: Option<Duration>,
    /// Live pipes of this route at which its listeners pause; `None`: only
    /// the process-wide limit applies.
    pub max_connections: Option<usize>,
    /// Send a PROXY protocol header of this version to the target before
    /// any client byte (`send-proxy`).
    pub send_proxy: Option<ProxyVersion>,
    /// Read a PROXY protocol header (v1 or v2) from each client before
    /// connecting, and take the client's address from it (`accept-proxy`).
    pub accept_proxy: bool,
    /// With `accept_proxy`, close a client whose header is not complete by
    /// then; `None` waits however long it takes.
    pub proxy_timeout: Option<Duration>,
    /// If not empty, only clients in one of these blocks are served.
    pub allow: Vec<Cidr>,
    /// Clients in one of these blocks are closed at once, whatever `allow` says.
    pub deny: Vec<Cidr>,
    /// Live pipes of this route per client IP beyond which a new client
    /// from that IP is closed at once; `None`: no limit.
    pub max_connections_per_source: Option<usize>,
    /// Whether its pipes move bytes with `splice(2)` instead of copying
    /// them through the ring.
    pub splice: Splice,
}

/// Whether a direction's bytes go socket → kernel pipe → socket with
/// `splice(2)`, never entering user space, or are copied through the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "cli",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Splice {
    /// Copy at first; splice a direction once it streams (its reads keep
    /// filling the ring), as HAProxy's `splice-auto` does.
    #[default]
    Auto,
    /// Splice from the first byte.
    Always,
    /// Always copy through the ring.
    Never,
}

impl fmt::Display for Splice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Splice::Auto => "auto",
            Splice::Always => "always",
            Splice::Never => "never",
        })
    }
}

/// One target: the name it was given as (`host:port`), and the address
/// that name resolves to now. Within a route the name is its identity (the
/// n-th of a name listed more than once): a reload that keeps the name
/// keeps the target, its health and its pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As given: `host:port` or an address.
    pub name: String,
    /// What the name resolves to now.
    pub addr: SocketAddr,
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target {
            name: addr.to_string(),
            addr,
        }
    }
}

/// How a new client's target is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "cli",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Balance {
    /// Each target in turn.
    RoundRobin,
    /// The target with the fewest live pipes.
    LeastConn,
    /// The same target for the same client IP (rendezvous hashing).
    SourceHash,
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConn => "least-conn",
            Balance::SourceHash => "source-hash",
        })
    }
}

pub const DEFAULT_ROUTE_NAME: &str = "default";
pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_HALF_CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// More event loops than this is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_FAIL_THRESHOLD: u32 = 3;
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
pub const DEFAULT_POOL_MAX_IDLE: Duration = Duration::from_secs(30);
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(3);

/// Smallest ring accepted: a page. Below it each read and write moves so
/// few bytes that the syscalls, not the network, set the rate; it also
/// holds the longest PROXY header tcpipe sends (107 bytes) with room.
pub const MIN_BUFFER_SIZE: usize = 4096;

/// Largest ring accepted; beyond this a single pipe could pin a gigabyte.
pub const MAX_BUFFER_SIZE: usize = 1 << 30;

/// Longest route name: it appears in every log line of the route.
pub const MAX_ROUTE_NAME: usize = 64;

impl Route {
    /// A route with every option at its default.
    pub fn new(name: impl Into<String>, listen: SocketAddr, target: SocketAddr) -> Route {
        Route {
            name: name.into(),
            listen: vec![listen],
            targets: vec![Target::from(target)],
            balance: Balance::RoundRobin,
            retries: None,
            fail_threshold: DEFAULT_FAIL_THRESHOLD,
            cooldown: Some(DEFAULT_COOLDOWN),
            health_interval: None,
            pool: 0,
            pool_max_idle: DEFAULT_POOL_MAX_IDLE,
            buffer_size: DEFAULT_BUFFER_SIZE,
            low_water: DEFAULT_BUFFER_SIZE / 2,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            idle_timeout: None,
            half_close_timeout: Some(DEFAULT_HALF_CLOSE_TIMEOUT),
            keepalive: Some(DEFAULT_KEEPALIVE),
            max_connections: None,
            send_proxy: None,
            accept_proxy: false,
            proxy_timeout: Some(DEFAULT_PROXY_TIMEOUT),
            allow: Vec::new(),
            deny: Vec::new(),
            max_connections_per_source: None,
            splice: Splice::Auto,
        }
    }

    /// Connects one client may cost: the first, and one per retry.
    pub fn max_attempts(&self) -> usize {
        1 + self.retries.unwrap_or(self.targets.len().saturating_sub(1))
    }
}

/// How validation names a setting: as the flag that set it, or as its key
/// path in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// As the command line writes them: `--low-water`.
    Flags,
    /// As a config file writes them: `route[1].low-water`.
    File,
}

impl Naming {
    /// A route option's name; file keys are the flag names without `--`.
    fn route_key(self, index: usize, key: &str) -> String {
        match self {
            Naming::Flags => format!("--{key}"),
            Naming::File => format!("route[{index}].{key}"),
        }
    }

    /// One of a route's targets: `--target`, or `route[0].targets[1]`.
    fn target_key(self, index: usize, position: usize) -> String {
        match self {
            Naming::Flags => "--target".into(),
            Naming::File => format!("route[{index}].targets[{position}]"),
        }
    }

    /// A process-wide setting's name.
    pub(crate) fn global_key(self, key: &str) -> String {
        match self {
            Naming::Flags => format!("--{key}"),
            Naming::File => format!("global.{key}"),
        }
    }

    /// Another key mentioned in a reason, next to the one being reported.
    fn sibling(self, key: &str) -> String {
        match self {
            Naming::Flags => format!("--{key}"),
            Naming::File => key.to_string(),
        }
    }
}

impl Config {
    /// One route named `default` from `listen` to `target`, every setting
    /// at its default; adjust `routes[0]` or push more routes.
    pub fn new(listen: SocketAddr, target: SocketAddr) -> Config {
        Config::with_routes(vec![Route::new(DEFAULT_ROUTE_NAME, listen, target)])
    }

    /// These routes, with the process-wide settings at their defaults.
    pub fn with_routes(routes: Vec<Route>) -> Config {
        Config {
            routes,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout: Some(DEFAULT_DRAIN_TIMEOUT),
            resolve_interval: Some(DEFAULT_RESOLVE_INTERVAL),
            metrics: None,
            access_log: AccessLogConfig::default(),
            workers: 1,
        }
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.name == name)
    }

    /// Checks every setting; errors name the setting as a config file does.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_as(Naming::File)
    }

    /// Checks every setting; errors name it the way `naming` says.
    pub fn validate_as(&self, naming: Naming) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            let key = naming.global_key("max-connections");
            return Err(ConfigError::new(key, "0", "must be at least 1"));
        }
        if self.workers == 0 || self.workers > MAX_WORKERS {
            return Err(ConfigError::new(
                naming.global_key("workers"),
                self.workers.to_string(),
                format!("must be between 1 and {MAX_WORKERS}, or auto (one per CPU)"),
            ));
        }
        let mut names = HashSet::new();
        for (index, route) in self.routes.iter().enumerate() {
            route.validate(index, naming)?;
            if !names.insert(route.name.as_str()) {
                return Err(ConfigError::new(
                    naming.route_key(index, "name"),
                    &route.name,
                    "another route has this name",
                ));
            }
        }
        self.check_listen_conflicts(naming)?;
        self.check_metrics_address(naming)
    }

    /// The metrics endpoint cannot share a port with a route.
    fn check_metrics_address(&self, naming: Naming) -> Result<(), ConfigError> {
        let Some(metrics) = self.metrics else {
            return Ok(());
        };
        for route in &self.routes {
            if let Some(listen) = route
                .listen
                .iter()
                .find(|&&l| addresses_overlap(metrics, l))
            {
                return Err(ConfigError::new(
                    naming.global_key("metrics"),
                    metrics.to_string(),
                    format!("overlaps {listen}, where route '{}' listens", route.name),
                ));
            }
        }
        Ok(())
    }

    /// Two routes cannot share an address: the second could never bind it.
    /// `0.0.0.0` and `[::]` overlap every address of the same port. Port 0
    /// asks the kernel for a free port, so it never clashes.
    fn check_listen_conflicts(&self, naming: Naming) -> Result<(), ConfigError> {
        let all: Vec<(usize, SocketAddr)> = self
            .routes
            .iter()
            .enumerate()
            .flat_map(|(index, route)| route.listen.iter().map(move |&addr| (index, addr)))
            .collect();
        for (position, &(index, addr)) in all.iter().enumerate() {
            let earlier = all[..position]
                .iter()
                .find(|&&(other, theirs)| other != index && addresses_overlap(addr, theirs));
            if let Some(&(other, theirs)) = earlier {
                return Err(ConfigError::new(
                    naming.route_key(index, "listen"),
                    addr.to_string(),
                    format!(
                        "overlaps {theirs}, where route '{}' listens",
                        self.routes[other].name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether two listen addresses would fight over the same port.
pub(crate) fn addresses_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || b.port() != a.port() {
        return false;
    }
    a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
}

impl Route {
    fn validate(&self, index: usize, naming: Naming) -> Result<(), ConfigError> {
        let key = |name: &str| naming.route_key(index, name);
        if self.name.is_empty()
            || self.name.len() > MAX_ROUTE_NAME
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::new(
                key("name"),
                &self.name,
                format!("use 1 to {MAX_ROUTE_NAME} letters, digits, '-', '_' or '.'"),
            ));
        }
        if self.listen.is_empty() {
            return Err(ConfigError::new(
                key("listen"),
                "[]",
                "give at least one address",
            ));
        }
        for (position, addr) in self.listen.iter().enumerate() {
            if self.listen[..position].contains(addr) {
                return Err(ConfigError::new(
                    key("listen"),
                    addr.to_string(),
                    "listed twice",
                ));
            }
        }
        if self.targets.is_empty() {
            return Err(ConfigError::new(
                key("targets"),
                "[]",
                "give at least one target",
            ));
        }
        for (position, target) in self.targets.iter().enumerate() {
            // The kernel would take port 0 or 0.0.0.0 as "this host", some
            // port: never the service meant.
            let reason = if target.addr.port() == 0 {
                "a target needs a port other than 0"
            } else if target.addr.ip().is_unspecified() {
                "a target needs a host; 0.0.0.0 and [::] only mean \"every address\" to listen on"
            } else {
                continue;
            };
            return Err(ConfigError::new(
                naming.target_key(index, position),
                &target.name,
                reason,
            ));
        }
        if self.fail_threshold == 0 {
            return Err(ConfigError::new(
                key("fail-threshold"),
                "0",
                "must be at least 1",
            ));
        }
        if self.pool > 0 && self.pool_max_idle.is_zero() {
            return Err(ConfigError::new(
                key("pool-max-idle"),
                "0",
                format!("must be positive when {} is set", naming.sibling("pool")),
            ));
        }
        if let Some(reason) = buffer_size_problem(self.buffer_size) {
            return Err(ConfigError::new(
                key("buffer-size"),
                format_size(self.buffer_size),
                reason,
            ));
        }
        if self.low_water >= self.buffer_size {
            return Err(ConfigError::new(
                key("low-water"),
                format_size(self.low_water),
                format!(
                    "must be below {} ({})",
                    naming.sibling("buffer-size"),
                    format_size(self.buffer_size)
                ),
            ));
        }
        if self.max_connections == Some(0) {
            return Err(ConfigError::new(
                key("max-connections"),
                "0",
                "must be at least 1",
            ));
        }
        if self.max_connections_per_source == Some(0) {
            return Err(ConfigError::new(
                key("max-connections-per-source"),
                "0",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Why a ring of `size` bytes is refused, if it is.
pub(crate) fn buffer_size_problem(size: usize) -> Option<String> {
    (!(MIN_BUFFER_SIZE..=MAX_BUFFER_SIZE).contains(&size)).then(|| {
        format!(
            "must be between {} (a page) and {}",
            format_size(MIN_BUFFER_SIZE),
            format_size(MAX_BUFFER_SIZE)
        )
    })
}

/// A setting that cannot be used: which one, its value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The flag (`--low-water`) or key path (`route[1].low-water`).
    pub key: String,
    /// The value as written.
    pub value: String,
    /// Why it cannot be used.
    pub reason: String,
}

impl ConfigError {
    /// An error about `key` set to `value`.
    pub fn new(
        key: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            key: key.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value '{}' for '{}': {}",
            self.value, self.key, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn low_water_must_be_below_buffer_size() {
        let mut config = Config::new(addr("127.0.0.1:1"), addr("127.0.0.1:2"));
        config.routes[0].low_water = config.routes[0].buffer_size;
        let err = config.validate_as(Naming::Flags).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value '64k' for '--low-water': must be below --buffer-size (64k)"
        );
        let err = config.validate_as(Naming::File).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value '64k' for 'route[0].low-water': must be below buffer-size (64k)"
        );
    }

    #[test]
    fn route_names_are_unique_and_plain() {
        let first = Route::new("web", addr("127.0.0.1:1"), addr("127.0.0.1:9"));
        let mut second = Route::new("web", addr("127.0.0.1:2"), addr("127.0.0.1:9"));
        let config = Config::with_routes(vec![first.clone(), second.clone()]);
        assert_eq!(config.validate().unwrap_err().key, "route[1].name");
        second.name = "web api".into();
        let config = Config::with_routes(vec![first, second]);
        assert_eq!(config.validate().unwrap_err().key, "route[1].name");
    }

    #[test]
    fn two_routes_cannot_share_an_address_but_port_0_never_clashes() {
        let clash = |a: &str, b: &str| {
            let config = Config::with_routes(vec![
                Route::new("a", addr(a), addr("127.0.0.1:9")),
                Route::new("b", addr(b), addr("127.0.0.1:9")),
            ]);
            config.validate().is_err()
        };
        assert!(clash("127.0.0.1:80", "127.0.0.1:80"));
        assert!(clash("0.0.0.0:80", "127.0.0.1:80"));
        assert!(clash("127.0.0.1:80", "[::]:80"));
        assert!(!clash("127.0.0.1:80", "127.0.0.2:80"));
        assert!(!clash("127.0.0.1:80", "127.0.0.1:81"));
        assert!(!clash("127.0.0.1:0", "127.0.0.1:0"));
    }

    #[test]
    fn a_route_lists_each_address_once() {
        let mut config = Config::new(addr("127.0.0.1:1"), addr("127.0.0.1:9"));
        config.routes[0].listen.push(addr("127.0.0.1:1"));
        assert_eq!(config.validate().unwrap_err().key, "route[0].listen");
    }
}
