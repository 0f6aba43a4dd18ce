//! The metrics endpoint answers a scrape at once whatever other clients of
//! the port do: stay connected and silent (50 of them, or more than its cap
//! of 64 connections), send their request a byte at a time, send a head
//! too large, or never read their answer. A silent client is told 408 and
//! closed after 3 s; a reload that turns the endpoint off closes it at once.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::config::{route, ConfigFile};
use common::scrape::{read_response, request, Scrape};
use common::{echo_server, wait_until, Tcpipe, DEADLINE};

/// What "at once" means here: Prometheus gives up after 10 s; one idle
/// client used to cost about 5 s.
const AT_ONCE: Duration = Duration::from_secs(1);
/// The endpoint's cap on open connections (README, Metrics).
const CAP: usize = 64;
/// How long a client may take to send its request (README, Metrics).
const REQUEST_DEADLINE: Duration = Duration::from_secs(3);

fn start() -> Tcpipe {
    Tcpipe::start(echo_server(), &["--metrics", "127.0.0.1:0"])
}

fn idle_clients(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect(addr).expect("connect an idle client"))
        .collect()
}

/// A whole scrape, timed: it parses and has the process's own series.
fn timed_scrape(tcpipe: &Tcpipe) -> (Scrape, Duration) {
    let started = Instant::now();
    let scrape = tcpipe.scrape();
    let took = started.elapsed();
    assert!(
        scrape.text.contains("tcpipe_build_info{"),
        "{}",
        scrape.text
    );
    scrape.get("tcpipe_connections_accepted_total", &[("route", "default")]);
    (scrape, took)
}

#[test]
fn a_scrape_is_answered_at_once_with_50_idle_clients_connected() {
    let tcpipe = start();
    let idle = idle_clients(tcpipe.metrics_addr(), 50);
    let (_, took) = timed_scrape(&tcpipe);
    assert!(took < AT_ONCE, "the scrape took {took:?}");
    drop(idle);
}

#[test]
fn more_idle_clients_than_the_cap_still_let_a_scrape_through() {
    let tcpipe = start();
    let count = 3 * CAP;
    let mut idle = idle_clients(tcpipe.metrics_addr(), count);
    let (_, took) = timed_scrape(&tcpipe);
    assert!(took < AT_ONCE, "the scrape took {took:?}");
    // The cap holds: the process keeps no more than about CAP of them
    // open (its other sockets are a few listeners), and has closed the
    // rest rather than leaving them queued.
    let sockets = tcpipe.socket_count();
    assert!(sockets < CAP + 16, "{sockets} sockets open");
    for client in &idle {
        client.set_nonblocking(true).unwrap();
    }
    let mut closed = 0;
    let enough = wait_until(DEADLINE, || {
        closed = idle
            .iter_mut()
            .filter(|c| is_closed_without_answer(c))
            .count();
        closed >= count - CAP
    });
    assert!(enough, "only {closed} of {count} idle clients were closed");
}

/// Closed by the server without a word (EOF or reset); `false` while open
/// or once an answer arrived (peeked, so it stays there).
fn is_closed_without_answer(client: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match client.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

#[test]
fn a_request_sent_one_byte_at_a_time_is_answered() {
    let tcpipe = start();
    let metrics = tcpipe.metrics_addr();
    let raw = b"GET /metrics HTTP/1.1\r\nHost: tcpipe\r\nAccept: text/plain\r\n\r\n";
    let mut slow = TcpStream::connect(metrics).unwrap();
    slow.set_nodelay(true).unwrap();
    for (i, byte) in raw.iter().enumerate() {
        slow.write_all(std::slice::from_ref(byte)).unwrap();
        // The client is slow (the behaviour under test, not a wait): each
        // byte its own segment.
        std::thread::sleep(Duration::from_millis(2));
        if i == raw.len() / 2 {
            let (_, took) = timed_scrape(&tcpipe);
            assert!(took < AT_ONCE, "a scrape behind the slow one took {took:?}");
        }
    }
    let response = read_response(slow);
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(response
        .content_type
        .starts_with("text/plain; version=0.0.4"));
    let scrape = Scrape::parse(&response.body);
    scrape.get("tcpipe_connections_accepted_total", &[("route", "default")]);
}

#[test]
fn an_oversize_head_gets_431_and_the_next_scrape_works() {
    let tcpipe = start();
    let metrics = tcpipe.metrics_addr();
    let head = |filler: usize| {
        format!(
            "GET /metrics HTTP/1.1\r\nHost: tcpipe\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(filler)
        )
    };
    // 16 KiB, twice the cap, sent in one go: the answer still arrives
    // whole (the server drains the rest rather than resetting it away).
    let response = request(metrics, &head(16 * 1024));
    assert_eq!(response.status, 431, "{}", response.body);
    // Just under the cap is fine.
    let response = request(metrics, &head(8 * 1024 - 100));
    assert_eq!(response.status, 200, "{}", response.body);
    let (_, took) = timed_scrape(&tcpipe);
    assert!(took < AT_ONCE, "the scrape took {took:?}");
}

#[test]
fn a_client_that_never_reads_a_large_answer_does_not_hold_up_the_next_scrape() {
    // 1200 targets (never dialed: no client comes) make an answer of
    // about 5 MB, more than the kernel buffers of a stalled connection.
    let targets: Vec<SocketAddr> = (1..=1200)
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .collect();
    let file = ConfigFile::new(&format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\n\n{}",
        route("default", &targets, "")
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let (scrape, _) = timed_scrape(&tcpipe);
    assert!(scrape.text.len() > 4 << 20, "{} bytes", scrape.text.len());

    let stalled = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stalled.set_recv_buffer_size(4096).unwrap();
    stalled.connect(&tcpipe.metrics_addr().into()).unwrap();
    let mut stalled = TcpStream::from(stalled);
    stalled
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: tcpipe\r\n\r\n")
        .unwrap();
    let (_, took) = timed_scrape(&tcpipe);
    assert!(
        took < AT_ONCE,
        "the scrape behind a stalled one took {took:?}"
    );
    drop(stalled);
}

#[test]
fn a_silent_client_is_told_408_and_closed_after_3s() {
    let tcpipe = start();
    let silent = TcpStream::connect(tcpipe.metrics_addr()).unwrap();
    let started = Instant::now();
    let response = read_response(silent);
    let took = started.elapsed();
    assert_eq!(response.status, 408, "{}", response.body);
    assert!(
        took >= REQUEST_DEADLINE - Duration::from_millis(100) && took < 3 * REQUEST_DEADLINE,
        "closed after {took:?}"
    );
}

#[test]
fn a_reload_that_turns_the_endpoint_off_closes_it_at_once() {
    let target = echo_server();
    let with_metrics = format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\n\n{}",
        route("default", &[target], "")
    );
    let file = ConfigFile::new(&with_metrics);
    let tcpipe = Tcpipe::start_config(&file);
    let metrics = tcpipe.metrics_addr();
    let mut idle = idle_clients(metrics, 3);
    file.write(&route("default", &[target], ""));
    tcpipe.reload().expect("a valid reload");
    let started = Instant::now();
    let closed = wait_until(DEADLINE, || TcpStream::connect(metrics).is_err());
    assert!(closed, "still accepting after the reload");
    assert!(
        started.elapsed() < AT_ONCE,
        "closed after {:?}",
        started.elapsed()
    );
    for client in &mut idle {
        client.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut byte = [0u8; 1];
        // Closed, or reset if it was still in the accept queue.
        match client.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("an idle client of the old endpoint: {other:?}"),
        }
    }
}
