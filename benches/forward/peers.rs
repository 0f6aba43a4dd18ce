//! The contenders: a direct connection, tcpipe, and the forwarders an
//! operator would otherwise pick, each configured as production would run
//! it on one core; how to find them, start them, and stop every process
//! they forked.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::measure::{free_port, is_listening, process_tree, Meter};

/// Most pipes any forwarder is configured for.
const MOST_PIPES: u64 = 10_000;

/// What every forwarder may hold, from the descriptor limit it inherits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// RLIMIT_NOFILE of the bench, inherited by the forwarders.
    pub nofile: u64,
    /// Pipes each forwarder is configured to allow: two descriptors each,
    /// with a margin, at most 10,000.
    pub pipes: u64,
}

impl Limits {
    pub fn from_nofile(nofile: u64) -> Limits {
        Limits {
            nofile,
            pipes: (nofile.saturating_sub(100) / 2).min(MOST_PIPES),
        }
    }
}
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Direct,
    Tcpipe,
    /// Another tcpipe binary given with `--baseline`: the same workloads in
    /// the same run, to measure a change before and after.
    Baseline,
    /// tcpipe with `--splice never`: what splicing buys, in the same run.
    TcpipeCopy,
    /// tcpipe with `--workers 2`.
    TcpipeWorkers,
    Haproxy,
    /// HAProxy with `option splice-auto`, as it can be tuned for bulk.
    HaproxySplice,
    Nginx,
    Socat,
    /// The reference article's Go forwarder (`benches/forward/goforward`),
    /// built with `go` when it is installed.
    Go,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Direct,
        Kind::Tcpipe,
        Kind::TcpipeCopy,
        Kind::TcpipeWorkers,
        Kind::Haproxy,
        Kind::HaproxySplice,
        Kind::Nginx,
        Kind::Socat,
        Kind::Go,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Tcpipe => "tcpipe",
            Kind::Baseline => "baseline",
            Kind::TcpipeCopy => "tcpipe-copy",
            Kind::TcpipeWorkers => "tcpipe-w2",
            Kind::Haproxy => "haproxy",
            Kind::HaproxySplice => "haproxy-splice",
            Kind::Nginx => "nginx",
            Kind::Socat => "socat",
            Kind::Go => "go-forward",
        }
    }

    /// One of tcpipe's own builds or tunings.
    pub fn is_tcpipe(self) -> bool {
        matches!(
            self,
            Kind::Tcpipe | Kind::Baseline | Kind::TcpipeCopy | Kind::TcpipeWorkers
        )
    }

    /// A forwarder other than tcpipe, i.e. a candidate for "best peer".
    pub fn is_other_forwarder(self) -> bool {
        self != Kind::Direct && !self.is_tcpipe()
    }

    /// Whether it can keep connected idle upstream connections ready: of the
    /// contenders, only tcpipe has such a pool (`--pool`).
    pub fn has_pool(self) -> bool {
        self.is_tcpipe()
    }
}

/// What a workload asks of a forwarder beyond how `Peer` configures it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuning {
    /// Connected idle upstream connections kept ready (0: none).
    pub pool: usize,
    /// tcpipe's idle and half-close timeouts (1h, as the peers'), so that
    /// every pipe holds timers.
    pub timeouts: bool,
}

/// A contender found on this machine.
pub struct Peer {
    pub kind: Kind,
    program: PathBuf,
    pub version: String,
    /// How it is configured, buffers first: printed under the table.
    pub setup: String,
    /// nginx's stream module, when it is a loadable module.
    stream_module: Option<PathBuf>,
    limits: Limits,
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
}

/// stdout and stderr of `program args`, as one string.
fn output_of(program: &Path, args: &[&str]) -> String {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            text
        }
        Err(e) => format!("cannot run {}: {e}", program.display()),
    }
}

/// The first whitespace-separated word of `text` after `marker`.
fn word_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let start = text.find(marker)? + marker.len();
    text[start..].split_whitespace().next()
}

/// The tcpipe binaries: the one built with this bench, and an optional
/// baseline to compare it with.
#[derive(Clone, Copy)]
pub struct Builds<'a> {
    pub tcpipe: &'a Path,
    pub baseline: Option<&'a Path>,
}

/// Finds the requested contenders; each one missing is a note, not a failure.
pub fn discover(kinds: &[Kind], builds: Builds<'_>, limits: Limits) -> (Vec<Peer>, Vec<String>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for &kind in kinds {
        match locate(kind, builds, limits) {
            Ok(peer) => found.push(peer),
            Err(why) => skipped.push(format!("{}: {why}", kind.name())),
        }
    }
    (found, skipped)
}

fn locate(kind: Kind, builds: Builds<'_>, limits: Limits) -> Result<Peer, String> {
    let tcpipe = builds.tcpipe;
    let pipes = limits.pipes;
    let on_path =
        |name: &str| find_on_path(name).ok_or_else(|| format!("`{name}` not found on PATH"));
    let peer = |program: PathBuf, version: String, setup: String| Peer {
        kind,
        program,
        version,
        setup,
        stream_module: None,
        limits,
    };
    match kind {
        Kind::Direct => Ok(peer(
            PathBuf::new(),
            "-".into(),
            "client connects straight to the target: the physical limit".into(),
        )),
        Kind::Tcpipe => {
            let version = output_of(tcpipe, &["--version"]).trim().to_string();
            Ok(peer(
                tcpipe.to_path_buf(),
                version,
                format!(
                    "64 KiB ring per direction (default), low-water 32 KiB (default), \
                     --max-connections {pipes}, otherwise defaults"
                ),
            ))
        }
        Kind::Baseline => {
            let program = builds
                .baseline
                .ok_or("no --baseline binary given")?
                .to_path_buf();
            if !program.is_file() {
                return Err(format!("{} is not a file", program.display()));
            }
            let version = output_of(&program, &["--version"]).trim().to_string();
            Ok(peer(
                program.clone(),
                format!("{version} at {}", program.display()),
                "the same flags as tcpipe".into(),
            ))
        }
        Kind::TcpipeCopy | Kind::TcpipeWorkers => {
            let (flag, setup) = match kind {
                Kind::TcpipeCopy => ("--splice", "tcpipe's flags plus --splice never"),
                _ => ("--workers", "tcpipe's flags plus --workers 2"),
            };
            let help = output_of(tcpipe, &["--help"]);
            if !help.contains(flag) {
                return Err(format!("this tcpipe has no {flag}"));
            }
            let version = output_of(tcpipe, &["--version"]).trim().to_string();
            Ok(peer(tcpipe.to_path_buf(), version, setup.into()))
        }
        Kind::Haproxy | Kind::HaproxySplice => {
            let program = on_path("haproxy")?;
            let text = output_of(&program, &["-v"]);
            let version = word_after(&text, "version ").unwrap_or("unknown");
            let splicing = match kind {
                Kind::Haproxy => "no splicing (default)",
                _ => "option splice-auto (maxconn lowered by a quarter for the pipes' descriptors)",
            };
            Ok(peer(
                program,
                format!("HAProxy {version}"),
                format!(
                    "mode tcp, nbthread 1, tune.bufsize 16 KiB (default), {splicing}, \
                     maxconn {pipes}, timeouts 5s connect / 1h client+server, no logging"
                ),
            ))
        }
        Kind::Go => {
            let go = on_path("go")?;
            let version = output_of(&go, &["version"]);
            let version = word_after(&version, "go version ")
                .unwrap_or("go")
                .to_string();
            let program = build_go_forwarder(&go)?;
            Ok(peer(
                program,
                format!("Go forwarder ({version})"),
                "the reference article's: a goroutine per direction, io.Copy (splice(2) \
                 between TCP sockets), GOMAXPROCS 1; passes EOF on as a half-close"
                    .into(),
            ))
        }
        Kind::Nginx => {
            let program = on_path("nginx")?;
            let text = output_of(&program, &["-V"]);
            let version = word_after(&text, "nginx/").unwrap_or("unknown");
            let stream_module = if text.contains("--with-stream=dynamic") {
                let modules =
                    word_after(&text, "--modules-path=").unwrap_or("/usr/lib/nginx/modules");
                let so = Path::new(modules).join("ngx_stream_module.so");
                if !so.exists() {
                    return Err(format!(
                        "{} has no stream module ({} is missing: install libnginx-mod-stream)",
                        program.display(),
                        so.display()
                    ));
                }
                Some(so)
            } else if text.split_whitespace().any(|w| w == "--with-stream") {
                None // built in
            } else {
                return Err(format!(
                    "{} was built without the stream module",
                    program.display()
                ));
            };
            let mut peer = peer(
                program,
                format!("nginx {version} stream"),
                format!(
                    "worker_processes 1, worker_connections {}, proxy_buffer_size 16 KiB (default), \
                     tcp_nodelay on (default), proxy_timeout 1h, backlog 1024",
                    2 * pipes + 16
                ),
            );
            peer.stream_module = stream_module;
            Ok(peer)
        }
        Kind::Socat => {
            let program = on_path("socat")?;
            let text = output_of(&program, &["-V"]);
            let version = word_after(&text, "socat version ").unwrap_or("unknown");
            Ok(peer(
                program,
                format!("socat {version}"),
                "fork,reuseaddr,nodelay,backlog=1024 / nodelay; 8 KiB buffer (-b default); \
                 one process per connection"
                    .into(),
            ))
        }
    }
}

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
        let log = match tuning.pool {
            0 => workdir.join(format!("{}.log", self.name())),
            pool => workdir.join(format!("{}-pool{pool}.log", self.name())),
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

/// Builds the Go forwarder into the bench's output directory, unless a
/// build newer than its source is there.
fn build_go_forwarder(go: &Path) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/forward/goforward/main.go");
    let dir = crate::report::output_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let program = dir.join("goforward");
    let modified = |path: &Path| fs::metadata(path).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(written)) = (modified(&program), modified(&source)) {
        if built >= written {
            return Ok(program);
        }
    }
    let output = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .env("GOCACHE", dir.join("go-cache"))
        .env("GOPATH", dir.join("go"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", go.display()))?;
    if !output.status.success() {
        return Err(format!(
            "go build failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(program)
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
