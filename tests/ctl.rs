//! `tcpipe ctl`, the admin API's client, as an operator runs it: tables
//! and `--json`, every command, and its exit codes: 0 done, 1 refused by
//! the forwarder (its message on stderr) or no answer, 2 usage (one line).

mod common;

use common::admin::{ctl, ctl_with_env, outcome, AdminDir};
use common::config::{route, ConfigFile};
use common::faults::{assert_reset, open_pipe};
use common::{echo_server, listener, Tcpipe};

/// A forwarder to `target` with its admin socket in `dir`.
fn start(dir: &AdminDir, target: impl std::fmt::Display) -> Tcpipe {
    Tcpipe::start(target, &["--admin", &dir.flag()])
}

/// stdout of a `tcpipe ctl` that must succeed (exit 0, nothing on stderr).
fn ok(output: std::process::Output) -> String {
    let (stdout, stderr, code) = outcome(&output);
    assert_eq!((code, stderr.as_str()), (0, ""), "stdout: {stdout}");
    stdout
}

/// stderr of a `tcpipe ctl` that must exit `code` with one line.
fn fails(output: std::process::Output, code: i32) -> String {
    let (stdout, stderr, got) = outcome(&output);
    assert_eq!(got, code, "stdout: {stdout}; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("tcpipe: ctl: "), "{stderr}");
    stderr
}

/// The rows of a table, each split on runs of spaces; the header first.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn show_prints_aligned_tables_and_the_json_with_json() {
    let dir = AdminDir::new();
    let (target, target_addr) = listener();
    let tcpipe = start(&dir, target_addr);
    let (mut client, mut upstream) = open_pipe(&tcpipe, &target);
    common::faults::assert_delivered(&mut client, &mut upstream, b"12345");

    let table = ok(tcpipe.ctl(&["show", "targets"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("ROUTE    TARGET"), "{table}");
    // Aligned: every column starts where its header does.
    let at = lines[0].find("STATE").unwrap();
    assert_eq!(&lines[1][at..at + 5], "ready", "{table}");
    let live = lines[0].find("LIVE").unwrap() + "LIVE".len();
    assert_eq!(
        &lines[1][live - 1..live],
        "1",
        "numbers end under their header: {table}"
    );
    let row = &rows(&table)[1];
    assert_eq!(
        row[..5],
        [
            "default",
            &target_addr.to_string(),
            &target_addr.to_string(),
            "ready",
            "1"
        ]
    );

    let routes = rows(&ok(tcpipe.ctl(&["show", "routes"])));
    assert_eq!(
        routes[0],
        ["ROUTE", "LISTEN", "BALANCE", "TARGETS", "LIVE", "TOTAL"]
    );
    assert_eq!(
        routes[1],
        [
            "default",
            &tcpipe.addr.to_string(),
            "round-robin",
            &target_addr.to_string(),
            "1",
            "1"
        ]
    );

    let pipes = rows(&ok(tcpipe.ctl(&[
        "show",
        "pipes",
        "--target",
        &format!("default/{target_addr}"),
    ])));
    assert_eq!(pipes[0][..4], ["ID", "ROUTE", "CLIENT", "TARGET"]);
    assert_eq!(pipes.len(), 2);
    assert_eq!(
        pipes[1][1..4],
        [
            "default",
            &client.local_addr().unwrap().to_string(),
            &target_addr.to_string()
        ]
    );
    assert_eq!(pipes[1][5..8], ["5", "0", "open"]);
    let none = rows(&ok(tcpipe.ctl(&["show", "pipes", "--route", "default"])));
    assert_eq!(none.len(), 2);

    let json: serde_json::Value =
        serde_json::from_str(&ok(tcpipe.ctl(&["--json", "show", "targets"]))).unwrap();
    assert_eq!(json["targets"][0]["name"], target_addr.to_string());
    let json: serde_json::Value =
        serde_json::from_str(&ok(tcpipe.ctl(&["show", "pipes", "--json"]))).unwrap();
    assert_eq!(json["pipes"][0]["bytes_to_target"], 5);
}

#[test]
fn set_kill_and_wait_act_and_say_what_they_did() {
    let dir = AdminDir::new();
    let (target, target_addr) = listener();
    let tcpipe = start(&dir, target_addr);
    let name = format!("default/{target_addr}");

    assert_eq!(
        ok(tcpipe.ctl(&["set", "target", &name, "weight", "3"])),
        format!("{name}: weight 3\n")
    );
    let (mut first, mut first_up) = open_pipe(&tcpipe, &target);
    let (mut second, mut second_up) = open_pipe(&tcpipe, &target);
    assert_eq!(
        ok(tcpipe.ctl(&["set", "target", &name, "state", "drain"])),
        format!("{name}: state drain\n")
    );
    let targets = rows(&ok(tcpipe.ctl(&["show", "targets"])));
    assert_eq!(targets[1][3..5], ["drain", "3"]);

    // Pipes remain: the wait times out and says how many (exit 1).
    let stderr = fails(
        tcpipe.ctl(&["wait", "empty", &name, "--timeout", "200ms"]),
        1,
    );
    assert!(
        stderr.contains("2 pipes still live after 200ms"),
        "{stderr}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(tcpipe.ctl(&["show", "pipes", "--json"]))).unwrap();
    let first_id = json["pipes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["client"] == first.local_addr().unwrap().to_string())
        .and_then(|p| p["id"].as_u64())
        .expect("the first client's pipe");
    assert_eq!(
        ok(tcpipe.ctl(&["kill", "pipe", &first_id.to_string()])),
        format!("pipe {first_id}: reset\n")
    );
    assert_reset(&mut first, "client");
    assert_reset(&mut first_up, "target");
    let stderr = fails(tcpipe.ctl(&["kill", "pipe", &first_id.to_string()]), 1);
    assert!(
        stderr.contains("no live pipe") && stderr.contains("404"),
        "{stderr}"
    );

    assert_eq!(
        ok(tcpipe.ctl(&["kill", "pipes", "--target", &name])),
        "1 pipe reset\n"
    );
    assert_reset(&mut second, "client");
    assert_reset(&mut second_up, "target");
    assert_eq!(
        ok(tcpipe.ctl(&["kill", "pipes", "--route", "default"])),
        "0 pipes reset\n"
    );
    assert_eq!(
        ok(tcpipe.ctl(&["wait", "empty", &name, "--timeout", "5s"])),
        format!("{name}: no live pipe\n")
    );
    assert_eq!(
        ok(tcpipe.ctl(&["set", "target", &name, "state", "ready"])),
        format!("{name}: state ready\n")
    );

    let stderr = fails(
        tcpipe.ctl(&["set", "target", "default/10.9.9.9:1", "state", "maint"]),
        1,
    );
    assert!(stderr.contains("10.9.9.9:1"), "{stderr}");
    let stderr = fails(tcpipe.ctl(&["set", "target", &name, "weight", "20000"]), 1);
    assert!(
        stderr.contains("weight") && stderr.contains("at most"),
        "{stderr}"
    );
}

#[test]
fn reload_rereads_the_file_and_prints_the_summary() {
    let dir = AdminDir::new();
    let echo = echo_server();
    let admin = format!("[global]\nadmin = \"{}\"\n", dir.flag());
    let file = ConfigFile::new(&format!("{admin}{}", route("web", &[echo], "")));
    let tcpipe = Tcpipe::start_config(&file);
    file.write(&format!(
        "{admin}{}{}",
        route("web", &[echo], ""),
        route("api", &[echo], "")
    ));
    let out = ok(tcpipe.ctl(&["reload"]));
    assert!(out.starts_with("reloaded\n"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("api") && l.contains("added")),
        "{out}"
    );
    file.write("[[route]]\n");
    let stderr = fails(tcpipe.ctl(&["reload"]), 1);
    assert!(
        stderr.contains("reload failed") && stderr.contains("422"),
        "{stderr}"
    );

    let flags = AdminDir::new();
    let from_flags = start(&flags, echo);
    let stderr = fails(from_flags.ctl(&["reload"]), 1);
    assert!(stderr.contains("no file to reload"), "{stderr}");
}

#[test]
fn the_endpoint_comes_from_tcpipe_admin_and_a_tcp_one_takes_the_token_file() {
    let dir = AdminDir::new();
    let tcpipe = start(&dir, echo_server());
    let via_env = ok(ctl_with_env(
        &["show", "routes"],
        &[("TCPIPE_ADMIN", &dir.flag())],
    ));
    assert!(via_env.starts_with("ROUTE"), "{via_env}");

    let token = dir.file("token", "a-token-of-twenty-chars\n");
    let wrong = dir.file("wrong", "another-token-entirely\n");
    let tcp = Tcpipe::start(
        echo_server(),
        &[
            "--admin",
            "127.0.0.1:0",
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    let addr = tcp.admin().flag();
    let table = ok(ctl(&[
        "--admin",
        &addr,
        "--admin-token-file",
        token.to_str().unwrap(),
        "show",
        "targets",
    ]));
    assert!(table.starts_with("ROUTE"), "{table}");
    let env = [
        ("TCPIPE_ADMIN", addr.as_str()),
        ("TCPIPE_ADMIN_TOKEN_FILE", token.to_str().unwrap()),
    ];
    assert!(ok(ctl_with_env(&["show", "routes"], &env)).starts_with("ROUTE"));
    let stderr = fails(
        ctl(&[
            "--admin",
            &addr,
            "--admin-token-file",
            wrong.to_str().unwrap(),
            "show",
            "routes",
        ]),
        1,
    );
    assert!(stderr.contains("401"), "{stderr}");
    drop(tcpipe);
}

#[test]
fn usage_errors_exit_2_in_one_line_and_no_answer_exits_1() {
    let dir = AdminDir::new();
    let admin = dir.flag();
    for (args, says) in [
        (vec!["show", "routes"], "--admin"),
        (vec!["--admin", &admin], "requires a subcommand"),
        (vec!["--admin", &admin, "show"], "routes, targets, pipes"),
        (
            vec![
                "--admin", &admin, "set", "target", "noslash", "state", "drain",
            ],
            "ROUTE/TARGET",
        ),
        (
            vec!["--admin", &admin, "set", "target", "a/b", "state", "asleep"],
            "ready, drain, maint",
        ),
        (
            vec!["--admin", &admin, "set", "target", "a/b", "weight", "-1"],
            "negative",
        ),
        (vec!["--admin", &admin, "kill", "pipes"], "--route"),
        (
            vec![
                "--admin", &admin, "kill", "pipes", "--route", "a", "--target", "a/b",
            ],
            "cannot be used with",
        ),
        (vec!["--admin", &admin, "kill", "pipe", "x"], "whole number"),
        (
            vec!["--admin", &admin, "wait", "empty", "a/b", "--timeout", "2d"],
            "at most 24h",
        ),
        (vec!["--admin", &admin, "frobnicate"], "frobnicate"),
        (
            vec!["--admin", "127.0.0.1:1", "show", "routes"],
            "--admin-token-file",
        ),
        (vec!["--admin", "nowhere", "show", "routes"], "nowhere"),
    ] {
        let stderr = fails(ctl(&args), 2);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // Nothing listens there: exit 1, and why.
    let stderr = fails(ctl(&["--admin", &admin, "show", "routes"]), 1);
    assert!(stderr.contains("cannot connect to unix:"), "{stderr}");
    let (help, _, code) = outcome(&ctl(&["--help"]));
    assert_eq!(code, 0);
    assert!(help.contains("show") && help.contains("wait"), "{help}");
    let top = common::run_tcpipe(&["--help"]);
    assert!(String::from_utf8_lossy(&top.stdout).contains("tcpipe ctl --help"));
}
