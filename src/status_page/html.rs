//! The page as text. Every name that reaches it comes from the config or
//! an operator, so every one goes through [`escape`], in text and in
//! attributes alike; the classes are fixed words chosen here.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::rates::{Measured, PerSecond};
use super::{RouteStatus, TargetStatus, REFRESH_SECONDS};

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("refresh.js");

/// What one rendering shows.
pub(super) struct Page<'a> {
    /// The routes, or why there are none to show.
    pub(super) routes: Result<&'a [RouteStatus], &'a str>,
    pub(super) rates: Option<&'a Measured>,
    pub(super) at: SystemTime,
}

/// `text` safe in HTML text and in a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1234567` as `1,234,567`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Bytes in binary units, three significant digits: `512 B`, `1.50 KiB`,
/// `12.3 MiB`, `123 GiB`.
pub(crate) fn bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{value:.0} B");
    }
    // Rounding may reach the next power: 1023.96 KiB shows as 1024 KiB.
    let decimals = if value < 9.995 {
        2
    } else if value < 99.95 {
        1
    } else {
        0
    };
    format!("{value:.decimals$} {}", UNITS[unit])
}

/// New pipes per second: one decimal below 10, whole numbers above.
pub(crate) fn per_second(rate: f64) -> String {
    let rate = rate.max(0.0);
    if rate == 0.0 {
        "0".into()
    } else if rate < 9.95 {
        format!("{rate:.1}")
    } else {
        count(rate.round() as u64)
    }
}

/// The time of day in UTC, `HH:MM:SS UTC`.
pub(crate) fn clock(at: SystemTime) -> String {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let day = seconds % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

pub(super) fn render(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>tcpipe status</title>\n\
         <noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\"></noscript>\n\
         <style>\n{STYLE}</style>\n</head>\n<body data-refresh=\"{REFRESH_SECONDS}\">\n\
         <header><h1>tcpipe <span>status</span></h1>\
         <p id=\"stale\" class=\"stale\" hidden></p></header>\n"
    );
    out.push_str("<main id=\"status\">\n");
    summary(&mut out, page);
    match page.routes {
        Ok([]) => out.push_str("<p class=\"empty\">No routes.</p>\n"),
        Ok(routes) => {
            for route in routes {
                route_section(&mut out, route, page.rates);
            }
        }
        Err(why) => {
            let _ = writeln!(
                out,
                "<p class=\"error\" role=\"alert\">No data: {}.</p>",
                escape(why)
            );
        }
    }
    out.push_str("</main>\n");
    let _ = write!(out, "<script>\n{SCRIPT}</script>\n</body>\n</html>\n");
    out
}

/// The line under the title: totals, the time, the rates' window.
fn summary(out: &mut String, page: &Page<'_>) {
    let mut parts = vec![format!("version {}", escape(env!("CARGO_PKG_VERSION")))];
    if let Ok(routes) = page.routes {
        let targets = routes.iter().flat_map(|r| &r.targets);
        let up = targets.clone().filter(|t| t.healthy).count();
        let live: usize = routes.iter().map(|r| r.live_pipes).sum();
        parts.push(format!(
            "{} route{}",
            routes.len(),
            if routes.len() == 1 { "" } else { "s" }
        ));
        parts.push(format!("{up} of {} targets up", targets.count()));
        parts.push(format!("{} live pipes", count(live as u64)));
    }
    parts.push(format!("updated {}", clock(page.at)));
    parts.push(match page.rates {
        Some(rates) => format!("rates over {:.1} s", rates.window.as_secs_f64()),
        None => "rates from the next refresh".into(),
    });
    parts.push(format!("refreshes every {REFRESH_SECONDS} s"));
    let _ = writeln!(out, "<p class=\"summary\">{}</p>", parts.join(" · "));
}

fn route_section(out: &mut String, route: &RouteStatus, rates: Option<&Measured>) {
    let name = escape(&route.name);
    let listen: Vec<String> = route.listen.iter().map(|a| a.to_string()).collect();
    let listen = if listen.is_empty() {
        "no listener".to_string()
    } else {
        format!("listens on {}", listen.join(", "))
    };
    let _ = write!(
        out,
        "<section class=\"route\" data-route=\"{name}\">\n\
         <h2>{name} <small>{} · {}</small></h2>\n\
         <div class=\"scroll\"><table>\n\
         <colgroup>{}</colgroup>\n<thead>\n\
         <tr><th rowspan=\"2\" class=\"text\">target</th><th rowspan=\"2\" class=\"text\">state</th>\
         <th rowspan=\"2\" class=\"text\">health</th><th rowspan=\"2\">weight</th>\
         <th rowspan=\"2\" class=\"text\">role</th>\
         <th colspan=\"3\" class=\"group sep\">pipes</th>\
         <th rowspan=\"2\" class=\"sep\" title=\"connects that failed or timed out\">failed<br>connects</th>\
         <th colspan=\"2\" class=\"group sep\" title=\"bytes the clients sent, delivered to the target\">to target</th>\
         <th colspan=\"2\" class=\"group sep\" title=\"bytes the target sent, delivered to the clients\">to client</th></tr>\n\
         <tr><th class=\"sep\">live</th><th>total</th><th>new/s</th>\
         <th class=\"sep\">bytes</th><th>rate</th><th class=\"sep\">bytes</th><th>rate</th></tr>\n</thead>\n<tbody>\n",
        escape(&listen),
        escape(&route.balance),
        "<col>".repeat(13),
    );
    if route.targets.is_empty() {
        out.push_str("<tr><td colspan=\"13\" class=\"empty\">no targets</td></tr>\n");
    }
    for target in &route.targets {
        let measured = rates.and_then(|r| r.target(&route.name, &target.name));
        target_row(out, target, measured);
    }
    out.push_str("</tbody>\n");
    route_total(out, route, rates.and_then(|r| r.route(&route.name)));
    out.push_str("</table></div>\n</section>\n");
}

/// The fixed class word for a state (never the given text itself).
fn state_class(state: &str) -> &'static str {
    match state {
        "ready" => "ready",
        "drain" => "drain",
        "maint" => "maint",
        _ => "other",
    }
}

fn target_row(out: &mut String, target: &TargetStatus, rates: Option<PerSecond>) {
    let name = escape(&target.name);
    let state = state_class(target.state);
    let health = if target.healthy { "up" } else { "down" };
    let addr = target.addr.to_string();
    let addr = if addr == target.name {
        String::new()
    } else {
        format!("<span class=\"addr\">{}</span>", escape(&addr))
    };
    let role = if target.backup { "backup" } else { "primary" };
    let weight_class = if target.weight == 0 { " zero" } else { "" };
    let _ = write!(
        out,
        "<tr class=\"target {state} {health}\" data-target=\"{name}\" data-state=\"{state}\" \
         data-health=\"{health}\">\
         <td class=\"text name\">{name}{addr}</td>\
         <td class=\"text state\"><span class=\"badge {state}\">{}</span></td>\
         <td class=\"text health\"><span class=\"badge {health}\">{health}</span></td>\
         <td class=\"weight{weight_class}\">{}</td>\
         <td class=\"text role {role}\">{role}</td>",
        escape(target.state),
        target.weight
    );
    counters(
        out,
        target.live_pipes,
        target.total_pipes,
        target.connect_failures,
        [target.bytes_toward_target, target.bytes_toward_client],
        rates,
    );
    out.push_str("</tr>\n");
}

fn route_total(out: &mut String, route: &RouteStatus, rates: Option<PerSecond>) {
    let failures = route.targets.iter().map(|t| t.connect_failures).sum();
    let sum = |field: fn(&TargetStatus) -> u64| route.targets.iter().map(field).sum();
    let bytes = [
        sum(|t| t.bytes_toward_target),
        sum(|t| t.bytes_toward_client),
    ];
    out.push_str("<tfoot><tr class=\"total\"><th class=\"text\" colspan=\"5\">route total</th>");
    counters(
        out,
        route.live_pipes,
        route.total_pipes,
        failures,
        bytes,
        rates,
    );
    out.push_str("</tr></tfoot>\n");
}

/// The numeric cells, from live pipes to the client's rate. A zero is
/// muted (class `zero`), so what moves stands out.
fn counters(
    out: &mut String,
    live: usize,
    total: u64,
    failures: u64,
    sent: [u64; 2],
    rates: Option<PerSecond>,
) {
    const NO_RATE: &str =
        "<td class=\"rate none\" title=\"shown from the next refresh\">&#8212;</td>";
    let zero = |n: f64| if n == 0.0 { " zero" } else { "" };
    let rate = |i: usize, format: fn(f64) -> String, unit: &str| match rates {
        Some(rates) => format!(
            "<td class=\"rate{}\">{}{unit}</td>",
            zero(rates[i]),
            format(rates[i])
        ),
        None => NO_RATE.to_string(),
    };
    let failed = if failures > 0 { " failed" } else { " zero" };
    let _ = write!(
        out,
        "<td class=\"live sep{}\">{}</td><td class=\"total{}\">{}</td>{}\
         <td class=\"failures sep{failed}\">{}</td>\
         <td class=\"bytes sep{}\" title=\"{} bytes\">{}</td>{}\
         <td class=\"bytes sep{}\" title=\"{} bytes\">{}</td>{}",
        zero(live as f64),
        count(live as u64),
        zero(total as f64),
        count(total),
        rate(0, per_second, ""),
        count(failures),
        zero(sent[0] as f64),
        count(sent[0]),
        bytes(sent[0] as f64),
        rate(1, bytes, "/s"),
        zero(sent[1] as f64),
        count(sent[1]),
        bytes(sent[1] as f64),
        rate(2, bytes, "/s"),
    );
}
