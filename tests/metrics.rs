//! `--metrics ADDR` serves `GET /metrics` in the Prometheus text format,
//! and what it says matches what the clients did: connections, bytes each
//! way, closes by reason, connect outcomes per target, histogram counts.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::{Command, Stdio};

use common::config::{route, ConfigFile};
use common::faults::{accept, assert_reset, fill_accept_queue};
use common::scrape::{http_get, request, scrape_until, Scrape};
use common::{connect, echo_server, read_to_end, refused_addr, reset, Tcpipe, DEADLINE};

const ROUTE: [(&str, &str); 1] = [("route", "default")];

fn closed(scrape: &Scrape, reason: &str) -> f64 {
    scrape.get(
        "tcpipe_pipes_closed_total",
        &[("route", "default"), ("reason", reason)],
    )
}

#[test]
fn counters_and_histograms_match_what_the_clients_did() {
    let target = echo_server();
    let target_name = target.to_string();
    let of_target = [("route", "default"), ("target", target_name.as_str())];
    let tcpipe = Tcpipe::start(
        target,
        &["--metrics", "127.0.0.1:0", "--idle-timeout", "300ms"],
    );

    // Four clean exchanges of different sizes: each sends, half-closes,
    // and reads its echo to the end.
    let sizes = [1usize, 1000, 64 * 1024, 300_000];
    for &size in &sizes {
        let mut client = connect(tcpipe.addr);
        client.write_all(&vec![7u8; size]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&mut client).len(), size);
    }
    // One client resets without sending anything.
    let quitter = connect(tcpipe.addr);
    let scrape = scrape_until(&tcpipe, "the quitter's pipe", |s| {
        s.get("tcpipe_connections_active", &ROUTE) == 1.0
    });
    assert_eq!(scrape.get("tcpipe_connections_accepted_total", &ROUTE), 5.0);
    reset(quitter);
    // One client stays silent until the idle timeout resets it.
    let mut idle = connect(tcpipe.addr);
    assert_reset(&mut idle, "idle client");

    let scrape = scrape_until(&tcpipe, "every pipe closed", |s| {
        s.get("tcpipe_connections_active", &ROUTE) == 0.0
            && s.get("tcpipe_connections_accepted_total", &ROUTE) == 6.0
    });
    assert_eq!(closed(&scrape, "clean"), 4.0);
    assert_eq!(closed(&scrape, "client_reset"), 1.0);
    assert_eq!(closed(&scrape, "idle_timeout"), 1.0);
    assert_eq!(closed(&scrape, "target_reset"), 0.0);
    let total: usize = sizes.iter().sum();
    for direction in ["to_target", "to_client"] {
        let labels = [of_target[0], of_target[1], ("direction", direction)];
        assert_eq!(
            scrape.get("tcpipe_forwarded_bytes_total", &labels),
            total as f64,
            "{direction}"
        );
    }
    assert_eq!(
        scrape.get("tcpipe_target_connect_attempts_total", &of_target),
        6.0
    );
    assert_eq!(
        scrape.get("tcpipe_target_connect_failures_total", &of_target),
        0.0
    );
    assert_eq!(scrape.get("tcpipe_target_up", &of_target), 1.0);
    // Every pipe lived and connected; only the four that sent got a reply.
    assert_eq!(
        scrape.get("tcpipe_pipe_duration_seconds_count", &ROUTE),
        6.0
    );
    let inf = [("route", "default"), ("le", "+Inf")];
    assert_eq!(scrape.get("tcpipe_pipe_duration_seconds_bucket", &inf), 6.0);
    // The idle pipe lived at least its 300 ms; the others far less.
    let short = [("route", "default"), ("le", "0.1")];
    assert_eq!(
        scrape.get("tcpipe_pipe_duration_seconds_bucket", &short),
        5.0
    );
    assert_eq!(
        scrape.get("tcpipe_target_connect_duration_seconds_count", &of_target),
        6.0
    );
    assert_eq!(
        scrape.get("tcpipe_target_first_byte_seconds_count", &of_target),
        4.0
    );
    let sum = scrape.get("tcpipe_target_first_byte_seconds_sum", &of_target);
    assert!(sum > 0.0 && sum < 10.0, "first-byte sum {sum}");
    assert_eq!(scrape.get("tcpipe_buffered_bytes", &[]), 0.0);
    assert_eq!(scrape.get("tcpipe_rings_in_use", &[]), 0.0);
}

#[test]
fn live_pipes_and_their_bytes_show_before_they_close() {
    let (target, addr) = common::listener();
    let tcpipe = Tcpipe::start(addr, &["--metrics", "127.0.0.1:0"]);
    let mut client = connect(tcpipe.addr);
    let mut upstream = accept(&target);
    client.write_all(&[1u8; 5000]).unwrap();
    let mut got = vec![0u8; 5000];
    upstream.read_exact(&mut got).unwrap();
    upstream.write_all(&[2u8; 300]).unwrap();
    let mut back = vec![0u8; 300];
    client.read_exact(&mut back).unwrap();

    let name = addr.to_string();
    let labels = |direction| {
        [
            ("route", "default"),
            ("target", name.as_str()),
            ("direction", direction),
        ]
    };
    let scrape = scrape_until(&tcpipe, "the live pipe's bytes", |s| {
        s.get("tcpipe_forwarded_bytes_total", &labels("to_client")) == 300.0
    });
    assert_eq!(
        scrape.get("tcpipe_forwarded_bytes_total", &labels("to_target")),
        5000.0
    );
    assert_eq!(scrape.get("tcpipe_connections_active", &ROUTE), 1.0);
    let of_target = [("route", "default"), ("target", name.as_str())];
    assert_eq!(
        scrape.get("tcpipe_target_connections_active", &of_target),
        1.0
    );

    // Closing moves its bytes from live to closed: the counter never drops.
    drop(client);
    drop(upstream);
    let scrape = scrape_until(&tcpipe, "the pipe closed", |s| {
        s.get("tcpipe_connections_active", &ROUTE) == 0.0
    });
    assert_eq!(
        scrape.get("tcpipe_forwarded_bytes_total", &labels("to_target")),
        5000.0
    );
    assert_eq!(
        scrape.get("tcpipe_forwarded_bytes_total", &labels("to_client")),
        300.0
    );
}

#[test]
fn a_dead_target_shows_failures_and_down() {
    let dead = refused_addr();
    let name = dead.to_string();
    let of_target = [("route", "default"), ("target", name.as_str())];
    let tcpipe = Tcpipe::start(
        dead,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--fail-threshold",
            "2",
            "--cooldown",
            "1m",
        ],
    );
    for _ in 0..3 {
        let mut client = connect(tcpipe.addr);
        assert_reset(&mut client, "client of a dead target");
    }
    let scrape = scrape_until(&tcpipe, "three refused clients", |s| {
        closed(s, "connect_failed") == 3.0
    });
    assert_eq!(scrape.get("tcpipe_target_up", &of_target), 0.0);
    // The first two connects were refused and marked it down; the third
    // client was still sent there (every target down: the soonest back is
    // tried anyway).
    assert_eq!(
        scrape.get("tcpipe_target_connect_attempts_total", &of_target),
        3.0
    );
    assert_eq!(
        scrape.get("tcpipe_target_connect_failures_total", &of_target),
        3.0
    );
    assert_eq!(
        scrape.get("tcpipe_target_connect_timeouts_total", &of_target),
        0.0
    );
    assert_eq!(
        scrape.get("tcpipe_target_connect_duration_seconds_count", &of_target),
        0.0
    );
}

#[test]
fn a_connect_timeout_is_counted_as_one() {
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = black_hole.local_addr().unwrap();
    // A backlog nobody accepts from, filled: the forwarder's SYN is dropped.
    let socket = socket2::SockRef::from(&black_hole);
    socket.listen(0).unwrap();
    let _fillers = fill_accept_queue(addr);
    let name = addr.to_string();
    let of_target = [("route", "default"), ("target", name.as_str())];
    let tcpipe = Tcpipe::start(
        addr,
        &["--metrics", "127.0.0.1:0", "--connect-timeout", "200ms"],
    );
    let mut client = connect(tcpipe.addr);
    assert_reset(&mut client, "client of a black hole");
    let scrape = scrape_until(&tcpipe, "the timed-out connect", |s| {
        s.get("tcpipe_target_connect_timeouts_total", &of_target) == 1.0
    });
    assert_eq!(
        scrape.get("tcpipe_target_connect_failures_total", &of_target),
        0.0
    );
    assert_eq!(closed(&scrape, "connect_failed"), 1.0);
}

#[test]
fn the_warm_pool_shows_its_idle_connections() {
    let target = echo_server();
    let name = target.to_string();
    let of_target = [("route", "default"), ("target", name.as_str())];
    let tcpipe = Tcpipe::start(target, &["--metrics", "127.0.0.1:0", "--pool", "3"]);
    scrape_until(&tcpipe, "a full pool", |s| {
        s.get("tcpipe_target_pool_idle_connections", &of_target) == 3.0
    });
    // A client takes one; the pool refills to 3.
    let mut client = connect(tcpipe.addr);
    client.write_all(b"x").unwrap();
    let mut byte = [0u8; 1];
    client.read_exact(&mut byte).unwrap();
    let scrape = scrape_until(&tcpipe, "the pool refilled", |s| {
        s.get("tcpipe_target_pool_idle_connections", &of_target) == 3.0
            && s.get("tcpipe_target_connections_active", &of_target) == 1.0
    });
    // A pooled hand-out is no connect made for the client.
    assert_eq!(
        scrape.get("tcpipe_target_connect_attempts_total", &of_target),
        0.0
    );
}

#[test]
fn reloads_are_counted_by_result() {
    let target = echo_server();
    let text = |targets: &str| {
        format!(
            "[global]\nmetrics = \"127.0.0.1:0\"\n\n{}",
            route("web", &[target], targets)
        )
    };
    let file = ConfigFile::new(&text(""));
    let tcpipe = Tcpipe::start_config(&file);
    file.write(&text("idle-timeout = \"1m\""));
    tcpipe.reload().expect("a valid reload");
    file.write("[[route]]\nname = 5\n");
    assert!(tcpipe.reload().is_err(), "an invalid file must be refused");
    let scrape = scrape_until(&tcpipe, "two reloads", |s| {
        s.get("tcpipe_reloads_total", &[("result", "failed")]) == 1.0
    });
    assert_eq!(scrape.get("tcpipe_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(
        scrape.get("tcpipe_connections_accepted_total", &[("route", "web")]),
        0.0
    );
}

#[test]
#[cfg_attr(
    not(has_promtool),
    ignore = "needs promtool (Debian package prometheus)"
)]
fn promtool_accepts_the_output() {
    let binary = common::tools::require(&["promtool"], "--version", "prometheus");
    let target = echo_server();
    let tcpipe = Tcpipe::start(target, &["--metrics", "127.0.0.1:0", "--pool", "1"]);
    let mut client = connect(tcpipe.addr);
    client.write_all(b"hello").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    let scrape = scrape_until(&tcpipe, "the pipe closed", |s| closed(s, "clean") == 1.0);
    let build = format!(
        "tcpipe_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(scrape.text.contains(&build), "{}", scrape.text);

    let mut promtool = Command::new(&binary)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn only_get_metrics_is_served_and_a_silent_scraper_holds_nothing() {
    let target = echo_server();
    let tcpipe = Tcpipe::start(target, &["--metrics", "127.0.0.1:0"]);
    let metrics = tcpipe.metrics_addr();
    assert_eq!(http_get(metrics, "/nope").status, 404);
    assert_eq!(
        request(
            metrics,
            "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        )
        .status,
        405
    );
    assert_eq!(request(metrics, "garbage\r\n\r\n").status, 400);
    // A scraper that connects and says nothing does not stop forwarding.
    let _silent = std::net::TcpStream::connect(metrics).unwrap();
    let mut client = connect(tcpipe.addr);
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    client.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
}

#[test]
fn a_metrics_address_in_use_is_a_startup_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let target = echo_server().to_string();
    let output = common::run_tcpipe(&["-l", "127.0.0.1:0", "-t", &target, "--metrics", &addr]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("metrics"),
        "{stderr}"
    );
}

#[test]
fn limits_and_accept_back_off_are_counted_once_per_episode() {
    let target = echo_server();
    // A process-wide limit of one pipe: the second client waits.
    let tcpipe = Tcpipe::start(
        target,
        &["--metrics", "127.0.0.1:0", "--max-connections", "1"],
    );
    let mut first = connect(tcpipe.addr);
    first.write_all(b"1").unwrap();
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).unwrap();
    let mut second = connect(tcpipe.addr);
    second.write_all(b"2").unwrap();
    let scrape = scrape_until(&tcpipe, "the limit reached", |s| {
        s.get("tcpipe_connection_limit_reached_total", &[]) == 1.0
    });
    assert_eq!(scrape.get("tcpipe_connections_accepted_total", &ROUTE), 1.0);
    drop(first);
    second.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"2");
    let scrape = scrape_until(&tcpipe, "the second client accepted", |s| {
        s.get("tcpipe_connections_accepted_total", &ROUTE) == 2.0
    });
    assert_eq!(
        scrape.get("tcpipe_connection_limit_reached_total", &[]),
        1.0
    );
    assert_eq!(scrape.get("tcpipe_accept_backoffs_total", &[]), 0.0);

    // Out of descriptors: accepting backs off, once for the whole burst.
    let tcpipe = Tcpipe::start_with_fd_limit(48, target, &["--metrics", "127.0.0.1:0"]);
    let clients: Vec<_> = (0..60u8)
        .map(|i| {
            let mut client = connect(tcpipe.addr);
            client.write_all(&[i]).unwrap();
            client
        })
        .collect();
    // No client is dropped before every one has connected, so accepting
    // them all needs more descriptors than 48; the count below says the
    // forwarder ran out, once.
    // Each client closes once served, so the ones waiting get descriptors.
    for (i, mut client) in clients.into_iter().enumerate() {
        client.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], i as u8);
    }
    let scrape = scrape_until(&tcpipe, "every client served", |s| {
        s.get("tcpipe_connections_accepted_total", &ROUTE) == 60.0
            && s.get("tcpipe_connections_active", &ROUTE) == 0.0
    });
    assert_eq!(scrape.get("tcpipe_accept_backoffs_total", &[]), 1.0);
}

#[test]
fn the_library_renders_the_same_text() {
    let target = echo_server();
    let config = tcpipe::Config::new("127.0.0.1:0".parse().unwrap(), target);
    let forwarder = tcpipe::Forwarder::bind(config).expect("bind");
    let addr = forwarder.local_addr().expect("a listener");
    assert_eq!(forwarder.metrics_addr(), None, "no endpoint unless asked");
    let handle = forwarder.handle();
    let running = std::thread::spawn(move || forwarder.run());
    let mut client = connect(addr);
    client.write_all(b"abc").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    read_to_end(&mut client);
    let mut scrape = None;
    assert!(common::wait_until(DEADLINE, || {
        let text = handle.prometheus().expect("running");
        let parsed = Scrape::parse(&text);
        let done = closed(&parsed, "clean") == 1.0;
        scrape = Some(parsed);
        done
    }));
    let scrape = scrape.unwrap();
    let name = target.to_string();
    let labels = [
        ("route", "default"),
        ("target", name.as_str()),
        ("direction", "to_client"),
    ];
    assert_eq!(scrape.get("tcpipe_forwarded_bytes_total", &labels), 3.0);
    handle.shutdown();
    running.join().unwrap().unwrap();
    assert!(
        handle.prometheus().is_err(),
        "a stopped forwarder has no metrics"
    );
}

#[test]
fn refused_clients_are_counted_by_route_and_reason() {
    let target = echo_server();
    let refused = |s: &Scrape, reason: &str| {
        s.get(
            "tcpipe_connections_refused_total",
            &[("route", "default"), ("reason", reason)],
        )
    };
    let denying = Tcpipe::start(target, &["--metrics", "127.0.0.1:0", "--deny", "127.0.0.1"]);
    let mut client = connect(denying.addr);
    assert_reset(&mut client, "denied client");
    let scrape = scrape_until(&denying, "the denial", |s| refused(s, "denied") == 1.0);
    assert_eq!(closed(&scrape, "denied"), 1.0);
    assert_eq!(refused(&scrape, "bad_proxy_header"), 0.0);
    assert_eq!(scrape.get("tcpipe_connections_accepted_total", &ROUTE), 1.0);

    let proxied = Tcpipe::start(
        target,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--accept-proxy",
            "--proxy-timeout",
            "300ms",
        ],
    );
    let mut garbage = connect(proxied.addr);
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_reset(&mut garbage, "client sending no PROXY header");
    let _silent = connect(proxied.addr);
    let scrape = scrape_until(&proxied, "the silent client waiting", |s| {
        s.get("tcpipe_awaiting_proxy_header", &[]) == 1.0
    });
    assert_eq!(refused(&scrape, "bad_proxy_header"), 1.0);
    let scrape = scrape_until(&proxied, "the proxy timeout", |s| {
        refused(s, "proxy_timeout") == 1.0
    });
    assert_eq!(scrape.get("tcpipe_awaiting_proxy_header", &[]), 0.0);
    // Closes are named as refusals are: one each.
    assert_eq!(closed(&scrape, "bad_proxy_header"), 1.0);
    assert_eq!(closed(&scrape, "proxy_timeout"), 1.0);
}

#[test]
fn spliced_bytes_are_shown() {
    let target = echo_server();
    let tcpipe = Tcpipe::start(target, &["--metrics", "127.0.0.1:0", "--splice", "always"]);
    let mut client = connect(tcpipe.addr);
    let size = 1 << 20;
    let writer = {
        let mut client = client.try_clone().unwrap();
        std::thread::spawn(move || {
            client.write_all(&vec![3u8; size]).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        })
    };
    assert_eq!(read_to_end(&mut client).len(), size);
    writer.join().unwrap();
    let scrape = scrape_until(&tcpipe, "the pipe closed", |s| closed(s, "clean") == 1.0);
    assert_eq!(
        scrape.get("tcpipe_spliced_bytes_total", &[]),
        (2 * size) as f64
    );
    assert_eq!(scrape.get("tcpipe_kernel_pipes_in_use", &[]), 0.0);
}
