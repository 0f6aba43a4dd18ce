//! A reload keeps a shared address's one socket (port 0 included) while it
//! adds or removes the routes that share it: a client connected across
//! the reload is not disturbed, and the new route takes its clients.

mod common;
use common::config::*;
use common::faults::*;
use common::tls::*;
use common::upstreams::*;
use common::*;

use std::io::Write;

fn hello_for(name: &str) -> Vec<u8> {
    built_hello(name, 0, 16_384)
}

#[test]
fn a_reload_adds_a_route_to_a_shared_address_in_place() {
    let (a, b, fallback) = (Backend::echo(), Backend::echo(), Backend::echo());
    let routes = |with_b: bool| {
        format!(
            "{}{}{}",
            shared_route("a", a.addr, "match.sni = [\"a.example\"]"),
            if with_b {
                shared_route("b", b.addr, "match.sni = [\"b.example\"]")
            } else {
                String::new()
            },
            shared_route("fallback", fallback.addr, ""),
        )
    };
    let file = ConfigFile::new(&routes(false));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("a");
    let mut before = connect(addr);
    assert_round_trip(&mut before, &hello_for("a.example"));
    let mut early_b = connect(addr);
    assert_round_trip(&mut early_b, &hello_for("b.example"));
    assert_eq!((a.served(), fallback.served()), (1, 1));

    file.write(&routes(true));
    tcpipe.reload().expect("the reload");
    assert_eq!(tcpipe.route_addr("b"), addr, "b got another socket");
    assert_eq!(tcpipe.route_addr("fallback"), addr);
    let mut after = connect(addr);
    assert_round_trip(&mut after, &hello_for("b.example"));
    assert_eq!(b.served(), 1, "the new route did not take its client");
    assert_round_trip(&mut before, b"still here");

    // Removing the default: a name no route has is turned away.
    file.write(&format!(
        "{}{}",
        shared_route("a", a.addr, "match.sni = [\"a.example\"]"),
        shared_route("b", b.addr, "match.sni = [\"b.example\"]"),
    ));
    tcpipe.reload().expect("the second reload");
    let mut stray = connect(addr);
    stray.write_all(&hello_for("c.example")).unwrap();
    assert_reset(&mut stray, "a client no route takes");
}
