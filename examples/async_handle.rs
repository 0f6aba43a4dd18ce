//! The handle from async code (here tokio; any executor works): `submit`
//! and `attach_async` send a command and return a future at once, which
//! the event loop wakes when it has answered, so no call needs
//! `spawn_blocking`. The forwarder itself runs on a thread of its own.
//!
//! ```sh
//! cargo run --example async_handle
//! ```

use std::thread;

use tcpipe::{AttachOptions, Config, Forwarder, PipeAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Two connected sockets: (the end kept, the end handed to the forwarder).
async fn socket_pair() -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let kept = TcpStream::connect(listener.local_addr()?).await?;
    let (given, _) = listener.accept().await?;
    Ok((kept, given.into_std()?))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let forwarder = Forwarder::bind(Config::with_routes(Vec::new()))?;
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());

    let (mut client, client_end) = socket_pair().await?;
    let (mut target, target_end) = socket_pair().await?;
    let id = handle
        .attach_async(client_end, target_end, AttachOptions::default())
        .await?;
    println!("attached as pipe {id}");

    handle.submit(id, PipeAction::Pause(None)).await?;
    client.write_all(b"held while paused").await?;
    println!("pipe {id} paused; its bytes wait in the client's socket");
    handle.submit(id, PipeAction::Resume(None)).await?;
    let mut got = [0u8; 17];
    target.read_exact(&mut got).await?;
    println!(
        "after resume the target got {:?}",
        String::from_utf8_lossy(&got)
    );

    handle.submit(id, PipeAction::Abort).await?;
    let mut rest = Vec::new();
    let ended = client.read_to_end(&mut rest).await;
    println!("aborted: the client's read ends with {ended:?}");

    handle.shutdown();
    running.join().map_err(|_| "forwarder panicked")??;
    Ok(())
}
