#![deny(unsafe_code)]

mod log_filter;

use std::process::ExitCode;
use std::time::Duration;

use tcpipe::{cli, raise_fd_limit, FdLimit, Forwarder};

/// How long the admin endpoint may take, once the loop has ended, to send
/// the answers under way (`POST /v1/upgrade`'s, above all).
const ADMIN_LAST_ANSWERS: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if cli::ctl::is_ctl(&args) {
        return ExitCode::from(cli::ctl::main(&args));
    }
    let invocation = match cli::parse(args) {
        Ok(invocation) => invocation,
        Err(exit) => {
            exit.print();
            return ExitCode::from(exit.code);
        }
    };
    // Before the warnings, which compare max-connections with the limit,
    // and before --check, which shows what a start would.
    let fd_limit = raise_fd_limit();
    if invocation.check {
        if let Err(e) = &fd_limit {
            eprintln!("tcpipe: warning: cannot raise the file descriptor limit: {e}");
        }
        for warning in cli::warnings(&invocation) {
            eprintln!("tcpipe: warning: {warning}");
        }
        println!("{}", cli::check_summary(&invocation));
        return ExitCode::SUCCESS;
    }
    let filter = log_filter::from_env();
    for warning in &filter.warnings {
        eprintln!("tcpipe: warning: {warning}");
    }
    let mut logger = env_logger::Builder::new();
    logger.parse_filters(&filter.directives);
    if let Ok(style) = std::env::var(env_logger::DEFAULT_WRITE_STYLE_ENV) {
        logger.parse_write_style(&style);
    }
    logger.init();
    match fd_limit {
        Ok(FdLimit { was, now }) if was != now => {
            log::info!("file descriptor limit raised from {was} to {now}");
        }
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the file descriptor limit: {e}"),
    }
    for warning in cli::warnings(&invocation) {
        log::warn!("{warning}");
    }

    let bound = Forwarder::builder(invocation.config.clone())
        .systemd_sockets()
        .bind();
    let mut forwarder = match bound {
        Ok(forwarder) => forwarder,
        Err(e) => {
            eprintln!("tcpipe: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    // Served until the loop ends; dropping it removes its socket file.
    let admin = match cli::serve_admin(&mut forwarder, &invocation.config) {
        Ok(admin) => admin,
        Err(e) => {
            eprintln!("tcpipe: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    if let Some(file) = invocation.file {
        forwarder.reload_on_sighup_with(file, invocation.overrides);
    }
    forwarder.notify_systemd();
    if let Err(e) = forwarder.handle_signals() {
        eprintln!("tcpipe: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let ran = forwarder.run();
    if let Some(admin) = admin {
        admin.finish(ADMIN_LAST_ANSWERS);
    }
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
