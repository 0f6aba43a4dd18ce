//! Pause and resume from another thread, of both directions or one, and
//! from a hook: a paused direction does not read its source, so the
//! kernel's window pushes back on that peer while the other direction
//! flows; nothing buffered is lost, the timeouts wait, and after resume
//! every byte arrives.

mod common;
use common::faults::*;
use common::hooks::*;
use common::*;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tcpipe::{CloseReason, CommandError, Config, Direction, PipeId};

const PUSH: usize = 64 << 20;
const PAUSE: Duration = Duration::from_secs(2);

/// A target that reads to EOF, counting and hashing what it gets.
fn sink(listener: TcpListener, progress: Arc<AtomicUsize>) -> thread::JoinHandle<Fnv> {
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let (mut hash, mut buf) = (Fnv::default(), vec![0u8; 256 * 1024]);
        loop {
            let n = stream.read(&mut buf).expect("the target's read");
            if n == 0 {
                return hash;
            }
            hash.update(&buf[..n]);
            progress.fetch_add(n, Ordering::SeqCst);
        }
    })
}

/// Waits until paused pipe `id` has delivered what it had buffered and the
/// target has read every byte the forwarder wrote to it (some may wait in
/// the socket buffers meanwhile); returns that count.
fn settle(running: &Running, id: tcpipe::PipeId, received: &AtomicUsize) -> usize {
    let mut delivered = None;
    let settled = wait_until(DEADLINE, || {
        let pipes = running.handle.pipes().unwrap();
        let pipe = pipes
            .iter()
            .find(|p| p.id == id)
            .expect("the paused pipe lives");
        delivered = Some(pipe.bytes_toward_target as usize);
        pipe.buffered_toward_target == 0
            && received.load(Ordering::SeqCst) == pipe.bytes_toward_target as usize
    });
    assert!(
        settled,
        "the target never got what was delivered: {delivered:?}"
    );
    received.load(Ordering::SeqCst)
}

#[test]
fn a_pipe_paused_for_2s_while_its_client_pushes_64_mib_loses_nothing_and_resumes() {
    let (target_listener, target_addr) = listener();
    let received = Arc::new(AtomicUsize::new(0));
    let sink = sink(target_listener, Arc::clone(&received));
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target_addr);
    // Shorter than the pause: a paused pipe's timeouts wait.
    config.routes[0].idle_timeout = Some(Duration::from_millis(500));
    let running = Running::start(config);

    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let pusher = {
        let written = Arc::clone(&written);
        thread::spawn(move || {
            let (mut rng, mut sent) = (Rng::new(64), Fnv::default());
            let mut chunk = vec![0u8; 64 * 1024];
            for _ in 0..PUSH / chunk.len() {
                rng.fill(&mut chunk);
                sent.update(&chunk);
                client.write_all(&chunk).expect("the client's write");
                written.fetch_add(chunk.len(), Ordering::SeqCst);
            }
            client.shutdown(Shutdown::Write).unwrap();
            sent
        })
    };

    // Paused mid-stream.
    assert!(wait_until(DEADLINE, || received.load(Ordering::SeqCst) > 1 << 20));
    running.handle.pause(id).expect("pause a live pipe");
    let info = running.handle.pipes().unwrap();
    assert!(info.iter().any(|p| p.id == id && p.paused), "{info:#?}");
    // What was buffered when it paused may still arrive; then nothing.
    let settled = settle(&running, id, &received);
    // The pause itself is what is under test here.
    thread::sleep(PAUSE);
    assert_eq!(
        received.load(Ordering::SeqCst),
        settled,
        "bytes reached the target while the pipe was paused"
    );
    assert!(
        written.load(Ordering::SeqCst) < PUSH,
        "the client wrote all 64 MiB while paused: nothing pushed back"
    );
    assert!(
        running
            .events
            .all()
            .iter()
            .all(|e| !matches!(e, Event::Closed { .. })),
        "the paused pipe ended: {:#?}",
        running.events.of(id)
    );

    running.handle.resume(id).expect("resume it");
    let sent = pusher.join().expect("the client pushed everything");
    let got = sink.join().expect("the target read everything");
    assert_eq!(received.load(Ordering::SeqCst), PUSH, "bytes were lost");
    assert_eq!(got, sent, "bytes were altered");
    running.stop();
}

#[test]
fn pausing_a_pipe_that_does_not_exist_says_so() {
    let running = Running::start(Config::new("127.0.0.1:0".parse().unwrap(), echo_server()));
    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    running.events.closed(id);
    for result in [
        running.handle.pause(id),
        running.handle.resume(id),
        running.handle.abort(id),
    ] {
        assert!(
            matches!(result, Err(CommandError::NoSuchPipe(gone)) if gone == id),
            "{result:?}"
        );
    }
    running.stop();
}

/// How long a test waits to see that nothing moves while paused.
const HELD: Duration = Duration::from_millis(800);

#[test]
fn a_paused_upload_waits_while_replies_still_reach_the_client() {
    const UPLOAD: usize = 4 << 20;
    let (target_listener, target_addr) = listener();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target_addr);
    // Shorter than the pause: the timeouts wait while a direction is paused.
    config.routes[0].idle_timeout = Some(Duration::from_millis(300));
    let running = Running::start(config);
    let mut client = connect(running.addr());
    let mut upstream = accept(&target_listener);
    let id = running.events.pipe_of(client.local_addr().unwrap());
    assert_delivered(&mut client, &mut upstream, b"before");

    running
        .handle
        .pause_direction(id, Direction::ClientToTarget)
        .expect("pause the upload");
    let info = running.handle.pipes().unwrap();
    let pipe = info.iter().find(|p| p.id == id).expect("listed");
    assert_eq!(pipe.paused_directions, [true, false], "{pipe:#?}");
    assert!(pipe.paused);

    let data = Rng::new(11).bytes(UPLOAD);
    let uploader = {
        let (mut client, data) = (client.try_clone().unwrap(), data.clone());
        thread::spawn(move || {
            client.write_all(&data).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    // The other way flows as ever.
    assert_delivered(&mut upstream, &mut client, b"a reply while uploads wait");
    assert_nothing_arrives(&mut upstream, HELD, "the upload is paused");
    assert!(
        running
            .events
            .of(id)
            .iter()
            .all(|e| !matches!(e, Event::Closed { .. })),
        "the half-paused pipe ended: {:#?}",
        running.events.of(id)
    );

    running
        .handle
        .resume_direction(id, Direction::ClientToTarget)
        .expect("resume the upload");
    assert_eq!(
        read_to_end(&mut upstream),
        data,
        "the upload was altered or cut"
    );
    uploader.join().unwrap();
    upstream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"");
    assert_eq!(running.events.close_reason(id), CloseReason::Clean);
    running.stop();
}

#[test]
fn a_hook_holds_uploads_above_a_quota_until_the_handle_resumes_them() {
    const QUOTA: u64 = 256 << 10;
    const UPLOAD: usize = 16 << 20;
    let (target_listener, target_addr) = listener();
    let received = Arc::new(AtomicUsize::new(0));
    let sink = sink(target_listener, Arc::clone(&received));
    let config = Config::new("127.0.0.1:0".parse().unwrap(), target_addr);
    let mut uploaded: HashMap<PipeId, u64> = HashMap::new();
    let running = Running::start_reacting(config, move |event, control| {
        if let Event::Forwarded {
            id,
            direction: Direction::ClientToTarget,
            bytes,
        } = *event
        {
            let total = uploaded.entry(id).or_default();
            let before = *total;
            *total += bytes;
            if before < QUOTA && *total >= QUOTA {
                control.pause(Direction::ClientToTarget);
            }
        }
    });
    let mut client = connect(running.addr());
    let id = running.events.pipe_of(client.local_addr().unwrap());
    let pusher = thread::spawn(move || {
        let (mut rng, mut sent) = (Rng::new(5), Fnv::default());
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..UPLOAD / chunk.len() {
            rng.fill(&mut chunk);
            sent.update(&chunk);
            client.write_all(&chunk).expect("the client's write");
        }
        client.shutdown(Shutdown::Write).unwrap();
        sent
    });

    let paused = wait_until(DEADLINE, || {
        running
            .handle
            .pipes()
            .unwrap()
            .iter()
            .any(|p| p.id == id && p.paused_directions == [true, false])
    });
    assert!(
        paused,
        "the hook never paused the upload: {:#?}",
        running.handle.pipes()
    );
    let held = settle(&running, id, &received);
    thread::sleep(HELD); // the pause itself is under test
    assert_eq!(
        received.load(Ordering::SeqCst),
        held,
        "bytes passed the paused upload"
    );
    // What was in flight when the quota was crossed still arrives: a turn's
    // reads at most beyond the quota.
    assert!(
        held as u64 >= QUOTA && held < UPLOAD,
        "{held} bytes arrived"
    );

    running
        .handle
        .resume_direction(id, Direction::ClientToTarget)
        .expect("let the upload go");
    let sent = pusher.join().expect("the client pushed everything");
    assert_eq!(sink.join().expect("the target read everything"), sent);
    assert_eq!(received.load(Ordering::SeqCst), UPLOAD, "bytes were lost");
    running.stop();
}
