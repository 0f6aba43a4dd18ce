//! The little network the far target lives in, made with iproute2 and
//! removed again:
//!
//! ```text
//! root namespace             namespace tcpipe-ttfb-wire          namespace tcpipe-ttfb-target
//! ttfb-near 10.203.0.1 ═veth═ ttfb-near-w ─ macvtap near-tap
//!                                             ⇅ the wire (this process)
//!                             ttfb-far-w ── macvtap far-tap ═veth═ ttfb-far 10.203.0.2
//! ```
//!
//! A macvtap in passthru mode takes every frame its veth receives and
//! hands it to whoever reads its character device, so nothing crosses
//! between the two addresses but through the wire. The neighbour entries
//! are permanent, so no ARP exchange ever adds to a connect. The names and
//! addresses are fixed: a run first removes what a crashed run left, and two
//! runs of this workload at once would collide.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

const WIRE_NS: &str = "tcpipe-ttfb-wire";
pub const TARGET_NS: &str = "tcpipe-ttfb-target";
const NEAR_IP: &str = "10.203.0.1";
/// The target's address, in its namespace.
pub const FAR_IP: &str = "10.203.0.2";
const NEAR: &str = "ttfb-near";
const FAR: &str = "ttfb-far";
const NEAR_MAC: &str = "02:00:0a:cb:00:01";
const FAR_MAC: &str = "02:00:0a:cb:00:02";
/// The wire namespace's macvtaps, near side first.
const TAPS: [&str; 2] = ["near-tap", "far-tap"];
/// Their character devices; udev would name them /dev/tapN, but there may
/// be no udev.
const TAP_NODES: [&str; 2] = ["/dev/tcpipe-ttfb-near-tap", "/dev/tcpipe-ttfb-far-tap"];

/// `ip` commands that build the network, in order.
fn setup() -> Vec<String> {
    let [near_tap, far_tap] = TAPS;
    let (wire, target) = (WIRE_NS, TARGET_NS);
    vec![
        format!("netns add {wire}"),
        format!("netns add {target}"),
        format!("link add {NEAR} address {NEAR_MAC} type veth peer name {NEAR}-w netns {wire}"),
        format!(
            "-n {target} link add {FAR} address {FAR_MAC} type veth peer name {FAR}-w netns {wire}"
        ),
        format!("-n {wire} link add link {NEAR}-w name {near_tap} type macvtap mode passthru"),
        format!("-n {wire} link add link {FAR}-w name {far_tap} type macvtap mode passthru"),
        format!("-n {wire} link set {NEAR}-w up"),
        format!("-n {wire} link set {FAR}-w up"),
        format!("-n {wire} link set {near_tap} up"),
        format!("-n {wire} link set {far_tap} up"),
        format!("addr add {NEAR_IP}/30 dev {NEAR}"),
        format!("link set {NEAR} up"),
        format!("-n {target} addr add {FAR_IP}/30 dev {FAR}"),
        format!("-n {target} link set {FAR} up"),
        format!("neigh replace {FAR_IP} lladdr {FAR_MAC} dev {NEAR} nud permanent"),
        format!("-n {target} neigh replace {NEAR_IP} lladdr {NEAR_MAC} dev {FAR} nud permanent"),
    ]
}

/// `ip` commands that remove it. Deleting a veth end deletes its peer and
/// the macvtap on that at once, where deleting a namespace would leave it
/// to the kernel's background cleanup, and the next cell's `link add`
/// could find the old names still taken.
fn teardown() -> Vec<String> {
    vec![
        format!("link del {NEAR}"),
        format!("-n {TARGET_NS} link del {FAR}"),
        format!("netns del {WIRE_NS}"),
        format!("netns del {TARGET_NS}"),
    ]
}

/// The network, up; dropping it removes it.
pub struct Topology(());

impl Topology {
    pub fn create() -> Result<Topology, String> {
        remove();
        // From here on, a failure removes what was made.
        let topology = Topology(());
        for command in setup() {
            ip(&command)?;
        }
        for (tap, node) in TAPS.iter().zip(TAP_NODES) {
            let number = tap_device_number(tap)?;
            let (major, minor) = number
                .split_once(':')
                .ok_or_else(|| format!("{tap}: device number '{number}' is not major:minor"))?;
            run("mknod", &[node, "c", major, minor])?;
        }
        Ok(topology)
    }

    /// The two taps' devices, near side first, for the wire.
    pub fn open_taps(&self) -> Result<[File; 2], String> {
        let open = |node: &str| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(node)
                .map_err(|e| format!("cannot open {node}: {e}"))
        };
        Ok([open(TAP_NODES[0])?, open(TAP_NODES[1])?])
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        remove();
    }
}

/// Removes whatever of the network exists; what does not is no error.
fn remove() {
    for command in teardown() {
        let _ = ip(&command);
    }
    for node in TAP_NODES {
        let _ = fs::remove_file(node);
    }
}

/// The major:minor of a macvtap's character device, from sysfs as the wire
/// namespace sees it (`ip netns exec` mounts that view).
fn tap_device_number(tap: &str) -> Result<String, String> {
    let sysfs = |file: &str| {
        ip(&format!(
            "netns exec {WIRE_NS} cat /sys/class/net/{tap}/{file}"
        ))
    };
    let index = sysfs("ifindex")?;
    sysfs(&format!("macvtap/tap{index}/dev"))
}

/// `ip` with `command`'s words as arguments (none holds a space).
fn ip(command: &str) -> Result<String, String> {
    run("ip", &command.split_whitespace().collect::<Vec<_>>())
}

/// Runs `program args`; its trimmed stdout, or what it said on failure.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let command = format!("`{program} {}`", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {command}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
