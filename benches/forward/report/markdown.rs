//! The markdown report, printed on stdout and written as forward.md.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::{number, ratio, Cell, Run};
use crate::peers::Kind;
use crate::workloads::{Metric, Workload};

fn arrow(metric: &Metric) -> &'static str {
    if metric.higher_is_better {
        "↑"
    } else {
        "↓"
    }
}

/// The markdown report: header, table, notes on failures.
pub fn render(run: &Run) -> String {
    let rows = run.rows();
    let mut out = String::new();
    let _ = writeln!(out, "## tcpipe vs direct and peer forwarders\n");
    let _ = writeln!(out, "- machine: {}", run.machine);
    for line in &run.method {
        let _ = writeln!(out, "- {line}");
    }
    for peer in &run.peers {
        let _ = writeln!(
            out,
            "- {}: {} — {}",
            peer.kind.name(),
            peer.version,
            peer.setup
        );
    }
    for note in &run.skipped {
        let _ = writeln!(out, "- skipped {note}");
    }
    out.push('\n');

    let _ = write!(out, "| metric |");
    for peer in &run.peers {
        let _ = write!(out, " {} |", peer.kind.name());
    }
    let with_baseline = run.peers.iter().any(|p| p.kind == Kind::Baseline);
    if with_baseline {
        out.push_str(" tcpipe ÷ baseline |");
    }
    let _ = writeln!(out, " tcpipe ÷ direct | tcpipe ÷ best peer | goal |");
    let _ = write!(out, "|---|");
    for _ in &run.peers {
        out.push_str("---:|");
    }
    if with_baseline {
        out.push_str("---:|");
    }
    out.push_str("---:|---:|:---:|\n");

    // Failures get a footnote per workload and contender.
    let mut footnotes: Vec<String> = Vec::new();
    let mut footnote_of: HashMap<(Workload, Kind), usize> = HashMap::new();
    for row in &rows {
        let m = row.metric;
        let _ = write!(out, "| {} ({} {}) |", m.label, m.unit, arrow(m));
        for (kind, cell) in &row.cells {
            let text = match cell {
                Cell::Absent => "—".to_string(),
                Cell::Value { median, .. } => number(*median),
                Cell::Failed { rep, reason } => {
                    let n = *footnote_of.entry((m.workload, *kind)).or_insert_with(|| {
                        footnotes.push(format!(
                            "{} in {} (rep {}): {reason}",
                            kind.name(),
                            m.workload.name(),
                            rep + 1
                        ));
                        footnotes.len()
                    });
                    format!("ERR[{n}]")
                }
            };
            let _ = write!(out, " {text} |");
        }
        let best = match (row.ratio_to_best(), row.best_peer) {
            (Some(r), Some((kind, _))) => format!("{} ({})", ratio(Some(r)), kind.name()),
            _ => "—".into(),
        };
        let goal = match row.goal_met() {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "—",
        };
        if with_baseline {
            let _ = write!(out, " {} |", ratio(row.ratio_to_baseline()));
        }
        let _ = writeln!(out, " {} | {best} | {goal} |", ratio(row.ratio_to_direct()));
    }
    out.push('\n');
    for (i, note) in footnotes.iter().enumerate() {
        let _ = writeln!(out, "ERR[{}] {note}  ", i + 1);
    }
    if !footnotes.is_empty() {
        out.push('\n');
    }
    out.push_str(
        "Medians over the repetitions. ↑ higher is better, ↓ lower is better. Ratios are \
         tcpipe's figure divided by the other's. Best peer: the best of the other forwarders \
         on that row. Goal (issue 5): ✓ when tcpipe beats the best peer on a rate, or uses no \
         more CPU or memory than it. CPU: user+sys seconds of the forwarder's whole process \
         tree, reaped children included. Memory: PSS growth of that tree, per idle pipe.\n",
    );
    out
}
