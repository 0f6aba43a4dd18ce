//! Reload: SIGHUP (or the library handle) applies a changed config in
//! place. New routes start, removed routes stop accepting while their pipes
//! run on (until the drain timeout), targets come and go, options change
//! for new pipes, and no live pipe notices: every byte of every stream gets
//! through.

mod common;
use common::config::*;
use common::faults::*;
use common::upstreams::*;
use common::*;

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Each stream sends this much before the reload and as much after.
const HALF: usize = 1 << 20;

/// A client streaming `2 × HALF` bytes through an echo target: the first
/// half at once, the second once told to, then a half-close; a reader
/// takes the echo until its end.
struct Stream {
    go: Sender<()>,
    writer: JoinHandle<Fnv>,
    reader: JoinHandle<(usize, Fnv)>,
}

impl Stream {
    /// Returns once the first half has been written.
    fn start(addr: SocketAddr, seed: u64) -> Stream {
        let client = connect(addr);
        let mut reading = client.try_clone().expect("clone the client");
        let reader = thread::spawn(move || receive_rest(&mut reading, 0, Fnv::default()));
        let (go, wait): (Sender<()>, Receiver<()>) = mpsc::channel();
        let (halfway, reached) = mpsc::channel();
        let writer = thread::spawn(move || {
            let mut client = client;
            let (mut rng, mut sent) = (Rng::new(seed), Fnv::default());
            let mut chunk = vec![0u8; 16 * 1024];
            for written in (0..2 * HALF).step_by(chunk.len()) {
                if written == HALF {
                    halfway.send(()).expect("the test waits");
                    wait.recv().expect("the test says go");
                }
                rng.fill(&mut chunk);
                sent.update(&chunk);
                client
                    .write_all(&chunk)
                    .unwrap_or_else(|e| panic!("stream {seed} could not send: {e}"));
            }
            client.shutdown(Shutdown::Write).expect("half-close");
            sent
        });
        reached.recv_timeout(DEADLINE).expect("the stream started");
        Stream { go, writer, reader }
    }

    fn finish(self, what: &str) {
        let sent = self.writer.join().expect("writer");
        let (len, received) = self.reader.join().expect("reader");
        assert_eq!(len, 2 * HALF, "{what}: the echo was cut short");
        assert_eq!(received, sent, "{what}: the echo was altered");
    }
}

fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect(addr) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("a connect to a removed route's address gave {other:?}, not a refusal"),
    }
}

fn assert_mentions(summary: &[String], fragments: &[&str]) {
    for fragment in fragments {
        assert!(
            summary.iter().any(|line| line.contains(fragment)),
            "the reload summary does not say '{fragment}': {summary:#?}"
        );
    }
}

#[test]
fn a_reload_adds_and_removes_routes_and_targets_while_20_pipes_stream_every_byte() {
    let (k1, k2, k3) = (Backend::echo(), Backend::echo(), Backend::echo());
    let (g1, n1) = (Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&format!(
        "[global]\ndrain-timeout = \"0\"\n{}{}",
        route("keep", &[k1.addr, k2.addr], ""),
        route("gone", &[g1.addr], ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let (keep, gone) = (tcpipe.route_addr("keep"), tcpipe.route_addr("gone"));

    let mut idle_since_before = connect(keep);
    assert_round_trip(&mut idle_since_before, b"opened before the reload");
    let streams: Vec<(String, Stream)> = (0..20)
        .map(|n| {
            let (name, addr) = if n % 2 == 0 {
                ("keep", keep)
            } else {
                ("gone", gone)
            };
            (format!("stream {n} on {name}"), Stream::start(addr, n))
        })
        .collect();
    // A client's write can complete into socket buffers before its bytes
    // reach the target: wait until every stream has reached its own.
    assert!(
        wait_until(DEADLINE, || k1.served() + k2.served() == 11
            && g1.served() == 10),
        "the streams did not all reach their targets"
    );
    let k1_before = k1.served();
    assert!(
        k1_before > 0,
        "no stream went to the target about to be removed"
    );

    file.write(&format!(
        "[global]\ndrain-timeout = \"0\"\n{}{}",
        route("keep", &[k2.addr, k3.addr], "idle-timeout = \"500ms\""),
        route("new", &[n1.addr], ""),
    ));
    let summary = tcpipe.reload_report().expect("the reload applies");
    assert_mentions(
        &summary,
        &[
            "route new: added",
            "route gone: removed",
            &format!("+{}", k3.addr),
            &format!("-{}", k1.addr),
            "idle-timeout 0 -> 500ms",
        ],
    );

    // Every pipe open across the reload, on a kept route, on a removed
    // route and on a removed target, delivers every byte both ways.
    for (_, stream) in &streams {
        stream.go.send(()).expect("the writer waits");
    }
    for (what, stream) in streams {
        stream.finish(&what);
    }

    // The new config is in force for new clients.
    assert_refused(gone);
    assert_served(connect(tcpipe.route_addr("new")), b"to the new route");
    assert_eq!(n1.served(), 1, "the new route's client went elsewhere");
    assert_eq!(tcpipe.route_addr("keep"), keep, "the kept route moved");
    for n in 0..6 {
        assert_served(connect(keep), format!("after the reload {n}").as_bytes());
    }
    assert_eq!(
        k1.served(),
        k1_before,
        "a new client went to the removed target"
    );
    assert!(
        k3.served() >= 3,
        "the added target took {} of 6 new clients",
        k3.served()
    );

    // The kept route's new idle timeout applies to new pipes only.
    let mut idle_since_after = connect(keep);
    assert_round_trip(&mut idle_since_after, b"opened after the reload");
    let idle = Instant::now();
    assert_reset(&mut idle_since_after, "a new idle pipe on the kept route");
    assert!(
        idle.elapsed() >= Duration::from_millis(450),
        "reset after {:?}",
        idle.elapsed()
    );
    assert_round_trip(&mut idle_since_before, b"the old pipe keeps its settings");
}

#[test]
fn a_removed_routes_pipes_run_on_until_the_drain_timeout() {
    let (stay, gone) = (Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&format!(
        "[global]\ndrain-timeout = \"1s\"\n{}{}",
        route("stay", &[stay.addr], ""),
        route("gone", &[gone.addr], ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let mut on_gone = connect(tcpipe.route_addr("gone"));
    assert_round_trip(&mut on_gone, b"before");
    let mut on_stay = connect(tcpipe.route_addr("stay"));
    assert_round_trip(&mut on_stay, b"before");

    file.write(&format!(
        "[global]\ndrain-timeout = \"1s\"\n{}",
        route("stay", &[stay.addr], "")
    ));
    let removed = Instant::now();
    let summary = tcpipe.reload_report().expect("the reload applies");
    assert_mentions(
        &summary,
        &["route gone: removed; its 1 pipe may finish within 1s"],
    );
    assert_round_trip(&mut on_gone, b"the removed route's pipe still flows");

    assert_reset(
        &mut on_gone,
        "the removed route's pipe at its drain timeout",
    );
    let lived = removed.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&lived),
        "reset {lived:?} after the reload, with a drain timeout of 1s"
    );
    assert_round_trip(&mut on_stay, b"the kept route's pipe is untouched");
}

#[test]
fn a_route_can_take_over_the_listening_socket_of_a_removed_one() {
    // The address moves from one route to a new one in the same reload:
    // the socket is handed over, so clients never find it closed.
    let (old, new) = (Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&route("old", &[old.addr], ""));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("old");
    file.write(&format!(
        "[[route]]\nname = \"new\"\nlisten = \"{addr}\"\ntargets = \"{}\"\n",
        new.addr
    ));
    let summary = tcpipe.reload_report().expect("the reload applies");
    assert_mentions(&summary, &["route new: added", "route old: removed"]);
    assert_served(connect(addr), b"to the new route");
    assert_eq!((old.served(), new.served()), (0, 1));
}

#[test]
fn the_library_handle_reloads_in_place() {
    let (first, second) = (Backend::echo(), Backend::echo());
    let local = "127.0.0.1:0".parse().unwrap();
    let config = tcpipe::Config::new(local, first.addr);
    let forwarder = tcpipe::Forwarder::bind(config.clone()).expect("bind");
    let addr = forwarder.local_addr().expect("a listener");
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());
    let mut before = connect(addr);
    assert_round_trip(&mut before, b"before");

    // A config that does not validate changes nothing.
    let mut broken = config.clone();
    broken.routes[0].low_water = broken.routes[0].buffer_size;
    match handle.reload(broken) {
        Err(tcpipe::ReloadError::Invalid(e)) => assert_eq!(e.key, "route[0].low-water"),
        other => panic!("an invalid config was not refused: {other:?}"),
    }

    let mut changed = config.clone();
    changed.routes[0].targets = vec![tcpipe::Target::from(second.addr)];
    changed
        .routes
        .push(tcpipe::Route::new("extra", local, second.addr));
    let reloaded = handle.reload(changed).expect("the reload applies");
    let extra = reloaded
        .listening
        .iter()
        .find(|(route, _)| route == "extra")
        .map(|(_, addr)| *addr)
        .expect("the new route listens");
    assert_served(connect(addr), b"default route, new target");
    assert_served(connect(extra), b"the extra route");
    assert_eq!((first.served(), second.served()), (1, 2));
    assert_round_trip(&mut before, b"the old pipe, on the old target");

    handle.shutdown();
    before.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut before).is_empty());
    running.join().expect("loop thread").expect("run");
}

#[test]
fn a_kept_target_keeps_its_health_across_a_reload() {
    // The dead target goes down after one failure, for an hour: no client
    // may try it again, reload or not.
    let live = Backend::echo();
    let dead = refused_addr();
    let mut config = tcpipe::Config::new("127.0.0.1:0".parse().unwrap(), dead);
    let route = &mut config.routes[0];
    route.targets.push(tcpipe::Target::from(live.addr));
    route.fail_threshold = 1;
    route.cooldown = Some(Duration::from_secs(3600));
    let forwarder = tcpipe::Forwarder::bind(config.clone()).expect("bind");
    let addr = forwarder.local_addr().expect("a listener");
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());

    assert_served(connect(addr), b"fails over from the dead target");
    let failures = handle.metrics().connect_failures_total.get();
    assert_eq!(failures, 1);

    config.routes[0].idle_timeout = Some(Duration::from_secs(600));
    handle.reload(config).expect("the reload applies");
    for n in 0..4 {
        assert_served(connect(addr), format!("after the reload {n}").as_bytes());
    }
    assert_eq!(
        handle.metrics().connect_failures_total.get(),
        failures,
        "the reload forgot that the dead target is down"
    );
    handle.shutdown();
    running.join().expect("loop thread").expect("run");
}

#[test]
fn a_removed_targets_pooled_connections_are_closed() {
    let (old_target, old_addr) = listener();
    let replacement = Backend::echo();
    let file = ConfigFile::new(&route("pooled", &[old_addr], "pool = 2"));
    let tcpipe = Tcpipe::start_config(&file);
    let mut pooled: Vec<TcpStream> = (0..2).map(|_| accept(&old_target)).collect();

    file.write(&route("pooled", &[replacement.addr], "pool = 2"));
    let summary = tcpipe.reload_report().expect("the reload applies");
    assert_mentions(&summary, &[&format!("-{old_addr}")]);
    for (n, conn) in pooled.iter_mut().enumerate() {
        let (bytes, end) = read_until_closed(conn);
        assert_eq!(bytes, 0, "pooled connection {n} carried bytes");
        assert!(
            end.is_ok(),
            "pooled connection {n} ended with {end:?}, not closed"
        );
    }
    assert_served(connect(tcpipe.route_addr("pooled")), b"to the replacement");
}

#[test]
fn a_forwarder_with_no_routes_gains_one_by_reload() {
    let target = Backend::echo();
    let forwarder = tcpipe::Forwarder::bind(tcpipe::Config::with_routes(Vec::new())).expect("bind");
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());

    let route = tcpipe::Route::new("web", "127.0.0.1:0".parse().unwrap(), target.addr);
    let reloaded = handle
        .reload(tcpipe::Config::with_routes(vec![route]))
        .expect("the reload applies");
    assert_mentions(&reloaded.summary, &["route web: added"]);
    let (_, addr) = reloaded.listening[0];
    assert_served(connect(addr), b"through a route added by reload");
    handle.shutdown();
    running.join().expect("loop thread").expect("run");
}
