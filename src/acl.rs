//! Source address rules: which clients a route serves, by CIDR.
//!
//! A client is checked by its real address: the one in its PROXY header
//! when the route accepts one, else the socket's peer. An IPv4 client on a
//! dual-stack listener shows up as `::ffff:a.b.c.d`; it is matched as the
//! IPv4 address it is, so `10.0.0.0/8` covers it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`; a bare
/// address is a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, unmapped(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask32(self.prefix) & u32::from(ip) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask128(self.prefix) & u128::from(ip) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("'{address}' is not an IPv4 or IPv6 address"))?;
        // A mapped block would never match: clients are matched unmapped.
        let network = unmapped(network);
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => {
                let plain = !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'));
                plain
                    .then(|| p.parse::<u8>().ok())
                    .flatten()
                    .filter(|&n| n <= bits)
                    .ok_or_else(|| format!("prefix length '{p}' is not 0 to {bits}"))?
            }
        };
        let cidr = Cidr { network, prefix };
        let masked = match network {
            IpAddr::V4(ip) => IpAddr::from((u32::from(ip) & mask32(prefix)).to_be_bytes()),
            IpAddr::V6(ip) => IpAddr::from((u128::from(ip) & mask128(prefix)).to_be_bytes()),
        };
        if masked != network {
            return Err(format!(
                "host bits are set; did you mean {masked}/{prefix}?"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A route's rules: denied if any `deny` block holds the address; else
/// allowed if `allow` is empty or one of its blocks holds it.
pub(crate) fn admits(allow: &[Cidr], deny: &[Cidr], ip: IpAddr) -> bool {
    !deny.iter().any(|block| block.contains(ip))
        && (allow.is_empty() || allow.iter().any(|block| block.contains(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_hold_their_addresses_of_their_family() {
        let ten = cidr("10.0.0.0/8");
        assert!(ten.contains(ip("10.255.0.1")));
        assert!(!ten.contains(ip("11.0.0.0")));
        assert!(
            ten.contains(ip("::ffff:10.1.2.3")),
            "mapped clients match as IPv4"
        );
        assert!(!ten.contains(ip("::a00:1")));
        let doc = cidr("2001:db8::/32");
        assert!(doc.contains(ip("2001:db8:ffff::1")));
        assert!(!doc.contains(ip("2001:db9::")));
        assert!(!doc.contains(ip("10.0.0.1")));
        assert!(cidr("0.0.0.0/0").contains(ip("255.255.255.255")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(cidr("::/0").contains(ip("::1")));
        assert!(cidr("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!cidr("127.0.0.1").contains(ip("127.0.0.2")));
        assert_eq!(cidr("::ffff:10.0.0.0/8"), ten);
    }

    #[test]
    fn bad_blocks_say_why() {
        assert!("10.0.0.1/8"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("10.0.0.0/8"));
        assert!("10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("0 to 32"));
        assert!("::/129".parse::<Cidr>().unwrap_err().contains("0 to 128"));
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/08".parse::<Cidr>().is_err());
        assert!("example.com/8"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("not an IPv4"));
    }

    #[test]
    fn deny_wins_and_an_empty_allow_allows_all() {
        let allow = [cidr("10.0.0.0/8")];
        let deny = [cidr("10.0.0.66")];
        assert!(admits(&[], &[], ip("1.2.3.4")));
        assert!(admits(&allow, &deny, ip("10.0.0.1")));
        assert!(!admits(&allow, &deny, ip("10.0.0.66")));
        assert!(!admits(&allow, &deny, ip("1.2.3.4")));
        assert!(!admits(&[], &deny, ip("10.0.0.66")));
    }
}
