//! Descriptor accounting: with 1,500 pipes open at once the forwarder holds
//! exactly two descriptors per pipe, and once they have all closed (a third
//! by reset, the rest by FIN in both directions) it is back to the
//! descriptors it held before: no socket is leaked or left half-dead.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;

const PIPES: usize = 1_500;
/// Descriptors the forwarder may open: its pipes plus plenty of room.
const FORWARDER_FD_LIMIT: u32 = 8_192;
/// The test process holds both ends outside the forwarder: each client and
/// the echo target's side of each pipe.
const TEST_FDS_NEEDED: u64 = 2 * PIPES as u64 + 512;
const PAYLOAD: usize = 4 * 1024;

/// (soft, hard) limit on open files of this process.
fn fd_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a 'Max open files' line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Makes sure this process may hold the test's sockets, raising its own soft
/// limit (with prlimit, as `ulimit -n` would) when it is too low.
fn ensure_fd_room() {
    let (soft, hard) = fd_limits();
    if soft >= TEST_FDS_NEEDED {
        return;
    }
    let new_hard = hard.max(TEST_FDS_NEEDED);
    let raised = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={TEST_FDS_NEEDED}:{new_hard}"))
        .status()
        .is_ok_and(|status| status.success());
    let (soft, _) = fd_limits();
    assert!(
        raised && soft >= TEST_FDS_NEEDED,
        "this test needs {TEST_FDS_NEEDED} open files but the limit is {soft} \
         (hard {hard}); run it under `ulimit -n {TEST_FDS_NEEDED}`"
    );
}

/// The bytes pipe `i` sends: different for every pipe, so a crossed wire shows.
fn payload(i: usize) -> Vec<u8> {
    Rng::new(i as u64).bytes(PAYLOAD)
}

fn assert_echoes(stream: &mut TcpStream, message: &[u8], i: usize) {
    stream.write_all(message).expect("write");
    let mut echo = vec![0u8; message.len()];
    stream.read_exact(&mut echo).expect("read the echo");
    assert!(echo == message, "pipe {i} got another pipe's bytes back");
}

#[test]
fn after_1500_concurrent_pipes_close_the_forwarder_holds_no_more_descriptors_than_before() {
    ensure_fd_room();
    let tcpipe = Tcpipe::start_with_fd_limit(FORWARDER_FD_LIMIT, echo_server(), &[]);

    // Open every pipe, each proven end to end by a round trip. The first one
    // tells what the forwarder holds apart from its pipes' two sockets each.
    let mut clients = Vec::with_capacity(PIPES);
    let mut baseline = 0;
    for i in 0..PIPES {
        let mut client = tcpipe.connect();
        assert_echoes(&mut client, &(i as u64).to_le_bytes(), i);
        if i == 0 {
            baseline = tcpipe.fd_count() - 2;
        }
        clients.push(client);
    }
    // Every other worker has accepted since, and holds its own reserved
    // upstream socket.
    baseline += workers_under_test() - 1;
    assert_eq!(
        tcpipe.fd_count(),
        baseline + 2 * PIPES,
        "with {PIPES} pipes open the forwarder should hold two descriptors each"
    );

    // Every pipe carries data at once: all requests go out before any reply is read.
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(&payload(i)).expect("write");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let mut echo = vec![0u8; PAYLOAD];
        client.read_exact(&mut echo).expect("read the echo");
        assert!(echo == payload(i), "pipe {i} got another pipe's bytes back");
    }

    // A third of the pipes end by reset, the rest by FIN from both sides.
    let mut finishing = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        if i % 3 == 0 {
            reset(client);
        } else {
            client.shutdown(Shutdown::Write).expect("half-close");
            finishing.push(client);
        }
    }
    for mut client in finishing {
        assert!(
            read_to_end(&mut client).is_empty(),
            "the echo sent bytes after the last echo"
        );
    }

    let freed = wait_until(DEADLINE, || tcpipe.fd_count() == baseline);
    assert!(
        freed,
        "the forwarder holds {} descriptors after every pipe closed; {baseline} before",
        tcpipe.fd_count()
    );
}
