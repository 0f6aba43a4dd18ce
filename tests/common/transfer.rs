//! Timed one-way transfers through a pipe, for the rate-limit tests: how
//! long a stream of known bytes takes from one end to the other, and
//! whether it arrived intact.
#![allow(dead_code)] // each test file uses a different subset

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{receive_rest, Fnv, Rng};

/// What one transfer achieved.
pub struct Transfer {
    pub bytes: usize,
    pub took: Duration,
}

impl Transfer {
    /// Bytes a second, over the whole transfer.
    pub fn rate(&self) -> f64 {
        self.bytes as f64 / self.took.as_secs_f64()
    }
}

/// Sends `len` reproducible bytes from `from` (then its FIN) and reads
/// them at `to` until EOF, asserting they arrived whole and in order;
/// the time is from the first write to the EOF.
pub fn send_and_time(mut from: TcpStream, mut to: TcpStream, len: usize, seed: u64) -> Transfer {
    let data = Rng::new(seed).bytes(len);
    let expected = Fnv::of(&data);
    let start = Instant::now();
    let writer = thread::spawn(move || {
        from.write_all(&data).expect("send through the forwarder");
        from.shutdown(std::net::Shutdown::Write).expect("FIN");
        from
    });
    let (received, hash) = receive_rest(&mut to, 0, Fnv::default());
    let took = start.elapsed();
    let _from = writer.join().expect("writer");
    assert_eq!(received, len, "bytes lost or added");
    assert_eq!(hash, expected, "the stream arrived altered");
    Transfer {
        bytes: received,
        took,
    }
}

/// Asserts `rate` (bytes a second) is within `tolerance` (0.15: ±15%) of
/// `limit`, and says what it was, for README's measured accuracy.
pub fn assert_rate_near(what: &str, rate: f64, limit: f64, tolerance: f64) {
    let ratio = rate / limit;
    eprintln!("{what}: {rate:.0} B/s against a limit of {limit:.0} B/s ({ratio:.3}×)");
    assert!(
        (1.0 - tolerance..=1.0 + tolerance).contains(&ratio),
        "{what}: {rate:.0} B/s is not within {:.0}% of {limit:.0} B/s",
        tolerance * 100.0
    );
}
