//! Settings that run but probably not as meant are warned about, naming the
//! setting and its value, and still run: a target that loops back into its
//! own route, a target listed twice, more retries than other targets. At
//! startup, on a reload, and by `--check` (which still exits 0).

mod common;
use common::config::*;
use common::*;

/// Whether `line` is the warning that `max-connections` pipes do not fit
/// in the descriptor limit: it depends on the machine's `ulimit -n`
/// (`tests/fd_limit.rs` pins the limit and tests it), so these tests, which
/// count the other warnings, leave it out.
fn about_the_fd_limit(line: &str) -> bool {
    line.contains("max-connections'") && line.contains("file descriptors")
}

/// `tcpipe --check ARGS`, which must pass: its stderr lines.
fn check_warnings(args: &[&str]) -> Vec<String> {
    let mut all = vec!["--check"];
    all.extend_from_slice(args);
    let output = run_tcpipe(&all);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(0),
        "warnings must not fail --check; stderr: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("ok"),
        "--check should still report the settings ok"
    );
    stderr
        .lines()
        .filter(|line| !about_the_fd_limit(line))
        .map(str::to_string)
        .collect()
}

/// The one line among `lines` that names every fragment.
fn line_naming<'a>(lines: &'a [String], fragments: &[&str]) -> &'a str {
    let found: Vec<&String> = lines
        .iter()
        .filter(|line| fragments.iter().all(|f| line.contains(f)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one line naming {fragments:?}; lines: {lines:#?}"
    );
    found[0]
}

#[test]
fn a_target_on_the_listen_address_is_a_loop() {
    // --check binds nothing, so a port held by this test is safe to name.
    let (_held, addr) = listener();
    let addr = addr.to_string();
    let lines = check_warnings(&["-l", &addr, "-t", &addr]);
    line_naming(&lines, &["--target", &format!("'{addr}'"), "loops"]);
}

#[test]
fn a_loopback_target_on_the_port_of_a_wildcard_listener_is_a_loop() {
    let (_held, addr) = listener();
    let listen = format!(":{}", addr.port());
    let target = addr.to_string();
    let lines = check_warnings(&["-l", &listen, "-t", &target]);
    line_naming(&lines, &["--target", &format!("'{target}'"), "loops"]);
    // Another port of the same host is another service.
    let other = format!("127.0.0.1:{}", addr.port() % 60000 + 1);
    let lines = check_warnings(&["-l", &listen, "-t", &other]);
    assert!(lines.is_empty(), "no loop, no warning: {lines:#?}");
}

#[test]
fn duplicate_targets_and_surplus_retries_are_warned_about_at_startup_and_still_run() {
    let target = echo_server().to_string();
    let tcpipe = Tcpipe::start_args(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        &target,
        "-t",
        &target,
        "--retries",
        "4",
    ]);
    let logs = tcpipe.startup_logs();
    let warnings: Vec<String> = logs
        .iter()
        .filter(|l| l.contains("WARN") && !about_the_fd_limit(l))
        .cloned()
        .collect();
    line_naming(&warnings, &["--target", &format!("'{target}'"), "twice"]);
    line_naming(&warnings, &["--retries", "'4'", "1 other target"]);
    assert_eq!(warnings.len(), 2, "{warnings:#?}");

    let mut client = tcpipe.connect();
    std::io::Write::write_all(&mut client, b"still runs").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"still runs");
}

#[test]
fn check_names_the_key_paths_of_a_file() {
    let file = ConfigFile::new(&route(
        "web",
        &[
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.1:80".parse().unwrap(),
        ],
        "retries = 2",
    ));
    let lines = check_warnings(&["--config", file.path_str()]);
    line_naming(&lines, &["route[0].targets[1]", "'10.0.0.1:80'", "twice"]);
    line_naming(&lines, &["route[0].retries", "'2'"]);
    assert_eq!(lines.len(), 2, "{lines:#?}");
}

#[test]
fn a_reload_warns_about_what_it_brings() {
    let target = echo_server();
    let file = ConfigFile::new(&route("web", &[target], ""));
    let tcpipe = Tcpipe::start_config(&file);
    assert!(
        !tcpipe
            .startup_logs()
            .iter()
            .any(|l| l.contains("WARN") && !about_the_fd_limit(l)),
        "a plain config warns about nothing: {:#?}",
        tcpipe.logs()
    );
    file.write(&route("web", &[target, target], ""));
    let reload = tcpipe.reload_report().expect("the reload applies");
    line_naming(
        &reload,
        &["route[0].targets[1]", &format!("'{target}'"), "twice"],
    );
}
