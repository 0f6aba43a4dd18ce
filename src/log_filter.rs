//! `RUST_LOG` checked before env_logger sees it. env_logger takes a word
//! that is not a level for a module name, so `RUST_LOG=debugg` silently
//! logs nothing at all; here each directive that names neither a level nor
//! a module that logs is dropped with a warning, and a filter left empty
//! falls back to `info`.

use log::LevelFilter;

/// The variable read.
const VARIABLE: &str = "RUST_LOG";

/// What tcpipe logs at without `RUST_LOG`, or with nothing usable in it.
const DEFAULT: &str = "info";

/// Where log lines come from: tcpipe itself, and mio below it.
const LOGGING_CRATES: [&str; 2] = ["tcpipe", "mio"];

/// The filter to give env_logger, and what was wrong with the one given.
#[derive(Debug, PartialEq, Eq)]
pub struct LogFilter {
    pub directives: String,
    pub warnings: Vec<String>,
}

/// `RUST_LOG`, checked.
pub fn from_env() -> LogFilter {
    check(std::env::var(VARIABLE).ok().as_deref())
}

fn check(spec: Option<&str>) -> LogFilter {
    let spec = spec.map(str::trim).unwrap_or_default();
    let mut warnings = Vec::new();
    let mut bad = |reason: String| warnings.push(format!("{VARIABLE}: {reason}; ignoring it"));
    let (modules, filter) = match spec.split_once('/') {
        Some((_, rest)) if rest.contains('/') => {
            bad(format!("'{spec}' has more than one '/'"));
            (spec.split('/').next().unwrap_or_default(), None)
        }
        Some((modules, filter)) => (modules, Some(filter)),
        None => (spec, None),
    };
    let mut kept = Vec::new();
    for directive in modules.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let mut parts = directive.split('=');
        let (name, level) = (parts.next().unwrap_or_default(), parts.next());
        if parts.next().is_some() {
            bad(format!("'{directive}' has more than one '='"));
            continue;
        }
        match level.map(str::trim) {
            None if name.parse::<LevelFilter>().is_ok() => {}
            Some(level) if !level.is_empty() && level.parse::<LevelFilter>().is_err() => {
                bad(format!(
                    "'{level}' in '{directive}' is not a level (off, error, warn, info, debug or trace)"
                ));
                continue;
            }
            _ if !logs(name) => {
                let what = if level.is_none() {
                    "neither a level (off, error, warn, info, debug or trace) nor"
                } else {
                    "not"
                };
                bad(format!(
                    "'{name}' is {what} a module that logs ({})",
                    LOGGING_CRATES.join(", ")
                ));
                continue;
            }
            _ => {}
        }
        kept.push(directive);
    }
    let mut directives = if kept.is_empty() {
        if !warnings.is_empty() {
            warnings.push(format!(
                "{VARIABLE}: nothing usable is left; logging at '{DEFAULT}'"
            ));
        }
        DEFAULT.to_string()
    } else {
        kept.join(",")
    };
    if let Some(filter) = filter {
        directives = format!("{directives}/{filter}");
    }
    LogFilter {
        directives,
        warnings,
    }
}

/// Whether any log line's target can start with `name`, as env_logger
/// matches them: a prefix of a crate that logs, or a path inside one.
fn logs(name: &str) -> bool {
    LOGGING_CRATES.iter().any(|krate| {
        krate.starts_with(name)
            || name
                .strip_prefix(krate)
                .is_some_and(|rest| rest.starts_with("::"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(spec: &str) -> (String, usize) {
        let checked = check(Some(spec));
        (checked.directives, checked.warnings.len())
    }

    #[test]
    fn good_directives_pass_unchanged() {
        assert_eq!(check(None).directives, "info");
        assert_eq!(filter(""), ("info".into(), 0));
        for good in [
            "debug",
            "WARN",
            "tcpipe=debug",
            "info,mio=trace",
            "tcpipe::reactor",
            "tcp=off",
            "info/pipe 3",
        ] {
            assert_eq!(filter(good), (good.to_string(), 0), "{good}");
        }
    }

    #[test]
    fn bad_directives_are_dropped_with_a_warning() {
        assert_eq!(filter("debugg"), ("info".into(), 2));
        assert_eq!(filter("debug,tcpipe=loud"), ("debug".into(), 1));
        assert_eq!(filter("warn,nonsense=debug"), ("warn".into(), 1));
        assert_eq!(filter("a=b=c,trace"), ("trace".into(), 1));
        assert_eq!(filter("info/a/b"), ("info".into(), 1));
        let warning = &check(Some("debugg")).warnings[0];
        assert!(
            warning.contains("RUST_LOG") && warning.contains("'debugg'"),
            "{warning}"
        );
    }
}
