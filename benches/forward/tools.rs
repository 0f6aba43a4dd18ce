//! The third-party programs people benchmark with: finding them, running a
//! server (iperf3, redis-server, nginx serving a small file) as a child of
//! the bench, and running a client to its end within a deadline.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::measure::{free_port, is_listening};
use crate::peers::find_on_path;

/// Longest wait for a server to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval while waiting on a child process.
const POLL: Duration = Duration::from_millis(10);
/// Body of the file nginx serves to wrk.
pub const SMALL_FILE: &str = "small.txt";
pub const SMALL_FILE_BYTES: usize = 64;

/// A program the bench needs, or why it is not there.
pub fn program(name: &str) -> Result<PathBuf, String> {
    find_on_path(name).ok_or_else(|| format!("`{name}` not found on PATH"))
}

/// A target server run as a child; dropping it kills it (none of these
/// fork: nginx runs with `master_process off`).
pub struct ToolServer {
    pub addr: SocketAddr,
    child: Child,
    /// Scratch directory for its config and logs, removed on drop.
    dir: PathBuf,
}

impl ToolServer {
    /// `iperf3 -s` on a free loopback port.
    pub fn iperf3() -> Result<ToolServer, String> {
        let iperf3 = program("iperf3")?;
        ToolServer::start("iperf3", |port, _| {
            let mut command = Command::new(&iperf3);
            command.args(["-s", "-B", "127.0.0.1", "-p", &port.to_string()]);
            Ok(command)
        })
    }

    /// redis-server, in memory only.
    pub fn redis() -> Result<ToolServer, String> {
        let redis = program("redis-server")?;
        ToolServer::start("redis", |port, dir| {
            let mut command = Command::new(&redis);
            command
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .args(["--daemonize", "no", "--dir"])
                .arg(dir);
            Ok(command)
        })
    }

    /// nginx (http) with one process serving `SMALL_FILE`, access log off.
    pub fn nginx_http() -> Result<ToolServer, String> {
        let nginx = program("nginx")?;
        ToolServer::start("nginx-http", |port, dir| {
            let write = |name: &str, text: String| {
                let path = dir.join(name);
                fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
            };
            write(SMALL_FILE, "x".repeat(SMALL_FILE_BYTES))?;
            let d = dir.display();
            write(
                "nginx.conf",
                format!(
                    "daemon off;\nmaster_process off;\nworker_processes 1;\n\
                     pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                     events {{ worker_connections 4096; }}\n\
                     http {{\n\
                     \x20   access_log off;\n\
                     \x20   keepalive_requests 1000000;\n\
                     \x20   client_body_temp_path {d}; proxy_temp_path {d};\n\
                     \x20   fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
                     \x20   server {{ listen 127.0.0.1:{port} backlog=1024; root {d}; }}\n\
                     }}\n"
                ),
            )?;
            let mut command = Command::new(&nginx);
            command
                .arg("-p")
                .arg(dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(dir.join("nginx.conf"));
            Ok(command)
        })
    }

    fn start(
        name: &str,
        command: impl Fn(u16, &Path) -> Result<Command, String>,
    ) -> Result<ToolServer, String> {
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("tcpipe-bench-{}-{name}-{port}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut command = command(port, &dir)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut server = ToolServer {
            addr: ([127, 0, 0, 1], port).into(),
            child,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !is_listening(port) {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("{name} server exited ({status}) before listening"));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name} server not listening after {START_TIMEOUT:?}"
                ));
            }
            thread::sleep(POLL);
        }
        Ok(server)
    }
}

impl Drop for ToolServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Runs a client to its end; its stdout, or an error with its stderr when
/// it fails or outlives `limit` (then it is killed).
pub fn run_client(mut command: Command, limit: Duration) -> Result<String, String> {
    let name = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    // Readers on threads, so that a full pipe never stalls the client.
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("{name} still running after {limit:?}: killed"));
            }
            Ok(None) => thread::sleep(POLL),
            Err(e) => break Err(format!("cannot wait for {name}: {e}")),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let status = status?;
    if !status.success() {
        let why = stderr.trim().lines().last().unwrap_or("").to_string();
        let why = if why.is_empty() {
            stdout.trim().lines().last().unwrap_or("").to_string()
        } else {
            why
        };
        return Err(format!("{name} failed ({status}): {why}"));
    }
    Ok(stdout)
}

/// Whole seconds for tools that take no fractions, at least one.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().ceil().max(1.0) as u64
}
