//! From the repetitions to what people read: the median of each cell and
//! tcpipe against the others, rendered as the markdown table on stdout and
//! the JSON and SVG files.

pub mod markdown;

mod json;
mod scaling_svg;
mod svg;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::peers::Kind;
use crate::workloads::{metrics, Metric, Sample, Workload};

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

    fn ratio_to_baseline(&self) -> Option<f64> {
        self.ratio_to(self.cell(Kind::Baseline).and_then(Cell::value))
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
        metrics()
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
    let mut files = vec![
        ("forward.json", json::render(run)),
        ("forward.svg", svg::render(run)),
        ("forward.md", markdown.to_string()),
    ];
    if let Some(chart) = scaling_svg::render(run) {
        files.push(("scaling.svg", chart));
    }
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
