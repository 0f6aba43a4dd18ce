//! The pieces records are made of, on the wire: socket addresses, target
//! names, optional durations and rates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use crate::wire::{Reader, WireError, Writer};

/// A target as another process finds it: its route's name, its name as
/// configured, and which of that name it is in the route (a name may be
/// listed more than once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetName {
    pub(crate) route: String,
    pub(crate) name: String,
    pub(crate) nth: u32,
}

impl TargetName {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.str(&self.route).str(&self.name).u32(self.nth);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<TargetName, WireError> {
        Ok(TargetName {
            route: r.str()?.to_string(),
            name: r.str()?.to_string(),
            nth: r.u32()?,
        })
    }
}

/// Family byte (4 or 6), address, port; an IPv6 address with its flow
/// info and scope id.
pub(crate) fn write_addr(w: &mut Writer, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            w.u8(4).u32(u32::from(*v4.ip())).u16(v4.port());
        }
        SocketAddr::V6(v6) => {
            let bits = u128::from(*v6.ip());
            w.u8(6)
                .u64((bits >> 64) as u64)
                .u64(bits as u64)
                .u16(v6.port())
                .u32(v6.flowinfo())
                .u32(v6.scope_id());
        }
    }
}

pub(crate) fn read_addr(r: &mut Reader<'_>) -> Result<SocketAddr, WireError> {
    match r.u8()? {
        4 => {
            let ip = Ipv4Addr::from(r.u32()?);
            Ok(SocketAddr::new(IpAddr::V4(ip), r.u16()?))
        }
        6 => {
            let high = u128::from(r.u64()?);
            let low = u128::from(r.u64()?);
            let ip = Ipv6Addr::from((high << 64) | low);
            let port = r.u16()?;
            let flowinfo = r.u32()?;
            let scope = r.u32()?;
            Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, flowinfo, scope)))
        }
        _ => Err(WireError::Invalid("address family")),
    }
}

pub(crate) fn write_opt_duration(w: &mut Writer, value: Option<Duration>) {
    w.option(value, |w, d| {
        w.duration(d);
    });
}

pub(crate) fn read_opt_duration(r: &mut Reader<'_>) -> Result<Option<Duration>, WireError> {
    r.option(|r| r.duration())
}

pub(crate) fn write_opt_u64(w: &mut Writer, value: Option<u64>) {
    w.option(value, |w, v| {
        w.u64(v);
    });
}

pub(crate) fn read_opt_u64(r: &mut Reader<'_>) -> Result<Option<u64>, WireError> {
    r.option(|r| r.u64())
}

pub(crate) fn write_opt_str(w: &mut Writer, value: Option<&str>) {
    w.option(value, |w, s| {
        w.str(s);
    });
}

pub(crate) fn read_opt_string(r: &mut Reader<'_>) -> Result<Option<String>, WireError> {
    r.option(|r| r.str().map(str::to_string))
}

/// A count of items that follow, each at least `min_size` bytes: checked
/// against what is left, so a corrupt count cannot make the reader
/// allocate for items the message does not hold.
pub(crate) fn read_count(r: &mut Reader<'_>, min_size: usize) -> Result<usize, WireError> {
    let count = r.u32()? as usize;
    if count.saturating_mul(min_size.max(1)) > r.remaining() {
        return Err(WireError::Truncated);
    }
    Ok(count)
}

pub(crate) fn write_count(w: &mut Writer, count: usize) {
    w.u32(u32::try_from(count).unwrap_or(u32::MAX));
}
