//! A live upgrade (SIGUSR2) hands every listening socket to the new
//! process: a client connecting all along is never refused nor reset and
//! every echo comes back; the new process says `READY=1` with its own
//! `MAINPID=`, the old one exits 0, and two upgrades in a row leave one
//! process holding what the first held, no descriptor more.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{connect, echo_server, wait_until, Tcpipe, DEADLINE};

/// Connects to `addr` over and over, each time sending a line and reading
/// its echo, until stopped; counts the round trips and keeps every failure.
struct ConnectLoop {
    done: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ConnectLoop {
    fn start(addr: SocketAddr) -> ConnectLoop {
        let done = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, f, s) = (Arc::clone(&done), Arc::clone(&failures), Arc::clone(&stop));
        let thread = thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                match round_trip(addr, n) {
                    Ok(()) => {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => f.lock().unwrap().push(format!("connect {n}: {e}")),
                }
            }
        });
        ConnectLoop {
            done,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits for `more` round trips beyond now.
    fn wait_for_more(&self, more: usize) {
        let goal = self.count() + more;
        assert!(
            wait_until(DEADLINE, || self.count() >= goal),
            "the loop stalled at {} round trips; failures: {:?}",
            self.count(),
            self.failures.lock().unwrap()
        );
    }

    /// Stops it; every failure it met.
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.failures.lock().unwrap().clone()
    }
}

fn round_trip(addr: SocketAddr, n: u64) -> std::io::Result<()> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, DEADLINE)?;
    stream.set_read_timeout(Some(DEADLINE))?;
    let line = format!("round trip {n}\n");
    stream.write_all(line.as_bytes())?;
    let mut echoed = vec![0u8; line.len()];
    stream.read_exact(&mut echoed)?;
    if echoed != line.as_bytes() {
        return Err(std::io::Error::other("a different echo"));
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    Ok(())
}

fn echo_once(addr: SocketAddr) {
    let mut stream = connect(addr);
    stream.write_all(b"still here").unwrap();
    let mut echoed = [0u8; 10];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"still here");
}

#[test]
fn a_steady_connect_loop_through_an_upgrade_is_never_refused_nor_reset() {
    let target = echo_server();
    let mut tcpipe = Tcpipe::start(target, &["--metrics", "127.0.0.1:0"]);
    let (addr, old) = (tcpipe.addr, tcpipe.pid());
    let connecting = ConnectLoop::start(addr);
    connecting.wait_for_more(50);

    let successor = tcpipe.upgrade();

    connecting.wait_for_more(200);
    let failures = connecting.finish();
    assert!(failures.is_empty(), "failed round trips: {failures:?}");
    assert_ne!(successor.pid, old);
    assert!(successor.is_alive());
    // The same address, now listened on by the new process.
    assert_eq!(successor.ready.listening(), [("default".to_string(), addr)]);
    let metrics = successor.ready.metrics().expect("X_TCPIPE_METRICS");
    let scrape = common::scrape::Scrape::parse(&common::scrape::http_get(metrics, "/metrics").body);
    assert_eq!(
        scrape.get("tcpipe_upgrades_total", &[("result", "ok")]),
        1.0
    );
}

#[test]
fn two_upgrades_in_a_row_leave_one_process_that_keeps_nothing_of_the_handover() {
    let target = echo_server();
    let mut tcpipe = Tcpipe::start(target, &[]);
    let addr = tcpipe.addr;
    echo_once(addr);

    let first = tcpipe.upgrade();
    echo_once(addr);
    assert_eq!(handover_sockets(first.pid), 0, "{:?}", fds(first.pid));
    let second = tcpipe.upgrade_pid(first.pid);
    assert!(
        first.wait_gone(DEADLINE),
        "the first successor did not exit after handing over"
    );
    assert_ne!(second.pid, first.pid);
    echo_once(addr);
    assert_eq!(second.ready.listening(), [("default".to_string(), addr)]);
    // Neither the handover socket nor a stale copy of a listener is kept.
    assert_eq!(handover_sockets(second.pid), 0, "{:?}", fds(second.pid));
    assert_eq!(listening_sockets(second.pid), 1);
}

#[test]
fn an_upgrade_with_two_workers_hands_over_every_worker_s_listener() {
    let target = echo_server();
    let mut tcpipe = Tcpipe::start(target, &["--workers", "2"]);
    let addr = tcpipe.addr;
    let connecting = ConnectLoop::start(addr);
    connecting.wait_for_more(50);

    let successor = tcpipe.upgrade();

    connecting.wait_for_more(200);
    let failures = connecting.finish();
    assert!(failures.is_empty(), "failed round trips: {failures:?}");
    assert!(
        successor.ready.status().contains("2 workers"),
        "{:?}",
        successor.ready
    );
    // Each worker listens on a socket of its own (SO_REUSEPORT), and each
    // was handed over: both accept in the new process.
    assert_eq!(listening_sockets(successor.pid), 2);
}

fn fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect()
}

/// The socket inodes among the process's descriptors.
fn socket_inodes(pid: u32) -> Vec<String> {
    fds(pid)
        .iter()
        .filter_map(|fd| Some(fd.strip_prefix("socket:[")?.strip_suffix(']')?.to_string()))
        .collect()
}

/// The process's Unix sockets of type `SOCK_SEQPACKET` (05 in
/// /proc/net/unix): the handover socket is the only one tcpipe makes.
fn handover_sockets(pid: u32) -> usize {
    let inodes = socket_inodes(pid);
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).expect("/proc/net/unix");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(4) == Some(&"0005")
                && fields.get(6).is_some_and(|i| inodes.iter().any(|n| n == i))
        })
        .count()
}

/// The process's TCP sockets in LISTEN state (from /proc/net/tcp, by inode).
fn listening_sockets(pid: u32) -> usize {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("/proc/net/tcp");
    let mut listening: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // st 0A is LISTEN; field 9 is the inode.
            (fields.get(3) == Some(&"0A")).then(|| fields.get(9).copied())?
        })
        .filter(|inode| inodes.iter().any(|i| i == inode))
        .collect();
    listening.sort();
    listening.dedup();
    listening.len()
}

#[test]
fn fewer_or_more_workers_after_an_upgrade_keep_every_handed_socket_listening() {
    let target = echo_server();
    let config = common::config::ConfigFile::new(&format!(
        "[global]\nworkers = 2\n{}",
        common::config::route("web", &[target], "")
    ));
    let mut tcpipe = Tcpipe::start_config(&config);
    let addr = tcpipe.addr;
    let connecting = ConnectLoop::start(addr);
    connecting.wait_for_more(50);

    // One worker now: the second worker's socket (and whatever is queued
    // in it) is still listened on, beside the first.
    config.write(&format!(
        "[global]\nworkers = 1\n{}",
        common::config::route("web", &[target], "")
    ));
    let one = tcpipe.upgrade();
    connecting.wait_for_more(100);
    assert!(one.ready.status().contains("1 worker,"), "{:?}", one.ready);
    assert_eq!(one.ready.route_addrs("web"), [addr]);
    assert_eq!(listening_sockets(one.pid), 2);
    // A reload keeps both.
    let seen = tcpipe.readies();
    one.signal("HUP");
    wait_until(DEADLINE, || tcpipe.readies() > seen);
    connecting.wait_for_more(50);
    assert_eq!(listening_sockets(one.pid), 2);

    // Three workers: each socket goes on listening.
    config.write(&format!(
        "[global]\nworkers = 3\n{}",
        common::config::route("web", &[target], "")
    ));
    let three = tcpipe.upgrade_pid(one.pid);
    assert!(one.wait_gone(DEADLINE));
    connecting.wait_for_more(100);
    let failures = connecting.finish();
    assert!(failures.is_empty(), "failed round trips: {failures:?}");
    assert!(
        three.ready.status().contains("3 workers"),
        "{:?}",
        three.ready
    );
    assert_eq!(listening_sockets(three.pid), 2);
}
