//! The command line: a usage error exits with code 2 and one line on stderr
//! that names the flag, the value and the reason, keeping clap's tips (the
//! possible values, the flag probably meant); an address is taken as
//! written or refused, never resolved into another; --help and --version
//! exit 0, and --version names the commit, rustc and the target; a listen
//! address already in use exits with code 1 and names the address.
//! Durations take decimals and days; sizes refuse `kb` and rings below a
//! page; a route flag beside `--config` is named with what to do instead.

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

/// `tcpipe ARGS`, which must exit 0 with nothing on stderr. A `--check`
/// gets a `--max-connections` that fits in any descriptor limit, so that
/// no machine's `ulimit -n` makes it warn (tests/fd_limit.rs tests that).
fn succeeds_on_stdout(args: &[&str]) -> String {
    let mut args = args.to_vec();
    if args.first() == Some(&"--check") {
        args.extend(["--max-connections", "100"]);
    }
    let args = args.as_slice();
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

/// `tcpipe --check -l ... -t ... FLAG VALUE`.
fn check_with<'a>(flag: &'a str, value: &'a str) -> [&'a str; 7] {
    [
        "--check",
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        flag,
        value,
    ]
}

/// [`check_with`], which must fail with one line.
fn flag_refused(flag: &str, value: &str) -> String {
    usage_error(&check_with(flag, value))
}

#[test]
fn durations_take_decimals_and_days() {
    for (flag, value) in [
        ("--idle-timeout", "1.5s"),
        ("--keepalive", "1d"),
        ("--cooldown", "0.5m"),
        ("--drain-timeout", "2.25h"),
        ("--connect-timeout", "0.001s"),
    ] {
        let stdout = succeeds_on_stdout(&check_with(flag, value));
        assert!(stdout.contains("the flags: ok"), "{flag} {value}: {stdout}");
    }
}

#[test]
fn a_malformed_duration_names_its_flag_and_why() {
    for (value, reason) in [
        ("1.5ms", "finer than a millisecond"),
        (
            "1.s",
            "a decimal needs digits on both sides of one '.', as in 1.5s",
        ),
        (
            ".5s",
            "a decimal needs digits on both sides of one '.', as in 1.5s",
        ),
        ("1e3s", "unknown unit 'e3s' (use ms, s, m, h or d)"),
        (
            "1h30m",
            "one unit only ('h30m'): write 1h30m as 90m or 1.5h",
        ),
        (
            "NaN",
            "expected a duration such as 500ms, 1.5s, 2m, 1h or 1d (0 = off)",
        ),
        ("99999999999999999999d", "too large"),
    ] {
        let line = flag_refused("--idle-timeout", value);
        assert_names(&line, &["'--idle-timeout", &format!("'{value}'"), reason]);
    }
}

#[test]
fn a_size_in_kb_is_refused_with_the_binary_spelling() {
    let line = flag_refused("--buffer-size", "64kb");
    assert_names(
        &line,
        &[
            "invalid value '64kb' for '--buffer-size",
            "ambiguous unit 'kb': write 64k or 64KiB (sizes are binary)",
        ],
    );
    let line = flag_refused("--low-water", "1MB");
    assert_names(
        &line,
        &["'--low-water", "ambiguous unit 'MB': write 1m or 1MiB"],
    );
}

#[test]
fn a_buffer_below_a_page_is_refused_naming_the_minimum() {
    let line = flag_refused("--buffer-size", "1");
    assert_eq!(
        line,
        "tcpipe: invalid value '1' for '--buffer-size': must be between 4k (a page) and 1g"
    );
    let line = flag_refused("--buffer-size", "4095");
    assert_names(&line, &["'4095'", "between 4k (a page) and 1g"]);
    let stdout = succeeds_on_stdout(&[
        "--check",
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--buffer-size",
        "4KiB",
        "--low-water",
        "0",
    ]);
    assert!(stdout.contains("the flags: ok"), "{stdout}");
}

#[test]
fn a_route_flag_beside_config_is_named_with_the_fix() {
    let file =
        common::config::ConfigFile::new(&common::config::route("web", &[refused_addr()], ""));
    let path = file.path_str();
    assert_eq!(
        usage_error(&["-c", path, "-l", "127.0.0.1:0"]),
        "tcpipe: --listen cannot be combined with --config: routes come from the file \
         (give the route a listen key there)"
    );
    assert_eq!(
        usage_error(&["--config", path, "-t", "127.0.0.1:1"]),
        "tcpipe: --target cannot be combined with --config: routes come from the file \
         (give the route a targets key there)"
    );
    // The first route flag given is the one named.
    assert_eq!(
        usage_error(&[
            "--buffer-size",
            "16k",
            "--config",
            path,
            "--idle-timeout",
            "5s"
        ]),
        "tcpipe: --buffer-size cannot be combined with --config: route options come from \
         the file (set buffer-size in [defaults] or a [[route]])"
    );
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
fn version_names_the_commit_the_compiler_and_the_target() {
    let version = succeeds_on_stdout(&["--version"]);
    let version = version.trim();
    let expected_start = format!("tcpipe {} (commit ", env!("CARGO_PKG_VERSION"));
    let details = version
        .strip_prefix(&expected_start)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| {
            panic!("not 'tcpipe VERSION (commit ..., rustc ..., TARGET)': {version}")
        });
    let parts: Vec<&str> = details.split(", ").collect();
    assert_eq!(parts.len(), 3, "commit, rustc, target: {version}");
    let head = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string());
    assert_eq!(
        parts[0],
        head.as_deref().unwrap_or("unknown"),
        "the commit should be HEAD's: {version}"
    );
    assert!(
        parts[1].starts_with("rustc 1."),
        "the rustc version is missing: {version}"
    );
    let target = parts[2];
    assert!(
        target.starts_with(std::env::consts::ARCH) && target.contains(std::env::consts::OS),
        "'{target}' is not this machine's target triple: {version}"
    );
}

#[test]
fn an_unknown_mode_lists_the_possible_values() {
    let line = usage_error(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--balance",
        "fastest",
    ]);
    assert_names(
        &line,
        &[
            "--balance",
            "'fastest'",
            "round-robin",
            "least-conn",
            "source-hash",
        ],
    );
}

#[test]
fn a_missing_mode_lists_the_possible_values() {
    let line = usage_error(&["-l", "127.0.0.1:0", "-t", "127.0.0.1:1", "--balance"]);
    assert_names(
        &line,
        &["--balance", "round-robin", "least-conn", "source-hash"],
    );
}

#[test]
fn a_misspelt_flag_suggests_the_one_meant() {
    let line = usage_error(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--idle-timout",
        "5s",
    ]);
    assert_names(&line, &["'--idle-timout'", "'--idle-timeout'"]);
}

#[test]
fn a_negative_number_names_its_flag_and_why() {
    for (flag, value) in [
        ("--pool", "-1"),
        ("--max-connections", "-5"),
        ("--retries", "-1"),
        ("--fail-threshold", "-2"),
        ("--cooldown", "-1s"),
        ("--buffer-size", "-1k"),
    ] {
        for args in [vec![flag, value], vec![]] {
            let joined = format!("{flag}={value}");
            let args = if args.is_empty() {
                vec![joined.as_str()]
            } else {
                args
            };
            let mut all = vec!["-l", "127.0.0.1:0", "-t", "127.0.0.1:1"];
            all.extend(&args);
            let line = usage_error(&all);
            assert_names(&line, &[flag, &format!("'{value}'"), "negative"]);
        }
    }
}

#[test]
fn a_count_that_is_no_number_names_its_flag() {
    let line = usage_error(&["-l", "127.0.0.1:0", "-t", "127.0.0.1:1", "--pool", "many"]);
    assert_names(&line, &["--pool", "'many'", "whole number"]);
}

#[test]
fn a_flag_given_twice_is_a_usage_error() {
    let line = usage_error(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--check",
        "--check",
    ]);
    assert_names(&line, &["--check"]);
}

#[test]
fn a_flag_without_its_value_is_a_usage_error() {
    let line = usage_error(&["-t", "127.0.0.1:1", "-l"]);
    assert_names(&line, &["--listen"]);
}

#[test]
fn a_malformed_address_is_refused_not_resolved_into_another() {
    for (flag, value, reason) in [
        ("-l", "1.2.3:80", "IPv4"),
        ("-l", "127.0.0.1:99999", "range"),
        ("-l", "", "empty"),
        ("-l", "localhost", "port"),
        ("-l", "::1:80", "brackets"),
        ("-l", "[::1:80", "IPv6"),
        ("-t", "1.2.3:80", "IPv4"),
        ("-t", "10.0.0.1:+80", "port"),
        ("-t", "127.1:80", "IPv4"),
    ] {
        let args = if flag == "-l" {
            ["-l", value, "-t", "127.0.0.1:1"]
        } else {
            ["-l", "127.0.0.1:0", "-t", value]
        };
        let line = usage_error(&args);
        let long = if flag == "-l" { "--listen" } else { "--target" };
        assert_names(&line, &[long, &format!("'{value}'"), reason]);
    }
}

#[test]
fn a_target_needs_a_host_and_a_port() {
    let line = usage_error(&["-l", "127.0.0.1:0", "-t", "127.0.0.1:0"]);
    assert_names(&line, &["--target", "'127.0.0.1:0'", "port"]);
    let line = usage_error(&["-l", "127.0.0.1:0", "-t", ":6379"]);
    assert_names(&line, &["--target", "':6379'", "host"]);
}

#[test]
fn a_listen_address_without_a_host_means_every_ipv4_address() {
    let target = echo_server().to_string();
    let mut tcpipe = Tcpipe::start_args(&["-l", ":0", "-t", &target]);
    assert!(
        tcpipe.addr.ip().is_unspecified() && tcpipe.addr.is_ipv4(),
        "-l :PORT should listen on 0.0.0.0, not {}",
        tcpipe.addr
    );
    let mut client = connect(([127, 0, 0, 1], tcpipe.addr.port()).into());
    std::io::Write::write_all(&mut client, b"ping").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"ping");
    assert!(tcpipe.wait_exit(std::time::Duration::ZERO).is_none());
}

#[test]
fn a_malformed_address_in_a_config_file_names_its_key() {
    let file = common::config::ConfigFile::new(
        "[[route]]\nname = \"web\"\nlisten = [\"127.0.0.1:0\"]\ntargets = [\"127.0.0.1:1\", \"1.2.3:80\"]\n",
    );
    let output = run_tcpipe(&["--check", "--config", file.path_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert_names(&stderr, &["route[0].targets[1]", "'1.2.3:80'", "IPv4"]);
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
