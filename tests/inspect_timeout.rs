//! `inspect-timeout`: a client of a shared address that says nothing goes
//! to the default route once it runs out (so a server-speaks-first
//! service, SMTP or MySQL, works behind it), or is reset without one.

mod common;
use common::config::*;
use common::faults::*;
use common::scrape::*;
use common::tls::*;
use common::upstreams::*;
use common::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn a_silent_client_reaches_the_default_route_after_the_timeout() {
    let named = Backend::echo();
    let (greeter, greeter_addr) = listener();
    std::thread::spawn(move || {
        if let Ok((mut server, _)) = greeter.accept() {
            let _ = server.write_all(b"220 mail.example ESMTP\r\n");
            let mut rest = Vec::new();
            let _ = server.read_to_end(&mut rest);
        }
    });
    let file = ConfigFile::new(&format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\n{}{}",
        shared_route(
            "named",
            named.addr,
            "inspect-timeout = \"300ms\"\nmatch.sni = [\"a.example\"]"
        ),
        shared_route("smtp", greeter_addr, "inspect-timeout = \"300ms\""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let started = Instant::now();
    let mut client = connect(tcpipe.route_addr("smtp"));
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut greeting = [0u8; 24];
    client
        .read_exact(&mut greeting)
        .expect("the server's greeting");
    assert_eq!(&greeting, b"220 mail.example ESMTP\r\n");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "routed after {:?}, before inspect-timeout",
        started.elapsed()
    );
    let scrape = scrape_until(&tcpipe, "the timeout counted", |s| {
        s.get(
            "tcpipe_inspect_failures_total",
            &[("route", "smtp"), ("kind", "timeout")],
        ) == 1.0
    });
    assert_eq!(
        scrape.get(
            "tcpipe_route_matched_total",
            &[("route", "smtp"), ("by", "default")]
        ),
        1.0
    );
}

#[test]
fn without_a_default_route_a_silent_client_is_reset() {
    let named = Backend::echo();
    let file = ConfigFile::new(&format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\n{}",
        shared_route(
            "named",
            named.addr,
            "inspect-timeout = \"200ms\"\nmatch.sni = [\"a.example\"]"
        ),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let mut client = connect(tcpipe.route_addr("named"));
    assert_reset(&mut client, "the silent client");
    // A hello for a name no route has is reset at once.
    let mut client = connect(tcpipe.route_addr("named"));
    client
        .write_all(&captured_hello("openssl_no_sni.hex"))
        .unwrap();
    assert_reset(&mut client, "the client no route matches");
    let scrape = scrape_until(&tcpipe, "the refusals counted", |s| {
        s.get(
            "tcpipe_connections_refused_total",
            &[("route", "named"), ("reason", "no_route")],
        ) == 2.0
    });
    assert_eq!(
        scrape.get(
            "tcpipe_inspect_failures_total",
            &[("route", "named"), ("kind", "timeout")]
        ),
        1.0
    );
    assert_eq!(named.served(), 0);
}
