//! What one drive of a pipe crossed: the facts the reactor's observers
//! (metrics, hooks, the access log) count and announce. The pipe notes
//! them as it moves bytes, so nobody has to compare a pipe before and
//! after a drive to find out.

/// What a drive crossed. Per direction: `[client → target, target → client]`.
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
    /// The ring reached high-water: its source is no longer read.
    pub(crate) filled: [bool; 2],
    /// The ring drained to low-water: its source is read again.
    pub(crate) drained: [bool; 2],
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

    /// Notes the bytes delivered and the high-water crossings of one pump.
    #[inline]
    pub(crate) fn note_moves(
        &mut self,
        delivered_before: [u64; 2],
        delivered_after: [u64; 2],
        full_before: [bool; 2],
        full_after: [bool; 2],
    ) {
        for way in 0..2 {
            self.delivered[way] = delivered_after[way] - delivered_before[way];
            self.filled[way] = !full_before[way] && full_after[way];
            self.drained[way] = full_before[way] && !full_after[way];
        }
        self.first_reply = delivered_before[1] == 0 && delivered_after[1] > 0;
    }

    /// A milestone that is counted even when nobody listens to every
    /// move: the pipe was made, connected, or had its first reply. The
    /// common drive (an open pipe that has had its reply) crosses none.
    #[inline]
    pub(crate) fn is_milestone(&self) -> bool {
        self.opened | self.connected | self.first_reply
    }

    /// Anything at all, for the embedder's hooks, which hear every move.
    #[inline]
    pub(crate) fn is_anything(&self) -> bool {
        self.is_milestone()
            || self.delivered != [0, 0]
            || self.filled != [false, false]
            || self.drained != [false, false]
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
        assert_eq!(crossed.filled, [true, false]);
        assert_eq!(crossed.drained, [false, true]);
        let mut later = Crossed::default();
        later.note_moves([10, 5], [10, 9], [true, false], [true, false]);
        assert!(!later.first_reply && !later.is_milestone());
        assert_eq!(later.filled, [false, false]);
        assert!(later.is_anything());
        let mut still = Crossed::default();
        still.note_moves([10, 9], [10, 9], [true, false], [true, false]);
        assert!(!still.is_anything());
    }
}
