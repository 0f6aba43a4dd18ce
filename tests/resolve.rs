//! Targets given by host name: resolved at startup and served; a name that
//! does not resolve is a usage error naming it.

mod common;
use common::upstreams::*;
use common::*;

#[test]
fn a_target_given_as_localhost_is_resolved_at_startup_and_served() {
    let named = Backend::echo();
    let name = format!("localhost:{}", named.addr.port());
    let tcpipe = Tcpipe::start(&name, &["--metrics", "127.0.0.1:0"]);
    for n in 0..5 {
        serve_client(&tcpipe, n);
    }
    assert_eq!(named.served(), 5, "every client should reach {name}");
    // Metrics name the target as given, not as resolved.
    let connects = tcpipe.scrape().get(
        "tcpipe_target_connect_attempts_total",
        &[("route", "default"), ("target", &name)],
    );
    assert_eq!(connects, 5.0);
}

/// Runs tcpipe with `targets` and asserts it exits 2 with one line naming
/// `unresolvable`.
fn assert_usage_error_naming(targets: &[&str], unresolvable: &str) {
    let mut args = vec!["-l", "127.0.0.1:0"];
    for target in targets {
        args.extend(["-t", target]);
    }
    let output = run_tcpipe(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an unresolvable target should be a usage error; stderr: {stderr}"
    );
    assert!(
        stderr.contains(unresolvable) && stderr.contains("--target"),
        "the error should name the flag and the target: {stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
}

#[test]
fn an_unresolvable_target_is_a_usage_error_naming_it() {
    assert_usage_error_naming(&["no-such-host.invalid:80"], "no-such-host.invalid:80");
}

#[test]
fn an_unresolvable_target_among_good_ones_is_a_usage_error_naming_it() {
    let good = refused_addr().to_string();
    assert_usage_error_naming(
        &[&good, "no-such-host.invalid:80", "localhost:80"],
        "no-such-host.invalid:80",
    );
}
