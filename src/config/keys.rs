//! Which keys each table of the config file has: every unknown or
//! misplaced key of a file found at once, with the key probably meant, and
//! every value of the wrong form, each key read on its own.

use super::document::{Global, Section};
use super::file::Problem;

/// Every key of `[global]`, as [`Global`] reads them.
pub(super) const GLOBAL_KEYS: [&str; 11] = [
    "max-connections",
    "drain-timeout",
    "resolve-interval",
    "metrics",
    "access-log",
    "log-format",
    "access-log-opens",
    "workers",
    "admin",
    "admin-token-file",
    "upgrade-binary",
];

/// Every key of a `[[route]]`, as [`Section`] reads them; `[defaults]`
/// takes them all but the first [`ROUTE_ONLY`].
pub(super) const ROUTE_KEYS: [&str; 32] = [
    "name",
    "listen",
    "targets",
    "match",
    "balance",
    "retries",
    "fail-threshold",
    "cooldown",
    "health-interval",
    "pool",
    "pool-max-idle",
    "buffer-size",
    "low-water",
    "connect-timeout",
    "idle-timeout",
    "half-close-timeout",
    "keepalive",
    "max-connections",
    "send-proxy",
    "accept-proxy",
    "proxy-timeout",
    "allow",
    "deny",
    "max-connections-per-source",
    "max-connection-rate-per-source",
    "upload-rate",
    "download-rate",
    "route-upload-rate",
    "route-download-rate",
    "rate-burst",
    "splice",
    "inspect-timeout",
];

/// How many of [`ROUTE_KEYS`], from the first, only a `[[route]]` takes.
pub(super) const ROUTE_ONLY: usize = 4;

const TOP_KEYS: [&str; 3] = ["global", "defaults", "route"];

/// Every unknown key and every value of the wrong form in the file, each
/// key read on its own so that one bad key hides no other. What is left
/// (a table where a value should be, ...) the whole-document read reports.
pub(super) fn key_problems(document: &toml::Table) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (key, value) in document {
        match (key.as_str(), value) {
            ("global", toml::Value::Table(table)) => {
                check_keys::<Global>("global", table, &GLOBAL_KEYS, &mut problems);
            }
            ("defaults", toml::Value::Table(table)) => {
                check_keys::<Section>("defaults", table, &ROUTE_KEYS, &mut problems);
                for own in ROUTE_KEYS[..ROUTE_ONLY]
                    .iter()
                    .filter(|own| table.contains_key(**own))
                {
                    problems.push(Problem::at_key(
                        format!("defaults.{own}"),
                        "only a [[route]] has this key",
                    ));
                }
            }
            ("route", toml::Value::Array(routes)) => {
                for (index, route) in routes.iter().enumerate() {
                    if let toml::Value::Table(table) = route {
                        let path = format!("route[{index}]");
                        check_keys::<Section>(&path, table, &ROUTE_KEYS, &mut problems);
                    }
                }
            }
            (top, _) if TOP_KEYS.contains(&top) => {}
            (unknown, _) => problems.push(Problem::at_key(
                unknown,
                unknown_key(unknown, &TOP_KEYS, "[global], [defaults] or [[route]]"),
            )),
        }
    }
    problems
}

fn check_keys<T: serde::de::DeserializeOwned>(
    path: &str,
    table: &toml::Table,
    known: &[&str],
    problems: &mut Vec<Problem>,
) {
    for (key, value) in table {
        let at = format!("{path}.{key}");
        if !known.contains(&key.as_str()) {
            problems.push(Problem::at_key(at, misplaced_or_unknown(path, key)));
            continue;
        }
        let mut alone = toml::Table::new();
        alone.insert(key.clone(), value.clone());
        if let Err(e) = toml::Value::Table(alone).try_into::<T>() {
            problems.push(Problem::at_key(at, e.message().trim().to_string()));
        }
    }
}

/// Why `key` does not belong in the table at `path`: it belongs in the
/// other kind of table, or it is nobody's.
fn misplaced_or_unknown(path: &str, key: &str) -> String {
    if path == "global" && ROUTE_KEYS.contains(&key) {
        return format!("`{key}` is a route option: it belongs in [defaults] or a [[route]]");
    }
    if path != "global" && GLOBAL_KEYS.contains(&key) {
        return format!("`{key}` is process-wide: it belongs in [global]");
    }
    let (known, table): (&[&str], &str) = if path == "global" {
        (&GLOBAL_KEYS, "[global]")
    } else {
        (&ROUTE_KEYS, "a route")
    };
    unknown_key(key, known, table)
}

/// `unknown key `x``, with the known key it most likely means.
fn unknown_key(key: &str, known: &[&str], table: &str) -> String {
    match super::suggest::closest(key, known) {
        Some(meant) => format!("unknown key `{key}`; did you mean `{meant}`?"),
        None => format!("unknown key `{key}` (not a key of {table})"),
    }
}
