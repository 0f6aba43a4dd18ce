//! Where the admin endpoint listens, and who may use it: a Unix socket
//! (its file's permissions are the access control) or a TCP address, over
//! which every request needs the bearer token of a token file.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::values::parse_address;
use super::{Config, ConfigError, Naming};

/// The admin endpoint's address (`--admin`, `global.admin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminAddress {
    /// `unix:/path`: a socket file created mode 0600.
    Unix(PathBuf),
    /// `host:port`: needs a token file.
    Tcp(SocketAddr),
}

impl AdminAddress {
    /// `unix:/path` or `host:port`.
    pub fn parse(text: &str) -> Result<AdminAddress, String> {
        match text.strip_prefix("unix:") {
            Some("") => Err("no path after 'unix:'; expected unix:/path/to/socket".into()),
            Some(path) => Ok(AdminAddress::Unix(path.into())),
            None => parse_address(text)
                .map(AdminAddress::Tcp)
                .map_err(|reason| format!("{reason}, or unix:/path")),
        }
    }
}

impl fmt::Display for AdminAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            AdminAddress::Tcp(addr) => addr.fmt(f),
        }
    }
}

/// Longest token accepted: a token file is a line, not a document.
const MAX_TOKEN: usize = 4096;

/// The token in `path`: its content without the line end, which must
/// leave at least 16 printable characters with no space.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if text.len() > MAX_TOKEN {
        return Err(format!("over {MAX_TOKEN} bytes; it holds one token"));
    }
    let text = String::from_utf8(text).map_err(|_| "not UTF-8".to_string())?;
    let token = text.trim_end_matches(['\n', '\r']);
    if token.len() < 16 {
        return Err("the token must have at least 16 characters".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be one line of printable characters, no spaces".into());
    }
    Ok(token.to_string())
}

/// What a reload says of an admin address it cannot change (the endpoint
/// is started once, with the process); `None` if it asks for the running
/// one.
pub(crate) fn admin_kept(
    running: Option<&AdminAddress>,
    asked: Option<&AdminAddress>,
) -> Option<String> {
    if running == asked {
        return None;
    }
    let show = |a: Option<&AdminAddress>| a.map_or_else(|| "off".into(), ToString::to_string);
    Some(format!(
        "admin {} kept (asked for {}; set at startup only)",
        show(running),
        show(asked)
    ))
}

impl Config {
    /// A TCP admin address needs a token file: loopback is reachable by
    /// every local user. A Unix socket needs its directory.
    pub(super) fn check_admin(&self, naming: Naming) -> Result<(), ConfigError> {
        let Some(admin) = &self.admin else {
            if let Some(file) = &self.admin_token_file {
                return Err(ConfigError::new(
                    naming.global_key("admin-token-file"),
                    file.display().to_string(),
                    format!("needs {}", naming.global_key("admin")),
                ));
            }
            return Ok(());
        };
        let key = naming.global_key("admin");
        if cfg!(not(feature = "cli")) {
            return Err(ConfigError::new(
                key,
                admin.to_string(),
                "the admin endpoint needs tcpipe's `cli` feature",
            ));
        }
        match admin {
            AdminAddress::Tcp(addr) => {
                let Some(file) = &self.admin_token_file else {
                    return Err(ConfigError::new(
                        key,
                        addr.to_string(),
                        format!(
                            "a TCP admin address needs {} (every local user can reach \
                             loopback); or use unix:/path",
                            naming.global_key("admin-token-file")
                        ),
                    ));
                };
                if let Some(route) = self.routes.iter().find(|route| {
                    route
                        .listen
                        .iter()
                        .any(|&listen| super::validate::addresses_overlap(*addr, listen))
                }) {
                    return Err(ConfigError::new(
                        key,
                        addr.to_string(),
                        format!("route '{}' listens there", route.name),
                    ));
                }
                if self
                    .metrics
                    .is_some_and(|m| super::validate::addresses_overlap(*addr, m))
                {
                    return Err(ConfigError::new(
                        key,
                        addr.to_string(),
                        "the metrics endpoint is served there",
                    ));
                }
                read_token(file).map(drop).map_err(|reason| {
                    ConfigError::new(
                        naming.global_key("admin-token-file"),
                        file.display().to_string(),
                        reason,
                    )
                })
            }
            AdminAddress::Unix(path) => {
                let parent = match path.parent() {
                    Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
                    Some(parent) => parent,
                    None => Path::new("/"),
                };
                if path.file_name().is_none() {
                    return Err(ConfigError::new(key, admin.to_string(), "not a file path"));
                }
                // It goes into log lines and systemd's READY=1 as it is.
                if path.to_string_lossy().chars().any(char::is_control) {
                    return Err(ConfigError::new(
                        key,
                        admin.to_string().escape_default().to_string(),
                        "control characters in the path",
                    ));
                }
                if !parent.is_dir() {
                    return Err(ConfigError::new(
                        key,
                        admin.to_string(),
                        format!("no directory {}", parent.display()),
                    ));
                }
                // A socket address holds at most 107 bytes of path.
                if path.as_os_str().len() > 107 {
                    return Err(ConfigError::new(
                        key,
                        admin.to_string(),
                        "a socket path may have at most 107 bytes",
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_paths_and_tcp_addresses_parse_and_print_back() {
        for text in ["unix:/run/tcpipe.sock", "127.0.0.1:9200", "[::1]:9200"] {
            assert_eq!(AdminAddress::parse(text).unwrap().to_string(), text);
        }
        assert!(AdminAddress::parse("unix:").is_err());
        assert!(AdminAddress::parse("nowhere")
            .unwrap_err()
            .contains("unix:/path"));
    }
}
