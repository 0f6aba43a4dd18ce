//! What a forwarder is told to do, validated before anything is bound.
//!
//! A [`Config`] is process-wide settings plus a list of [`Route`]s. Each
//! route has a unique name, the addresses it listens on, its targets and its
//! own options. The command line gives one route named `default`; a config
//! file ([`load_file`]) gives any number. The reactor only ever sees a config
//! that passed [`Config::validate`], at startup and at every reload.

mod admin;
mod descriptor_budget;
// The config file (TOML, through serde) is the CLI's: `cli` feature.
#[cfg(feature = "cli")]
mod document;
#[cfg(feature = "cli")]
mod file;
#[cfg(feature = "cli")]
mod keys;
#[cfg(feature = "cli")]
mod location;
mod matching;
#[cfg(feature = "cli")]
mod overrides;
#[cfg(feature = "cli")]
mod suggest;
#[cfg(feature = "cli")]
mod target_spec;
mod validate;
// `parse_workers` is for the command line and the config file.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
mod values;
mod warnings;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::acl::Cidr;
use crate::proxy_protocol::ProxyVersion;

pub(crate) use admin::admin_kept;
#[cfg(feature = "cli")]
pub use admin::read_token;
pub use admin::AdminAddress;
#[cfg(feature = "cli")]
pub use file::{load_file, load_file_with, FileError};
pub(crate) use matching::{is_shared, By, Rank, Seen};
pub use matching::{Match, Protocol};
#[cfg(feature = "cli")]
pub use overrides::Overrides;
#[cfg(feature = "cli")]
pub(crate) use target_spec::{parse_target_spec, parse_weight};
pub(crate) use validate::buffer_size_problem;
#[cfg(feature = "cli")]
pub(crate) use values::parse_workers;
pub use values::{
    format_duration, format_size, parse_address, parse_connection_rate, parse_duration, parse_size,
    ConnectionRate,
};
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
    /// Where the binary serves the admin API, `tcpipe ctl`'s endpoint
    /// (`tcpipe::cli::serve_admin`, feature `cli`; a forwarder serves
    /// nothing by itself); `None` serves nothing. Set at startup: a reload
    /// keeps the running one.
    pub admin: Option<AdminAddress>,
    /// The file whose one line is the bearer token every request to a TCP
    /// [`admin`](Config::admin) address must carry; required with one.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The binary a live upgrade starts (SIGUSR2, `Handle::upgrade`);
    /// `None`: the one this process was started from, as resolved when it
    /// bound (a package upgrade replaces that file with the new version).
    pub upgrade_binary: Option<std::path::PathBuf>,
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
    /// New clients per period from one (real) client address beyond which
    /// one is reset at once; `None`: no limit.
    pub max_connection_rate_per_source: Option<ConnectionRate>,
    /// Bytes a second each pipe reads from its client (`upload-rate`);
    /// `None`: no limit.
    pub upload_rate: Option<usize>,
    /// Bytes a second each pipe reads from its target (`download-rate`).
    pub download_rate: Option<usize>,
    /// Bytes a second all the route's pipes read from their clients
    /// together (`route-upload-rate`), shared evenly by its live pipes.
    pub route_upload_rate: Option<usize>,
    /// Bytes a second all the route's pipes read from their targets.
    pub route_download_rate: Option<usize>,
    /// Bytes a limited direction may read at once after a pause; `None`:
    /// one buffer (`buffer-size`).
    pub rate_burst: Option<usize>,
    /// Whether its pipes move bytes with `splice(2)` instead of copying
    /// them through the ring.
    pub splice: Splice,
    /// Which clients of a listen address it shares with other routes are
    /// its own; empty: it is the address's default route.
    pub matching: Match,
    /// On a shared address, a client that has not sent enough to choose a
    /// route by then goes to the default route (or is reset without one);
    /// `None` waits however long it takes.
    pub inspect_timeout: Option<Duration>,
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
    /// Its share of new clients against the others' (1 by default; 0 takes
    /// no new pipe; at most [`MAX_WEIGHT`]).
    pub weight: u32,
    /// Takes clients only while no primary (non-backup) target can.
    pub backup: bool,
}

/// The largest weight a target may have: enough for any split an operator
/// writes in percent or per mille, small enough that sums never overflow.
pub const MAX_WEIGHT: u32 = 10_000;

impl Target {
    /// A primary target of weight 1, named `name`, at `addr`.
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Target {
        Target {
            name: name.into(),
            addr,
            weight: 1,
            backup: false,
        }
    }

    /// The same target with weight `weight`.
    pub fn weight(mut self, weight: u32) -> Target {
        self.weight = weight;
        self
    }

    /// The same target as a backup.
    pub fn backup(mut self) -> Target {
        self.backup = true;
        self
    }

    /// How summaries list it: its name, then `weight N` when not 1 and
    /// `backup` when it is one.
    pub(crate) fn describe(&self) -> String {
        let mut text = self.name.clone();
        if self.weight != 1 {
            text.push_str(&format!(" weight {}", self.weight));
        }
        if self.backup {
            text.push_str(" backup");
        }
        text
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target::new(addr.to_string(), addr)
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

/// How long a client of a shared address may take to say enough to
/// choose its route.
pub const DEFAULT_INSPECT_TIMEOUT: Duration = Duration::from_secs(5);

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
            max_connection_rate_per_source: None,
            upload_rate: None,
            download_rate: None,
            route_upload_rate: None,
            route_download_rate: None,
            rate_burst: None,
            splice: Splice::Auto,
            matching: Match::default(),
            inspect_timeout: Some(DEFAULT_INSPECT_TIMEOUT),
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
            admin: None,
            admin_token_file: None,
            upgrade_binary: None,
        }
    }

    /// The route named `name`.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.name == name)
    }
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
