//! What an admin request asks for: its method, path, query and JSON body
//! read into a [`Call`], or refused with the status and one line naming
//! what is wrong. Pure (no loop, no socket), so that anything a client
//! sends is answered without reaching the forwarder, and property-tested.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::parse_duration;
use crate::hooks::PipeId;
use crate::runtime::{PipeFilter, TargetState};

/// How long `wait-empty` waits when the body names no timeout.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// The longest `wait-empty` may wait.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A route's target, as a path or `route/target` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TargetRef {
    pub(crate) route: String,
    pub(crate) target: String,
}

impl TargetRef {
    /// `route/target`: the route is up to the first `/` (route names have
    /// none; a target's name is `host:port`).
    pub(crate) fn parse(text: &str) -> Option<TargetRef> {
        let (route, target) = text.split_once('/')?;
        (!route.is_empty() && !target.is_empty()).then(|| TargetRef {
            route: route.to_string(),
            target: target.to_string(),
        })
    }

    pub(crate) fn filter(&self) -> PipeFilter {
        PipeFilter::Target {
            route: self.route.clone(),
            target: self.target.clone(),
        }
    }
}

impl std::fmt::Display for TargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.route, self.target)
    }
}

/// One admin operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `GET /`: the status page.
    Index,
    Routes,
    Targets(Option<String>),
    Pipes(Option<PipeFilter>),
    SetState(TargetRef, TargetState),
    SetWeight(TargetRef, u32),
    KillPipe(PipeId),
    KillPipes(PipeFilter),
    WaitEmpty(TargetRef, Duration),
    Reload,
    Upgrade,
}

/// Why a request is not served: a status and one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) message: String,
    /// With 405: the methods the path takes.
    pub(crate) allow: Option<&'static str>,
}

impl Refusal {
    /// A control character a client sent (decoded from `%0A`, say) is
    /// written escaped: the message stays one line.
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Refusal {
        let message: String = message.into();
        let message = if message.chars().any(char::is_control) {
            message
                .chars()
                .map(|c| match c {
                    c if c.is_control() => c.escape_default().to_string(),
                    c => c.to_string(),
                })
                .collect()
        } else {
            message
        };
        Refusal {
            status,
            message,
            allow: None,
        }
    }

    fn bad(message: impl Into<String>) -> Refusal {
        Refusal::new(400, message)
    }
}

/// The endpoints, by path (segments percent-decoded) and method.
pub(crate) fn parse(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Result<Call, Refusal> {
    let segments = segments(path)?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let only = |allowed: &'static str| {
        let ok = allowed.split(", ").any(|m| m == method) || (method == "HEAD" && allowed == "GET");
        if ok {
            Ok(())
        } else {
            Err(Refusal {
                allow: Some(if allowed == "GET" {
                    "GET, HEAD"
                } else {
                    allowed
                }),
                ..Refusal::new(405, format!("{path} takes {allowed}, not {method}"))
            })
        }
    };
    let no_query = || match query {
        Some(q) if !q.is_empty() => Err(Refusal::bad(format!("query: {path} takes no parameters"))),
        _ => Ok(()),
    };
    match segments.as_slice() {
        [] => {
            only("GET")?;
            Ok(Call::Index)
        }
        ["v1", "routes"] => {
            only("GET")?;
            no_query()?;
            Ok(Call::Routes)
        }
        ["v1", "targets"] => {
            only("GET")?;
            let params = params(query, &["route"])?;
            Ok(Call::Targets(param(&params, "route")))
        }
        ["v1", "pipes"] => {
            only("GET")?;
            let params = params(query, &["route", "target"])?;
            let filter = filter_of(param(&params, "route"), param(&params, "target"), "query")?;
            Ok(Call::Pipes(filter))
        }
        ["v1", "pipes", "kill"] => {
            only("POST")?;
            no_query()?;
            let body = object(body, &["route", "target"])?;
            let route = string_field(&body, "route")?;
            let target = string_field(&body, "target")?;
            match filter_of(route, target, "body")? {
                Some(filter) => Ok(Call::KillPipes(filter)),
                None => Err(Refusal::bad(
                    "body: give {\"route\": R} or {\"target\": \"R/T\"}",
                )),
            }
        }
        ["v1", "pipes", id] => {
            only("DELETE")?;
            no_query()?;
            let id = id
                .parse::<u64>()
                .ok()
                .filter(|_| id.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| Refusal::bad(format!("pipe id: '{id}' is not a number")))?;
            Ok(Call::KillPipe(PipeId::from(id)))
        }
        ["v1", "targets", route, target, action] => {
            let at = TargetRef {
                route: route.to_string(),
                target: target.to_string(),
            };
            if route.is_empty() || target.is_empty() {
                return Err(Refusal::new(404, format!("no endpoint {path}")));
            }
            match *action {
                "state" => {
                    only("PUT")?;
                    no_query()?;
                    let body = object(body, &["state"])?;
                    let text = string_field(&body, "state")?
                        .ok_or_else(|| Refusal::bad("state: missing; ready, drain or maint"))?;
                    let state = TargetState::parse(&text).ok_or_else(|| {
                        Refusal::bad(format!("state: '{text}' is not ready, drain or maint"))
                    })?;
                    Ok(Call::SetState(at, state))
                }
                "weight" => {
                    only("PUT")?;
                    no_query()?;
                    let body = object(body, &["weight"])?;
                    let weight = match body.get("weight") {
                        None => return Err(Refusal::bad("weight: missing; a whole number")),
                        Some(value) => value.as_u64().and_then(|w| u32::try_from(w).ok()),
                    };
                    let weight = weight.ok_or_else(|| {
                        let value = body.get("weight").map(Value::to_string).unwrap_or_default();
                        Refusal::bad(format!("weight: {value} is not a whole number from 0"))
                    })?;
                    Ok(Call::SetWeight(at, weight))
                }
                "wait-empty" => {
                    only("POST")?;
                    no_query()?;
                    let body = object(body, &["timeout"])?;
                    let timeout = match string_field(&body, "timeout")? {
                        None => DEFAULT_WAIT,
                        Some(text) => parse_duration(&text)
                            .map_err(|why| Refusal::bad(format!("timeout: '{text}': {why}")))?
                            .unwrap_or(Duration::ZERO),
                    };
                    if timeout > MAX_WAIT {
                        return Err(Refusal::bad("timeout: at most 24h"));
                    }
                    Ok(Call::WaitEmpty(at, timeout))
                }
                _ => Err(Refusal::new(404, format!("no endpoint {path}"))),
            }
        }
        ["v1", "reload"] => {
            only("POST")?;
            no_query()?;
            object(body, &[])?;
            Ok(Call::Reload)
        }
        ["v1", "upgrade"] => {
            only("POST")?;
            no_query()?;
            object(body, &[])?;
            Ok(Call::Upgrade)
        }
        _ => Err(Refusal::new(404, format!("no endpoint {path}"))),
    }
}

/// The path's segments, each percent-decoded on its own (so `%2F` stays
/// inside its segment); `/` and the empty path have none.
fn segments(path: &str) -> Result<Vec<String>, Refusal> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Refusal::bad("path: must start with /"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|segment| {
            percent_decode(segment)
                .ok_or_else(|| Refusal::bad(format!("path: bad percent-encoding in '{segment}'")))
        })
        .collect()
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are
/// not UTF-8 once decoded.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        if b == b'%' {
            let hex = bytes.get(at + 1..at + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(b);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What `percent_decode` reads back: unreserved bytes as they are, every
/// other byte escaped. For paths and queries a client builds.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `key=value&...`, each known once at most.
fn params(query: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, Refusal> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).ok_or_else(|| Refusal::bad("query: bad percent-encoding"))?;
        let value = percent_decode(value)
            .ok_or_else(|| Refusal::bad(format!("{key}: bad percent-encoding")))?;
        if !known.contains(&key.as_str()) {
            return Err(Refusal::bad(format!(
                "query: unknown parameter '{key}' (takes {})",
                known.join(", ")
            )));
        }
        if params.iter().any(|(k, _)| *k == key) {
            return Err(Refusal::bad(format!("{key}: given twice")));
        }
        if value.is_empty() {
            return Err(Refusal::bad(format!("{key}: empty")));
        }
        params.push((key, value));
    }
    Ok(params)
}

fn param(params: &[(String, String)], key: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// A route or a `route/target`, not both.
fn filter_of(
    route: Option<String>,
    target: Option<String>,
    place: &str,
) -> Result<Option<PipeFilter>, Refusal> {
    match (route, target) {
        (Some(_), Some(_)) => Err(Refusal::bad(format!(
            "{place}: give route or target, not both"
        ))),
        (Some(route), None) => Ok(Some(PipeFilter::Route(route))),
        (None, Some(target)) => TargetRef::parse(&target)
            .map(|t| Some(t.filter()))
            .ok_or_else(|| Refusal::bad(format!("target: '{target}' is not ROUTE/TARGET"))),
        (None, None) => Ok(None),
    }
}

/// The body as a JSON object with only `known` fields; an empty body is an
/// empty object.
fn object(body: &[u8], known: &[&str]) -> Result<Map<String, Value>, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Refusal::bad(format!("body: not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(Refusal::bad("body: not a JSON object"));
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        let takes = if known.is_empty() {
            "takes none".to_string()
        } else {
            format!("takes {}", known.join(", "))
        };
        return Err(Refusal::bad(format!("{unknown}: unknown field ({takes})")));
    }
    Ok(map)
}

fn string_field(body: &Map<String, Value>, key: &str) -> Result<Option<String>, Refusal> {
    match body.get(key) {
        None => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
        Some(other) => Err(Refusal::bad(format!(
            "{key}: {other} is not a non-empty string"
        ))),
    }
}

#[cfg(test)]
mod tests;
