//! The deployment examples under `examples/deploy/` are what they claim:
//! the systemd units (service and socket) pass `systemd-analyze verify`, the Kubernetes
//! manifests pass a strict schema check, and the config each carries runs.
//! (The Dockerfile needs a container engine, which CI does not have.)

mod common;

use std::path::Path;
use std::process::Command;

use common::binary;

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpipe-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
#[cfg_attr(
    not(has_systemd_analyze),
    ignore = "needs systemd-analyze (Debian package systemd)"
)]
fn the_systemd_unit_verifies() {
    let tool = common::tools::require(&["systemd-analyze"], "--version", "systemd");
    // verify checks that ExecStart's program exists: point it at this build.
    let unit = example("tcpipe.service");
    // A live upgrade's new process sends MAINPID=: systemd drops it unless
    // every process of the service may notify.
    assert!(unit.contains("\nNotifyAccess=all\n"), "{unit}");
    let unit = unit.replace("/usr/local/bin/tcpipe", binary());
    let path = scratch("tcpipe.service");
    std::fs::write(&path, unit).unwrap();
    // The socket unit is verified beside the service it activates.
    let socket = scratch("tcpipe.socket");
    std::fs::write(&socket, example("tcpipe.socket")).unwrap();
    let verified = Command::new(tool)
        .arg("verify")
        .arg(&path)
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

#[test]
#[cfg_attr(
    not(has_python3),
    ignore = "needs python3 with kubernetes-validate (pip install kubernetes-validate)"
)]
fn the_kubernetes_manifests_validate_and_their_config_checks() {
    let python = common::tools::require(&["python3"], "--version", "python3");
    let validated = Command::new(python)
        .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy/kubernetes.yaml"))
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "kubernetes-validate (pip install kubernetes-validate): {}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // The ConfigMap's file, with the cluster's names made local.
    let manifest = example("kubernetes.yaml");
    let config: String = manifest
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("tcpipe.toml: |"))
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| format!("{}\n", line.strip_prefix("    ").unwrap_or(line)))
        .collect();
    assert!(config.contains("[[route]]"), "{config}");
    let config = config
        .replace("redis-0.redis.default.svc.cluster.local", "127.0.0.1")
        .replace("redis-1.redis.default.svc.cluster.local", "127.0.0.2");
    let path = scratch("tcpipe.toml");
    std::fs::write(&path, config).unwrap();
    let checked = Command::new(binary())
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}
