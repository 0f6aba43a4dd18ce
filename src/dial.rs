//! A client's way to a target: the connect attempts it has cost, and the
//! target and stream a dial produced. The pipe holds them while it
//! connects and the upstream set fills them in, so they sit below both.

use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::arena::TargetId;

/// One client's connect attempts: how many so far, how many its route
/// allows, and which targets failed it. Every connecting pipe holds one, so
/// it is small: the rare parts are boxed, one empty word in the common case
/// where the first connect to a route's target works.
#[derive(Debug, Default)]
pub(crate) struct Dial {
    pub(crate) attempts: u32,
    pub(crate) max_attempts: u32,
    rare: Option<Box<Rare>>,
}

/// What few dials need.
#[derive(Debug, Default)]
struct Rare {
    failed: Vec<TargetId>,
    /// The address the embedder pointed the pipe at, its only attempt.
    chosen: Option<SocketAddr>,
}

impl Dial {
    pub(crate) fn new(max_attempts: usize) -> Dial {
        Dial {
            attempts: 0,
            max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
            rare: None,
        }
    }

    /// The one attempt at an address the embedder chose: no failover.
    pub(crate) fn chosen(addr: SocketAddr) -> Dial {
        Dial {
            attempts: 1,
            max_attempts: 1,
            rare: Some(Box::new(Rare {
                failed: Vec::new(),
                chosen: Some(addr),
            })),
        }
    }

    /// The address the embedder chose, if it did.
    pub(crate) fn chosen_addr(&self) -> Option<SocketAddr> {
        self.rare.as_ref().and_then(|rare| rare.chosen)
    }

    pub(crate) fn failed(&mut self, target: TargetId) {
        self.rare
            .get_or_insert_with(Box::default)
            .failed
            .push(target);
    }

    pub(crate) fn tried(&self) -> &[TargetId] {
        self.rare
            .as_deref()
            .map_or(&[], |rare| rare.failed.as_slice())
    }
}

/// A target chosen for a client, and the stream to it.
pub(crate) struct Dialed {
    /// `None` for a socket the embedder attached.
    pub(crate) target: Option<TargetId>,
    pub(crate) stream: TcpStream,
    /// From the warm pool: established already.
    pub(crate) connected: bool,
}
