//! The metrics and access-log settings, as flags and as `[global]` keys:
//! a bad value is one line naming the flag or key, the value and the
//! reason, with exit code 2.

mod common;

use common::config::{route, ConfigFile};
use common::run_tcpipe;

fn refused(args: &[&str]) -> String {
    let output = run_tcpipe(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    stderr
}

fn assert_names(line: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(line.contains(fragment), "should say {fragment:?}: {line}");
    }
}

const ROUTE: [&str; 4] = ["-l", "127.0.0.1:0", "-t", "127.0.0.1:1"];

fn with_route(extra: &[&'static str]) -> Vec<&'static str> {
    ROUTE.iter().chain(extra).copied().collect()
}

#[test]
fn bad_flags_are_named_with_value_and_reason() {
    let line = refused(&with_route(&["--metrics", "nowhere"]));
    assert_names(&line, &["--metrics", "nowhere"]);
    let line = refused(&with_route(&["--log-format", "xml"]));
    assert_names(&line, &["--log-format", "xml", "text", "json"]);
    let line = refused(&with_route(&["--access-log", ""]));
    assert_names(&line, &["--access-log", "off"]);
}

#[test]
fn the_metrics_address_may_not_be_a_listen_address() {
    let line = refused(&[
        "-l",
        "127.0.0.1:7311",
        "-t",
        "127.0.0.1:1",
        "--metrics",
        "0.0.0.0:7311",
        "--check",
    ]);
    assert_names(
        &line,
        &["--metrics", "0.0.0.0:7311", "overlaps 127.0.0.1:7311"],
    );
}

#[test]
fn bad_keys_are_named_with_their_path() {
    let target = "127.0.0.1:1".parse().unwrap();
    for (global, fragments) in [
        ("metrics = \"1.2.3\"", &["global.metrics", "1.2.3"][..]),
        ("log-format = \"xml\"", &["log-format", "xml"][..]),
        ("access-log = \"\"", &["global.access-log", "off"][..]),
        ("access-log-opens = \"yes\"", &["access-log-opens"][..]),
    ] {
        let text = format!("[global]\n{global}\n\n{}", route("web", &[target], ""));
        let file = ConfigFile::new(&text);
        let output = run_tcpipe(&["--check", "--config", file.path_str()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{global}: {stderr}");
        assert_names(&stderr, fragments);
        assert_names(&stderr, &[file.path_str(), ":2:"]);
    }
}

#[test]
fn an_access_log_that_cannot_be_opened_stops_startup() {
    let output = run_tcpipe(&with_route(&[
        "--access-log",
        "/nonexistent/dir/access.log",
    ]));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_names(&stderr, &["/nonexistent/dir/access.log", "access log"]);
}
