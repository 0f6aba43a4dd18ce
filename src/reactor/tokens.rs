//! Poll tokens: which socket an event is for. A pipe's two sockets share
//! one slab key; every other kind of socket has a range of its own.

use mio::Token;

use crate::pipe::Side;

/// Tokens, from the bottom: a pipe's two sockets are `2 × key` (client) and
/// `2 × key + 1` (target), so one slab entry serves both; then listeners,
/// pooled connections, probes, clients awaiting a PROXY header and
/// clients whose first bytes are inspected to choose a route, each in
/// a range of its own; the waker and the signals at the top.
const LISTENER_BASE: usize = usize::MAX / 2;
const POOLED_BASE: usize = LISTENER_BASE + (usize::MAX / 8);
const PROBE_BASE: usize = POOLED_BASE + (usize::MAX / 8);
const AWAITING_BASE: usize = PROBE_BASE + (usize::MAX / 8);
const INSPECTING_BASE: usize = AWAITING_BASE + (usize::MAX / 16);
pub(super) const CONTROL: Token = Token(usize::MAX);
pub(super) const SIGNALS: Token = Token(usize::MAX - 1);

pub(super) enum Source {
    Pipe(usize, Side),
    Listener(usize),
    Pooled(usize),
    Probe(usize),
    Awaiting(usize),
    Inspecting(usize),
    Control,
    Signals,
}

pub(super) fn decode(token: Token) -> Source {
    match token {
        CONTROL => Source::Control,
        SIGNALS => Source::Signals,
        Token(t) if t >= INSPECTING_BASE => Source::Inspecting(t - INSPECTING_BASE),
        Token(t) if t >= AWAITING_BASE => Source::Awaiting(t - AWAITING_BASE),
        Token(t) if t >= PROBE_BASE => Source::Probe(t - PROBE_BASE),
        Token(t) if t >= POOLED_BASE => Source::Pooled(t - POOLED_BASE),
        Token(t) if t >= LISTENER_BASE => Source::Listener(t - LISTENER_BASE),
        Token(t) if t % 2 == 0 => Source::Pipe(t / 2, Side::Client),
        Token(t) => Source::Pipe(t / 2, Side::Target),
    }
}

pub(super) fn pipe_tokens(key: usize) -> [Token; 2] {
    [Token(key * 2), Token(key * 2 + 1)]
}

pub(super) fn listener_token(key: usize) -> Token {
    Token(LISTENER_BASE + key)
}

pub(super) fn pooled_token(key: usize) -> Token {
    Token(POOLED_BASE + key)
}

pub(super) fn probe_token(key: usize) -> Token {
    Token(PROBE_BASE + key)
}

pub(super) fn awaiting_token(key: usize) -> Token {
    Token(AWAITING_BASE + key)
}

pub(super) fn inspecting_token(key: usize) -> Token {
    Token(INSPECTING_BASE + key)
}
