//! The `/metrics` endpoint: a small HTTP/1.1 server on a thread of its own.
//!
//! The event loop never does HTTP: this thread accepts the scraper, reads
//! its request, asks the loop for a [`Snapshot`] through the command
//! channel (answered between two turns, in microseconds), renders it and
//! writes it. A slow or silent scraper holds this thread for at most its
//! read and write timeouts; it can never hold a pipe. Scrapes are served
//! one at a time, as Prometheus sends them.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use log::{debug, warn};

use super::prometheus::{render, CONTENT_TYPE};
use super::Snapshot;

/// How long a scraper may take to send its request, or to take the answer.
const SCRAPER_TIMEOUT: Duration = Duration::from_secs(5);
/// A request head larger than this is not a scrape.
const MAX_REQUEST: usize = 8 * 1024;

/// A running endpoint; dropping it stops the thread and closes the socket.
pub(crate) struct Exporter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Exporter {
    /// Binds `addr` and serves it; `scrape` asks the loop for a snapshot
    /// (`None` once the loop is gone).
    pub(crate) fn start(
        addr: SocketAddr,
        scrape: impl Fn() -> Option<Snapshot> + Send + 'static,
    ) -> io::Result<Exporter> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::Builder::new()
            .name("tcpipe-metrics".into())
            .spawn(move || serve(&listener, &stopped, &scrape))?;
        Ok(Exporter { addr, stop })
    }

    /// As bound (port 0 resolved).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept so the thread sees the flag and exits.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, scrape: &dyn Fn() -> Option<Snapshot>) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                if let Err(e) = answer(stream, scrape) {
                    debug!("metrics: scraper {peer}: {e}");
                }
            }
            Err(e) => {
                // Out of descriptors, most likely: don't spin on it.
                warn!("metrics: cannot accept: {e}");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut stream: TcpStream, scrape: &dyn Fn() -> Option<Snapshot>) -> io::Result<()> {
    stream.set_read_timeout(Some(SCRAPER_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPER_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let (status, content_type, body) = match request_line(&head) {
        Some(("GET" | "HEAD", "/metrics")) => match scrape() {
            Some(snapshot) => ("200 OK", CONTENT_TYPE, render(&snapshot)),
            None => (
                "503 Service Unavailable",
                "text/plain",
                "the forwarder is not running\n".into(),
            ),
        },
        Some(("GET" | "HEAD", "/")) => (
            "200 OK",
            "text/plain",
            "tcpipe: metrics at /metrics\n".into(),
        ),
        Some(("GET" | "HEAD", _)) => ("404 Not Found", "text/plain", "not found\n".into()),
        Some(_) => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        None => ("400 Bad Request", "text/plain", "bad request\n".into()),
    };
    let is_head = head.starts_with(b"HEAD ");
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !is_head {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response)?;
    stream.flush()
}

/// Reads up to the blank line that ends the request head.
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too large",
            ));
        }
        match stream.read(&mut chunk)? {
            0 => break,
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(head)
}

/// The method and the path (without its query) of an HTTP/1.x request.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some((method, path))
}

#[cfg(test)]
mod tests {
    use super::request_line;

    #[test]
    fn the_request_line_gives_method_and_path() {
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            request_line(b"POST / HTTP/1.0\r\n\r\n"),
            Some(("POST", "/"))
        );
        assert_eq!(request_line(b"garbage\r\n\r\n"), None);
        assert_eq!(request_line(b"\xff\xfe /x HTTP/1.1\r\n\r\n"), None);
    }
}
