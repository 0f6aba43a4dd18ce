//! Routes: one forwarder runs several services from one config file, each
//! route with its own listeners, targets and options, independent of the
//! others.

mod common;
use common::config::*;
use common::faults::*;
use common::upstreams::*;
use common::*;

use std::time::{Duration, Instant};

#[test]
fn two_routes_forward_to_their_own_targets() {
    let (web_a, web_b, db) = (Backend::echo(), Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&format!(
        "{}{}",
        route("web", &[web_a.addr, web_b.addr], ""),
        route("db", &[db.addr], ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let (web, db_route) = (tcpipe.route_addr("web"), tcpipe.route_addr("db"));
    assert_ne!(web, db_route, "two routes share one address");

    for n in 0..4 {
        assert_served(connect(web), format!("web client {n}").as_bytes());
    }
    assert_served(connect(db_route), b"db client");
    assert!(
        wait_until(DEADLINE, || web_a.served() + web_b.served() == 4
            && db.served() == 1),
        "clients reached the wrong targets: web {} + {}, db {}",
        web_a.served(),
        web_b.served(),
        db.served()
    );
    assert_eq!(
        web_a.served(),
        2,
        "web does not balance over its own two targets"
    );
}

#[test]
fn a_route_listens_on_every_address_it_lists() {
    let target = Backend::echo();
    let file = ConfigFile::new(&format!(
        "[[route]]\nname = \"both\"\nlisten = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\ntargets = \"{}\"\n",
        target.addr
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let addrs = tcpipe.route_addrs("both");
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    for addr in addrs {
        assert_served(connect(addr), format!("through {addr}").as_bytes());
    }
    assert_eq!(target.served(), 2);
}

#[test]
fn each_route_has_its_own_options() {
    let (strict, lenient) = (Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&format!(
        "[defaults]\nidle-timeout = \"0\"\n{}{}",
        route("strict", &[strict.addr], "idle-timeout = \"300ms\""),
        route("lenient", &[lenient.addr], ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let mut on_strict = connect(tcpipe.route_addr("strict"));
    let mut on_lenient = connect(tcpipe.route_addr("lenient"));
    assert_round_trip(&mut on_strict, b"strict");
    assert_round_trip(&mut on_lenient, b"lenient");

    // The strict route's idle timeout resets its pipe...
    let idle_since = Instant::now();
    assert_reset(&mut on_strict, "the idle client of the strict route");
    assert!(
        idle_since.elapsed() >= Duration::from_millis(250),
        "reset after {:?}, before the route's 300ms idle timeout",
        idle_since.elapsed()
    );
    // ...while the other route's pipe, idle just as long, lives on.
    assert_round_trip(&mut on_lenient, b"still open");
}

#[test]
fn a_dead_route_does_not_disturb_a_live_one() {
    let live = Backend::echo();
    let file = ConfigFile::new(&format!(
        "{}{}",
        route("dead", &[refused_addr()], ""),
        route("live", &[live.addr], ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let (dead, live_route) = (tcpipe.route_addr("dead"), tcpipe.route_addr("live"));
    for n in 0..5 {
        let mut refused = connect(dead);
        let (bytes, _) = read_until_closed(&mut refused);
        assert_eq!(bytes, 0);
        assert_served(connect(live_route), format!("live {n}").as_bytes());
    }
    assert_eq!(live.served(), 5);
}

#[test]
fn a_routes_connection_limit_holds_its_own_clients_only() {
    use std::io::Write;
    let (limited, free) = (Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&format!(
        "{}{}",
        route("limited", &[limited.addr], "max-connections = 1"),
        route("free", &[free.addr], ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let mut first = connect(tcpipe.route_addr("limited"));
    assert_round_trip(&mut first, b"holding the only slot");
    let mut waiting = connect(tcpipe.route_addr("limited"));
    waiting.write_all(b"waiting").unwrap();

    // The other route is not held back by this one's limit...
    let others: Vec<_> = (0..3).map(|_| connect(tcpipe.route_addr("free"))).collect();
    for (n, client) in others.into_iter().enumerate() {
        assert_served(client, format!("free {n}").as_bytes());
    }
    // ...while the waiting client has not reached its target.
    assert_eq!(
        limited.served(),
        1,
        "the limit of 1 let a second client through"
    );

    first.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_end(&mut first).is_empty());
    let mut echoed = [0u8; 7];
    std::io::Read::read_exact(&mut waiting, &mut echoed).expect("served once a slot freed");
    assert_eq!(&echoed, b"waiting");
}
