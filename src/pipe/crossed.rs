//! What one drive of a pipe crossed: the facts the reactor's observers
//! (metrics, hooks, the access log) count and announce. The pipe notes
//! them as it moves bytes, so nobody has to compare a pipe before and
//! after a drive to find out.

/// What a drive crossed. Per direction: `[client → target, target → client]`.
/// The drive only stores what it sees (a few words, no branches); the
/// crossings are worked out when somebody asks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crossed {
    /// The pipe was just made (its first report, before any drive).
    pub(crate) opened: bool,
    /// Its connect finished: it is open now (`Pipe::connect_time` says
    /// how long it took; `None` for a socket that came connected).
    pub(crate) connected: bool,
    /// The target's first byte reached the client.
    pub(crate) first_reply: bool,
    /// Bytes delivered in this drive.
    pub(crate) delivered: [u64; 2],
    /// Whether each ring was at high-water (its source unread) before the
    /// drive, and after it.
    full_before: [bool; 2],
    full_after: [bool; 2],
}

impl Crossed {
    /// What a pipe just made reports: made, and open already if its target
    /// socket came connected (the warm pool, or attached).
    pub(crate) fn opened(connected: bool) -> Crossed {
        Crossed {
            opened: true,
            connected,
            ..Crossed::default()
        }
    }

    /// Notes the bytes delivered and the high-water states of one pump.
    #[inline]
    pub(crate) fn note_moves(
        &mut self,
        delivered_before: [u64; 2],
        delivered_after: [u64; 2],
        full_before: [bool; 2],
        full_after: [bool; 2],
    ) {
        self.delivered = [
            delivered_after[0] - delivered_before[0],
            delivered_after[1] - delivered_before[1],
        ];
        self.first_reply = delivered_before[1] == 0 && delivered_after[1] != 0;
        self.full_before = full_before;
        self.full_after = full_after;
    }

    /// The ring of direction `way` reached high-water: its source is no
    /// longer read.
    pub(crate) fn filled(&self, way: usize) -> bool {
        !self.full_before[way] && self.full_after[way]
    }

    /// The ring of direction `way` drained to low-water: its source is
    /// read again.
    pub(crate) fn drained(&self, way: usize) -> bool {
        self.full_before[way] && !self.full_after[way]
    }

    /// A milestone that is counted even when nobody listens to every
    /// move: the pipe connected, or had its first reply. The common drive
    /// (an open pipe that has had its reply) crosses neither.
    #[inline]
    pub(crate) fn is_counted(&self) -> bool {
        self.connected | self.first_reply
    }

    /// Anything at all, for the embedder's hooks, which hear every move.
    #[inline]
    pub(crate) fn is_anything(&self) -> bool {
        self.opened
            || self.is_counted()
            || self.delivered != [0, 0]
            || self.full_before != self.full_after
    }
}

#[cfg(test)]
mod tests {
    use super::Crossed;

    #[test]
    fn the_first_reply_and_high_water_crossings_are_noted_once() {
        let mut crossed = Crossed::default();
        crossed.note_moves([0, 0], [10, 5], [false, true], [true, false]);
        assert!(crossed.first_reply);
        assert_eq!(crossed.delivered, [10, 5]);
        assert!(crossed.filled(0) && !crossed.filled(1));
        assert!(crossed.drained(1) && !crossed.drained(0));
        let mut later = Crossed::default();
        later.note_moves([10, 5], [10, 9], [true, false], [true, false]);
        assert!(!later.first_reply && !later.is_counted());
        assert!(!later.filled(0) && !later.drained(0));
        assert!(later.is_anything());
        let mut still = Crossed::default();
        still.note_moves([10, 9], [10, 9], [true, false], [true, false]);
        assert!(!still.is_anything());
    }
}
