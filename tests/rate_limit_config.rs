//! The traffic-limit settings: a bad value is one line naming the flag or
//! key, the value and why, with exit code 2; a reload that changes a limit
//! applies it to new pipes.

mod common;
use common::config::*;
use common::faults::*;
use common::transfer::*;
use common::*;

/// `tcpipe --check -l ... -t ... ARGS`, which must fail with one line.
fn flag_refused(args: &[&str]) -> String {
    let mut all = vec!["--check", "-l", "127.0.0.1:0", "-t", "127.0.0.1:1"];
    all.extend_from_slice(args);
    let output = run_tcpipe(&all);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: not one line: {stderr:?}"
    );
    stderr.trim_end().to_string()
}

/// `--check --config FILE` on `text`, which must fail with one line.
fn key_refused(text: &str) -> String {
    let file = ConfigFile::new(text);
    let output = run_tcpipe(&["--check", "--config", file.path_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{text}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{text}: not one line: {stderr:?}"
    );
    stderr.trim_end().to_string()
}

fn assert_names(line: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(line.contains(fragment), "{fragment:?} not in: {line}");
    }
}

#[test]
fn bad_rates_on_the_command_line_name_their_flag() {
    let line = flag_refused(&["--upload-rate", "0"]);
    assert_names(&line, &["--upload-rate", "0", "at least 1"]);
    let line = flag_refused(&["--download-rate", "2mb"]);
    assert_names(&line, &["--download-rate", "2mb", "ambiguous"]);
    let line = flag_refused(&["--rate-burst", "100"]);
    assert_names(&line, &["--rate-burst", "100", "between"]);
    let line = flag_refused(&["--max-connection-rate-per-source", "20"]);
    assert_names(&line, &["--max-connection-rate-per-source", "20", "20/s"]);
    let line = flag_refused(&["--max-connection-rate-per-source", "0/s"]);
    assert_names(
        &line,
        &["--max-connection-rate-per-source", "0/s", "at least 1"],
    );
}

#[test]
fn bad_rates_in_a_file_name_their_key() {
    let target = "127.0.0.1:1".parse().unwrap();
    let line = key_refused(&route("web", &[target], "route-upload-rate = \"fast\""));
    assert_names(&line, &["route-upload-rate", "fast"]);
    let line = key_refused(&route("web", &[target], "download-rate = 0"));
    assert_names(&line, &["download-rate", "0", "at least 1"]);
    let line = key_refused(&route(
        "web",
        &[target],
        "max-connection-rate-per-source = \"20/fortnight\"",
    ));
    assert_names(
        &line,
        &["max-connection-rate-per-source", "20/fortnight", "unit"],
    );
}

#[test]
fn good_rates_pass_the_check() {
    let target = "127.0.0.1:1".parse().unwrap();
    let file = ConfigFile::new(&route(
        "web",
        &[target],
        "upload-rate = \"2m\"\ndownload-rate = 65536\nroute-upload-rate = \"10m\"\n\
         route-download-rate = \"1g\"\nrate-burst = \"128k\"\n\
         max-connection-rate-per-source = \"100/10s\"",
    ));
    let output = run_tcpipe(&[
        "--check",
        "--config",
        file.path_str(),
        "--max-connections",
        "100",
    ]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_reload_that_changes_a_limit_applies_it_to_new_pipes() {
    let (target_listener, target_addr) = listener();
    let file = ConfigFile::new(&route(
        "web",
        &[target_addr],
        "upload-rate = \"1m\"\nrate-burst = \"64k\"",
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("web");
    let len = 1024 * 1024;
    let expected = |rate: f64| len as f64 / ((len - 64 * 1024) as f64 / rate);
    let before = send_and_time(connect(addr), accept(&target_listener), len, 40);
    assert_rate_near(
        "before the reload",
        before.rate(),
        expected(1048576.0),
        0.15,
    );
    file.write(&route(
        "web",
        &[target_addr],
        "upload-rate = \"4m\"\nrate-burst = \"64k\"",
    ));
    let summary = tcpipe.reload_report().expect("reload");
    assert!(
        summary.iter().any(|l| l.contains("upload-rate 1m -> 4m")),
        "the reload does not say the limit changed: {summary:?}"
    );
    let after = send_and_time(connect(addr), accept(&target_listener), len, 41);
    assert_rate_near("after the reload", after.rate(), expected(4194304.0), 0.15);
}
