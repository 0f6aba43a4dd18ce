use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::html::{bytes, clock, count, escape, per_second, render, Page};
use super::rates::{Rates, MAX_WINDOW, MIN_WINDOW};
use super::{RouteStatus, StatusPage, TargetStatus};
use crate::hooks::CommandError;

pub(crate) fn target(name: &str, state: &'static str) -> TargetStatus {
    TargetStatus {
        name: name.into(),
        addr: "10.0.0.1:80".parse().unwrap(),
        state,
        weight: 1,
        backup: false,
        healthy: true,
        live_pipes: 0,
        total_pipes: 0,
        bytes_toward_target: 0,
        bytes_toward_client: 0,
        connect_failures: 0,
    }
}

pub(crate) fn route(name: &str, targets: Vec<TargetStatus>) -> RouteStatus {
    RouteStatus {
        name: name.into(),
        listen: vec!["127.0.0.1:8080".parse().unwrap()],
        balance: "round-robin".into(),
        live_pipes: targets.iter().map(|t| t.live_pipes).sum(),
        total_pipes: targets.iter().map(|t| t.total_pipes).sum(),
        targets,
    }
}

fn page_of(routes: &[RouteStatus]) -> String {
    render(&Page {
        routes: Ok(routes),
        rates: None,
        at: SystemTime::now(),
    })
}

/// The `<tr>` of target `name`, as rendered.
fn row<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html
        .find(&format!("data-target=\"{}\"", escape(name)))
        .unwrap_or_else(|| panic!("no row for {name}"));
    let start = html[..start].rfind("<tr").unwrap();
    let end = start + html[start..].find("</tr>").unwrap();
    &html[start..end]
}

#[test]
fn escaping_covers_text_and_quoted_attributes() {
    assert_eq!(
        escape(r#"<a href="x" onclick='y'>&amp;</a>"#),
        "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
    );
    assert_eq!(escape("app-1.example:80 ünï"), "app-1.example:80 ünï");
}

proptest! {
    #[test]
    fn an_escaped_name_can_neither_open_a_tag_nor_leave_an_attribute(name in ".{0,40}") {
        let escaped = escape(&name);
        prop_assert!(!escaped.contains(['<', '>', '"', '\'']));
        // Every `&` starts one of the five entities.
        for (at, _) in escaped.match_indices('&') {
            let rest = &escaped[at..];
            prop_assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| rest.starts_with(e)),
                "{escaped}"
            );
        }
    }
}

#[test]
fn names_from_the_config_reach_the_page_escaped_only() {
    let evil = "<script>alert(1)</script>";
    let quote = "a\" onmouseover=\"alert(2)";
    let html = page_of(&[route(
        evil,
        vec![target(quote, "ready"), target("b'<i>", "drain")],
    )]);
    assert!(!html.contains(evil), "{html}");
    assert!(!html.contains(quote));
    assert!(!html.contains("<i>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("data-target=\"a&quot; onmouseover=&quot;alert(2)\""));
    // The page's own script is the only one.
    assert_eq!(html.matches("<script>").count(), 1);
}

#[test]
fn a_target_row_shows_state_health_weight_role_and_counters() {
    let mut drained = target("app1", "drain");
    drained.live_pipes = 3;
    drained.total_pipes = 1234;
    drained.bytes_toward_target = 1536;
    drained.connect_failures = 2;
    let mut backup = target("spare", "maint");
    backup.backup = true;
    backup.healthy = false;
    backup.weight = 0;
    let html = page_of(&[route("web", vec![drained, backup])]);

    let app1 = row(&html, "app1");
    assert!(app1.contains("data-state=\"drain\""), "{app1}");
    assert!(app1.contains("<span class=\"badge drain\">drain</span>"));
    assert!(app1.contains("<span class=\"badge up\">up</span>"));
    assert!(app1.contains("<td class=\"live sep\">3</td>"));
    assert!(app1.contains("<td class=\"total\">1,234</td>"));
    assert!(app1.contains("<td class=\"failures sep failed\">2</td>"));
    assert!(app1.contains("<td class=\"bytes sep\" title=\"1,536 bytes\">1.50 KiB</td>"));
    assert!(app1.contains(">primary</td>"));
    // Its name is not its address, so the address is shown under it.
    assert!(app1.contains("<span class=\"addr\">10.0.0.1:80</span>"));

    let spare = row(&html, "spare");
    assert!(spare.contains("<span class=\"badge maint\">maint</span>"));
    assert!(spare.contains("<span class=\"badge down\">down</span>"));
    assert!(spare.contains("<td class=\"weight zero\">0</td>"));
    assert!(spare.contains(">backup</td>"));
    // Without a second sample there are no rates yet.
    assert!(spare.contains("&#8212;"));
    assert!(html.contains("1 of 2 targets up · 3 live pipes"));
    assert!(html.contains("listens on 127.0.0.1:8080 · round-robin"));
}

#[test]
fn an_unknown_state_is_shown_as_text_with_a_neutral_class() {
    let html = page_of(&[route("web", vec![target("t", "\"odd")])]);
    let t = row(&html, "t");
    assert!(t.contains("data-state=\"other\""), "{t}");
    assert!(t.contains("<span class=\"badge other\">&quot;odd</span>"));
}

#[test]
fn the_page_is_self_contained_and_refreshes_itself() {
    let html = page_of(&[route("web", vec![target("a", "ready")])]);
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Without JavaScript: a meta refresh; with it, the script's polling.
    assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>"));
    assert!(html.contains("fetch(location.href"));
    for outside in ["http://", "https://", "src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(outside),
            "the page refers outside: {outside}"
        );
    }
}

#[test]
fn no_routes_and_no_forwarder_are_said_so() {
    assert!(page_of(&[]).contains("No routes."));
    let page = StatusPage::new();
    let response = page.respond(Err(CommandError::Stopped));
    assert_eq!(response.status(), 503);
    let html = String::from_utf8(response.body().to_vec()).unwrap();
    assert!(
        html.contains("No data: the forwarder is not running."),
        "{html}"
    );
}

#[test]
fn the_answer_is_html_that_loads_nothing_from_elsewhere() {
    let response = StatusPage::new().respond(Ok(vec![route("web", vec![])]));
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_type(), "text/html; charset=utf-8");
    let policy = response.header("Content-Security-Policy").unwrap();
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert_eq!(response.header("Cache-Control"), Some("no-store"));
    let html = String::from_utf8(response.body().to_vec()).unwrap();
    assert!(html.contains("<td colspan=\"13\" class=\"empty\">no targets</td>"));
}

#[test]
fn numbers_read_as_people_write_them() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1000), "1,000");
    assert_eq!(count(1234567), "1,234,567");
    assert_eq!(bytes(0.0), "0 B");
    assert_eq!(bytes(1023.0), "1023 B");
    assert_eq!(bytes(1024.0), "1.00 KiB");
    assert_eq!(bytes(12.5 * 1024.0 * 1024.0), "12.5 MiB");
    assert_eq!(bytes(300.0 * 1024.0 * 1024.0 * 1024.0), "300 GiB");
    assert_eq!(per_second(0.0), "0");
    assert_eq!(per_second(0.26), "0.3");
    assert_eq!(per_second(12.4), "12");
    assert_eq!(per_second(2500.0), "2,500");
    let noon = UNIX_EPOCH + Duration::from_secs(19_700 * 86_400 + 12 * 3600 + 5 * 60 + 9);
    assert_eq!(clock(noon), "12:05:09 UTC");
}

fn counted(pipes: u64, to_target: u64, to_client: u64) -> Vec<RouteStatus> {
    let mut t = target("a", "ready");
    t.total_pipes = pipes;
    t.bytes_toward_target = to_target;
    t.bytes_toward_client = to_client;
    vec![route("web", vec![t])]
}

#[test]
fn rates_are_measured_between_samples_at_least_a_second_apart() {
    let mut rates = Rates::default();
    let start = Instant::now();
    assert!(
        rates.observe(start, &counted(0, 0, 0)).is_none(),
        "one sample"
    );
    // Too soon: still nothing measured.
    let soon = start + MIN_WINDOW / 2;
    assert!(rates.observe(soon, &counted(1, 100, 100)).is_none());

    let later = start + Duration::from_secs(2);
    let measured = rates.observe(later, &counted(10, 2000, 4096)).unwrap();
    assert_eq!(measured.window, Duration::from_secs(2));
    assert_eq!(measured.target("web", "a"), Some([5.0, 1000.0, 2048.0]));
    assert_eq!(measured.route("web"), Some([5.0, 1000.0, 2048.0]));
    assert_eq!(measured.target("web", "new"), None);

    // A second reader right after gets the same rates, not a 10 ms window.
    let again = later + Duration::from_millis(10);
    let measured = rates.observe(again, &counted(11, 9000, 9000)).unwrap();
    assert_eq!(measured.window, Duration::from_secs(2));

    // A counter that went down (a target re-added by a reload) reads 0.
    let next = later + Duration::from_secs(1);
    let measured = rates.observe(next, &counted(0, 0, 5120)).unwrap();
    assert_eq!(measured.target("web", "a"), Some([0.0, 0.0, 1024.0]));
}

#[test]
fn after_a_long_gap_rates_start_afresh() {
    let mut rates = Rates::default();
    let start = Instant::now();
    rates.observe(start, &counted(0, 0, 0));
    rates.observe(start + Duration::from_secs(2), &counted(2, 0, 0));
    let gap = start + Duration::from_secs(2) + MAX_WINDOW + Duration::from_secs(1);
    assert!(rates.observe(gap, &counted(100, 0, 0)).is_none());
    let measured = rates.observe(gap + Duration::from_secs(4), &counted(104, 0, 0));
    assert_eq!(measured.unwrap().target("web", "a"), Some([1.0, 0.0, 0.0]));
}

#[test]
fn the_page_shows_measured_rates_and_their_window() {
    let page = StatusPage::new();
    let (start, at) = (Instant::now(), SystemTime::now());
    let first = page.respond_at(start, at, Ok(counted(0, 0, 0)));
    assert!(String::from_utf8_lossy(first.body()).contains("rates from the next refresh"));
    let later = start + Duration::from_millis(2500);
    let second = page.respond_at(later, at, Ok(counted(5, 0, 2560)));
    let html = String::from_utf8_lossy(second.body()).into_owned();
    assert!(html.contains("rates over 2.5 s"), "{html}");
    let a = row(&html, "a");
    assert!(a.contains("<td class=\"rate\">2.0</td>"), "{a}");
    assert!(a.contains("<td class=\"rate zero\">0 B/s</td>"));
    assert!(a.contains("<td class=\"rate\">1.00 KiB/s</td>"));
}
