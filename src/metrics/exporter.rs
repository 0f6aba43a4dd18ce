//! The `/metrics` endpoint, served by [`crate::http`] on a thread of its
//! own, with the status page at `/`.
//!
//! The event loop never does HTTP: that thread reads each scraper's
//! request, asks the loop for a [`Snapshot`] through the command channel
//! (answered between two turns, in microseconds), renders it and writes
//! it. Scrapers are served side by side without blocking, each with a
//! deadline, so silent or slow clients hold up neither a pipe nor another
//! scrape.

use std::io;
use std::net::SocketAddr;

use super::prometheus::{render, CONTENT_TYPE};
use super::Snapshot;
use crate::http::{Limits, Request, Response, Server};

/// A running endpoint; dropping it stops the thread and closes the socket.
pub(crate) struct Exporter {
    server: Server,
}

impl Exporter {
    /// Binds `addr` and serves it; `scrape` asks the loop for a snapshot
    /// (`None` once the loop is gone), `status_page` renders the page at
    /// `/` (`src/status_page/`).
    pub(crate) fn start(
        addr: SocketAddr,
        scrape: impl Fn() -> Option<Snapshot> + Send + 'static,
        status_page: impl Fn() -> Response + Send + 'static,
    ) -> io::Result<Exporter> {
        let limits = Limits::default();
        let server = Server::start("metrics", addr, limits, move |request: &Request| {
            answer(request, &scrape, &status_page)
        })?;
        Ok(Exporter { server })
    }

    /// As bound (port 0 resolved).
    pub(crate) fn addr(&self) -> SocketAddr {
        // Bound on TCP, by start.
        self.server
            .tcp_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The listening socket, for a live upgrade to hand over.
    pub(crate) fn listener_fd(&self) -> Option<std::os::fd::RawFd> {
        self.server.listener_fd()
    }
}

fn answer(
    request: &Request,
    scrape: &dyn Fn() -> Option<Snapshot>,
    status_page: &dyn Fn() -> Response,
) -> Response {
    if !matches!(request.method(), "GET" | "HEAD") {
        return Response::text(405, "GET only\n").with_header("Allow", "GET, HEAD");
    }
    match request.path() {
        "/metrics" => match scrape() {
            Some(snapshot) => Response::new(200, CONTENT_TYPE, render(&snapshot)),
            None => Response::text(503, "the forwarder is not running\n"),
        },
        "/" => status_page(),
        _ => Response::text(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::answer;
    use crate::http::{Request, Response};

    fn get(method: &str, path: &str) -> (u16, String) {
        let request = Request::parse_for_test(&format!("{method} {path} HTTP/1.1\r\n\r\n"));
        let page = || Response::new(200, "text/html", "the page");
        let response = answer(&request, &|| None, &page);
        let body = String::from_utf8_lossy(response.body()).into_owned();
        (response.status(), body)
    }

    #[test]
    fn only_get_and_head_of_known_paths_are_served() {
        assert_eq!(get("GET", "/metrics").0, 503, "no loop to ask");
        assert_eq!(get("HEAD", "/metrics?x=1").0, 503);
        assert_eq!(get("GET", "/"), (200, "the page".into()));
        assert_eq!(get("HEAD", "/?refresh").0, 200);
        assert_eq!(get("GET", "/nope").0, 404);
        assert_eq!(get("POST", "/metrics").0, 405);
        assert_eq!(get("DELETE", "/").0, 405);
    }
}
