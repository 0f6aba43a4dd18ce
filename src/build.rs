//! Build facts for `--version`: the git commit, the rustc version and the
//! target triple, each "unknown" when it cannot be found (a source tarball,
//! no git installed). And which of the external tools some integration
//! tests drive this machine has, so a test whose tool is missing is
//! `ignored` in the test summary, with the reason, instead of passing
//! without testing; under CI (`CI=true`) every such test runs, and fails
//! if its tool is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let dir = manifest.as_deref().unwrap_or(Path::new("."));
    println!("cargo:rerun-if-changed=src/build.rs");
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"]);
    // The commit changes when HEAD moves to another ref or its ref moves;
    // a worktree keeps HEAD in its own git dir, refs in the common one.
    if let Some(git_dir) = git(dir, &["rev-parse", "--absolute-git-dir"]) {
        watch(&Path::new(&git_dir).join("HEAD"));
        let common = git(
            dir,
            &["rev-parse", "--path-format=absolute", "--git-common-dir"],
        )
        .map_or_else(|| PathBuf::from(&git_dir), PathBuf::from);
        if let Some(head_ref) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(head_ref));
        }
        watch(&common.join("packed-refs"));
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        // "rustc 1.83.0 (90b35a623 2024-11-26)": the name and version.
        .map(|text| {
            text.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "rustc unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!(
        "cargo:rustc-env=TCPIPE_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=TCPIPE_RUSTC={rustc}");
    println!("cargo:rustc-env=TCPIPE_TARGET={target}");
    find_test_tools();
}

/// The tools, by the cfg a test is ignored without (`has_promtool`,
/// `has_systemd_analyze`...).
const TEST_TOOLS: [&str; 7] = [
    "haproxy",
    "promtool",
    "ss",
    "systemd-analyze",
    "python3",
    "openssl",
    "chromium",
];

/// Sets `has_TOOL` for each of [`TEST_TOOLS`] on the PATH (or in the sbin
/// directories, which a non-root PATH may lack), and for all of them under
/// CI. Installing a tool changes a directory on the PATH, which reruns this.
fn find_test_tools() {
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=PATH");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.retain(|dir| dir.is_dir());
    for dir in &dirs {
        watch(dir);
    }
    for tool in TEST_TOOLS {
        let cfg = format!("has_{}", tool.replace('-', "_"));
        println!("cargo:rustc-check-cfg=cfg({cfg})");
        if ci || dirs.iter().any(|dir| dir.join(tool).is_file()) {
            println!("cargo:rustc-cfg={cfg}");
        }
    }
}

/// `git ARGS` in `dir`: its first line of output, if it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim().to_string();
    (!line.is_empty()).then_some(line)
}

/// Rebuild when `path` changes. Only existing files: cargo reruns a build
/// script on every build for a path that does not exist.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
