//! `accept-proxy` runs before inspection on a shared address: the PROXY
//! header is consumed, the hello after it chooses the route, and the
//! route's source rules apply to the address the header names.

mod common;
use common::config::*;
use common::faults::*;
use common::tls::*;
use common::upstreams::*;
use common::*;

use std::io::Write;

#[test]
fn the_hello_after_a_proxy_header_chooses_the_route_and_the_real_address_is_checked() {
    let (named, fallback) = (Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&format!(
        "{}{}",
        shared_route(
            "named",
            named.addr,
            "accept-proxy = true\ndeny = [\"192.0.2.66/32\"]\nmatch.sni = [\"a.example\"]"
        ),
        shared_route("fallback", fallback.addr, "accept-proxy = true"),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("named");
    let hello = captured_hello("openssl_s_client.hex");

    let mut client = connect(addr);
    client
        .write_all(b"PROXY TCP4 192.0.2.10 192.0.2.1 40000 443\r\n")
        .unwrap();
    // The target gets the hello alone: the header is tcpipe's.
    assert_round_trip(&mut client, &hello);
    assert_eq!((named.served(), fallback.served()), (1, 0));

    let mut denied = connect(addr);
    denied
        .write_all(b"PROXY TCP4 192.0.2.66 192.0.2.1 40000 443\r\n")
        .unwrap();
    denied.write_all(&hello).unwrap();
    assert_reset(&mut denied, "a client its route's rules deny");
    assert_eq!(named.served(), 1);
}
