//! Who may use the admin API, and how it is set up: over TCP every
//! request needs the bearer token of the token file (missing or wrong:
//! 401); a TCP address without a token file, a bad token file or a socket
//! in no directory is a config error (exit 2, one line naming the flag or
//! key), which `--check` finds too; `--admin` beside `--config` wins over
//! the file's `[global] admin`.

mod common;

use common::admin::{AdminDir, Endpoint};
use common::config::{route, ConfigFile};
use common::faults::assert_round_trip;
use common::{echo_server, run_tcpipe, Tcpipe};

const TOKEN: &str = "s3cret-token-0123456789";

/// `tcpipe ARGS`, which must exit 2 with one line; that line.
fn refused(args: &[&str]) -> String {
    let output = run_tcpipe(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line: {stderr:?}");
    lines[0].to_string()
}

#[test]
fn over_tcp_a_missing_or_wrong_token_is_401_and_the_right_one_is_served() {
    let dir = AdminDir::new();
    let token_file = dir.file("token", &format!("{TOKEN}\n"));
    let target = echo_server();
    let tcpipe = Tcpipe::start(
        target,
        &[
            "--admin",
            "127.0.0.1:0",
            "--admin-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let admin = tcpipe.admin();
    assert!(matches!(admin, Endpoint::Tcp(addr) if addr.port() != 0 && addr.ip().is_loopback()));
    for token in [
        None,
        Some("wrong"),
        Some(&TOKEN[..TOKEN.len() - 1]),
        Some("s3cret-token-0123456789x"),
    ] {
        let reply = admin.call("GET", "/v1/routes", None, token);
        assert_eq!(reply.status, 401, "{token:?}: {reply:?}");
        assert_eq!(reply.header("www-authenticate").as_deref(), Some("Bearer"));
        assert!(reply.error().contains("Authorization: Bearer"));
    }
    // A refused request changes nothing, whatever it asks.
    let path = format!("/v1/targets/default/{target}/state");
    let _ = admin.call("PUT", &path, Some(r#"{"state":"drain"}"#), Some("wrong"));
    let reply = admin.call("GET", "/v1/targets", None, Some(TOKEN));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["targets"][0]["state"], "ready");
    let basic = admin.exchange(
        format!("GET /v1/routes HTTP/1.1\r\nAuthorization: Basic {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(basic.status, 401);
    assert_round_trip(&mut tcpipe.connect(), b"forwarding");
}

#[test]
fn a_tcp_admin_address_without_a_token_file_is_a_config_error() {
    let line = refused(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert!(
        line.contains("'--admin'") && line.contains("--admin-token-file"),
        "{line}"
    );
    assert!(line.contains("every local user"), "{line}");
    // --check finds it too, and so does a file.
    let line = refused(&[
        "--check",
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--admin",
        "127.0.0.1:0",
    ]);
    assert!(line.contains("--admin-token-file"), "{line}");
    let file = ConfigFile::new(&format!(
        "[global]\nadmin = \"127.0.0.1:0\"\n{}",
        route("web", &[echo_server()], "")
    ));
    let line = refused(&["--check", "--config", file.path_str()]);
    assert!(
        line.contains("global.admin") && line.contains("global.admin-token-file"),
        "{line}"
    );
}

#[test]
fn bad_token_files_and_socket_paths_are_named_with_the_reason() {
    let dir = AdminDir::new();
    let short = dir.file("short", "abc\n");
    let two_words = dir.file("words", "correct horse battery staple\n");
    let base = [
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--admin",
        "127.0.0.1:0",
    ];
    for (file, reason) in [
        (dir.socket().with_file_name("missing"), "cannot read it"),
        (short, "at least 16 characters"),
        (two_words, "no spaces"),
    ] {
        let mut args = base.to_vec();
        args.extend(["--admin-token-file", file.to_str().unwrap()]);
        let line = refused(&args);
        assert!(
            line.contains("'--admin-token-file'") && line.contains(reason),
            "{line}"
        );
    }
    let line = refused(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--admin",
        "unix:/nonexistent-dir/x.sock",
    ]);
    assert!(
        line.contains("'--admin'") && line.contains("no directory /nonexistent-dir"),
        "{line}"
    );
    let line = refused(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--admin",
        "localhost",
    ]);
    assert!(
        line.contains("--admin") && line.contains("unix:/path"),
        "{line}"
    );
    let token = dir.file("token", TOKEN);
    let line = refused(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    assert!(
        line.contains("'--admin-token-file'") && line.contains("needs --admin"),
        "{line}"
    );
}

#[test]
fn the_check_passes_a_good_setup_and_the_flag_wins_over_the_file() {
    let dir = AdminDir::new();
    let token = dir.file("token", TOKEN);
    let output = run_tcpipe(&[
        "--check",
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:9",
        "--max-connections",
        "100",
        "--admin",
        "127.0.0.1:0",
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let in_file = dir.socket().with_file_name("from-file.sock");
    let file = ConfigFile::new(&format!(
        "[global]\nadmin = \"unix:{}\"\n{}",
        in_file.display(),
        route("web", &[echo_server()], "")
    ));
    let output = run_tcpipe(&[
        "--check",
        "--config",
        file.path_str(),
        "--admin",
        &dir.flag(),
    ]);
    let summary = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        summary.contains(&format!("admin = {}", dir.flag())),
        "{summary}"
    );

    let tcpipe = Tcpipe::start_args(&["--config", file.path_str(), "--admin", &dir.flag()]);
    assert_eq!(tcpipe.latest_ready().admin(), Some(dir.flag()));
    assert!(dir.socket().exists() && !in_file.exists());
    assert_eq!(tcpipe.admin().get("/v1/routes").status, 200);
}
