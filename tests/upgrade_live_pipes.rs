//! 50 live pipes in every stage across a live upgrade of the binary:
//! slow readers with rings full and reading paused at high water, bulk
//! spliced through kernel pipes, half-closed either way, connecting to a
//! target that has not accepted yet, awaiting the rest of a PROXY header.
//! Every byte arrives exactly once both ways (checksums), nobody sees a
//! reset or an early FIN, the old process exits, and the pipes' ids go
//! on. And the same when the new process dies before it confirms: the
//! old one resumes every pipe, nothing lost.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::config::{route, ConfigFile};
use common::faults::BlackHole;
use common::{binary, Tcpipe, DEADLINE};
use socket2::SockRef;

/// Bytes each bulk pipe sends: far more than the kernel's buffers and the
/// ring hold while nobody reads, so its source stalls at high water.
const BULK: u64 = 8 << 20;
const SMALL: u64 = 3000;

/// The bytes a stream of `seed` sends, position by position.
fn byte(seed: u64, at: u64) -> u8 {
    (at.wrapping_mul(0x9E37_79B9)
        .wrapping_add(seed.wrapping_mul(0x85EB_CA6B))
        >> 7) as u8
}

/// FNV-1a, over what one side received.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn expected_hash(prefix: &[u8], seed: u64, len: u64) -> u64 {
    let bytes: Vec<u8> = (0..len).map(|i| byte(seed, i)).collect();
    fnv(fnv(FNV_START, prefix), &bytes)
}

/// One end the test holds: a prefix, then `len` bytes of `seed`, then
/// (once `fin_after`) a FIN; and what it received, as a count and a hash.
struct End {
    stream: TcpStream,
    prefix: Vec<u8>,
    prefix_sent: usize,
    seed: u64,
    len: u64,
    sent: u64,
    fin_after: bool,
    fin_sent: bool,
    reading: bool,
    got: u64,
    hash: u64,
    eof: bool,
    error: Option<std::io::Error>,
    /// When it last sent a byte.
    progressed: Instant,
}

impl End {
    fn new(stream: TcpStream, seed: u64, len: u64) -> End {
        stream.set_nonblocking(true).unwrap();
        End {
            stream,
            prefix: Vec::new(),
            prefix_sent: 0,
            seed,
            len,
            sent: 0,
            fin_after: false,
            fin_sent: false,
            reading: true,
            got: 0,
            hash: FNV_START,
            eof: false,
            error: None,
            progressed: Instant::now(),
        }
    }

    fn step(&mut self) {
        while self.prefix_sent < self.prefix.len() && self.error.is_none() {
            match self.stream.write(&self.prefix[self.prefix_sent..]) {
                Ok(n) => self.prefix_sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => self.error = Some(e),
            }
        }
        let mut chunk = [0u8; 65536];
        while self.sent < self.len && self.error.is_none() {
            let n = (self.len - self.sent).min(chunk.len() as u64) as usize;
            for (i, b) in chunk[..n].iter_mut().enumerate() {
                *b = byte(self.seed, self.sent + i as u64);
            }
            match self.stream.write(&chunk[..n]) {
                Ok(n) => {
                    self.sent += n as u64;
                    self.progressed = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => self.error = Some(e),
            }
        }
        if self.fin_after && !self.fin_sent && self.sent == self.len {
            self.fin_sent = self.stream.shutdown(Shutdown::Write).is_ok();
        }
        while self.reading && !self.eof && self.error.is_none() {
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.got += n as u64;
                    self.hash = fnv(self.hash, &chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// Stalled: none of its bytes taken for a while (the kernel's buffers
    /// and the forwarder's ring are full), or all taken long enough ago.
    fn stalled(&self) -> bool {
        self.progressed.elapsed() > Duration::from_millis(300)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// The target sends bulk, the client reads nothing yet.
    SlowReader,
    /// The client sends bulk, the target reads nothing yet.
    SlowTarget,
    /// The same through kernel pipes (`splice always`).
    Spliced,
    /// The client sent its bytes and FIN; the target answers later.
    ClientFin,
    /// The target sent its bytes and FIN; the client answers later.
    TargetFin,
    /// Its target has not accepted yet; its early bytes wait.
    Connecting,
    /// Half its PROXY header sent.
    AwaitingHeader,
    /// On an address two routes share: its first bytes, which choose its
    /// route, not all sent yet.
    Inspected,
}

struct Pipe {
    stage: Stage,
    client: End,
    target: Option<End>,
    /// What the client sends after the header and the target answers, for
    /// a pipe whose target is accepted later.
    later: (u64, u64),
    /// The target gets the client's prefix too (first bytes that were
    /// inspected, not a PROXY header).
    target_gets_prefix: bool,
}

const STAGES: [(Stage, usize); 8] = [
    (Stage::SlowReader, 8),
    (Stage::SlowTarget, 8),
    (Stage::Spliced, 8),
    (Stage::ClientFin, 6),
    (Stage::TargetFin, 6),
    (Stage::Connecting, 5),
    (Stage::AwaitingHeader, 5),
    (Stage::Inspected, 4),
];

/// Moves every end's bytes until `done` holds.
fn until(pipes: &mut [Pipe], what: &str, mut done: impl FnMut(&[Pipe]) -> bool) {
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        for pipe in pipes.iter_mut() {
            pipe.client.step();
            if let Some(target) = &mut pipe.target {
                target.step();
            }
        }
        if done(pipes) {
            return;
        }
        if Instant::now() >= deadline {
            for (i, pipe) in pipes.iter().enumerate() {
                let t = pipe.target.as_ref();
                eprintln!(
                    "{i} {:?}: client sent {}/{} got {} eof {} {:?}; target sent {:?} got {:?} eof {:?}",
                    pipe.stage,
                    pipe.client.sent,
                    pipe.client.len,
                    pipe.client.got,
                    pipe.client.eof,
                    pipe.client.error,
                    t.map(|t| t.sent),
                    t.map(|t| t.got),
                    t.map(|t| t.eof),
                );
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn accept(listener: &TcpListener) -> TcpStream {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the forwarder never connected");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn small_receive_buffer(stream: &TcpStream) {
    SockRef::from(stream).set_recv_buffer_size(4096).unwrap();
}

/// Reads the bulk quickly once it is read at all.
fn large_receive_buffer(stream: &TcpStream) {
    SockRef::from(stream).set_recv_buffer_size(1 << 20).unwrap();
}

/// What the pipes connect to: the test's listeners, and the port two
/// routes share.
struct Targets {
    plain: TcpListener,
    /// Where inspected clients go.
    inspected: TcpListener,
    slow: BlackHole,
    shared_port: u16,
}

impl Targets {
    fn new() -> Targets {
        let listener = || {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            listener
        };
        let shared_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Targets {
            plain: listener(),
            inspected: listener(),
            slow: BlackHole::new(),
            shared_port,
        }
    }

    fn config(&self, global: &str) -> ConfigFile {
        let shared = |name: &str, target: &TcpListener, matching: &str| {
            format!(
                "[[route]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{}\"\ntargets = [\"{}\"]\n{matching}\n",
                self.shared_port,
                target.local_addr().unwrap()
            )
        };
        let mut text = config(self.plain.local_addr().unwrap(), self.slow.addr, global);
        text.push_str(&shared("shared", &self.plain, ""));
        text.push_str(&shared(
            "shared-ssh",
            &self.inspected,
            "match.protocol = \"ssh\"\ninspect-timeout = \"120s\"",
        ));
        ConfigFile::new(&text)
    }
}

/// The config: four routes to the test's listeners.
fn config(target: SocketAddr, slow: SocketAddr, global: &str) -> String {
    let small = "buffer-size = \"4k\"\nlow-water = \"2k\"\nhalf-close-timeout = \"120s\"\n";
    format!(
        "[global]\n{global}\n{}{}{}{}",
        route("plain", &[target], small),
        route("spliced", &[target], &format!("{small}splice = \"always\"")),
        route(
            "slow",
            &[slow],
            &format!("{small}connect-timeout = \"120s\"")
        ),
        route(
            "proxied",
            &[target],
            &format!("{small}accept-proxy = true\nproxy-timeout = \"120s\"")
        ),
    )
}

/// 50 pipes in every stage, through `tcpipe`.
fn open_pipes(tcpipe: &Tcpipe, targets: &Targets) -> Vec<Pipe> {
    let mut pipes = Vec::new();
    let mut seed = 0;
    for (stage, count) in STAGES {
        for _ in 0..count {
            seed += 2;
            let route = match stage {
                Stage::Spliced => "spliced",
                Stage::Connecting => "slow",
                Stage::AwaitingHeader => "proxied",
                Stage::Inspected => "shared-ssh",
                _ => "plain",
            };
            let client = TcpStream::connect(tcpipe.route_addr(route)).unwrap();
            let (client_len, target_len) = match stage {
                Stage::SlowReader => (0, BULK),
                Stage::SlowTarget | Stage::Spliced => (BULK, 0),
                _ => (SMALL, SMALL),
            };
            if stage == Stage::SlowReader {
                small_receive_buffer(&client);
            }
            // The pipes accepted later all carry the same bytes: whichever
            // connection the target accepts first, each is checked whole.
            let (client_seed, target_seed) = match stage {
                Stage::Connecting => (1001, 1002),
                Stage::AwaitingHeader => (2001, 2002),
                Stage::Inspected => (3001, 3002),
                _ => (seed, seed + 1),
            };
            let mut client = End::new(client, client_seed, client_len);
            let target = match stage {
                Stage::Connecting => None,
                Stage::AwaitingHeader => {
                    client.prefix = b"PROXY TCP4 192.0.2.1 ".to_vec();
                    client.len = 0;
                    None
                }
                Stage::Inspected => {
                    // Could still be SSH: the route is not chosen yet.
                    client.prefix = b"SS".to_vec();
                    client.len = 0;
                    None
                }
                _ => {
                    let stream = accept(&targets.plain);
                    // Not a spliced pipe's target: a receive buffer shrunk
                    // under what it already offered drops a kernel pipe's
                    // larger bursts, and the sender then probes a closed
                    // window for longer than the test waits. A buffer that
                    // reads nothing stops growing, so the bulk still stalls.
                    if stage == Stage::SlowTarget {
                        small_receive_buffer(&stream);
                    }
                    Some(End::new(stream, target_seed, target_len))
                }
            };
            let mut pipe = Pipe {
                stage,
                client,
                target,
                later: (client_len, target_len),
                target_gets_prefix: stage == Stage::Inspected,
            };
            match stage {
                Stage::SlowReader => pipe.client.reading = false,
                Stage::SlowTarget | Stage::Spliced => pipe.target.as_mut().unwrap().reading = false,
                Stage::ClientFin => {
                    pipe.client.fin_after = true;
                    pipe.target.as_mut().unwrap().len = 0;
                }
                Stage::TargetFin => {
                    let target = pipe.target.as_mut().unwrap();
                    target.fin_after = true;
                    pipe.client.len = 0;
                }
                _ => {}
            }
            pipes.push(pipe);
        }
    }
    until(&mut pipes, "every stage", |pipes| {
        pipes.iter().all(|pipe| {
            let target = pipe.target.as_ref();
            match pipe.stage {
                Stage::SlowReader => target.is_some_and(End::stalled),
                Stage::SlowTarget | Stage::Spliced => pipe.client.stalled(),
                Stage::ClientFin => target.is_some_and(|t| t.eof && t.got == SMALL),
                Stage::TargetFin => pipe.client.eof && pipe.client.got == SMALL,
                Stage::Connecting => pipe.client.sent == SMALL,
                Stage::AwaitingHeader | Stage::Inspected => {
                    pipe.client.prefix_sent == pipe.client.prefix.len()
                }
            }
        })
    });
    pipes
}

/// After the upgrade (or the failed one): every reader reads, the late
/// targets accept, every pipe ends with a FIN each way; then every byte is
/// checked.
fn finish(pipes: &mut [Pipe], targets: Targets) {
    for pipe in pipes.iter_mut() {
        pipe.client.reading = true;
        large_receive_buffer(&pipe.client.stream);
        if let Some(target) = &pipe.target {
            large_receive_buffer(&target.stream);
        }
        let (client_len, target_len) = pipe.later;
        match pipe.stage {
            Stage::ClientFin => pipe.target.as_mut().unwrap().len = target_len,
            Stage::TargetFin => pipe.client.len = client_len,
            Stage::AwaitingHeader => {
                pipe.client
                    .prefix
                    .extend_from_slice(b"198.51.100.1 1111 2222\r\n");
                pipe.client.len = client_len;
            }
            Stage::Inspected => {
                pipe.client.prefix.extend_from_slice(b"H-2.0-test\r\n");
                pipe.client.len = client_len;
            }
            _ => {}
        }
        pipe.client.fin_after = true;
        if let Some(target) = &mut pipe.target {
            target.reading = true;
            target.fin_after = true;
        }
    }
    let slow = targets.slow.open_up();
    // Room for every pipe's connect at once: a full queue resets the
    // connects that syncookies let through.
    SockRef::from(&slow).listen(128).unwrap();
    slow.set_nonblocking(true).unwrap();
    // The late targets accept as their connections come.
    let late: Vec<usize> = (0..pipes.len())
        .filter(|&i| pipes[i].target.is_none())
        .collect();
    for i in late {
        let stage = pipes[i].stage;
        let (listener, seed) = match stage {
            Stage::Connecting => (&slow, 1002),
            Stage::Inspected => (&targets.inspected, 3002),
            _ => (&targets.plain, 2002),
        };
        let (_, target_len) = pipes[i].later;
        let deadline = Instant::now() + DEADLINE;
        let stream = loop {
            until(pipes, "a step", |_| true);
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no late connect for {stage:?}");
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        let mut target = End::new(stream, seed, target_len);
        target.fin_after = true;
        pipes[i].target = Some(target);
    }
    until(pipes, "every pipe to end", |pipes| {
        pipes.iter().all(|pipe| {
            let target = pipe.target.as_ref().unwrap();
            (pipe.client.eof || pipe.client.error.is_some())
                && (target.eof || target.error.is_some())
        })
    });
    for (i, pipe) in pipes.iter().enumerate() {
        let target = pipe.target.as_ref().unwrap();
        let what = format!("pipe {i} ({:?})", pipe.stage);
        assert!(
            pipe.client.error.is_none(),
            "{what}: client saw {:?}",
            pipe.client.error
        );
        assert!(
            target.error.is_none(),
            "{what}: target saw {:?}",
            target.error
        );
        let prefix: &[u8] = if pipe.target_gets_prefix {
            &pipe.client.prefix
        } else {
            &[]
        };
        let toward_target = prefix.len() as u64 + pipe.client.len;
        assert_eq!(target.got, toward_target, "{what}: bytes toward the target");
        assert_eq!(
            pipe.client.got, target.len,
            "{what}: bytes toward the client"
        );
        assert_eq!(
            target.hash,
            expected_hash(prefix, pipe.client.seed, pipe.client.len),
            "{what}: the target's bytes differ"
        );
        assert_eq!(
            pipe.client.hash,
            expected_hash(&[], target.seed, target.len),
            "{what}: the client's bytes differ"
        );
    }
}

/// Each pipe's end is logged once, cleanly, under the id it had.
fn assert_each_closed_once_cleanly(tcpipe: &Tcpipe, ids: std::ops::RangeInclusive<u64>) {
    let mut closes: Vec<(u64, String)> = Vec::new();
    common::wait_until(DEADLINE, || {
        closes = tcpipe
            .access_log_closes()
            .iter()
            .filter_map(|f| Some((f.get("pipe")?.parse().ok()?, f.get("end")?.clone())))
            .collect();
        closes.len() >= ids.clone().count()
    });
    let mut seen: Vec<u64> = closes.iter().map(|(id, _)| *id).collect();
    seen.sort_unstable();
    assert_eq!(seen, ids.collect::<Vec<_>>(), "one close line per pipe");
    for (id, end) in &closes {
        assert_eq!(end, "clean", "pipe {id} ended {end}");
    }
}

#[test]
fn fifty_pipes_in_every_stage_cross_an_upgrade_with_every_byte_once() {
    let targets = Targets::new();
    let config = targets.config("");
    let mut tcpipe = Tcpipe::start_config(&config);
    let mut pipes = open_pipes(&tcpipe, &targets);
    assert_eq!(pipes.len(), 50);
    assert!(tcpipe.access_log_closes().is_empty());

    let successor = tcpipe.upgrade();
    assert!(successor.is_alive());
    // The old process handed its pipes over: it logged none as closed.
    assert!(
        tcpipe.access_log_closes().is_empty(),
        "the old process closed pipes"
    );

    let plain = targets.plain.try_clone().unwrap();
    finish(&mut pipes, targets);
    assert_each_closed_once_cleanly(&tcpipe, 1..=50);
    // The new process's own ids go on after the adopted ones.
    let addr = successor.ready.route_addrs("plain")[0];
    let mut next = TcpStream::connect(addr).unwrap();
    let mut upstream = accept(&plain);
    next.shutdown(Shutdown::Write).unwrap();
    upstream.set_nonblocking(false).unwrap();
    assert_eq!(upstream.read(&mut [0u8; 1]).unwrap(), 0);
    upstream.shutdown(Shutdown::Write).unwrap();
    next.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(next.read(&mut [0u8; 1]).unwrap(), 0);
    assert_each_closed_once_cleanly(&tcpipe, 1..=51);
}

#[test]
fn fifty_pipes_in_every_stage_go_on_in_the_old_process_when_the_new_one_dies() {
    let targets = Targets::new();
    // The new process aborts with every connection received and
    // registered, right before it would confirm.
    let dir = std::env::temp_dir().join(format!("tcpipe-live-pipes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("aborts");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nulimit -c 0\nTCPIPE_TEST_ABORT_BEFORE_CONFIRM=1 exec {} \"$@\"\n",
            binary()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let global = format!("upgrade-binary = \"{}\"", script.display());
    let config = targets.config(&global);
    let tcpipe = Tcpipe::start_config(&config);
    let mut pipes = open_pipes(&tcpipe, &targets);

    let status = tcpipe.failed_upgrade();
    assert!(status.contains("before taking over"), "{status}");

    finish(&mut pipes, targets);
    assert_each_closed_once_cleanly(&tcpipe, 1..=50);
    let _ = std::fs::remove_dir_all(&dir);
}
