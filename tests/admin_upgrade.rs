//! The admin endpoint through a live upgrade: `tcpipe ctl upgrade` (and
//! `POST /v1/upgrade`) answers with the new process, which then serves the
//! admin API where the old one did: on the same socket file, or on the
//! same TCP listener (handed over, so a port-0 address keeps its port).

mod common;

use std::io::{Read, Write};

use common::admin::{outcome, AdminDir, Endpoint};
use common::{echo_server, wait_until, Tcpipe, DEADLINE};

/// One line through the forwarder and its echo back.
fn echoes(tcpipe: &Tcpipe) -> bool {
    let mut stream = tcpipe.connect();
    let _ = stream.set_read_timeout(Some(DEADLINE));
    if stream.write_all(b"still here\n").is_err() {
        return false;
    }
    let mut back = [0u8; 11];
    stream.read_exact(&mut back).is_ok() && &back == b"still here\n"
}

/// `tcpipe ctl --json show targets`, answered.
fn show_targets(dir: &AdminDir) -> serde_json::Value {
    let (out, err, code) = outcome(&common::admin::ctl(&[
        "--admin",
        &dir.flag(),
        "--json",
        "show",
        "targets",
    ]));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).expect("JSON")
}

#[test]
fn ctl_upgrade_hands_the_socket_file_to_the_new_process() {
    let dir = AdminDir::new();
    let mut tcpipe = Tcpipe::start(echo_server(), &["--admin", &dir.flag()]);
    let old = tcpipe.pid();

    let (out, err, code) = outcome(&tcpipe.ctl(&["upgrade"]));
    assert_eq!(code, 0, "ctl upgrade failed: {out}{err}");
    assert!(out.starts_with("upgraded: pid "), "{out}");
    let new: u32 = out["upgraded: pid ".len()..]
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    assert_ne!(new, old);
    let status = tcpipe.wait_exit(DEADLINE).expect("the old process exits");
    assert!(status.success(), "the old process exited with {status}");

    // The old process left the new one's socket file in place.
    assert_eq!(common::admin::mode(&dir.socket()) & 0o777, 0o600);
    let (out, err, code) = outcome(&common::admin::ctl(&[
        "--admin",
        &dir.flag(),
        "--json",
        "show",
        "routes",
    ]));
    assert_eq!(
        code, 0,
        "the new process does not serve the admin API: {err}"
    );
    let routes: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(routes["routes"][0]["name"], "default", "{routes}");
    assert!(echoes(&tcpipe), "the new process does not forward");
    common::upgrade::signal(new, "TERM");
    assert!(wait_until(DEADLINE, || !common::upgrade::is_alive(new)));
}

#[test]
fn a_tcp_admin_listener_is_handed_over_with_its_port() {
    let dir = AdminDir::new();
    let token = dir.file("token", "s3cret-s3cret-s3cret\n");
    let mut tcpipe = Tcpipe::start(
        echo_server(),
        &[
            "--admin",
            "127.0.0.1:0",
            "--admin-token-file",
            token.to_str().expect("a UTF-8 path"),
        ],
    );
    let before = tcpipe.admin();
    let Endpoint::Tcp(addr) = before else {
        panic!("a TCP admin endpoint, not {before:?}");
    };

    let successor = tcpipe.upgrade();
    let after = successor
        .ready
        .admin()
        .expect("the new READY=1 names the admin endpoint");
    assert_eq!(
        after,
        addr.to_string(),
        "port 0 was bound anew, not handed over"
    );
    let reply = Endpoint::Tcp(addr).call("GET", "/v1/routes", None, Some("s3cret-s3cret-s3cret"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = Endpoint::Tcp(addr).call("GET", "/v1/routes", None, None);
    assert_eq!(reply.status, 401, "the token still guards it");
    assert!(echoes(&tcpipe), "the new process does not forward");
    successor.signal("TERM");
    assert!(successor.wait_gone(DEADLINE));
}

#[test]
fn a_drained_target_and_a_runtime_weight_survive_an_upgrade() {
    let dir = AdminDir::new();
    let (first, second) = (echo_server(), echo_server());
    let second_flag = second.to_string();
    let mut tcpipe = Tcpipe::start(first, &["--target", &second_flag, "--admin", &dir.flag()]);
    let drained = format!("default/{first}");
    let weighted = format!("default/{second}");
    for args in [
        ["set", "target", drained.as_str(), "state", "drain"],
        ["set", "target", weighted.as_str(), "weight", "7"],
    ] {
        let (out, err, code) = outcome(&tcpipe.ctl(&args));
        assert_eq!(code, 0, "{args:?}: {out}{err}");
    }

    let successor = tcpipe.upgrade();
    let targets = show_targets(&dir);
    let target = |name: &str| {
        targets["targets"]
            .as_array()
            .and_then(|all| all.iter().find(|t| t["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no target {name} in {targets}"))
    };
    assert_eq!(target(&first.to_string())["state"], "drain", "{targets}");
    assert_eq!(target(&second.to_string())["weight"], 7, "{targets}");
    assert_eq!(target(&second.to_string())["state"], "ready", "{targets}");
    // The drained target takes no new pipe in the new process either.
    for _ in 0..4 {
        assert!(echoes(&tcpipe));
    }
    let targets = show_targets(&dir);
    let total = |name: String| {
        targets["targets"]
            .as_array()
            .and_then(|all| all.iter().find(|t| t["name"] == name.as_str()))
            .map(|t| t["total_pipes"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    assert_eq!(total(first.to_string()), 0, "{targets}");
    assert_eq!(total(second.to_string()), 4, "{targets}");
    successor.signal("TERM");
    assert!(successor.wait_gone(DEADLINE));
}
