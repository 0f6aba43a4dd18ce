//! `--pool N`: N idle connections per target, made before any client needs
//! them. Each serves exactly one client and is then closed, never reused;
//! one the upstream closed, reset or wrote to is never handed out; one idle
//! past `--pool-max-idle` is replaced; and the pool is refilled.

mod common;
use common::faults::*;
use common::upstreams::*;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// An upstream that hands the first `hold` connections it accepts to the
/// test, untouched, and echoes on every later one.
struct HoldingTarget {
    addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
}

impl HoldingTarget {
    fn new(hold: usize) -> HoldingTarget {
        let (listener, addr) = listener();
        let held = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let target = HoldingTarget {
            addr,
            held: Arc::clone(&held),
            accepted: Arc::clone(&accepted),
        };
        thread::spawn(move || accept_loop(listener, hold, &held, &accepted));
        target
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `count` connections are held and takes them.
    fn take_held(&self, count: usize) -> Vec<TcpStream> {
        assert!(
            wait_until(DEADLINE, || self.held.lock().unwrap().len() >= count),
            "the upstream never saw {count} pooled connections (it has {})",
            self.held.lock().unwrap().len()
        );
        self.held.lock().unwrap().drain(..count).collect()
    }
}

fn accept_loop(
    listener: TcpListener,
    hold: usize,
    held: &Mutex<Vec<TcpStream>>,
    accepted: &AtomicUsize,
) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        if accepted.fetch_add(1, Ordering::SeqCst) < hold {
            held.lock().unwrap().push(stream);
        } else {
            thread::spawn(move || echo(stream, || {}));
        }
    }
}

fn start_pooling(target: SocketAddr, options: &[&str]) -> Tcpipe {
    start_forwarder(&[target], options)
}

/// Asserts that every client `target` served so far came over a pooled
/// connection: the forwarder made no connect of its own for a client.
fn assert_used_the_pool(tcpipe: &Tcpipe, served: usize, target: SocketAddr) {
    assert_eq!(
        tcpipe.connects_to(target),
        0,
        "{served} client(s) served, and the forwarder connected for one instead of using the pool"
    );
}

#[test]
fn the_pool_is_connected_before_any_client_and_not_beyond_its_size() {
    let target = Backend::echo();
    let _tcpipe = start_pooling(target.addr, &["--pool", "4"]);
    assert!(
        wait_until(DEADLINE, || target.accepted() == 4),
        "the upstream saw {} connections, not 4, before any client",
        target.accepted()
    );
    // Watched for a while: elapsed time is the point.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(target.accepted(), 4, "the pool grew beyond --pool 4");
}

#[test]
fn a_client_is_served_over_a_pooled_connection_and_the_pool_is_refilled() {
    let target = Backend::echo();
    let tcpipe = start_pooling(target.addr, &["--pool", "4"]);
    assert!(
        wait_until(DEADLINE, || target.accepted() == 4),
        "the pool was not filled"
    );
    serve_client(&tcpipe, 1);
    assert_used_the_pool(&tcpipe, 1, target.addr);
    assert_eq!(
        target.served(),
        1,
        "the client's bytes did not reach the upstream"
    );
    assert!(
        wait_until(DEADLINE, || target.accepted() == 5),
        "the pool was not refilled: the upstream saw {} connections",
        target.accepted()
    );
}

/// What the upstream does to a pooled connection while it waits.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    /// FIN, the socket kept open.
    Close,
    Reset,
    /// One byte, which no client may ever see.
    Write,
}

impl Spoil {
    /// Does it to each of `pooled`; returns those still open.
    fn apply(self, pooled: Vec<TcpStream>) -> Vec<TcpStream> {
        let mut open = Vec::new();
        for mut conn in pooled {
            match self {
                Spoil::Close => {
                    conn.shutdown(Shutdown::Write).unwrap();
                    open.push(conn);
                }
                Spoil::Reset => reset(conn),
                Spoil::Write => {
                    conn.write_all(b"!").unwrap();
                    open.push(conn);
                }
            }
        }
        open
    }
}

/// Stops the forwarder's process and waits until it is stopped, so that
/// whatever happens next reaches its event loop in one batch, in order.
fn freeze(tcpipe: &Tcpipe) {
    tcpipe.signal("STOP");
    let stat = format!("/proc/{}/stat", tcpipe.pid());
    let stopped = wait_until(DEADLINE, || {
        let stat = std::fs::read_to_string(&stat).expect("read /proc/PID/stat");
        // The state follows the parenthesised command name.
        stat[stat.rfind(')').expect("comm") + 2..].starts_with('T')
    });
    assert!(stopped, "the forwarder did not stop");
}

fn thaw(tcpipe: &Tcpipe) {
    tcpipe.signal("CONT");
}

const SPOILED_POOL: usize = 4;

/// The whole pool is spoiled and the forwarder has noticed (its watch on
/// idle connections); then clients come.
fn assert_pool_spoiled_while_idle_is_not_handed_out(spoil: Spoil) {
    let target = HoldingTarget::new(SPOILED_POOL);
    let tcpipe = start_pooling(target.addr, &["--pool", "4"]);
    let spoiled = spoil.apply(target.take_held(SPOILED_POOL));
    // Only a pooled connection found spoiled is replaced: once the upstream
    // saw a replacement for each, the forwarder noticed them all.
    assert!(
        wait_until(DEADLINE, || target.accepted() == 2 * SPOILED_POOL),
        "the forwarder should notice each spoiled ({spoil:?}) pooled connection and replace it; the upstream saw {} connections",
        target.accepted()
    );
    for n in 0..2 * SPOILED_POOL {
        serve_client(&tcpipe, n);
    }
    assert_no_client_bytes(spoiled, spoil);
}

/// Clients arrive first and the whole pool is spoiled just after, before
/// the forwarder can notice: the check at hand-out must catch it.
fn assert_pool_spoiled_at_hand_out_is_not_handed_out(spoil: Spoil) {
    let target = HoldingTarget::new(SPOILED_POOL);
    let tcpipe = start_pooling(target.addr, &["--pool", "4"]);
    let pooled = target.take_held(SPOILED_POOL);
    freeze(&tcpipe);
    // The kernel completes their handshakes while the forwarder is stopped.
    let clients: Vec<TcpStream> = (0..2).map(|_| tcpipe.connect()).collect();
    let spoiled = spoil.apply(pooled);
    thaw(&tcpipe);
    for (n, client) in clients.into_iter().enumerate() {
        assert_served(client, format!("client {n}").as_bytes());
    }
    assert_no_client_bytes(spoiled, spoil);
}

/// The spoiled connections still open got nothing from any client.
fn assert_no_client_bytes(spoiled: Vec<TcpStream>, spoil: Spoil) {
    for (i, mut conn) in spoiled.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        match conn.read(&mut buf) {
            // Closed by the forwarder: with a FIN, or with a reset when
            // the upstream's byte was left unread.
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Ok(n) => panic!("spoiled ({spoil:?}) pooled connection {i} got {n} client bytes"),
            Err(e) => panic!("spoiled ({spoil:?}) pooled connection {i} was not closed: {e}"),
        }
    }
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_never_handed_out() {
    assert_pool_spoiled_while_idle_is_not_handed_out(Spoil::Close);
    assert_pool_spoiled_at_hand_out_is_not_handed_out(Spoil::Close);
}

#[test]
fn a_pooled_connection_the_upstream_reset_is_never_handed_out() {
    assert_pool_spoiled_while_idle_is_not_handed_out(Spoil::Reset);
    assert_pool_spoiled_at_hand_out_is_not_handed_out(Spoil::Reset);
}

#[test]
fn a_pooled_connection_the_upstream_wrote_to_is_never_handed_out() {
    assert_pool_spoiled_while_idle_is_not_handed_out(Spoil::Write);
    assert_pool_spoiled_at_hand_out_is_not_handed_out(Spoil::Write);
}

#[test]
fn a_pool_whose_connections_the_upstream_closed_is_refilled() {
    const POOL: usize = 2;
    let target = HoldingTarget::new(POOL);
    let _tcpipe = start_pooling(target.addr, &["--pool", "2"]);
    for conn in target.take_held(POOL) {
        drop(conn);
    }
    // Replaced a second after they were made, so an upstream that closes
    // idle connections at once is not hammered.
    assert!(
        wait_until(DEADLINE, || target.accepted() == 2 * POOL),
        "the pool was not refilled: the upstream saw {} connections",
        target.accepted()
    );
}

#[test]
fn pooled_connections_idle_past_the_maximum_are_replaced() {
    let target = HoldingTarget::new(usize::MAX);
    let _tcpipe = start_pooling(target.addr, &["--pool", "2", "--pool-max-idle", "500ms"]);
    let started = Instant::now();
    let first = target.take_held(2);
    for (i, mut conn) in first.into_iter().enumerate() {
        // The forwarder counts from its connect, a little before our accept.
        let mut byte = [0u8; 1];
        let got = conn.read(&mut byte);
        let idle = started.elapsed();
        assert!(
            matches!(got, Ok(0)),
            "pooled connection {i} should end with a FIN after 500 ms idle, got {got:?}"
        );
        assert!(
            idle >= Duration::from_millis(450) && idle <= Duration::from_secs(3),
            "pooled connection {i} was closed after {idle:?} idle, not about 500 ms"
        );
    }
    let replacements = target.take_held(2);
    assert_eq!(replacements.len(), 2, "both should be replaced");
}

#[test]
fn a_pooled_connection_serves_exactly_one_client_and_is_then_closed() {
    let target = HoldingTarget::new(usize::MAX);
    let tcpipe = start_pooling(target.addr, &["--pool", "1"]);

    for id in 1..=3 {
        // The pool's one connection, made before this client (for the first
        // at startup, later as the refill when the previous client took it).
        let mut upstream = target.take_held(1).remove(0);
        let mut client = tcpipe.connect();
        let message = format!("client {id}");
        assert_delivered(&mut client, &mut upstream, message.as_bytes());
        assert_used_the_pool(&tcpipe, id, target.addr);
        assert_delivered(&mut upstream, &mut client, b"reply");

        // The client is done: its upstream connection must end with it, not
        // go back to the pool.
        drop(client);
        let rest = read_to_end(&mut upstream);
        assert!(
            rest.is_empty(),
            "after client {id} left, its pooled connection carried {} more bytes",
            rest.len()
        );
    }
    assert!(
        wait_until(DEADLINE, || target.accepted() == 4),
        "three clients should take the first pooled connection and two refills, and leave a third refill; the upstream saw {} connections",
        target.accepted()
    );
}

#[test]
fn a_pool_found_stale_at_hand_out_is_refilled() {
    const POOL: usize = 2;
    let target = HoldingTarget::new(POOL);
    let tcpipe = start_pooling(target.addr, &["--pool", "2"]);
    let mut pooled = target.take_held(POOL);

    // The client arrives first and the upstream's bytes after, all while the
    // forwarder is frozen: the check at hand-out, not the watch on idle
    // connections, finds both pooled connections stale.
    freeze(&tcpipe);
    let client = tcpipe.connect();
    for conn in &mut pooled {
        conn.write_all(b"!").unwrap();
    }
    thaw(&tcpipe);
    assert_served(client, b"client 1");
    assert_eq!(
        tcpipe.connects_to(target.addr),
        1,
        "the client should have been given a fresh connection"
    );

    // Two stale connections gone, one fresh one for the client: the pool
    // must be topped up again (a refill waits at most a second).
    let refilled = wait_until(Duration::from_secs(3), || target.accepted() == 2 * POOL + 1);
    assert!(
        refilled,
        "the pool was never refilled: the upstream saw {} connections, expected {}",
        target.accepted(),
        2 * POOL + 1,
    );
}

/// Connections `backend` accepted that never carried a client's byte: its
/// pooled connections, idle or closed.
fn unused_connections(backend: &Backend) -> usize {
    backend.accepted() - backend.served()
}

#[test]
fn the_pool_of_a_target_that_comes_back_is_refilled() {
    let mut a = Backend::echo();
    let b = Backend::echo();
    let tcpipe = start_forwarder(
        &[a.addr, b.addr],
        &[
            "--pool",
            "2",
            "--fail-threshold",
            "1",
            "--cooldown",
            "1500ms",
        ],
    );
    assert!(
        wait_until(DEADLINE, || a.accepted() == 2 && b.accepted() == 2),
        "the pools were not filled"
    );
    // A stops accepting: the first client takes one of its pooled
    // connections, the refill is refused, and A goes down.
    a.refuse();
    serve_client(&tcpipe, 1);
    tcpipe.wait_target_up(a.addr, false);
    let down_seen = Instant::now();
    // What is left of A's first pool; refills will add to it.
    let unused_when_down = unused_connections(&a);
    a.listen();
    // Elapsed time is the point: the cooldown runs out, and the trial of
    // the next client offered A brings it back.
    thread::sleep(Duration::from_millis(1600).saturating_sub(down_seen.elapsed()));
    for n in 2..=4 {
        serve_client(&tcpipe, n);
    }
    tcpipe.wait_target_up(a.addr, true);

    // Back up, A gets its pool of two again (a refill waits at most a
    // second).
    let refilled = wait_until(Duration::from_secs(3), || {
        unused_connections(&a) == unused_when_down + 2
    });
    assert!(
        refilled,
        "A's pool was not refilled after it came back: {} unused connections, {unused_when_down} when it went down",
        unused_connections(&a),
    );
}
