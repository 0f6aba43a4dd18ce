//! `match.protocol`: SSH, HTTP and TLS clients on one port each reach their
//! own service, and anything else the default.

mod common;
use common::config::*;
use common::faults::*;
use common::tls::*;
use common::upstreams::*;
use common::*;

#[test]
fn ssh_http_and_tls_share_a_port() {
    let (ssh, http, tls, other) = (
        Backend::echo(),
        Backend::echo(),
        Backend::echo(),
        Backend::echo(),
    );
    let file = ConfigFile::new(&format!(
        "{}{}{}{}",
        shared_route("ssh", ssh.addr, "match.protocol = \"ssh\""),
        shared_route("http", http.addr, "match.protocol = \"http\""),
        shared_route("tls", tls.addr, "match.sni = [\"a.example\"]"),
        shared_route("other", other.addr, ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("ssh");
    let mut client = connect(addr);
    assert_round_trip(&mut client, b"SSH-2.0-OpenSSH_9.6\r\n");
    let mut client = connect(addr);
    assert_round_trip(&mut client, b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n");
    let mut client = connect(addr);
    assert_round_trip(&mut client, &captured_hello("openssl_s_client.hex"));
    let mut client = connect(addr);
    assert_round_trip(&mut client, b"\x00\x01 not a protocol anyone sniffs");
    assert_eq!(
        [ssh.served(), http.served(), tls.served(), other.served()],
        [1, 1, 1, 1]
    );
}
