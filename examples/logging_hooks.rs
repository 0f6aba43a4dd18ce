//! A forwarder that logs every event its hooks hear: tcpipe's own command
//! line, with a line on stderr per event.
//!
//! ```sh
//! cargo run --example logging_hooks -- -l 127.0.0.1:7000 -t 127.0.0.1:6379
//! cargo run --example logging_hooks -- --config examples/tcpipe.toml
//! ```

use std::process::ExitCode;

use tcpipe::{
    cli, Connected, Direction, Forwarder, Hooks, PipeClosed, PipeControl, PipeId, PipeOpened,
    TargetHealth,
};

/// Writes each event on one line. A hook runs on the event loop's thread,
/// so it must not block: stderr is unbuffered and quick; a hook that writes
/// to a slow sink should hand the line to a thread of its own instead.
struct Logging;

impl Hooks for Logging {
    fn pipe_opened(&mut self, pipe: &PipeOpened<'_>, _: &mut PipeControl) {
        eprintln!(
            "pipe {}: opened on route {:?} from {} to {:?}",
            pipe.id, pipe.route, pipe.client, pipe.target
        );
    }

    fn connected(&mut self, pipe: &Connected<'_>, _: &mut PipeControl) {
        eprintln!(
            "pipe {}: connected to {} in {:?}",
            pipe.id, pipe.target, pipe.connect_time
        );
    }

    fn forwarded(&mut self, id: PipeId, direction: Direction, bytes: u64, _: &mut PipeControl) {
        eprintln!("pipe {id}: {bytes} bytes {direction:?}");
    }

    fn buffer_full(&mut self, id: PipeId, direction: Direction, _: &mut PipeControl) {
        eprintln!("pipe {id}: {direction:?} full: its source is no longer read");
    }

    fn buffer_drained(&mut self, id: PipeId, direction: Direction, _: &mut PipeControl) {
        eprintln!("pipe {id}: {direction:?} drained: its source is read again");
    }

    fn target_down(&mut self, target: &TargetHealth<'_>) {
        eprintln!(
            "{}/{} ({}) is down",
            target.route, target.target, target.addr
        );
    }

    fn target_up(&mut self, target: &TargetHealth<'_>) {
        eprintln!("{}/{} ({}) is up", target.route, target.target, target.addr);
    }

    fn pipe_closed(&mut self, pipe: &PipeClosed<'_>) {
        eprintln!(
            "pipe {}: closed ({:?}) after {:?}, {} bytes to the target, {} to the client",
            pipe.id, pipe.reason, pipe.duration, pipe.bytes_toward_target, pipe.bytes_toward_client
        );
    }
}

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args_os()) {
        Ok(invocation) => invocation,
        Err(exit) => {
            exit.print();
            return ExitCode::from(exit.code);
        }
    };
    let forwarder = Forwarder::builder(invocation.config).hooks(Logging).bind();
    let mut forwarder = match forwarder {
        Ok(forwarder) => forwarder,
        Err(e) => {
            eprintln!("logging_hooks: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    for (route, addr) in forwarder.listening() {
        eprintln!("route {route} listening on {addr}");
    }
    if let Err(e) = forwarder.handle_signals() {
        eprintln!("logging_hooks: {e}");
        return ExitCode::FAILURE;
    }
    match forwarder.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logging_hooks: {e}");
            ExitCode::FAILURE
        }
    }
}
