//! A one-shot answer from the event loop: waited for by a blocking
//! [`Handle`](crate::Handle) method, or awaited as a future by an async
//! embedder (with no runtime pulled in: the loop wakes the task's waker).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::hooks::CommandError;

struct Slot<T> {
    value: Option<T>,
    /// The sending half is gone: no value will come.
    closed: bool,
    waker: Option<Waker>,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    filled: Condvar,
}

impl<T> Shared<T> {
    // A panic while the lock is held leaves the slot as consistent as it
    // was: a value or not, closed or not.
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The loop's end: answers once. Dropped unanswered (the loop ended), the
/// waiting side gets [`CommandError::Stopped`].
pub(crate) struct Replier<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Replier<T> {
    /// Hands over the answer and wakes whoever waits for it. Like
    /// `mpsc::Sender::send`, it gives the value back if nobody will read it.
    pub(crate) fn send(self, value: T) -> Result<(), T> {
        if Arc::strong_count(&self.shared) == 1 {
            return Err(value);
        }
        let waker = {
            let mut slot = self.shared.lock();
            slot.value = Some(value);
            slot.waker.take()
        };
        self.shared.filled.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Drop for Replier<T> {
    fn drop(&mut self) {
        let waker = {
            let mut slot = self.shared.lock();
            slot.closed = true;
            slot.waker.take()
        };
        self.shared.filled.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A command's answer to come: `.await` it, or [`wait`](Pending::wait)
/// for it on a thread that may block. Made by
/// [`Handle::submit`](crate::Handle::submit) and
/// [`Handle::attach_async`](crate::Handle::attach_async); the command is
/// sent at once, whether or not the answer is ever awaited.
#[must_use = "the command is sent already; await or wait to learn its outcome"]
pub struct Pending<T> {
    shared: Option<Arc<Shared<Result<T, CommandError>>>>,
    /// An answer known without asking the loop.
    ready: Option<CommandError>,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

impl<T> Pending<T> {
    /// A pending answer and the loop's end of it.
    pub(crate) fn new() -> (Replier<Result<T, CommandError>>, Pending<T>) {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                value: None,
                closed: false,
                waker: None,
            }),
            filled: Condvar::new(),
        });
        let replier = Replier {
            shared: Arc::clone(&shared),
        };
        let pending = Pending {
            shared: Some(shared),
            ready: None,
        };
        (replier, pending)
    }

    /// An answer that needs no loop: the command could not be sent.
    pub(crate) fn failed(error: CommandError) -> Pending<T> {
        Pending {
            shared: None,
            ready: Some(error),
        }
    }

    /// Blocks until the loop answers. On an event loop's own thread (in a
    /// hook) that would never end: it returns
    /// [`CommandError::OnLoopThread`] at once instead, through the
    /// [`Handle`](crate::Handle) methods that use it.
    pub fn wait(mut self) -> Result<T, CommandError> {
        let Some(shared) = self.shared.take() else {
            return Err(self.ready.take().unwrap_or(CommandError::Stopped));
        };
        let mut slot = shared.lock();
        loop {
            if let Some(value) = slot.value.take() {
                return value;
            }
            if slot.closed {
                return Err(CommandError::Stopped);
            }
            slot = shared
                .filled
                .wait(slot)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, CommandError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(shared) = self.shared.as_ref() else {
            return Poll::Ready(Err(self.ready.take().unwrap_or(CommandError::Stopped)));
        };
        let mut slot = shared.lock();
        if let Some(value) = slot.value.take() {
            return Poll::Ready(value);
        }
        if slot.closed {
            return Poll::Ready(Err(CommandError::Stopped));
        }
        match &slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
