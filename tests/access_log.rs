//! The access log: a line per pipe when it closes (and when it opens, with
//! `--access-log-opens`), saying who the client was, where it went, how
//! long the connect and the pipe took, the bytes each way and how it ended;
//! as key=value text or JSON (`--log-format json`), to stderr or a file.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::path::{Path, PathBuf};

use common::config::{route, ConfigFile};
use common::faults::{accept, assert_reset};
use common::scrape::scrape_until;
use common::{
    connect, echo_server, read_to_end, refused_addr, reset, wait_until, Tcpipe, DEADLINE,
};

/// A private directory for log files, removed afterwards.
struct LogDir(PathBuf);

impl LogDir {
    fn new(name: &str) -> LogDir {
        let dir = std::env::temp_dir().join(format!("tcpipe-access-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        LogDir(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("access.log")
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

type Line = HashMap<String, String>;

/// `key=value key="quoted value"` into a map.
fn parse_text(line: &str) -> Line {
    let mut fields = HashMap::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("no '=' in {line}"));
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        fields.insert(key.to_string(), value);
        rest = after.trim_start();
    }
    fields
}

/// The lines of `file` once `count` are there.
fn lines_of(file: &Path, count: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let enough = wait_until(DEADLINE, || {
        lines = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.len() >= count
    });
    assert!(
        enough,
        "wanted {count} lines in {}, got {lines:?}",
        file.display()
    );
    lines
}

/// The close line of the client at `client`.
fn close_line_of(lines: &[String], client: SocketAddr) -> Line {
    lines
        .iter()
        .map(|l| parse_text(l))
        .find(|l| l["event"] == "close" && l["client"] == client.to_string())
        .unwrap_or_else(|| panic!("no close line for {client} in {lines:?}"))
}

fn start_logging_to(file: &Path, target: SocketAddr, extra: &[&str]) -> Tcpipe {
    let mut args = vec!["--access-log", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    Tcpipe::start(target, &args)
}

#[test]
fn a_clean_close_names_both_ends_the_bytes_and_who_finished_first() {
    let dir = LogDir::new("clean");
    let (target, target_addr) = common::listener();
    let tcpipe = start_logging_to(&dir.file(), target_addr, &[]);

    // The client finishes first.
    let mut client = connect(tcpipe.addr);
    let client_addr = client.local_addr().unwrap();
    let mut upstream = accept(&target);
    client.write_all(&[1u8; 1234]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut upstream).len(), 1234);
    upstream.write_all(&[2u8; 56]).unwrap();
    upstream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client).len(), 56);

    // The target finishes first.
    let mut second = connect(tcpipe.addr);
    let second_addr = second.local_addr().unwrap();
    let mut second_upstream = accept(&target);
    second_upstream.write_all(b"bye").unwrap();
    second_upstream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut second), b"bye");
    second.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut second_upstream).len(), 0);

    let lines = lines_of(&dir.file(), 2);
    let first = close_line_of(&lines, client_addr);
    assert_eq!(first["route"], "default");
    assert_eq!(first["target"], target_addr.to_string());
    assert_eq!(first["bytes_to_target"], "1234");
    assert_eq!(first["bytes_to_client"], "56");
    assert_eq!(first["end"], "clean");
    assert_eq!(first["first_fin"], "client");
    let connect_seconds: f64 = first["connect_seconds"].parse().expect("a connect time");
    let duration: f64 = first["duration_seconds"].parse().expect("a duration");
    assert!(
        connect_seconds >= 0.0 && connect_seconds <= duration,
        "{first:?}"
    );
    assert!(
        first["time"].ends_with('Z') && first["time"].contains('T'),
        "{first:?}"
    );

    let other = close_line_of(&lines, second_addr);
    assert_eq!(other["end"], "clean");
    assert_eq!(other["first_fin"], "target");
    assert_eq!(other["bytes_to_client"], "3");
    assert_ne!(first["pipe"], other["pipe"]);
}

#[test]
fn every_way_a_pipe_ends_is_named() {
    let dir = LogDir::new("ends");
    let (target, target_addr) = common::listener();
    let tcpipe = start_logging_to(
        &dir.file(),
        target_addr,
        &["--idle-timeout", "400ms", "--half-close-timeout", "200ms"],
    );
    let mut expected = Vec::new();

    // The client resets.
    let client = connect(tcpipe.addr);
    expected.push((client.local_addr().unwrap(), "client_reset"));
    let mut upstream = accept(&target);
    reset(client);
    assert_reset(&mut upstream, "target of a reset client");

    // The target resets.
    let mut client = connect(tcpipe.addr);
    expected.push((client.local_addr().unwrap(), "target_reset"));
    let mut upstream = accept(&target);
    // A byte through first: a reset that beat tcpipe's look at the connect
    // would be a failed connect, another end.
    upstream.write_all(b"!").unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut client, &mut first).unwrap();
    reset(upstream);
    assert_reset(&mut client, "client of a reset target");

    // Nobody says anything.
    let mut client = connect(tcpipe.addr);
    expected.push((client.local_addr().unwrap(), "idle_timeout"));
    let _silent = accept(&target);
    assert_reset(&mut client, "idle client");

    // The client half-closes and the target never answers.
    let mut client = connect(tcpipe.addr);
    expected.push((client.local_addr().unwrap(), "half_close_timeout"));
    let _mute = accept(&target);
    client.shutdown(Shutdown::Write).unwrap();
    assert_reset(&mut client, "half-closed client");

    let lines = lines_of(&dir.file(), expected.len());
    for (client, end) in expected {
        let line = close_line_of(&lines, client);
        assert_eq!(line["end"], end, "{line:?}");
        if end.ends_with("reset") {
            assert_ne!(line["detail"], "-", "a reset says its error: {line:?}");
        }
    }
    let half = lines
        .iter()
        .map(|l| parse_text(l))
        .find(|l| l["end"] == "half_close_timeout");
    assert_eq!(half.unwrap()["first_fin"], "client");
}

#[test]
fn an_unreachable_target_and_a_drained_shutdown_are_named() {
    let dir = LogDir::new("unreachable");
    let tcpipe = start_logging_to(&dir.file(), refused_addr(), &[]);
    let mut client = connect(tcpipe.addr);
    let client_addr = client.local_addr().unwrap();
    assert_reset(&mut client, "client of a dead target");
    let line = close_line_of(&lines_of(&dir.file(), 1), client_addr);
    assert_eq!(line["end"], "connect_failed");
    assert_eq!(line["detail"], "1 attempt");
    assert_eq!(line["connect_seconds"], "-");

    let dir = LogDir::new("drained");
    let (target, target_addr) = common::listener();
    let mut tcpipe = start_logging_to(&dir.file(), target_addr, &["--drain-timeout", "100ms"]);
    let mut client = connect(tcpipe.addr);
    let client_addr = client.local_addr().unwrap();
    let _upstream = accept(&target);
    client.write_all(b"x").unwrap();
    tcpipe.signal("TERM");
    assert_reset(&mut client, "client at the drain deadline");
    assert!(tcpipe.wait_exit(DEADLINE).is_some(), "tcpipe did not exit");
    // The last line is written before the process exits.
    let line = close_line_of(&lines_of(&dir.file(), 1), client_addr);
    assert_eq!(line["end"], "shutdown");
    assert_eq!(line["bytes_to_target"], "1");
}

#[test]
fn json_lines_have_the_same_keys_as_text_lines() {
    let target = echo_server();
    let text_dir = LogDir::new("text");
    let json_dir = LogDir::new("json");
    let text = start_logging_to(&text_dir.file(), target, &[]);
    let json = start_logging_to(&json_dir.file(), target, &["--log-format", "json"]);
    for tcpipe in [&text, &json] {
        let mut client = connect(tcpipe.addr);
        client.write_all(b"a \"quoted\" line").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut client);
    }
    let text_line = parse_text(&lines_of(&text_dir.file(), 1)[0]);
    let json_line: serde_json::Value =
        serde_json::from_str(&lines_of(&json_dir.file(), 1)[0]).expect("valid JSON");
    let object = json_line.as_object().expect("a JSON object");
    let mut text_keys: Vec<&String> = text_line.keys().collect();
    let mut json_keys: Vec<&String> = object.keys().collect();
    text_keys.sort();
    json_keys.sort();
    assert_eq!(text_keys, json_keys);
    assert_eq!(object["end"], "clean");
    assert_eq!(object["route"], "default");
    assert_eq!(object["bytes_to_target"], 15);
    assert_eq!(object["bytes_to_client"], 15);
    assert!(object["connect_seconds"].is_f64(), "{object:?}");
    assert!(object["detail"].is_null(), "{object:?}");
}

#[test]
fn opens_are_logged_when_asked() {
    let dir = LogDir::new("opens");
    let (target, target_addr) = common::listener();
    let tcpipe = start_logging_to(&dir.file(), target_addr, &["--access-log-opens"]);
    let mut client = connect(tcpipe.addr);
    let client_addr = client.local_addr().unwrap().to_string();
    let upstream = accept(&target);
    let lines = lines_of(&dir.file(), 1);
    let open = parse_text(&lines[0]);
    assert_eq!(open["event"], "open");
    assert_eq!(open["client"], client_addr);
    assert_eq!(open["target"], target_addr.to_string());
    assert!(
        !open.contains_key("end"),
        "an open line says nothing of the end: {open:?}"
    );
    drop(upstream);
    read_to_end(&mut client);
    drop(client);
    let lines = lines_of(&dir.file(), 2);
    let close = parse_text(&lines[1]);
    assert_eq!(close["event"], "close");
    assert_eq!(close["pipe"], open["pipe"]);
}

#[test]
fn the_default_is_stderr_and_off_means_nothing() {
    let target = echo_server();
    let logged = Tcpipe::start(target, &[]);
    let silent = Tcpipe::start(target, &["--access-log", "off", "--metrics", "127.0.0.1:0"]);
    let filtered = Tcpipe::start_logging(
        "info,tcpipe::access=off",
        target,
        &["--metrics", "127.0.0.1:0"],
    );
    for tcpipe in [&logged, &silent, &filtered] {
        let mut client = connect(tcpipe.addr);
        client.write_all(b"hi").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut client);
    }
    assert!(
        logged.wait_for_log("event=close", DEADLINE),
        "no access line on stderr"
    );
    let of = [("route", "default"), ("reason", "clean")];
    for (tcpipe, how) in [
        (&silent, "--access-log off"),
        (&filtered, "tcpipe::access=off"),
    ] {
        scrape_until(tcpipe, "the pipe closed", |s| {
            s.get("tcpipe_pipes_closed_total", &of) == 1.0
        });
        assert!(
            !tcpipe.logs().iter().any(|l| l.contains("event=")),
            "{how} still logged: {:?}",
            tcpipe.logs()
        );
    }
}

#[test]
fn a_reload_reopens_the_file_for_log_rotation() {
    let dir = LogDir::new("rotate");
    let target = echo_server();
    let text = format!(
        "[global]\naccess-log = \"{}\"\n\n{}",
        dir.file().display(),
        route("web", &[target], "")
    );
    let file = ConfigFile::new(&text);
    let tcpipe = Tcpipe::start_config(&file);
    let exchange = || {
        let mut client = connect(tcpipe.route_addr("web"));
        client.write_all(b"x").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut client);
        client.local_addr().unwrap()
    };
    let before = exchange();
    lines_of(&dir.file(), 1);
    let rotated = dir.0.join("access.log.1");
    std::fs::rename(dir.file(), &rotated).unwrap();
    tcpipe.reload().expect("reload");
    let after = exchange();
    let fresh = lines_of(&dir.file(), 1);
    assert_eq!(close_line_of(&fresh, after)["route"], "web");
    let old = lines_of(&rotated, 1);
    assert_eq!(old.len(), 1, "{old:?}");
    close_line_of(&old, before);
}

#[test]
fn a_refused_client_gets_a_line_saying_why() {
    let dir = LogDir::new("refused");
    let tcpipe = start_logging_to(&dir.file(), echo_server(), &["--deny", "127.0.0.0/8"]);
    let mut client = connect(tcpipe.addr);
    let client_addr = client.local_addr().unwrap();
    assert_reset(&mut client, "denied client");
    let line = close_line_of(&lines_of(&dir.file(), 1), client_addr);
    assert_eq!(line["end"], "denied");
    assert_eq!(line["target"], "-");
    assert_ne!(line["detail"], "-", "{line:?}");
}

#[test]
fn a_refusal_has_one_name_in_the_access_log_and_in_metrics() {
    let dir = LogDir::new("per-source");
    let tcpipe = start_logging_to(
        &dir.file(),
        echo_server(),
        &[
            "--max-connections-per-source",
            "1",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let mut held = connect(tcpipe.addr);
    held.write_all(b"x").unwrap();
    let mut echoed = [0u8; 1];
    std::io::Read::read_exact(&mut held, &mut echoed).unwrap();
    let mut second = connect(tcpipe.addr);
    let second_addr = second.local_addr().unwrap();
    assert_reset(&mut second, "a second client of one source");
    let line = close_line_of(&lines_of(&dir.file(), 1), second_addr);
    assert_eq!(line["end"], "per_source_limit", "{line:?}");
    let route = [("route", "default"), ("reason", "per_source_limit")];
    let scrape = scrape_until(&tcpipe, "the refusal counted", |s| {
        s.get("tcpipe_connections_refused_total", &route) == 1.0
    });
    assert_eq!(scrape.get("tcpipe_pipes_closed_total", &route), 1.0);
    assert_eq!(
        scrape.get(
            "tcpipe_pipes_closed_total",
            &[("route", "default"), ("reason", "denied")]
        ),
        0.0
    );
}

#[test]
fn a_pipe_the_embedder_aborts_is_logged_as_aborted() {
    let dir = LogDir::new("aborted");
    let (target, target_addr) = common::listener();
    let mut config = tcpipe::Config::new("127.0.0.1:0".parse().unwrap(), target_addr);
    config.access_log.destination = tcpipe::LogDestination::File(dir.file());
    config.access_log.format = tcpipe::LogFormat::Json;
    let running = common::hooks::Running::start(config);
    let mut client = connect(running.addr.expect("a listener"));
    let client_addr = client.local_addr().unwrap();
    let _upstream = accept(&target);
    let mut pipes = Vec::new();
    assert!(wait_until(DEADLINE, || {
        pipes = running.handle.pipes().expect("running");
        !pipes.is_empty()
    }));
    running.handle.abort(pipes[0].id).expect("abort the pipe");
    assert_reset(&mut client, "client of an aborted pipe");
    let line: serde_json::Value =
        serde_json::from_str(&lines_of(&dir.file(), 1)[0]).expect("valid JSON");
    assert_eq!(line["end"], "aborted");
    assert_eq!(line["client"], client_addr.to_string());
    assert_eq!(line["pipe"], pipes[0].id.get());
    running.stop();
}

/// A text line as the access log quotes its values: in double quotes, with
/// `"` and `\` escaped, when a value is empty or has a space, quote, `=`
/// or backslash (`src/access_log.rs`'s rule for printable text).
fn text_line(fields: &[(String, String)]) -> String {
    let quoted = |value: &str| {
        if value.is_empty() || value.contains([' ', '"', '=', '\\']) {
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            value.to_string()
        }
    };
    fields
        .iter()
        .map(|(key, value)| format!("{key}={}", quoted(value)))
        .collect::<Vec<_>>()
        .join(" ")
}

proptest::proptest! {
    /// The harness's reading of a line gives back every field as written,
    /// quotes, spaces, `=` and escapes included.
    #[test]
    fn the_harness_reads_back_every_field_of_a_line(
        fields in proptest::collection::btree_map("[a-z_]{1,12}", "[ -~]{0,24}", 1..8)
    ) {
        let fields: Vec<(String, String)> = fields.into_iter().collect();
        let parsed = common::access_log::access_log_fields(&text_line(&fields));
        let expected: std::collections::BTreeMap<String, String> = fields.into_iter().collect();
        proptest::prop_assert_eq!(parsed, expected);
    }
}
