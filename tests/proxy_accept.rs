//! accept-proxy: a client's PROXY header (v1 or v2, in one segment or split
//! over many) is read before connecting, never reaches the target, and
//! names the client; malformed, missing, cut short or late headers reset
//! the client before any target is dialed, and are counted.

mod common;
use common::faults::assert_reset;
use common::hooks::*;
use common::proxy::{self, Recorder};
use common::*;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use tcpipe::{CloseReason, Config};

fn accepting(target: SocketAddr, timeout: Duration) -> Running {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target);
    config.routes[0].accept_proxy = true;
    config.routes[0].proxy_timeout = Some(timeout);
    Running::start(config)
}

fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Sends `header` then `payload` and a FIN, each byte in a segment of its
/// own if `bytewise`; the echo target must send back exactly `payload`.
fn round_trip(running: &Running, header: &[u8], payload: &[u8], bytewise: bool) {
    let mut client = connect(running.addr());
    let mut all = header.to_vec();
    all.extend_from_slice(payload);
    if bytewise {
        for byte in &all {
            client.write_all(&[*byte]).unwrap();
            // Pacing, not waiting: each byte leaves in a segment of its own
            // (TCP_NODELAY) and tcpipe mostly sees them one at a time.
            thread::sleep(Duration::from_millis(1));
        }
    } else {
        client.write_all(&all).unwrap();
    }
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_end(&mut client),
        payload,
        "the target must get exactly the bytes after the header"
    );
}

/// The client address the hooks were told for the last pipe opened.
fn last_client(running: &Running) -> SocketAddr {
    let opened = running.events.wait_for("a pipe with a target", |e| {
        matches!(
            e,
            Event::Opened {
                target: Some(_),
                ..
            }
        )
    });
    match opened {
        Event::Opened { client, .. } => client,
        _ => unreachable!(),
    }
}

#[test]
fn a_v1_header_names_the_client_and_never_reaches_the_target() {
    let running = accepting(echo_server(), Duration::from_secs(3));
    let header = proxy::v1(sa("203.0.113.7:41000"), sa("198.51.100.1:443"));
    round_trip(&running, &header, b"hello after the header", false);
    assert_eq!(last_client(&running), sa("203.0.113.7:41000"));
    let listed = running.handle.metrics();
    assert_eq!(listed.proxy_header_rejected_total.get(), 0);
    running.stop();
}

#[test]
fn a_v2_header_with_tlvs_names_an_ipv6_client() {
    let running = accepting(echo_server(), Duration::from_secs(3));
    // PP2_TYPE_AUTHORITY "example.com", then PP2_TYPE_NOOP with 3 bytes.
    let mut tlvs = vec![0x02, 0x00, 11];
    tlvs.extend_from_slice(b"example.com");
    tlvs.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
    let header = proxy::v2(sa("[2001:db8::5]:5000"), sa("[2001:db8::1]:80"), &tlvs);
    round_trip(
        &running,
        &header,
        b"\r\n\r\nbinary-looking payload\0",
        false,
    );
    assert_eq!(last_client(&running), sa("[2001:db8::5]:5000"));
    running.stop();
}

#[test]
fn headers_split_byte_by_byte_are_read_whole_in_both_versions() {
    let running = accepting(echo_server(), Duration::from_secs(10));
    let v1 = proxy::v1(sa("192.0.2.1:1111"), sa("192.0.2.2:2222"));
    round_trip(&running, &v1, b"PROXY TCP4 lookalike payload\r\n", true);
    assert_eq!(last_client(&running), sa("192.0.2.1:1111"));
    running.stop();

    let running = accepting(echo_server(), Duration::from_secs(10));
    let v2 = proxy::v2(sa("192.0.2.3:3333"), sa("192.0.2.4:4444"), &[0x04, 0, 1, 0]);
    round_trip(&running, &v2, b"after v2", true);
    assert_eq!(last_client(&running), sa("192.0.2.3:3333"));
    running.stop();
}

#[test]
fn a_v2_local_header_keeps_the_connections_own_address() {
    let running = accepting(echo_server(), Duration::from_secs(3));
    let mut client = connect(running.addr());
    let own = client.local_addr().unwrap();
    client.write_all(&proxy::v2_local()).unwrap();
    client.write_all(b"health check").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"health check");
    assert_eq!(
        last_client(&running),
        own,
        "LOCAL: the dummy addresses are skipped"
    );
    running.stop();
}

/// The client is reset, the target never hears of it, the hooks hear a
/// pipe with no target closed as a bad header, and `counted` says so.
fn assert_refused(running: &Running, target: &Recorder, client: &mut std::net::TcpStream) {
    assert_reset(client, "client");
    let closed = running.events.wait_for("the refusal", |e| {
        matches!(
            e,
            Event::Closed {
                reason: CloseReason::BadProxyHeader,
                ..
            }
        )
    });
    let id = closed.pipe().unwrap();
    assert!(
        matches!(
            &running.events.of(id)[0],
            Event::Opened { target: None, .. }
        ),
        "a refused client is opened with no target: {:?}",
        running.events.of(id)
    );
    assert_eq!(target.accepted(), 0, "no target may be dialed for it");
}

#[test]
fn garbage_instead_of_a_header_resets_the_client_and_is_counted() {
    let target = Recorder::start();
    let running = accepting(target.addr, Duration::from_secs(10));
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        &proxy::v2_raw(0x22, 0x11, &[0; 12]),
        &proxy::v2_raw(0x21, 0x12, &[0; 12]), // UDP: unsupported
    ] {
        let mut client = connect(running.addr());
        client.write_all(garbage).unwrap();
        assert_refused(&running, &target, &mut client);
    }
    assert_eq!(
        running.handle.metrics().proxy_header_rejected_total.get(),
        5
    );
    assert_eq!(
        running.handle.metrics().proxy_header_timeouts_total.get(),
        0
    );
    assert_eq!(running.handle.metrics().live_pipes.get(), 0);
    running.stop();
}

#[test]
fn a_header_cut_short_by_the_clients_fin_is_rejected_at_once() {
    let target = Recorder::start();
    let running = accepting(target.addr, Duration::from_secs(20));
    let mut client = connect(running.addr());
    let started = Instant::now();
    client.write_all(b"PROXY TCP4 1.2.3.4 ").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_refused(&running, &target, &mut client);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it waited for the timeout"
    );
    assert_eq!(
        running.handle.metrics().proxy_header_rejected_total.get(),
        1
    );
    running.stop();
}

#[test]
fn a_header_not_complete_within_the_proxy_timeout_resets_the_client() {
    let target = Recorder::start();
    let timeout = Duration::from_millis(300);
    let running = accepting(target.addr, timeout);
    let mut silent = connect(running.addr());
    let mut slow = connect(running.addr());
    let started = Instant::now();
    let v2 = proxy::v2(sa("10.0.0.1:1"), sa("10.0.0.2:2"), &[]);
    slow.write_all(&v2[..20]).unwrap();
    wait_until(DEADLINE, || {
        running.handle.metrics().awaiting_proxy_header.get() == 2
    });
    assert_refused(&running, &target, &mut silent);
    assert_reset(&mut slow, "slow client");
    assert!(started.elapsed() >= timeout, "reset before the timeout");
    let metrics = running.handle.metrics();
    assert!(wait_until(DEADLINE, || metrics
        .proxy_header_timeouts_total
        .get()
        == 2));
    assert_eq!(metrics.proxy_header_rejected_total.get(), 0);
    assert_eq!(metrics.awaiting_proxy_header.get(), 0);
    running.stop();
}

#[test]
fn clients_awaiting_a_header_count_against_the_connection_limit() {
    let target = echo_server();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target);
    config.routes[0].accept_proxy = true;
    config.max_connections = 1;
    let running = Running::start(config);
    let mut first = connect(running.addr());
    wait_until(DEADLINE, || {
        running.handle.metrics().awaiting_proxy_header.get() == 1
    });
    // The second waits in the backlog until the first is done.
    let mut second = connect(running.addr());
    let header = proxy::v1(sa("10.9.9.9:9"), sa("10.0.0.1:1"));
    second.write_all(&header).unwrap();
    second.write_all(b"second").unwrap();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(running.handle.metrics().accepted_total.get(), 1);
    first.write_all(&header).unwrap();
    first.write_all(b"first").unwrap();
    first.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut first), b"first");
    second.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut second), b"second");
    running.stop();
}

#[test]
fn a_shutdown_resets_clients_still_sending_their_header_at_once() {
    let target = Recorder::start();
    let running = accepting(target.addr, Duration::from_secs(30));
    let mut client = connect(running.addr());
    client.write_all(b"PROXY TCP4 ").unwrap();
    wait_until(DEADLINE, || {
        running.handle.metrics().awaiting_proxy_header.get() == 1
    });
    let started = Instant::now();
    running.handle.shutdown();
    assert_reset(&mut client, "client awaiting its header");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it waited for the proxy-timeout"
    );
    assert_eq!(running.handle.metrics().awaiting_proxy_header.get(), 0);
    assert_eq!(target.accepted(), 0);
    running.stop();
}
