//! `route-upload-rate`: a route's pipes share its rate evenly, each
//! getting its part at once; the time they spent limited is in metrics
//! and in the access log.

mod common;
use common::config::*;
use common::faults::*;
use common::scrape::*;
use common::transfer::*;
use common::*;

use std::net::TcpStream;
use std::thread;

const MIB: usize = 1 << 20;

#[test]
fn two_pipes_share_the_route_rate_evenly() {
    let (target_listener, target_addr) = listener();
    let file = ConfigFile::new(&format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\naccess-log = \"stderr\"\n{}",
        route(
            "shared",
            &[target_addr],
            "route-upload-rate = \"2m\"\nsplice = \"never\""
        )
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("shared");
    let pairs: Vec<(TcpStream, TcpStream)> = (0..2)
        .map(|_| (connect(addr), accept(&target_listener)))
        .collect();
    // Both open before either sends: each has half the route's 2 MiB/s,
    // so 3 MiB take each of them about three seconds.
    let transfers: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (client, target))| {
            thread::spawn(move || send_and_time(client, target, 3 * MIB, 20 + i as u64))
        })
        .collect();
    let rates: Vec<f64> = transfers
        .into_iter()
        .map(|t| t.join().expect("transfer").rate())
        .collect();
    for (i, rate) in rates.iter().enumerate() {
        assert_rate_near(&format!("pipe {i} of 2"), *rate, MIB as f64, 0.2);
    }
    assert_rate_near("both pipes", rates.iter().sum(), 2.0 * MIB as f64, 0.15);
    let scrape = scrape_until(&tcpipe, "time limited", |s| {
        s.get(
            "tcpipe_route_rate_limited_seconds_total",
            &[("route", "shared"), ("direction", "upload")],
        ) > 1.0
    });
    assert_eq!(
        scrape.get(
            "tcpipe_route_rate_limited_seconds_total",
            &[("route", "shared"), ("direction", "download")],
        ),
        0.0
    );
    assert!(
        wait_until(DEADLINE, || tcpipe
            .logs()
            .iter()
            .filter(|l| l.contains("event=close") && !l.contains("rate_limited_seconds=-"))
            .count()
            == 2),
        "the access log does not say the pipes were limited: {:#?}",
        tcpipe.logs()
    );
}

#[test]
fn a_pipe_alone_on_the_route_gets_all_of_it() {
    let (target_listener, target_addr) = listener();
    let file = ConfigFile::new(&route(
        "alone",
        &[target_addr],
        "route-upload-rate = \"2m\"\nsplice = \"never\"",
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("alone");
    let transfer = send_and_time(connect(addr), accept(&target_listener), 4 * MIB, 30);
    let expected = (4 * MIB) as f64 / ((4 * MIB - 64 * 1024) as f64 / (2 * MIB) as f64);
    assert_rate_near("one pipe", transfer.rate(), expected, 0.15);
}
