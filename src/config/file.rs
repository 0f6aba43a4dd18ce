//! The config file: TOML read into a [`Config`], with errors that name the
//! file, the line, the key path and the reason.
//!
//! ```toml
//! [global]                  # process-wide
//! max-connections = 10000
//!
//! [defaults]                # route options every route starts from
//! idle-timeout = "10m"
//!
//! [[route]]
//! name = "redis"
//! listen = ["127.0.0.1:7000"]
//! targets = ["10.0.0.1:6379", "10.0.0.2:6379"]
//! balance = "least-conn"
//! ```
//!
//! Keys are the command-line flags without `--`. Every key is first read
//! on its own ([`super::keys`]), so that a file with several unknown keys
//! or bad values is refused with all of them, each with its line; then
//! serde reads the whole ([`super::document`]), the flags given beside
//! `--config` are set over `[global]`, the same validation as for flags
//! runs, and every host name is resolved, so a file that loads is a file
//! that runs.

use std::fmt;
use std::path::{Path, PathBuf};

use super::document::Document;
use super::keys::key_problems;
#[cfg(test)]
use super::keys::{GLOBAL_KEYS, ROUTE_KEYS};
use super::location::{key_path_at, line_of, offset_of};
use super::{Config, ConfigError, Overrides};

/// Why a config file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// `None` for text that did not come from a file.
    pub file: Option<PathBuf>,
    /// 1-based line of the offending key or value, where known.
    pub line: Option<usize>,
    /// Key path, e.g. `route[1].idle-timeout`, where known.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
    /// Every further problem found in the same file, in the order they are
    /// written (each with no `further` of its own): a file with several
    /// unknown keys or bad values is refused with all of them at once.
    pub further: Vec<FileError>,
}

impl FileError {
    /// This problem and every further one, each on its own line when
    /// shown with [`FileError::line_text`].
    pub fn problems(&self) -> impl Iterator<Item = &FileError> {
        std::iter::once(self).chain(&self.further)
    }

    /// This problem alone, as one line: `file:line: key: reason`.
    pub fn line_text(&self) -> String {
        let mut one = self.clone();
        one.further.clear();
        one.to_string()
    }
}

/// Each problem as `file:line: key: reason`, joined with `; ` so that a
/// log line stays one line.
impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_one(f)?;
        for further in &self.further {
            f.write_str("; ")?;
            further.fmt_one(f)?;
        }
        Ok(())
    }
}

impl FileError {
    fn fmt_one(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for FileError {}

/// Reads, parses and validates a config file, resolving every host name.
pub fn load_file(path: &Path) -> Result<Config, FileError> {
    load_file_with(path, &Overrides::default())
}

/// [`load_file`], with `overrides` set over the file's `[global]` before
/// validation: what `tcpipe --config FILE --workers 2` reads, at startup and
/// at every reload.
pub fn load_file_with(path: &Path, overrides: &Overrides) -> Result<Config, FileError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        file: Some(path.to_path_buf()),
        line: None,
        key: None,
        reason: format!("cannot read: {e}"),
        further: Vec::new(),
    })?;
    Config::from_toml_with(&text, overrides).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        for further in &mut e.further {
            further.file = Some(path.to_path_buf());
        }
        e
    })
}

impl Config {
    /// Parses and validates config text in the file format, resolving
    /// every host name.
    pub fn from_toml(text: &str) -> Result<Config, FileError> {
        Config::from_toml_with(text, &Overrides::default())
    }

    /// [`Config::from_toml`], with `overrides` set over `[global]` before
    /// validation.
    pub fn from_toml_with(text: &str, overrides: &Overrides) -> Result<Config, FileError> {
        let problems = match toml::from_str::<toml::Table>(text) {
            Ok(table) => match key_problems(&table) {
                problems if !problems.is_empty() => problems,
                _ => match toml::from_str::<Document>(text).map(|d| d.into_config(overrides)) {
                    Ok(Ok(config)) => return Ok(config),
                    Ok(Err(problem)) => vec![problem],
                    Err(e) => vec![Problem::from_toml(text, &e)],
                },
            },
            Err(e) => vec![Problem::from_toml(text, &e)],
        };
        let mut located: Vec<(Option<usize>, FileError)> = problems
            .into_iter()
            .map(|problem| {
                let at = problem
                    .at
                    .or_else(|| problem.key.as_deref().and_then(|key| offset_of(text, key)));
                let error = FileError {
                    file: None,
                    line: at.map(|offset| line_of(text, offset)),
                    key: problem.key,
                    reason: problem.reason,
                    further: Vec::new(),
                };
                (at, error)
            })
            .collect();
        // In the order they are written; `None` (no place) last.
        located.sort_by_key(|(at, _)| at.unwrap_or(usize::MAX));
        let mut errors = located.into_iter().map(|(_, error)| error);
        let mut first = errors.next().unwrap_or_else(|| FileError {
            file: None,
            line: None,
            key: None,
            reason: "cannot be read as a config".into(),
            further: Vec::new(),
        });
        first.further = errors.collect();
        Err(first)
    }
}

/// What went wrong, before it is placed in the file.
pub(super) struct Problem {
    key: Option<String>,
    /// Byte offset in the text.
    at: Option<usize>,
    reason: String,
}

impl Problem {
    /// What the TOML reader or serde refused, placed by its span.
    fn from_toml(text: &str, e: &toml::de::Error) -> Problem {
        Problem {
            key: e.span().and_then(|span| key_path_at(text, span.start)),
            at: e.span().map(|span| span.start),
            reason: e.message().trim().to_string(),
        }
    }

    pub(super) fn at_key(key: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            key: Some(key.into()),
            at: None,
            reason: reason.into(),
        }
    }
}

impl From<ConfigError> for Problem {
    fn from(e: ConfigError) -> Problem {
        Problem::at_key(e.key, format!("invalid value '{}': {}", e.value, e.reason))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Balance;

    fn error_of(text: &str) -> FileError {
        Config::from_toml(text).expect_err("the text should be rejected")
    }

    const TWO_ROUTES: &str = r#"
[global]
max-connections = 500
drain-timeout = "0"

[defaults]
idle-timeout = "10m"
buffer-size = "16k"

[[route]]
name = "a"
listen = "127.0.0.1:7000"
targets = ["127.0.0.1:6379", "127.0.0.1:6380"]

[[route]]
name = "b"
listen = ["127.0.0.1:7001", "[::1]:7001"]
targets = "127.0.0.1:8080"
balance = "least-conn"
idle-timeout = "0"
low-water = 1024
"#;

    #[test]
    fn routes_take_their_options_then_the_defaults_then_the_builtins() {
        let config = Config::from_toml(TWO_ROUTES).expect("valid");
        assert_eq!(config.max_connections, 500);
        assert_eq!(config.drain_timeout, None);
        let a = config.route("a").expect("route a");
        assert_eq!(a.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(a.buffer_size, 16 * 1024);
        assert_eq!(a.low_water, 8 * 1024);
        assert_eq!(a.targets.len(), 2);
        assert_eq!(a.balance, Balance::RoundRobin);
        let b = config.route("b").expect("route b");
        assert_eq!(b.idle_timeout, None);
        assert_eq!(b.low_water, 1024);
        assert_eq!(b.listen.len(), 2);
        assert_eq!(b.balance, Balance::LeastConn);
        assert_eq!(b.connect_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn an_unknown_key_is_named_with_its_path_and_line() {
        let text = TWO_ROUTES.replace("balance = \"least-conn\"", "balanse = \"least-conn\"");
        let e = error_of(&text);
        assert_eq!(e.key.as_deref(), Some("route[1].balanse"), "{e}");
        assert_eq!(e.line, Some(19), "{e}");
        assert_eq!(
            e.reason, "unknown key `balanse`; did you mean `balance`?",
            "{e}"
        );
        assert!(e.further.is_empty(), "{e}");
    }

    #[test]
    fn every_bad_key_of_a_file_is_reported_in_file_order() {
        let text = TWO_ROUTES
            .replace("balance = \"least-conn\"", "balance = \"fastest\"")
            .replace("idle-timeout = \"10m\"", "idle_timeout = \"10m\"")
            .replace(
                "max-connections = 500",
                "max-conections = 500\nbuffer-size = \"1m\"",
            )
            .replace("low-water = 1024", "low-water = \"1kb\"");
        let e = error_of(&text);
        let found: Vec<(Option<usize>, Option<&str>)> =
            e.problems().map(|p| (p.line, p.key.as_deref())).collect();
        assert_eq!(
            found,
            [
                (Some(3), Some("global.max-conections")),
                (Some(4), Some("global.buffer-size")),
                (Some(8), Some("defaults.idle_timeout")),
                (Some(20), Some("route[1].balance")),
                (Some(22), Some("route[1].low-water")),
            ],
            "{e}"
        );
        let reasons: Vec<&str> = e.problems().map(|p| p.reason.as_str()).collect();
        assert!(
            reasons[0].ends_with("did you mean `max-connections`?"),
            "{e}"
        );
        assert!(reasons[1].contains("a route option"), "{e}");
        assert!(reasons[2].ends_with("did you mean `idle-timeout`?"), "{e}");
        assert!(reasons[3].contains("fastest"), "{e}");
        assert!(reasons[4].contains("ambiguous unit 'kb'"), "{e}");
    }

    #[test]
    fn every_listed_key_is_one_the_file_reads() {
        for (keys, table) in [(&GLOBAL_KEYS[..], "global"), (&ROUTE_KEYS[..], "defaults")] {
            for key in keys {
                let text = format!("[{table}]\n{key} = {{}}\n");
                let e = error_of(&text);
                assert!(!e.reason.contains("unknown"), "{key}: {e}");
            }
        }
    }

    #[test]
    fn a_bad_value_is_named_with_its_path_and_reason() {
        let text = TWO_ROUTES.replace("idle-timeout = \"0\"", "idle-timeout = \"5\"");
        let e = error_of(&text);
        assert_eq!(e.key.as_deref(), Some("route[1].idle-timeout"), "{e}");
        assert!(e.reason.contains("missing unit"), "{e}");
        let text = TWO_ROUTES.replace("max-connections = 500", "max-connections = -1");
        let e = error_of(&text);
        assert_eq!(e.key.as_deref(), Some("global.max-connections"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn validation_errors_point_at_the_key() {
        let text = TWO_ROUTES.replace("low-water = 1024", "low-water = \"1m\"");
        let e = error_of(&text);
        assert_eq!(e.key.as_deref(), Some("route[1].low-water"), "{e}");
        assert_eq!(e.line, Some(21), "{e}");
        assert!(e.reason.contains("must be below buffer-size"), "{e}");
        let text = TWO_ROUTES.replace("name = \"b\"", "name = \"a\"");
        let e = error_of(&text);
        assert_eq!(e.key.as_deref(), Some("route[1].name"), "{e}");
        assert!(e.reason.contains("another route has this name"), "{e}");
        let text = TWO_ROUTES.replace("127.0.0.1:7001", "127.0.0.1:7000");
        let e = error_of(&text);
        assert_eq!(e.key.as_deref(), Some("route[1].listen"), "{e}");
        assert!(e.reason.contains("where route 'a' listens"), "{e}");
    }

    #[test]
    fn missing_and_misplaced_keys_are_named() {
        let e = error_of("[[route]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n");
        assert_eq!(e.key.as_deref(), Some("route[0]"), "{e}");
        assert!(e.reason.contains("missing key 'targets'"), "{e}");
        let e = error_of("[defaults]\nlisten = \"127.0.0.1:1\"\n");
        assert_eq!(e.key.as_deref(), Some("defaults.listen"), "{e}");
        let e = error_of("");
        assert!(e.reason.contains("at least one route"), "{e}");
    }

    #[test]
    fn a_syntax_error_gives_the_line() {
        let e = error_of("[[route]]\nname = \"a\"\nlisten = [\n");
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn an_unresolvable_target_is_named_by_position() {
        let text = TWO_ROUTES.replace("\"127.0.0.1:6380\"", "\"no-such-host.invalid:80\"");
        let e = error_of(&text);
        assert_eq!(e.key.as_deref(), Some("route[0].targets[1]"), "{e}");
        assert_eq!(e.line, Some(13), "{e}");
    }
}
