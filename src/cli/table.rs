//! `tcpipe ctl`'s tables: the admin API's JSON lists as aligned columns,
//! a header line first; numbers right-aligned, text left-aligned.

use serde_json::Value;

/// One column: its header, the JSON key it shows, and how.
pub(super) struct Column {
    pub(super) header: &'static str,
    pub(super) key: &'static str,
    pub(super) show: Show,
}

/// How a value is written.
#[derive(Clone, Copy)]
pub(super) enum Show {
    Text,
    Number,
    /// A list, comma-separated.
    List,
    /// `yes` / blank.
    Flag,
    /// `up` / `down`.
    Health,
    /// Seconds as `12s`, `3m04s`, `2h05m`.
    Age,
}

/// The rows of `items` (the objects of a JSON list) under `columns`.
pub(super) fn render(columns: &[Column], items: &[Value]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|column| cell(item.get(column.key), column.show))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(at, column)| {
            rows.iter()
                .map(|row| row[at].chars().count())
                .chain([column.header.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let headers: Vec<String> = columns.iter().map(|c| c.header.to_string()).collect();
    for row in std::iter::once(&headers).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(columns)
            .zip(&widths)
            .map(|((text, column), &width)| match column.show {
                Show::Number | Show::Age => format!("{text:>width$}"),
                _ => format!("{text:<width$}"),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn cell(value: Option<&Value>, show: Show) -> String {
    let Some(value) = value else {
        return "-".into();
    };
    match (show, value) {
        (_, Value::Null) => "-".into(),
        (Show::Flag, Value::Bool(true)) => "yes".into(),
        (Show::Flag, Value::Bool(false)) => String::new(),
        (Show::Health, Value::Bool(up)) => if *up { "up" } else { "down" }.into(),
        (Show::List, Value::Array(items)) => items
            .iter()
            .map(|item| cell(Some(item), Show::Text))
            .collect::<Vec<_>>()
            .join(","),
        (Show::Age, Value::Number(n)) => age(n.as_f64().unwrap_or(0.0)),
        (_, Value::String(text)) => text.clone(),
        (_, other) => other.to_string(),
    }
}

fn age(seconds: f64) -> String {
    let whole = seconds.max(0.0) as u64;
    match whole {
        0..=59 => format!("{seconds:.1}s"),
        60..=3599 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up_with_numbers_to_the_right() {
        let columns = [
            Column {
                header: "NAME",
                key: "name",
                show: Show::Text,
            },
            Column {
                header: "LIVE",
                key: "live",
                show: Show::Number,
            },
            Column {
                header: "UP",
                key: "up",
                show: Show::Health,
            },
            Column {
                header: "AGE",
                key: "age",
                show: Show::Age,
            },
        ];
        let items = [
            json!({"name": "web", "live": 12, "up": true, "age": 75.5}),
            json!({"name": "a", "live": 3, "up": false, "age": 2.3}),
        ];
        assert_eq!(
            render(&columns, &items),
            "NAME  LIVE  UP      AGE\n\
             web     12  up    1m15s\n\
             a        3  down   2.3s\n"
        );
    }
}
