//! Writing the header a target is sent.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::{ProxyVersion, V2_FIXED, V2_SIGNATURE};

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it
/// is: receivers reject mapped addresses in a header (haproxy#2963).
pub(crate) fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// The header that tells a target a client at `src` connected to `dst`.
/// Mapped addresses go as IPv4; if one address is IPv4 and the other IPv6
/// even so, both go as IPv6, the only way one header can carry them.
pub(crate) fn encode(version: ProxyVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = match (unmapped(src), unmapped(dst)) {
        (s @ SocketAddr::V4(_), d @ SocketAddr::V4(_)) => (s, d),
        (s, d) => (as_v6(s), as_v6(d)),
    };
    match version {
        ProxyVersion::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut out = Vec::with_capacity(V2_FIXED + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6_octets(s));
                    out.extend_from_slice(&v6_octets(d));
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

pub(super) fn as_v6(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(v6_of(addr.ip())), addr.port())
}

fn v6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    v6_of(ip).octets()
}
