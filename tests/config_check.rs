//! `--config FILE` and `--check`: a file that can run is reported as such
//! without binding anything (like `haproxy -c` and `nginx -t`); one that
//! cannot gives exit code 2 and a line per problem naming the file, the
//! line, the key path and the reason (with the key probably meant, for an
//! unknown one); process-wide flags beside the file win over `[global]`.

mod common;
use common::config::*;
use common::*;

use std::net::TcpListener;

fn check(file: &ConfigFile) -> std::process::Output {
    run_tcpipe(&["--check", "--config", file.path_str()])
}

/// Runs `--check` on `text`, which must be refused, and returns its one
/// line of stderr.
fn refused(text: &str) -> (ConfigFile, String) {
    let file = ConfigFile::new(text);
    let output = check(&file);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "should exit 2; stderr: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "printed to stdout: {:?}",
        output.stdout
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(
        stderr.contains(file.path_str()),
        "the file is not named: {stderr}"
    );
    (file, stderr.trim_end().to_string())
}

fn assert_names(line: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(
            line.contains(fragment),
            "the error should say {fragment:?}: {line}"
        );
    }
}

const VALID: &str = r#"
[global]
max-connections = 100

[defaults]
connect-timeout = "2s"

[[route]]
name = "web"
listen = ["127.0.0.1:0", "127.0.0.2:0"]
targets = ["127.0.0.1:8080", "localhost:8081"]
balance = "least-conn"

[[route]]
name = "db"
listen = "127.0.0.1:0"
targets = "127.0.0.1:5432"
idle-timeout = "10m"
"#;

#[test]
fn a_valid_file_passes_the_check_and_nothing_is_bound() {
    // The check must not bind: it passes even while the address is taken.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().unwrap();
    let file = ConfigFile::new(&VALID.replace(
        "\"127.0.0.1:0\"\ntargets = \"127.0.0.1:5432\"",
        &format!("\"{busy}\"\ntargets = \"127.0.0.1:5432\""),
    ));
    assert!(std::fs::read_to_string(file.path())
        .unwrap()
        .contains(&busy.to_string()));
    let output = check(&file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ok (2 routes, 3 listen addresses, 3 targets"),
        "{stdout}"
    );
}

#[test]
fn the_example_file_in_the_repository_passes_the_check() {
    let output = run_tcpipe(&["--check", "--config", "examples/tcpipe.toml"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn flags_pass_the_check_too() {
    let output = run_tcpipe(&["--check", "-l", "127.0.0.1:0", "-t", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("the flags: ok (1 route"));
}

#[test]
fn an_unknown_key_is_named_with_its_path_and_line() {
    let (_, line) = refused(&VALID.replace("balance =", "balanse ="));
    assert_names(
        &line,
        &[
            ":12:",
            "route[0].balanse",
            "unknown key `balanse`; did you mean `balance`?",
        ],
    );
}

/// Runs `--check` on `text`, which must be refused, and returns its lines
/// of stderr.
fn refused_lines(text: &str) -> (ConfigFile, Vec<String>) {
    let file = ConfigFile::new(text);
    let output = check(&file);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "printed to stdout: {:?}",
        output.stdout
    );
    let lines = stderr.lines().map(str::to_string).collect();
    (file, lines)
}

#[test]
fn an_underscore_key_suggests_the_dashed_one() {
    let (_, line) = refused(&VALID.replace("idle-timeout =", "idle_timeout ="));
    assert_names(
        &line,
        &[
            ":18:",
            "route[1].idle_timeout",
            "unknown key `idle_timeout`; did you mean `idle-timeout`?",
        ],
    );
}

#[test]
fn every_bad_key_of_a_file_is_reported_on_a_line_of_its_own() {
    let text = VALID
        .replace("max-connections = 100", "max_connections = 100")
        .replace("connect-timeout = \"2s\"", "connect-timeout = \"2\"")
        .replace("\"least-conn\"", "\"fastest\"")
        .replace(
            "idle-timeout = \"10m\"",
            "idle-timeout = \"10m\"\nbuffer-size = \"1kb\"",
        );
    let (file, lines) = refused_lines(&text);
    let path = file.path_str();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert_eq!(
        lines[0],
        format!(
            "tcpipe: {path}:3: global.max_connections: unknown key `max_connections`; \
             did you mean `max-connections`?"
        )
    );
    assert_names(
        &lines[1],
        &[
            &format!("{path}:6:"),
            "defaults.connect-timeout",
            "missing unit",
        ],
    );
    assert_names(
        &lines[2],
        &[&format!("{path}:12:"), "route[0].balance", "fastest"],
    );
    assert_names(
        &lines[3],
        &[
            &format!("{path}:19:"),
            "route[1].buffer-size",
            "ambiguous unit 'kb'",
        ],
    );
}

#[test]
fn a_decimal_duration_and_a_day_pass_the_check() {
    let text = VALID
        .replace("\"10m\"", "\"1d\"")
        .replace("\"2s\"", "\"1.5s\"");
    let file = ConfigFile::new(&text);
    let output = check(&file);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_bad_value_names_the_key_the_value_and_the_reason() {
    let (_, line) = refused(&VALID.replace("\"10m\"", "\"10\""));
    assert_names(
        &line,
        &[":18:", "route[1].idle-timeout", "'10'", "missing unit"],
    );
    let (_, line) = refused(&VALID.replace("\"least-conn\"", "\"fastest\""));
    assert_names(&line, &["route[0].balance", "fastest", "least-conn"]);
    let (_, line) = refused(&VALID.replace("max-connections = 100", "max-connections = -5"));
    assert_names(&line, &[":3:", "global.max-connections", "-5"]);
}

#[test]
fn duplicate_route_names_are_refused() {
    let (_, line) = refused(&VALID.replace("name = \"db\"", "name = \"web\""));
    assert_names(
        &line,
        &["route[1].name", "'web'", "another route has this name"],
    );
}

#[test]
fn two_routes_on_one_address_are_refused() {
    let text = VALID
        .replace("[\"127.0.0.1:0\", \"127.0.0.2:0\"]", "\"0.0.0.0:7000\"")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:7000\"");
    let (_, line) = refused(&text);
    assert_names(
        &line,
        &[
            "route[1].listen",
            "127.0.0.1:7000",
            "overlaps 0.0.0.0:7000",
            "'web'",
        ],
    );
}

#[test]
fn an_unresolvable_target_is_refused_by_the_check() {
    let (_, line) = refused(&VALID.replace("localhost:8081", "no-such-host.invalid:8081"));
    assert_names(
        &line,
        &[
            ":11:",
            "route[0].targets[1]",
            "no-such-host.invalid:8081",
            "cannot resolve",
        ],
    );
}

#[test]
fn missing_keys_missing_files_and_flags_beside_a_file_are_refused() {
    let (_, line) = refused("[[route]]\nname = \"x\"\nlisten = \"127.0.0.1:0\"\n");
    assert_names(&line, &["route[0]", "missing key 'targets'"]);
    let (_, line) = refused("");
    assert_names(&line, &["at least one route"]);

    let output = run_tcpipe(&["--config", "/nonexistent/tcpipe.toml"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_names(&stderr, &["/nonexistent/tcpipe.toml", "cannot read"]);

    let file = ConfigFile::new(VALID);
    let output = run_tcpipe(&["--config", file.path_str(), "--idle-timeout", "5s"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_names(
        &stderr,
        &["--idle-timeout cannot be combined with --config"],
    );
}

#[test]
fn the_check_shows_the_flags_that_win_over_global() {
    let file = ConfigFile::new(VALID);
    let output = run_tcpipe(&[
        "--check",
        "--config",
        file.path_str(),
        "--workers",
        "2",
        "--max-connections",
        "7",
        "--drain-timeout",
        "1.5m",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.trim_end().ends_with(
            "nothing bound); flags over [global]: max-connections = 7, drain-timeout = 90s, \
             workers = 2"
        ),
        "{stdout}"
    );
}

#[test]
fn a_bad_flag_over_global_is_named_as_the_flag() {
    let file = ConfigFile::new(VALID);
    let output = run_tcpipe(&["--check", "--config", file.path_str(), "--workers", "0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_names(&stderr, &["--workers", "'0'", "must be between 1 and 1024"]);
    assert!(!stderr.contains("global.workers"), "{stderr}");
}

#[test]
fn a_negative_count_names_its_key_and_says_why() {
    for key in ["pool", "retries", "max-connections", "fail-threshold"] {
        let (_file, line) = refused(&VALID.replace(
            "idle-timeout = \"10m\"",
            &format!("idle-timeout = \"10m\"\n{key} = -1"),
        ));
        assert_names(&line, &[&format!("route[1].{key}"), "-1", "negative"]);
    }
    let (_file, line) = refused(&VALID.replace("max-connections = 100", "max-connections = -1"));
    assert_names(&line, &["global.max-connections", "-1", "negative"]);
}

#[test]
fn a_listen_address_without_a_host_is_every_ipv4_address_in_a_file_too() {
    let file = ConfigFile::new(&VALID.replace("\"127.0.0.1:0\"\ntargets", "\":0\"\ntargets"));
    let output = check(&file);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
