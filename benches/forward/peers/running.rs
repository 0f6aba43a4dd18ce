//! Running one contender: its command line or config file, starting it
//! and waiting until it serves, and stopping every process it forked.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{Kind, Peer, Tuning};
use crate::measure::{free_port, is_listening, process_tree, Meter};

const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const START_ATTEMPTS: u32 = 3;

/// Why a start failed: `Early` (exited before serving, e.g. its port was
/// taken meanwhile) is worth another port; `Late` is not.
enum StartFailure {
    Early(String),
    Late(String),
}
use StartFailure::{Early, Late};

impl Peer {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Starts the contender forwarding to `target` and waits until a
    /// connection through it reaches the target and back.
    pub fn start(
        &self,
        target: SocketAddr,
        tuning: Tuning,
        workdir: &Path,
    ) -> Result<Running, String> {
        if tuning.pool > 0 && !self.kind.has_pool() {
            return Err(format!("{} has no connection pool", self.name()));
        }
        if tuning.inspect && !self.kind.has_inspection() {
            return Err(format!("{} cannot route by first bytes", self.name()));
        }
        if self.kind == Kind::Direct {
            return Ok(Running {
                kind: self.kind,
                addr: target,
                child: None,
                log: PathBuf::new(),
            });
        }
        // The free port may be taken again before the peer binds it.
        let mut attempt = 1;
        loop {
            match self.start_on(free_port()?, target, tuning, workdir) {
                Err(Early(why)) if attempt < START_ATTEMPTS => {
                    eprintln!("note: {} did not start ({why}); retrying", self.name());
                    attempt += 1;
                }
                Err(Early(why)) | Err(Late(why)) => return Err(why),
                Ok(running) => return Ok(running),
            }
        }
    }

    fn start_on(
        &self,
        port: u16,
        target: SocketAddr,
        tuning: Tuning,
        workdir: &Path,
    ) -> Result<Running, StartFailure> {
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        // Two tunings of one contender may run at once: a log each.
        let log = match (tuning.pool, tuning.inspect) {
            (_, true) => workdir.join(format!("{}-inspect.log", self.name())),
            (0, _) => workdir.join(format!("{}.log", self.name())),
            (pool, _) => workdir.join(format!("{}-pool{pool}.log", self.name())),
        };
        let mut command = self
            .command(listen, target, tuning, workdir)
            .map_err(Late)?;
        let log_file = File::create(&log)
            .map_err(|e| Late(format!("cannot create {}: {e}", log.display())))?;
        let log_copy = log_file.try_clone().map_err(|e| Late(e.to_string()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_copy))
            .stderr(Stdio::from(log_file));
        let child = command
            .spawn()
            .map_err(|e| Late(format!("cannot start {}: {e}", self.program.display())))?;
        let mut running = Running {
            kind: self.kind,
            addr: listen,
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !is_listening(port) {
            running.ensure_alive().map_err(Early)?;
            if Instant::now() > deadline {
                return Err(Late(format!(
                    "not listening on {listen} after {START_TIMEOUT:?}{}",
                    running.log_tail()
                )));
            }
            thread::sleep(Duration::from_millis(5));
        }
        running.probe().map_err(Late)?;
        // Someone else's listener on the port would have answered the probe.
        running.ensure_alive().map_err(Early)?;
        Ok(running)
    }

    fn command(
        &self,
        listen: SocketAddr,
        target: SocketAddr,
        tuning: Tuning,
        workdir: &Path,
    ) -> Result<Command, String> {
        let write = |name: &str, text: String| -> Result<PathBuf, String> {
            let path = workdir.join(name);
            fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(path)
        };
        let mut command = Command::new(&self.program);
        match self.kind {
            Kind::Direct => unreachable!("a direct connection has no process"),
            Kind::Tcpipe | Kind::Baseline | Kind::TcpipeCopy | Kind::TcpipeWorkers => {
                match self.kind {
                    Kind::TcpipeCopy => command.args(["--splice", "never"]),
                    Kind::TcpipeWorkers => command.args(["--workers", "2"]),
                    _ => &mut command,
                };
                if tuning.inspect {
                    // Both routes to the one target: every client is
                    // inspected, and the matching route takes it.
                    let route = |name: &str, extra: &str| {
                        format!(
                            "[[route]]\nname = \"{name}\"\nlisten = \"{listen}\"\n\
                             targets = \"{target}\"\npool = {}\n{extra}\n",
                            tuning.pool
                        )
                    };
                    let config = write(
                        "tcpipe-inspect.toml",
                        format!(
                            "[global]\nmax-connections = {}\n{}{}",
                            self.limits.pipes,
                            route("inspected", "match.protocol = \"other\""),
                            route("default", ""),
                        ),
                    )?;
                    command
                        .arg("--config")
                        .arg(config)
                        .env("RUST_LOG", "info,tcpipe::access=off");
                    return Ok(command);
                }
                command
                    .args(["-l", &listen.to_string(), "-t", &target.to_string()])
                    .args(["--max-connections", &self.limits.pipes.to_string()])
                    .args(["--pool", &tuning.pool.to_string()])
                    .args(match tuning.timeouts {
                        true => &["--idle-timeout", "1h", "--half-close-timeout", "1h"][..],
                        false => &[],
                    })
                    // The startup line and limit warnings, nothing per pipe:
                    // the access log is off, as the peers run without one.
                    .env("RUST_LOG", "info,tcpipe::access=off");
            }
            Kind::Go => {
                command.args([
                    "-listen",
                    &listen.to_string(),
                    "-target",
                    &target.to_string(),
                ]);
            }
            Kind::Haproxy | Kind::HaproxySplice => {
                let splice = match self.kind {
                    Kind::HaproxySplice => "\x20   option splice-auto\n",
                    _ => "",
                };
                // Splicing needs two descriptors per kernel pipe too, and
                // HAProxy keeps up to maxconn / 4 of them: it refuses to
                // start unless 2.5 descriptors per connection fit.
                let pipes = match self.kind {
                    Kind::HaproxySplice => self.limits.pipes * 3 / 4,
                    _ => self.limits.pipes,
                };
                let config = format!(
                    "global\n\
                     \x20   nbthread 1\n\
                     \x20   maxconn {pipes}\n\
                     defaults\n\
                     \x20   mode tcp\n\
                     \x20   maxconn {pipes}\n\
                     \x20   timeout connect 5s\n\
                     \x20   timeout client 1h\n\
                     \x20   timeout server 1h\n\
                     {splice}\
                     frontend bench\n\
                     \x20   bind {listen}\n\
                     \x20   default_backend target\n\
                     backend target\n\
                     \x20   server target {target}\n"
                );
                let path = write("haproxy.cfg", config)?;
                command.arg("-db").arg("-f").arg(path);
            }
            Kind::Nginx => {
                let load = match &self.stream_module {
                    Some(so) => format!("load_module {};\n", so.display()),
                    None => String::new(),
                };
                let dir = workdir.display();
                let nofile = self.limits.nofile;
                // nginx counts both sockets of a pipe, plus the listener.
                let connections = 2 * self.limits.pipes + 16;
                let config = format!(
                    "{load}\
                     worker_processes 1;\n\
                     worker_rlimit_nofile {nofile};\n\
                     pid {dir}/nginx.pid;\n\
                     error_log {dir}/nginx-error.log warn;\n\
                     events {{ worker_connections {connections}; }}\n\
                     stream {{\n\
                     \x20   server {{\n\
                     \x20       listen {listen} backlog=1024;\n\
                     \x20       proxy_pass {target};\n\
                     \x20       proxy_timeout 1h;\n\
                     \x20   }}\n\
                     }}\n"
                );
                let path = write("nginx.conf", config)?;
                command
                    .arg("-p")
                    .arg(workdir)
                    .arg("-e")
                    .arg(workdir.join("nginx-error.log"))
                    .arg("-c")
                    .arg(path)
                    .args(["-g", "daemon off;"]);
            }
            Kind::Socat => {
                command.args([
                    format!(
                        "TCP4-LISTEN:{},bind={},fork,reuseaddr,nodelay,backlog=1024",
                        listen.port(),
                        listen.ip()
                    ),
                    format!("TCP4:{target},nodelay"),
                ]);
            }
        }
        Ok(command)
    }
}

/// A started contender. Dropping it stops it and reaps every process it
/// forked (PID 1 of a container may not reap orphans).
pub struct Running {
    pub kind: Kind,
    /// Where clients connect.
    pub addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

impl Running {
    pub fn meter(&self) -> Meter {
        Meter {
            root: self.child.as_ref().map(Child::id),
        }
    }

    /// An error naming how the forwarder ended, if it has.
    pub fn ensure_alive(&mut self) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}){}",
                self.kind.name(),
                self.log_tail()
            )),
            Err(e) => Err(format!("cannot check on {}: {e}", self.kind.name())),
        }
    }

    /// The last lines the forwarder logged, for an error message.
    fn log_tail(&self) -> String {
        let mut text = fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(nginx_log) = self.log.parent().map(|d| d.join("nginx-error.log")) {
            if self.kind == Kind::Nginx {
                text.push_str(&fs::read_to_string(nginx_log).unwrap_or_default());
            }
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            return String::new();
        }
        format!(": {}", lines[lines.len().saturating_sub(2)..].join(" / "))
    }

    /// One connection through the forwarder, closed by us at once: done when
    /// the target's close comes back. Proves the whole path is up (nginx's
    /// worker, for one, starts after its master listens).
    fn probe(&mut self) -> Result<(), String> {
        let fail = |what: &str, e: std::io::Error| {
            format!("probe connection through the forwarder: {what}: {e}")
        };
        let mut stream = TcpStream::connect_timeout(&self.addr, START_TIMEOUT)
            .map_err(|e| fail("connect", e))?;
        stream
            .set_read_timeout(Some(START_TIMEOUT))
            .map_err(|e| fail("set timeout", e))?;
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| fail("shutdown", e))?;
        let mut sink = [0u8; 256];
        loop {
            match stream.read(&mut sink) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.ensure_alive()?;
                    return Err(fail("waiting for the close to come back", e));
                }
            }
        }
    }

    fn stop_now(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let root = child.id();
        if self.kind == Kind::Nginx {
            // The master respawns a killed worker; TERM makes it stop and reap its workers.
            signal("TERM", &[root]);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        // Children first, so that their parent (still alive) reaps them.
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let descendants: Vec<u32> = process_tree(root)
                .into_iter()
                .filter(|&p| p != root)
                .collect();
            if descendants.is_empty() || Instant::now() > deadline {
                break;
            }
            signal("KILL", &descendants);
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// kill(1), since kill(2) needs unsafe code.
fn signal(name: &str, pids: &[u32]) {
    for chunk in pids.chunks(2000) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .args(chunk.iter().map(u32::to_string))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A scratch directory for configs and logs, removed on drop.
pub struct Workdir(pub PathBuf);

impl Workdir {
    pub fn create() -> Result<Workdir, String> {
        let dir = std::env::temp_dir().join(format!("tcpipe-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Workdir(dir))
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
