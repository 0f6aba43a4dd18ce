//! The admin API over its Unix socket, request by request as curl sends
//! them: listing routes, targets and pipes, setting a target's state and
//! weight, killing pipes, waiting for a target to empty, reloading; and
//! the socket file's life (mode 0600, a stale file replaced, a live one
//! refused, removed at exit).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::admin::{mode, AdminDir};
use common::config::{route, ConfigFile};
use common::faults::{assert_reset, assert_round_trip, open_pipe};
use common::{echo_server, listener, Tcpipe, DEADLINE};

/// A forwarder to `target` with its admin API in `dir`.
fn start(dir: &AdminDir, target: impl std::fmt::Display) -> Tcpipe {
    Tcpipe::start(target, &["--admin", &dir.flag()])
}

#[test]
fn routes_targets_and_pipes_are_listed_with_their_counters() {
    let dir = AdminDir::new();
    let (target, target_addr) = listener();
    let tcpipe = start(&dir, target_addr);
    let admin = tcpipe.admin();
    let (mut client, mut upstream) = open_pipe(&tcpipe, &target);
    common::faults::assert_delivered(&mut client, &mut upstream, b"hello");
    common::faults::assert_delivered(&mut upstream, &mut client, b"hi");

    let routes = admin.get("/v1/routes");
    assert_eq!(routes.status, 200, "{routes:?}");
    assert_eq!(
        routes.header("content-type").as_deref(),
        Some("application/json")
    );
    let route = &routes.json()["routes"][0];
    assert_eq!(route["name"], "default");
    assert_eq!(route["listen"][0], tcpipe.addr.to_string());
    assert_eq!(route["balance"], "round-robin");
    assert_eq!(route["targets"][0], target_addr.to_string());
    assert_eq!(route["live_pipes"], 1);
    assert_eq!(route["total_pipes"], 1);

    let name = target_addr.to_string();
    let targets = admin.get("/v1/targets").json();
    let listed = &targets["targets"][0];
    assert_eq!(listed["route"], "default");
    assert_eq!(listed["name"], name);
    assert_eq!(listed["address"], name);
    assert_eq!(listed["state"], "ready");
    assert_eq!(listed["weight"], 1);
    assert_eq!(listed["backup"], false);
    assert_eq!(listed["healthy"], true);
    assert_eq!(listed["live_pipes"], 1);
    assert_eq!(listed["total_pipes"], 1);
    assert_eq!(listed["connect_failures"], 0);
    let of_route = admin.get("/v1/targets?route=default").json();
    assert_eq!(of_route["targets"].as_array().unwrap().len(), 1);

    // Byte counters move as the pipe's bytes are delivered.
    let pipes = admin.get("/v1/pipes").json();
    let pipe = &pipes["pipes"][0];
    assert!(pipe["id"].as_u64().is_some(), "{pipes}");
    assert_eq!(pipe["route"], "default");
    assert_eq!(pipe["client"], client.local_addr().unwrap().to_string());
    assert_eq!(pipe["target"], name);
    assert_eq!(pipe["bytes_to_target"], 5);
    assert_eq!(pipe["bytes_to_client"], 2);
    assert_eq!(pipe["stage"], "open");
    assert_eq!(pipe["paused"], false);
    assert!(pipe["age_seconds"].as_f64().unwrap() >= 0.0);

    // Filters, the target's name percent-encoded or not.
    for path in [
        "/v1/pipes?route=default".to_string(),
        format!("/v1/pipes?target=default/{name}"),
        format!("/v1/pipes?target=default%2F{}", name.replace(':', "%3A")),
    ] {
        let found = admin.get(&path).json();
        assert_eq!(
            found["pipes"].as_array().unwrap().len(),
            1,
            "{path}: {found}"
        );
    }
    let other = admin.get("/v1/pipes?target=default/127.0.0.1:1");
    assert_eq!(other.status, 404, "{other:?}");
    assert!(other.error().contains("default/127.0.0.1:1"), "{other:?}");
    assert_eq!(admin.get("/v1/pipes?route=nope").status, 404);
    assert_eq!(admin.get("/v1/targets?route=nope").status, 404);
}

#[test]
fn state_and_weight_are_set_and_shown_and_a_drained_target_gets_no_new_pipe() {
    let dir = AdminDir::new();
    let (first, first_addr) = listener();
    let second_addr = echo_server();
    let tcpipe = Tcpipe::start(
        first_addr,
        &["--admin", &dir.flag(), "-t", &second_addr.to_string()],
    );
    let admin = tcpipe.admin();
    let path = |what: &str| format!("/v1/targets/default/{first_addr}/{what}");

    let set = admin.put(&path("state"), r#"{"state":"drain"}"#);
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.json()["state"], "drain");
    let set = admin.put(&path("weight"), r#"{"weight": 7}"#);
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.json()["weight"], 7);
    let targets = admin.get("/v1/targets").json();
    let shown = targets["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == first_addr.to_string())
        .cloned()
        .unwrap();
    assert_eq!(
        (shown["state"].as_str(), shown["weight"].as_u64()),
        (Some("drain"), Some(7))
    );

    // Every new client goes to the other target, at once.
    for _ in 0..4 {
        assert_round_trip(&mut tcpipe.connect(), b"ping");
    }
    first.set_nonblocking(true).unwrap();
    assert!(first.accept().is_err(), "a drained target got a new pipe");

    let ready = admin.put(&path("state"), r#"{"state":"ready"}"#);
    assert_eq!(ready.json()["state"], "ready");
}

#[test]
fn killing_a_pipe_by_id_resets_both_ends() {
    let dir = AdminDir::new();
    let (target, target_addr) = listener();
    let tcpipe = start(&dir, target_addr);
    let admin = tcpipe.admin();
    let (mut client, mut upstream) = open_pipe(&tcpipe, &target);
    let pipes = admin.get("/v1/pipes").json();
    let id = pipes["pipes"][0]["id"].as_u64().expect("a pipe id");

    let killed = admin.call("DELETE", &format!("/v1/pipes/{id}"), None, None);
    assert_eq!(killed.status, 200, "{killed:?}");
    assert_eq!(killed.json()["killed"], 1);
    assert_reset(&mut client, "client");
    assert_reset(&mut upstream, "target");
    // Answered once it took effect: the pipe is gone already.
    assert_eq!(
        admin.get("/v1/pipes").json()["pipes"],
        serde_json::json!([])
    );
    let again = admin.call("DELETE", &format!("/v1/pipes/{id}"), None, None);
    assert_eq!(again.status, 404, "{again:?}");
}

#[test]
fn killing_the_pipes_of_a_target_or_route_resets_them_and_the_forwarder_goes_on() {
    let dir = AdminDir::new();
    let (target, target_addr) = listener();
    let tcpipe = start(&dir, target_addr);
    let admin = tcpipe.admin();
    let mut ends: Vec<_> = (0..3).map(|_| open_pipe(&tcpipe, &target)).collect();

    let body = format!(r#"{{"target":"default/{target_addr}"}}"#);
    let killed = admin.post("/v1/pipes/kill", &body);
    assert_eq!(killed.status, 200, "{killed:?}");
    assert_eq!(killed.json()["killed"], 3);
    for (client, upstream) in &mut ends {
        assert_reset(client, "client");
        assert_reset(upstream, "target");
    }

    let (mut client, mut upstream) = open_pipe(&tcpipe, &target);
    common::faults::assert_delivered(&mut client, &mut upstream, b"still forwarding");
    let killed = admin.post("/v1/pipes/kill", r#"{"route":"default"}"#);
    assert_eq!(killed.json()["killed"], 1);
    assert_reset(&mut client, "client");
    let none = admin.post("/v1/pipes/kill", r#"{"route":"default"}"#);
    assert_eq!(none.json()["killed"], 0);
}

#[test]
fn wait_empty_answers_when_the_last_pipe_ends_and_other_requests_go_on_meanwhile() {
    let dir = AdminDir::new();
    let (target, target_addr) = listener();
    let tcpipe = start(&dir, target_addr);
    let admin = tcpipe.admin();
    let (client, upstream) = open_pipe(&tcpipe, &target);
    let drained = admin.put(
        &format!("/v1/targets/default/{target_addr}/state"),
        r#"{"state":"drain"}"#,
    );
    assert_eq!(drained.status, 200);

    let waiting = admin.clone();
    let path = format!("/v1/targets/default/{target_addr}/wait-empty");
    let waiter = thread::spawn(move || {
        let reply = waiting.post(&path, r#"{"timeout":"1m"}"#);
        (reply, Instant::now())
    });
    // While it waits, the API and the forwarder answer as ever.
    thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        assert_eq!(admin.get("/v1/targets").status, 200);
    }
    assert!(
        !waiter.is_finished(),
        "wait-empty answered with a pipe live"
    );

    let closed = Instant::now();
    drop(client);
    drop(upstream);
    let (reply, answered) = waiter.join().unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["remaining"], 0);
    assert!(answered >= closed);
    assert!(answered - closed < Duration::from_secs(5));
}

#[test]
fn wait_empty_at_its_timeout_says_how_many_pipes_remain() {
    let dir = AdminDir::new();
    let (target, target_addr) = listener();
    let tcpipe = start(&dir, target_addr);
    let admin = tcpipe.admin();
    let _pipes = [open_pipe(&tcpipe, &target), open_pipe(&tcpipe, &target)];
    let path = format!("/v1/targets/default/{target_addr}/wait-empty");
    let started = Instant::now();
    let reply = admin.post(&path, r#"{"timeout":"300ms"}"#);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.status, 409, "{reply:?}");
    assert_eq!(reply.json()["remaining"], 2);
    assert!(
        reply.error().contains("2 pipes still live after 300ms"),
        "{reply:?}"
    );
    // Timeout 0 asks how many there are now.
    let now = admin.post(&path, r#"{"timeout":"0"}"#);
    assert_eq!(now.json()["remaining"], 2, "{now:?}");
    let unknown = admin.post("/v1/targets/default/127.0.0.1:1/wait-empty", "");
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

#[test]
fn reload_through_the_api_rereads_the_file_and_answers_with_its_summary() {
    let dir = AdminDir::new();
    let echo = echo_server();
    let admin_line = format!("[global]\nadmin = \"{}\"\n", dir.flag());
    let file = ConfigFile::new(&format!("{admin_line}{}", route("web", &[echo], "")));
    let tcpipe = Tcpipe::start_config(&file);
    let admin = tcpipe.admin();

    file.write(&format!(
        "{admin_line}{}{}",
        route("web", &[echo], ""),
        route("api", &[echo], "")
    ));
    let reply = admin.post("/v1/reload", "");
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["reloaded"], true);
    let summary: Vec<&str> = body["summary"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|line| line.as_str())
        .collect();
    assert!(
        summary
            .iter()
            .any(|line| line.contains("api") && line.contains("added")),
        "{summary:?}"
    );
    let api = body["listening"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["route"] == "api")
        .and_then(|l| l["address"].as_str()?.parse().ok())
        .expect("the new route's address");
    assert_round_trip(&mut common::connect(api), b"through the new route");

    // A broken file is refused with its reason; the running config stays.
    file.write(&format!("{admin_line}[[route]]\nname = \"web\"\n"));
    let refused = admin.post("/v1/reload", "");
    assert_eq!(refused.status, 422, "{refused:?}");
    assert!(refused.error().contains("listen"), "{refused:?}");
    assert_round_trip(&mut common::connect(api), b"still there");

    // The endpoint is set at startup: a file that moves it is told so.
    let elsewhere = format!(
        "unix:{}",
        dir.socket().with_file_name("other.sock").display()
    );
    file.write(&format!(
        "[global]\nadmin = \"{elsewhere}\"\n{}",
        route("web", &[echo], "")
    ));
    let kept = admin.post("/v1/reload", "");
    assert_eq!(kept.status, 200, "{kept:?}");
    let expected = format!("admin {} kept (asked for {elsewhere}", dir.flag());
    assert!(kept.body.contains(&expected), "{kept:?}");
    assert_eq!(tcpipe.admin().get("/v1/routes").status, 200);
}

#[test]
fn reload_without_a_config_file_says_there_is_none() {
    let dir = AdminDir::new();
    let tcpipe = start(&dir, echo_server());
    let reply = tcpipe.admin().post("/v1/reload", "");
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(reply.error().contains("no file to reload"), "{reply:?}");
    assert_round_trip(&mut tcpipe.connect(), b"still forwarding");
}

#[test]
fn the_socket_file_is_private_replaces_a_stale_one_refuses_a_live_one_and_goes_at_exit() {
    let dir = AdminDir::new();
    // A stale file: a socket whose process is gone.
    drop(std::os::unix::net::UnixListener::bind(dir.socket()).unwrap());
    assert!(dir.socket().exists());
    let mut tcpipe = start(&dir, echo_server());
    assert_eq!(mode(&dir.socket()), 0o600);
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(dir.socket()).unwrap().uid();
    assert_eq!(
        owner,
        std::fs::metadata(dir.file("mine", "")).unwrap().uid()
    );
    assert_eq!(tcpipe.admin().get("/v1/routes").status, 200);

    // A second forwarder on the same socket is refused, in one line.
    let second = common::run_tcpipe(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--admin",
        &dir.flag(),
    ]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.contains("cannot serve the admin API on unix:")
            && line.contains("another process serves this socket"),
        "{stderr}"
    );
    assert_eq!(tcpipe.admin().get("/v1/routes").status, 200, "left alone");

    tcpipe.signal("TERM");
    assert!(tcpipe.wait_exit(DEADLINE).is_some());
    assert!(
        !dir.socket().exists(),
        "the socket file outlived the forwarder"
    );

    // A path that is not a socket is never replaced.
    let file = dir.file("admin.sock", "precious");
    let refused = common::run_tcpipe(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--admin",
        &dir.flag(),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(file).unwrap(), "precious");
}

#[test]
fn the_root_path_is_the_status_page_and_unknown_paths_are_404() {
    let dir = AdminDir::new();
    let target = echo_server();
    let tcpipe = start(&dir, target);
    let admin = tcpipe.admin();
    let drained = admin.put(
        &format!("/v1/targets/default/{target}/state"),
        r#"{"state":"drain"}"#,
    );
    assert_eq!(drained.status, 200);
    let page = admin.get("/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    let row = format!("data-target=\"{target}\" data-state=\"drain\"");
    assert!(page.body.contains(&row), "{}", page.body);
    let unknown = admin.get("/v2/routes");
    assert_eq!(unknown.status, 404);
    assert!(unknown.error().contains("/v2/routes"));
}
