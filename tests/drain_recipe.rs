//! README's drain-and-upgrade recipe, end to end with `tcpipe ctl`:
//! drain a target, wait until it is empty while its last pipe finishes
//! every byte and new clients go elsewhere, "upgrade" it (its listener
//! closed and bound again), and put it back: it takes clients again.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::admin::{outcome, AdminDir};
use common::config::{route, ConfigFile};
use common::faults::accept;
use common::{binary, listener, read_to_end, wait_until, Tcpipe, DEADLINE};

/// A connection accepted on `listener` if one comes within `window`.
fn accept_within(listener: &TcpListener, window: Duration) -> Option<TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    wait_until(window, || {
        accepted = listener.accept().ok().map(|(stream, _)| stream);
        accepted.is_some()
    });
    accepted
}

#[test]
fn drain_wait_empty_upgrade_ready() {
    let dir = AdminDir::new();
    let (app1, app1_addr) = listener();
    let (app2, app2_addr) = listener();
    let file = ConfigFile::new(&format!(
        "[global]\nadmin = \"{}\"\n{}",
        dir.flag(),
        route("web", &[app1_addr, app2_addr], "")
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let ctl = |args: &[&str]| outcome(&tcpipe.ctl(args));
    let app1_name = format!("web/{app1_addr}");

    // A long-lived client on app1, where round-robin sends the first.
    let mut client = common::connect(tcpipe.route_addr("web"));
    let mut upstream =
        accept_within(&app1, DEADLINE).expect("round-robin sends the first client to app1");
    upstream.set_nonblocking(false).unwrap();
    upstream.set_read_timeout(Some(DEADLINE)).unwrap();

    // 1. drain
    let (out, _, code) = ctl(&["set", "target", &app1_name, "state", "drain"]);
    assert_eq!(
        (code, out.as_str()),
        (0, format!("{app1_name}: state drain\n").as_str())
    );

    // 2. wait empty, as a script would run it, while the pipe goes on.
    let waiter = Command::new(binary())
        .args([
            "ctl",
            "--admin",
            &dir.flag(),
            "wait",
            "empty",
            &app1_name,
            "--timeout",
            "1m",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // New clients go to app2 only.
    for _ in 0..4 {
        let mut other = common::connect(tcpipe.route_addr("web"));
        let mut served = accept(&app2);
        other.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        served.read_exact(&mut byte).unwrap();
    }
    assert!(
        accept_within(&app1, Duration::from_millis(200)).is_none(),
        "a drained target got a client"
    );

    // The live pipe finishes every byte, both ways, then ends.
    let payload: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = payload.clone();
    let mut writer = client.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let received = read_to_end(&mut upstream);
    sender.join().unwrap();
    assert_eq!(received, payload, "every byte reached app1");
    upstream.write_all(b"bye").unwrap();
    let ended = Instant::now();
    drop(upstream);
    assert_eq!(read_to_end(&mut client), b"bye");

    let waited = waiter.wait_with_output().unwrap();
    let (out, err, code) = outcome(&waited);
    assert_eq!(code, 0, "wait empty: {out} {err}");
    assert_eq!(out, format!("{app1_name}: no live pipe\n"));
    assert!(ended.elapsed() < Duration::from_secs(10));

    // 3. upgrade: app1 goes away and comes back on its address.
    drop(app1);
    let app1 = TcpListener::bind(app1_addr).expect("rebind app1's address");

    // 4. ready: app1 takes clients again.
    let (out, _, code) = ctl(&["set", "target", &app1_name, "state", "ready"]);
    assert_eq!(
        (code, out.as_str()),
        (0, format!("{app1_name}: state ready\n").as_str())
    );
    let mut reached_app1 = false;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(common::connect(tcpipe.route_addr("web")));
        if accept_within(&app1, Duration::from_millis(500)).is_some() {
            reached_app1 = true;
            break;
        }
    }
    assert!(reached_app1, "app1 took no client after ready");
    let (targets, _, _) = ctl(&["show", "targets"]);
    assert!(
        targets
            .lines()
            .any(|l| l.contains(&app1_addr.to_string()) && l.contains(" ready ")),
        "{targets}"
    );
}
