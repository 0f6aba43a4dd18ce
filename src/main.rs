#![deny(unsafe_code)]

use std::process::ExitCode;

use tcpipe::{cli, Forwarder};

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args_os()) {
        Ok(config) => config,
        Err(exit) => {
            exit.print();
            return ExitCode::from(exit.code);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let mut forwarder = match Forwarder::bind(config) {
        Ok(forwarder) => forwarder,
        Err(e) => {
            eprintln!("tcpipe: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if let Err(e) = forwarder.handle_signals() {
        eprintln!("tcpipe: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    match forwarder.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
