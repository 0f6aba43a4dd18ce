//! The shape the code keeps, checked so it does not drift:
//! - no circle of imports between the top-level modules of `src/` (a file
//!   or a folder directly under `src/` is one module; a `mod.rs` and its
//!   own children may use each other);
//! - no file in `src/` or `benches/` much over 600 lines (two ideas);
//! - a socket is reset in exactly two places: a pipe's end
//!   (`pipe/endpoint.rs`, as `Reason::closing` says) and the one way a
//!   client that never became a pipe is turned away
//!   (`Reactor::turn_away` in `reactor/admission.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// "About 600": a file may run a little over while it holds one idea.
const MAX_LINES: usize = 650;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every top-level module of `src/` and the files that make it up.
fn top_level_modules() -> BTreeMap<String, Vec<PathBuf>> {
    let src = root().join("src");
    let mut modules = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("src/").flatten() {
        let path = entry.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        } else {
            continue;
        }
        modules.insert(name, files);
    }
    modules
}

/// The top-level modules `text` names through `crate::`, in paths and in
/// `use crate::{a, b::c}` groups.
fn named_modules(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let head = item.trim().split("::").next().unwrap_or("").trim();
                if modules.contains(head) {
                    named.insert(head.to_string());
                }
            }
            continue;
        }
        let head: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if modules.contains(&head) {
            named.insert(head);
        }
    }
    named
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_circle_of_imports_between_the_top_level_modules() {
    let modules = top_level_modules();
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, files) in &modules {
        let mut named = BTreeSet::new();
        for file in files {
            let text = strip_comments(&fs::read_to_string(file).expect("readable"));
            named.extend(named_modules(&text, &names));
        }
        named.remove(module);
        uses.insert(module.clone(), named);
    }
    // A circle exists iff some module reaches itself.
    for start in uses.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in &uses[&at] {
                if next == start {
                    panic!("import circle: {} -> {start}", path.join(" -> "));
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
}

#[test]
fn no_file_holds_two_ideas_by_its_length() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("benches"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = fs::read_to_string(file).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:?}");
}

#[test]
fn sockets_are_reset_only_where_the_close_rules_say() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut resetting: Vec<String> = files
        .iter()
        .filter(|file| !file.ends_with("net.rs"))
        .filter(|file| {
            fs::read_to_string(file)
                .map(|text| strip_comments(&text).contains("abort_on_close("))
                .unwrap_or(false)
        })
        .map(|file| {
            file.strip_prefix(root().join("src"))
                .unwrap_or(file)
                .display()
                .to_string()
        })
        .collect();
    resetting.sort();
    assert_eq!(resetting, ["pipe/endpoint.rs", "reactor/admission.rs"]);
}
