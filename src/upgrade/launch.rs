//! Which binary an upgrade starts, and with what arguments: the path this
//! process was started from and its arguments, both captured when the
//! forwarder binds. A package upgrade replaces the file; `/proc/self/exe`
//! read later would name the deleted old inode. `--upgrade-binary` (or
//! `[global] upgrade-binary`, `Config::upgrade_binary`) names another.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

struct Launch {
    /// The path the process was started from, or why it is unknown.
    started_from: Result<PathBuf, String>,
    args: Vec<OsString>,
}

static LAUNCH: OnceLock<Launch> = OnceLock::new();
/// The config's choice, which replaces `started_from` (set at every bind
/// and reload).
static CHOSEN: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Remembers this process's binary and arguments (once: the first
/// forwarder to bind) and the config's choice of binary.
pub(crate) fn capture(chosen: Option<&PathBuf>) {
    LAUNCH.get_or_init(|| Launch {
        started_from: std::env::current_exe().map_err(|e| e.to_string()),
        args: std::env::args_os().skip(1).collect(),
    });
    choose(chosen);
}

/// The config (reloaded) names the binary to start.
pub(crate) fn choose(chosen: Option<&PathBuf>) {
    *CHOSEN.lock().unwrap_or_else(|p| p.into_inner()) = chosen.cloned();
}

/// The binary and arguments to start, or why none is known.
pub(crate) fn command() -> Result<(PathBuf, Vec<OsString>), String> {
    let launch = LAUNCH
        .get()
        .ok_or("the forwarder was never bound, so its binary is unknown")?;
    let chosen = CHOSEN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let binary = match chosen {
        Some(path) => path,
        None => launch
            .started_from
            .clone()
            .map_err(|e| format!("cannot tell which binary this process runs: {e}"))?,
    };
    Ok((binary, launch.args.clone()))
}
