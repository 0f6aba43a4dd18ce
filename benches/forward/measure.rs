//! What the kernel says about a forwarder: the CPU time and the PSS of its
//! whole process tree, read from /proc; plus the machine, the descriptor
//! limit and listening sockets.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::process::Command;
use std::sync::OnceLock;

/// Reads the CPU time and memory of a forwarder's process tree. A direct
/// connection has no forwarder, so nothing to read.
#[derive(Clone, Copy, Debug)]
pub struct Meter {
    pub root: Option<u32>,
}

impl Meter {
    /// User + system seconds of the tree, including children it has reaped
    /// (socat's forked children end up in its cutime/cstime).
    pub fn cpu_seconds(&self) -> Option<Result<f64, String>> {
        let root = self.root?;
        Some(tree_cpu_seconds(root))
    }

    /// Proportional set size of the tree, KiB.
    pub fn pss_kib(&self) -> Option<Result<u64, String>> {
        let root = self.root?;
        Some(tree_pss_kib(root))
    }
}

/// The fields after the command name in /proc/PID/stat: index 0 is the
/// state (field 3 of proc(5)), so field N is at N - 3.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; it ends at the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `root` and every process descended from it, by scanning /proc.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() {
        if let Some(kids) = children.get(&tree[next]) {
            tree.extend(kids);
        }
        next += 1;
    }
    tree
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

fn tree_cpu_seconds(root: u32) -> Result<f64, String> {
    let mut ticks = 0u64;
    let mut root_seen = false;
    for pid in process_tree(root) {
        // A process may exit between the scan and this read; its time then
        // moves to its parent's cutime/cstime, which the parent's read sees.
        let Some(fields) = stat_fields(pid) else {
            continue;
        };
        root_seen |= pid == root;
        // utime, stime, cutime, cstime: fields 14 to 17.
        for field in &fields[11..15] {
            ticks += field.parse::<u64>().unwrap_or(0);
        }
    }
    if !root_seen {
        return Err(format!("process {root} is gone"));
    }
    Ok(ticks as f64 / clock_ticks_per_second())
}

fn tree_pss_kib(root: u32) -> Result<u64, String> {
    let mut total = 0;
    for pid in process_tree(root) {
        let path = format!("/proc/{pid}/smaps_rollup");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) if pid != root => continue, // exited meanwhile
            Err(e) => return Err(format!("cannot read {path}: {e}")),
        };
        let pss = text
            .lines()
            .find_map(|line| line.strip_prefix("Pss:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .ok_or_else(|| format!("no Pss line in {path}"))?;
        total += pss;
    }
    Ok(total)
}

/// Whether some socket listens on 127.0.0.1:`port` (or any address), per
/// /proc/net/tcp; checking this makes no connection through the forwarder.
pub fn is_listening(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|path| {
        fs::read_to_string(path).is_ok_and(|table| {
            table.lines().skip(1).any(|line| {
                let mut cols = line.split_whitespace();
                let local = cols.nth(1).unwrap_or("");
                let state = cols.nth(1).unwrap_or("");
                state == "0A" && local.ends_with(&wanted)
            })
        })
    })
}

/// A port nobody listens on right now, for a peer to bind.
pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// The soft and hard RLIMIT_NOFILE of this process.
pub fn fd_limits() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut cols = line["Max open files".len()..].split_whitespace();
    let parse = |s: Option<&str>| match s? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((parse(cols.next())?, parse(cols.next())?))
}

/// Raises this process's descriptor limit to `wanted` (soft and hard) with
/// prlimit(1) on our own pid: setrlimit needs unsafe code, and a limit set
/// before any thread or child starts is inherited by all of them. Without
/// the privilege to raise the hard limit (CAP_SYS_RESOURCE), takes the soft
/// limit up to the hard one. Returns the soft limit in force.
pub fn raise_fd_limit(wanted: u64) -> u64 {
    let Some((soft, hard)) = fd_limits() else {
        return 0;
    };
    if soft >= wanted {
        return soft;
    }
    let pid = std::process::id().to_string();
    for limits in [format!("{wanted}:{}", wanted.max(hard)), format!("{hard}:")] {
        let _ = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={limits}")])
            .output();
        if fd_limits().is_some_and(|(now, _)| now >= wanted) {
            break;
        }
    }
    fd_limits().map_or(soft, |(now, _)| now)
}

/// One line about the machine, for the report header.
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_gib: f64,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| "unknown kernel".into());
        let memory_gib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
                line.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            kernel,
            memory_gib,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} CPUs ({}), {}, {:.1} GiB RAM",
            self.cpus, self.cpu_model, self.kernel, self.memory_gib
        )
    }
}
