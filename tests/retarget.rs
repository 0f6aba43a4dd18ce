//! Re-targeting: a pipe that has not connected yet is pointed at another
//! address, from its hook or through the handle; the client's early bytes
//! wait in the ring and reach the new target exactly once. Once connected
//! it is too late; a re-target whose connect fails ends the pipe.

mod common;
use common::faults::*;
use common::hooks::*;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};

use tcpipe::{CloseReason, CommandError, Config, PipeState};

fn config_to(target: SocketAddr) -> Config {
    Config::new("127.0.0.1:0".parse().unwrap(), target)
}

#[test]
fn a_hook_points_a_new_pipe_elsewhere_and_the_new_target_gets_everything() {
    let black_hole = BlackHole::new();
    let (chosen, chosen_addr) = listener();
    let running = Running::start_reacting(config_to(black_hole.addr), move |event, control| {
        if let Event::Opened { .. } = event {
            control
                .retarget(chosen_addr)
                .expect("a new pipe may be re-targeted");
        }
    });
    let mut client = connect(running.addr());
    client.write_all(b"to the chosen one").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut upstream = accept(&chosen);
    assert_eq!(read_to_end(&mut upstream), b"to the chosen one");
    upstream.write_all(b"answer").unwrap();
    upstream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"answer");

    let id = running.events.pipe_of(client.local_addr().unwrap());
    let connected = running.events.wait_for(
        "the connect",
        |e| matches!(e, Event::Connected { id: i, .. } if *i == id),
    );
    assert!(
        matches!(&connected, Event::Connected { target, .. } if *target == chosen_addr.to_string()),
        "named by its address: {connected:?}"
    );
    match running.events.closed(id) {
        Event::Closed {
            reason,
            bytes_toward_target,
            ..
        } => {
            assert_eq!(reason, CloseReason::Clean);
            assert_eq!(bytes_toward_target, 17, "each early byte exactly once");
        }
        _ => unreachable!(),
    }
    running.stop();
}

#[test]
fn a_connecting_pipe_retargeted_through_the_handle_delivers_its_early_bytes_once() {
    let black_hole = BlackHole::new();
    let (chosen, chosen_addr) = listener();
    let running = Running::start(config_to(black_hole.addr));
    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    client.write_all(b"sent while connecting").unwrap();
    let waiting = wait_until(DEADLINE, || {
        running.handle.pipes().unwrap().iter().any(|p| {
            p.id == id && p.state == PipeState::Connecting && p.buffered_toward_target == 21
        })
    });
    assert!(
        waiting,
        "the early bytes never waited: {:#?}",
        running.handle.pipes()
    );

    running
        .handle
        .retarget(id, chosen_addr)
        .expect("a connecting pipe may be re-targeted");
    let listed = running.handle.pipes().unwrap();
    let pipe = listed.iter().find(|p| p.id == id).expect("listed");
    assert_eq!(
        pipe.target,
        chosen_addr.to_string(),
        "named by its address while connecting"
    );
    let mut upstream = accept(&chosen);
    let mut got = [0u8; 21];
    upstream.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"sent while connecting");
    assert_delivered(&mut client, &mut upstream, b" and after");
    assert_delivered(&mut upstream, &mut client, b"back");
    drop(black_hole);
    running.stop();
}

#[test]
fn a_connected_pipe_cannot_be_retargeted() {
    let (target_listener, target_addr) = listener();
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let running = {
        let refusals = Arc::clone(&refusals);
        Running::start_reacting(config_to(target_addr), move |event, control| {
            if let Event::Connected { .. } = event {
                assert!(!control.can_retarget());
                refusals.lock().unwrap().push(control.retarget(target_addr));
            }
        })
    };
    let mut client = connect(running.addr());
    let mut upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_delivered(&mut client, &mut upstream, b"connected");
    assert!(
        matches!(refusals.lock().unwrap().as_slice(), [Err(CommandError::TooLate(i))] if *i == id),
        "{:?}",
        refusals.lock().unwrap()
    );
    match running.handle.retarget(id, target_addr) {
        Err(CommandError::TooLate(i)) => assert_eq!(i, id),
        other => panic!("a connected pipe was re-targeted: {other:?}"),
    }
    assert_delivered(&mut upstream, &mut client, b"still the same target");
    running.stop();
}

#[test]
fn a_retarget_whose_connect_fails_ends_the_pipe_with_no_failover() {
    let (target_listener, target_addr) = listener();
    let nowhere = refused_addr();
    let running = Running::start_reacting(config_to(target_addr), move |event, control| {
        if let Event::Opened { .. } = event {
            control.retarget(nowhere).expect("re-target");
        }
    });
    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_reset(
        &mut client,
        "the client of a pipe whose chosen target refused",
    );
    assert_eq!(running.events.close_reason(id), CloseReason::ConnectFailed);
    // The route's own target is not tried instead.
    target_listener.set_nonblocking(true).unwrap();
    while let Ok((mut early, _)) = target_listener.accept() {
        // The route's first dial may have landed before the hook ran; it
        // was dropped unused.
        assert_eq!(read_until_closed(&mut early).0, 0);
    }
    running.stop();
}
