//! HAProxy from the OS packages as a real peer: a generated config in a
//! temporary directory, run in the foreground, killed when dropped.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::common::{listener, wait_until, DEADLINE};

pub struct Haproxy {
    child: Child,
    dir: PathBuf,
    /// The frontend's address.
    pub addr: SocketAddr,
}

/// The haproxy binary; a test that calls this is ignored where there is
/// none (`has_haproxy`, see `tools.rs`), and fails if run anyway.
pub fn binary() -> String {
    crate::common::tools::require(
        &["haproxy", "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"],
        "-v",
        "haproxy",
    )
}

impl Haproxy {
    /// Runs HAProxy with one `mode tcp` frontend on a free loopback port,
    /// its `bind` line ending in `bind_options`, and one backend server
    /// line `server_line`.
    pub fn start(binary: &str, bind_options: &str, server_line: &str) -> Haproxy {
        // A port picked by binding port 0 may be taken again before HAProxy
        // binds it; then HAProxy exits, and another port is tried.
        for attempt in 0..5 {
            let port = {
                let (probe, addr) = listener();
                drop(probe);
                addr.port()
            };
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let dir = std::env::temp_dir().join(format!(
                "tcpipe-haproxy-{}-{port}-{attempt}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let config = dir.join("haproxy.cfg");
            std::fs::write(
                &config,
                format!(
                    "global\n\
                     \x20   maxconn 100\n\
                     defaults\n\
                     \x20   mode tcp\n\
                     \x20   timeout connect 5s\n\
                     \x20   timeout client 30s\n\
                     \x20   timeout server 30s\n\
                     frontend fe\n\
                     \x20   bind {addr} {bind_options}\n\
                     \x20   default_backend be\n\
                     backend be\n\
                     \x20   {server_line}\n"
                ),
            )
            .expect("write haproxy.cfg");
            let mut child = Command::new(binary)
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn haproxy");
            let mut exited = false;
            let up = wait_until(DEADLINE, || {
                exited = child.try_wait().ok().flatten().is_some();
                exited || is_listening(port)
            });
            if up && !exited {
                return Haproxy { child, dir, addr };
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("haproxy did not start");
    }
}

/// Whether a socket listens on 127.0.0.1:`port`, from /proc/net/tcp (a
/// test connect would be forwarded like a client).
fn is_listening(port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|table| {
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        })
    })
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
