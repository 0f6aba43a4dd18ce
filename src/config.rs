//! What a forwarder is told to do, validated before anything is bound.
//!
//! The CLI (and, later, a config file) produce a [`Config`]; the reactor only
//! ever sees one that passed [`Config::validate`].

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Settings of one forwarder. Build it with [`Config::new`] and adjust the
/// public fields; every duration of `None` means "off".
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where clients are forwarded; at least one, at most 64.
    pub targets: Vec<Target>,
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
    /// Re-resolve target host names this often.
    pub resolve_interval: Option<Duration>,
    /// Capacity of each direction's ring: the high-water mark.
    pub buffer_size: usize,
    /// Reading resumes once the bytes waiting drain to this many.
    pub low_water: usize,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub half_close_timeout: Option<Duration>,
    /// Idle time before TCP keepalive probes start, on both sides.
    pub keepalive: Option<Duration>,
    /// Live pipes at which accepting pauses.
    pub max_connections: usize,
    /// How long live pipes may run on after a shutdown request.
    pub drain_timeout: Duration,
}

/// One target: the name it was given as (`host:port`), and the address
/// that name resolves to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
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

pub const DEFAULT_BUFFER_SIZE: usize = 64 * 1024;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_HALF_CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_FAIL_THRESHOLD: u32 = 3;
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
pub const DEFAULT_POOL_MAX_IDLE: Duration = Duration::from_secs(30);
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// Targets are tracked per pipe in a 64-bit set of those already tried.
pub const MAX_TARGETS: usize = 64;

/// Largest ring accepted; beyond this a single pipe could pin a gigabyte.
pub const MAX_BUFFER_SIZE: usize = 1 << 30;

impl Config {
    /// One listener forwarding to one target; add targets to `targets`.
    pub fn new(listen: SocketAddr, target: SocketAddr) -> Config {
        Config {
            listen,
            targets: vec![Target::from(target)],
            balance: Balance::RoundRobin,
            retries: None,
            fail_threshold: DEFAULT_FAIL_THRESHOLD,
            cooldown: Some(DEFAULT_COOLDOWN),
            health_interval: None,
            pool: 0,
            pool_max_idle: DEFAULT_POOL_MAX_IDLE,
            resolve_interval: Some(DEFAULT_RESOLVE_INTERVAL),
            buffer_size: DEFAULT_BUFFER_SIZE,
            low_water: DEFAULT_BUFFER_SIZE / 2,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            idle_timeout: None,
            half_close_timeout: Some(DEFAULT_HALF_CLOSE_TIMEOUT),
            keepalive: Some(DEFAULT_KEEPALIVE),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }

    /// Further targets tried after a failed connect.
    pub fn effective_retries(&self) -> usize {
        self.retries.unwrap_or(self.targets.len().saturating_sub(1))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.targets.is_empty() || self.targets.len() > MAX_TARGETS {
            return Err(ConfigError::new(
                "--target",
                self.targets.len().to_string(),
                format!("give between 1 and {MAX_TARGETS} targets"),
            ));
        }
        if self.fail_threshold == 0 {
            return Err(ConfigError::new(
                "--fail-threshold",
                "0",
                "must be at least 1",
            ));
        }
        if self.pool > 0 && self.pool_max_idle.is_zero() {
            return Err(ConfigError::new(
                "--pool-max-idle",
                "0",
                "must be positive when --pool is set",
            ));
        }
        if self.buffer_size == 0 || self.buffer_size > MAX_BUFFER_SIZE {
            return Err(ConfigError::new(
                "--buffer-size",
                format_size(self.buffer_size),
                "must be between 1 byte and 1g",
            ));
        }
        if self.low_water >= self.buffer_size {
            return Err(ConfigError::new(
                "--low-water",
                format_size(self.low_water),
                format!(
                    "must be below --buffer-size ({})",
                    format_size(self.buffer_size)
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                "--max-connections",
                "0",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A setting that cannot be used: which one, its value, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
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

/// Parses a byte size such as `65536`, `16k`, `16KiB` or `1m`. Units are
/// binary: `k` is 1024.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a size such as 65536, 16k or 1m".into());
    }
    let multiplier: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown unit '{unit}' (use k, m or g)")),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "too large".into())
}

/// Parses a duration such as `500ms`, `5s`, `2m` or `1h`. `0` means off and
/// gives `None`.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(None);
    }
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    let amount: u64 = digits
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 5s, 2m or 1h (0 = off)".to_string())?;
    let duration = match unit {
        "ms" => Duration::from_millis(amount),
        "s" => Duration::from_secs(amount),
        "m" => Duration::from_secs(amount.saturating_mul(60)),
        "h" => Duration::from_secs(amount.saturating_mul(3600)),
        "" => return Err("missing unit (ms, s, m or h)".into()),
        _ => return Err(format!("unknown unit '{unit}' (use ms, s, m or h)")),
    };
    Ok(if duration.is_zero() {
        None
    } else {
        Some(duration)
    })
}

/// Renders a byte count the way [`parse_size`] reads it.
pub fn format_size(bytes: usize) -> String {
    match bytes {
        0 => "0".into(),
        b if b % (1 << 30) == 0 => format!("{}g", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}m", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}k", b >> 10),
        b => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("16k"), Ok(16 * 1024));
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("k").is_err());
        assert!(parse_size("12q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
    }

    #[test]
    fn durations_need_a_unit_and_zero_means_off() {
        assert_eq!(parse_duration("0"), Ok(None));
        assert_eq!(
            parse_duration("500ms"),
            Ok(Some(Duration::from_millis(500)))
        );
        assert_eq!(parse_duration("5s"), Ok(Some(Duration::from_secs(5))));
        assert_eq!(parse_duration("2m"), Ok(Some(Duration::from_secs(120))));
        assert_eq!(parse_duration("1h"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(parse_duration("0s"), Ok(None));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes_format_as_they_parse() {
        for size in [0, 1, 1000, 1024, 65536, 1 << 20, 3 << 30, 1536] {
            assert_eq!(parse_size(&format_size(size)), Ok(size));
        }
    }

    #[test]
    fn low_water_must_be_below_buffer_size() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let mut config = Config::new(addr, addr);
        config.low_water = config.buffer_size;
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "--low-water");
        assert_eq!(
            err.to_string(),
            "invalid value '64k' for '--low-water': must be below --buffer-size (64k)"
        );
    }
}
