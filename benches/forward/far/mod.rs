//! A target one real network round trip away, so that a TCP connect to it
//! costs what it costs on a network: the SYN and the SYN/ACK each wait out
//! the link's latency, in the kernel, before connect() returns.
//!
//! On loopback a handshake takes microseconds, and a slow accept() adds
//! nothing (the kernel completes the handshake before accept). The kernel's
//! own delay line (`tc qdisc netem`) may be missing (it is on this
//! project's VM) and would act on a whole interface. So the target runs in
//! a network namespace of its own, behind a wire that this process carries
//! frame by frame with a fixed one-way delay (see `topology` and `wire`);
//! loopback and everything else on the machine are untouched. The server
//! in there is the harness's one-shot target, in a child process: this
//! binary again, started with `SERVE_FLAG` under `ip netns exec`.
//!
//! Needs root and iproute2; without them the workload reports why.

mod topology;
mod wire;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::targets::{EventServer, Reply};
use topology::{Topology, FAR_IP, TARGET_NS};
use wire::Wire;

/// Latency of the wire each way: a round trip of 1 ms, as between two
/// availability zones of a cloud region.
pub const ONE_WAY_DELAY: Duration = Duration::from_micros(500);
/// Makes this binary a target server (in the far namespace).
pub const SERVE_FLAG: &str = "--serve-far-target";
/// Longest wait for the path to carry a first connection.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The far target, up and proven reachable. Fields drop in order: the
/// server, then the wire, then the network.
pub struct FarTarget {
    server: ServerProcess,
    wire: Wire,
    _topology: Topology,
    /// Where clients and forwarders connect.
    pub addr: SocketAddr,
}

impl FarTarget {
    pub fn start() -> Result<FarTarget, String> {
        let fail = |e: String| format!("far target: {e}");
        let topology = Topology::create().map_err(fail)?;
        let wire = Wire::start(topology.open_taps().map_err(fail)?, ONE_WAY_DELAY)
            .map_err(|e| fail(format!("wire: {e}")))?;
        let (mut server, addr) = ServerProcess::start().map_err(fail)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while let Err(e) = reach(addr) {
            server.ensure_alive().map_err(fail)?;
            if Instant::now() > deadline {
                return Err(fail(format!("{addr} unreachable: {e}")));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(FarTarget {
            server,
            wire,
            _topology: topology,
            addr,
        })
    }

    /// An error if the figures measured so far cannot be trusted: the
    /// server ended, or the wire lost frames (retransmissions).
    pub fn check(&mut self) -> Result<(), String> {
        self.server.ensure_alive()?;
        match self.wire.lost() {
            0 => Ok(()),
            lost => Err(format!(
                "the far target's wire lost {lost} frames: TCP retransmitted"
            )),
        }
    }
}

/// One connection, closed by us at once: done when the server's close
/// comes back, i.e. both directions carry.
fn reach(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.shutdown(Shutdown::Write)?;
    stream.read_to_end(&mut Vec::new())?;
    Ok(())
}

/// The target server process in the far namespace. It runs until its stdin
/// closes, so it never outlives this process, however that ends.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ServerProcess {
    /// Starts it; returns it and the address it serves on.
    fn start() -> Result<(ServerProcess, SocketAddr), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", TARGET_NS])
            .arg(exe)
            .args([SERVE_FLAG, FAR_IP])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run `ip netns exec`: {e}"))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let mut server = ServerProcess { child, stdin };
        match line.trim().parse() {
            Ok(addr) => Ok((server, addr)),
            Err(_) => {
                server.ensure_alive()?;
                Err(format!("the server announced '{}'", line.trim()))
            }
        }
    }

    fn ensure_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("the far target server exited ({status})")),
            Err(e) => Err(format!("cannot check on the far target server: {e}")),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The far target server's life, in the child: serve on `args[0]`, an IP
/// address of the namespace it runs in, say where on stdout, and stop when
/// stdin closes.
pub fn serve(args: &[String]) -> ExitCode {
    let Some(ip) = args.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
        eprintln!("{SERVE_FLAG} needs an IP address");
        return ExitCode::from(2);
    };
    let server = match EventServer::start_on(ip, Reply::OneShot) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("far target server: cannot listen on {ip}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = io::stdout();
    if writeln!(stdout, "{}", server.addr())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    let _ = io::stdin().read_to_end(&mut Vec::new());
    ExitCode::SUCCESS
}
