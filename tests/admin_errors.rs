//! What a careless or hostile admin client gets: a 4xx with one JSON line
//! naming what is wrong (unknown route or target, bad state, weight or
//! JSON, wrong method, a 10 MB body, a client sending a byte a second or
//! nothing), and never a stalled API or forwarder: each test ends by
//! checking that both still answer.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use common::admin::{read_reply, request, AdminDir, Endpoint};
use common::faults::assert_round_trip;
use common::{echo_server, Tcpipe, DEADLINE};

fn start(dir: &AdminDir) -> (Tcpipe, Endpoint, String) {
    let target = echo_server();
    let tcpipe = Tcpipe::start(target, &["--admin", &dir.flag()]);
    let admin = tcpipe.admin();
    (tcpipe, admin, target.to_string())
}

/// The API and the forwarder both still serve.
fn assert_unharmed(tcpipe: &Tcpipe, admin: &Endpoint) {
    let started = Instant::now();
    assert_eq!(admin.get("/v1/routes").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the API was held up"
    );
    assert_round_trip(&mut tcpipe.connect(), b"still forwarding");
}

#[test]
fn unknown_routes_and_targets_are_404_naming_them() {
    let dir = AdminDir::new();
    let (tcpipe, admin, target) = start(&dir);
    for (method, path, body) in [
        (
            "PUT",
            "/v1/targets/nope/x:1/state".to_string(),
            r#"{"state":"drain"}"#,
        ),
        (
            "PUT",
            format!("/v1/targets/nope/{target}/weight"),
            r#"{"weight":1}"#,
        ),
        (
            "PUT",
            "/v1/targets/default/10.9.9.9:1/state".into(),
            r#"{"state":"maint"}"#,
        ),
        (
            "POST",
            "/v1/targets/default/10.9.9.9:1/wait-empty".into(),
            "",
        ),
        ("POST", "/v1/pipes/kill".into(), r#"{"route":"nope"}"#),
        (
            "POST",
            "/v1/pipes/kill".into(),
            r#"{"target":"default/10.9.9.9:1"}"#,
        ),
        ("DELETE", "/v1/pipes/999999".into(), ""),
    ] {
        let reply = admin.call(method, &path, Some(body), None);
        assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
        let error = reply.error();
        assert!(
            error.contains("nope") || error.contains("10.9.9.9:1") || error.contains("999999"),
            "{method} {path}: {error}"
        );
    }
    assert_unharmed(&tcpipe, &admin);
}

#[test]
fn bad_states_weights_and_json_are_400_naming_the_field() {
    let dir = AdminDir::new();
    let (tcpipe, admin, target) = start(&dir);
    let state = format!("/v1/targets/default/{target}/state");
    let weight = format!("/v1/targets/default/{target}/weight");
    let wait = format!("/v1/targets/default/{target}/wait-empty");
    for (path, body, field) in [
        (&state, r#"{"state":"sleepy"}"#, "state"),
        (&state, r#"{"state":3}"#, "state"),
        (&state, r#"{}"#, "state"),
        (&state, r#"{"stat":"drain"}"#, "stat"),
        (&state, r#"{"state":"drain""#, "body"),
        (&state, "[1, 2]", "body"),
        (&state, "\u{0}\u{1}garbage", "body"),
        (&weight, r#"{"weight":-1}"#, "weight"),
        (&weight, r#"{"weight":"3"}"#, "weight"),
        (&weight, r#"{"weight":1.5}"#, "weight"),
        (&weight, r#"{"weight":99999999999}"#, "weight"),
        (&weight, r#"{"weight":20000}"#, "weight"),
        (&wait, r#"{"timeout":"soon"}"#, "timeout"),
        (&wait, r#"{"timeout":"48h"}"#, "timeout"),
    ] {
        let method = if path == &wait { "POST" } else { "PUT" };
        let reply = admin.call(method, path, Some(body), None);
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert!(reply.error().contains(field), "{body}: {reply:?}");
    }
    for (path, field) in [
        ("/v1/pipes/abc", "pipe id"),
        ("/v1/pipes?colour=red", "colour"),
        (
            "/v1/pipes?route=default&target=default/x:1",
            "route or target",
        ),
        ("/v1/pipes?target=default", "target"),
        ("/v1/targets/default/%zz/state", "percent"),
    ] {
        let method = if path.starts_with("/v1/pipes/abc") {
            "DELETE"
        } else {
            "GET"
        };
        let method = if path.ends_with("/state") {
            "PUT"
        } else {
            method
        };
        let reply = admin.call(method, path, Some(r#"{"state":"drain"}"#), None);
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert!(reply.error().contains(field), "{path}: {reply:?}");
    }
    // Nothing changed.
    let targets = admin.get("/v1/targets").json();
    assert_eq!(targets["targets"][0]["state"], "ready");
    assert_eq!(targets["targets"][0]["weight"], 1);
    assert_unharmed(&tcpipe, &admin);
}

#[test]
fn a_wrong_method_is_405_with_the_methods_allowed() {
    let dir = AdminDir::new();
    let (tcpipe, admin, target) = start(&dir);
    for (method, path, allow) in [
        ("POST", "/v1/routes".to_string(), "GET, HEAD"),
        ("DELETE", "/v1/targets".into(), "GET, HEAD"),
        ("GET", format!("/v1/targets/default/{target}/state"), "PUT"),
        ("GET", "/v1/reload".into(), "POST"),
        ("GET", "/v1/pipes/7".into(), "DELETE"),
    ] {
        let reply = admin.call(method, &path, None, None);
        assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
        assert_eq!(reply.header("allow").as_deref(), Some(allow));
        assert!(reply.error().contains(method));
    }
    assert_unharmed(&tcpipe, &admin);
}

#[test]
fn a_10_mb_body_is_413_before_it_is_read() {
    let dir = AdminDir::new();
    let (tcpipe, admin, target) = start(&dir);
    let path = format!("/v1/targets/default/{target}/state");
    let size = 10 << 20;
    let head = format!("PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n");
    let mut socket = UnixStream::connect(dir.socket()).unwrap();
    socket.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut writer = socket.try_clone().unwrap();
    let sender = thread::spawn(move || {
        // The server stops reading soon after its answer: the rest fails.
        let _ = writer.write_all(head.as_bytes());
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < size && writer.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let reply = read_reply(&mut socket);
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.error().contains("body too large"));
    drop(socket);
    assert!(
        sender.join().unwrap() < size,
        "the server read the whole body"
    );
    assert_eq!(
        admin.get("/v1/targets").json()["targets"][0]["state"],
        "ready"
    );
    assert_unharmed(&tcpipe, &admin);
}

#[test]
fn a_client_sending_a_byte_a_second_or_nothing_is_dropped_at_its_deadline_without_harm() {
    let dir = AdminDir::new();
    let (tcpipe, admin, _) = start(&dir);
    let started = Instant::now();
    let mut slow = UnixStream::connect(dir.socket()).unwrap();
    slow.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut trickler = slow.try_clone().unwrap();
    thread::spawn(move || {
        for byte in request("GET", "/v1/routes", None, None).bytes() {
            if trickler.write_all(&[byte]).is_err() {
                return;
            }
            // The behaviour under test is a client this slow.
            thread::sleep(Duration::from_secs(1));
        }
    });
    let mut silent = UnixStream::connect(dir.socket()).unwrap();
    silent.set_read_timeout(Some(DEADLINE)).unwrap();
    // Meanwhile, others are served at once.
    for _ in 0..3 {
        assert_unharmed(&tcpipe, &admin);
        thread::sleep(Duration::from_millis(300));
    }
    let silent_reply = read_reply(&mut silent);
    assert_eq!(silent_reply.status, 408, "{silent_reply:?}");
    assert!(silent_reply.error().contains("not received in time"));
    let slow_reply = read_reply(&mut slow);
    assert_eq!(slow_reply.status, 408, "{slow_reply:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_unharmed(&tcpipe, &admin);
}

#[test]
fn garbage_and_chunked_bodies_get_json_errors() {
    let dir = AdminDir::new();
    let (tcpipe, admin, _) = start(&dir);
    let garbage = admin.exchange(b"\x16\x03\x01\x02\x00\x01\x00\r\n\r\n");
    assert_eq!(garbage.status, 400, "{garbage:?}");
    assert!(garbage.error().contains("bad request"));
    let chunked =
        admin.exchange(b"POST /v1/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(chunked.status, 501, "{chunked:?}");
    assert!(chunked.error().contains("Content-Length"));
    assert_unharmed(&tcpipe, &admin);
}
