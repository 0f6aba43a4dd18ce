//! Real TLS for the tests of routing by server name: self-signed
//! certificates made by `openssl req`, TLS servers and clients in Python's
//! `ssl`, and ClientHellos as bytes (captured from real clients, or built
//! to a shape: padded, in several records) for tests that drive the
//! segments themselves.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::tools::require;

/// A Python TLS server (`server CERT KEY`: prints its port, then, to each
/// client, once the handshake is done, the ALPN protocol it chose) and
/// client (`client HOST PORT SNI|- ALPN,..|- CA..`: verifies the server's
/// certificate against the CAs given and prints its CN and the server's
/// line).
const SCRIPT: &str = r#"
import socket, ssl, sys, threading
if sys.argv[1] == "server":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    print(s.getsockname()[1], flush=True)
    def serve(c):
        try:
            with ctx.wrap_socket(c, server_side=True) as t:
                t.sendall(("alpn=%s\n" % t.selected_alpn_protocol()).encode())
                t.recv(1)
        except Exception:
            pass
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    host, port, sni, alpn = sys.argv[2:6]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    for ca in sys.argv[6:]:
        ctx.load_verify_locations(ca)
    if alpn != "-":
        ctx.set_alpn_protocols(alpn.split(","))
    c = socket.create_connection((host, int(port)), timeout=20)
    with ctx.wrap_socket(c, server_hostname=None if sni == "-" else sni) as t:
        subject = dict(part[0] for part in t.getpeercert()["subject"])
        line = b""
        while not line.endswith(b"\n"):
            more = t.recv(100)
            if not more:
                break
            line += more
        print("cn=%s %s" % (subject["commonName"], line.decode().strip()))
"#;

/// A self-signed certificate for one name, in a directory of its own.
pub struct Cert {
    dir: PathBuf,
    pub name: String,
}

impl Cert {
    pub fn new(name: &str) -> Cert {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let openssl = require(&["openssl"], "version", "openssl");
        let dir = std::env::temp_dir().join(format!(
            "tcpipe-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        let made = Command::new(openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .args(["-subj", &format!("/CN={name}")])
            .args(["-addext", &format!("subjectAltName=DNS:{name}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl req");
        assert!(made.success(), "openssl req failed for {name}");
        Cert {
            dir,
            name: name.to_string(),
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn python() -> String {
    require(&["python3"], "--version", "python3")
}

/// A TLS server with `cert`, until dropped.
pub struct TlsServer {
    child: Child,
    pub addr: SocketAddr,
}

impl TlsServer {
    pub fn start(cert: &Cert) -> TlsServer {
        let mut child = Command::new(python())
            .args(["-c", SCRIPT, "server"])
            .arg(cert.cert())
            .arg(cert.key())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a Python TLS server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the server's stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server's port");
        let port: u16 = line.trim().parse().expect("a port number");
        TlsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python TLS client's handshake through `addr` with server name `sni`
/// (none if `None`) and ALPN `alpn`, trusting `cas`: `cn=NAME alpn=PROTO`
/// of the server it reached, or its error.
pub fn handshake(
    addr: SocketAddr,
    sni: Option<&str>,
    alpn: Option<&str>,
    cas: &[&Cert],
) -> Result<String, String> {
    let output = Command::new(python())
        .args(["-c", SCRIPT, "client", "127.0.0.1"])
        .arg(addr.port().to_string())
        .arg(sni.unwrap_or("-"))
        .arg(alpn.unwrap_or("-"))
        .args(cas.iter().map(|ca| ca.cert()))
        .output()
        .expect("run the Python TLS client");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

/// `openssl s_client -servername NAME` through `addr`: the subject line
/// of the certificate it was shown.
pub fn s_client_subject(addr: SocketAddr, name: &str) -> String {
    let openssl = require(&["openssl"], "version", "openssl");
    let output = Command::new(openssl)
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|line| line.starts_with("subject="))
        .unwrap_or_default()
        .to_string()
}

/// A fixture of src/inspect/fixtures: a real client's first bytes.
pub fn captured_hello(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/inspect/fixtures")
        .join(file);
    let hex: String = std::fs::read_to_string(path)
        .expect("read the fixture")
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A ClientHello naming `server_name`, with a padding extension of
/// `padding` bytes, cut into handshake records of at most `record` bytes.
pub fn built_hello(server_name: &str, padding: usize, record: usize) -> Vec<u8> {
    let mut extensions = Vec::new();
    let name = server_name.as_bytes();
    let mut sni = Vec::new();
    sni.extend((name.len() as u16 + 3).to_be_bytes());
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    push_extension(&mut extensions, 0, &sni);
    push_extension(&mut extensions, 21, &vec![0; padding]);
    let mut body = vec![3, 3];
    body.extend([7; 32]); // random
    body.push(0); // session id
    body.extend([0, 2, 0x13, 0x01]); // one cipher suite
    body.extend([1, 0]); // null compression
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut message = vec![1];
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    let mut stream = Vec::new();
    for fragment in message.chunks(record) {
        stream.extend([22, 3, 1]);
        stream.extend((fragment.len() as u16).to_be_bytes());
        stream.extend(fragment);
    }
    stream
}

fn push_extension(into: &mut Vec<u8>, kind: u16, data: &[u8]) {
    into.extend(kind.to_be_bytes());
    into.extend((data.len() as u16).to_be_bytes());
    into.extend(data);
}

/// A `[[route]]` on the address every test route shares (`127.0.0.1:0`:
/// one socket, since routes with `match` tables list it), to `target`,
/// with `options` after it (a `match` table last, if any).
pub fn shared_route(name: &str, target: SocketAddr, options: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\ntargets = \"{target}\"\n{options}\n"
    )
}
