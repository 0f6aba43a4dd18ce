//! The command line: flags, their defaults, and usage errors as one line.

mod client;
pub mod ctl;
mod exit;
mod table;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::acl::Cidr;
use crate::config::{
    self, load_file_with, parse_address, parse_connection_rate, parse_duration, parse_size,
    AccessLogConfig, AdminAddress, Balance, Config, ConnectionRate, LogDestination, LogFormat,
    Naming, Overrides, Splice, Target, DEFAULT_ROUTE_NAME,
};
use crate::proxy_protocol::ProxyVersion;

pub use crate::admin::{serve_admin, AdminServer};
use exit::usage_line;
pub use exit::CliExit;

/// A duration flag where `0` means off.
#[derive(Clone, Copy, Debug)]
struct Timeout(Option<Duration>);

fn timeout(text: &str) -> Result<Timeout, String> {
    parse_duration(text).map(Timeout)
}

/// A count flag (`--pool`, `--retries`, ...): digits only, so that `-1`
/// says why it is wrong rather than what `usize` thinks of a `-`.
pub(crate) fn count<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    if text.starts_with('-') {
        return Err("must not be negative".into());
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number such as 3".into());
    }
    text.parse().map_err(|_| "too large".into())
}

/// `tcpipe VERSION (commit abc1234, rustc 1.83.0, x86_64-unknown-linux-gnu)`:
/// what a bug report needs. `src/build.rs` finds the commit and rustc.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TCPIPE_COMMIT"),
    ", ",
    env!("TCPIPE_RUSTC"),
    ", ",
    env!("TCPIPE_TARGET"),
    ")"
);

fn target(text: &str) -> Result<Target, String> {
    let spec = config::parse_target_spec(text)?;
    let addr = parse_address(spec.address)?;
    let mut target = Target::new(spec.address, addr).weight(spec.weight);
    target.backup = spec.backup;
    Ok(target)
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BalanceArg {
    RoundRobin,
    LeastConn,
    SourceHash,
}

impl From<BalanceArg> for Balance {
    fn from(arg: BalanceArg) -> Balance {
        match arg {
            BalanceArg::RoundRobin => Balance::RoundRobin,
            BalanceArg::LeastConn => Balance::LeastConn,
            BalanceArg::SourceHash => Balance::SourceHash,
        }
    }
}

/// The flags of the one route the command line describes: `--config`
/// replaces them all, since the file's routes have their own.
const ROUTE_FLAGS: [&str; 28] = [
    "listen",
    "targets",
    "balance",
    "retries",
    "fail_threshold",
    "cooldown",
    "health_interval",
    "pool",
    "pool_max_idle",
    "buffer_size",
    "low_water",
    "connect_timeout",
    "idle_timeout",
    "half_close_timeout",
    "keepalive",
    "splice",
    "send_proxy",
    "accept_proxy",
    "proxy_timeout",
    "allow",
    "deny",
    "max_connections_per_source",
    "max_connection_rate_per_source",
    "upload_rate",
    "download_rate",
    "route_upload_rate",
    "route_download_rate",
    "rate_burst",
];

/// The flags that set what a file's `[global]` holds: with `--config`
/// they win over it ([`Args::overrides`]).
#[cfg(test)]
const GLOBAL_FLAGS: [&str; 11] = [
    "max_connections",
    "drain_timeout",
    "resolve_interval",
    "metrics",
    "access_log",
    "log_format",
    "access_log_opens",
    "workers",
    "admin",
    "admin_token_file",
    "upgrade_binary",
];

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProxyVersionArg {
    V1,
    V2,
}

impl From<ProxyVersionArg> for ProxyVersion {
    fn from(arg: ProxyVersionArg) -> ProxyVersion {
        match arg {
            ProxyVersionArg::V1 => ProxyVersion::V1,
            ProxyVersionArg::V2 => ProxyVersion::V2,
        }
    }
}

fn cidr(text: &str) -> Result<Cidr, String> {
    text.parse()
}

#[derive(Parser, Debug)]
#[command(
    name = "tcpipe",
    version = VERSION,
    about = "Forwards TCP connections to targets, with exact half-close and bounded buffers.",
    after_help = "A running tcpipe is operated with `tcpipe ctl` (see `tcpipe ctl --help`) through --admin."
)]
struct Args {
    /// Read routes and settings from this TOML file (SIGHUP reloads it)
    /// instead of the route flags; process-wide flags (--workers,
    /// --metrics, --max-connections, ...) still apply, over its [global].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Validate the settings (and resolve every name), print a summary and
    /// exit: 0 if they can run, 2 if not. Nothing is bound.
    #[arg(long)]
    check: bool,

    /// Address to accept clients on, e.g. 0.0.0.0:7000.
    #[arg(
        short,
        long,
        value_name = "ADDR",
        value_parser = parse_address,
        required_unless_present = "config"
    )]
    listen: Option<SocketAddr>,

    /// Address to forward clients to, e.g. 127.0.0.1:6379; repeat for
    /// several targets. Host names are resolved at startup. Options after
    /// commas: weight=N (its share of clients against the others'; default
    /// 1, 0 = none) and backup (takes clients only while no other target
    /// can), as in 10.0.0.2:80,weight=3 or 10.0.0.9:80,backup.
    #[arg(
        short,
        long = "target",
        value_name = "ADDR[,weight=N][,backup]",
        value_parser = target,
        required_unless_present = "config"
    )]
    targets: Vec<Target>,

    /// How a client's target is chosen.
    #[arg(long, value_name = "MODE", value_enum, default_value = "round-robin")]
    balance: BalanceArg,

    /// Further targets to try when a connect fails [default: number of
    /// targets - 1].
    #[arg(long, value_name = "N", value_parser = count::<usize>)]
    retries: Option<usize>,

    /// Consecutive connect failures that mark a target down.
    #[arg(
        long,
        value_name = "N",
        default_value_t = config::DEFAULT_FAIL_THRESHOLD,
        value_parser = count::<u32>
    )]
    fail_threshold: u32,

    /// How long a down target waits before one trial connection; doubles
    /// after each failed trial, up to 60s (0 = never mark targets down).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = timeout)]
    cooldown: Timeout,

    /// Probe each target with a TCP connect this often (0 = off).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = timeout)]
    health_interval: Timeout,

    /// Connected idle upstream connections kept ready per target; each
    /// serves exactly one client.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = count::<usize>)]
    pool: usize,

    /// Replace a pooled connection after it has been idle this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = timeout)]
    pool_max_idle: Timeout,

    /// Re-resolve target host names this often, off the event loop (0 =
    /// never).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = timeout)]
    resolve_interval: Timeout,

    /// Ring size per direction: the high-water mark at which reading the
    /// source pauses (16k, 1m, ...); a spliced direction's is four times it.
    #[arg(long, value_name = "SIZE", default_value = "64k", value_parser = parse_size)]
    buffer_size: usize,

    /// Reading resumes once buffered bytes drain to this [default: half of
    /// --buffer-size].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    low_water: Option<usize>,

    /// Give up on a target that has not accepted within this (0 = never).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = timeout)]
    connect_timeout: Timeout,

    /// Reset a pipe after this long with no byte in either direction (0 = off).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = timeout)]
    idle_timeout: Timeout,

    /// After one direction has ended, reset the pipe if the other moves no
    /// byte for this long (0 = off).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = timeout)]
    half_close_timeout: Timeout,

    /// TCP keepalive idle time on both sides; probes every quarter of it, 4
    /// probes (0 = off).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = timeout)]
    keepalive: Timeout,

    /// Live pipes at which accepting pauses; new clients wait in the kernel
    /// backlog.
    #[arg(
        long,
        value_name = "N",
        default_value_t = config::DEFAULT_MAX_CONNECTIONS,
        value_parser = count::<usize>
    )]
    max_connections: usize,

    /// Move bytes with splice(2), kernel to kernel: once a direction streams
    /// (auto), from the first byte (always), or never (copy through the ring).
    #[arg(long, value_name = "MODE", value_enum, default_value = "auto")]
    splice: SpliceArg,

    /// On SIGTERM/SIGINT/SIGQUIT/SIGUSR1, how long live pipes may run
    /// before they are reset (0 = wait for them).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = timeout)]
    drain_timeout: Timeout,

    /// Send a PROXY protocol header of this version to the target before
    /// any client byte, with the client's address.
    #[arg(long, value_name = "VERSION", value_enum)]
    send_proxy: Option<ProxyVersionArg>,

    /// Read a PROXY protocol header (v1 or v2) from each client before
    /// connecting; the client's address is the one it names.
    #[arg(long)]
    accept_proxy: bool,

    /// With --accept-proxy, close a client whose header is not complete
    /// within this (0 = wait for it).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = timeout)]
    proxy_timeout: Timeout,

    /// Serve only clients in this address block (10.0.0.0/8, 2001:db8::/32,
    /// or one address); repeat for several.
    #[arg(long, value_name = "CIDR", value_parser = cidr)]
    allow: Vec<Cidr>,

    /// Close clients in this address block at once, whatever --allow says;
    /// repeat for several.
    #[arg(long, value_name = "CIDR", value_parser = cidr)]
    deny: Vec<Cidr>,

    /// Live pipes per client IP beyond which a new client from that IP is
    /// closed at once.
    #[arg(long, value_name = "N", value_parser = count::<usize>)]
    max_connections_per_source: Option<usize>,

    /// New clients per client IP and period beyond which one is closed at
    /// once: 20/s, 100/10s, ...
    #[arg(long, value_name = "N/DURATION", value_parser = parse_connection_rate)]
    max_connection_rate_per_source: Option<ConnectionRate>,

    /// Bytes a second each pipe reads from its client (2m = 2 MiB/s).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    upload_rate: Option<usize>,

    /// Bytes a second each pipe reads from its target.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    download_rate: Option<usize>,

    /// Bytes a second all pipes read from their clients together, shared
    /// evenly by the live pipes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    route_upload_rate: Option<usize>,

    /// Bytes a second all pipes read from their targets together.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    route_download_rate: Option<usize>,

    /// Bytes a rate-limited direction may read at once [default:
    /// --buffer-size].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    rate_burst: Option<usize>,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    metrics: Option<SocketAddr>,

    /// Where the access log (a line per closed pipe) goes: a file, '-' for
    /// stderr at info level, or 'off'.
    #[arg(long, value_name = "FILE|-|off", default_value = "-", value_parser = LogDestination::parse)]
    access_log: LogDestination,

    /// How access-log lines are written.
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    log_format: LogFormatArg,

    /// Log a line when a pipe opens too, not only when it closes.
    #[arg(long)]
    access_log_opens: bool,

    /// Event loops, each on a thread of its own listening on every address
    /// with SO_REUSEPORT; N may be 'auto': one per CPU.
    #[arg(long, value_name = "N", default_value = "1", value_parser = config::parse_workers)]
    workers: usize,

    /// Serve the admin API (what `tcpipe ctl` talks to) here: unix:/PATH
    /// (a socket file, mode 0600) or HOST:PORT (needs --admin-token-file).
    #[arg(long, value_name = "unix:PATH|ADDR", value_parser = AdminAddress::parse)]
    admin: Option<AdminAddress>,

    /// The file whose one line is the bearer token a TCP --admin address
    /// requires of every request.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// The binary SIGUSR2 starts for a live upgrade [default: the one
    /// running, as resolved at startup].
    #[arg(long, value_name = "PATH")]
    upgrade_binary: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SpliceArg {
    Auto,
    Always,
    Never,
}

impl From<SpliceArg> for Splice {
    fn from(arg: SpliceArg) -> Splice {
        match arg {
            SpliceArg::Auto => Splice::Auto,
            SpliceArg::Always => Splice::Always,
            SpliceArg::Never => Splice::Never,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> LogFormat {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub struct Invocation {
    /// Validated, names resolved.
    pub config: Config,
    /// The file the config came from: what SIGHUP reloads.
    pub file: Option<PathBuf>,
    /// `--check`: validate and exit.
    pub check: bool,
    /// With `file`, the process-wide flags given: they win over the file's
    /// `[global]`, and must again at every reload.
    pub overrides: Overrides,
}

/// Parses the command line (program name first): flags into a config of
/// one route named `default`, or `--config FILE` read and validated.
pub fn parse<I, T>(args: I) -> Result<Invocation, CliExit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let clap_exit = |e: clap::Error| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => CliExit {
            code: 0,
            message: e.render().to_string(),
        },
        _ => CliExit::usage(usage_line(&e, &args)),
    };
    let matches = Args::command()
        .try_get_matches_from(&args)
        .map_err(clap_exit)?;
    let mut parsed = Args::from_arg_matches(&matches).map_err(clap_exit)?;
    if let Some(file) = parsed.config.take() {
        if let Some(line) = route_flag_with_config(&matches) {
            return Err(CliExit::usage(line));
        }
        let overrides = parsed.overrides(&matches);
        return Ok(Invocation {
            config: load_file_with(&file, &overrides)?,
            file: Some(file),
            check: parsed.check,
            overrides,
        });
    }
    let check = parsed.check;
    let config = parsed.into_config().map_err(CliExit::usage)?;
    Ok(Invocation {
        config,
        file: None,
        check,
        overrides: Overrides::default(),
    })
}

fn given(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// The first route flag given with `--config`, as the line that says why
/// it cannot be and what to do instead.
fn route_flag_with_config(matches: &ArgMatches) -> Option<String> {
    let first = ROUTE_FLAGS
        .iter()
        .filter(|id| given(matches, id))
        .min_by_key(|id| matches.index_of(id))?;
    let command = Args::command();
    let long = command
        .get_arguments()
        .find(|arg| arg.get_id() == *first)
        .and_then(|arg| arg.get_long())
        .unwrap_or(first);
    // The file's keys are the flags' names, but for the targets.
    let key = if long == "target" { "targets" } else { long };
    Some(if matches!(key, "listen" | "targets") {
        format!(
            "--{long} cannot be combined with --config: routes come from the file \
             (give the route a {key} key there)"
        )
    } else {
        format!(
            "--{long} cannot be combined with --config: route options come from the file \
             (set {key} in [defaults] or a [[route]])"
        )
    })
}

impl Args {
    /// The process-wide flags given on the command line; defaults are not
    /// given, so the file's `[global]` keeps what they would set.
    fn overrides(&self, matches: &ArgMatches) -> Overrides {
        let set = |id: &str| given(matches, id);
        Overrides {
            max_connections: set("max_connections").then_some(self.max_connections),
            drain_timeout: set("drain_timeout").then_some(self.drain_timeout.0),
            resolve_interval: set("resolve_interval").then_some(self.resolve_interval.0),
            metrics: self.metrics.filter(|_| set("metrics")),
            access_log: set("access_log").then(|| self.access_log.clone()),
            log_format: set("log_format").then(|| self.log_format.into()),
            access_log_opens: set("access_log_opens").then_some(self.access_log_opens),
            workers: set("workers").then_some(self.workers),
            admin: self.admin.clone(),
            admin_token_file: self.admin_token_file.clone(),
            upgrade_binary: self.upgrade_binary.clone(),
        }
    }

    fn into_config(self) -> Result<Config, config::ConfigError> {
        // clap requires both without --config.
        let listen = self.listen.unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        let first = self.targets.first().map_or(listen, |t| t.addr);
        let mut config = Config::new(listen, first);
        let route = &mut config.routes[0];
        debug_assert_eq!(route.name, DEFAULT_ROUTE_NAME);
        route.targets = self.targets;
        route.balance = self.balance.into();
        route.retries = self.retries;
        route.fail_threshold = self.fail_threshold;
        route.cooldown = self.cooldown.0;
        route.health_interval = self.health_interval.0;
        route.pool = self.pool;
        route.pool_max_idle = self.pool_max_idle.0.unwrap_or(Duration::ZERO);
        route.buffer_size = self.buffer_size;
        route.low_water = self.low_water.unwrap_or(self.buffer_size / 2);
        route.connect_timeout = self.connect_timeout.0;
        route.idle_timeout = self.idle_timeout.0;
        route.half_close_timeout = self.half_close_timeout.0;
        route.keepalive = self.keepalive.0;
        route.send_proxy = self.send_proxy.map(ProxyVersion::from);
        route.accept_proxy = self.accept_proxy;
        route.proxy_timeout = self.proxy_timeout.0;
        route.allow = self.allow;
        route.deny = self.deny;
        route.max_connections_per_source = self.max_connections_per_source;
        route.max_connection_rate_per_source = self.max_connection_rate_per_source;
        route.upload_rate = self.upload_rate;
        route.download_rate = self.download_rate;
        route.route_upload_rate = self.route_upload_rate;
        route.route_download_rate = self.route_download_rate;
        route.rate_burst = self.rate_burst;
        route.splice = self.splice.into();
        config.max_connections = self.max_connections;
        config.drain_timeout = self.drain_timeout.0;
        config.resolve_interval = self.resolve_interval.0;
        config.metrics = self.metrics;
        config.workers = self.workers;
        config.admin = self.admin;
        config.admin_token_file = self.admin_token_file;
        config.upgrade_binary = self.upgrade_binary;
        config.access_log = AccessLogConfig {
            destination: self.access_log,
            format: self.log_format.into(),
            opens: self.access_log_opens,
        };
        config.validate_as(Naming::Flags)?;
        Ok(config)
    }
}

/// What in the settings will run but probably not as meant, named as the
/// user gave them: flags, or key paths of the file.
pub fn warnings(invocation: &Invocation) -> Vec<String> {
    let naming = if invocation.file.is_some() {
        Naming::File
    } else {
        Naming::Flags
    };
    let warnings = invocation.config.warnings(naming);
    warnings.iter().map(ToString::to_string).collect()
}

/// What `--check` prints for settings that passed: where they came from and
/// what they hold.
pub fn check_summary(invocation: &Invocation) -> String {
    let config = &invocation.config;
    let source = invocation.file.as_ref().map_or_else(
        || "the flags".to_string(),
        |file| file.display().to_string(),
    );
    let count = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    // A shared address is one socket, however many routes list it.
    let routes = &config.routes;
    let listeners = (routes.iter().enumerate())
        .flat_map(|(i, route)| route.listen.iter().map(move |&addr| (i, addr)))
        .filter(|&(i, addr)| {
            !(crate::config::is_shared(routes, addr)
                && routes[..i]
                    .iter()
                    .any(|earlier| earlier.listen.contains(&addr)))
        })
        .count();
    let all_targets = || config.routes.iter().flat_map(|r| &r.targets);
    let mut targets = count(all_targets().count(), "target", "targets");
    let mut kinds = Vec::new();
    let weights = all_targets().map(|t| t.weight);
    if let (Some(least), Some(most)) = (weights.clone().min(), weights.max()) {
        if least == most && least != 1 {
            kinds.push(format!("weight {least}"));
        } else if least != most {
            kinds.push(format!("weights {least} to {most}"));
        }
    }
    let backups = all_targets().filter(|t| t.backup).count();
    if backups > 0 {
        kinds.push(count(backups, "backup", "backups"));
    }
    if !kinds.is_empty() {
        targets.push_str(&format!(" ({})", kinds.join(", ")));
    }
    let mut summary = format!(
        "tcpipe: {source}: ok ({}, {}, {targets}; every name resolved, nothing bound)",
        count(config.routes.len(), "route", "routes"),
        count(listeners, "listen address", "listen addresses"),
    );
    if !invocation.overrides.is_empty() {
        let set = invocation.overrides.describe().join(", ");
        summary.push_str(&format!("; flags over [global]: {set}"));
    }
    summary
}

#[cfg(test)]
mod tests;
