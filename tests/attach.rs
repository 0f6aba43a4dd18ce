//! Attaching sockets: an embedder hands the forwarder a client and a target
//! it connected itself (std or mio streams), and they are piped with the
//! same flow control, half-close and reset rules as any other pipe, even by
//! a forwarder with no route at all.

mod common;
use common::faults::*;
use common::hooks::*;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use tcpipe::{AttachOptions, CloseReason, CommandError, Config};

/// Two connected sockets: the end the test keeps and the end it hands over.
fn socket_pair() -> (TcpStream, TcpStream) {
    let (listener, addr) = listener();
    let kept = connect(addr);
    let given = accept(&listener);
    (kept, given)
}

fn no_routes() -> Running {
    Running::start(Config::with_routes(Vec::new()))
}

#[test]
fn attached_sockets_forward_both_ways_and_half_close_cleanly() {
    let running = no_routes();
    assert_eq!(
        running.addr, None,
        "a forwarder with no routes listens nowhere"
    );
    let (mut client, client_end) = socket_pair();
    let (mut target, target_end) = socket_pair();
    let id = running
        .handle
        .attach(client_end, target_end)
        .expect("attach two connected sockets");

    assert_delivered(&mut client, &mut target, b"to the target");
    assert_delivered(&mut target, &mut client, b"to the client");
    // A large upload, then the client's FIN: the target gets every byte
    // and then EOF, while it can still answer.
    let data = Rng::new(3).bytes(5 << 20);
    let uploader = {
        let (mut client, data) = (client.try_clone().unwrap(), data.clone());
        thread::spawn(move || {
            client.write_all(&data).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    assert_eq!(read_to_end(&mut target), data, "the upload arrived altered");
    uploader.join().unwrap();
    target.write_all(b"the answer after your FIN").unwrap();
    target.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"the answer after your FIN");

    assert_eq!(running.events.close_reason(id), CloseReason::Clean);
    let events = running.events.of(id);
    assert!(
        matches!(&events[0], Event::Opened { route: None, .. }),
        "{events:#?}"
    );
    running.stop();
}

#[test]
fn a_mio_target_still_connecting_is_attached_and_a_reset_is_passed_on() {
    let running = no_routes();
    let (target_listener, target_addr) = listener();
    let (mut client, client_end) = socket_pair();
    // Connecting, not yet accepted: the forwarder waits for the connect.
    let connecting = mio::net::TcpStream::connect(target_addr).expect("start a connect");
    let id = running
        .handle
        .attach_with(client_end, connecting, AttachOptions::default())
        .expect("attach");
    client.write_all(b"sent while connecting").unwrap();
    let mut target = accept(&target_listener);
    let mut got = [0u8; 21];
    target.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"sent while connecting");

    reset(target);
    assert_reset(&mut client, "client");
    assert_eq!(running.events.close_reason(id), CloseReason::TargetReset);
    running.stop();
}

#[test]
fn attach_options_that_do_not_hold_together_are_refused() {
    let running = no_routes();
    let (_client, client_end) = socket_pair();
    let (_target, target_end) = socket_pair();
    let options = AttachOptions {
        low_water: 1 << 20,
        ..AttachOptions::default()
    };
    match running.handle.attach_with(client_end, target_end, options) {
        Err(CommandError::Invalid(e)) => assert_eq!(e.key, "low_water"),
        other => panic!("bad options were taken: {other:?}"),
    }
    running.stop();
}

#[test]
fn early_bytes_reach_the_target_first_exactly_once_and_count_as_the_clients() {
    let running = no_routes();
    let (mut client, client_end) = socket_pair();
    let (mut target, target_end) = socket_pair();
    // What an embedder read itself to pick the target: it goes first.
    let first_line = b"HELLO backend-b\n".to_vec();
    let options = AttachOptions {
        early_bytes: first_line.clone(),
        ..AttachOptions::default()
    };
    let id = running
        .handle
        .attach_with(client_end, target_end, options)
        .expect("attach with early bytes");
    client.write_all(b"and the rest").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut expected = first_line.clone();
    expected.extend_from_slice(b"and the rest");
    assert_eq!(
        read_to_end(&mut target),
        expected,
        "early bytes lost, doubled or late"
    );
    target.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"");
    match running.events.closed(id) {
        Event::Closed {
            reason,
            bytes_toward_target,
            ..
        } => {
            assert_eq!(reason, CloseReason::Clean);
            assert_eq!(bytes_toward_target, expected.len() as u64);
        }
        _ => unreachable!(),
    }
    running.stop();
}

#[test]
fn early_bytes_larger_than_the_buffer_are_refused() {
    let running = no_routes();
    let (_client, client_end) = socket_pair();
    let (_target, target_end) = socket_pair();
    let options = AttachOptions {
        buffer_size: 4096,
        low_water: 2048,
        early_bytes: vec![b'x'; 4097],
        ..AttachOptions::default()
    };
    match running.handle.attach_with(client_end, target_end, options) {
        Err(CommandError::Invalid(e)) => assert_eq!(e.key, "early_bytes"),
        other => panic!("early bytes beyond the buffer were taken: {other:?}"),
    }
    running.stop();
}
