//! Live upgrades of a running forwarder: SIGUSR2 (to the process started
//! by the harness, or to one that took over since), the new process's
//! `READY=1` on the harness's notify socket (whose `MAINPID=` names it),
//! and the old one's exit. The new process is no child of the test: a
//! [`Successor`] kills it when dropped, so no test leaves one behind.
#![allow(dead_code)] // each test file uses a different subset

use std::process::Command;
use std::time::Duration;

use super::ready::Ready;
use super::{wait_until, Tcpipe, DEADLINE};

/// A process that took over in a live upgrade.
pub struct Successor {
    pub pid: u32,
    /// Its `READY=1`: where it listens, its `MAINPID=`.
    pub ready: Ready,
}

impl Successor {
    pub fn is_alive(&self) -> bool {
        is_alive(self.pid)
    }

    /// Sends a signal by name (`TERM`, `USR2`, ...).
    pub fn signal(&self, name: &str) {
        signal(self.pid, name);
    }

    /// Waits for it to end (it is not the test's child: its exit status
    /// is not seen).
    pub fn wait_gone(&self, timeout: Duration) -> bool {
        wait_until(timeout, || !self.is_alive())
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        if self.is_alive() {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// Whether process `pid` runs (a zombie does not).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {name} {pid} failed");
}

/// `MAINPID=` of a notification.
pub fn main_pid(ready: &Ready) -> u32 {
    ready
        .lines
        .iter()
        .find_map(|line| line.strip_prefix("MAINPID="))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no MAINPID= in {ready:?}"))
}

impl Tcpipe {
    /// SIGUSR2 to the process the harness started: returns the process
    /// that took over, once it said `READY=1` and this one exited 0.
    pub fn upgrade(&mut self) -> Successor {
        let successor = self.upgrade_pid(self.pid());
        let status = self.wait_exit(DEADLINE).unwrap_or_else(|| {
            panic!(
                "the old process did not exit after the upgrade; logs: {:#?}",
                self.logs()
            )
        });
        assert!(status.success(), "the old process exited with {status}");
        successor
    }

    /// SIGUSR2 to `pid` (the harness's process or a successor): the
    /// process that took over from it, once it said `READY=1`.
    pub fn upgrade_pid(&self, pid: u32) -> Successor {
        let notices = self.notices.as_ref().expect("the harness's NOTIFY_SOCKET");
        let seen = notices.count();
        signal(pid, "USR2");
        // The process started by the harness may be gone already: wait on
        // the notify socket alone.
        let mut ready = None;
        wait_until(DEADLINE, || {
            ready = notices.after(seen);
            ready.is_some()
        });
        let ready = ready.unwrap_or_else(|| {
            panic!(
                "no READY=1 after SIGUSR2 to {pid}; logs: {:#?}",
                self.logs()
            )
        });
        let new = main_pid(&ready);
        assert_ne!(new, pid, "READY=1 after SIGUSR2 names the old process");
        Successor { pid: new, ready }
    }

    /// How many notifications with `line` (`WATCHDOG=1`, `STOPPING=1`)
    /// came, from any process.
    pub fn notices_with(&self, line: &str) -> usize {
        let notices = self.notices.as_ref().expect("the harness's NOTIFY_SOCKET");
        notices.with(line).len()
    }

    /// SIGUSR2 for an upgrade that must fail: waits until the process says
    /// so on its notify socket's `STATUS=` line, and returns that line.
    pub fn failed_upgrade(&self) -> String {
        let notices = self.notices.as_ref().expect("the harness's NOTIFY_SOCKET");
        let before = notices.with_status_containing("upgrade failed").len();
        signal(self.pid(), "USR2");
        let mut status = None;
        wait_until(DEADLINE, || {
            status = notices
                .with_status_containing("upgrade failed")
                .get(before)
                .map(|m| m.status().to_string());
            status.is_some()
        });
        status.unwrap_or_else(|| {
            panic!(
                "no STATUS= saying the upgrade failed; logs: {:#?}",
                self.logs()
            )
        })
    }
}
