//! The admin endpoint: HTTP/1.1 with JSON bodies on a Unix socket file
//! or a TCP address (bearer token required), served by [`crate::http`] on
//! a thread of its own. It reaches the loop only through the [`Handle`],
//! so nothing a client sends can stall the loop; `tcpipe ctl` is its
//! client (`src/cli/ctl.rs`).
//!
//! | module | the idea                                                   |
//! |--------|------------------------------------------------------------|
//! | `call` | a request read into the operation it asks for, or refused  |
//! | `api`  | the token, and each operation carried out through the Handle |
//! | `json` | the answers' shapes                                        |
//!
//! A new endpoint (`upgrade`, say) is a [`call::Call`] variant with its
//! path and method in `call::parse`, and what it does in `Api::run`: an
//! `Answer::Later` if it may take longer than a turn of the loop.

mod api;
pub(crate) mod call;
mod json;

use std::io;
use std::path::Path;
use std::time::Duration;

use crate::config::{read_token, AdminAddress, Config};
use crate::forwarder::{Forwarder, Handle, StartError};
use crate::http::{Endpoint, Limits, Request, Server};
use crate::status_page::StatusPage;
use api::Api;

/// Serves the admin API `config` asks for ([`Config::admin`]) for
/// `forwarder`, and tells it where, for its `READY=1`; `None` if the
/// config asks for none. Keep the value for as long as the forwarder runs.
pub fn serve_admin(
    forwarder: &mut Forwarder,
    config: &Config,
) -> Result<Option<AdminServer>, StartError> {
    let served = serve(forwarder, config);
    // A listener the process this one took over from handed over for it is
    // taken (a duplicate) or not needed now.
    crate::inherited::settle_late(crate::inherited::ADMIN_OWNER);
    served
}

fn serve(forwarder: &mut Forwarder, config: &Config) -> Result<Option<AdminServer>, StartError> {
    let Some(address) = &config.admin else {
        return Ok(None);
    };
    let token_file = config.admin_token_file.as_deref();
    let server = AdminServer::start(address, token_file, forwarder.handle())
        .map_err(|e| StartError::Admin(address.to_string(), e))?;
    forwarder.announce_admin(server.endpoint());
    if let (AdminAddress::Tcp(configured), Some(copy)) = (address, server.server.listener_copy()) {
        let copy = copy.map_err(|e| StartError::Admin(address.to_string(), e))?;
        forwarder.crew.set_admin_listener(*configured, copy);
    }
    Ok(Some(server))
}

/// A running admin endpoint; dropping it stops it and removes its socket
/// file.
pub struct AdminServer {
    server: Server,
}

impl AdminServer {
    /// Serves the admin API of `handle`'s forwarder at `address`; a TCP
    /// address checks every request against the token in `token_file`.
    fn start(
        address: &AdminAddress,
        token_file: Option<&Path>,
        handle: Handle,
    ) -> io::Result<AdminServer> {
        let (endpoint, token) = match address {
            AdminAddress::Unix(path) => (Endpoint::Unix(path.clone()), None),
            AdminAddress::Tcp(addr) => {
                let file = token_file.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, "no admin token file")
                })?;
                let token = read_token(file).map_err(|why| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the token file {}: {why}", file.display()),
                    )
                })?;
                (Endpoint::Tcp(*addr), Some(token))
            }
        };
        // A few operators' tools at a time; a body is a small JSON object.
        // A wait may last as long as its timeout allows, and a little more.
        let limits = Limits {
            max_connections: 32,
            max_body: 16 * 1024,
            max_wait: call::MAX_WAIT + Duration::from_secs(60),
            json_errors: true,
            ..Limits::default()
        };
        let api = Api {
            handle,
            token,
            status_page: StatusPage::new(),
        };
        let server = Server::start_on("admin", &endpoint, limits, move |request: &Request| {
            api.answer(request)
        })?;
        log::info!("admin: serving the admin API on {}", server.endpoint());
        Ok(AdminServer { server })
    }

    /// Stops serving once the answers under way are out, or after
    /// `within`: call it when the forwarder's run has ended (a live
    /// upgrade's answer goes out before this process exits).
    pub fn finish(self, within: Duration) {
        self.server.finish(within);
    }

    /// As bound (port 0 resolved): `unix:/path` or `host:port`.
    pub fn endpoint(&self) -> String {
        self.server.endpoint().to_string()
    }
}
