#![deny(unsafe_code)]

use std::process::ExitCode;

use tcpipe::{cli, Forwarder};

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args_os()) {
        Ok(invocation) => invocation,
        Err(exit) => {
            exit.print();
            return ExitCode::from(exit.code);
        }
    };
    if invocation.check {
        println!("{}", cli::check_summary(&invocation));
        return ExitCode::SUCCESS;
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let mut forwarder = match Forwarder::bind(invocation.config) {
        Ok(forwarder) => forwarder,
        Err(e) => {
            eprintln!("tcpipe: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if let Some(file) = invocation.file {
        forwarder.reload_on_sighup(file);
    }
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
