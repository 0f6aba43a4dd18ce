//! The text forms of settings, shared by the command line and the config
//! file: sizes, durations and addresses.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// `auto` (one per CPU the process may run on) or a whole number, as
/// `--workers` and `global.workers` take it; the range is checked by
/// [`Config::validate`](crate::Config::validate).
pub(crate) fn parse_workers(text: &str) -> Result<usize, String> {
    if text == "auto" {
        return Ok(std::thread::available_parallelism().map_or(1, |n| n.get()));
    }
    if text.starts_with('-') {
        return Err("must not be negative".into());
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number such as 2, or auto".into());
    }
    text.parse().map_err(|_| "too large".into())
}

/// Parses a byte size such as `65536`, `16k`, `16KiB` or `1m`. Units are
/// binary: `k` is 1024.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err("must not be negative".into());
    }
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
    if trimmed.starts_with('-') {
        return Err("must not be negative".into());
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

/// Renders a duration setting the way [`parse_duration`] reads it: `0` for
/// off, else the largest unit that divides it.
pub fn format_duration(duration: Option<Duration>) -> String {
    let Some(duration) = duration.filter(|d| !d.is_zero()) else {
        return "0".into();
    };
    let millis = duration.as_millis();
    match millis {
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1000 == 0 => format!("{}s", m / 1000),
        m => format!("{m}ms"),
    }
}

/// `host:port`, `[v6]:port` or `:port` (every IPv4 address, as HAProxy's
/// `bind :7000`). A host name is resolved now, once; the first address it
/// gives is used. A host that looks like an IPv4 address must be one:
/// the resolver would read `1.2.3` as 1.2.0.3, another address than meant.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if text.is_empty() {
        return Err("empty; expected host:port or [v6]:port".into());
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err("no port; expected host:port or [v6]:port".into());
    };
    let port = parse_port(port)?;
    if host.is_empty() {
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(ip)) => Ok(SocketAddr::from((ip, port))),
            _ => Err(format!("'{host}' is not an IPv6 address")),
        };
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, as in [::1]:80".into());
    }
    if looks_numeric(host) {
        return host
            .parse::<Ipv4Addr>()
            .map(|ip| SocketAddr::from((ip, port)))
            .map_err(|_| format!("'{host}' is not an IPv4 address (four numbers 0-255)"));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("'{host}' resolves to no address")),
        Err(e) => Err(format!("cannot resolve '{host}': {e}")),
    }
}

/// A port as digits only: `u16::from_str` would also take `+80`.
fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("no port after ':'; expected host:port".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{text}' is not a number"));
    }
    text.parse()
        .map_err(|_| format!("port {text} is out of range (0-65535)"))
}

/// Whether a host is meant as an IPv4 literal: no top-level domain is all
/// digits (RFC 3696), so a last label of digits (or hex, as `0x7f`) means
/// an address, which `inet_aton` would complete in ways nobody means.
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
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
    fn sizes_and_durations_format_as_they_parse() {
        for size in [0, 1, 1000, 1024, 65536, 1 << 20, 3 << 30, 1536] {
            assert_eq!(parse_size(&format_size(size)), Ok(size));
        }
        for text in ["0", "1ms", "1500ms", "5s", "90s", "2m", "1h", "25h"] {
            let parsed = parse_duration(text).expect("valid");
            assert_eq!(format_duration(parsed), text);
        }
    }

    #[test]
    fn an_address_is_a_literal_or_a_resolvable_name() {
        assert_eq!(
            parse_address("127.0.0.1:80"),
            Ok("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(parse_address("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert!(parse_address("localhost:80").is_ok());
        assert!(parse_address("nonsense").is_err());
        assert!(parse_address("127.0.0.1:99999").is_err());
    }

    #[test]
    fn a_malformed_address_is_never_resolved_into_another() {
        assert_eq!(parse_address(":7000"), Ok("0.0.0.0:7000".parse().unwrap()));
        assert_eq!(parse_address("[::]:7000"), Ok("[::]:7000".parse().unwrap()));
        for bad in [
            "",
            "1.2.3:80",
            "1.2.3.4.5:80",
            "256.1.1.1:80",
            "127.1:80",
            "0x7f.1:80",
            "2130706433:80",
            "localhost",
            "localhost:",
            "localhost:+80",
            "localhost:99999",
            "::1:80",
            "[::1:80",
            "[nonsense]:80",
            ":",
        ] {
            assert!(parse_address(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
