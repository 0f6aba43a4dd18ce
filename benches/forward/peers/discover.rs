//! Finding the contenders on this machine, their versions and how each is
//! set up, and building the Go forwarder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Kind, Limits, Peer};

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
