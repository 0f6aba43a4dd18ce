//! Hooks: every event an embedder can hear fires with the right data, in
//! the right order, for every way a pipe can end.

mod common;
use common::faults::*;
use common::hooks::*;
use common::upstreams::Backend;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use tcpipe::{CloseReason, Config, Direction, TimeoutKind};

fn config_to(target: SocketAddr) -> Config {
    Config::new("127.0.0.1:0".parse().unwrap(), target)
}

/// The bytes forwarded one way, summed over the pipe's events.
fn delivered(events: &[Event], way: Direction) -> u64 {
    events
        .iter()
        .map(|e| match e {
            Event::Forwarded {
                direction, bytes, ..
            } if *direction == way => *bytes,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_clean_pipe_is_opened_connected_forwarded_and_closed_in_that_order() {
    const SIZE: usize = 300 * 1024;
    let target = echo_server();
    let running = Running::start(config_to(target));
    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    let data = Rng::new(7).bytes(SIZE);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let data = data.clone();
        thread::spawn(move || {
            client.write_all(&data).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    assert_eq!(read_to_end(&mut client), data);
    writer.join().unwrap();
    running.events.closed(id);

    let events = running.events.of(id);
    assert!(
        matches!(&events[0], Event::Opened { route: Some(r), client: c, target: Some(t), .. }
            if r == "default" && *c == client.local_addr().unwrap() && *t == target.to_string()),
        "the first event is not the opening: {events:#?}"
    );
    assert!(
        matches!(&events[1], Event::Connected { target: t, .. } if *t == target.to_string()),
        "the second event is not the connect: {events:#?}"
    );
    assert!(
        matches!(events.last(), Some(Event::Closed {
            reason: CloseReason::Clean,
            route: Some(_),
            bytes_toward_target,
            bytes_toward_client,
            duration,
            ..
        }) if *bytes_toward_target == SIZE as u64
            && *bytes_toward_client == SIZE as u64
            && *duration > Duration::ZERO),
        "the last event is not a clean close with every byte: {events:#?}"
    );
    let middle = &events[2..events.len() - 1];
    assert!(
        middle.iter().all(|e| matches!(e, Event::Forwarded { .. })),
        "only forwarded events may come between connect and close: {events:#?}"
    );
    assert_eq!(delivered(middle, Direction::ClientToTarget), SIZE as u64);
    assert_eq!(delivered(middle, Direction::TargetToClient), SIZE as u64);
    assert!(
        middle.len() < 2 * SIZE / 1024,
        "forwarded was called per write, not per turn: {} calls",
        middle.len()
    );
    running.stop();
}

#[test]
fn a_stalled_target_fills_the_ring_and_draining_it_is_reported() {
    const PUSH: usize = 8 << 20;
    let (target_listener, target_addr) = listener();
    let running = Running::start(config_to(target_addr));
    let mut client = connect(running.addr());
    let mut target = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    let pusher = thread::spawn(move || {
        client.write_all(&vec![1u8; PUSH]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        client
    });
    // The target reads nothing: the ring toward it fills.
    running
        .events
        .wait_for("the ring toward the target full", |e| {
            *e == Event::Full {
                id,
                direction: Direction::ClientToTarget,
            }
        });
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while received < PUSH {
        received += target.read(&mut buf).expect("the target reads");
    }
    running
        .events
        .wait_for("the ring toward the target drained", |e| {
            *e == Event::Drained {
                id,
                direction: Direction::ClientToTarget,
            }
        });
    drop(pusher.join().unwrap());
    let events = running.events.of(id);
    let full = events.iter().position(|e| matches!(e, Event::Full { .. }));
    let drained = events
        .iter()
        .position(|e| matches!(e, Event::Drained { .. }));
    assert!(full < drained, "drained came before full: {events:#?}");
    running.stop();
}

#[test]
fn each_close_reason_is_reported() {
    // Clean, from a client and target that both finish.
    let running = Running::start(config_to(echo_server()));
    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_round_trip(&mut client, b"hello");
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    assert_eq!(running.events.close_reason(id), CloseReason::Clean);

    // The client resets.
    let client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    running.events.wait_for(
        "the connect",
        |e| matches!(e, Event::Connected { id: i, .. } if *i == id),
    );
    reset(client);
    assert_eq!(running.events.close_reason(id), CloseReason::ClientReset);
    running.stop();

    // The target resets.
    let (target_listener, target_addr) = listener();
    let running = Running::start(config_to(target_addr));
    let mut client = connect(running.addr());
    let upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    reset(upstream);
    assert_reset(&mut client, "client");
    assert_eq!(running.events.close_reason(id), CloseReason::TargetReset);

    // The embedder aborts it: both sides get a reset.
    let mut client = connect(running.addr());
    let mut upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    running.handle.abort(id).expect("abort a live pipe");
    assert_reset(&mut client, "client");
    assert_reset(&mut upstream, "target");
    assert_eq!(running.events.close_reason(id), CloseReason::Aborted);
    running.stop();

    // No target can be reached: refused at once, before a pipe is made...
    let running = Running::start(config_to(refused_addr()));
    let client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_eq!(running.events.close_reason(id), CloseReason::ConnectFailed);
    running.stop();
    // ...or a connect that times out, after the pipe was made for it.
    let black_hole = Backend::black_hole();
    let mut config = config_to(black_hole.addr);
    config.routes[0].connect_timeout = Some(Duration::from_millis(200));
    let running = Running::start(config);
    let client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_eq!(running.events.close_reason(id), CloseReason::ConnectFailed);
    assert!(
        matches!(&running.events.of(id)[0], Event::Opened { target: Some(t), .. } if *t == black_hole.addr.to_string()),
        "{:#?}",
        running.events.of(id)
    );
    running.stop();

    // The idle and half-close timeouts.
    let (target_listener, target_addr) = listener();
    let mut config = config_to(target_addr);
    config.routes[0].idle_timeout = Some(Duration::from_millis(200));
    config.routes[0].half_close_timeout = Some(Duration::from_millis(200));
    let running = Running::start(config);
    let client = connect(running.addr());
    let _upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_eq!(
        running.events.close_reason(id),
        CloseReason::Timeout(TimeoutKind::Idle)
    );
    let client = connect(running.addr());
    let _upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        running.events.close_reason(id),
        CloseReason::Timeout(TimeoutKind::HalfClose)
    );
    running.stop();

    // A shutdown's drain timeout.
    let (target_listener, target_addr) = listener();
    let mut config = config_to(target_addr);
    config.drain_timeout = Some(Duration::from_millis(100));
    let running = Running::start(config);
    let client = connect(running.addr());
    let _upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    running.handle.shutdown();
    assert_eq!(running.events.close_reason(id), CloseReason::Shutdown);
    running.stop();
}

#[test]
fn targets_going_down_and_coming_back_are_reported() {
    let mut flaky = Backend::refusing();
    let steady = Backend::echo();
    let mut config = config_to(flaky.addr);
    let route = &mut config.routes[0];
    route.targets.push(tcpipe::Target::from(steady.addr));
    route.fail_threshold = 1;
    route.cooldown = Some(Duration::from_millis(100));
    let running = Running::start(config);

    // The first client is sent to the refusing target, fails over, and is
    // served: that failure took the target down.
    let mut client = connect(running.addr());
    assert_round_trip(&mut client, b"failed over");
    let flaky_name = flaky.addr.to_string();
    let down = Event::TargetDown {
        route: "default".into(),
        target: flaky_name.clone(),
    };
    running.events.wait_for("the target down", |e| *e == down);

    // Once it listens, the next trial after the cooldown brings it back.
    flaky.listen();
    let up = Event::TargetUp {
        route: "default".into(),
        target: flaky_name,
    };
    let back = wait_until(DEADLINE, || {
        let mut client = connect(running.addr());
        assert_round_trip(&mut client, b"trial");
        running.events.all().contains(&up)
    });
    assert!(
        back,
        "never heard the target up; events: {:#?}",
        running.events.all()
    );
    let all = running.events.all();
    let (d, u) = (
        all.iter().position(|e| *e == down),
        all.iter().position(|e| *e == up),
    );
    assert!(d < u, "up came before down: {all:#?}");
    drop(client);
    running.stop();
}
