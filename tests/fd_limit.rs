//! The descriptor limit: tcpipe raises its soft `RLIMIT_NOFILE` to the hard
//! limit at startup, so a soft limit of 256 does not cap it at about 120
//! pipes; and when `max-connections` pipes cannot fit in the limit it
//! warns, naming `max-connections`, the limit and how many fit: at
//! startup, on a reload, and in `--check`.

mod common;
use common::config::*;
use common::upstreams::*;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

/// More pipes than a soft limit of `SOFT` descriptors could hold (two each).
const PIPES: usize = 300;
const SOFT: u32 = 256;
const HARD: u32 = 4096;

/// The warning's key, as flags name it.
const FLAG_KEY: &str = "'--max-connections'";

/// `tcpipe ARGS...` under `prlimit --nofile=SOFT:HARD`, run to its exit:
/// its exit code and stderr lines.
fn run_limited(soft: u32, hard: u32, args: &[&str]) -> (Option<i32>, Vec<String>) {
    let output = Command::new("prlimit")
        .arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run prlimit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code(),
        stderr.lines().map(str::to_string).collect(),
    )
}

/// The lines of `lines` that warn about `key`.
fn limit_warnings<'a>(lines: &'a [String], key: &str) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|line| line.contains(key) && line.contains("descriptors"))
        .collect()
}

#[test]
fn a_low_soft_limit_is_raised_to_the_hard_one() {
    let target = echo_server().to_string();
    let tcpipe = Tcpipe::start_args_with_fd_limits(
        SOFT,
        HARD,
        &[
            "-l",
            "127.0.0.1:0",
            "-t",
            &target,
            "--max-connections",
            "1000",
        ],
    );
    // All open at once: under a soft limit of 256 the later ones would
    // wait in the backlog until the earlier ones close, which they don't.
    let mut clients: Vec<(TcpStream, Vec<u8>)> = (0..PIPES)
        .map(|n| {
            let mut client = connect(tcpipe.addr);
            let message = format!("client {n}").into_bytes();
            client.write_all(&message).expect("send");
            (client, message)
        })
        .collect();
    for (client, message) in &mut clients {
        let mut echoed = vec![0u8; message.len()];
        client.read_exact(&mut echoed).unwrap_or_else(|e| {
            panic!(
                "{} got no echo with {PIPES} pipes open: {e}",
                String::from_utf8_lossy(message)
            )
        });
        assert_eq!(&echoed, message);
    }
    assert!(
        tcpipe.socket_count() >= 2 * PIPES,
        "fewer sockets than {PIPES} pipes hold: {}",
        tcpipe.socket_count()
    );
    let lines = tcpipe.startup_logs();
    assert!(
        limit_warnings(&lines, FLAG_KEY).is_empty(),
        "1000 pipes fit in {HARD} descriptors: {lines:#?}"
    );
}

#[test]
fn max_connections_beyond_the_limit_is_warned_about_at_startup() {
    let target = echo_server().to_string();
    let tcpipe = Tcpipe::start_with_fd_limit(1024, &target, &[]);
    let lines = tcpipe.startup_logs();
    let found = limit_warnings(&lines, FLAG_KEY);
    assert_eq!(found.len(), 1, "{lines:#?}");
    let line = found[0];
    assert!(
        line.contains("'10000'") && line.contains("limit is 1024") && line.contains("pipes fit"),
        "the warning names no value, limit or what fits: {line}"
    );

    let tcpipe = Tcpipe::start_with_fd_limit(1024, &target, &["--max-connections", "100"]);
    let lines = tcpipe.startup_logs();
    assert!(
        limit_warnings(&lines, FLAG_KEY).is_empty(),
        "100 pipes fit in 1024 descriptors: {lines:#?}"
    );
}

#[test]
fn check_warns_against_the_limit_a_start_would_have() {
    let (_held, addr) = listener();
    let addr = addr.to_string();
    let check = |soft, hard, max: Option<&str>| {
        let mut args = vec!["--check", "-l", &addr, "-t", &addr];
        if let Some(max) = max {
            args.extend(["--max-connections", max]);
        }
        let (code, lines) = run_limited(soft, hard, &args);
        assert_eq!(code, Some(0), "a warning must not fail --check: {lines:#?}");
        limit_warnings(&lines, FLAG_KEY).len()
    };
    assert_eq!(
        check(1024, 1024, None),
        1,
        "default max-connections in 1024"
    );
    assert_eq!(check(1024, 1024, Some("100")), 0, "100 in 1024");
    // 1500 pipes need some 3000 descriptors: beyond the soft limit, within
    // the hard one, to which a start raises the soft limit.
    assert_eq!(check(SOFT, HARD, Some("1500")), 0, "1500 in {SOFT}:{HARD}");
    assert_eq!(check(SOFT, SOFT, Some("1500")), 1, "1500 in {SOFT}:{SOFT}");
}

#[test]
fn a_reload_that_raises_max_connections_beyond_the_limit_is_warned_about() {
    let target = echo_server();
    let text = |max: usize| {
        format!(
            "[global]\nmax-connections = {max}\n\n{}",
            route("main", &[target], "")
        )
    };
    let file = ConfigFile::new(&text(100));
    let tcpipe = Tcpipe::start_args_with_fd_limit(1024, &["--config", file.path_str()]);
    let key = "'global.max-connections'";
    assert!(limit_warnings(&tcpipe.startup_logs(), key).is_empty());

    file.write(&text(10_000));
    let summary = tcpipe.reload_report().expect("the reload applies");
    let found = limit_warnings(&summary, key);
    assert_eq!(found.len(), 1, "{summary:#?}");
    assert!(found[0].contains("limit is 1024"), "{}", found[0]);
    // The file keeps listening on its port: max-connections is applied, not refused.
    serve_client(&tcpipe, 1);
}
