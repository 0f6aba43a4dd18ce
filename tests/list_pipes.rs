//! Listing live pipes: the list matches what is open, route by route, with
//! each pipe's ends, state and counters.

mod common;
use common::faults::*;
use common::hooks::*;
use common::*;

use std::net::Shutdown;

use tcpipe::{Config, PipeState, Route};

#[test]
fn the_list_of_live_pipes_matches_reality() {
    let (web_target, web_addr) = listener();
    let (db_target, db_addr) = listener();
    let local = "127.0.0.1:0".parse().unwrap();
    let config = Config::with_routes(vec![
        Route::new("web", local, web_addr),
        Route::new("db", local, db_addr),
    ]);
    let running = Running::start(config);
    let (web, db) = (running.route_addr("web"), running.route_addr("db"));

    let mut clients = Vec::new();
    for (route, addr, target, sent) in [
        ("web", web, &web_target, 10),
        ("web", web, &web_target, 20),
        ("db", db, &db_target, 30),
    ] {
        let mut client = connect(addr);
        let mut upstream = accept(target);
        assert_delivered(&mut client, &mut upstream, &vec![b'x'; sent]);
        let id = running.events.pipe_of(client.local_addr().unwrap());
        clients.push((route, id, client, upstream, sent as u64));
    }
    let (_, half_id, half_client, _, _) = &clients[2];
    half_client.shutdown(Shutdown::Write).unwrap();
    assert!(wait_until(DEADLINE, || running
        .handle
        .pipes()
        .unwrap()
        .iter()
        .any(|p| p.id == *half_id && p.state == PipeState::HalfClosed)));

    let list = running.handle.pipes().unwrap();
    assert_eq!(list.len(), 3, "{list:#?}");
    for (route, id, client, _, sent) in &clients {
        let pipe = list
            .iter()
            .find(|p| p.id == *id)
            .expect("every pipe is listed");
        assert_eq!(pipe.route.as_deref(), Some(*route));
        assert_eq!(pipe.client, client.local_addr().unwrap());
        assert_eq!(pipe.bytes_toward_target, *sent);
        assert_eq!(pipe.bytes_toward_client, 0);
        assert!(!pipe.paused);
    }
    assert_eq!(
        list.iter().filter(|p| p.state == PipeState::Open).count(),
        2
    );

    // A pipe that ends leaves the list.
    let (_, gone, client, _, _) = clients.remove(0);
    reset(client);
    running.events.closed(gone);
    let list = running.handle.pipes().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|p| p.id != gone));
    running.stop();
}
