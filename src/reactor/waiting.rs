//! A table of clients that are not pipes yet (awaiting a PROXY header,
//! or being inspected): a slab whose slots are freed only at the end of
//! the turn, so that an event of a client that left, still in the batch,
//! cannot reach the client that reused its slot.

use slab::Slab;

pub(super) struct Waiting<T> {
    pub(super) clients: Slab<T>,
    /// Slots to free at the end of this turn.
    pub(super) left: Vec<usize>,
}

impl<T> Default for Waiting<T> {
    fn default() -> Waiting<T> {
        Waiting {
            clients: Slab::new(),
            left: Vec::new(),
        }
    }
}

impl<T> Waiting<T> {
    /// Clients waiting, counted against the connection limits like pipes.
    pub(super) fn len(&self) -> usize {
        self.clients.len()
    }

    /// Frees the slots of the clients that left during this turn; whether
    /// there were any.
    pub(super) fn free_left(&mut self) -> bool {
        if self.left.is_empty() {
            return false;
        }
        for key in std::mem::take(&mut self.left) {
            self.clients.try_remove(key);
        }
        true
    }
}
