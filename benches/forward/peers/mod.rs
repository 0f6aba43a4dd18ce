//! The contenders: a direct connection, tcpipe, and the forwarders an
//! operator would otherwise pick, each configured as production would run
//! it on one core; how to find them, start them, and stop every process
//! they forked.

mod discover;
mod running;

use std::path::PathBuf;

pub use discover::{discover, find_on_path, Builds};
pub use running::{Running, Workdir};

/// Most pipes any forwarder is configured for.
const MOST_PIPES: u64 = 10_000;

/// What every forwarder may hold, from the descriptor limit it inherits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// RLIMIT_NOFILE of the bench, inherited by the forwarders.
    pub nofile: u64,
    /// Pipes each forwarder is configured to allow: two descriptors each,
    /// with a margin, at most 10,000.
    pub pipes: u64,
}

impl Limits {
    pub fn from_nofile(nofile: u64) -> Limits {
        Limits {
            nofile,
            pipes: (nofile.saturating_sub(100) / 2).min(MOST_PIPES),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Direct,
    Tcpipe,
    /// Another tcpipe binary given with `--baseline`: the same workloads in
    /// the same run, to measure a change before and after.
    Baseline,
    /// tcpipe with `--splice never`: what splicing buys, in the same run.
    TcpipeCopy,
    /// tcpipe with `--workers 2`.
    TcpipeWorkers,
    Haproxy,
    /// HAProxy with `option splice-auto`, as it can be tuned for bulk.
    HaproxySplice,
    Nginx,
    Socat,
    /// The reference article's Go forwarder (`benches/forward/goforward`),
    /// built with `go` when it is installed.
    Go,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Direct,
        Kind::Tcpipe,
        Kind::TcpipeCopy,
        Kind::TcpipeWorkers,
        Kind::Haproxy,
        Kind::HaproxySplice,
        Kind::Nginx,
        Kind::Socat,
        Kind::Go,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Tcpipe => "tcpipe",
            Kind::Baseline => "baseline",
            Kind::TcpipeCopy => "tcpipe-copy",
            Kind::TcpipeWorkers => "tcpipe-w2",
            Kind::Haproxy => "haproxy",
            Kind::HaproxySplice => "haproxy-splice",
            Kind::Nginx => "nginx",
            Kind::Socat => "socat",
            Kind::Go => "go-forward",
        }
    }

    /// One of tcpipe's own builds or tunings.
    pub fn is_tcpipe(self) -> bool {
        matches!(
            self,
            Kind::Tcpipe | Kind::Baseline | Kind::TcpipeCopy | Kind::TcpipeWorkers
        )
    }

    /// A forwarder other than tcpipe, i.e. a candidate for "best peer".
    pub fn is_other_forwarder(self) -> bool {
        self != Kind::Direct && !self.is_tcpipe()
    }

    /// Whether it can keep connected idle upstream connections ready: of the
    /// contenders, only tcpipe has such a pool (`--pool`).
    pub fn has_pool(self) -> bool {
        self.is_tcpipe()
    }

    /// Whether it can route by a client's first bytes (`match` tables):
    /// this build of tcpipe, in its plain tuning.
    pub fn has_inspection(self) -> bool {
        self == Kind::Tcpipe
    }
}

/// What a workload asks of a forwarder beyond how `Peer` configures it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Connected idle upstream connections kept ready (0: none).
    pub pool: usize,
    /// tcpipe's idle and half-close timeouts (1h, as the peers'), so that
    /// every pipe holds timers.
    pub timeouts: bool,
    /// tcpipe with its route behind a `match` table on a shared address
    /// (`match.protocol = "other"` beside a default), so that every client's
    /// first bytes are inspected before it is routed.
    pub inspect: bool,
}

/// A contender found on this machine.
pub struct Peer {
    pub kind: Kind,
    program: PathBuf,
    pub version: String,
    /// How it is configured, buffers first: printed under the table.
    pub setup: String,
    /// nginx's stream module, when it is a loadable module.
    stream_module: Option<PathBuf>,
    limits: Limits,
}
