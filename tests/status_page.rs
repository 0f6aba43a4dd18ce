//! `GET /` on the metrics endpoint: the status page shows every route and
//! target as the forwarder has them (state, health, live pipes, bytes),
//! with names from the config escaped, and a real browser (headless
//! Chromium) renders it, its refresh script included, with a drained
//! target shown as drained.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::scrape::http_get;
use common::{chromium, connect, listener, wait_until, DEADLINE};
use tcpipe::{Config, Forwarder, Handle, Route, Target, TargetState};

/// A library forwarder serving metrics on an ephemeral port.
struct Served {
    handle: Handle,
    metrics: SocketAddr,
    listening: Vec<(String, SocketAddr)>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Served {
    fn start(mut config: Config) -> Served {
        config.metrics = Some("127.0.0.1:0".parse().unwrap());
        // The test's odd target names are not host names to look up.
        config.resolve_interval = None;
        let forwarder = Forwarder::bind(config).expect("bind the forwarder");
        let metrics = forwarder.metrics_addr().expect("metrics are served");
        let listening = forwarder.listening();
        let handle = forwarder.handle();
        let thread = Some(thread::spawn(move || forwarder.run()));
        Served {
            handle,
            metrics,
            listening,
            thread,
        }
    }

    fn route_addr(&self, name: &str) -> SocketAddr {
        let found = self.listening.iter().find(|(route, _)| route == name);
        found.map(|(_, addr)| *addr).expect("the route listens")
    }

    fn url(&self) -> String {
        format!("http://{}/", self.metrics)
    }

    fn page(&self) -> String {
        let response = http_get(self.metrics, "/");
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.content_type, "text/html; charset=utf-8");
        response.body
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `<tr>` of the target named `escaped` (as the page writes it).
fn row<'a>(html: &'a str, escaped: &str) -> &'a str {
    let at = html
        .find(&format!("data-target=\"{escaped}\""))
        .unwrap_or_else(|| panic!("no row for {escaped} in {html}"));
    let start = html[..at].rfind("<tr").expect("a row starts");
    let end = start + html[start..].find("</tr>").expect("a row ends");
    &html[start..end]
}

/// The text of the row's first cell whose classes start with `class`.
fn cell(row: &str, class: &str) -> String {
    let at = row
        .find(&format!("<td class=\"{class}"))
        .unwrap_or_else(|| panic!("no {class} cell in {row}"));
    let text = &row[at..];
    let text = &text[text.find('>').expect("the tag ends") + 1..];
    text[..text.find("</td>").expect("the cell ends")].to_string()
}

/// Accepts one connection on whichever of `targets` gets it; its index.
fn accept_any(targets: &[TcpListener]) -> (usize, TcpStream) {
    for target in targets {
        target.set_nonblocking(true).unwrap();
    }
    let mut accepted = None;
    let arrived = wait_until(DEADLINE, || {
        accepted = targets
            .iter()
            .enumerate()
            .find_map(|(i, t)| t.accept().ok().map(|(stream, _)| (i, stream)));
        accepted.is_some()
    });
    assert!(arrived, "no target got the connection");
    let (index, stream) = accepted.unwrap();
    stream.set_nonblocking(false).unwrap();
    (index, stream)
}

/// A client through `route` whose target got `bytes` bytes: the client,
/// the target's end, and which target.
fn open_pipe(addr: SocketAddr, targets: &[TcpListener], bytes: usize) -> Pipe {
    let mut client = connect(addr);
    let (target, mut upstream) = accept_any(targets);
    client.write_all(&vec![b'x'; bytes]).unwrap();
    let mut got = vec![0; bytes];
    upstream.set_read_timeout(Some(DEADLINE)).unwrap();
    upstream.read_exact(&mut got).unwrap();
    Pipe {
        client,
        upstream,
        target,
    }
}

struct Pipe {
    client: TcpStream,
    upstream: TcpStream,
    target: usize,
}

impl Pipe {
    /// The target answers with `bytes` bytes, and the client reads them.
    fn answer(&mut self, bytes: usize) {
        self.upstream.write_all(&vec![b'y'; bytes]).unwrap();
        let mut got = vec![0; bytes];
        self.client.set_read_timeout(Some(DEADLINE)).unwrap();
        self.client.read_exact(&mut got).unwrap();
    }
}

fn two_targets() -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let (a, a_addr) = listener();
    let (b, b_addr) = listener();
    (vec![a, b], vec![a_addr, b_addr])
}

fn route_to(name: &str, targets: &[SocketAddr]) -> Route {
    let mut route = Route::new(name, "127.0.0.1:0".parse().unwrap(), targets[0]);
    route.targets = targets.iter().map(|addr| Target::from(*addr)).collect();
    route
}

#[test]
fn every_route_and_target_is_on_the_page_with_its_live_pipes_and_bytes() {
    the_page_matches_what_clients_did(1);
}

#[test]
fn with_two_workers_the_page_sums_what_each_one_has() {
    the_page_matches_what_clients_did(2);
}

fn the_page_matches_what_clients_did(workers: usize) {
    let (web_targets, web_addrs) = two_targets();
    let (db_target, db_addr) = listener();
    let mut config = Config::with_routes(vec![
        route_to("web", &web_addrs),
        route_to("db", &[db_addr]),
    ]);
    config.workers = workers;
    let served = Served::start(config);
    let web = served.route_addr("web");
    let db_targets = [db_target];

    let mut pipes: Vec<Pipe> = (0..4).map(|_| open_pipe(web, &web_targets, 100)).collect();
    pipes.push(open_pipe(served.route_addr("db"), &db_targets, 7));
    let mut live = HashMap::new();
    for (i, addr) in web_addrs.iter().enumerate() {
        let n = pipes[..4].iter().filter(|p| p.target == i).count();
        live.insert(addr.to_string(), n);
    }
    live.insert(db_addr.to_string(), 1);

    let html = served.page();
    assert!(html.contains("<section class=\"route\" data-route=\"web\">"));
    assert!(html.contains("<section class=\"route\" data-route=\"db\">"));
    assert!(html.contains(&format!("listens on {web} · round-robin")));
    let web_section = &html[html.find("data-route=\"web\"").unwrap()..];
    let web_total = &web_section[web_section.find("<tfoot>").unwrap()..];
    assert_eq!(cell(web_total, "live"), "4", "{web_total}");
    assert!(
        html.contains("2 routes · 3 of 3 targets up · 5 live pipes"),
        "{html}"
    );
    for (name, live) in &live {
        let row = row(&html, name);
        assert_eq!(cell(row, "live"), live.to_string(), "{row}");
        assert_eq!(cell(row, "total"), live.to_string(), "{row}");
        assert!(
            row.contains("data-state=\"ready\" data-health=\"up\""),
            "{row}"
        );
        let bytes = if *name == db_addr.to_string() {
            7
        } else {
            100 * live
        };
        assert!(row.contains(&format!("title=\"{bytes} bytes\"")), "{row}");
    }

    // The page follows: with every pipe gone, nothing is live.
    drop(pipes);
    let all_idle = wait_until(DEADLINE, || {
        let html = served.page();
        live.keys()
            .all(|name| cell(row(&html, name), "live") == "0")
    });
    assert!(all_idle, "{}", served.page());
}

#[test]
fn metrics_stay_where_they_were_and_head_of_the_page_has_no_body() {
    let (target, addr) = listener();
    let served = Served::start(Config::with_routes(vec![route_to("web", &[addr])]));
    let metrics = http_get(served.metrics, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .content_type
        .starts_with("text/plain; version=0.0.4"));
    let scrape = common::scrape::Scrape::parse(&metrics.body);
    let accepted = scrape.get("tcpipe_connections_accepted_total", &[("route", "web")]);
    assert_eq!(accepted, 0.0);
    let head = common::scrape::request(served.metrics, "HEAD / HTTP/1.1\r\n\r\n");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    drop(target);
}

/// The route the browser test sees: `web` with two targets, `db` with one
/// whose name would be markup if it were not escaped.
const EVIL: &str = "<img src=x onerror=alert(1)>";

#[test]
#[cfg_attr(not(has_chromium), ignore = "needs chromium (Debian package chromium)")]
fn a_browser_shows_a_drained_target_as_drained_with_its_live_pipes() {
    let (web_targets, web_addrs) = two_targets();
    let (_db_target, db_addr) = listener();
    let mut db = route_to("db", &[db_addr]);
    db.targets[0].name = EVIL.into();
    let served = Served::start(Config::with_routes(vec![route_to("web", &web_addrs), db]));
    let web = served.route_addr("web");

    // Pipes until the first target has two; then it is drained.
    let mut pipes = Vec::new();
    while pipes.iter().filter(|p: &&Pipe| p.target == 0).count() < 2 {
        pipes.push(open_pipe(web, &web_targets, 10));
    }
    let drained = web_addrs[0].to_string();
    served
        .handle
        .set_target_state("web", &drained, TargetState::Drain)
        .expect("drain the target");

    // Five seconds of the page's own time: its script fetches the page
    // again and swaps it in at least once, and what is checked is that.
    let dom = chromium::rendered_dom(&served.url(), Duration::from_secs(5));
    let refreshes: u32 = dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the refresh script did not run: {dom}"));
    assert!(refreshes >= 1, "{dom}");
    // Every fetch worked: the banner saying otherwise stays hidden.
    let banner = "<p id=\"stale\" class=\"stale\" hidden=\"\"></p>";
    assert!(dom.contains(banner), "{dom}");

    let row_of_drained = row(&dom, &drained);
    assert!(
        row_of_drained.contains("data-state=\"drain\""),
        "{row_of_drained}"
    );
    assert_eq!(
        cell(row_of_drained, "text state"),
        "<span class=\"badge drain\">drain</span>"
    );
    assert_eq!(cell(row_of_drained, "live"), "2");
    let other = row(&dom, &web_addrs[1].to_string());
    assert!(other.contains("data-state=\"ready\""), "{other}");

    // The odd name is text on the page, never an element.
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
    drop(pipes);
}

/// Makes `examples/status_page.png`, the README's picture: two routes,
/// traffic flowing, a drained target with live pipes, a backup, a target
/// down. `cargo test --test status_page -- --ignored screenshot`.
#[test]
#[ignore = "makes examples/status_page.png for README"]
fn screenshot() {
    let named = |name: &str, addr: SocketAddr| Target::new(name, addr);
    let (web_targets, web_addrs): (Vec<_>, Vec<_>) = (0..4).map(|_| listener()).unzip();
    let (db_target, db_addr) = listener();
    let mut web = route_to("web", &web_addrs);
    web.targets = vec![
        named("app1.internal:8080", web_addrs[0]).weight(3),
        named("app2.internal:8080", web_addrs[1]).weight(2),
        named("app3.internal:8080", web_addrs[2]),
        named("spare.internal:8080", web_addrs[3]).backup(),
    ];
    let mut db = route_to("db", &[db_addr]);
    db.balance = tcpipe::Balance::LeastConn;
    db.targets = vec![
        named("db1.internal:5432", db_addr),
        named("db2.internal:5432", common::refused_addr()),
    ];
    let served = Served::start(Config::with_routes(vec![web, db]));
    let (web, db) = (served.route_addr("web"), served.route_addr("db"));
    let mut pipes: Vec<Pipe> = (0..12)
        .map(|_| open_pipe(web, &web_targets, 40_000))
        .collect();
    for pipe in &mut pipes {
        pipe.answer(2_000_000);
    }
    for _ in 0..4 {
        // Those that try db2 first fail over to db1.
        let mut pipe = open_pipe(db, std::slice::from_ref(&db_target), 3_000);
        pipe.answer(150_000);
        pipes.push(pipe);
    }
    served
        .handle
        .set_target_state("web", "app1.internal:8080", TargetState::Drain)
        .expect("drain");
    // A first sample, then traffic for the rates to measure, paced.
    served.page();
    for _ in 0..30 {
        let mut pipe = open_pipe(web, &web_targets, 256 * 1024);
        pipe.answer(1024 * 1024);
        thread::sleep(Duration::from_millis(50));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/status_page.png");
    chromium::screenshot(&served.url(), Duration::from_secs(1), 1280, 750, &path);
    drop(pipes);
}
