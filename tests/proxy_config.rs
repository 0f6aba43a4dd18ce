//! The PROXY protocol and source-rule settings: bad values on the command
//! line or in a file give one line naming the flag or key, the value and
//! the reason, and exit 2.

mod common;
use common::config::{route, ConfigFile};
use common::*;

/// The one stderr line of a run that must exit 2.
fn refused(args: &[&str]) -> String {
    let output = run_tcpipe(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected: {stderr:?}");
    lines[0].to_string()
}

fn assert_names(line: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(line.contains(fragment), "{fragment:?} missing from: {line}");
    }
}

fn flags(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["-l", "127.0.0.1:0", "-t", "127.0.0.1:1"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn bad_flags_name_the_flag_the_value_and_the_reason() {
    let line = refused(&flags(&["--allow", "10.0.0.1/8"]));
    assert_names(&line, &["--allow", "10.0.0.1/8", "host bits", "10.0.0.0/8"]);
    let line = refused(&flags(&["--deny", "10.0.0.0/33"]));
    assert_names(&line, &["--deny", "10.0.0.0/33", "0 to 32"]);
    let line = refused(&flags(&["--deny", "example.com"]));
    assert_names(
        &line,
        &["--deny", "example.com", "not an IPv4 or IPv6 address"],
    );
    let line = refused(&flags(&["--send-proxy", "v3"]));
    assert_names(&line, &["--send-proxy", "v3"]);
    let line = refused(&flags(&["--max-connections-per-source", "0"]));
    assert_names(&line, &["max-connections-per-source", "0", "at least 1"]);
    let line = refused(&flags(&["--send-proxy", "v1", "--buffer-size", "64"]));
    assert_names(
        &line,
        &["--buffer-size", "'64'", "between 4k (a page) and 1g"],
    );
    let line = refused(&flags(&["--proxy-timeout", "soon"]));
    assert_names(&line, &["--proxy-timeout", "soon"]);
}

#[test]
fn bad_keys_in_a_file_name_the_key_the_value_and_the_reason() {
    let target = "127.0.0.1:1".parse().unwrap();
    for (options, fragments) in [
        (
            r#"deny = ["10.0.0.0/8", "::1/129"]"#,
            &["route[0].deny", "::1/129", "0 to 128"][..],
        ),
        (
            r#"allow = "10.0.0.1/8""#,
            &["route[0].allow", "10.0.0.1/8", "host bits"],
        ),
        (r#"send-proxy = "v3""#, &["route[0].send-proxy", "v3", "v1"]),
        (r#"accept-proxy = "yes""#, &["route[0].accept-proxy", "yes"]),
        (
            r#"proxy-timeout = "soon""#,
            &["route[0].proxy-timeout", "soon"],
        ),
        (
            "max-connections-per-source = 0",
            &["route[0].max-connections-per-source", "0", "at least 1"],
        ),
    ] {
        let file = ConfigFile::new(&route("r", &[target], options));
        let line = refused(&["--check", "--config", file.path_str()]);
        assert_names(&line, fragments);
    }
}

#[test]
fn good_settings_pass_the_check() {
    let target = "127.0.0.1:1".parse().unwrap();
    let options = r#"send-proxy = "v2"
accept-proxy = true
proxy-timeout = "5s"
allow = ["10.0.0.0/8", "::1/128", "192.0.2.7"]
deny = "10.6.6.0/24"
max-connections-per-source = 20"#;
    let file = ConfigFile::new(&route("r", &[target], options));
    let output = run_tcpipe(&["--check", "--config", file.path_str()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
