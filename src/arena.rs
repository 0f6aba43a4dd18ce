//! Stable identities for things a reload can add and remove (routes,
//! targets): a slab whose every entry also carries a serial number unique
//! for the life of the process.
//!
//! An [`Id`] names one entry for good. When the entry is removed and its
//! slot reused, the old id finds nothing instead of the newcomer, so a timer,
//! a resolver answer or a pipe that outlived its route or target can never
//! act on another one.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU64;

use slab::Slab;

pub(crate) struct Id<T> {
    key: usize,
    /// Never zero, so an `Option<Id>` takes no more room than an `Id`.
    serial: NonZeroU64,
    _of: PhantomData<fn() -> T>,
}

// Manual impls: the derives would require `T` itself to be Copy, Eq, ...
impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Id<T> {}
impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.serial == other.serial
    }
}
impl<T> Eq for Id<T> {}
impl<T> std::hash::Hash for Id<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.serial.hash(state);
    }
}
impl<T> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.serial.cmp(&other.serial)
    }
}
impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.serial)
    }
}

/// The tags of the ids below: pipes and the upstream set name routes and
/// targets without depending on the modules that own them.
pub(crate) enum RouteTag {}
pub(crate) enum TargetTag {}
pub(crate) enum GroupTag {}

/// A route, as its pipes name it; owned by the reactor's routes.
pub(crate) type RouteId = Id<RouteTag>;
/// One target of the upstream set.
pub(crate) type TargetId = Id<TargetTag>;
/// A route's group of targets in the upstream set.
pub(crate) type GroupId = Id<GroupTag>;

pub(crate) struct Arena<T, Tag = T> {
    entries: Slab<(NonZeroU64, T)>,
    next_serial: NonZeroU64,
    _tag: PhantomData<fn() -> Tag>,
}

impl<T, Tag> Arena<T, Tag> {
    pub(crate) fn new() -> Arena<T, Tag> {
        Arena {
            entries: Slab::new(),
            next_serial: NonZeroU64::MIN,
            _tag: PhantomData,
        }
    }

    pub(crate) fn insert(&mut self, value: T) -> Id<Tag> {
        let id = self.next_id();
        self.entries.insert((id.serial, value));
        id
    }

    /// Inserts what `make` builds knowing its own id.
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(Id<Tag>) -> T) -> Id<Tag> {
        let id = self.next_id();
        self.entries.insert((id.serial, make(id)));
        id
    }

    /// Inserts what `make` builds knowing its key (a poll token is made
    /// from it); nothing is inserted if `make` fails.
    pub(crate) fn try_insert_with<E>(
        &mut self,
        make: impl FnOnce(usize) -> Result<T, E>,
    ) -> Result<Id<Tag>, E> {
        let id = self.next_id();
        let value = make(id.key)?;
        self.entries.insert((id.serial, value));
        Ok(id)
    }

    /// The id the next insert gets.
    fn next_id(&mut self) -> Id<Tag> {
        let serial = self.next_serial;
        self.next_serial = serial.saturating_add(1);
        Id {
            key: self.entries.vacant_key(),
            serial,
            _of: PhantomData,
        }
    }

    /// The entry in slot `key`, whoever it is: for a poll event, which
    /// names a slot, not an id.
    pub(crate) fn id_at(&self, key: usize) -> Option<Id<Tag>> {
        let (serial, _) = self.entries.get(key)?;
        Some(Id {
            key,
            serial: *serial,
            _of: PhantomData,
        })
    }

    pub(crate) fn get(&self, id: Id<Tag>) -> Option<&T> {
        match self.entries.get(id.key) {
            Some((serial, value)) if *serial == id.serial => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: Id<Tag>) -> Option<&mut T> {
        match self.entries.get_mut(id.key) {
            Some((serial, value)) if *serial == id.serial => Some(value),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, id: Id<Tag>) -> Option<T> {
        self.get(id)?;
        self.entries.try_remove(id.key).map(|(_, value)| value)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Id<Tag>, &T)> {
        self.entries.iter().map(|(key, (serial, value))| {
            let id = Id {
                key,
                serial: *serial,
                _of: PhantomData,
            };
            (id, value)
        })
    }

    pub(crate) fn ids(&self) -> Vec<Id<Tag>> {
        self.iter().map(|(id, _)| id).collect()
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.entries.retain(|_, (_, value)| keep(value));
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_never_reaches_the_entry_that_reused_its_slot() {
        let mut arena: Arena<&str> = Arena::new();
        let first = arena.insert("first");
        assert_eq!(arena.remove(first), Some("first"));
        let second = arena.insert("second");
        assert_eq!(arena.get(first), None);
        assert_eq!(arena.remove(first), None);
        assert_eq!(arena.get(second), Some(&"second"));
        assert_ne!(first, second);
    }
}
