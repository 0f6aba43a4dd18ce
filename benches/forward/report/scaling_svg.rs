//! The scaling workload's line chart, written as scaling.svg: one chart
//! per measure, idle pipes along x, a line per contender through the
//! medians at each level.

use std::fmt::Write as _;

use super::svg::{color, xml};
use super::{number, Cell, Run};
use crate::peers::Kind;
use crate::workloads::scaling::{levels, MOST_PIPES, PER_LEVEL};
use crate::workloads::Metric;

const CHART_W: f64 = 420.0;
const CHART_H: f64 = 230.0;
const CHARTS_PER_LINE: usize = 3;
const HEADER_H: f64 = 40.0;
const LEGEND_H: f64 = 24.0;
/// Plot area inside a chart.
const LEFT: f64 = 62.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 36.0;
/// Where memory sits among a level's metrics.
const MEMORY: usize = PER_LEVEL - 1;

/// The chart, or `None` when the run has no scaling figures.
pub fn render(run: &Run) -> Option<String> {
    let cell_median = |metric: &Metric, kind: Kind| match run.cell(metric, kind) {
        Cell::Value { median, .. } => Some(median),
        _ => None,
    };
    // The last level's pipes, as measured (the same for every contender).
    let most = run
        .peers
        .iter()
        .find_map(|p| cell_median(&MOST_PIPES, p.kind))? as usize;
    let levels = levels(most);
    let mut out = String::new();
    let lines = PER_LEVEL.div_ceil(CHARTS_PER_LINE);
    let width = CHARTS_PER_LINE as f64 * CHART_W + 10.0;
    let height = HEADER_H + LEGEND_H + lines as f64 * CHART_H + 10.0;
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">Cost as idle pipes grow (medians)</text>\n\
         <text x=\"10\" y=\"33\" fill=\"#555\">{}</text>",
        xml(&run.machine)
    );
    for (i, peer) in run.peers.iter().enumerate() {
        let x = 10.0 + i as f64 * 110.0;
        let y = HEADER_H + 12.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            y - 4.0,
            color(peer.kind),
            x + 18.0,
            y,
            peer.kind.name()
        );
    }
    for measure in 0..PER_LEVEL {
        let x = 4.0 + (measure % CHARTS_PER_LINE) as f64 * CHART_W;
        let y = HEADER_H + LEGEND_H + (measure / CHARTS_PER_LINE) as f64 * CHART_H;
        // Memory at 0 pipes is a total, not per pipe: not on that line.
        let points: Vec<(usize, &Metric)> = levels
            .iter()
            .map(|(n, metrics)| (*n, &metrics[measure]))
            .filter(|(n, _)| *n > 0 || measure != MEMORY)
            .collect();
        let _ = writeln!(out, "<g transform=\"translate({x},{y})\">");
        chart(&mut out, run, &points, most, &cell_median);
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    Some(out)
}

fn chart(
    out: &mut String,
    run: &Run,
    points: &[(usize, &Metric)],
    most: usize,
    median: &dyn Fn(&Metric, Kind) -> Option<f64>,
) {
    let Some((_, last)) = points.last() else {
        return;
    };
    // "1,000 idle pipes: connect rate" -> "connect rate"
    let title = last.label.split_once(": ").map_or(last.label, |(_, t)| t);
    let better = if last.higher_is_better {
        "higher is better"
    } else {
        "lower is better"
    };
    let _ = writeln!(
        out,
        "<text x=\"8\" y=\"14\" font-weight=\"bold\">{} ({})</text>\n\
         <text x=\"8\" y=\"27\" fill=\"#777\">{better}</text>",
        xml(title),
        xml(last.unit)
    );
    let (plot_w, plot_h) = (CHART_W - LEFT - RIGHT, CHART_H - TOP - BOTTOM);
    let max = run
        .peers
        .iter()
        .flat_map(|p| points.iter().filter_map(move |(_, m)| median(m, p.kind)))
        .fold(0.0f64, f64::max);
    let max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let sx = |n: usize| LEFT + n as f64 / most.max(1) as f64 * plot_w;
    let sy = |v: f64| TOP + plot_h - v / max * plot_h;
    let _ = writeln!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">{}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">0</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">idle pipes</text>",
        LEFT - 4.0,
        TOP + 4.0,
        number(max),
        LEFT - 4.0,
        TOP + plot_h,
        LEFT + plot_w / 2.0,
        CHART_H - 6.0
    );
    for (n, _) in points {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{}</text>",
            sx(*n),
            TOP + plot_h + 14.0,
            number(*n as f64)
        );
    }
    for peer in &run.peers {
        let path: Vec<String> = points
            .iter()
            .filter_map(|(n, m)| Some(format!("{:.1},{:.1}", sx(*n), sy(median(m, peer.kind)?))))
            .collect();
        if path.is_empty() {
            continue;
        }
        let c = color(peer.kind);
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for point in &path {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(out, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{c}\"/>");
        }
    }
}
