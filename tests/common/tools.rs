//! External tools some tests drive. `src/build.rs` sets `has_TOOL` when
//! the tool is on this machine (and always under CI), and such a test is
//! marked `#[cfg_attr(not(has_TOOL), ignore = "needs TOOL ...")]`, so that
//! `cargo test` shows it as ignored, with the reason, where the tool is
//! missing. A test that runs anyway (under CI, or with `--ignored`) and
//! finds no tool fails here, saying which package brings it.
#![allow(dead_code)]

use std::process::{Command, Stdio};

/// The first of `candidates` that runs `ARG` successfully; a panic naming
/// `package` if none does.
pub fn require(candidates: &[&str], version_arg: &str, package: &str) -> String {
    for candidate in candidates {
        let runs = Command::new(candidate)
            .arg(version_arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if runs {
            return candidate.to_string();
        }
    }
    panic!(
        "{} is not installed (Debian package '{package}'); this test needs it",
        candidates[0]
    );
}
