//! Helpers for the tests of routes and reloads: config files in a private
//! temporary directory, the forwarder started from one, each route's
//! addresses (routes listen on port 0; the readiness notification says
//! what each got), and reloads by SIGHUP that wait until the forwarder has
//! acted.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{wait_until, Tcpipe, DEADLINE};

/// A config file that is removed with the value.
pub struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tcpipe-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        let file = ConfigFile {
            path: dir.join("tcpipe.toml"),
            dir,
        };
        file.write(text);
        file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary path")
    }

    /// Replaces the content (in one rename, as an editor or a deploy tool
    /// would, so a reload never reads half a file).
    pub fn write(&self, text: &str) {
        let staging = self.dir.join("tcpipe.toml.new");
        std::fs::write(&staging, text).expect("write the config file");
        std::fs::rename(&staging, &self.path).expect("move the config file in place");
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `[[route]]` table: a name, listening on a fresh port, to `targets`,
/// with `options` (more `key = value` lines) after them.
pub fn route(name: &str, targets: &[SocketAddr], options: &str) -> String {
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[[route]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\ntargets = [{}]\n{options}\n",
        targets.join(", ")
    )
}

impl Tcpipe {
    /// `tcpipe --config FILE`, logging at `info`.
    pub fn start_config(file: &ConfigFile) -> Tcpipe {
        Tcpipe::start_args(&["--config", file.path_str()])
    }

    /// The addresses route `name` listens on, as the newest `READY=1`
    /// names them (at startup, or after the latest reload).
    pub fn route_addrs(&self, name: &str) -> Vec<SocketAddr> {
        let ready = self.latest_ready();
        let found = ready.route_addrs(name);
        assert!(!found.is_empty(), "route {name} listens nowhere: {ready:?}");
        found
    }

    /// The first address of route `name`.
    pub fn route_addr(&self, name: &str) -> SocketAddr {
        self.route_addrs(name)[0]
    }

    /// Sends SIGHUP and waits for the `READY=1` that ends the reload:
    /// `Err` with the reason if it failed (what `systemctl status` shows).
    pub fn reload(&self) -> Result<(), String> {
        let seen = self.readies();
        self.signal("HUP");
        let ready = self.ready_after(seen, "after a reload");
        match ready.reload_failure() {
            None => Ok(()),
            Some(why) => Err(why.to_string()),
        }
    }

    /// The same, and the lines of the reload's report on stderr, the one
    /// README documents (`reload: route NAME: ...`, warnings included), for
    /// the tests of that report.
    pub fn reload_report(&self) -> Result<Vec<String>, String> {
        let mark = self.logs().len();
        self.reload()?;
        let mut report = Vec::new();
        let ended = wait_until(DEADLINE, || {
            let logs = self.logs();
            let lines = &logs[mark.min(logs.len())..];
            report = lines
                .iter()
                .filter(|l| l.contains("reload: "))
                .cloned()
                .collect();
            lines.iter().any(|l| l.contains("reload: done"))
        });
        assert!(ended, "the reload logged no end; logs: {:#?}", self.logs());
        Ok(report)
    }
}
