//! From the repetitions to what people read: the median of each cell, the
//! markdown table on stdout, and the JSON and SVG files.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::peers::Kind;
use crate::workloads::{Metric, Sample, Workload, METRICS};

/// A contender as the report names it.
pub struct PeerInfo {
    pub kind: Kind,
    pub version: String,
    pub setup: String,
}

/// Everything one run measured, and how.
pub struct Run {
    pub machine: String,
    /// One line each: mode, repetitions, durations, loads.
    pub method: Vec<String>,
    pub peers: Vec<PeerInfo>,
    pub skipped: Vec<String>,
    pub workloads: Vec<Workload>,
    /// By workload and contender, one entry per repetition in order.
    pub outcomes: HashMap<(Workload, Kind), Vec<Result<Sample, String>>>,
}

/// One cell of the table.
pub enum Cell {
    /// Not measured: no forwarder to measure, or not run.
    Absent,
    /// At least one repetition failed: never a number.
    Failed {
        rep: usize,
        reason: String,
    },
    Value {
        median: f64,
        reps: Vec<f64>,
    },
}

impl Cell {
    fn value(&self) -> Option<f64> {
        match self {
            Cell::Value { median, .. } => Some(*median),
            _ => None,
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// The figures of one metric, and tcpipe against the others.
struct Row<'a> {
    metric: &'a Metric,
    cells: Vec<(Kind, Cell)>,
    best_peer: Option<(Kind, f64)>,
}

impl Row<'_> {
    fn cell(&self, kind: Kind) -> Option<&Cell> {
        self.cells.iter().find(|(k, _)| *k == kind).map(|(_, c)| c)
    }

    fn tcpipe(&self) -> Option<f64> {
        self.cell(Kind::Tcpipe).and_then(Cell::value)
    }

    fn ratio_to(&self, other: Option<f64>) -> Option<f64> {
        let (ours, theirs) = (self.tcpipe()?, other?);
        (theirs != 0.0).then(|| ours / theirs)
    }

    fn ratio_to_direct(&self) -> Option<f64> {
        self.ratio_to(self.cell(Kind::Direct).and_then(Cell::value))
    }

    fn ratio_to_best(&self) -> Option<f64> {
        self.ratio_to(self.best_peer.map(|(_, v)| v))
    }

    /// Issue 5's goal for this row: `None` where it sets none or where
    /// there is nothing to compare with.
    fn goal_met(&self) -> Option<bool> {
        if !self.metric.goal {
            return None;
        }
        let best = self.best_peer?.1;
        match self.cell(Kind::Tcpipe)? {
            Cell::Failed { .. } => Some(false),
            Cell::Absent => None,
            Cell::Value { median, .. } => Some(if self.metric.higher_is_better {
                *median > best
            } else {
                *median <= best
            }),
        }
    }
}

impl Run {
    fn cell(&self, metric: &Metric, kind: Kind) -> Cell {
        let Some(outcomes) = self.outcomes.get(&(metric.workload, kind)) else {
            return Cell::Absent;
        };
        if let Some((rep, reason)) = outcomes
            .iter()
            .enumerate()
            .find_map(|(rep, o)| o.as_ref().err().map(|e| (rep, e.clone())))
        {
            return Cell::Failed { rep, reason };
        }
        let reps: Option<Vec<f64>> = outcomes
            .iter()
            .map(|o| {
                let sample = o.as_ref().ok()?;
                sample
                    .iter()
                    .find(|(k, _)| *k == metric.key)
                    .map(|(_, v)| *v)
            })
            .collect();
        match reps {
            Some(reps) if !reps.is_empty() => Cell::Value {
                median: median(&reps),
                reps,
            },
            _ => Cell::Absent,
        }
    }

    fn rows(&self) -> Vec<Row<'static>> {
        METRICS
            .iter()
            .filter(|m| self.workloads.contains(&m.workload))
            .map(|metric| {
                let cells: Vec<(Kind, Cell)> = self
                    .peers
                    .iter()
                    .map(|p| (p.kind, self.cell(metric, p.kind)))
                    .collect();
                let best_peer = cells
                    .iter()
                    .filter(|(k, _)| k.is_other_forwarder())
                    .filter_map(|(k, c)| c.value().map(|v| (*k, v)))
                    .reduce(|a, b| {
                        let b_better = if metric.higher_is_better {
                            b.1 > a.1
                        } else {
                            b.1 < a.1
                        };
                        if b_better {
                            b
                        } else {
                            a
                        }
                    });
                Row {
                    metric,
                    cells,
                    best_peer,
                }
            })
            .collect()
    }
}

/// Three or four significant digits, thousands separated.
pub fn number(v: f64) -> String {
    let magnitude = v.abs();
    if magnitude >= 1000.0 {
        let digits = format!("{:.0}", magnitude);
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{}{grouped}", if v < 0.0 { "-" } else { "" })
    } else if magnitude >= 100.0 {
        format!("{v:.0}")
    } else if magnitude >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

fn arrow(metric: &Metric) -> &'static str {
    if metric.higher_is_better {
        "↑"
    } else {
        "↓"
    }
}

/// The markdown report: header, table, notes on failures.
pub fn markdown(run: &Run) -> String {
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
    let _ = writeln!(out, " tcpipe ÷ direct | tcpipe ÷ best peer | goal |");
    let _ = write!(out, "|---|");
    for _ in &run.peers {
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
pub fn json(run: &Run) -> String {
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

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Direct => "#9e9e9e",
        Kind::Tcpipe => "#d9480f",
        Kind::Haproxy => "#1971c2",
        Kind::Nginx => "#2f9e44",
        Kind::Socat => "#7048e8",
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The bar chart: one panel per workload, one chart per metric in it.
pub fn svg(run: &Run) -> String {
    const CHART_W: f64 = 380.0;
    const CHARTS_PER_PANEL: usize = 3;
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
    let panel_h = PANEL_TITLE_H + chart_h + 10.0;
    let width = CHARTS_PER_PANEL as f64 * CHART_W + 10.0;
    let height = HEADER_H + run.workloads.len() as f64 * panel_h;
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
    for (p, workload) in run.workloads.iter().enumerate() {
        let y0 = HEADER_H + p as f64 * panel_h;
        let _ = writeln!(
            out,
            "<g transform=\"translate(0,{y0})\">\n\
             <rect x=\"4\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n\
             <text x=\"12\" y=\"16\" font-size=\"13\" font-weight=\"bold\">{}</text>",
            width - 8.0,
            panel_h - 6.0,
            workload.name()
        );
        let charts = rows.iter().filter(|r| r.metric.workload == *workload);
        for (c, row) in charts.take(CHARTS_PER_PANEL).enumerate() {
            let x = 4.0 + c as f64 * CHART_W;
            let _ = writeln!(out, "<g transform=\"translate({x},{PANEL_TITLE_H})\">");
            chart(&mut out, row, &layout);
            out.push_str("</g>\n");
        }
        out.push_str("</g>\n");
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

/// `$CARGO_TARGET_DIR/bench`, else `target/bench` in the crate.
pub fn output_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
            }
        }
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
    };
    target.join("bench")
}

/// Writes the report files; returns their paths.
pub fn write_files(run: &Run, markdown: &str) -> Result<Vec<PathBuf>, String> {
    let dir = output_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let files = [
        ("forward.json", json(run)),
        ("forward.svg", svg(run)),
        ("forward.md", markdown.to_string()),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
