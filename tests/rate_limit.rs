//! `upload-rate` / `download-rate`: each pipe reads at most so many bytes a
//! second from its client (upload) or its target (download), after a
//! burst of `rate-burst`, copying or splicing; what arrives is whole.

mod common;
use common::faults::*;
use common::transfer::*;
use common::*;

const MIB: usize = 1 << 20;
/// 4 MiB/s, and 8 MiB through it: about two seconds of limited transfer.
const RATE: usize = 4 * MIB;
const LEN: usize = 8 * MIB;
const TOLERANCE: f64 = 0.15;

/// The rate a limited transfer of `LEN` should show: the burst comes at
/// once, the rest at the rate.
fn expected_rate(burst: usize) -> f64 {
    let seconds = (LEN - burst) as f64 / RATE as f64;
    LEN as f64 / seconds
}

fn limited_transfer(flag: &str, splice: &str, upload: bool) -> Transfer {
    let (target_listener, target_addr) = listener();
    let tcpipe = Tcpipe::start(target_addr, &[flag, "4m", "--splice", splice]);
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    if upload {
        send_and_time(client, target, LEN, 1)
    } else {
        send_and_time(target, client, LEN, 2)
    }
}

#[test]
fn an_upload_is_held_to_its_rate_when_copied() {
    let transfer = limited_transfer("--upload-rate", "never", true);
    assert_rate_near(
        "upload, copied",
        transfer.rate(),
        expected_rate(64 * 1024),
        TOLERANCE,
    );
}

#[test]
fn a_download_is_held_to_its_rate_when_copied() {
    let transfer = limited_transfer("--download-rate", "never", false);
    assert_rate_near(
        "download, copied",
        transfer.rate(),
        expected_rate(64 * 1024),
        TOLERANCE,
    );
}

#[test]
fn an_upload_is_held_to_its_rate_when_spliced() {
    let transfer = limited_transfer("--upload-rate", "always", true);
    assert_rate_near(
        "upload, spliced",
        transfer.rate(),
        expected_rate(64 * 1024),
        TOLERANCE,
    );
}

#[test]
fn a_download_is_held_to_its_rate_when_spliced() {
    let transfer = limited_transfer("--download-rate", "always", false);
    assert_rate_near(
        "download, spliced",
        transfer.rate(),
        expected_rate(64 * 1024),
        TOLERANCE,
    );
}

#[test]
fn the_other_direction_is_not_limited() {
    let (target_listener, target_addr) = listener();
    let tcpipe = Tcpipe::start(target_addr, &["--upload-rate", "64k"]);
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    // 8 MiB at 64 KiB/s would take two minutes.
    let transfer = send_and_time(target, client, LEN, 3);
    assert!(
        transfer.took < std::time::Duration::from_secs(10),
        "the download was slowed by the upload's limit: {:?}",
        transfer.took
    );
}

#[test]
fn a_burst_passes_at_once_then_the_rate_holds() {
    let (target_listener, target_addr) = listener();
    // 64 KiB/s after a 1 MiB burst: the first MiB is not held back, the
    // next 256 KiB take about four seconds.
    let tcpipe = Tcpipe::start(
        target_addr,
        &[
            "--upload-rate",
            "64k",
            "--rate-burst",
            "1m",
            "--buffer-size",
            "1m",
        ],
    );
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    let transfer = send_and_time(client, target, MIB, 5);
    assert!(
        transfer.took < std::time::Duration::from_secs(2),
        "a burst of 1 MiB was held back: {:?}",
        transfer.took
    );
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    let transfer = send_and_time(client, target, MIB + 256 * 1024, 6);
    // The 1 MiB burst is at once; the 256 KiB after it at the rate.
    let after_burst = 256.0 * 1024.0 / transfer.took.as_secs_f64();
    assert_rate_near("after the burst", after_burst, 64.0 * 1024.0, 0.25);
}
