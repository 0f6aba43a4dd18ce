//! The command line: a usage error exits with code 2 and one line on stderr
//! that names the flag and the value; --help and --version exit 0; a listen
//! address already in use exits with code 1 and names the address.

mod common;
use common::*;

/// Runs tcpipe with `args`, which must be a usage error, and returns its
/// one line of stderr.
fn usage_error(args: &[&str]) -> String {
    let output = run_tcpipe(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "tcpipe {args:?} should exit 2 for a usage error; stderr: {stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "tcpipe {args:?} printed to stdout on a usage error: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "tcpipe {args:?} should print exactly one line on stderr, got: {stderr:?}"
    );
    lines[0].to_string()
}

fn assert_names(line: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(
            line.contains(fragment),
            "the error line should mention {fragment:?}: {line}"
        );
    }
}

fn succeeds_on_stdout(args: &[&str]) -> String {
    let output = run_tcpipe(args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "tcpipe {args:?} should exit 0; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "tcpipe {args:?} wrote to stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

#[test]
fn a_listen_address_without_a_port_is_a_usage_error() {
    let line = usage_error(&["-l", "nonsense", "-t", "127.0.0.1:1"]);
    assert_names(&line, &["--listen", "'nonsense'", "host:port"]);
}

#[test]
fn a_target_port_out_of_range_is_a_usage_error() {
    let line = usage_error(&["-l", "127.0.0.1:0", "-t", "127.0.0.1:99999"]);
    assert_names(&line, &["--target", "'127.0.0.1:99999'"]);
}

#[test]
fn a_low_water_equal_to_the_buffer_size_is_a_usage_error() {
    let line = usage_error(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--buffer-size",
        "16k",
        "--low-water",
        "16k",
    ]);
    assert_names(&line, &["--low-water", "'16k'", "--buffer-size", "16k"]);
}

#[test]
fn a_low_water_above_the_default_buffer_size_is_a_usage_error() {
    let line = usage_error(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--low-water",
        "1m",
    ]);
    assert_names(&line, &["--low-water", "'1m'", "--buffer-size", "64k"]);
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let line = usage_error(&["-l", "127.0.0.1:0", "-t", "127.0.0.1:1", "--frobnicate"]);
    assert_names(&line, &["--frobnicate"]);
}

#[test]
fn a_size_with_an_unknown_unit_is_a_usage_error() {
    let line = usage_error(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--buffer-size",
        "12q",
    ]);
    assert_names(&line, &["--buffer-size", "'12q'", "unit"]);
}

#[test]
fn a_zero_buffer_size_is_a_usage_error() {
    let line = usage_error(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--buffer-size",
        "0",
    ]);
    assert_names(&line, &["--buffer-size", "'0'"]);
}

#[test]
fn a_duration_without_a_unit_is_a_usage_error() {
    let line = usage_error(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--idle-timeout",
        "5",
    ]);
    assert_names(&line, &["--idle-timeout", "'5'", "unit"]);
}

#[test]
fn a_missing_target_is_a_usage_error() {
    let line = usage_error(&["-l", "127.0.0.1:0"]);
    assert_names(&line, &["--target"]);
}

#[test]
fn help_lists_every_option_and_exits_0() {
    let help = succeeds_on_stdout(&["--help"]);
    for flag in [
        "--listen",
        "--target",
        "--buffer-size",
        "--low-water",
        "--help",
        "--version",
    ] {
        assert!(help.contains(flag), "--help should list {flag}:\n{help}");
    }
}

#[test]
fn version_prints_the_crate_version_and_exits_0() {
    let version = succeeds_on_stdout(&["--version"]);
    assert_eq!(
        version.trim(),
        format!("tcpipe {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_listen_address_in_use_exits_1_and_names_the_address() {
    let (_taken, addr) = listener();
    let addr = addr.to_string();
    let output = run_tcpipe(&["-l", &addr, "-t", "127.0.0.1:1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "binding an address in use should exit 1; stderr: {stderr}"
    );
    assert!(
        stderr.lines().any(|line| line.contains(&addr)),
        "the error should name {addr}: {stderr}"
    );
}
