//! `--max-connections`: at the limit, further clients wait in the kernel
//! backlog unserved; each pipe that closes lets the next one in at once.

mod common;
use common::faults::*;
use common::scrape::scrape_until;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const LIMIT: usize = 10;
/// How long a waiting client is watched to see that it is not served.
const WAIT_WINDOW: Duration = Duration::from_millis(400);
/// How soon a waiting client must be served once a slot frees.
const ADMISSION_LATENCY: Duration = Duration::from_secs(1);

fn start_forwarder() -> Tcpipe {
    Tcpipe::start(
        echo_server(),
        &["--max-connections", "10", "--metrics", "127.0.0.1:0"],
    )
}

/// `LIMIT` clients, each proven to be served by a round trip.
fn fill_to_the_limit(tcpipe: &Tcpipe) -> Vec<TcpStream> {
    let clients: Vec<TcpStream> = (0..LIMIT)
        .map(|i| {
            let mut client = tcpipe.connect();
            assert_round_trip(&mut client, format!("client {i}").as_bytes());
            client
        })
        .collect();
    scrape_until(tcpipe, "the connection limit of 10 reached", |s| {
        s.get("tcpipe_connection_limit_reached_total", &[]) >= 1.0
    });
    clients
}

/// A client beyond the limit: connected (the kernel completes the
/// handshake) and asking for an echo that must not come yet.
fn waiting_client(tcpipe: &Tcpipe, message: &[u8]) -> TcpStream {
    let mut client = tcpipe.connect();
    client
        .write_all(message)
        .expect("a waiting client can send");
    client
}

/// Asserts `client`'s echo of `message` arrives within `ADMISSION_LATENCY`.
fn assert_served_promptly(client: &mut TcpStream, message: &[u8], since: Instant) {
    let mut echoed = vec![0u8; message.len()];
    client
        .read_exact(&mut echoed)
        .expect("the waiting client was never served");
    assert_eq!(
        echoed, message,
        "the waiting client's echo came back altered"
    );
    let latency = since.elapsed();
    assert!(
        latency <= ADMISSION_LATENCY,
        "the waiting client was served {latency:?} after a slot freed"
    );
}

#[test]
fn the_eleventh_client_waits_until_one_of_the_first_ten_closes() {
    let tcpipe = start_forwarder();
    let mut clients = fill_to_the_limit(&tcpipe);

    let mut eleventh = waiting_client(&tcpipe, b"let me in");
    assert_nothing_arrives(
        &mut eleventh,
        WAIT_WINDOW,
        "the 11th client was served while 10 pipes were open",
    );

    // A clean close: FIN both ways through the echo target.
    drop(clients.pop());
    let freed = Instant::now();
    assert_served_promptly(&mut eleventh, b"let me in", freed);

    // The ten still open were not disturbed.
    for (i, client) in clients.iter_mut().enumerate() {
        assert_round_trip(client, format!("again {i}").as_bytes());
    }
}

#[test]
fn each_closed_pipe_admits_exactly_one_waiting_client() {
    let tcpipe = start_forwarder();
    let mut clients = fill_to_the_limit(&tcpipe);
    // The backlog is first in, first out, so they are admitted in this order.
    let mut waiting: Vec<(TcpStream, Vec<u8>)> = (0..3)
        .map(|i| {
            let message = format!("waiting {i}").into_bytes();
            (waiting_client(&tcpipe, &message), message)
        })
        .collect();

    for admitted in 0..waiting.len() {
        // Alternate clean closes and resets: both free a slot.
        let closing = clients.remove(0);
        if admitted % 2 == 0 {
            drop(closing);
        } else {
            reset(closing);
        }
        let freed = Instant::now();
        let (client, message) = &mut waiting[admitted];
        // Now ten pipes are open again, the admitted one among them.
        assert_served_promptly(client, message, freed);
        if let Some((next, _)) = waiting.get_mut(admitted + 1) {
            assert_nothing_arrives(
                next,
                WAIT_WINDOW,
                "a second waiting client was served when only one slot freed",
            );
        }
    }
}
