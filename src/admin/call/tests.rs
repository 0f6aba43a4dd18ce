use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn call(method: &str, path: &str, query: Option<&str>, body: &str) -> Result<Call, Refusal> {
    parse(method, path, query, body.as_bytes())
}

fn at(route: &str, target: &str) -> TargetRef {
    TargetRef {
        route: route.into(),
        target: target.into(),
    }
}

#[test]
fn every_endpoint_parses_to_its_call() {
    let web = at("web", "10.0.0.1:80");
    for (method, path, query, body, expected) in [
        ("GET", "/", None, "", Call::Index),
        ("HEAD", "/v1/routes", None, "", Call::Routes),
        ("GET", "/v1/targets", None, "", Call::Targets(None)),
        (
            "GET",
            "/v1/targets",
            Some("route=web"),
            "",
            Call::Targets(Some("web".into())),
        ),
        ("GET", "/v1/pipes", Some(""), "", Call::Pipes(None)),
        (
            "GET",
            "/v1/pipes",
            Some("target=web%2F10.0.0.1%3A80"),
            "",
            Call::Pipes(Some(web.filter())),
        ),
        (
            "PUT",
            "/v1/targets/web/10.0.0.1:80/state",
            None,
            r#"{"state":"maint"}"#,
            Call::SetState(web.clone(), TargetState::Maint),
        ),
        (
            "PUT",
            "/v1/targets/web/10.0.0.1%3A80/weight",
            None,
            r#" {"weight": 0} "#,
            Call::SetWeight(web.clone(), 0),
        ),
        (
            "DELETE",
            "/v1/pipes/42",
            None,
            "",
            Call::KillPipe(PipeId::from(42)),
        ),
        (
            "POST",
            "/v1/pipes/kill",
            None,
            r#"{"route":"web"}"#,
            Call::KillPipes(PipeFilter::Route("web".into())),
        ),
        (
            "POST",
            "/v1/targets/web/10.0.0.1:80/wait-empty",
            None,
            "",
            Call::WaitEmpty(web.clone(), DEFAULT_WAIT),
        ),
        (
            "POST",
            "/v1/targets/web/10.0.0.1:80/wait-empty",
            None,
            r#"{"timeout":"1.5s"}"#,
            Call::WaitEmpty(web.clone(), Duration::from_millis(1500)),
        ),
        ("POST", "/v1/reload", None, "{}", Call::Reload),
    ] {
        assert_eq!(
            call(method, path, query, body),
            Ok(expected),
            "{method} {path}"
        );
    }
}

#[test]
fn refusals_say_what_is_wrong_with_the_status_that_fits() {
    for (method, path, query, body, status, says) in [
        ("GET", "/v2/routes", None, "", 404, "no endpoint"),
        ("GET", "v1/routes", None, "", 400, "path"),
        ("POST", "/v1/routes", None, "", 405, "GET"),
        ("GET", "/v1/routes", Some("x=1"), "", 400, "query"),
        (
            "GET",
            "/v1/pipes",
            Some("route=a&route=b"),
            "",
            400,
            "twice",
        ),
        ("GET", "/v1/pipes", Some("route="), "", 400, "route: empty"),
        (
            "PUT",
            "/v1/targets/web//state",
            None,
            "{}",
            404,
            "no endpoint",
        ),
        (
            "PUT",
            "/v1/targets/web/t/colour",
            None,
            "{}",
            404,
            "no endpoint",
        ),
        (
            "PUT",
            "/v1/targets/web/t/state",
            None,
            "{\"state\":\"\"}",
            400,
            "state",
        ),
        (
            "PUT",
            "/v1/targets/web/t/state",
            None,
            "\"drain\"",
            400,
            "JSON object",
        ),
        (
            "PUT",
            "/v1/targets/web/t/weight",
            None,
            "{}",
            400,
            "weight: missing",
        ),
        (
            "PUT",
            "/v1/targets/web/t/weight",
            None,
            "{\"weight\":4294967296}",
            400,
            "weight",
        ),
        ("POST", "/v1/pipes/kill", None, "{}", 400, "body"),
        (
            "POST",
            "/v1/pipes/kill",
            None,
            "{\"target\":\"web\"}",
            400,
            "ROUTE/TARGET",
        ),
        (
            "POST",
            "/v1/reload",
            None,
            "{\"now\":true}",
            400,
            "now: unknown field",
        ),
        ("DELETE", "/v1/pipes/+1", None, "", 400, "pipe id"),
        ("DELETE", "/v1/pipes/%", None, "", 400, "percent"),
        ("GET", "/v1/targets/%C3%28/x", None, "", 400, "percent"),
    ] {
        let refusal = call(method, path, query, body).unwrap_err();
        assert_eq!(refusal.status, status, "{method} {path}: {refusal:?}");
        assert!(
            refusal.message.contains(says),
            "{method} {path}: {refusal:?}"
        );
    }
    let wrong = call("DELETE", "/v1/reload", None, "").unwrap_err();
    assert_eq!(wrong.allow, Some("POST"));
}

/// 4096 cases per property in every `cargo test`; a long run sets
/// `TCPIPE_PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("TCPIPE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4096)
}

/// Route names as the config allows them.
fn route_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,20}"
}

/// Target names: `host:port`, `[v6]:port`, or anything without a `/`.
fn target_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{1,20}:[0-9]{1,5}",
        "\\[[0-9a-f:]{2,20}\\]:[0-9]{1,5}",
        "[^/]{1,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Whatever a client sends, the answer is a call or a refusal of one
    /// line with a client-error status; nothing panics.
    #[test]
    fn anything_gives_a_call_or_a_one_line_4xx(
        method in prop_oneof!["GET", "PUT", "POST", "DELETE", "HEAD", "[A-Z]{1,7}"],
        path in prop_oneof![
            "/v1/(routes|targets|pipes|reload)",
            "/v1/pipes/[0-9a-z%+-]{0,25}",
            "/v1/targets/[^ ]{0,20}/[^ ]{0,20}/(state|weight|wait-empty|[a-z]{0,6})",
            "/[ -~]{0,60}",
            "[ -~]{0,30}",
        ],
        query in proptest::option::of("[ -~]{0,40}"),
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            "\\{\"(state|weight|timeout|route|target|x)\": ?(\"[a-z0-9/:.]{0,12}\"|-?[0-9]{1,12}(\\.[0-9])?|true|null|\\[\\]|\\{\\})\\}"
                .prop_map(String::into_bytes),
        ],
    ) {
        if let Err(refusal) = parse(&method, &path, query.as_deref(), &body) {
            prop_assert!(matches!(refusal.status, 400 | 404 | 405), "{:?}", refusal);
            prop_assert!(!refusal.message.contains('\n'), "{:?}", refusal);
            prop_assert_eq!(refusal.allow.is_some(), refusal.status == 405);
        }
    }

    /// A route's target, however named, reaches the call as it was
    /// named: percent-encoded in the path as `tcpipe ctl` sends it, and
    /// in a query or body as `route/target`.
    #[test]
    fn a_target_named_any_way_round_trips_through_paths_queries_and_bodies(
        route in route_name(),
        target in target_name(),
        weight in any::<u32>(),
        state in prop_oneof![Just(TargetState::Ready), Just(TargetState::Drain), Just(TargetState::Maint)],
    ) {
        let expected = at(&route, &target);
        let base = format!("/v1/targets/{}/{}", percent_encode(&route), percent_encode(&target));
        let body = format!("{{\"weight\":{weight}}}");
        prop_assert_eq!(
            call("PUT", &format!("{base}/weight"), None, &body),
            Ok(Call::SetWeight(expected.clone(), weight))
        );
        let body = format!("{{\"state\":\"{state}\"}}");
        prop_assert_eq!(
            call("PUT", &format!("{base}/state"), None, &body),
            Ok(Call::SetState(expected.clone(), state))
        );
        let spelled = format!("{route}/{target}");
        prop_assert_eq!(TargetRef::parse(&spelled), Some(expected.clone()));
        prop_assert_eq!(expected.to_string(), spelled.clone());
        let query = format!("target={}", percent_encode(&spelled));
        prop_assert_eq!(
            call("GET", "/v1/pipes", Some(&query), ""),
            Ok(Call::Pipes(Some(expected.filter())))
        );
        let body = serde_json::json!({ "target": spelled }).to_string();
        prop_assert_eq!(
            call("POST", "/v1/pipes/kill", None, &body),
            Ok(Call::KillPipes(expected.filter()))
        );
    }

    /// Decoding undoes encoding for any text.
    #[test]
    fn percent_decoding_undoes_encoding(text in any::<String>()) {
        let encoded = percent_encode(&text);
        prop_assert!(encoded.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?'));
        prop_assert_eq!(percent_decode(&encoded), Some(text));
    }

    /// A weight is any whole number a u32 holds, and nothing else.
    #[test]
    fn a_weight_is_a_whole_number_that_fits(value in prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "\"[0-9]{1,4}\"",
    ]) {
        let body = format!("{{\"weight\":{value}}}");
        let parsed = call("PUT", "/v1/targets/web/t:1/weight", None, &body);
        let fits = value.parse::<u32>().ok();
        match fits {
            Some(weight) => prop_assert_eq!(parsed, Ok(Call::SetWeight(at("web", "t:1"), weight))),
            None => {
                let refusal = parsed.unwrap_err();
                prop_assert_eq!(refusal.status, 400);
                prop_assert!(refusal.message.starts_with("weight"), "{:?}", refusal);
            }
        }
    }
}
