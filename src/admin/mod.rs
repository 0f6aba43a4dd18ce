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

mod api;
pub(crate) mod call;
mod json;

use std::io;
use std::path::Path;
use std::time::Duration;

use crate::config::{read_token, AdminAddress};
use crate::forwarder::Handle;
use crate::http::{Endpoint, Limits, Request, Server};
use api::Api;

/// A running admin endpoint; dropping it stops it and removes its socket
/// file.
pub(crate) struct Admin {
    server: Server,
}

impl Admin {
    /// Serves the admin API of `handle`'s forwarder at `address`; a TCP
    /// address checks every request against the token in `token_file`.
    pub(crate) fn start(
        address: &AdminAddress,
        token_file: Option<&Path>,
        handle: Handle,
    ) -> io::Result<Admin> {
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
        let api = Api { handle, token };
        let server = Server::start_on("admin", &endpoint, limits, move |request: &Request| {
            api.answer(request)
        })?;
        log::info!("admin: serving the admin API on {}", server.endpoint());
        Ok(Admin { server })
    }

    /// As bound (port 0 resolved): `unix:/path` or `host:port`.
    pub(crate) fn endpoint(&self) -> String {
        self.server.endpoint().to_string()
    }
}
