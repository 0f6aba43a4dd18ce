//! Churn: 2,000 pipes opened and ended every way a pipe can end (clean
//! exchange, early FIN, RST with and without data in flight, close with
//! unread data, unreachable target), 50 at a time. Afterwards nothing is
//! left behind: no descriptor, no pipe, no ring, no buffered byte.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use tcpipe::{Config, Forwarder, Handle};

const PIPES: usize = 2_000;
const CONCURRENCY: usize = 50;

/// How one pipe of the churn ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Data both ways, then FIN both ways.
    Clean,
    /// FIN before any data.
    EarlyFin,
    /// RST while bytes are in flight.
    ResetWithData,
    /// RST right after connecting.
    ResetAtOnce,
    /// Close while the echo is still unread (the kernel sends an RST).
    CloseUnread,
    /// Through the forwarder whose target refuses: the client is reset.
    DeadTarget,
}

const ENDINGS: [Ending; 6] = [
    Ending::Clean,
    Ending::EarlyFin,
    Ending::ResetWithData,
    Ending::ResetAtOnce,
    Ending::CloseUnread,
    Ending::DeadTarget,
];

/// The two forwarders under churn: one in front of an echo target, one in
/// front of a refused address.
struct Targets {
    live: SocketAddr,
    dead: SocketAddr,
}

/// How many connects went to each forwarder.
#[derive(Default)]
struct Connects {
    live: AtomicU64,
    dead: AtomicU64,
}

fn run_one(ending: Ending, targets: &Targets, rng: &mut Rng, connects: &Connects) {
    if let Ending::DeadTarget = ending {
        connects.dead.fetch_add(1, Ordering::Relaxed);
        let mut client = connect(targets.dead);
        let (bytes, ended) = read_until_closed(&mut client);
        assert_eq!(bytes, 0, "a client of an unreachable target got data");
        let err = ended.expect_err("a client of an unreachable target got EOF, not a reset");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        return;
    }
    connects.live.fetch_add(1, Ordering::Relaxed);
    let mut client = connect(targets.live);
    let len = rng.range(1, 64 * 1024);
    let data = rng.bytes(len);
    match ending {
        Ending::Clean => {
            client.write_all(&data).expect("send");
            let mut echoed = vec![0u8; data.len()];
            client.read_exact(&mut echoed).expect("echo");
            assert!(echoed == data, "an echo came back altered");
            client.shutdown(Shutdown::Write).unwrap();
            assert!(read_to_end(&mut client).is_empty(), "bytes after the echo");
        }
        Ending::EarlyFin => {
            client.shutdown(Shutdown::Write).unwrap();
            assert!(
                read_to_end(&mut client).is_empty(),
                "bytes without a request"
            );
        }
        Ending::ResetWithData => {
            client.write_all(&data).expect("send");
            reset(client);
        }
        Ending::ResetAtOnce => reset(client),
        Ending::CloseUnread => {
            client.write_all(&data).expect("send");
            let mut first = [0u8; 1];
            client.read_exact(&mut first).expect("start of the echo");
            drop(client);
        }
        Ending::DeadTarget => unreachable!(),
    }
}

/// Runs `PIPES` pipes, `CONCURRENCY` at a time, each ending a random way.
fn churn(targets: &Targets, seed: u64) -> Connects {
    let connects = Connects::default();
    thread::scope(|scope| {
        for worker in 0..CONCURRENCY {
            let connects = &connects;
            scope.spawn(move || {
                let mut rng = Rng::new(seed + worker as u64);
                for _ in (worker..PIPES).step_by(CONCURRENCY) {
                    let ending = ENDINGS[rng.range(0, ENDINGS.len())];
                    run_one(ending, targets, &mut rng, connects);
                }
            });
        }
    });
    connects
}

/// One pipe through `tcpipe`, ended by the client's FIN: it ends with EOF
/// through a live target, with a reset through a dead one. The backlog is
/// first in, first out, so once it has ended, every client that connected
/// before it has been accepted.
fn one_pipe_through(tcpipe: &Tcpipe, ends_with_reset: bool) {
    let mut client = tcpipe.connect();
    if let Err(e) = client.shutdown(Shutdown::Write) {
        // Through a dead target the reset can beat the client's FIN: the
        // socket is already closed by it.
        assert!(
            ends_with_reset && e.kind() == ErrorKind::NotConnected,
            "a lone pipe could not half-close: {e}"
        );
        return;
    }
    let (_, ended) = read_until_closed(&mut client);
    let as_expected = match &ended {
        Ok(()) => !ends_with_reset,
        Err(e) => ends_with_reset && e.kind() == ErrorKind::ConnectionReset,
    };
    assert!(as_expected, "a lone pipe ended with {ended:?}");
}

#[test]
fn after_2000_pipes_of_churn_the_binary_holds_only_its_baseline_descriptors() {
    let live = Tcpipe::start(echo_server(), &[]);
    let dead = Tcpipe::start(refused_addr(), &[]);
    let forwarders = [("live", &live, false), ("dead", &dead, true)];
    let baselines: Vec<usize> = forwarders
        .iter()
        .map(|&(name, tcpipe, ends_with_reset)| {
            let at_startup = tcpipe.fd_count();
            one_pipe_through(tcpipe, ends_with_reset);
            // From its first accept on, the forwarder keeps one upstream
            // socket in reserve.
            let baseline = at_startup + 1;
            assert!(
                wait_until(DEADLINE, || tcpipe.fd_count() == baseline),
                "after one pipe the {name} forwarder holds {} descriptors, expected {baseline}",
                tcpipe.fd_count()
            );
            // Once the churn has reached every worker, each keeps its own.
            at_startup + workers_under_test()
        })
        .collect();

    churn(
        &Targets {
            live: live.addr,
            dead: dead.addr,
        },
        1,
    );

    for (&(name, tcpipe, ends_with_reset), baseline) in forwarders.iter().zip(baselines) {
        one_pipe_through(tcpipe, ends_with_reset);
        assert!(
            wait_until(DEADLINE, || tcpipe.fd_count() == baseline),
            "after the churn the {name} forwarder holds {} descriptors, baseline {baseline}",
            tcpipe.fd_count()
        );
    }
}

/// A library forwarder running on its own thread.
fn spawn_forwarder(target: SocketAddr) -> (SocketAddr, Handle, thread::JoinHandle<()>) {
    let config = Config::new("127.0.0.1:0".parse().unwrap(), target);
    let forwarder = Forwarder::bind(config).expect("bind");
    let addr = forwarder.local_addr().expect("a listener");
    let handle = forwarder.handle();
    let thread = thread::spawn(move || forwarder.run().expect("event loop"));
    (addr, handle, thread)
}

#[test]
fn after_2000_pipes_of_churn_the_library_has_no_live_pipe_ring_or_buffered_byte() {
    let (live_addr, live, live_thread) = spawn_forwarder(echo_server());
    let (dead_addr, dead, dead_thread) = spawn_forwarder(refused_addr());

    let connects = churn(
        &Targets {
            live: live_addr,
            dead: dead_addr,
        },
        2,
    );

    let expected = [
        ("live", &live, connects.live.load(Ordering::Relaxed)),
        ("dead", &dead, connects.dead.load(Ordering::Relaxed)),
    ];
    for (name, handle, connects) in expected {
        let metrics = handle.metrics();
        // A client that reset at once may still wait in the backlog, so no
        // live pipe means nothing until every client has been accepted.
        let settled = wait_until(DEADLINE, || {
            metrics.accepted_total.get() == connects && metrics.live_pipes.get() == 0
        });
        assert!(
            settled,
            "after the churn the {name} forwarder accepted {} of {connects} clients and still has {} live pipes",
            metrics.accepted_total.get(),
            metrics.live_pipes.get()
        );
        assert_eq!(
            metrics.rings_in_use.get(),
            0,
            "{name}: rings still lent out"
        );
        assert_eq!(
            metrics.buffered_bytes.get(),
            0,
            "{name}: bytes still buffered"
        );
    }
    assert_eq!(
        dead.metrics().connect_failures_total.get(),
        connects.dead.load(Ordering::Relaxed),
        "not every connect to the unreachable target was counted as failed"
    );

    for (handle, thread) in [(live, live_thread), (dead, dead_thread)] {
        handle.shutdown();
        thread.join().expect("the forwarder's thread panicked");
    }
}
