//! One client's connection: reading its request (within the request
//! deadline), waiting for a later answer, writing the answer (within the
//! write deadline), then lingering: after our FIN, what the client still
//! sends is read and dropped until it closes, for at most [`LINGER`].
//! Closing a socket with unread input sends a reset, which can destroy
//! the answer before the client reads it (the case of a 431 sent while
//! the oversize head is still arriving).

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use log::debug;

use super::request::{head_end, parse_head, Head, Rejection, Request};
use super::response::Response;
use super::server::{Answer, Limits, Work};
use super::socket::Stream;

/// How long a client that has its answer may keep sending before we close.
const LINGER: Duration = Duration::from_secs(1);
/// How much a lingering client may still send before we close anyway.
const MAX_DRAIN: usize = 64 * 1024;
/// One read's worth; the head cap is a few of these.
const CHUNK: usize = 4096;

pub(super) fn reject(limits: &Limits, rejection: Rejection) -> Response {
    refusal(limits, rejection.status(), rejection.message().trim_end())
}

/// One line saying why, as text or as `{"error": "..."}`.
pub(super) fn refusal(limits: &Limits, status: u16, message: &str) -> Response {
    if !limits.json_errors {
        return Response::text(status, format!("{message}\n"));
    }
    let mut json = String::from("{\"error\":\"");
    for c in message.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            c if c.is_control() => json.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => json.push(c),
        }
    }
    json.push_str("\"}\n");
    Response::new(status, "application/json", json)
}

pub(super) struct Connection {
    /// Tells this client from a later one in the same slot.
    pub(super) serial: u64,
    pub(super) stream: Stream,
    /// Its address, for logs.
    pub(super) peer: String,
    pub(super) state: State,
    /// Accepted, or last sent us bytes while reading.
    pub(super) heard: Instant,
    pub(super) deadline: Instant,
}

pub(super) enum State {
    Reading(Reading),
    /// Its request's work runs; what it sends meanwhile is dropped.
    Waiting {
        head_only: bool,
        drained: usize,
    },
    Writing {
        out: Vec<u8>,
        sent: usize,
    },
    Lingering {
        drained: usize,
    },
}

impl State {
    /// Lower goes first when the server is full: answered, silent, part
    /// of a request sent, answer going out, waiting for its answer.
    pub(super) fn keep_rank(&self) -> u8 {
        match self {
            State::Lingering { .. } => 0,
            State::Reading(reading) if reading.buf.is_empty() => 1,
            State::Reading(_) => 2,
            State::Writing { .. } => 3,
            State::Waiting { .. } => 4,
        }
    }

    pub(super) fn doing(&self) -> &'static str {
        match self {
            State::Lingering { .. } => "answered",
            State::Reading(reading) if reading.buf.is_empty() => "silent",
            State::Reading(_) => "sending its request",
            State::Writing { .. } => "not reading its answer",
            State::Waiting { .. } => "waiting for its answer",
        }
    }
}

#[derive(Default)]
pub(super) struct Reading {
    buf: Vec<u8>,
    /// Where to look for the head's end again.
    scanned: usize,
    head: Option<Head>,
}

enum Progress {
    More,
    Close,
    Complete(Request),
    Reject(Rejection),
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    Open,
    Close,
}

/// What a connection needs after an event.
pub(super) enum Next {
    Open,
    Close,
    /// Its answer is this work's, and a `HEAD`'s if so.
    Later(Work, bool),
}

impl Connection {
    /// Goes as far as the socket allows now. A connection whose answer
    /// cannot go out in full is closed with a reset rather than a FIN
    /// ([`Stream::reset_on_close`]): the kernel drops what the client did
    /// not take instead of holding it (up to the send buffer, megabytes)
    /// for minutes of zero-window probes. A cut answer is useless to the
    /// client either way.
    pub(super) fn advance(
        &mut self,
        now: Instant,
        limits: &Limits,
        handler: &dyn Fn(&Request) -> Answer,
    ) -> Next {
        if let State::Reading(reading) = &mut self.state {
            let (progress, heard) = read_request(&mut self.stream, reading, limits);
            if heard {
                self.heard = now;
            }
            match progress {
                Progress::More => return Next::Open,
                Progress::Close => return Next::Close,
                Progress::Complete(request) => {
                    let head_only = request.method() == "HEAD";
                    match handler(&request) {
                        // The handler may have taken a while.
                        Answer::Now(response) => {
                            self.answer(Instant::now(), limits, response, head_only)
                        }
                        Answer::Later(work) => return Next::Later(work, head_only),
                    }
                }
                Progress::Reject(rejection) => {
                    debug!("client {}: {}", self.peer, rejection.message().trim_end());
                    self.answer(now, limits, reject(limits, rejection), false);
                }
            }
        }
        match self.send(now) {
            Step::Open => Next::Open,
            Step::Close => Next::Close,
        }
    }

    pub(super) fn answer(
        &mut self,
        now: Instant,
        limits: &Limits,
        response: Response,
        head_only: bool,
    ) {
        self.state = State::Writing {
            out: response.encode(head_only),
            sent: 0,
        };
        self.deadline = now + limits.write_timeout;
    }

    /// Writes the answer, then drains until the client closes.
    pub(super) fn send(&mut self, now: Instant) -> Step {
        let mut chunk = [0u8; CHUNK];
        loop {
            match &mut self.state {
                State::Reading(_) => return Step::Open,
                // A client that closes while waiting is gone: a client
                // half-closing after its request is legal but rare, and
                // `tcpipe ctl`, curl and scripts do not. Lingering after the
                // answer drains the same way (see LINGER).
                State::Waiting { drained, .. } | State::Lingering { drained } => {
                    match self.stream.read(&mut chunk) {
                        Ok(0) => return Step::Close,
                        Ok(n) => {
                            *drained += n;
                            if *drained > MAX_DRAIN {
                                return Step::Close;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Open,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Step::Close,
                    }
                }
                State::Writing { out, sent } => match self.stream.write(&out[*sent..]) {
                    Ok(0) => return Step::Close,
                    Ok(n) => {
                        *sent += n;
                        if *sent == out.len() {
                            // The FIN goes after the answer; what the
                            // client still sends is drained (see LINGER).
                            if self.stream.shutdown_write().is_err() {
                                return Step::Close;
                            }
                            self.state = State::Lingering { drained: 0 };
                            self.deadline = now + LINGER;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Open,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        debug!("client {}: {e}", self.peer);
                        return Step::Close;
                    }
                },
            }
        }
    }
}

/// Reads what is there; whether any bytes came, and how far the request is.
fn read_request(stream: &mut Stream, reading: &mut Reading, limits: &Limits) -> (Progress, bool) {
    let mut chunk = [0u8; CHUNK];
    let mut heard = false;
    loop {
        if let Some(progress) = reading.progress(limits) {
            return (progress, heard);
        }
        match stream.read(&mut chunk) {
            Ok(0) if reading.buf.is_empty() => return (Progress::Close, heard),
            Ok(0) => {
                let why = Rejection::Malformed("the client closed before the request ended");
                return (Progress::Reject(why), heard);
            }
            Ok(n) => {
                reading.buf.extend_from_slice(&chunk[..n]);
                heard = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (Progress::More, heard),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (Progress::Close, heard),
        }
    }
}

impl Reading {
    /// `None` while more bytes are needed.
    fn progress(&mut self, limits: &Limits) -> Option<Progress> {
        if self.head.is_none() {
            match head_end(&self.buf, self.scanned) {
                Some(end) if end <= limits.max_head => {
                    match parse_head(&self.buf, end, limits.max_body) {
                        Ok(head) => self.head = Some(head),
                        Err(rejection) => return Some(Progress::Reject(rejection)),
                    }
                }
                Some(_) => return Some(Progress::Reject(Rejection::HeadTooLarge)),
                None if self.buf.len() > limits.max_head => {
                    return Some(Progress::Reject(Rejection::HeadTooLarge))
                }
                None => {
                    self.scanned = self.buf.len().saturating_sub(2);
                    return None;
                }
            }
        }
        let head = self.head.as_ref()?;
        let end = head.len + head.content_length;
        let body = self.buf.get(head.len..end)?.to_vec();
        let mut request = self.head.take()?.request;
        request.body = body;
        Some(Progress::Complete(request))
    }
}
