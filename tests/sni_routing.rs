//! Routing by TLS server name and ALPN on one shared address, without
//! terminating TLS: real clients (Python's `ssl`, `openssl s_client`)
//! complete their handshakes with the server their ClientHello selects,
//! and see its certificate.

mod common;
use common::config::*;
use common::scrape::*;
use common::tls::*;
use common::*;

/// Three TLS services behind one port: `a.example` by its exact name,
/// `*.b.example` by wildcard, and a default.
struct Services {
    a: Cert,
    b: Cert,
    fallback: Cert,
    _servers: [TlsServer; 3],
    tcpipe: Tcpipe,
}

impl Services {
    fn start(extra_routes: &str) -> Services {
        let (a, b, fallback) = (
            Cert::new("a.example"),
            Cert::new("x.b.example"),
            Cert::new("fallback.example"),
        );
        let servers = [
            TlsServer::start(&a),
            TlsServer::start(&b),
            TlsServer::start(&fallback),
        ];
        let file = ConfigFile::new(&format!(
            "[global]\nmetrics = \"127.0.0.1:0\"\n{}{}{}{extra_routes}",
            shared_route("a", servers[0].addr, "match.sni = [\"A.example\"]"),
            shared_route("b", servers[1].addr, "match.sni = [\"*.b.example\"]"),
            shared_route("fallback", servers[2].addr, ""),
        ));
        let tcpipe = Tcpipe::start_config(&file);
        Services {
            a,
            b,
            fallback,
            _servers: servers,
            tcpipe,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        let addr = self.tcpipe.route_addr("a");
        assert_eq!(addr, self.tcpipe.route_addr("fallback"), "not one address");
        addr
    }

    fn handshake(&self, sni: Option<&str>, alpn: Option<&str>) -> String {
        handshake(self.addr(), sni, alpn, &[&self.a, &self.b, &self.fallback])
            .unwrap_or_else(|e| panic!("handshake with {sni:?} failed: {e}"))
    }
}

#[test]
#[cfg_attr(
    not(all(has_python3, has_openssl)),
    ignore = "needs python3 and openssl"
)]
fn each_name_reaches_its_own_server_and_no_name_the_default() {
    let services = Services::start("");
    assert_eq!(
        services.handshake(Some("a.example"), None),
        "cn=a.example alpn=None"
    );
    assert_eq!(
        services.handshake(Some("x.b.example"), None),
        "cn=x.b.example alpn=None",
        "the wildcard route"
    );
    // One label only: y.x.b.example is not *.b.example.
    assert_eq!(
        services.handshake(Some("y.x.b.example"), None),
        "cn=fallback.example alpn=None"
    );
    assert_eq!(
        services.handshake(None, None),
        "cn=fallback.example alpn=None",
        "a client without SNI"
    );
    assert_eq!(
        services.handshake(Some("other.example"), None),
        "cn=fallback.example alpn=None"
    );
    let scrape = scrape_until(&services.tcpipe, "the matches counted", |s| {
        s.get(
            "tcpipe_route_matched_total",
            &[("route", "fallback"), ("by", "default")],
        ) == 3.0
    });
    let matched = |route: &str, by: &str| {
        scrape.get(
            "tcpipe_route_matched_total",
            &[("route", route), ("by", by)],
        )
    };
    assert_eq!(matched("a", "sni"), 1.0);
    assert_eq!(matched("b", "wildcard"), 1.0);
    assert_eq!(matched("a", "default"), 0.0);
    // Each client counts as accepted by the route that took it.
    let accepted =
        |route: &str| scrape.get("tcpipe_connections_accepted_total", &[("route", route)]);
    assert_eq!(
        [accepted("a"), accepted("b"), accepted("fallback")],
        [1.0, 1.0, 3.0]
    );
}

#[test]
#[cfg_attr(
    not(all(has_python3, has_openssl)),
    ignore = "needs python3 and openssl"
)]
fn openssl_s_client_sees_the_certificate_its_name_selects() {
    let services = Services::start("");
    let subject = s_client_subject(services.addr(), "a.example");
    assert!(subject.contains("CN = a.example"), "{subject}");
    let subject = s_client_subject(services.addr(), "q.b.example");
    assert!(subject.contains("CN = x.b.example"), "{subject}");
}

#[test]
#[cfg_attr(
    not(all(has_python3, has_openssl)),
    ignore = "needs python3 and openssl"
)]
fn alpn_chooses_a_route_and_an_exact_name_beats_it() {
    let h2 = Cert::new("h2.example");
    let h2_server = TlsServer::start(&h2);
    let services = Services::start(&shared_route("h2", h2_server.addr, "match.alpn = [\"h2\"]"));
    let cas = [&services.a, &services.b, &services.fallback, &h2];
    let addr = services.addr();
    assert_eq!(
        handshake(addr, Some("other.example"), Some("h2,http/1.1"), &cas).unwrap(),
        "cn=h2.example alpn=h2"
    );
    assert_eq!(
        handshake(addr, None, Some("http/1.1"), &cas).unwrap(),
        "cn=fallback.example alpn=http/1.1",
        "no route wants http/1.1 alone"
    );
    assert_eq!(
        handshake(addr, Some("a.example"), Some("h2"), &cas).unwrap(),
        "cn=a.example alpn=h2",
        "the exact name is more specific than ALPN"
    );
}

#[test]
#[cfg_attr(
    not(all(has_python3, has_openssl)),
    ignore = "needs python3 and openssl"
)]
fn the_access_log_names_the_server_name() {
    let a = Cert::new("a.example");
    let server = TlsServer::start(&a);
    let file = ConfigFile::new(&format!(
        "[global]\naccess-log = \"-\"\n{}",
        shared_route("a", server.addr, "match.sni = [\"a.example\"]"),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("a");
    assert_eq!(
        handshake(addr, Some("a.example"), None, &[&a]).unwrap(),
        "cn=a.example alpn=None"
    );
    assert!(
        tcpipe.wait_for_log("event=close", DEADLINE),
        "no close line: {:?}",
        tcpipe.logs()
    );
    let line = tcpipe
        .logs()
        .into_iter()
        .find(|line| line.contains("event=close"))
        .unwrap_or_default();
    assert!(line.contains(" sni=a.example "), "{line}");
}
