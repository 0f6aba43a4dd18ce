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
/// binary: `k` and `KiB` are 1024. `kb`, `mb` and `gb` are refused: some
/// read them as powers of 1000, and a size should not depend on who reads it.
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
    if unit.starts_with('.') {
        return Err("whole numbers only, as in 1536k for 1.5m".into());
    }
    let multiplier: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" | "mb" | "gb" => {
            let binary = &unit[..1];
            return Err(format!(
                "ambiguous unit '{unit}': write {digits}{} or {digits}{}iB (sizes are binary)",
                binary.to_ascii_lowercase(),
                binary.to_ascii_uppercase()
            ));
        }
        _ => return Err(format!("unknown unit '{unit}' (use k, m or g)")),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "too large".into())
}

/// A number of connections per period, as `max-connection-rate-per-source`
/// takes it: `"20/s"`, `"100/10s"`, `"300/m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionRate {
    /// Connections allowed per `per`, and at once.
    pub count: u32,
    /// The period `count` is per.
    pub per: Duration,
}

impl std::fmt::Display for ConnectionRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.per == Duration::from_secs(1) {
            write!(f, "{}/s", self.count)
        } else {
            write!(f, "{}/{}", self.count, format_duration(Some(self.per)))
        }
    }
}

/// Parses `N/DURATION` (`20/s`, `100/10s`, `5/1m`): a whole number of
/// connections, at least 1, per a duration as [`parse_duration`] takes it,
/// whose amount may be left out when it is 1 (`/s`, `/m`).
pub fn parse_connection_rate(text: &str) -> Result<ConnectionRate, String> {
    const EXAMPLE: &str = "expected connections per duration such as 20/s or 100/10s";
    let Some((count, per)) = text.trim().split_once('/') else {
        return Err(EXAMPLE.into());
    };
    let count = count.trim();
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EXAMPLE.into());
    }
    let count: u32 = count.parse().map_err(|_| "too many".to_string())?;
    if count == 0 {
        return Err("must be at least 1 connection (leave the key out for no limit)".into());
    }
    let per = per.trim();
    let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
        per.to_string()
    } else {
        format!("1{per}")
    };
    match parse_duration(&per)? {
        Some(per) => Ok(ConnectionRate { count, per }),
        None => Err("the period must be longer than 0".into()),
    }
}

/// Duration units, largest first, in milliseconds: the resolution of every
/// timer tcpipe keeps.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

const DURATION_EXAMPLE: &str = "expected a duration such as 500ms, 1.5s, 2m, 1h or 1d (0 = off)";

/// Parses a duration such as `500ms`, `1.5s`, `2m`, `1h` or `1d`: a whole
/// or decimal amount and one unit, as HAProxy takes them. `0` means off and
/// gives `None`. The amount must come to whole milliseconds.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(None);
    }
    if trimmed.starts_with('-') {
        return Err("must not be negative".into());
    }
    let number_end = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && !number.contains('.') {
        return Err(DURATION_EXAMPLE.into());
    }
    if number.contains('.') && (whole.is_empty() || fraction.is_empty() || fraction.contains('.')) {
        return Err("a decimal needs digits on both sides of one '.', as in 1.5s".into());
    }
    let Some(&(_, unit_ms)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(unit_problem(unit));
    };
    // Trailing zeros add no precision; what remains must fit a u64 to be
    // scaled at all.
    let fraction = fraction.trim_end_matches('0');
    let too_fine = || "finer than a millisecond, which is as fine as tcpipe times".to_string();
    if fraction.len() > 19 {
        return Err(too_fine());
    }
    let scale = 10u128.pow(fraction.len() as u32);
    let fraction_ms = match fraction {
        "" => 0,
        digits => {
            let numerator = digits.parse::<u128>().map_err(|_| too_fine())? * u128::from(unit_ms);
            if numerator % scale != 0 {
                return Err(too_fine());
            }
            numerator / scale
        }
    };
    let millis = whole
        .parse::<u128>()
        .ok()
        .and_then(|n| n.checked_mul(u128::from(unit_ms)))
        .and_then(|n| n.checked_add(fraction_ms))
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| "too large".to_string())?;
    Ok((millis > 0).then(|| Duration::from_millis(millis)))
}

/// Why a duration's unit is not one: missing, compound, or unknown.
fn unit_problem(unit: &str) -> String {
    if unit.is_empty() {
        return "missing unit (ms, s, m, h or d)".into();
    }
    let compound = DURATION_UNITS.iter().any(|(name, _)| {
        unit.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    if compound {
        return format!("one unit only ('{unit}'): write 1h30m as 90m or 1.5h");
    }
    format!("unknown unit '{unit}' (use ms, s, m, h or d)")
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
/// off, else whole numbers of the largest unit that divides it. What is
/// finer than a millisecond (only the library can set that) is rounded up,
/// so that a set duration never reads as off.
pub fn format_duration(duration: Option<Duration>) -> String {
    let Some(duration) = duration.filter(|d| !d.is_zero()) else {
        return "0".into();
    };
    let nanos = duration.as_nanos();
    let millis = nanos / 1_000_000 + u128::from(nanos % 1_000_000 != 0);
    let (unit, unit_ms) = DURATION_UNITS
        .iter()
        .find(|(_, unit_ms)| millis % u128::from(*unit_ms) == 0)
        .copied()
        .unwrap_or(("ms", 1));
    format!("{}{unit}", millis / u128::from(unit_ms))
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
    fn sizes_refuse_decimal_units_and_decimals() {
        assert_eq!(
            parse_size("64kb"),
            Err("ambiguous unit 'kb': write 64k or 64KiB (sizes are binary)".into())
        );
        assert_eq!(
            parse_size("2MB"),
            Err("ambiguous unit 'MB': write 2m or 2MiB (sizes are binary)".into())
        );
        assert!(parse_size("1Gb")
            .unwrap_err()
            .contains("ambiguous unit 'Gb'"));
        assert!(parse_size("1.5m")
            .unwrap_err()
            .contains("whole numbers only"));
    }

    #[test]
    fn durations_need_a_unit_and_zero_means_off() {
        let ms = |n: u64| Ok(Some(Duration::from_millis(n)));
        assert_eq!(parse_duration("0"), Ok(None));
        assert_eq!(parse_duration("500ms"), ms(500));
        assert_eq!(parse_duration("5s"), ms(5000));
        assert_eq!(parse_duration("2m"), ms(120_000));
        assert_eq!(parse_duration("1h"), ms(3_600_000));
        assert_eq!(parse_duration("1d"), ms(86_400_000));
        assert_eq!(parse_duration("0s"), Ok(None));
        assert_eq!(parse_duration("0.0s"), Ok(None));
        assert_eq!(
            parse_duration("5"),
            Err("missing unit (ms, s, m, h or d)".into())
        );
        assert!(parse_duration("5w")
            .unwrap_err()
            .contains("unknown unit 'w'"));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn durations_take_decimals_down_to_a_millisecond() {
        let ms = |n: u64| Ok(Some(Duration::from_millis(n)));
        assert_eq!(parse_duration("1.5s"), ms(1500));
        assert_eq!(parse_duration("0.5m"), ms(30_000));
        assert_eq!(parse_duration("1.25h"), ms(4_500_000));
        assert_eq!(parse_duration("0.001s"), ms(1));
        assert_eq!(parse_duration("1.50000000000000000000000s"), ms(1500));
        assert_eq!(parse_duration("0.00001d"), ms(864));
        for fine in ["1.5ms", "0.0001s", "1.0000001d"] {
            let reason = parse_duration(fine).unwrap_err();
            assert!(
                reason.contains("finer than a millisecond"),
                "{fine}: {reason}"
            );
        }
        for malformed in ["1.s", ".5s", "1..5s", "1.2.3s"] {
            let reason = parse_duration(malformed).unwrap_err();
            assert!(
                reason.contains("digits on both sides"),
                "{malformed}: {reason}"
            );
        }
        assert!(parse_duration("1e3s")
            .unwrap_err()
            .contains("unknown unit 'e3s'"));
        assert!(parse_duration("NaN").is_err());
        assert!(parse_duration("1h30m")
            .unwrap_err()
            .contains("one unit only"));
        assert_eq!(parse_duration("213503982335d"), Err("too large".into()));
        assert_eq!(parse_duration("-1.5s"), Err("must not be negative".into()));
    }

    #[test]
    fn sizes_and_durations_format_as_they_parse() {
        for size in [0, 1, 1000, 1024, 65536, 1 << 20, 3 << 30, 1536] {
            assert_eq!(parse_size(&format_size(size)), Ok(size));
        }
        for text in ["0", "1ms", "1500ms", "5s", "90s", "2m", "1h", "25h", "2d"] {
            let parsed = parse_duration(text).expect("valid");
            assert_eq!(format_duration(parsed), text);
        }
        assert_eq!(format_duration(Some(Duration::from_micros(1))), "1ms");
        assert_eq!(format_duration(Some(Duration::from_micros(1500))), "2ms");
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
