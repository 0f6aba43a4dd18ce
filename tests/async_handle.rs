//! The handle's futures: `submit` and `attach_async` return at once and
//! resolve when the loop has answered, woken through the task's waker,
//! with no runtime of tcpipe's own; a stopped forwarder resolves them to
//! `Stopped`.

mod common;
use common::faults::*;
use common::hooks::*;
use common::*;

use std::future::Future;
use std::net::TcpStream;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use tcpipe::{AttachOptions, CommandError, Config, Forwarder, PipeAction};

/// Wakes the thread that polls, and counts the wakes.
struct Unpark(Thread, AtomicUsize);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.unpark();
    }
}

/// Polls `future` to its end on this thread, parking in between; returns
/// its output and how many times it was woken. `first_pending` runs after
/// the first poll if that one found it pending.
fn block_on_after<F: Future>(future: F, first_pending: impl FnOnce()) -> (F::Output, usize) {
    let unpark = Arc::new(Unpark(thread::current(), AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&unpark));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let mut first_pending = Some(first_pending);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return (output, unpark.1.load(Ordering::SeqCst));
        }
        if let Some(then) = first_pending.take() {
            then();
        }
        thread::park_timeout(DEADLINE);
    }
}

fn block_on<F: Future>(future: F) -> (F::Output, usize) {
    block_on_after(future, || {})
}

fn socket_pair() -> (TcpStream, TcpStream) {
    let (listener, addr) = listener();
    let kept = connect(addr);
    let given = accept(&listener);
    (kept, given)
}

#[test]
fn an_attach_and_a_pause_resolve_as_futures() {
    let running = Running::start(Config::with_routes(Vec::new()));
    let (mut client, client_end) = socket_pair();
    let (mut target, target_end) = socket_pair();
    let pending = running
        .handle
        .attach_async(client_end, target_end, AttachOptions::default());
    let (attached, _) = block_on(pending);
    let id = attached.expect("attached");
    assert_delivered(&mut client, &mut target, b"through an async attach");

    let (paused, _) = block_on(running.handle.submit(id, PipeAction::Pause(None)));
    paused.expect("paused");
    let pipes = running.handle.pipes().unwrap();
    assert!(pipes.iter().any(|p| p.id == id && p.paused), "{pipes:#?}");
    let (resumed, _) = block_on(running.handle.submit(id, PipeAction::Resume(None)));
    resumed.expect("resumed");
    assert_delivered(&mut target, &mut client, b"resumed");

    let (gone, _) = block_on(
        running
            .handle
            .submit(id.get().wrapping_add(1000).into(), PipeAction::Abort),
    );
    assert!(matches!(gone, Err(CommandError::NoSuchPipe(_))), "{gone:?}");
    running.stop();
}

#[test]
fn a_future_is_woken_by_the_loop_not_polled_in_a_spin() {
    // Not running yet: the answer can only come once the loop starts, so
    // the first poll is pending and a wake must follow.
    let forwarder = Forwarder::bind(Config::with_routes(Vec::new())).expect("bind");
    let handle = forwarder.handle();
    let (_client, client_end) = socket_pair();
    let (_target, target_end) = socket_pair();
    let pending = handle.attach_async(client_end, target_end, AttachOptions::default());
    let mut runner = None;
    let (attached, wakes) = block_on_after(pending, || {
        runner = Some(thread::spawn(move || forwarder.run()));
    });
    let runner = runner.expect("the first poll was pending: the loop had not run");
    attached.expect("attached once the loop ran");
    assert!(wakes >= 1, "the future resolved without being woken");
    handle.shutdown();
    handle.shutdown();
    runner.join().unwrap().expect("run");
    // A stopped forwarder answers every future at once.
    let (stopped, _) = block_on(handle.submit(1.into(), PipeAction::Abort));
    assert!(matches!(stopped, Err(CommandError::Stopped)), "{stopped:?}");
}
