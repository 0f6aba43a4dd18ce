//! A route's `match` table: which clients of a listener it shares with
//! other routes are its own, by the TLS server name, the ALPN protocols or
//! the protocol they speak; and how specific a match is, so that the most
//! specific route wins and two equally specific ones are a config error.

use std::fmt;
use std::net::SocketAddr;

use super::{ConfigError, Naming, Route};

/// What a client must have sent for a route to take it; every key given
/// must hold. An empty table is no match at all (the route is a default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    /// Server names in lowercase: exact (`api.example.com`) or a wildcard
    /// of one label (`*.example.org`, which `a.example.org` matches and
    /// `a.b.example.org` and `example.org` do not).
    pub sni: Vec<String>,
    /// ALPN protocol names, one of which the client must offer.
    pub alpn: Vec<String>,
    /// The protocol the client speaks.
    pub protocol: Option<Protocol>,
}

/// A protocol `match.protocol` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "cli",
    derive(serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Protocol {
    /// A TLS handshake record.
    Tls,
    /// `SSH-`.
    Ssh,
    /// An HTTP/1 request line: a method token and a space.
    Http,
    /// Anything else that says something first.
    Other,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tls => "tls",
            Protocol::Ssh => "ssh",
            Protocol::Http => "http",
            Protocol::Other => "other",
        })
    }
}

/// `sni [a.example *.b.example], alpn [h2], protocol tls`, or `none`.
impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.sni.is_empty() {
            parts.push(format!("sni [{}]", self.sni.join(" ")));
        }
        if !self.alpn.is_empty() {
            parts.push(format!("alpn [{}]", self.alpn.join(" ")));
        }
        if let Some(protocol) = self.protocol {
            parts.push(format!("protocol {protocol}"));
        }
        if parts.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&parts.join(", "))
    }
}

/// What inspection learnt of a client.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Seen<'a> {
    pub(crate) protocol: Option<Protocol>,
    /// Lowercase, from a complete ClientHello.
    pub(crate) server_name: Option<&'a str>,
    pub(crate) alpn: &'a [Vec<u8>],
}

/// Which key made a route match, most specific first: what
/// `tcpipe_route_matched_total` says in its `by` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum By {
    Default,
    Protocol,
    Alpn,
    Wildcard,
    Sni,
}

impl By {
    pub(crate) const ALL: [By; 5] = [By::Sni, By::Wildcard, By::Alpn, By::Protocol, By::Default];

    pub(crate) fn label(self) -> &'static str {
        match self {
            By::Sni => "sni",
            By::Wildcard => "wildcard",
            By::Alpn => "alpn",
            By::Protocol => "protocol",
            By::Default => "default",
        }
    }

    /// Its slot in [`By::ALL`].
    pub(crate) fn slot(self) -> usize {
        4 - self as usize
    }
}

/// How specific a match is: by name (exact over wildcard), then ALPN,
/// then protocol. Larger wins.
pub(crate) type Rank = (u8, bool, bool);

impl Match {
    /// Whether the table has any key: a route without one is its
    /// listener's default.
    pub fn is_empty(&self) -> bool {
        self.sni.is_empty() && self.alpn.is_empty() && self.protocol.is_none()
    }

    /// Whether a client's hello must be read whole (not just sniffed).
    pub(crate) fn needs_hello(&self) -> bool {
        !self.sni.is_empty() || !self.alpn.is_empty()
    }

    /// How specific a match of this table is, and its strongest key, if
    /// `seen` satisfies every key.
    pub(crate) fn matches(&self, seen: &Seen<'_>) -> Option<(Rank, By)> {
        if let Some(protocol) = self.protocol {
            if seen.protocol != Some(protocol) {
                return None;
            }
        }
        let mut name = 0;
        if !self.sni.is_empty() {
            let wanted = seen.server_name?;
            name = self
                .sni
                .iter()
                .map(|pattern| name_match(pattern, wanted))
                .max()
                .unwrap_or(0);
            if name == 0 {
                return None;
            }
        }
        let alpn = !self.alpn.is_empty();
        if alpn
            && !seen
                .alpn
                .iter()
                .any(|offered| self.alpn.iter().any(|a| a.as_bytes() == offered.as_slice()))
        {
            return None;
        }
        let by = match (name, alpn) {
            (2, _) => By::Sni,
            (1, _) => By::Wildcard,
            (_, true) => By::Alpn,
            _ => By::Protocol,
        };
        Some(((name, alpn, self.protocol.is_some()), by))
    }
}

/// 2 for an exact match of `pattern`, 1 for a wildcard one, 0 for none.
fn name_match(pattern: &str, name: &str) -> u8 {
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            let first_label_ends = name.find('.');
            u8::from(first_label_ends.is_some_and(|dot| dot > 0 && &name[dot + 1..] == parent))
        }
        None => 2 * u8::from(pattern == name),
    }
}

/// Why `pattern` is not a server name `match.sni` can hold, if it is not.
pub(crate) fn sni_problem(pattern: &str) -> Option<&'static str> {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if name.is_empty() || name.len() > 253 {
        return Some("give a DNS name of 1 to 253 characters, or *. and one");
    }
    if name.contains('*') {
        return Some("a wildcard is `*.` before a name, standing for one label");
    }
    let bad_label = name.split('.').any(|label| {
        label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if bad_label {
        return Some("labels are 1 to 63 letters, digits or '-', between dots");
    }
    None
}

/// Routes sharing listen addresses: each group's defaults and ties.
pub(super) fn check_shared(routes: &[Route], naming: Naming) -> Result<(), ConfigError> {
    for (index, route) in routes.iter().enumerate() {
        for &addr in &route.listen {
            for other in &routes[..index] {
                if !other.listen.contains(&addr) {
                    continue;
                }
                if !is_shared(routes, addr) {
                    // Port 0 twice without a `match`: two ports of their own.
                    continue;
                }
                let key = naming.route_key(index, "listen");
                if route.matching.is_empty() && other.matching.is_empty() {
                    return Err(ConfigError::new(
                        key,
                        addr.to_string(),
                        format!(
                            "overlaps {addr}, where route '{}' listens too, and neither has a \
                             `match` table: at most one route per address is the default",
                            other.name
                        ),
                    ));
                }
                if route.accept_proxy != other.accept_proxy {
                    return Err(ConfigError::new(
                        naming.route_key(index, "accept-proxy"),
                        route.accept_proxy.to_string(),
                        format!(
                            "route '{}' shares {addr} and says {}: routes on one address \
                             must agree",
                            other.name, other.accept_proxy
                        ),
                    ));
                }
                if let Some(value) = tie(&route.matching, &other.matching) {
                    return Err(ConfigError::new(
                        naming.route_key(index, "match"),
                        value,
                        format!(
                            "route '{}' on {addr} matches the same clients as specifically: \
                             make one of them more specific",
                            other.name
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether the routes listing `addr` share one listener there: two
/// routes cannot both bind a port other than 0, and on port 0 (a port of
/// the kernel's choosing) the address is shared once one of them has a
/// `match` table.
pub(crate) fn is_shared(routes: &[Route], addr: SocketAddr) -> bool {
    let mut listing = routes.iter().filter(|route| route.listen.contains(&addr));
    if addr.port() != 0 {
        return listing.nth(1).is_some();
    }
    let listing: Vec<&Route> = listing.collect();
    listing.len() > 1 && listing.iter().any(|route| !route.matching.is_empty())
}

/// What two tables both match equally specifically, if anything.
fn tie(a: &Match, b: &Match) -> Option<String> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.sni.is_empty() != b.sni.is_empty()
        || a.alpn.is_empty() != b.alpn.is_empty()
        || a.protocol.is_some() != b.protocol.is_some()
        || a.protocol != b.protocol
    {
        return None;
    }
    let shared_alpn = if a.alpn.is_empty() {
        Some(String::new())
    } else {
        a.alpn.iter().find(|p| b.alpn.contains(p)).cloned()
    }?;
    let shared_name = if a.sni.is_empty() {
        Some(String::new())
    } else {
        a.sni.iter().find(|n| b.sni.contains(n)).cloned()
    }?;
    let value = [
        (!shared_name.is_empty()).then(|| format!("sni {shared_name}")),
        (!shared_alpn.is_empty()).then(|| format!("alpn {shared_alpn}")),
        a.protocol.map(|p| format!("protocol {p}")),
    ];
    Some(value.into_iter().flatten().collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen<'a>(name: Option<&'a str>, alpn: &'a [Vec<u8>]) -> Seen<'a> {
        Seen {
            protocol: Some(Protocol::Tls),
            server_name: name,
            alpn,
        }
    }

    #[test]
    fn a_wildcard_stands_for_exactly_one_label() {
        assert_eq!(name_match("*.example.org", "a.example.org"), 1);
        assert_eq!(name_match("*.example.org", "a.b.example.org"), 0);
        assert_eq!(name_match("*.example.org", "example.org"), 0);
        assert_eq!(name_match("*.example.org", ".example.org"), 0);
        assert_eq!(name_match("a.example.org", "a.example.org"), 2);
    }

    #[test]
    fn exact_beats_wildcard_beats_alpn_beats_protocol() {
        let exact = Match {
            sni: vec!["a.example.org".into()],
            ..Match::default()
        };
        let wildcard = Match {
            sni: vec!["*.example.org".into()],
            ..Match::default()
        };
        let alpn = Match {
            alpn: vec!["h2".into()],
            ..Match::default()
        };
        let tls = Match {
            protocol: Some(Protocol::Tls),
            ..Match::default()
        };
        let offered = [b"h2".to_vec()];
        let client = seen(Some("a.example.org"), &offered);
        let ranks: Vec<_> = [&exact, &wildcard, &alpn, &tls]
            .iter()
            .map(|m| m.matches(&client).unwrap())
            .collect();
        assert!(ranks.windows(2).all(|pair| pair[0].0 > pair[1].0));
        assert_eq!(
            ranks.iter().map(|r| r.1).collect::<Vec<_>>(),
            [By::Sni, By::Wildcard, By::Alpn, By::Protocol]
        );
        assert!(exact.matches(&seen(None, &offered)).is_none());
        assert!(alpn.matches(&seen(Some("a.example.org"), &[])).is_none());
    }

    #[test]
    fn ties_are_found_and_different_keys_are_not_ties() {
        let name = |n: &str| Match {
            sni: vec![n.into()],
            ..Match::default()
        };
        assert!(tie(&name("a.example"), &name("a.example")).is_some());
        assert!(tie(&name("a.example"), &name("b.example")).is_none());
        let with_alpn = Match {
            alpn: vec!["h2".into()],
            ..name("a.example")
        };
        assert!(tie(&name("a.example"), &with_alpn).is_none());
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
        }

        proptest! {
            /// Any text as a pattern or a name: an answer, never a panic.
            #[test]
            fn arbitrary_patterns_and_names_never_panic(pattern in ".{0,40}", name in ".{0,40}") {
                let _ = sni_problem(&pattern);
                let _ = name_match(&pattern, &name);
            }

            /// `*.parent` matches exactly the names of one more label, and
            /// a name matches itself exactly; never the parent itself nor
            /// a name two labels below.
            #[test]
            fn a_wildcard_matches_one_label_below_its_parent(
                parent in proptest::collection::vec(label(), 1..4),
                first in label(),
                second in label(),
            ) {
                let parent = parent.join(".");
                let wildcard = format!("*.{parent}");
                prop_assert!(sni_problem(&wildcard).is_none());
                let one_below = format!("{first}.{parent}");
                let two_below = format!("{second}.{first}.{parent}");
                prop_assert_eq!(name_match(&wildcard, &one_below), 1);
                prop_assert_eq!(name_match(&wildcard, &two_below), 0);
                prop_assert_eq!(name_match(&wildcard, &parent), 0);
                prop_assert_eq!(name_match(&one_below, &one_below), 2);
            }
        }
    }

    #[test]
    fn server_name_patterns_are_dns_names() {
        assert!(sni_problem("api.example.com").is_none());
        assert!(sni_problem("*.example.org").is_none());
        for bad in ["", "*", "a.*.org", "a..b", "-a.b", "a b", "*.", "a.b."] {
            assert!(sni_problem(bad).is_some(), "{bad}");
        }
    }
}
