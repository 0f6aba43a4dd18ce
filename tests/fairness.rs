//! Fairness: a pipe forwarding bulk data flat out must not hold up a small
//! request/response pipe on the same forwarder.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const ROUND_TRIPS: usize = 300;
/// Pause between round trips, so that they spread over a second or so of
/// bulk transfer rather than measuring one burst.
const PING_INTERVAL: Duration = Duration::from_millis(1);
const MAX_P99: Duration = Duration::from_millis(50);
/// Bulk bytes that must arrive during the pings, proof it ran flat out.
const MIN_BULK_DURING_PINGS: u64 = 32 << 20;

const BULK: u8 = b'B';
const PING: u8 = b'P';

/// A target that reads the first byte of each connection: after `BULK` it
/// discards everything (counting it in `sunk`), after `PING` it echoes.
/// A sink rather than an echo for the bulk keeps this test's own threads
/// from crowding the forwarder off a small machine's cores.
fn sink_or_echo_target(sunk: Arc<AtomicU64>) -> SocketAddr {
    let (listener, addr) = listener();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let sunk = Arc::clone(&sunk);
            thread::spawn(move || {
                let mut role = [0u8; 1];
                if stream.read_exact(&mut role).is_err() {
                    return;
                }
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if role[0] == BULK {
                        sunk.fetch_add(n as u64, Ordering::Relaxed);
                    } else if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A client writing to the sink as fast as it can until stopped.
struct Bulk {
    stop: Arc<AtomicBool>,
    writer: thread::JoinHandle<()>,
}

impl Bulk {
    fn start(tcpipe: &Tcpipe) -> Bulk {
        let stop = Arc::new(AtomicBool::new(false));
        let mut stream = tcpipe.connect();
        stream.write_all(&[BULK]).unwrap();
        let writer = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let chunk = Rng::new(1).bytes(256 * 1024);
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&chunk).expect("bulk write");
                }
            })
        };
        Bulk { stop, writer }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.join().expect("bulk client");
    }
}

/// One ping-pong round trip of an 8-byte counter.
fn round_trip(client: &mut TcpStream, i: u64) -> Duration {
    let mut reply = [0u8; 8];
    let started = Instant::now();
    client.write_all(&i.to_le_bytes()).expect("ping");
    client.read_exact(&mut reply).expect("pong");
    let rtt = started.elapsed();
    assert_eq!(u64::from_le_bytes(reply), i, "pong {i} came back altered");
    rtt
}

fn ping_client(addr: SocketAddr) -> TcpStream {
    let mut client = connect(addr);
    client.write_all(&[PING]).unwrap();
    client
}

/// Round trip times of a few hundred pings.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut rtts: Vec<Duration>) -> Latencies {
        rtts.sort();
        Latencies(rtts)
    }

    fn percentile(&self, p: usize) -> Duration {
        self.0[(self.0.len() * p / 100).min(self.0.len() - 1)]
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:?}, p99 {:?}, max {:?}",
            self.percentile(50),
            self.percentile(99),
            self.percentile(100)
        )
    }
}

#[test]
fn a_ping_pong_pipe_keeps_round_trips_under_50ms_beside_a_bulk_pipe() {
    let sunk = Arc::new(AtomicU64::new(0));
    let target = sink_or_echo_target(Arc::clone(&sunk));
    let tcpipe = Tcpipe::start(target, &[]);
    let mut via_tcpipe = ping_client(tcpipe.addr);
    // The same pings straight to the target, interleaved: if the machine
    // itself is overloaded, the failure message shows it.
    let mut direct = ping_client(target);
    let bulk = Bulk::start(&tcpipe);
    let sunk_so_far = || sunk.load(Ordering::Relaxed);
    assert!(
        wait_until(DEADLINE, || sunk_so_far() >= 8 << 20),
        "the bulk pipe never got going"
    );

    let bulk_before = sunk_so_far();
    let (through, control): (Vec<_>, Vec<_>) = (0..ROUND_TRIPS as u64)
        .map(|i| {
            thread::sleep(PING_INTERVAL);
            (round_trip(&mut via_tcpipe, i), round_trip(&mut direct, i))
        })
        .unzip();
    let bulk_during = sunk_so_far() - bulk_before;
    bulk.stop();

    let (through, control) = (Latencies::new(through), Latencies::new(control));
    assert!(
        bulk_during >= MIN_BULK_DURING_PINGS,
        "only {} MiB of bulk data moved during the pings: the test proves nothing",
        bulk_during >> 20
    );
    assert!(
        through.percentile(99) <= MAX_P99,
        "round trips beside a bulk pipe: {through} (direct to the target: {control})"
    );
}
