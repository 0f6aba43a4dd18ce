//! Pausing a pipe from another thread, then resuming it: nothing is lost,
//! while the kernel's window holds the sender back.
//!
//! ```sh
//! cargo run --example pause
//! ```
//!
//! A client streams 32 MiB through a forwarder to a target that counts
//! what it gets; a second thread pauses the pipe for a second and resumes
//! it. The target's count stands still meanwhile, and ends at every byte.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tcpipe::{Config, Forwarder, Hooks, PipeControl, PipeId, PipeOpened};

const TOTAL: usize = 32 << 20;

/// Tells the main thread which pipe opened.
struct OpenedPipes(mpsc::Sender<PipeId>);

impl Hooks for OpenedPipes {
    fn pipe_opened(&mut self, pipe: &PipeOpened<'_>, _: &mut PipeControl) {
        // A channel send never blocks: fine on the event loop's thread.
        let _ = self.0.send(pipe.id);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The target: reads everything, counting.
    let target = TcpListener::bind("127.0.0.1:0")?;
    let target_addr = target.local_addr()?;
    let received_total = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received_total);
    let sink = thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = target.accept()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok(()),
                n => counter.fetch_add(n, Ordering::SeqCst),
            };
        }
    });

    let (opened, pipes) = mpsc::channel();
    let config = Config::new("127.0.0.1:0".parse()?, target_addr);
    let forwarder = Forwarder::builder(config)
        .hooks(OpenedPipes(opened))
        .bind()?;
    let addr = forwarder.local_addr().ok_or("no listener")?;
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());

    let mut client = TcpStream::connect(addr)?;
    let id = pipes.recv()?;
    let pusher = thread::spawn(move || -> std::io::Result<()> {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            client.write_all(&chunk)?;
        }
        client.shutdown(Shutdown::Write)
    });

    // Another thread pauses and resumes the pipe.
    let controller = handle.clone();
    let received = Arc::clone(&received_total);
    thread::spawn(move || -> Result<(), tcpipe::CommandError> {
        while received_so_far(&received) < TOTAL / 4 {
            thread::sleep(Duration::from_millis(1));
        }
        controller.pause(id)?;
        println!("pipe {id} paused at {} bytes", received_so_far(&received));
        thread::sleep(Duration::from_millis(200));
        let settled = received_so_far(&received);
        thread::sleep(Duration::from_secs(1));
        println!(
            "a second later the target has {} bytes (was {settled})",
            received_so_far(&received)
        );
        controller.resume(id)?;
        println!("pipe {id} resumed");
        Ok(())
    })
    .join()
    .map_err(|_| "the controller panicked")??;

    pusher.join().map_err(|_| "the client panicked")??;
    sink.join().map_err(|_| "the target panicked")??;
    println!(
        "the target got {} of {TOTAL} bytes",
        received_so_far(&received_total)
    );
    handle.shutdown();
    running.join().map_err(|_| "the forwarder panicked")??;
    Ok(())
}

fn received_so_far(received: &AtomicUsize) -> usize {
    received.load(Ordering::SeqCst)
}
