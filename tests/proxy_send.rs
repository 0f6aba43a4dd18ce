//! send-proxy: each target connection gets a PROXY header first, with the
//! client's and the listener's real addresses, before any client byte;
//! again on the target a failover reaches, on a pooled connection when it
//! is handed out; never counted as client bytes.

mod common;
use common::hooks::*;
use common::proxy::{self, Received, Recorder};
use common::*;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};

use tcpipe::{Config, Direction, ProxyVersion};

fn sending(targets: &[SocketAddr], version: ProxyVersion) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), targets[0]);
    for &more in &targets[1..] {
        config.routes[0].targets.push(tcpipe::Target::from(more));
    }
    config.routes[0].send_proxy = Some(version);
    config
}

fn sa(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// Waits until connection `i` of `target` has sent a whole header and
/// `payload_len` more bytes; returns the header and the rest.
fn received(target: &Recorder, i: usize, payload_len: usize) -> (Received, Vec<u8>) {
    let mut got = None;
    let done = wait_until(DEADLINE, || {
        if target.accepted() <= i {
            return false;
        }
        let bytes = target.bytes(i);
        got = proxy::parse(&bytes).map(|(header, len)| (header, bytes[len..].to_vec()));
        got.as_ref()
            .is_some_and(|(_, rest)| rest.len() >= payload_len)
    });
    assert!(
        done,
        "no header and payload; target got {:?}",
        target.bytes(i)
    );
    got.unwrap()
}

fn send(running: &Running, payload: &[u8]) -> TcpStream {
    let mut client = connect(running.addr());
    client.write_all(payload).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    client
}

#[test]
fn v1_and_v2_headers_go_first_with_the_client_and_listener_addresses() {
    for (version, number) in [(ProxyVersion::V1, 1), (ProxyVersion::V2, 2)] {
        let target = Recorder::start();
        let running = Running::start(sending(&[target.addr], version));
        let payload = b"PROXY-looking client bytes\r\n";
        let client = send(&running, payload);
        let (header, rest) = received(&target, 0, payload.len());
        assert_eq!(header.version, number);
        assert_eq!(
            header.addresses,
            Some((client.local_addr().unwrap(), running.addr()))
        );
        assert_eq!(rest, payload, "client bytes follow the header unchanged");

        // Only the client's bytes count as delivered.
        let id = running.events.pipe_of(client.local_addr().unwrap());
        running.events.closed(id);
        let delivered: u64 = running
            .events
            .of(id)
            .iter()
            .map(|e| match e {
                Event::Forwarded {
                    direction: Direction::ClientToTarget,
                    bytes,
                    ..
                } => *bytes,
                _ => 0,
            })
            .sum();
        assert_eq!(delivered, payload.len() as u64);
        let metrics = running.handle.metrics();
        assert_eq!(
            metrics.bytes_toward_target_total.get(),
            payload.len() as u64
        );
        running.stop();
    }
}

#[test]
fn the_header_goes_before_the_client_has_sent_anything() {
    let target = Recorder::start();
    let running = Running::start(sending(&[target.addr], ProxyVersion::V2));
    let client = connect(running.addr());
    let (header, rest) = received(&target, 0, 0);
    assert_eq!(header.addresses.unwrap().0, client.local_addr().unwrap());
    assert!(rest.is_empty());
    running.stop();
}

#[test]
fn the_target_reached_by_failover_gets_the_header_then_every_client_byte() {
    let target = Recorder::start();
    let running = Running::start(sending(&[refused_addr(), target.addr], ProxyVersion::V1));
    let payload = Rng::new(3).bytes(5000);
    let client = send(&running, &payload);
    let (header, rest) = received(&target, 0, payload.len());
    assert_eq!(header.addresses.unwrap().0, client.local_addr().unwrap());
    assert_eq!(rest, payload);
    assert_eq!(target.accepted(), 1);
    let failures = running.handle.metrics().connect_failures_total.get();
    assert_eq!(failures, 1, "the refusing target was tried first");
    running.stop();
}

#[test]
fn a_pooled_connection_gets_the_header_when_it_is_handed_out() {
    let target = Recorder::start();
    let mut config = sending(&[target.addr], ProxyVersion::V2);
    config.routes[0].pool = 1;
    let running = Running::start(config);
    assert!(
        wait_until(DEADLINE, || target.accepted() == 1),
        "no pooled connection"
    );
    assert!(
        target.bytes(0).is_empty(),
        "a pooled connection is sent nothing while idle"
    );
    let client = send(&running, b"pooled");
    let (header, rest) = received(&target, 0, 6);
    assert_eq!(
        header.addresses,
        Some((client.local_addr().unwrap(), running.addr()))
    );
    assert_eq!(rest, b"pooled");
    running.stop();
}

#[test]
fn an_ipv4_client_of_a_dual_stack_listener_is_sent_as_ipv4() {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("note: no IPv6 on this machine; skipping");
        return;
    }
    let target = Recorder::start();
    let mut config = sending(&[target.addr], ProxyVersion::V1);
    config.routes[0].listen = vec![sa("[::]:0")];
    let running = Running::start(config);
    let port = running.addr().port();
    let client = {
        let mut client = connect(SocketAddr::new("127.0.0.1".parse().unwrap(), port));
        client.write_all(b"x").unwrap();
        client
    };
    let (header, _) = received(&target, 0, 1);
    assert!(
        header.raw.starts_with(b"PROXY TCP4 127.0.0.1 127.0.0.1 "),
        "mapped addresses must go as IPv4: {:?}",
        String::from_utf8_lossy(&header.raw)
    );
    assert_eq!(header.addresses.unwrap().0, client.local_addr().unwrap());
    running.stop();
}

#[test]
fn an_accepted_header_is_passed_on_with_its_own_addresses() {
    let target = Recorder::start();
    let mut config = sending(&[target.addr], ProxyVersion::V2);
    config.routes[0].accept_proxy = true;
    let running = Running::start(config);
    let (source, destination) = (sa("203.0.113.9:1234"), sa("198.51.100.2:80"));
    let mut client = connect(running.addr());
    client.write_all(&proxy::v1(source, destination)).unwrap();
    client.write_all(b"chained").unwrap();
    let (header, rest) = received(&target, 0, 7);
    assert_eq!(header.addresses, Some((source, destination)));
    assert_eq!(rest, b"chained");
    running.stop();
}
