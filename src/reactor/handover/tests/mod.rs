//! Two loops in one process, as two processes of a live upgrade: pipes in
//! every stage are exported from one, their descriptors duplicated (as
//! `SCM_RIGHTS` would), adopted by the other; every byte arrives exactly
//! once, half-closes and pauses survive, nothing is reset. And the old
//! loop resumes when the new one dies before driving anything.

mod hooks;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::Events;
use socket2::{Domain, SockRef, Socket, Type};

use super::super::Reactor;
use crate::config::{Config, Route, Splice};
use crate::handover::{Bundle, Parcel};
use crate::hooks::{Direction, PipeId};
use crate::reactor::{PipeAction, PipeInfo};
use crate::share::Share;

const BUFFER: usize = 4096;
/// More than a loopback socket's send buffer can take (4 MiB at most):
/// rings fill and their sources pause at high water.
const BULK: usize = 6 << 20;

struct Loop {
    reactor: Reactor,
    events: Events,
}

impl Loop {
    fn new(config: Config) -> Loop {
        let share = Share { index: 0, count: 1 };
        let reactor =
            Reactor::new(config, None, share, Arc::new(OnceLock::new()), None).expect("a reactor");
        Loop {
            reactor,
            events: Events::with_capacity(256),
        }
    }

    fn turn(&mut self) {
        (self.reactor)
            .turn(&mut self.events, Some(Duration::from_millis(2)))
            .expect("a turn");
    }

    fn addr(&self, route: &str) -> SocketAddr {
        let listening = self.reactor.listening();
        listening
            .iter()
            .find(|(name, _)| name == route)
            .map(|(_, addr)| *addr)
            .expect("the route listens")
    }

    fn pipes(&self) -> Vec<PipeInfo> {
        let mut pipes = self.reactor.list_pipes();
        pipes.sort_by_key(|p| p.id.0);
        pipes
    }
}

/// One end the test holds: what it sends (then a FIN, if asked), and what
/// it has received, until EOF or an error.
struct Peer {
    stream: TcpStream,
    out: Vec<u8>,
    sent: usize,
    fin_after: bool,
    fin_sent: bool,
    reading: bool,
    got: Vec<u8>,
    eof: bool,
    error: Option<io::Error>,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        stream.set_nonblocking(true).unwrap();
        Peer {
            stream,
            out: Vec::new(),
            sent: 0,
            fin_after: false,
            fin_sent: false,
            reading: true,
            got: Vec::new(),
            eof: false,
            error: None,
        }
    }

    /// Sends `bytes` after what it sends already.
    fn send(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn step(&mut self) {
        while self.sent < self.out.len() && self.error.is_none() {
            match self.stream.write(&self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => self.error = Some(e),
            }
        }
        if self.fin_after && !self.fin_sent && self.sent == self.out.len() {
            self.stream.shutdown(Shutdown::Write).unwrap();
            self.fin_sent = true;
        }
        let mut buf = [0u8; 65536];
        while self.reading && !self.eof && self.error.is_none() {
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => self.error = Some(e),
            }
        }
    }
}

/// A client and the target connection its pipe made.
struct Pair {
    client: Peer,
    target: Option<Peer>,
}

/// Bytes no two pipes share, so a byte delivered to the wrong one shows.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(u32::from(seed) * 7) as u8
        })
        .collect()
}

fn small_buffers(stream: &TcpStream) {
    let socket = SockRef::from(stream);
    socket.set_recv_buffer_size(BUFFER).unwrap();
    socket.set_send_buffer_size(BUFFER).unwrap();
}

/// Buffers that let the bulk through quickly once it is read.
fn large_buffers(stream: &TcpStream) {
    let socket = SockRef::from(stream);
    socket.set_recv_buffer_size(1 << 20).unwrap();
    socket.set_send_buffer_size(1 << 20).unwrap();
}

/// Turns the loops and moves the peers' bytes until `done` holds.
fn until(
    loops: &mut [&mut Loop],
    pairs: &mut [Pair],
    what: &str,
    mut done: impl FnMut(&[&mut Loop], &[Pair]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for l in loops.iter_mut() {
            l.turn();
        }
        for pair in pairs.iter_mut() {
            pair.client.step();
            if let Some(target) = &mut pair.target {
                target.step();
            }
        }
        if done(loops, pairs) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

/// Accepts the target side of the pipe a loop just made.
fn accept(l: &mut Loop, listener: &TcpListener) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        l.turn();
        match listener.accept() {
            Ok((stream, _)) => return stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        assert!(Instant::now() < deadline, "the loop did not connect");
    }
}

/// A listener whose accept queue is full: a connect to it stays under way
/// (its SYN is dropped, and retried a second later).
fn full_listener() -> (Socket, TcpStream) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let filler = TcpStream::connect(addr).unwrap();
    (socket, filler)
}

/// What the process that receives `bundle` over `SCM_RIGHTS` holds: its
/// own descriptors for the same open files.
fn received(bundle: &Bundle<i32>) -> Bundle<OwnedFd> {
    Bundle {
        parcels: (bundle.parcels.iter())
            .map(|parcel| Parcel {
                record: parcel.record.clone(),
                fds: (parcel.fds.iter())
                    .map(|&fd| crate::sys::duplicate(fd).unwrap())
                    .collect(),
            })
            .collect(),
        upstream: bundle.upstream.clone(),
    }
}

fn route(name: &str, target: SocketAddr) -> Route {
    let mut route = Route::new(name, SocketAddr::from(([127, 0, 0, 1], 0)), target);
    route.buffer_size = BUFFER;
    route.low_water = BUFFER / 2;
    route.connect_timeout = Some(Duration::from_secs(20));
    route.half_close_timeout = Some(Duration::from_secs(60));
    route
}

fn config(target: SocketAddr, slow: SocketAddr) -> Config {
    let mut spliced = route("spliced", target);
    spliced.splice = Splice::Always;
    let mut limited = route("limited", target);
    limited.upload_rate = Some(RATE);
    let mut proxied = route("proxied", target);
    proxied.accept_proxy = true;
    proxied.proxy_timeout = Some(Duration::from_secs(20));
    Config::with_routes(vec![
        route("plain", target),
        spliced,
        route("slow", slow),
        proxied,
        limited,
    ])
}

/// Which pair plays which stage.
const FULL_TOWARD_CLIENT: usize = 0;
const FULL_TOWARD_TARGET: usize = 1;
const CLIENT_FIN: usize = 2;
const TARGET_FIN: usize = 3;
const SPLICED: usize = 4;
const HELD: usize = 5;
const LIMITED: usize = 6;
const CONNECTING: usize = 7;
const AWAITING_HEADER: usize = 8;

/// The limited pipe's rate and what it sends: seconds of it.
const RATE: usize = 100_000;
const LIMITED_BYTES: usize = 250_000;

/// A loop with a pipe in every stage, and the test's ends of each.
struct Stages {
    old: Loop,
    pairs: Vec<Pair>,
    targets: TcpListener,
    slow: Socket,
    _filler: TcpStream,
}

fn stages() -> Stages {
    let targets = TcpListener::bind("127.0.0.1:0").unwrap();
    targets.set_nonblocking(true).unwrap();
    let (slow, filler) = full_listener();
    let slow_addr = slow.local_addr().unwrap().as_socket().unwrap();
    let mut old = Loop::new(config(targets.local_addr().unwrap(), slow_addr));
    let mut pairs = Vec::new();
    for (i, route) in [
        "plain", "plain", "plain", "plain", "spliced", "plain", "limited",
    ]
    .into_iter()
    .enumerate()
    {
        let client = TcpStream::connect(old.addr(route)).unwrap();
        let target = accept(&mut old, &targets);
        if i == FULL_TOWARD_CLIENT {
            small_buffers(&client);
        }
        // Not the spliced pipe's target: a receive buffer shrunk under
        // what it already offered drops a kernel pipe's larger bursts, and
        // the sender then probes a closed window for longer than the test
        // waits. Its default buffers stop growing while it reads nothing.
        if i == FULL_TOWARD_TARGET {
            small_buffers(&target);
        }
        let mut pair = Pair {
            client: Peer::new(client),
            target: Some(Peer::new(target)),
        };
        let seed = i as u8;
        match i {
            FULL_TOWARD_CLIENT => {
                pair.client.reading = false;
                pair.target.as_mut().unwrap().send(&pattern(seed, BULK));
            }
            FULL_TOWARD_TARGET => {
                pair.target.as_mut().unwrap().reading = false;
                pair.client.send(&pattern(seed, BULK));
            }
            SPLICED => {
                pair.target.as_mut().unwrap().reading = false;
                pair.client.send(&pattern(seed, BULK));
            }
            CLIENT_FIN => {
                pair.client.send(&pattern(seed, 1000));
                pair.client.fin_after = true;
            }
            TARGET_FIN => {
                let target = pair.target.as_mut().unwrap();
                target.send(&pattern(seed, 1000));
                target.fin_after = true;
            }
            // Read at its rate: the rest waits, its bucket empty.
            LIMITED => pair.client.send(&pattern(seed, LIMITED_BYTES)),
            _ => {}
        }
        pairs.push(pair);
    }
    // Held by the embedder: the client's bytes wait in its socket.
    let held = old.pipes()[HELD].id;
    (old.reactor)
        .on_pipe_command(held, PipeAction::Pause(Some(Direction::ClientToTarget)))
        .unwrap();
    pairs[HELD].client.send(&pattern(HELD as u8, 3000));
    // Connecting to a target that has not accepted: its early bytes wait.
    let client = TcpStream::connect(old.addr("slow")).unwrap();
    let mut connecting = Peer::new(client);
    connecting.send(&pattern(CONNECTING as u8, 2000));
    pairs.push(Pair {
        client: connecting,
        target: None,
    });
    // Awaiting the rest of its PROXY header.
    let client = TcpStream::connect(old.addr("proxied")).unwrap();
    let mut awaiting = Peer::new(client);
    awaiting.send(b"PROXY TCP4 192.0.2.1 ");
    pairs.push(Pair {
        client: awaiting,
        target: None,
    });
    until(
        &mut [&mut old],
        &mut pairs,
        "every stage",
        |loops, pairs| {
            let pipes = loops[0].pipes();
            pipes.len() == 8
            && pipes[LIMITED].bytes_toward_target > 0
            // Above low water: paused at high water, not drained since.
            && pipes[FULL_TOWARD_CLIENT].buffered_toward_client > BUFFER / 2
            && pipes[FULL_TOWARD_TARGET].buffered_toward_target > BUFFER / 2
            && pipes[SPLICED].buffered_toward_target > BUFFER / 2
            && pipes[CLIENT_FIN].bytes_toward_target == 1000
            && pipes[TARGET_FIN].bytes_toward_client == 1000
            && pairs[TARGET_FIN].client.eof
            && pipes[CONNECTING].state == crate::reactor::PipeState::Connecting
            && loops[0].reactor.awaiting.len() == 1
        },
    );
    let pipes = old.pipes();
    assert!(
        pipes[LIMITED].bytes_toward_target < LIMITED_BYTES as u64,
        "the limited pipe finished before the handover"
    );
    assert!(pipes[HELD].paused_directions[0]);
    assert_eq!(pipes[HELD].bytes_toward_target, 0);
    assert_eq!(
        pipes[CLIENT_FIN].state,
        crate::reactor::PipeState::HalfClosed
    );
    Stages {
        old,
        pairs,
        targets,
        slow,
        _filler: filler,
    }
}

/// Lets every pipe finish: the held one resumed (by `resume`), the slow
/// target accepting, the header completed, every reader reading; then
/// checks that each side got exactly what the other sent, then EOF.
fn finish(l: &mut Loop, stages: &mut Stages, resume: impl FnOnce(&mut Loop, PipeId)) {
    let pairs = &mut stages.pairs;
    let held = l.pipes()[HELD].id;
    resume(l, held);
    for pair in pairs.iter_mut() {
        pair.client.reading = true;
        if let Some(target) = &mut pair.target {
            target.reading = true;
            large_buffers(&target.stream);
        }
        large_buffers(&pair.client.stream);
    }
    pairs[CLIENT_FIN].target.as_mut().unwrap().send(b"reply");
    pairs[CLIENT_FIN].target.as_mut().unwrap().fin_after = true;
    pairs[TARGET_FIN].client.send(&pattern(99, 777));
    pairs[TARGET_FIN].client.fin_after = true;
    pairs[AWAITING_HEADER]
        .client
        .send(b"198.51.100.1 1111 2222\r\n");
    pairs[AWAITING_HEADER]
        .client
        .send(&pattern(AWAITING_HEADER as u8, 500));
    // The slow target takes its backlog, then the pipe's retried SYN.
    stages.slow.set_nonblocking(true).unwrap();
    drop(stages.slow.accept().unwrap());
    let mut slow_target = None;
    let slow = &stages.slow;
    until(&mut [&mut *l], pairs, "the slow target", |_, _| {
        if let Ok((socket, _)) = slow.accept() {
            slow_target = Some(TcpStream::from(socket));
        }
        slow_target.is_some()
    });
    let slow_target = slow_target.unwrap();
    pairs[CONNECTING].target = Some(Peer::new(slow_target));
    let target = accept(l, &stages.targets);
    pairs[AWAITING_HEADER].target = Some(Peer::new(target));
    for pair in pairs.iter_mut() {
        pair.client.fin_after = true;
        if let Some(target) = &mut pair.target {
            target.fin_after = true;
        }
    }
    until(
        &mut [&mut *l],
        pairs,
        "every pipe to end",
        |loops, pairs| {
            loops[0].pipes().is_empty()
                && pairs
                    .iter()
                    .all(|p| p.client.eof && p.target.as_ref().is_some_and(|t| t.eof))
        },
    );
    for (i, pair) in pairs.iter().enumerate() {
        let target = pair.target.as_ref().unwrap();
        assert!(
            pair.client.error.is_none(),
            "pair {i}: client {:?}",
            pair.client.error
        );
        assert!(
            target.error.is_none(),
            "pair {i}: target {:?}",
            target.error
        );
        // The PROXY header is the forwarder's, not the target's.
        let sent = match i {
            AWAITING_HEADER => {
                let end = pair
                    .client
                    .out
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .unwrap();
                &pair.client.out[end + 2..]
            }
            _ => &pair.client.out[..],
        };
        assert_eq!(target.got.len(), sent.len(), "pair {i}: toward target");
        assert!(target.got == sent, "pair {i}: bytes toward target differ");
        assert_eq!(
            pair.client.got.len(),
            target.out.len(),
            "pair {i}: toward client"
        );
        assert!(
            pair.client.got == target.out,
            "pair {i}: bytes toward client differ"
        );
    }
}

#[test]
fn every_stage_survives_a_handover_with_every_byte_once() {
    let mut stages = stages();
    let before = stages.old.pipes();
    let exported = stages.old.reactor.export();
    assert_eq!(
        exported.parcels.len(),
        9,
        "8 pipes and a client awaiting its header"
    );
    let targets = stages.targets.local_addr().unwrap();
    let slow = stages.slow.local_addr().unwrap().as_socket().unwrap();
    let mut new = Loop::new(config(targets, slow));
    let adopted = new.reactor.adopt(received(&exported)).expect("adopted");
    assert_eq!(adopted, 9);
    stages.old.reactor.release_exported();
    assert_eq!(stages.old.reactor.metrics().live_pipes.get(), 0);
    assert_eq!(stages.old.reactor.metrics().awaiting_proxy_header.get(), 0);
    assert_eq!(new.reactor.metrics().live_pipes.get(), 8);
    assert_eq!(new.reactor.metrics().awaiting_proxy_header.get(), 1);
    // The pipes go on where they were: ids, counters, pauses.
    let after = new.pipes();
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.id, new.id);
        assert_eq!(old.route, new.route);
        assert_eq!(old.target, new.target);
        assert_eq!(old.paused_directions, new.paused_directions);
        assert!(new.bytes_toward_target >= old.bytes_toward_target);
        assert!(new.bytes_toward_client >= old.bytes_toward_client);
        // Ages cross in whole milliseconds.
        assert!(new.age + Duration::from_millis(1) >= old.age);
    }
    let max_id = after.iter().map(|p| p.id.0).max().unwrap();
    assert!(
        new.reactor.next_pipe_id > max_id,
        "new ids collide with adopted ones"
    );
    // The held direction stays held until the embedder resumes it.
    for _ in 0..20 {
        new.turn();
        for pair in stages.pairs.iter_mut() {
            pair.client.step();
        }
    }
    assert_eq!(
        new.pipes()[HELD].bytes_toward_target,
        0,
        "a held direction moved"
    );
    finish(&mut new, &mut stages, |l, held| {
        (l.reactor)
            .on_pipe_command(held, PipeAction::Resume(None))
            .unwrap();
    });
}

#[test]
fn the_old_loop_resumes_every_pipe_when_the_new_one_dies_before_driving() {
    let mut stages = stages();
    let exported = stages.old.reactor.export();
    let targets = stages.targets.local_addr().unwrap();
    let slow = stages.slow.local_addr().unwrap().as_socket().unwrap();
    {
        // The new process registers everything, then dies.
        let mut new = Loop::new(config(targets, slow));
        let taken = new.reactor.take_in(received(&exported)).expect("taken in");
        drop(taken);
        drop(new);
    }
    stages.old.reactor.resume_after_failed_handover();
    assert_eq!(stages.old.reactor.metrics().live_pipes.get(), 8);
    let mut old = std::mem::replace(&mut stages.old, Loop::new(Config::with_routes(vec![])));
    finish(&mut old, &mut stages, |l, held| {
        (l.reactor)
            .on_pipe_command(held, PipeAction::Resume(None))
            .unwrap();
    });
}

#[test]
fn a_bundle_with_an_unreadable_record_is_refused_whole_and_nothing_is_kept() {
    let targets = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = targets.local_addr().unwrap();
    let mut old = Loop::new(config(target, target));
    let client = TcpStream::connect(old.addr("plain")).unwrap();
    let _target = accept(&mut old, &targets);
    let mut bundle = old.reactor.export();
    assert_eq!(bundle.parcels.len(), 1);
    // A good pipe, then a record cut short.
    let mut cut = bundle.parcels[0].record.clone();
    cut.truncate(cut.len() / 2);
    bundle.parcels.push(Parcel {
        record: cut,
        fds: Vec::new(),
    });
    let mut new = Loop::new(config(target, target));
    assert!(new.reactor.adopt(received(&bundle)).is_err());
    assert!(new.pipes().is_empty());
    assert_eq!(new.reactor.metrics().live_pipes.get(), 0);
    // The client's pipe lives on in the old loop, untouched.
    drop(client);
    assert_eq!(old.pipes().len(), 1);
}
