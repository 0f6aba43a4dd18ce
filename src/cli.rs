//! The command line: flags, their defaults, and usage errors as one line.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Parser, ValueEnum};

use crate::config::{self, parse_duration, parse_size, Balance, Config, Target};

/// A duration flag where `0` means off.
#[derive(Clone, Copy, Debug)]
struct Timeout(Option<Duration>);

fn timeout(text: &str) -> Result<Timeout, String> {
    parse_duration(text).map(Timeout)
}

/// `host:port` or `[v6]:port`; a host name is resolved now, once.
fn address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err("expected host:port or [v6]:port".into());
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| "the name resolves to no address".into()),
        Err(e) => Err(format!("cannot resolve: {e}")),
    }
}

fn target(text: &str) -> Result<Target, String> {
    address(text).map(|addr| Target {
        name: text.to_string(),
        addr,
    })
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

#[derive(Parser, Debug)]
#[command(
    name = "tcpipe",
    version,
    about = "Forwards TCP connections to a target, with exact half-close and bounded buffers."
)]
struct Args {
    /// Address to accept clients on, e.g. 0.0.0.0:7000.
    #[arg(short, long, value_name = "ADDR", value_parser = address)]
    listen: SocketAddr,

    /// Address to forward clients to, e.g. 127.0.0.1:6379; repeat for
    /// several targets. Host names are resolved at startup.
    #[arg(short, long = "target", value_name = "ADDR", value_parser = target, required = true)]
    targets: Vec<Target>,

    /// How a client's target is chosen.
    #[arg(long, value_name = "MODE", value_enum, default_value = "round-robin")]
    balance: BalanceArg,

    /// Further targets to try when a connect fails [default: number of
    /// targets - 1].
    #[arg(long, value_name = "N")]
    retries: Option<usize>,

    /// Consecutive connect failures that mark a target down.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_FAIL_THRESHOLD)]
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
    #[arg(long, value_name = "N", default_value_t = 0)]
    pool: usize,

    /// Replace a pooled connection after it has been idle this long.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = timeout)]
    pool_max_idle: Timeout,

    /// Re-resolve target host names this often, off the event loop (0 =
    /// never).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = timeout)]
    resolve_interval: Timeout,

    /// Ring size per direction: the high-water mark at which reading the
    /// source pauses (16k, 1m, ...).
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
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// On SIGTERM/SIGINT, how long live pipes may run before they are reset.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = timeout)]
    drain_timeout: Timeout,
}

/// The command line could not give a config: print `message` and exit with
/// `code` (0 for --help and --version, which go to stdout).
#[derive(Debug)]
pub struct CliExit {
    pub code: u8,
    pub message: String,
}

impl CliExit {
    pub fn print(&self) {
        if self.code == 0 {
            print!("{}", self.message);
        } else {
            eprintln!("{}", self.message);
        }
    }
}

/// Parses the command line (program name first) into a validated config.
pub fn parse<I, T>(args: I) -> Result<Config, CliExit>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = Args::try_parse_from(args).map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => CliExit {
            code: 0,
            message: e.render().to_string(),
        },
        _ => CliExit {
            code: 2,
            message: format!("tcpipe: {}", one_line(&e.render().to_string())),
        },
    })?;
    let mut config = Config::new(args.listen, args.targets[0].addr);
    config.targets = args.targets;
    config.balance = args.balance.into();
    config.retries = args.retries;
    config.fail_threshold = args.fail_threshold;
    config.cooldown = args.cooldown.0;
    config.health_interval = args.health_interval.0;
    config.pool = args.pool;
    config.pool_max_idle = args.pool_max_idle.0.unwrap_or(Duration::ZERO);
    config.resolve_interval = args.resolve_interval.0;
    config.buffer_size = args.buffer_size;
    config.low_water = args.low_water.unwrap_or(args.buffer_size / 2);
    config.connect_timeout = args.connect_timeout.0;
    config.idle_timeout = args.idle_timeout.0;
    config.half_close_timeout = args.half_close_timeout.0;
    config.keepalive = args.keepalive.0;
    config.max_connections = args.max_connections;
    config.drain_timeout = args.drain_timeout.0.unwrap_or(Duration::ZERO);
    config.validate().map_err(|e| CliExit {
        code: 2,
        message: format!("tcpipe: {e}"),
    })?;
    Ok(config)
}

/// clap's message on one line: its first line, plus the indented list that
/// follows a line ending in ':' (the missing flags), without tips or usage.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or_default();
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if message.ends_with(':') {
        let items: Vec<&str> = lines
            .take_while(|line| line.starts_with(' '))
            .map(str::trim)
            .collect();
        message = format!("{} {}", message, items.join(", "));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_line(args: &[&str]) -> Result<Config, CliExit> {
        parse(std::iter::once("tcpipe").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_follow_the_buffer_size() {
        let config = parse_line(&[
            "-l",
            "127.0.0.1:0",
            "-t",
            "127.0.0.1:1",
            "--buffer-size",
            "16k",
        ])
        .expect("valid flags");
        assert_eq!(config.buffer_size, 16 * 1024);
        assert_eq!(config.low_water, 8 * 1024);
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn a_missing_flag_is_named_on_one_line() {
        let exit = parse_line(&["-l", "127.0.0.1:0"]).unwrap_err();
        assert_eq!(exit.code, 2);
        assert!(!exit.message.contains('\n'), "{}", exit.message);
        assert!(exit.message.contains("--target"), "{}", exit.message);
    }

    #[test]
    fn a_bad_duration_names_flag_value_and_reason() {
        let exit = parse_line(&[
            "-l",
            "127.0.0.1:0",
            "-t",
            "127.0.0.1:1",
            "--idle-timeout",
            "5",
        ])
        .unwrap_err();
        assert_eq!(exit.code, 2);
        assert!(exit.message.contains("--idle-timeout"), "{}", exit.message);
        assert!(exit.message.contains("'5'"), "{}", exit.message);
        assert!(exit.message.contains("missing unit"), "{}", exit.message);
    }
}
