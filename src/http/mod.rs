//! A small HTTP/1.1 server for the process's own endpoints (`/metrics`,
//! the admin API), on a TCP address or a Unix socket file, generic over a
//! handler: a complete [`Request`] in (method,
//! path, query, headers, a body of at most a capped `Content-Length`), a
//! [`Response`] out (status, content type, body, extra headers). One
//! request per connection, answered with `Connection: close`; no chunked
//! bodies, no keep-alive, no TLS: what a scraper, curl and a script need.
//! A handler may answer later: its work runs on a thread of its own while
//! other clients are served.
//!
//! | module     | the idea                                                  |
//! |------------|-----------------------------------------------------------|
//! | `connection` | one client: its request, its wait, its answer, lingering |
//! | `request`  | finding and parsing a request head, whatever the segments |
//! | `response` | a handler's answer and its bytes                          |
//! | `server`   | the thread, its poll loop, deadlines, the connection cap, answers given later |
//! | `socket`   | a TCP or Unix listener and its connections; the socket file's life |

// Socket files and later answers are the admin API's (feature `cli`).
#![cfg_attr(not(feature = "cli"), allow(dead_code, unused_imports))]

mod connection;
mod request;
mod response;
mod server;
mod socket;

pub(crate) use request::Request;
pub(crate) use response::Response;
pub(crate) use server::{Answer, Limits, Server};
pub(crate) use socket::Endpoint;

#[cfg(test)]
mod tests;
