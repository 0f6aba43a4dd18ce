//! A hook that holds uploads above a quota while replies keep flowing
//! (Workerman's `pauseRecv` on the client's connection): once a pipe has
//! sent `QUOTA` bytes to its target, its `forwarded` hook pauses the
//! client → target direction from inside the hook, on the loop thread, and
//! tells a "quota check" (here, `main`) which then lets the upload go on
//! with `Handle::resume_direction`. Nothing is lost; the client's kernel
//! window holds it back meanwhile.
//!
//! ```sh
//! cargo run --example upload_quota
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use tcpipe::{Config, Direction, Forwarder, Hooks, PipeControl, PipeId};

const QUOTA: u64 = 1 << 20;
const UPLOAD: usize = 8 << 20;

/// Bytes each pipe has uploaded; pipes over the quota go to `over`.
struct Quota {
    uploaded: HashMap<PipeId, u64>,
    over: mpsc::Sender<PipeId>,
}

impl Hooks for Quota {
    fn forwarded(&mut self, id: PipeId, way: Direction, bytes: u64, pipe: &mut PipeControl) {
        if way != Direction::ClientToTarget {
            return;
        }
        let total = self.uploaded.entry(id).or_default();
        let crossed = *total < QUOTA && *total + bytes >= QUOTA;
        *total += bytes;
        if crossed {
            // Applied as soon as this hook returns: no round trip.
            pipe.pause(Direction::ClientToTarget);
            let _ = self.over.send(id); // a channel send never blocks
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The target greets, then reads the upload, counting.
    let target = TcpListener::bind("127.0.0.1:0")?;
    let target_addr = target.local_addr()?;
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let sink = thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = target.accept()?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut answered = false;
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            counter.fetch_add(n, Ordering::SeqCst);
            if !answered && counter.load(Ordering::SeqCst) >= QUOTA as usize {
                // Replies still reach the client while its upload waits.
                stream.write_all(b"reply: past the quota\n")?;
                answered = true;
            }
        }
        stream.write_all(b"reply: upload complete\n")?;
        stream.shutdown(Shutdown::Write)
    });

    let (over, over_quota) = mpsc::channel();
    let hooks = Quota {
        uploaded: HashMap::new(),
        over,
    };
    let config = Config::new("127.0.0.1:0".parse()?, target_addr);
    let forwarder = Forwarder::builder(config).hooks(hooks).bind()?;
    let addr = forwarder.local_addr().ok_or("no listener")?;
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());

    let client = TcpStream::connect(addr)?;
    let mut uploader = client.try_clone()?;
    let upload = thread::spawn(move || -> std::io::Result<()> {
        uploader.write_all(&vec![7u8; UPLOAD])?;
        uploader.shutdown(Shutdown::Write)
    });

    let id = over_quota.recv_timeout(Duration::from_secs(30))?;
    let mut replies = BufReader::new(client);
    let mut line = String::new();
    replies.read_line(&mut line)?;
    print!("pipe {id} is over its quota; the target still answers: {line}");
    thread::sleep(Duration::from_millis(300)); // the "quota check"
    let held = received.load(Ordering::SeqCst);
    println!("held at {held} bytes of {UPLOAD}; the check passed, resuming");
    handle.resume_direction(id, Direction::ClientToTarget)?;

    upload.join().map_err(|_| "uploader panicked")??;
    let mut rest = String::new();
    replies.read_to_string(&mut rest)?;
    sink.join().map_err(|_| "target panicked")??;
    let total = received.load(Ordering::SeqCst);
    println!(
        "the target received {total} bytes; last reply: {}",
        rest.lines().last().unwrap_or("")
    );
    assert_eq!(total, UPLOAD, "bytes were lost");
    handle.shutdown();
    running.join().map_err(|_| "forwarder panicked")??;
    Ok(())
}
