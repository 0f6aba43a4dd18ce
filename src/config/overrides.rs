//! Process-wide settings given as flags next to `--config`: they win over
//! the file's `[global]`, at startup and at every reload, as `haproxy -f`
//! and `nginx -g` let the command line win.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::values::format_duration;
use super::{AdminAddress, Config, ConfigError, LogDestination, LogFormat};

/// The `[global]` settings to take from elsewhere than the file; `None`
/// leaves the file's (or the default) alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `global.max-connections`.
    pub max_connections: Option<usize>,
    /// `global.drain-timeout`; `Some(None)` waits for pipes however long.
    pub drain_timeout: Option<Option<Duration>>,
    /// `global.resolve-interval`; `Some(None)` never re-resolves.
    pub resolve_interval: Option<Option<Duration>>,
    /// `global.metrics`.
    pub metrics: Option<SocketAddr>,
    /// `global.access-log`.
    pub access_log: Option<LogDestination>,
    /// `global.log-format`.
    pub log_format: Option<LogFormat>,
    /// `global.access-log-opens`.
    pub access_log_opens: Option<bool>,
    /// `global.workers`; a reload keeps the running number whatever it says.
    pub workers: Option<usize>,
    /// `global.admin`; kept from startup by a reload.
    pub admin: Option<AdminAddress>,
    /// `global.admin-token-file`.
    pub admin_token_file: Option<PathBuf>,
    /// `global.upgrade-binary`.
    pub upgrade_binary: Option<std::path::PathBuf>,
}

impl Overrides {
    /// Whether there is nothing to override.
    pub fn is_empty(&self) -> bool {
        self == &Overrides::default()
    }

    /// Sets what is overridden; the caller validates the result.
    pub fn apply(&self, config: &mut Config) {
        if let Some(max) = self.max_connections {
            config.max_connections = max;
        }
        if let Some(drain) = self.drain_timeout {
            config.drain_timeout = drain;
        }
        if let Some(interval) = self.resolve_interval {
            config.resolve_interval = interval;
        }
        if let Some(metrics) = self.metrics {
            config.metrics = Some(metrics);
        }
        if let Some(destination) = &self.access_log {
            config.access_log.destination = destination.clone();
        }
        if let Some(format) = self.log_format {
            config.access_log.format = format;
        }
        if let Some(opens) = self.access_log_opens {
            config.access_log.opens = opens;
        }
        if let Some(workers) = self.workers {
            config.workers = workers;
        }
        if let Some(admin) = &self.admin {
            config.admin = Some(admin.clone());
        }
        if let Some(file) = &self.admin_token_file {
            config.admin_token_file = Some(file.clone());
        }
        if let Some(binary) = &self.upgrade_binary {
            config.upgrade_binary = Some(binary.clone());
        }
    }

    /// Each overridden setting as `key = value`, in `[global]`'s terms.
    pub fn describe(&self) -> Vec<String> {
        let mut set = Vec::new();
        let mut note = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                set.push(format!("{key} = {value}"));
            }
        };
        note(
            "max-connections",
            self.max_connections.map(|n| n.to_string()),
        );
        note("drain-timeout", self.drain_timeout.map(format_duration));
        note(
            "resolve-interval",
            self.resolve_interval.map(format_duration),
        );
        note("metrics", self.metrics.map(|addr| addr.to_string()));
        note(
            "access-log",
            self.access_log.as_ref().map(|d| d.to_string()),
        );
        note("log-format", self.log_format.map(|f| f.to_string()));
        note(
            "access-log-opens",
            self.access_log_opens.map(|o| o.to_string()),
        );
        note("workers", self.workers.map(|n| n.to_string()));
        note("admin", self.admin.as_ref().map(|a| a.to_string()));
        note(
            "admin-token-file",
            self.admin_token_file
                .as_ref()
                .map(|f| f.display().to_string()),
        );
        note(
            "upgrade-binary",
            self.upgrade_binary
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        set
    }

    /// A validation error about an overridden `global.KEY` is about the
    /// flag `--KEY`, which set it.
    pub(crate) fn rename(&self, mut e: ConfigError) -> ConfigError {
        let overridden = match e.key.strip_prefix("global.") {
            Some("max-connections") => self.max_connections.is_some(),
            Some("drain-timeout") => self.drain_timeout.is_some(),
            Some("resolve-interval") => self.resolve_interval.is_some(),
            Some("metrics") => self.metrics.is_some(),
            Some("access-log") => self.access_log.is_some(),
            Some("log-format") => self.log_format.is_some(),
            Some("access-log-opens") => self.access_log_opens.is_some(),
            Some("workers") => self.workers.is_some(),
            Some("admin") => self.admin.is_some(),
            Some("admin-token-file") => self.admin_token_file.is_some(),
            Some("upgrade-binary") => self.upgrade_binary.is_some(),
            _ => false,
        };
        if overridden {
            e.key = format!("--{}", &e.key["global.".len()..]);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_set_is_applied_and_described() {
        let mut config = Config::with_routes(Vec::new());
        let overrides = Overrides {
            workers: Some(2),
            drain_timeout: Some(None),
            ..Overrides::default()
        };
        overrides.apply(&mut config);
        assert_eq!(config.workers, 2);
        assert_eq!(config.drain_timeout, None);
        assert_eq!(
            config.max_connections,
            super::super::DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(overrides.describe(), ["drain-timeout = 0", "workers = 2"]);
        assert!(Overrides::default().is_empty());
    }

    #[test]
    fn an_error_about_an_overridden_key_names_the_flag() {
        let overrides = Overrides {
            workers: Some(0),
            ..Overrides::default()
        };
        let e = overrides.rename(ConfigError::new("global.workers", "0", "no"));
        assert_eq!(e.key, "--workers");
        let e = overrides.rename(ConfigError::new("global.metrics", "x", "no"));
        assert_eq!(e.key, "global.metrics");
    }
}
