//! A client that sends its ClientHello and half-closes at once still has
//! its bytes delivered to the route its hello chose (sozu #1290).

mod common;
use common::config::*;
use common::tls::*;
use common::upstreams::*;
use common::*;

use std::io::Write;
use std::net::Shutdown;

#[test]
fn a_hello_then_fin_is_delivered() {
    let (named, fallback) = (Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&format!(
        "{}{}",
        shared_route("named", named.addr, "match.sni = [\"a.example\"]"),
        shared_route("fallback", fallback.addr, ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let hello = captured_hello("openssl_s_client.hex");
    let mut client = connect(tcpipe.route_addr("named"));
    client.write_all(&hello).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let echoed = read_to_end(&mut client);
    assert!(
        echoed == hello,
        "{} bytes back of {}",
        echoed.len(),
        hello.len()
    );
    assert_eq!((named.served(), fallback.served()), (1, 0));
    // Half a hello, then FIN: the default route gets what there is.
    let mut client = connect(tcpipe.route_addr("named"));
    client.write_all(&hello[..40]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut client) == hello[..40]);
    assert_eq!(fallback.served(), 1);
}
