//! Answering an admin request: the token, then the [`Call`] it parses
//! to, carried out through the [`Handle`] (the loop's command channel:
//! each answered between two turns), its outcome as JSON. Waiting for a
//! target to empty and reloading the file run as the server's later work,
//! so they hold up neither the admin thread nor the loop.

use std::time::Duration;

use serde_json::{json, Value};

use super::call::{self, Call, Refusal, TargetRef};
use super::json;
use crate::config::format_duration;
use crate::forwarder::Handle;
use crate::hooks::CommandError;
use crate::http::{Answer, Request, Response};
use crate::reactor::ReloadError;
use crate::runtime::PipeFilter;
use crate::status_page::StatusPage;
use crate::UpgradeError;

const JSON: &str = "application/json";

/// The admin API of one forwarder.
pub(crate) struct Api {
    pub(crate) handle: Handle,
    /// Required of every request, over TCP.
    pub(crate) token: Option<String>,
    /// `GET /`, with the rates measured between this endpoint's views.
    pub(crate) status_page: StatusPage,
}

impl Api {
    pub(crate) fn answer(&self, request: &Request) -> Answer {
        if let Some(token) = &self.token {
            if !authorized(request.header("authorization"), token) {
                return refuse(&Refusal::new(
                    401,
                    "authorization: send the admin token as 'Authorization: Bearer TOKEN'",
                ))
                .with_header("WWW-Authenticate", "Bearer")
                .into();
            }
        }
        let call = call::parse(
            request.method(),
            request.path(),
            request.query(),
            request.body(),
        );
        match call {
            Ok(call) => {
                // What changes something is logged: who did what, when.
                if !matches!(request.method(), "GET" | "HEAD") {
                    log::info!("admin: {} {}", request.method(), request.path());
                }
                self.run(call)
            }
            Err(refusal) => refuse(&refusal).into(),
        }
    }

    fn run(&self, call: Call) -> Answer {
        let handle = &self.handle;
        let answered = match call {
            Call::Index => return self.status_page.respond(handle.status()).into(),
            Call::Routes => handle.routes().map(|routes| json::routes(&routes)),
            Call::Targets(route) => self.targets(route.as_deref()),
            Call::Pipes(filter) => self.pipes(filter.as_ref()),
            Call::SetState(at, state) => handle.set_target_state(&at.route, &at.target, state).map(
                |()| json!({ "route": at.route, "target": at.target, "state": state.as_str() }),
            ),
            Call::SetWeight(at, weight) => handle
                .set_target_weight(&at.route, &at.target, weight)
                .map(|()| json!({ "route": at.route, "target": at.target, "weight": weight })),
            Call::KillPipe(id) => handle.abort(id).map(|()| json!({ "killed": 1 })),
            Call::KillPipes(filter) => handle
                .abort_pipes(filter)
                .map(|killed| json!({ "killed": killed })),
            Call::WaitEmpty(at, timeout) => {
                let handle = handle.clone();
                return Answer::Later(Box::new(move || wait_empty(&handle, &at, timeout)));
            }
            Call::Reload => {
                let handle = handle.clone();
                return Answer::Later(Box::new(move || reload(&handle)));
            }
            Call::Upgrade => {
                let handle = handle.clone();
                return Answer::Later(Box::new(move || upgrade(&handle)));
            }
        };
        match answered {
            Ok(body) => ok(&body),
            Err(e) => refuse(&refusal_of(&e)),
        }
        .into()
    }

    fn targets(&self, route: Option<&str>) -> Result<Value, CommandError> {
        let targets = self.handle.targets()?;
        if let Some(route) = route {
            self.known_route(route)?;
            let of_route = targets.iter().filter(|t| t.route == route);
            return Ok(json::targets(of_route));
        }
        Ok(json::targets(targets.iter()))
    }

    fn pipes(&self, filter: Option<&PipeFilter>) -> Result<Value, CommandError> {
        match filter {
            Some(PipeFilter::Route(route)) => self.known_route(route)?,
            Some(PipeFilter::Target { route, target }) => {
                let known =
                    (self.handle.targets()?.iter()).any(|t| t.route == *route && t.name == *target);
                if !known {
                    return Err(CommandError::NoSuchTarget(format!("{route}/{target}")));
                }
            }
            None => {}
        }
        let pipes = self.handle.pipes()?;
        let chosen = pipes.iter().filter(|pipe| match filter {
            None => true,
            Some(PipeFilter::Route(route)) => pipe.route.as_deref() == Some(route),
            Some(PipeFilter::Target { route, target }) => {
                pipe.route.as_deref() == Some(route) && pipe.target == *target
            }
        });
        Ok(json::pipes(chosen))
    }

    fn known_route(&self, route: &str) -> Result<(), CommandError> {
        if self.handle.routes()?.iter().any(|r| r.name == route) {
            Ok(())
        } else {
            Err(CommandError::NoSuchRoute(route.to_string()))
        }
    }
}

/// `Bearer TOKEN`, compared in time that depends on the token's length
/// only, never on where a guess first differs.
fn authorized(header: Option<&str>, token: &str) -> bool {
    let Some(sent) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (sent, token) = (sent.trim().as_bytes(), token.as_bytes());
    let mut differ = sent.len() ^ token.len();
    for (at, &expected) in token.iter().enumerate() {
        differ |= usize::from(sent.get(at).copied().unwrap_or(0) ^ expected);
    }
    differ == 0
}

/// Answers once the target has no live pipe: 200, or 409 with how many
/// remain at the timeout (so that `curl --fail` in a script stops there).
fn wait_empty(handle: &Handle, at: &TargetRef, timeout: Duration) -> Response {
    match handle.wait_empty(&at.route, &at.target, timeout) {
        Ok(0) => ok(&json!({ "route": at.route, "target": at.target, "remaining": 0 })),
        Ok(remaining) => {
            let pipes = if remaining == 1 { "pipe" } else { "pipes" };
            let message = format!(
                "{at}: {remaining} {pipes} still live after {}",
                format_duration(Some(timeout))
            );
            respond(409, &json!({ "error": message, "remaining": remaining }))
        }
        Err(e) => refuse(&refusal_of(&e)),
    }
}

/// As SIGHUP: the file read again and applied, or why not.
fn reload(handle: &Handle) -> Response {
    match handle.reload_file() {
        Ok(reloaded) => ok(&json::reloaded(&reloaded)),
        Err(e) => {
            let status = match e {
                ReloadError::Invalid(_) | ReloadError::File(_) => 422,
                ReloadError::NoFile => 409,
                ReloadError::ShuttingDown | ReloadError::Stopped => 503,
                _ => 500,
            };
            refuse(&Refusal::new(status, format!("reload failed: {e}")))
        }
    }
}

/// As SIGUSR2: the new binary has taken over every listener and
/// connection (this process then exits), or why not (this process carries
/// on unchanged).
fn upgrade(handle: &Handle) -> Response {
    match handle.upgrade() {
        Ok(upgraded) => ok(&json!({
            "upgraded": true,
            "pid": upgraded.pid,
            "listeners": upgraded.listeners,
            "connections": upgraded.connections,
            "took_ms": u64::try_from(upgraded.took.as_millis()).unwrap_or(u64::MAX),
        })),
        Err(e) => {
            let status = match e {
                UpgradeError::InProgress => 409,
                _ => 500,
            };
            refuse(&Refusal::new(status, format!("upgrade failed: {e}")))
        }
    }
}

fn refusal_of(e: &CommandError) -> Refusal {
    let status = match e {
        CommandError::NoSuchPipe(_)
        | CommandError::NoSuchRoute(_)
        | CommandError::NoSuchTarget(_) => 404,
        CommandError::Invalid(_) => 400,
        CommandError::TooLate(_) => 409,
        CommandError::ShuttingDown | CommandError::Stopped => 503,
        _ => 500,
    };
    Refusal::new(status, e.to_string())
}

fn ok(body: &Value) -> Response {
    respond(200, body)
}

fn respond(status: u16, body: &Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    Response::new(status, JSON, text)
}

fn refuse(refusal: &Refusal) -> Response {
    let response = respond(refusal.status, &json::error(&refusal.message));
    match refusal.allow {
        Some(allow) => response.with_header("Allow", allow),
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        let token = "0123456789abcdef";
        assert!(authorized(Some("Bearer 0123456789abcdef"), token));
        for wrong in [
            None,
            Some(""),
            Some("0123456789abcdef"),
            Some("Basic 0123456789abcdef"),
            Some("Bearer 0123456789abcdeF"),
            Some("Bearer 0123456789abcde"),
            Some("Bearer 0123456789abcdef0"),
            Some("Bearer "),
        ] {
            assert!(!authorized(wrong, token), "{wrong:?}");
        }
    }
}
