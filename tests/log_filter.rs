//! An invalid `RUST_LOG` gives a warning on stderr that names the variable
//! and the bad directive, instead of the silence env_logger leaves (a word
//! that is not a level reads as a module name, and nothing is logged);
//! what is left of the filter still applies, and `info` if nothing is.

mod common;
use common::*;

/// The warnings, once startup has been logged (readiness can come first).
fn warnings_about_rust_log(tcpipe: &Tcpipe) -> Vec<String> {
    tcpipe
        .startup_logs()
        .into_iter()
        .filter(|line| line.contains("warning") && line.contains("RUST_LOG"))
        .collect()
}

#[test]
fn a_misspelt_level_is_warned_about_and_info_still_logs() {
    let tcpipe = Tcpipe::start_logging("debugg", echo_server(), &[]);
    let warnings = warnings_about_rust_log(&tcpipe);
    assert!(
        warnings.iter().any(|line| line.contains("'debugg'")),
        "no warning names the bad directive: {:#?}",
        tcpipe.logs()
    );
}

#[test]
fn a_bad_level_for_a_module_is_dropped_and_the_rest_applies() {
    let tcpipe = Tcpipe::start_logging("info,tcpipe=loud", echo_server(), &[]);
    let warnings = warnings_about_rust_log(&tcpipe);
    assert_eq!(warnings.len(), 1, "{:#?}", tcpipe.logs());
    assert!(warnings[0].contains("'loud'"), "{}", warnings[0]);
}

#[test]
fn a_valid_filter_gives_no_warning() {
    let tcpipe = Tcpipe::start_logging("info,tcpipe::reactor=debug,mio=warn", echo_server(), &[]);
    assert!(
        warnings_about_rust_log(&tcpipe).is_empty(),
        "{:#?}",
        tcpipe.logs()
    );
    // The debug directive for a module took effect: a pipe's accept is logged.
    let client = tcpipe.connect();
    assert!(
        tcpipe.wait_for_log("accepted", DEADLINE),
        "tcpipe::reactor=debug did not apply; logs: {:#?}",
        tcpipe.logs()
    );
    drop(client);
}
