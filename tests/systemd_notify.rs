//! systemd's notify protocol against the test's own `NOTIFY_SOCKET`:
//! `READY=1` only once the listener is bound, `RELOADING=1` with
//! `MONOTONIC_USEC` then `READY=1` around a reload (failed or not),
//! `STOPPING=1` at a shutdown, `WATCHDOG=1` pings at half of
//! `WATCHDOG_USEC`, an abstract-namespace socket, and every `READY=1`
//! naming each listener and the metrics endpoint as bound
//! (`X_TCPIPE_LISTEN`, `X_TCPIPE_METRICS`).

mod common;

use std::collections::HashSet;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::config::{route, ConfigFile};
use common::scrape::http_get;
use common::upstreams::assert_served;
use common::{binary, connect, echo_server, Tcpipe, DEADLINE};

/// A datagram socket standing in for systemd's.
struct Systemd {
    socket: UnixDatagram,
    /// What `NOTIFY_SOCKET` says.
    name: String,
    path: Option<PathBuf>,
}

impl Systemd {
    fn at_path(tag: &str) -> Systemd {
        let path = std::env::temp_dir().join(format!("tcpipe-notify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Systemd {
            socket,
            name: path.display().to_string(),
            path: Some(path),
        }
    }

    fn abstract_name(tag: &str) -> Systemd {
        let name = format!("tcpipe-notify-{tag}-{}", std::process::id());
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        Systemd {
            socket,
            name: format!("@{name}"),
            path: None,
        }
    }

    /// The next message, as its `KEY=VALUE` lines.
    fn next(&self) -> Vec<String> {
        self.socket.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Messages until one has `line`; that one.
    fn until(&self, line: &str) -> Vec<String> {
        loop {
            let message = self.next();
            if message.iter().any(|l| l == line) {
                return message;
            }
        }
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn value<'a>(message: &'a [String], key: &str) -> Option<&'a str> {
    message
        .iter()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

/// Inodes of the TCP sockets process `pid` listens on, from /proc.
fn listening_sockets(pid: u32) -> HashSet<u64> {
    let owned: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    target
                        .strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // st 0A is LISTEN; the inode is the tenth field.
                    (fields.get(3) == Some(&"0A")).then(|| fields.get(9)?.parse().ok())?
                })
                .collect::<Vec<u64>>()
        })
        .filter(|inode| owned.contains(inode))
        .collect()
}

#[test]
fn ready_comes_once_the_listener_is_bound_with_a_status_and_the_main_pid() {
    let systemd = Systemd::at_path("ready");
    let mut child = Command::new(binary())
        .args(["--listen", "127.0.0.1:0", "--target"])
        .arg(echo_server().to_string())
        .env("NOTIFY_SOCKET", &systemd.name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tcpipe");
    let ready = systemd.until("READY=1");
    // Read at once on READY: the listener must exist by then.
    let listening = listening_sockets(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(listening.len(), 1, "one listener bound at READY=1");
    assert_eq!(
        value(&ready, "MAINPID"),
        Some(child.id().to_string().as_str())
    );
    let status = value(&ready, "STATUS").expect("a STATUS line");
    assert!(status.contains("1 worker"), "{status}");
}

#[test]
fn a_reload_is_reloading_then_ready_and_a_shutdown_is_stopping() {
    let systemd = Systemd::at_path("reload");
    let file = ConfigFile::new(&route("web", &[echo_server()], ""));
    let tcpipe = Tcpipe::start_args_with_env(
        &["--config", file.path_str()],
        &[("NOTIFY_SOCKET", systemd.name.as_str())],
    );
    systemd.until("READY=1");

    let mut began = Vec::new();
    for round in 0..2 {
        tcpipe.signal("HUP");
        let reloading = systemd.until("RELOADING=1");
        let usec: u64 = value(&reloading, "MONOTONIC_USEC")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("MONOTONIC_USEC in {reloading:?}"));
        began.push(usec);
        let ready = systemd.until("READY=1");
        assert!(
            !value(&ready, "STATUS").unwrap_or("").contains("failed"),
            "reload {round}: {ready:?}"
        );
    }
    assert!(began[1] > began[0], "the monotonic clock moves: {began:?}");

    // A file that does not parse: the reload fails, and systemd still
    // hears that it is over.
    file.write("[[route]\n");
    tcpipe.signal("HUP");
    systemd.until("RELOADING=1");
    let ready = systemd.until("READY=1");
    assert!(
        value(&ready, "STATUS").unwrap_or("").contains("failed"),
        "{ready:?}"
    );

    tcpipe.signal("TERM");
    let stopping = systemd.until("STOPPING=1");
    assert!(value(&stopping, "STATUS").is_some(), "{stopping:?}");
}

fn values<'a>(message: &'a [String], key: &'a str) -> Vec<&'a str> {
    message
        .iter()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// `X_TCPIPE_LISTEN=ROUTE ADDR` lines, parsed.
fn listening(message: &[String]) -> Vec<(String, std::net::SocketAddr)> {
    values(message, "X_TCPIPE_LISTEN")
        .into_iter()
        .map(|value| {
            let (route, addr) = value.split_once(' ').expect("ROUTE ADDR");
            (route.to_string(), addr.parse().expect("a socket address"))
        })
        .collect()
}

#[test]
fn ready_names_each_bound_listener_and_the_metrics_endpoint_and_again_after_a_reload() {
    let systemd = Systemd::at_path("ports");
    let file = ConfigFile::new(&format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\n\n{}",
        route("web", &[echo_server()], "")
    ));
    let tcpipe = Tcpipe::start_args_with_env(
        &["--config", file.path_str()],
        &[("NOTIFY_SOCKET", systemd.name.as_str())],
    );
    let ready = systemd.until("READY=1");
    let web = listening(&ready);
    assert_eq!(web.len(), 1, "{ready:?}");
    assert_eq!(web[0].0, "web");
    assert_ne!(web[0].1.port(), 0, "the bound port, not the configured 0");
    assert_served(connect(web[0].1), b"through the announced port");
    let metrics: Vec<std::net::SocketAddr> = values(&ready, "X_TCPIPE_METRICS")
        .iter()
        .map(|a| a.parse().expect("a socket address"))
        .collect();
    assert_eq!(metrics.len(), 1, "{ready:?}");
    assert_eq!(http_get(metrics[0], "/metrics").status, 200);

    // A reload that adds a route: the next READY=1 names both, and keeps
    // web's port.
    file.write(&format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\n\n{}{}",
        route("web", &[echo_server()], ""),
        route("api", &[echo_server()], "")
    ));
    tcpipe.signal("HUP");
    systemd.until("RELOADING=1");
    let ready = systemd.until("READY=1");
    let both = listening(&ready);
    assert_eq!(both.len(), 2, "{ready:?}");
    assert_eq!(both[0], web[0], "web keeps its listener");
    assert_eq!(both[1].0, "api");
    assert_served(connect(both[1].1), b"through the added route's port");
}

#[test]
fn the_watchdog_is_pinged_at_half_its_interval() {
    let systemd = Systemd::at_path("watchdog");
    let target = echo_server().to_string();
    let _tcpipe = Tcpipe::start_args_with_env(
        &["--listen", "127.0.0.1:0", "--target", &target],
        &[
            ("NOTIFY_SOCKET", systemd.name.as_str()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    systemd.until("READY=1");
    systemd.until("WATCHDOG=1");
    let start = Instant::now();
    for _ in 0..3 {
        systemd.until("WATCHDOG=1");
    }
    // Three more pings at half of 1 s take about 1.5 s; at the full
    // interval they would take 3 s, and systemd would already have killed
    // the service.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2600),
        "pings every ~500 ms: {took:?} for three"
    );
}

#[test]
fn an_abstract_notify_socket_is_reached() {
    let systemd = Systemd::abstract_name("abstract");
    let target = echo_server().to_string();
    let _tcpipe = Tcpipe::start_args_with_env(
        &["--listen", "127.0.0.1:0", "--target", &target],
        &[("NOTIFY_SOCKET", systemd.name.as_str())],
    );
    let ready = systemd.until("READY=1");
    assert!(value(&ready, "STATUS").is_some(), "{ready:?}");
}
