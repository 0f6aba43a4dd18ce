//! Attaching two sockets the program connected itself (Workerman's
//! `setSource`/`setTarget`/`pipe()`): a forwarder with no listener pipes
//! them, with the same flow control and close rules as any other pipe.
//!
//! ```sh
//! cargo run --example attach
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

use tcpipe::{Config, Forwarder};

/// Two connected sockets: (the end this program keeps, the end it hands
/// to the forwarder).
fn socket_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let kept = TcpStream::connect(listener.local_addr()?)?;
    let (given, _) = listener.accept()?;
    Ok((kept, given))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // No routes: this forwarder only pipes what it is handed.
    let forwarder = Forwarder::bind(Config::with_routes(Vec::new()))?;
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());

    let (mut client, client_end) = socket_pair()?;
    let (mut target, target_end) = socket_pair()?;
    let id = handle.attach(client_end, target_end)?;
    println!("attached as pipe {id}");

    client.write_all(b"hello, target")?;
    client.shutdown(Shutdown::Write)?; // half-close: the target can still answer
    let mut request = String::new();
    target.read_to_string(&mut request)?;
    println!("the target got {request:?}, then the client's FIN");
    target.write_all(b"hello, client")?;
    drop(target); // its FIN closes the pipe cleanly
    let mut answer = String::new();
    client.read_to_string(&mut answer)?;
    println!("the client got {answer:?}, then the target's FIN");

    handle.shutdown();
    running.join().map_err(|_| "the forwarder panicked")??;
    Ok(())
}
