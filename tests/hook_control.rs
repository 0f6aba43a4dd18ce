//! What a hook does to the pipe it hears about, from inside the hook:
//! abort it, pause a direction through its `PipeControl`, send a command
//! that does not wait (`Handle::submit`), and what happens when it calls a
//! blocking `Handle` method instead: an error at once, not a forwarder
//! frozen on its own reply.

mod common;
use common::faults::*;
use common::hooks::*;
use common::*;

use std::sync::{Arc, Mutex, OnceLock};

use tcpipe::{CloseReason, CommandError, Config, Direction, Handle, PipeAction};

fn config_to(target: std::net::SocketAddr) -> Config {
    Config::new("127.0.0.1:0".parse().unwrap(), target)
}

#[test]
fn a_hook_that_calls_the_blocking_handle_gets_an_error_and_the_forwarder_carries_on() {
    let handle: Arc<OnceLock<Handle>> = Arc::default();
    let answers: Arc<Mutex<Vec<Result<(), CommandError>>>> = Arc::default();
    let running = {
        let (handle, answers) = (Arc::clone(&handle), Arc::clone(&answers));
        Running::start_reacting(config_to(echo_server()), move |event, _| {
            if let (Event::Opened { id, .. }, Some(handle)) = (event, handle.get()) {
                let listed = handle.pipes().map(|_| ());
                answers.lock().unwrap().extend([handle.pause(*id), listed]);
            }
        })
    };
    let _ = handle.set(running.handle.clone());
    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    {
        let answers = answers.lock().unwrap();
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Err(CommandError::OnLoopThread))),
            "{answers:?}"
        );
    }
    // Not paused, not frozen: the pipe forwards and the handle answers.
    assert_round_trip(&mut client, b"still forwarding");
    let pipes = running
        .handle
        .pipes()
        .expect("the loop answers other threads");
    assert!(pipes.iter().any(|p| p.id == id && !p.paused), "{pipes:#?}");
    running.stop();
}

#[test]
fn a_hook_aborts_its_pipe_at_opened_and_the_client_is_reset() {
    let running = Running::start_reacting(config_to(echo_server()), |event, control| {
        if let Event::Opened { .. } = event {
            control.abort();
        }
    });
    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_reset(&mut client, "the client of the aborted pipe");
    assert_eq!(running.events.close_reason(id), CloseReason::Aborted);
    let events = running.events.of(id);
    assert!(
        !events.iter().any(|e| matches!(e, Event::Forwarded { .. })),
        "an aborted pipe forwarded: {events:#?}"
    );
    running.stop();
}

#[test]
fn a_hook_pauses_replies_at_connected_and_a_submitted_resume_lets_them_through() {
    let (target_listener, target_addr) = listener();
    let running = Running::start_reacting(config_to(target_addr), |event, control| {
        if let Event::Connected { .. } = event {
            control.pause(Direction::TargetToClient);
        }
    });
    let mut client = connect(running.addr());
    let mut upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    running.events.wait_for(
        "the connect",
        |e| matches!(e, Event::Connected { id: i, .. } if *i == id),
    );
    // Uploads flow; replies wait.
    assert_delivered(&mut client, &mut upstream, b"the request");
    std::io::Write::write_all(&mut upstream, b"the reply").unwrap();
    assert_nothing_arrives(
        &mut client,
        std::time::Duration::from_millis(500),
        "replies are paused",
    );
    let pipes = running.handle.pipes().unwrap();
    let pipe = pipes.iter().find(|p| p.id == id).expect("listed");
    assert_eq!(pipe.paused_directions, [false, true]);

    // `submit` does not wait: its future resolves once the loop has done it.
    let pending = running
        .handle
        .submit(id, PipeAction::Resume(Some(Direction::TargetToClient)));
    pending.wait().expect("resume the replies");
    let mut got = [0u8; 9];
    std::io::Read::read_exact(&mut client, &mut got).unwrap();
    assert_eq!(&got, b"the reply");
    running.stop();
}
