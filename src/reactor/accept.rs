//! Accepting clients: until the backlog is empty, within the per-turn cap,
//! the connection limit, and the descriptors the process has.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use log::{debug, error, info, warn};
use mio::net::TcpStream;
use mio::Interest;
use socket2::SockRef;

use super::{AcceptTrigger, Reactor, Timer, ACCEPTS_PER_TURN, ACCEPT_RETRY, LISTENER};
use crate::net;
use crate::pipe::Pipe;
use crate::upstream::Tried;

impl Reactor {
    pub(super) fn accept_connections(&mut self, trigger: AcceptTrigger) {
        if self.accept_backoff.is_some() && trigger == AcceptTrigger::ListenerEvent {
            // Only the retry timer or a freed pipe may try again, or we spin.
            return;
        }
        self.accept_more_pending = false;
        for _ in 0..ACCEPTS_PER_TURN {
            if self.listener.is_none() {
                return;
            }
            if self.pipes.len() >= self.config.max_connections {
                self.pause_listener();
                return;
            }
            if !self.resume_listener() {
                return;
            }
            if let Err(e) = self.reserve_upstream_socket() {
                return self.back_off_accepting(e);
            }
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((client, peer)) => self.open_pipe(client, peer),
                Err(e) => {
                    if e.kind() == ErrorKind::WouldBlock {
                        self.backlog_drained();
                        return;
                    }
                    if net::is_transient_accept_error(&e) {
                        debug!("accept: {e}; going on");
                        continue;
                    }
                    return self.back_off_accepting(e);
                }
            }
        }
        self.accept_more_pending = true;
    }

    fn pause_listener(&mut self) {
        if !self.listener_registered {
            return;
        }
        if let Some(listener) = self.listener.as_mut() {
            if let Err(e) = self.poll.registry().deregister(listener) {
                error!("cannot pause the listener: {e}");
                return;
            }
        }
        self.listener_registered = false;
        if self.at_limit_since.is_none() {
            self.at_limit_since = Some(self.now);
            info!(
                "connection limit of {} reached; new clients wait in the backlog",
                self.config.max_connections
            );
        }
    }

    /// Returns false if the listener cannot be registered again.
    fn resume_listener(&mut self) -> bool {
        if self.listener_registered {
            return true;
        }
        let Some(listener) = self.listener.as_mut() else {
            return false;
        };
        match self
            .poll
            .registry()
            .register(listener, LISTENER, Interest::READABLE)
        {
            Ok(()) => {
                self.listener_registered = true;
                debug!("below the connection limit; accepting again");
                true
            }
            Err(e) => {
                self.back_off_accepting(e);
                false
            }
        }
    }

    /// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or any
    /// other error that is not about one connection: never exit, never spin.
    /// Retry on a short timer and whenever a pipe closes; say so once per burst.
    fn back_off_accepting(&mut self, e: io::Error) {
        self.failed_accepts += 1;
        if self.accept_backoff.is_none() {
            self.accept_backoff = Some(self.now);
            warn!(
                "cannot accept: {e}; retrying every {} ms and whenever a pipe closes ({} live pipes)",
                ACCEPT_RETRY.as_millis(),
                self.pipes.len()
            );
        }
        if !self.accept_retry_armed {
            self.accept_retry_armed = true;
            self.timers
                .push(self.now + ACCEPT_RETRY, Timer::AcceptRetry);
        }
    }

    /// Every waiting client has been taken: a shortage or a stretch at the
    /// connection limit is over only now, not when one client got through,
    /// so each is logged once however many clients it held back.
    fn backlog_drained(&mut self) {
        if let Some(since) = self.accept_backoff.take() {
            info!(
                "accepting again after {:.1?} ({} attempts failed)",
                self.now.saturating_duration_since(since),
                self.failed_accepts
            );
            self.failed_accepts = 0;
        }
        if let Some(since) = self.at_limit_since.take() {
            info!(
                "below the connection limit again after {:.1?}",
                self.now.saturating_duration_since(since)
            );
        }
    }

    fn open_pipe(&mut self, client: TcpStream, peer: SocketAddr) {
        let id = self.next_pipe_id;
        self.next_pipe_id += 1;
        self.metrics.accepted_total.add(1);
        let mut tried = Tried::default();
        let mut attempts = 0;
        let Some((index, target, connected)) = self.dial(id, peer.ip(), &mut tried, &mut attempts)
        else {
            warn!("pipe {id}: no target could be reached in {attempts} attempts; resetting client {peer}");
            self.metrics.aborted_total.add(1);
            net::abort_on_close(SockRef::from(&client));
            return;
        };
        debug!(
            "pipe {id}: accepted {peer}, {} {}",
            if connected {
                "using a pooled connection to"
            } else {
                "connecting to"
            },
            self.upstreams.get(index).name
        );
        self.upstreams.pipe_assigned(index);
        let mut pipe = Pipe::new(id, (client, peer), (target, index), connected, self.now);
        pipe.tried = tried;
        pipe.attempts = attempts;
        let key = self.pipes.insert(pipe);
        self.metrics.live_pipes.add(1);
        self.drive(key);
    }
}
