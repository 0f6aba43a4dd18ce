//! tcpipe with a hook on every event that only counts: what hooks cost,
//! measured by the bench with this binary as the baseline.
//!
//! ```sh
//! cargo build --release --example counting_hooks
//! cargo bench -- --quick --baseline target/release/examples/counting_hooks
//! ```
//!
//! It takes tcpipe's command line, and prints the counts when it exits.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tcpipe::{
    cli, Connected, Direction, Forwarder, Hooks, PipeClosed, PipeControl, PipeId, PipeOpened,
    TargetHealth,
};

/// Calls of each hook, and bytes forwarded.
#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    connected: AtomicU64,
    forwarded: AtomicU64,
    bytes: AtomicU64,
    full_or_drained: AtomicU64,
    health: AtomicU64,
    closed: AtomicU64,
}

struct Counting(Arc<Counts>);

impl Hooks for Counting {
    fn pipe_opened(&mut self, _: &PipeOpened<'_>, _: &mut PipeControl) {
        self.0.opened.fetch_add(1, Relaxed);
    }
    fn connected(&mut self, _: &Connected<'_>, _: &mut PipeControl) {
        self.0.connected.fetch_add(1, Relaxed);
    }
    fn forwarded(&mut self, _: PipeId, _: Direction, bytes: u64, _: &mut PipeControl) {
        self.0.forwarded.fetch_add(1, Relaxed);
        self.0.bytes.fetch_add(bytes, Relaxed);
    }
    fn buffer_full(&mut self, _: PipeId, _: Direction, _: &mut PipeControl) {
        self.0.full_or_drained.fetch_add(1, Relaxed);
    }
    fn buffer_drained(&mut self, _: PipeId, _: Direction, _: &mut PipeControl) {
        self.0.full_or_drained.fetch_add(1, Relaxed);
    }
    fn target_down(&mut self, _: &TargetHealth<'_>) {
        self.0.health.fetch_add(1, Relaxed);
    }
    fn target_up(&mut self, _: &TargetHealth<'_>) {
        self.0.health.fetch_add(1, Relaxed);
    }
    fn pipe_closed(&mut self, _: &PipeClosed<'_>) {
        self.0.closed.fetch_add(1, Relaxed);
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
    let counts = Arc::new(Counts::default());
    let bound = Forwarder::builder(invocation.config)
        .hooks(Counting(Arc::clone(&counts)))
        .bind();
    let mut forwarder = match bound {
        Ok(forwarder) => forwarder,
        Err(e) => {
            eprintln!("counting_hooks: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if let Err(e) = forwarder.handle_signals() {
        eprintln!("counting_hooks: {e}");
        return ExitCode::FAILURE;
    }
    let ran = forwarder.run();
    eprintln!(
        "opened {} connected {} forwarded {} ({} bytes) full/drained {} health {} closed {}",
        counts.opened.load(Relaxed),
        counts.connected.load(Relaxed),
        counts.forwarded.load(Relaxed),
        counts.bytes.load(Relaxed),
        counts.full_or_drained.load(Relaxed),
        counts.health.load(Relaxed),
        counts.closed.load(Relaxed),
    );
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("counting_hooks: {e}");
            ExitCode::FAILURE
        }
    }
}
