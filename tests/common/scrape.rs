//! Reading the metrics endpoint as Prometheus would: a plain HTTP GET, and
//! the text format parsed into series.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::{wait_until, Tcpipe, DEADLINE};

impl Tcpipe {
    /// Where the binary serves `/metrics`, as the newest `READY=1` says.
    pub fn metrics_addr(&self) -> SocketAddr {
        let ready = self.latest_ready();
        ready
            .metrics()
            .unwrap_or_else(|| panic!("tcpipe serves no metrics: {ready:?}"))
    }

    /// One scrape of `/metrics`.
    pub fn scrape(&self) -> Scrape {
        let response = http_get(self.metrics_addr(), "/metrics");
        assert_eq!(response.status, 200, "{}", response.body);
        assert!(
            response
                .content_type
                .starts_with("text/plain; version=0.0.4"),
            "content type {}",
            response.content_type
        );
        Scrape::parse(&response.body)
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET path` on `addr`, HTTP/1.1, read to the server's close.
pub fn http_get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: tcpipe\r\n\r\n"),
    )
}

/// Sends `raw` and reads the whole response.
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream.write_all(raw.as_bytes()).expect("send the request");
    read_response(stream)
}

/// Reads a response to the server's close.
pub fn read_response(mut stream: TcpStream) -> Response {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read the response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Type: "))
        .unwrap_or_default()
        .to_string();
    Response {
        status,
        content_type,
        body: body.to_string(),
    }
}

/// Every sample of a scrape: `name{k="v",...}` (labels sorted) to value.
pub struct Scrape {
    pub text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.insert(key(name, &labels), value);
        }
        Scrape {
            text: text.to_string(),
            samples,
        }
    }

    /// The sample `name` with exactly these labels; panics if absent.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = key(name, &labels);
        *self
            .samples
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key} in:\n{}", self.text))
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split("\",")
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once("=\"").expect("a label pair");
            (k.to_string(), v.trim_end_matches('"').to_string())
        })
        .collect()
}

fn key(name: &str, labels: &[(String, String)]) -> String {
    let mut labels = labels.to_vec();
    labels.sort();
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", pairs.join(","))
}

/// The route a forwarder started from flags has.
pub const FLAGS_ROUTE: &str = "default";

impl Tcpipe {
    /// `name{route="default",target=TARGET}` now: what the flags' route
    /// did with one target (`tcpipe_target_connect_attempts_total`, ...).
    pub fn target_metric(&self, name: &str, target: SocketAddr) -> f64 {
        let target = target.to_string();
        self.scrape()
            .get(name, &[("route", FLAGS_ROUTE), ("target", &target)])
    }

    /// Connects made to `target` for clients (pooled connections handed
    /// out are not connects); every one is a client sent to it.
    pub fn connects_to(&self, target: SocketAddr) -> usize {
        self.target_metric("tcpipe_target_connect_attempts_total", target) as usize
    }

    /// Waits until `/metrics` shows `target` taking clients (`up`) or held
    /// down by health checks.
    pub fn wait_target_up(&self, target: SocketAddr, up: bool) {
        let label = target.to_string();
        let want = if up { 1.0 } else { 0.0 };
        scrape_until(
            self,
            &format!("tcpipe_target_up {want} for {target}"),
            |s| {
                s.get(
                    "tcpipe_target_up",
                    &[("route", FLAGS_ROUTE), ("target", &label)],
                ) == want
            },
        );
    }

    /// `tcpipe_connections_active` of the flags' route now.
    pub fn active_pipes(&self) -> usize {
        self.scrape()
            .get("tcpipe_connections_active", &[("route", FLAGS_ROUTE)]) as usize
    }
}

/// Scrapes until `condition` holds for a scrape, and returns that one.
pub fn scrape_until(tcpipe: &Tcpipe, what: &str, condition: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    let held = wait_until(DEADLINE, || {
        let scrape = tcpipe.scrape();
        let done = condition(&scrape);
        last = Some(scrape);
        if !done {
            std::thread::sleep(Duration::from_millis(20));
        }
        done
    });
    let last = last.expect("at least one scrape");
    assert!(held, "{what}: never seen; last scrape:\n{}", last.text);
    last
}
