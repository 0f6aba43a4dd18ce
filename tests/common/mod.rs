//! Shared helpers for the integration tests: the built `tcpipe` binary as a
//! child process, simple targets, deterministic data, and waiting on
//! conditions with a deadline.
#![allow(dead_code)] // each test file uses a different subset

pub mod access_log;
pub mod admin;
pub mod chromium;
pub mod config;
pub mod faults;
pub mod haproxy;
pub mod hooks;
pub mod operate;
pub mod proxy;
pub mod ready;
pub mod scrape;
pub mod tls;
pub mod tools;
pub mod transfer;
pub mod upgrade;
pub mod upstreams;

use std::fmt::Display;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any single wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn binary() -> &'static str {
    // Absent from a `--no-default-features` build, which has no binary:
    // only the library-only suites run there.
    match option_env!("CARGO_BIN_EXE_tcpipe") {
        Some(path) => path,
        None => panic!("no tcpipe binary: it needs the cli feature"),
    }
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A running `tcpipe` binary listening on an ephemeral port.
pub struct Tcpipe {
    child: Child,
    /// The first listener's bound address, from the first `READY=1`.
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// Its readiness notifications; `None` when the test set
    /// `NOTIFY_SOCKET` itself and hears them on its own socket.
    notices: Option<ready::Notices>,
}

impl Tcpipe {
    /// `tcpipe -l 127.0.0.1:0 -t TARGET EXTRA...`
    pub fn start(target: impl Display, extra: &[&str]) -> Tcpipe {
        Tcpipe::start_logging(&default_log_filter(), target, extra)
    }

    /// The same with the forwarder's `RUST_LOG` set to `filter` (tests that
    /// read per-pipe lines want `debug`).
    pub fn start_logging(filter: &str, target: impl Display, extra: &[&str]) -> Tcpipe {
        let mut command = Command::new(binary());
        command.args(route_flags(target)).args(extra);
        Tcpipe::spawn(command, filter)
    }

    /// The same under `prlimit --nofile=LIMIT`, for descriptor exhaustion.
    pub fn start_with_fd_limit(limit: u32, target: impl Display, extra: &[&str]) -> Tcpipe {
        let mut args: Vec<String> = route_flags(target).into();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Tcpipe::start_args_with_fd_limit(limit, &args)
    }

    /// `tcpipe ARGS...` under `prlimit --nofile=LIMIT`.
    pub fn start_args_with_fd_limit(limit: u32, args: &[&str]) -> Tcpipe {
        Tcpipe::start_args_with_fd_limits(limit, limit, args)
    }

    /// `tcpipe ARGS...` under `prlimit --nofile=SOFT:HARD`.
    pub fn start_args_with_fd_limits(soft: u32, hard: u32, args: &[&str]) -> Tcpipe {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={soft}:{hard}"))
            .arg("--")
            .arg(binary())
            .args(args);
        Tcpipe::spawn(command, &default_log_filter())
    }

    /// `tcpipe ARGS...`, which must make it listen; `addr` is the first
    /// address its readiness notification names.
    pub fn start_args(args: &[&str]) -> Tcpipe {
        let mut command = Command::new(binary());
        command.args(args);
        Tcpipe::spawn(command, &default_log_filter())
    }

    /// `tcpipe ARGS...` with these environment variables set. With a
    /// `NOTIFY_SOCKET` of the test's own, the test hears readiness itself:
    /// this returns at once and `addr` is unspecified (`0.0.0.0:0`).
    pub fn start_args_with_env(args: &[&str], env: &[(&str, &str)]) -> Tcpipe {
        let mut command = Command::new(binary());
        command.args(args).envs(env.iter().copied());
        Tcpipe::spawn(command, &default_log_filter())
    }

    /// `command`, which runs the binary (through a wrapper that sets up
    /// what it inherits, for instance), with the harness's notify socket.
    pub fn start_command(command: Command) -> Tcpipe {
        Tcpipe::spawn(command, &default_log_filter())
    }

    fn spawn(mut command: Command, log_filter: &str) -> Tcpipe {
        add_test_args(&mut command);
        let own_notify_socket = command
            .get_envs()
            .any(|(key, value)| key == "NOTIFY_SOCKET" && value.is_some());
        let notices = (!own_notify_socket).then(ready::Notices::bind);
        if let Some(notices) = &notices {
            command.env("NOTIFY_SOCKET", notices.path());
        }
        command
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn tcpipe");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        // Keep draining stderr for the child's whole life, so logging never blocks it.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("TCPIPE_TEST_ECHO_LOGS").is_some() {
                    eprintln!("[tcpipe] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut tcpipe = Tcpipe {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            logs,
            notices,
        };
        if tcpipe.notices.is_some() {
            let ready = tcpipe.ready_after(0, "start");
            let listening = ready.listening();
            let (_, addr) = listening
                .first()
                .unwrap_or_else(|| panic!("READY=1 names no listener: {ready:?}"));
            tcpipe.addr = *addr;
        }
        tcpipe
    }

    /// The `READY=1` after the first `seen` ones (0: the startup one), once
    /// it comes; fails the test if the forwarder exits or `DEADLINE` passes
    /// first.
    pub fn ready_after(&self, seen: usize, what: &str) -> ready::Ready {
        let notices = self.notices.as_ref().expect("the harness's NOTIFY_SOCKET");
        let mut ready = None;
        wait_until(DEADLINE, || {
            ready = notices.after(seen);
            ready.is_some() || self.has_exited()
        });
        match ready {
            Some(ready) => ready,
            None if self.has_exited() => {
                panic!(
                    "tcpipe exited before READY=1 ({what}); logs: {:#?}",
                    self.logs()
                )
            }
            None => panic!("no READY=1 ({what}) in time; logs: {:#?}", self.logs()),
        }
    }

    /// Whether the process has ended (a zombie not yet reaped counts).
    fn has_exited(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) {
            Ok(stat) => stat
                .rfind(')')
                .and_then(|at| stat[at + 1..].split_whitespace().next())
                .is_some_and(|state| state == "Z" || state == "X"),
            Err(_) => true,
        }
    }

    /// The newest `READY=1`: where the forwarder listens now.
    pub fn latest_ready(&self) -> ready::Ready {
        self.notices
            .as_ref()
            .and_then(ready::Notices::latest)
            .expect("a READY=1 on the harness's NOTIFY_SOCKET")
    }

    /// Waits for `STOPPING=1`, which the forwarder sends once a shutdown
    /// has begun (its listeners are closed), and returns its `STATUS=`
    /// (`draining N pipes`).
    pub fn wait_stopping(&self) -> String {
        let notices = self.notices.as_ref().expect("the harness's NOTIFY_SOCKET");
        let mut stopping = None;
        wait_until(DEADLINE, || {
            stopping = notices.with("STOPPING=1").pop();
            stopping.is_some()
        });
        let stopping =
            stopping.unwrap_or_else(|| panic!("no STOPPING=1 in time; logs: {:#?}", self.logs()));
        stopping.status().to_string()
    }

    /// How many `READY=1` came so far.
    pub fn readies(&self) -> usize {
        self.notices.as_ref().map_or(0, ready::Notices::count)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Pipe ids in the access log's open lines on stderr (`pipe=N`, with
    /// `--access-log-opens`).
    pub fn opened_pipe_ids(&self) -> std::collections::BTreeSet<u64> {
        self.logs()
            .iter()
            .filter(|line| line.contains("event=open"))
            .filter_map(|line| line.split("pipe=").nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    }

    /// What the forwarder logged up to the end of its startup, for the
    /// tests of its startup lines and warnings: `READY=1` can come before
    /// stderr is read, so this waits for the last startup line (each
    /// route's, which says where it listens).
    pub fn startup_logs(&self) -> Vec<String> {
        let routes = self.notices.as_ref().map_or(1, |notices| {
            notices.latest().map_or(1, |ready| {
                let mut names: Vec<String> = ready
                    .listening()
                    .into_iter()
                    .map(|(name, _)| name)
                    .collect();
                names.dedup();
                names.len()
            })
        });
        let ended = wait_until(DEADLINE, || {
            self.logs()
                .iter()
                .filter(|line| line.contains(": listening on "))
                .count()
                >= routes
        });
        assert!(ended, "the startup never ended; logs: {:#?}", self.logs());
        self.logs()
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.logs().iter().any(|l| l.contains(needle)))
    }

    /// Open file descriptors of the process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// Open sockets of the process: its descriptors less the kernel pipes
    /// that splicing keeps pooled, and its files.
    pub fn socket_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// User plus system CPU time used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64)
    }

    /// Sends a signal by name (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status
    }
}

impl Drop for Tcpipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `TCPIPE_TEST_ARGS` (split on spaces) goes after the flags of every
/// tcpipe a test starts with route flags, e.g. `TCPIPE_TEST_ARGS="--splice
/// always"` runs a test file with every pipe spliced. Not for one started
/// with `--config`, which takes no route flag.
fn add_test_args(command: &mut Command) {
    let with_file = command
        .get_args()
        .any(|a| a == "-c" || a == "--config" || a.to_string_lossy().starts_with("--config="));
    if !with_file {
        command.args(extra_test_args());
    }
}

/// The `--splice` mode `TCPIPE_TEST_ARGS` asks for, for tests that run the
/// library rather than the binary.
pub fn splice_from_test_args() -> Option<tcpipe::Splice> {
    let args = std::env::var("TCPIPE_TEST_ARGS").ok()?;
    let mut words = args.split_whitespace();
    words.position(|w| w == "--splice")?;
    match words.next()? {
        "auto" => Some(tcpipe::Splice::Auto),
        "always" => Some(tcpipe::Splice::Always),
        "never" => Some(tcpipe::Splice::Never),
        other => panic!("TCPIPE_TEST_ARGS: unknown --splice mode {other}"),
    }
}

/// `-l 127.0.0.1:0 -t TARGET`
fn route_flags(target: impl Display) -> [String; 4] {
    [
        "-l".into(),
        "127.0.0.1:0".into(),
        "-t".into(),
        target.to_string(),
    ]
}

/// `TCPIPE_TEST_LOG` if set, else `info`.
fn default_log_filter() -> String {
    std::env::var("TCPIPE_TEST_LOG").unwrap_or_else(|_| "info".into())
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Flags from `TCPIPE_TEST_ARGS` (split on whitespace), appended to every
/// forwarder the helpers start, so that a whole test file can run again
/// with, say, `--workers 2`. Not for files whose forwarders use `--config`
/// (flags and a file do not mix).
pub fn extra_test_args() -> Vec<String> {
    std::env::var("TCPIPE_TEST_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The `--workers` that `TCPIPE_TEST_ARGS` gives every forwarder (1 if none).
pub fn workers_under_test() -> usize {
    let args = extra_test_args();
    args.iter()
        .position(|arg| arg == "--workers")
        .and_then(|at| args.get(at + 1)?.parse().ok())
        .unwrap_or(1)
}

/// Runs the binary to completion (for flags that make it exit at once).
pub fn run_tcpipe(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tcpipe")
}

/// A blocking client socket whose reads and writes give up after `DEADLINE`,
/// so a broken forwarder fails a test instead of hanging it.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A loopback listener on an ephemeral port.
pub fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// An address on which nothing listens: connects to it are refused.
pub fn refused_addr() -> SocketAddr {
    let (listener, addr) = listener();
    drop(listener);
    addr
}

/// An echo target: a thread per connection that echoes until EOF, then
/// half-closes. Lives until the test process ends.
pub fn echo_server() -> SocketAddr {
    let (listener, addr) = listener();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || echo(stream, || {}));
        }
    });
    addr
}

/// Echoes `stream` until EOF, then half-closes; `on_first_byte` runs once,
/// when the first byte arrives.
pub fn echo(mut stream: TcpStream, mut on_first_byte: impl FnMut()) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                let _ = stream.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if std::mem::take(&mut first) {
                    on_first_byte();
                }
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Reads until EOF, returning the bytes read; panics on a reset or timeout.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read to EOF");
    out
}

/// Reads until EOF, failing on a reset or a timeout, for a stream of which
/// `len` bytes hashing to `hash` were read already: how many bytes came in
/// all, and their hash.
pub fn receive_rest(stream: &mut TcpStream, mut len: usize, mut hash: Fnv) -> (usize, Fnv) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (len, hash),
            Ok(n) => {
                hash.update(&buf[..n]);
                len += n;
            }
            Err(e) => panic!("expected a clean EOF after {len} bytes, got {e}"),
        }
    }
}

/// Reads until EOF or error and returns how it ended.
pub fn read_until_closed(stream: &mut TcpStream) -> (usize, std::io::Result<()>) {
    let mut total = 0;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (total, Ok(())),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (total, Err(e)),
        }
    }
}

/// Sets SO_LINGER to 0 and drops the socket, so the peer gets an RST.
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
}

/// xorshift64*: reproducible test data without a dependency.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..high`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low) as u64) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        self.fill(&mut buf);
        buf
    }
}

/// FNV-1a, 64 bit: a streaming hash to compare what was sent with what came.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    pub fn of(bytes: &[u8]) -> Fnv {
        let mut h = Fnv::default();
        h.update(bytes);
        h
    }
}
