//! Config rules of routes that share a listen address: each but one needs
//! a `match` table, two equally specific matches are a tie, and the keys
//! of `match` are checked like any other; each refusal one line naming
//! the key, the value and the reason, exit code 2.

mod common;
use common::config::*;
use common::*;

fn check(text: &str) -> (ConfigFile, std::process::Output) {
    let file = ConfigFile::new(text);
    let output = run_tcpipe(&["--check", "--config", file.path_str()]);
    (file, output)
}

/// The one stderr line of `--check` on `text`, which must be refused.
fn refused(text: &str) -> String {
    let (_file, output) = check(text);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    stderr.trim_end().to_string()
}

fn assert_names(line: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(line.contains(fragment), "should say {fragment:?}: {line}");
    }
}

fn two_routes(first: &str, second: &str) -> String {
    format!(
        "[[route]]\nname = \"a\"\nlisten = \"127.0.0.1:7443\"\ntargets = \"127.0.0.1:9001\"\n{first}\n\
         [[route]]\nname = \"b\"\nlisten = \"127.0.0.1:7443\"\ntargets = \"127.0.0.1:9002\"\n{second}\n"
    )
}

#[test]
fn routes_with_match_tables_share_an_address() {
    let (_file, output) = check(&two_routes(
        "match.sni = [\"a.example\", \"*.a.example\"]\nmatch.alpn = [\"h2\"]",
        "",
    ));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("(2 routes, 1 listen address, 2 targets;"),
        "one shared socket: {stdout}"
    );
}

#[test]
fn two_defaults_on_one_address_are_refused() {
    let line = refused(&two_routes("", ""));
    assert_names(
        &line,
        &["route[1].listen", "127.0.0.1:7443", "route 'a'", "`match`"],
    );
}

#[test]
fn equally_specific_matches_are_a_tie_naming_both_routes() {
    let line = refused(&two_routes(
        "match.sni = [\"a.example\"]",
        "match.sni = [\"b.example\", \"A.Example\"]",
    ));
    assert_names(&line, &["route[1].match", "sni a.example", "route 'a'"]);
    let line = refused(&two_routes(
        "match.protocol = \"ssh\"",
        "match.protocol = \"ssh\"",
    ));
    assert_names(&line, &["route[1].match", "protocol ssh", "route 'a'"]);
    // More specific is no tie: a name and a name with ALPN.
    let (_file, output) = check(&two_routes(
        "match.sni = [\"a.example\"]",
        "match.sni = [\"a.example\"]\nmatch.alpn = [\"h2\"]",
    ));
    assert!(output.status.success());
}

#[test]
fn match_keys_are_checked() {
    let line = refused(&two_routes("match.sni = [\"a.*.example\"]", ""));
    assert_names(&line, &["route[0].match.sni", "a.*.example", "wildcard"]);
    let line = refused(&two_routes("match.protocol = \"smtp\"", ""));
    assert_names(&line, &["route[0].match", "smtp"]);
    let line = refused(&two_routes("match.host = [\"a.example\"]", ""));
    assert_names(&line, &["route[0].match", "host"]);
    let line = refused(&format!(
        "[defaults]\nmatch.sni = [\"a.example\"]\n{}",
        two_routes("match.protocol = \"tls\"", "")
    ));
    assert_names(&line, &["defaults.match", "[[route]]"]);
    let line = refused(&two_routes(
        "match.protocol = \"tls\"\naccept-proxy = true",
        "",
    ));
    assert_names(&line, &["accept-proxy", "route 'a'", "agree"]);
}
