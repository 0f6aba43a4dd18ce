//! Helpers for the admin API's tests: a private directory for the socket
//! file, raw HTTP requests over a Unix or TCP socket (so a test sees
//! exactly what curl would), and `tcpipe ctl` run against a forwarder.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{binary, Tcpipe, DEADLINE};

/// A temporary directory for a socket file (and a token file), removed
/// with the value.
pub struct AdminDir {
    dir: PathBuf,
}

impl AdminDir {
    pub fn new() -> AdminDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tcpipe-admin-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        AdminDir { dir }
    }

    /// Where the socket file goes.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// `unix:PATH` for `--admin`.
    pub fn flag(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// A file in the directory with `text` in it.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write a file");
        path
    }
}

impl Drop for AdminDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the admin API of a forwarder is, as `X_TCPIPE_ADMIN` says.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Endpoint {
    pub fn parse(text: &str) -> Endpoint {
        match text.strip_prefix("unix:") {
            Some(path) => Endpoint::Unix(path.into()),
            None => Endpoint::Tcp(text.parse().expect("an address in X_TCPIPE_ADMIN")),
        }
    }

    /// As `--admin` takes it.
    pub fn flag(&self) -> String {
        match self {
            Endpoint::Unix(path) => format!("unix:{}", path.display()),
            Endpoint::Tcp(addr) => addr.to_string(),
        }
    }

    /// A connected socket, reads bounded by the test deadline.
    pub fn connect(&self) -> Box<dyn Socket> {
        match self {
            Endpoint::Unix(path) => {
                let socket = UnixStream::connect(path).expect("connect to the admin socket");
                socket.set_read_timeout(Some(DEADLINE)).unwrap();
                Box::new(socket)
            }
            Endpoint::Tcp(addr) => {
                let socket = TcpStream::connect(addr).expect("connect to the admin address");
                socket.set_read_timeout(Some(DEADLINE)).unwrap();
                Box::new(socket)
            }
        }
    }

    /// Sends `raw` and reads the answer to the server's close.
    pub fn exchange(&self, raw: &[u8]) -> Reply {
        let mut socket = self.connect();
        socket.write_all(raw).expect("send the request");
        read_reply(&mut *socket)
    }

    /// `METHOD PATH` with a JSON body and a bearer token, if given.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Reply {
        self.exchange(request(method, path, body, token).as_bytes())
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, None)
    }

    pub fn put(&self, path: &str, body: &str) -> Reply {
        self.call("PUT", path, Some(body), None)
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.call("POST", path, Some(body), None)
    }
}

pub trait Socket: Read + Write {}
impl Socket for TcpStream {}
impl Socket for UnixStream {}

/// The request's bytes, as curl sends them.
pub fn request(method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n");
    if let Some(token) = token {
        text.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        text.push_str("Content-Type: application/json\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    text
}

/// An answer: status, head and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The body as JSON (fails the test if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The `error` of a refusal, which must be one line.
    pub fn error(&self) -> String {
        assert_eq!(
            self.body.trim_end().lines().count(),
            1,
            "one line: {self:?}"
        );
        let error = self.json()["error"].as_str().map(str::to_string);
        error.unwrap_or_else(|| panic!("no error field: {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// Reads to the server's close. A reset after the answer keeps it: a
/// server that stops reading a body it refused closes with bytes unread,
/// which resets the connection once the answer is out (as curl, the test
/// then has the answer already).
pub fn read_reply(socket: &mut dyn Read) -> Reply {
    let mut bytes = Vec::new();
    if let Err(e) = socket.read_to_end(&mut bytes) {
        let reset = e.kind() == std::io::ErrorKind::ConnectionReset;
        assert!(reset && !bytes.is_empty(), "read the answer: {e}");
    }
    let text = String::from_utf8(bytes).expect("a UTF-8 answer");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

impl Tcpipe {
    /// Where the admin API is served, from the newest `READY=1`.
    pub fn admin(&self) -> Endpoint {
        let ready = self.latest_ready();
        let admin = ready
            .admin()
            .unwrap_or_else(|| panic!("READY=1 names no admin endpoint: {ready:?}"));
        Endpoint::parse(&admin)
    }

    /// `tcpipe ctl --admin ENDPOINT ARGS...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl(&[&["--admin", &self.admin().flag()], args].concat())
    }
}

/// `tcpipe ctl ARGS...`, without `TCPIPE_ADMIN` unless the test sets it.
pub fn ctl(args: &[&str]) -> Output {
    ctl_with_env(args, &[])
}

pub fn ctl_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary())
        .arg("ctl")
        .args(args)
        .env_remove("TCPIPE_ADMIN")
        .env_remove("TCPIPE_ADMIN_TOKEN_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run tcpipe ctl")
}

/// stdout, stderr and the exit code of a finished command.
pub fn outcome(output: &Output) -> (String, String, i32) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

/// The mode bits of a file.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}
