//! Headless Chromium (Debian's `chromium` package) as a real browser for
//! the status page: the DOM after the page's scripts ran, or a
//! screenshot. Each run has its own temporary profile and a deadline, and
//! is killed if it hangs.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{wait_until, DEADLINE};

/// The chromium binary; a test that calls this is ignored where there is
/// none (`has_chromium`, see `tools.rs`), and fails if run anyway.
pub fn binary() -> String {
    crate::common::tools::require(
        &["chromium", "/usr/bin/chromium", "chromium-browser"],
        "--version",
        "chromium",
    )
}

/// A temporary directory for one run, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tcpipe-chromium-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("a temporary directory for chromium");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs headless chromium on `url` with `extra` flags, lets the page's
/// timers run for `virtual_time` (virtual time: fetches still complete,
/// the wait itself is not real), and returns what it wrote to stdout.
fn run(url: &str, virtual_time: Duration, extra: &[String]) -> String {
    let scratch = Scratch::new();
    let out = scratch.0.join("stdout");
    let err = scratch.0.join("stderr");
    let mut child = Command::new(binary())
        .arg("--headless=new")
        // Root has no sandbox to drop into (CI runs as root).
        .arg("--no-sandbox")
        .arg("--disable-gpu")
        .arg("--no-first-run")
        .arg("--disable-extensions")
        .arg(format!(
            "--user-data-dir={}",
            scratch.0.join("profile").display()
        ))
        .arg(format!(
            "--virtual-time-budget={}",
            virtual_time.as_millis()
        ))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("chromium's stdout file"))
        .stderr(File::create(&err).expect("chromium's stderr file"))
        .spawn()
        .expect("run chromium");
    let mut status = None;
    let finished = wait_until(DEADLINE, || {
        status = child.try_wait().expect("chromium's status");
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "chromium did not finish within {DEADLINE:?}: {}",
            read(&err)
        );
    }
    let status = status.expect("finished");
    assert!(status.success(), "chromium: {status}: {}", read(&err));
    read(&out)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// The page's DOM as serialized after its scripts ran for `virtual_time`.
pub fn rendered_dom(url: &str, virtual_time: Duration) -> String {
    run(url, virtual_time, &["--dump-dom".to_string()])
}

/// A PNG of the page, `width` × `height` CSS pixels, after its scripts ran
/// for `virtual_time`; written to `path`.
pub fn screenshot(url: &str, virtual_time: Duration, width: u32, height: u32, path: &Path) {
    let scratch = Scratch::new();
    let shot = scratch.0.join("page.png");
    run(
        url,
        virtual_time,
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size={width},{height}"),
            "--hide-scrollbars".to_string(),
        ],
    );
    fs::copy(&shot, path).expect("chromium wrote its screenshot");
}
