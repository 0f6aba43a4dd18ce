//! The SVG bar chart, written as forward.svg.

use std::fmt::Write as _;

use super::{number, ratio, Cell, Row, Run};
use crate::peers::Kind;

pub(super) fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Direct => "#9e9e9e",
        Kind::Tcpipe => "#d9480f",
        Kind::Baseline => "#f59f00",
        Kind::TcpipeCopy => "#e8590c",
        Kind::TcpipeWorkers => "#c2255c",
        Kind::Haproxy => "#1971c2",
        Kind::HaproxySplice => "#4dabf7",
        Kind::Nginx => "#2f9e44",
        Kind::Socat => "#7048e8",
        Kind::Go => "#0ca678",
    }
}

pub(super) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The bar chart: one panel per workload, one chart per metric in it, in
/// lines of up to `CHARTS_PER_LINE`.
pub fn render(run: &Run) -> String {
    const CHART_W: f64 = 380.0;
    const CHARTS_PER_LINE: usize = 3;
    const PANEL_TITLE_H: f64 = 22.0;
    const HEADER_H: f64 = 40.0;
    let layout = ChartLayout {
        width: CHART_W,
        label_w: 70.0,
        value_w: 80.0,
        bar_h: 16.0,
        gap: 6.0,
        title_h: 34.0,
    };
    let rows = run.rows();
    let chart_h = layout.title_h + run.peers.len() as f64 * (layout.bar_h + layout.gap) + 8.0;
    let panels: Vec<(_, Vec<&Row<'_>>)> = run
        .workloads
        .iter()
        .map(|w| (w, rows.iter().filter(|r| r.metric.workload == *w).collect()))
        .collect();
    let panel_h =
        |charts: usize| PANEL_TITLE_H + charts.div_ceil(CHARTS_PER_LINE) as f64 * chart_h + 10.0;
    let width = CHARTS_PER_LINE as f64 * CHART_W + 10.0;
    let height = HEADER_H + panels.iter().map(|(_, c)| panel_h(c.len())).sum::<f64>();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    let _ = writeln!(
        out,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">tcpipe vs direct and peer forwarders (medians)</text>\n\
         <text x=\"10\" y=\"33\" fill=\"#555\">{}</text>",
        xml(&run.machine)
    );
    let mut y0 = HEADER_H;
    for (workload, charts) in &panels {
        let _ = writeln!(
            out,
            "<g transform=\"translate(0,{y0})\">\n\
             <rect x=\"4\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n\
             <text x=\"12\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
            width - 8.0,
            panel_h(charts.len()) - 6.0,
            workload.name()
        );
        for (c, row) in charts.iter().enumerate() {
            let x = 4.0 + (c % CHARTS_PER_LINE) as f64 * CHART_W;
            let y = PANEL_TITLE_H + (c / CHARTS_PER_LINE) as f64 * chart_h;
            let _ = writeln!(out, "<g transform=\"translate({x},{y})\">");
            chart(&mut out, row, &layout);
            out.push_str("</g>\n");
        }
        out.push_str("</g>\n");
        y0 += panel_h(charts.len());
    }
    out.push_str("</svg>\n");
    out
}

#[derive(Clone, Copy)]
struct ChartLayout {
    width: f64,
    label_w: f64,
    value_w: f64,
    bar_h: f64,
    gap: f64,
    title_h: f64,
}

/// Horizontal bars of one metric, scaled to its largest value.
fn chart(out: &mut String, row: &Row<'_>, layout: &ChartLayout) {
    let ChartLayout {
        width,
        label_w,
        value_w,
        bar_h,
        gap,
        title_h,
    } = *layout;
    let m = row.metric;
    let better = if m.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let versus = match (row.ratio_to_best(), row.best_peer, row.goal_met()) {
        (Some(r), Some((kind, _)), goal) => format!(
            "; tcpipe {} of {}{}",
            ratio(Some(r)),
            kind.name(),
            match goal {
                Some(true) => " ✓",
                Some(false) => " ✗",
                None => "",
            }
        ),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "<text x=\"8\" y=\"14\" font-weight=\"bold\">{} ({})</text>\n\
         <text x=\"8\" y=\"27\" fill=\"#777\">{better}{}</text>",
        xml(m.label),
        xml(m.unit),
        xml(&versus),
    );
    let max = row
        .cells
        .iter()
        .filter_map(|(_, c)| c.value())
        .fold(0.0f64, f64::max);
    let bar_space = width - label_w - value_w - 16.0;
    for (j, (kind, cell)) in row.cells.iter().enumerate() {
        let y = title_h + j as f64 * (bar_h + gap);
        let _ = writeln!(
            out,
            "<text x=\"{label_w}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            y + bar_h - 4.0,
            kind.name()
        );
        let (bar, label, fill) = match cell {
            Cell::Value { median, .. } => {
                let w = if max > 0.0 {
                    (median / max * bar_space).max(1.0)
                } else {
                    1.0
                };
                (w, number(*median), "#222")
            }
            Cell::Failed { .. } => (0.0, "ERR".to_string(), "#c92a2a"),
            Cell::Absent => (0.0, "—".to_string(), "#999"),
        };
        if bar > 0.0 {
            let _ = writeln!(
                out,
                "<rect x=\"{}\" y=\"{y}\" width=\"{bar:.1}\" height=\"{bar_h}\" fill=\"{}\"/>",
                label_w + 6.0,
                color(*kind)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" fill=\"{fill}\">{}</text>",
            label_w + 10.0 + bar,
            y + bar_h - 4.0,
            xml(&label)
        );
    }
}
