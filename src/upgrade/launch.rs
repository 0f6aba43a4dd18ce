//! Which binary an upgrade starts, and with what arguments: the path this
//! process was started from and its arguments, both captured when the
//! forwarder binds. A package upgrade replaces the file; `/proc/self/exe`
//! read later would name the deleted old inode. `--upgrade-binary` (or
//! `[global] upgrade-binary`, `Config::upgrade_binary`, kept per forwarder
//! by its crew) names another.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Launch {
    /// The path the process was started from, or why it is unknown.
    started_from: Result<PathBuf, String>,
    args: Vec<OsString>,
}

static LAUNCH: OnceLock<Launch> = OnceLock::new();

/// Remembers this process's binary and arguments (once: the first
/// forwarder to bind).
pub(crate) fn capture() {
    LAUNCH.get_or_init(|| Launch {
        started_from: std::env::current_exe().map_err(|e| e.to_string()),
        args: std::env::args_os().skip(1).collect(),
    });
}

/// The binary (`chosen`, else the one this process was started from) and
/// arguments to start, or why none is known.
pub(crate) fn command(chosen: Option<PathBuf>) -> Result<(PathBuf, Vec<OsString>), String> {
    let launch = LAUNCH
        .get()
        .ok_or("the forwarder was never bound, so its binary is unknown")?;
    let binary = match chosen {
        Some(path) => path,
        None => launch
            .started_from
            .clone()
            .map_err(|e| format!("cannot tell which binary this process runs: {e}"))?,
    };
    Ok((binary, launch.args.clone()))
}
