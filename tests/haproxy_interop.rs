//! Interop with HAProxy (from the OS packages; each test skips with a note
//! where it is missing): HAProxy's send-proxy and send-proxy-v2 in front
//! of tcpipe's accept-proxy, and tcpipe's send-proxy v1 and v2 in front of
//! an HAProxy frontend with accept-proxy, whose backend passes the client
//! address it understood on to a test listener.

mod common;
use common::haproxy::{self, Haproxy};
use common::hooks::*;
use common::proxy::{self, Recorder};
use common::*;

use std::io::Write;
use std::net::{Shutdown, SocketAddr};

use tcpipe::{Config, ProxyVersion};

fn haproxy_in_front_of_tcpipe(server_option: &str) {
    let binary = haproxy::binary();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), echo_server());
    config.routes[0].accept_proxy = true;
    let running = Running::start(config);
    let haproxy = Haproxy::start(
        &binary,
        "",
        &format!("server tcpipe {} {server_option}", running.addr()),
    );
    let mut client = connect(haproxy.addr);
    let payload = Rng::new(11).bytes(100_000);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let payload = payload.clone();
        std::thread::spawn(move || {
            client.write_all(&payload).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    assert_eq!(
        read_to_end(&mut client),
        payload,
        "through HAProxy and tcpipe and back"
    );
    writer.join().unwrap();
    let opened = running
        .events
        .wait_for("the pipe", |e| matches!(e, Event::Opened { .. }));
    let Event::Opened { client: named, .. } = opened else {
        unreachable!()
    };
    assert_eq!(
        named,
        client.local_addr().unwrap(),
        "tcpipe must see the client HAProxy saw, not HAProxy"
    );
    assert_eq!(
        running.handle.metrics().proxy_header_rejected_total.get(),
        0
    );
    running.stop();
}

#[test]
#[cfg_attr(not(has_haproxy), ignore = "needs haproxy (Debian package haproxy)")]
fn haproxy_send_proxy_v1_to_tcpipe_accept_proxy() {
    haproxy_in_front_of_tcpipe("send-proxy");
}

#[test]
#[cfg_attr(not(has_haproxy), ignore = "needs haproxy (Debian package haproxy)")]
fn haproxy_send_proxy_v2_to_tcpipe_accept_proxy() {
    haproxy_in_front_of_tcpipe("send-proxy-v2");
}

fn tcpipe_in_front_of_haproxy(version: ProxyVersion) {
    let binary = haproxy::binary();
    let backend = Recorder::start();
    // HAProxy's frontend takes tcpipe's header; its backend hands the
    // client address it took from it to our listener in a v2 header.
    let haproxy = Haproxy::start(
        &binary,
        "accept-proxy",
        &format!("server recorder {} send-proxy-v2", backend.addr),
    );
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), haproxy.addr);
    config.routes[0].send_proxy = Some(version);
    let running = Running::start(config);
    let mut client = connect(running.addr());
    client.write_all(b"through both").unwrap();
    let mut got = None;
    let arrived = wait_until(DEADLINE, || {
        if backend.accepted() == 0 {
            return false;
        }
        let bytes = backend.bytes(0);
        got = proxy::parse(&bytes).map(|(header, len)| (header, bytes[len..].to_vec()));
        got.as_ref()
            .is_some_and(|(_, rest)| rest == b"through both")
    });
    assert!(arrived, "the backend got {:?}", backend.bytes(0));
    let (header, _) = got.unwrap();
    let expected: (SocketAddr, SocketAddr) = (client.local_addr().unwrap(), running.addr());
    assert_eq!(
        header.addresses,
        Some(expected),
        "HAProxy must have read tcpipe's {version} header as the client's address"
    );
    running.stop();
}

#[test]
#[cfg_attr(not(has_haproxy), ignore = "needs haproxy (Debian package haproxy)")]
fn tcpipe_send_proxy_v1_to_haproxy_accept_proxy() {
    tcpipe_in_front_of_haproxy(ProxyVersion::V1);
}

#[test]
#[cfg_attr(not(has_haproxy), ignore = "needs haproxy (Debian package haproxy)")]
fn tcpipe_send_proxy_v2_to_haproxy_accept_proxy() {
    tcpipe_in_front_of_haproxy(ProxyVersion::V2);
}
