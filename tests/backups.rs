//! Backup targets (`--target ADDR,backup`): no client while any primary
//! can take one; every backup shares the load while no primary can (down,
//! drained or weight 0); and once a primary is back, new clients go to
//! the primaries again, split by their weights. Health comes from probes.

mod common;
use common::operate::{self, ROUTE};
use common::upstreams::{serve_client, Backend};
use common::*;

use tcpipe::{Target, TargetState};

#[test]
fn backups_share_the_load_only_while_every_primary_is_down() {
    let (mut a, mut b) = (Backend::echo(), Backend::echo());
    let (c, d) = (Backend::echo(), Backend::echo());
    let args = [
        "-t".to_string(),
        b.addr.to_string(),
        "-t".to_string(),
        format!("{},backup", c.addr),
        "-t".to_string(),
        format!("{},backup", d.addr),
        "--health-interval".into(),
        "50ms".into(),
        "--cooldown".into(),
        "60s".into(),
        "--metrics".into(),
        "127.0.0.1:0".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let tcpipe = Tcpipe::start(format!("{},weight=3", a.addr), &args);
    let backups_served = || c.served() + d.served();
    let mut n = 0;
    let mut serve = |count: usize| {
        for _ in 0..count {
            serve_client(&tcpipe, n);
            n += 1;
        }
    };
    serve(20);
    assert_eq!(
        backups_served(),
        0,
        "a backup served while both primaries were up"
    );
    let scrape = tcpipe.scrape();
    let backup = |backend: &Backend| {
        let target = backend.addr.to_string();
        scrape.get(
            "tcpipe_target_backup",
            &[("route", ROUTE), ("target", &target)],
        )
    };
    assert_eq!((backup(&a), backup(&c), backup(&d)), (0.0, 1.0, 1.0));

    a.refuse();
    tcpipe.wait_target_up(a.addr, false);
    let b_before = b.served();
    serve(20);
    assert_eq!(
        b.served() - b_before,
        20,
        "one primary left takes every client"
    );
    assert_eq!(
        backups_served(),
        0,
        "a backup served while a primary was up"
    );

    b.refuse();
    tcpipe.wait_target_up(b.addr, false);
    serve(40);
    assert_eq!(backups_served(), 40, "the backups took every client");
    assert!(
        c.served() >= 10 && d.served() >= 10,
        "every backup shares the load: {} and {}",
        c.served(),
        d.served()
    );

    a.listen();
    b.listen();
    tcpipe.wait_target_up(a.addr, true);
    tcpipe.wait_target_up(b.addr, true);
    let (a_before, b_before, backups_before) = (a.served(), b.served(), backups_served());
    serve(40);
    assert_eq!(
        backups_served(),
        backups_before,
        "the backups kept clients after recovery"
    );
    assert_eq!(
        (a.served() - a_before, b.served() - b_before),
        (30, 10),
        "after recovery the primaries' weights apply"
    );
}

#[test]
fn backups_take_over_while_the_operator_keeps_every_primary_from_clients() {
    let (a, b, c) = (Backend::echo(), Backend::echo(), Backend::echo());
    let running = operate::start(
        vec![
            Target::from(a.addr),
            Target::from(b.addr),
            Target::from(c.addr).backup(),
        ],
        2,
        |_| {},
    );
    let addr = running.addr();
    let backends = [&a, &b, &c];
    let handle = &running.handle;
    handle
        .set_target_state(ROUTE, &operate::name(&a), TargetState::Drain)
        .unwrap();
    for n in 0..10 {
        assert_eq!(operate::next_target(addr, &backends, n), 1);
    }
    handle
        .set_target_weight(ROUTE, &operate::name(&b), 0)
        .unwrap();
    for n in 0..10 {
        assert_eq!(operate::next_target(addr, &backends, n), 2);
    }
    assert!(handle.targets().unwrap()[2].backup);
    handle
        .set_target_state(ROUTE, &operate::name(&a), TargetState::Ready)
        .unwrap();
    for n in 0..10 {
        assert_eq!(operate::next_target(addr, &backends, n), 0);
    }
    running.stop();
}
