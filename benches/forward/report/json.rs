//! The JSON report, written as forward.json.

use std::fmt::Write as _;

use super::{Cell, Run};

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

fn json_strings(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", items.join(", "))
}

/// The same figures, every repetition included, for machines to read.
pub fn render(run: &Run) -> String {
    let rows = run.rows();
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"machine\": {},", json_string(&run.machine));
    let _ = writeln!(out, "  \"method\": {},", json_strings(&run.method));
    let peers: Vec<String> = run
        .peers
        .iter()
        .map(|p| {
            format!(
                "{{\"name\": {}, \"version\": {}, \"setup\": {}}}",
                json_string(p.kind.name()),
                json_string(&p.version),
                json_string(&p.setup)
            )
        })
        .collect();
    let _ = writeln!(out, "  \"peers\": [\n    {}\n  ],", peers.join(",\n    "));
    let _ = writeln!(out, "  \"skipped\": {},", json_strings(&run.skipped));
    out.push_str("  \"metrics\": [\n");
    for (i, row) in rows.iter().enumerate() {
        let m = row.metric;
        let values: Vec<String> = row
            .cells
            .iter()
            .map(|(kind, cell)| {
                let body = match cell {
                    Cell::Absent => "null".to_string(),
                    Cell::Failed { rep, reason } => format!(
                        "{{\"error\": {}, \"rep\": {}}}",
                        json_string(reason),
                        rep + 1
                    ),
                    Cell::Value { median, reps } => {
                        let reps: Vec<String> =
                            reps.iter().map(|v| json_number(Some(*v))).collect();
                        format!(
                            "{{\"median\": {}, \"reps\": [{}]}}",
                            json_number(Some(*median)),
                            reps.join(", ")
                        )
                    }
                };
                format!("{}: {body}", json_string(kind.name()))
            })
            .collect();
        let _ = write!(
            out,
            "    {{\"key\": {}, \"workload\": {}, \"label\": {}, \"unit\": {}, \
             \"higher_is_better\": {}, \"goal\": {},\n      \"values\": {{{}}},\n      \
             \"tcpipe_to_direct\": {}, \"best_peer\": {}, \"tcpipe_to_best_peer\": {}, \"goal_met\": {}}}",
            json_string(m.key),
            json_string(m.workload.name()),
            json_string(m.label),
            json_string(m.unit),
            m.higher_is_better,
            m.goal,
            values.join(", "),
            json_number(row.ratio_to_direct()),
            row.best_peer
                .map_or("null".into(), |(k, _)| json_string(k.name())),
            json_number(row.ratio_to_best()),
            row.goal_met().map_or("null".into(), |g| g.to_string()),
        );
        out.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}
