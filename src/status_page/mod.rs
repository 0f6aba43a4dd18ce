//! The live status page served at `GET /` of the metrics endpoint (and of
//! the admin endpoint): one self-contained HTML page, every route and
//! target with its state, weight, health, pipes, bytes and rates.
//!
//! The server renders the whole page, so it reads with JavaScript off (a
//! `<noscript>` meta refresh reloads it); with JavaScript on, a few lines
//! fetch the page itself again and swap its content in place, without a
//! reload's flash or lost scroll. Rates are computed here, not in the
//! browser: each endpoint keeps its previous sample of the counters
//! ([`rates`]), so every reader, curl included, sees the same rates.
//!
//! This module is pure over the data it is given ([`RouteStatus`]): what
//! reads it from the forwarder is `Handle::status` (`src/forwarder.rs`),
//! so this module imports nothing that imports it back.
//!
//! | module    | the idea                                             |
//! |-----------|------------------------------------------------------|
//! | `mod`     | the data shown, and one endpoint's page and answer   |
//! | `rates`   | samples of the counters, and rates between two       |
//! | `html`    | the page as text: escaping, numbers, the tables      |

mod html;
mod rates;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::hooks::CommandError;
use crate::http::Response;
use html::Page;
use rates::Rates;

/// How often the page refreshes itself, in seconds.
pub(crate) const REFRESH_SECONDS: u32 = 2;

/// A route as the page shows it.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteStatus {
    pub(crate) name: String,
    pub(crate) listen: Vec<SocketAddr>,
    /// As the config writes it (`round-robin`, ...).
    pub(crate) balance: String,
    pub(crate) live_pipes: usize,
    pub(crate) total_pipes: u64,
    /// In config order.
    pub(crate) targets: Vec<TargetStatus>,
}

/// A target as the page shows it.
#[derive(Clone, Debug)]
pub(crate) struct TargetStatus {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    /// The operator's state: `ready`, `drain` or `maint`.
    pub(crate) state: &'static str,
    pub(crate) weight: u32,
    pub(crate) backup: bool,
    pub(crate) healthy: bool,
    pub(crate) live_pipes: usize,
    pub(crate) total_pipes: u64,
    pub(crate) bytes_toward_target: u64,
    pub(crate) bytes_toward_client: u64,
    pub(crate) connect_failures: u64,
}

/// One endpoint's status page: the sample its rates are measured from.
#[derive(Default)]
pub(crate) struct StatusPage {
    rates: Mutex<Rates>,
}

impl StatusPage {
    pub(crate) fn new() -> StatusPage {
        StatusPage::default()
    }

    /// The page for `status` as read now: 200 with the tables, or 503 with
    /// the page saying why there is nothing to show.
    pub(crate) fn respond(&self, status: Result<Vec<RouteStatus>, CommandError>) -> Response {
        self.respond_at(Instant::now(), SystemTime::now(), status)
    }

    /// [`respond`](StatusPage::respond) as of `now` (the rates' clock) and
    /// `at` (the time shown).
    fn respond_at(
        &self,
        now: Instant,
        at: SystemTime,
        status: Result<Vec<RouteStatus>, CommandError>,
    ) -> Response {
        let (code, body) = match &status {
            Ok(routes) => {
                // A poisoned lock only means a render panicked; the sample
                // in it is whole.
                let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
                let measured = rates.observe(now, routes);
                let page = Page {
                    routes: Ok(routes),
                    rates: measured,
                    at,
                };
                (200, html::render(&page))
            }
            Err(e) => {
                let why = e.to_string();
                let page = Page {
                    routes: Err(&why),
                    rates: None,
                    at,
                };
                (503, html::render(&page))
            }
        };
        Response::new(code, "text/html; charset=utf-8", body)
            .with_header("Cache-Control", "no-store")
            .with_header("X-Content-Type-Options", "nosniff")
            // Nothing but the page's own inline style and script, and
            // fetching itself: no outside asset can load, whatever a name
            // in it says.
            .with_header(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            )
    }
}

#[cfg(test)]
pub(crate) mod tests;
