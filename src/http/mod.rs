//! A small HTTP/1.1 server for the process's own endpoints (`/metrics`
//! today), generic over a handler: a complete [`Request`] in (method,
//! path, query, headers, a body of at most a capped `Content-Length`), a
//! [`Response`] out (status, content type, body, extra headers). One
//! request per connection, answered with `Connection: close`; no chunked
//! bodies, no keep-alive, no TLS: what a scraper, curl and a script need.
//!
//! | module     | the idea                                                  |
//! |------------|-----------------------------------------------------------|
//! | `request`  | finding and parsing a request head, whatever the segments |
//! | `response` | a handler's answer and its bytes                          |
//! | `server`   | the thread, its poll loop, deadlines and the connection cap |

mod request;
mod response;
mod server;

pub(crate) use request::Request;
pub(crate) use response::Response;
pub(crate) use server::{Limits, Server};

#[cfg(test)]
mod tests;
