//! How weights and backups are written: `--target ADDR[,weight=N][,backup]`
//! on the command line, `{ address = ..., weight = N, backup = true }` in
//! the file. A bad one exits 2 with one line naming the flag or key path,
//! the value and the reason, at startup and under `--check`; a good one is
//! named in `--check`'s summary and in the startup line that lists the
//! targets.

mod common;
use common::config::ConfigFile;
use common::*;

/// `tcpipe ARGS`, which must fail with exit code 2 and one line on stderr.
fn usage_error(args: &[&str]) -> String {
    let output = run_tcpipe(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr:?}");
    lines[0].to_string()
}

fn assert_names(line: &str, fragments: &[&str]) {
    for fragment in fragments {
        assert!(line.contains(fragment), "should say {fragment:?}: {line}");
    }
}

#[test]
fn a_bad_target_option_names_the_flag_the_value_and_the_reason() {
    for (value, reason) in [
        ("127.0.0.1:1,weight=x", "invalid weight 'x'"),
        ("127.0.0.1:1,weight=-2", "must not be negative"),
        ("127.0.0.1:1,weight=10001", "at most 10000"),
        ("127.0.0.1:1,wieght=3", "unknown option 'wieght=3'"),
        ("127.0.0.1:1,backup=yes", "backup takes no value"),
        ("127.0.0.1:1,weight=2,weight=3", "twice"),
    ] {
        let line = usage_error(&["-l", "127.0.0.1:0", "-t", value, "--check"]);
        assert_names(&line, &["--target", &format!("'{value}'"), reason]);
    }
}

/// A file of one route whose targets are `targets` (TOML).
fn file_with_targets(targets: &str) -> ConfigFile {
    ConfigFile::new(&format!(
        "[[route]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ntargets = {targets}\n"
    ))
}

#[test]
fn a_bad_target_table_names_its_key_path_the_value_and_the_reason() {
    for (targets, fragments) in [
        (
            r#"["127.0.0.1:1", { address = "127.0.0.1:2", weight = -3 }]"#,
            &["route[0].targets[1].weight", "-3", "must not be negative"][..],
        ),
        (
            r#"[{ address = "127.0.0.1:2", weight = 20000 }]"#,
            &["route[0].targets[0].weight", "20000", "at most 10000"],
        ),
        (
            r#"[{ address = "127.0.0.1:2", weight = "3" }]"#,
            &["route[0].targets[0].weight", "\"3\"", "whole number"],
        ),
        (
            r#"[{ address = "127.0.0.1:2", backup = "yes" }]"#,
            &["route[0].targets[0].backup", "\"yes\"", "true or false"],
        ),
        (
            r#"[{ addr = "127.0.0.1:2" }]"#,
            &["route[0].targets[0].addr", "unknown key `addr`"],
        ),
        (
            r#"[{ weight = 2 }]"#,
            &["route[0].targets[0]", "missing key 'address'"],
        ),
        (
            r#"["127.0.0.1:1", { address = "127.0.0.1:99999" }]"#,
            &["route[0].targets[1]", "'127.0.0.1:99999'"],
        ),
        (r#"[3]"#, &["route[0].targets[0]", "a table"]),
    ] {
        let file = file_with_targets(targets);
        for args in [
            vec!["--check", "--config", file.path_str()],
            vec!["--config", file.path_str()],
        ] {
            let line = usage_error(&args);
            let mut all = fragments.to_vec();
            all.push(file.path_str());
            assert_names(&line, &all);
        }
    }
}

#[test]
fn the_check_and_the_startup_line_name_weights_and_backups() {
    let file = file_with_targets(
        r#"["127.0.0.1:1", { address = "127.0.0.1:2", weight = 3 }, { address = "127.0.0.1:9", backup = true }]"#,
    );
    let output = run_tcpipe(&[
        "--check",
        "--config",
        file.path_str(),
        "--max-connections",
        "100",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("3 targets (weights 1 to 3, 1 backup)"),
        "{stdout}"
    );
    let output = run_tcpipe(&[
        "--check",
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1,weight=0",
        "-t",
        "127.0.0.1:2,backup,weight=2",
        "--max-connections",
        "100",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("2 targets (weights 0 to 2, 1 backup)"),
        "{stdout}"
    );

    let output = run_tcpipe(&[
        "--check",
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1,weight=0",
        "--max-connections",
        "100",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("1 target (weight 0)"), "{stdout}");
    assert!(
        stderr
            .contains("warning: '1 target of weight 0' for '--target': every target has weight 0"),
        "{stderr}"
    );

    let tcpipe = Tcpipe::start_config(&file);
    let lines = tcpipe.startup_logs().join("\n");
    assert!(
        lines.contains("forwarding to 127.0.0.1:1, 127.0.0.1:2 weight 3, 127.0.0.1:9 backup"),
        "{lines}"
    );
}
