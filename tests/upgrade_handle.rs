//! `Handle::upgrade`, the library's trigger of a live upgrade: it answers
//! with why an upgrade failed (the forwarder carries on, and counts it),
//! and refuses one while another is under way.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::thread;

use common::{connect, echo_server, wait_until, DEADLINE};
use tcpipe::{Config, Forwarder, UpgradeError};

fn forwarder_upgrading_to(binary: &std::path::Path) -> (std::net::SocketAddr, tcpipe::Handle) {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), echo_server());
    config.upgrade_binary = Some(binary.to_path_buf());
    let forwarder = Forwarder::bind(config).expect("bind");
    let addr = forwarder.local_addr().unwrap();
    let handle = forwarder.handle();
    thread::spawn(move || forwarder.run().expect("run"));
    (addr, handle)
}

fn assert_echoes(addr: std::net::SocketAddr) {
    let mut stream = connect(addr);
    stream.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
}

#[test]
fn a_failed_upgrade_says_why_and_the_forwarder_carries_on() {
    let (addr, handle) = forwarder_upgrading_to("/nonexistent/tcpipe".as_ref());
    assert_echoes(addr);
    match handle.upgrade() {
        Err(UpgradeError::Failed(why)) => {
            assert!(why.contains("cannot start /nonexistent/tcpipe"), "{why}")
        }
        other => panic!("not a failure: {other:?}"),
    }
    assert_echoes(addr);
    assert!(wait_until(DEADLINE, || {
        handle.metrics().upgrades_failed_total.get() == 1
    }));
    handle.shutdown();
}

#[test]
fn an_upgrade_while_another_is_under_way_is_refused() {
    let dir = std::env::temp_dir().join(format!("tcpipe-upgrade-handle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let slow = dir.join("slow");
    std::fs::write(&slow, "#!/bin/sh\nsleep 1\nexit 1\n").unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (addr, handle) = forwarder_upgrading_to(&slow);

    let first = {
        let handle = handle.clone();
        thread::spawn(move || handle.upgrade())
    };
    let second = handle.upgrade();
    let first = first.join().unwrap();
    // Whichever came first ran (and failed: the binary exits 1); the
    // other was refused at once.
    let (ran, refused) = match (&first, &second) {
        (_, Err(UpgradeError::InProgress)) => (first, second),
        _ => (second, first),
    };
    assert!(
        matches!(refused, Err(UpgradeError::InProgress)),
        "{refused:?}"
    );
    match ran {
        Err(UpgradeError::Failed(why)) => assert!(why.contains("exit status: 1"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_echoes(addr);
    handle.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
