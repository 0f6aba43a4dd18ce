//! Abort from another thread: both sides of the pipe get a reset, whatever
//! state it is in, and the rest of the forwarder carries on.

mod common;
use common::faults::*;
use common::hooks::*;
use common::*;

use tcpipe::{CloseReason, Config, PipeId};

#[test]
fn abort_resets_both_sides_of_an_open_a_paused_and_a_half_closed_pipe() {
    let (target_listener, target_addr) = listener();
    let running = Running::start(Config::new("127.0.0.1:0".parse().unwrap(), target_addr));
    for state in ["open", "paused", "half-closed"] {
        let mut client = connect(running.addr());
        let mut upstream = accept(&target_listener);
        let id = running.events.pipe_of(client.local_addr().unwrap());
        assert_delivered(&mut client, &mut upstream, state.as_bytes());
        match state {
            "paused" => running.handle.pause(id).expect("pause"),
            "half-closed" => client.shutdown(std::net::Shutdown::Write).unwrap(),
            _ => {}
        }
        running.handle.abort(id).expect("abort a live pipe");
        assert_reset(&mut client, &format!("the client of the {state} pipe"));
        assert_reset(&mut upstream, &format!("the target of the {state} pipe"));
        assert_eq!(running.events.close_reason(id), CloseReason::Aborted);
    }
    // Other clients are served as before.
    let mut client = connect(running.addr());
    let mut upstream = accept(&target_listener);
    assert_delivered(&mut client, &mut upstream, b"still forwarding");
    running.stop();
}

#[test]
fn a_pipe_is_aborted_by_the_number_its_log_lines_give() {
    let (target_listener, target_addr) = listener();
    let running = Running::start(Config::new("127.0.0.1:0".parse().unwrap(), target_addr));
    let mut client = connect(running.addr());
    let mut upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_delivered(&mut client, &mut upstream, b"live");
    // What the access log writes after `pipe=`, and back.
    let logged = id.to_string();
    assert_eq!(logged, id.get().to_string());
    let number: u64 = logged.parse().expect("a number");
    assert_eq!(u64::from(id), number);
    running
        .handle
        .abort(PipeId::from(number))
        .expect("abort by the logged number");
    assert_reset(&mut client, "the client");
    assert_eq!(running.events.close_reason(id), CloseReason::Aborted);
    running.stop();
}
