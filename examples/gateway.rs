//! A gateway that picks each client's backend from its first line, in the
//! embedder's own code: it accepts the client itself, reads the line
//! (`USE <backend>`), and hands both sockets to the forwarder with the line
//! as early bytes (`AttachOptions::early_bytes`: delivered first, exactly
//! once). To save most clients a round trip it dials the default backend
//! at once, before the line is read; for a line naming another backend the
//! `pipe_opened` hook re-targets the pipe (`PipeControl::retarget`) before
//! any byte has moved.
//!
//! ```sh
//! cargo run --example gateway
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use tcpipe::{AttachOptions, Config, Forwarder, Hooks, PipeControl, PipeOpened};

/// A backend that answers with its name and what it was sent.
fn backend(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut got = String::new();
            if stream.read_to_string(&mut got).is_ok() {
                let _ = write!(stream, "{name} got {got:?}");
            }
        }
    });
    Ok(addr)
}

/// Where each client's first line says to go, by the client's address.
type Choices = Arc<Mutex<HashMap<SocketAddr, SocketAddr>>>;

/// Sends a pipe to the backend its client asked for, if not the default.
struct Router(Choices);

impl Hooks for Router {
    fn pipe_opened(&mut self, pipe: &PipeOpened<'_>, control: &mut PipeControl) {
        // A short lock nobody holds long: fine on the loop thread.
        let chosen = self.0.lock().map(|mut c| c.remove(&pipe.client));
        if let Ok(Some(target)) = chosen {
            if let Err(e) = control.retarget(target) {
                eprintln!("pipe {}: {e}", pipe.id);
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backends: HashMap<&str, SocketAddr> = [("a", backend("a")?), ("b", backend("b")?)]
        .into_iter()
        .collect();
    let default = backends["a"];

    let choices = Choices::default();
    let forwarder = Forwarder::builder(Config::with_routes(Vec::new()))
        .hooks(Router(Arc::clone(&choices)))
        .bind()?;
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());

    let gateway = TcpListener::bind("127.0.0.1:0")?;
    let gateway_addr = gateway.local_addr()?;
    let clients = thread::spawn(move || -> std::io::Result<Vec<String>> {
        let mut answers = Vec::new();
        for wanted in ["b", "a"] {
            let mut client = TcpStream::connect(gateway_addr)?;
            write!(client, "USE {wanted}\nhello from a client of {wanted}")?;
            client.shutdown(Shutdown::Write)?;
            let mut answer = String::new();
            client.read_to_string(&mut answer)?;
            answers.push(answer);
        }
        Ok(answers)
    });

    for _ in 0..2 {
        let (client, peer) = gateway.accept()?;
        // Dialed before the line is read: most clients want the default.
        let target = mio::net::TcpStream::connect(default)?;
        let mut reader = BufReader::new(client);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        // Everything read so far goes on, the line first.
        let mut early_bytes = line.clone().into_bytes();
        early_bytes.extend_from_slice(reader.buffer());
        let client = reader.into_inner();
        let wanted = line.trim().strip_prefix("USE ").unwrap_or("a");
        let chosen = *backends.get(wanted).unwrap_or(&default);
        if chosen != default {
            choices.lock().map_err(|_| "poisoned")?.insert(peer, chosen);
        }
        let options = AttachOptions {
            early_bytes,
            ..AttachOptions::default()
        };
        let id = handle.attach_with(client, target, options)?;
        println!("pipe {id}: {peer} asked for {wanted}");
    }
    for answer in clients.join().map_err(|_| "client panicked")?? {
        println!("{answer}");
    }
    handle.shutdown();
    running.join().map_err(|_| "forwarder panicked")??;
    Ok(())
}
