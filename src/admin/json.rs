//! The JSON the admin API answers with: one shape per resource, named as
//! README documents them (`snake_case` keys, bytes and counts as numbers,
//! ages in seconds). `tcpipe ctl` reads these back for its tables.

use serde_json::{json, Value};

use crate::reactor::{PipeInfo, PipeState, Reloaded};
use crate::runtime::{RouteInfo, TargetInfo};

pub(crate) fn routes(routes: &[RouteInfo]) -> Value {
    let routes: Vec<Value> = routes
        .iter()
        .map(|route| {
            json!({
                "name": route.name,
                "listen": route.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "balance": route.balance,
                "targets": route.targets,
                "live_pipes": route.live_pipes,
                "total_pipes": route.total_pipes,
            })
        })
        .collect();
    json!({ "routes": routes })
}

pub(crate) fn targets<'a>(targets: impl Iterator<Item = &'a TargetInfo>) -> Value {
    let targets: Vec<Value> = targets
        .map(|target| {
            json!({
                "route": target.route,
                "name": target.name,
                "address": target.addr.to_string(),
                "state": target.state.as_str(),
                "weight": target.weight,
                "backup": target.backup,
                "healthy": target.healthy,
                "live_pipes": target.live_pipes,
                "total_pipes": target.total_pipes,
                "bytes_to_target": target.bytes_toward_target,
                "bytes_to_client": target.bytes_toward_client,
                "connect_failures": target.connect_failures,
            })
        })
        .collect();
    json!({ "targets": targets })
}

pub(crate) fn pipes<'a>(pipes: impl Iterator<Item = &'a PipeInfo>) -> Value {
    let pipes: Vec<Value> = pipes
        .map(|pipe| {
            json!({
                "id": pipe.id.get(),
                "route": pipe.route,
                "client": pipe.client.to_string(),
                "target": pipe.target,
                "age_seconds": (pipe.age.as_millis() as f64) / 1000.0,
                "bytes_to_target": pipe.bytes_toward_target,
                "bytes_to_client": pipe.bytes_toward_client,
                "stage": stage(pipe.state),
                "paused": pipe.paused,
            })
        })
        .collect();
    json!({ "pipes": pipes })
}

fn stage(state: PipeState) -> &'static str {
    match state {
        PipeState::Connecting => "connecting",
        PipeState::Open => "open",
        PipeState::HalfClosed => "half-closed",
    }
}

pub(crate) fn reloaded(reloaded: &Reloaded) -> Value {
    let listening: Vec<Value> = reloaded
        .listening
        .iter()
        .map(|(route, addr)| json!({ "route": route, "address": addr.to_string() }))
        .collect();
    json!({
        "reloaded": true,
        "summary": reloaded.summary,
        "listening": listening,
    })
}

pub(crate) fn error(message: &str) -> Value {
    json!({ "error": message })
}
