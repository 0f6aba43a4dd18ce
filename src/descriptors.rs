//! File descriptors: raising the soft limit to the hard one, and the
//! limit in force (what a config needs of it is `config::descriptor_budget`).

use std::io;

use crate::sys;

/// Where a ceiling of `RLIM_INFINITY` is capped by the kernel
/// (`fs.nr_open`'s default) when it cannot be read.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// The soft descriptor limit before and after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit the process started with.
    pub was: u64,
    /// The soft limit now in force: the hard limit, unless it was already.
    pub now: u64,
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, as the
/// `tcpipe` binary does at startup (HAProxy and nginx's
/// `worker_rlimit_nofile` do the like): the soft limit is often 1024, far
/// below what `max-connections` needs. A library forwarder leaves the
/// process's limits to its embedder, who may call this before
/// [`Forwarder::bind`](crate::Forwarder::bind).
pub fn raise_fd_limit() -> io::Result<FdLimit> {
    let (soft, hard) = sys::nofile_limit()?;
    let ceiling = if hard == libc::RLIM_INFINITY {
        // No process may have more than fs.nr_open; asking for more is EPERM.
        nr_open().unwrap_or(NR_OPEN_DEFAULT)
    } else {
        hard
    };
    if soft != libc::RLIM_INFINITY && soft < ceiling {
        sys::set_nofile_soft(ceiling, hard)?;
        return Ok(FdLimit {
            was: soft,
            now: ceiling,
        });
    }
    Ok(FdLimit {
        was: soft,
        now: soft,
    })
}

fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The soft descriptor limit in force; `None` if unknown or unlimited.
pub(crate) fn current_limit() -> Option<u64> {
    let (soft, _) = sys::nofile_limit().ok()?;
    (soft != libc::RLIM_INFINITY).then_some(soft)
}
