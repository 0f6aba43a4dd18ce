//! The access log: one line per pipe when it closes (and, if asked, one
//! when it opens), as `key=value` text or JSON, with the same keys in both.
//!
//! Lines are made when a pipe opens or closes, never per byte. Written to
//! stderr they go through the `log` crate (target `tcpipe::access`, level
//! info); written to a file they go to a thread of their own through a
//! bounded queue, so a slow disk never stalls the event loop. When the
//! queue is full a line is dropped and counted, never waited for.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use log::{error, info};

use crate::config::{AccessLogConfig, LogDestination, LogFormat};

/// Lines that may wait for the writer thread before new ones are dropped.
const QUEUE: usize = 64 * 1024;

/// What happened to a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Open,
    Close,
}

/// One line's worth of facts.
pub(crate) struct Entry<'a> {
    pub(crate) event: Event,
    pub(crate) time: SystemTime,
    pub(crate) pipe: u64,
    pub(crate) route: Option<&'a str>,
    pub(crate) client: SocketAddr,
    pub(crate) target: Option<&'a str>,
    /// The server name of its ClientHello, if its route was chosen by it.
    pub(crate) sni: Option<&'a str>,
    pub(crate) connect_time: Option<Duration>,
    pub(crate) duration: Duration,
    pub(crate) bytes_to_target: u64,
    pub(crate) bytes_to_client: u64,
    /// How it ended, as metrics name it (close lines only).
    pub(crate) end: Option<&'static str>,
    /// Which side sent FIN first: `client`, `target`, or none.
    pub(crate) first_fin: Option<&'static str>,
    /// How long a rate limit held its reads, both ways together; `None`
    /// for a pipe with no limit.
    pub(crate) rate_limited: Option<Duration>,
    /// The error or count behind `end`, in words.
    pub(crate) detail: Option<String>,
}

impl<'a> Entry<'a> {
    /// What any line says: the pipe, its ends, and now; the rest empty.
    pub(crate) fn new(
        event: Event,
        pipe: u64,
        route: Option<&'a str>,
        client: SocketAddr,
        target: Option<&'a str>,
    ) -> Entry<'a> {
        Entry {
            event,
            time: SystemTime::now(),
            pipe,
            route,
            client,
            target,
            sni: None,
            connect_time: None,
            duration: Duration::ZERO,
            bytes_to_target: 0,
            bytes_to_client: 0,
            end: None,
            first_fin: None,
            rate_limited: None,
            detail: None,
        }
    }
}

enum Sink {
    Off,
    Stderr,
    /// Shared by every worker's loop: one writer thread per process.
    File(std::sync::Arc<Writer>),
}

/// Where access lines go, and in what shape.
pub(crate) struct AccessLog {
    config: AccessLogConfig,
    sink: Sink,
    /// Lines dropped because the file's writer fell behind.
    pub(crate) dropped: u64,
}

impl AccessLog {
    pub(crate) fn off() -> AccessLog {
        AccessLog {
            config: AccessLogConfig {
                destination: LogDestination::Off,
                ..AccessLogConfig::default()
            },
            sink: Sink::Off,
            dropped: 0,
        }
    }

    /// Opens the log `config` describes. A file that cannot be opened is
    /// an error here, at startup or reload, not a silent loss later.
    pub(crate) fn open(config: &AccessLogConfig) -> io::Result<AccessLog> {
        let sink = match &config.destination {
            LogDestination::Off => Sink::Off,
            LogDestination::Stderr => Sink::Stderr,
            LogDestination::File(path) => Sink::File(std::sync::Arc::new(Writer::start(path)?)),
        };
        Ok(AccessLog {
            config: config.clone(),
            sink,
            dropped: 0,
        })
    }

    /// The same log for another worker: lines go to the same writer.
    pub(crate) fn share(&self) -> AccessLog {
        let sink = match &self.sink {
            Sink::Off => Sink::Off,
            Sink::Stderr => Sink::Stderr,
            Sink::File(writer) => Sink::File(std::sync::Arc::clone(writer)),
        };
        AccessLog {
            config: self.config.clone(),
            sink,
            dropped: 0,
        }
    }

    pub(crate) fn config(&self) -> &AccessLogConfig {
        &self.config
    }

    /// Reopens the file (after logrotate moved it away), on a reload.
    pub(crate) fn reopen(&mut self) {
        if let Sink::File(writer) = &self.sink {
            writer.send(Line::Reopen, &mut self.dropped);
        }
    }

    /// Whether close lines are wanted at all; callers check before they
    /// gather an entry. On stderr that is also the logger's say: with
    /// `tcpipe::access=off` in `RUST_LOG` no line is even made.
    pub(crate) fn logs_closes(&self) -> bool {
        match self.sink {
            Sink::Off => false,
            Sink::Stderr => log::log_enabled!(target: "tcpipe::access", log::Level::Info),
            Sink::File(_) => true,
        }
    }

    /// Whether open lines are wanted.
    pub(crate) fn logs_opens(&self) -> bool {
        self.config.opens && self.logs_closes()
    }

    pub(crate) fn write(&mut self, entry: &Entry<'_>) {
        let line = format(entry, self.config.format);
        match &mut self.sink {
            Sink::Off => {}
            Sink::Stderr => info!(target: "tcpipe::access", "{line}"),
            Sink::File(writer) => writer.send(Line::Text(line), &mut self.dropped),
        }
    }
}

/// The line for `entry`.
pub(crate) fn format(entry: &Entry<'_>, format: LogFormat) -> String {
    let event = match entry.event {
        Event::Open => "open",
        Event::Close => "close",
    };
    let seconds = |d: Duration| format!("{:.6}", d.as_secs_f64());
    let client = entry.client.to_string();
    let fields: [(&str, Value<'_>); 15] = [
        ("time", Value::Text(Some(&rfc3339(entry.time)))),
        ("event", Value::Text(Some(event))),
        ("pipe", Value::Number(Some(entry.pipe.to_string()))),
        ("route", Value::Text(entry.route)),
        ("client", Value::Text(Some(&client))),
        ("target", Value::Text(entry.target)),
        ("sni", Value::Text(entry.sni)),
        (
            "connect_seconds",
            Value::Number(entry.connect_time.map(seconds)),
        ),
        (
            "duration_seconds",
            Value::Number(Some(seconds(entry.duration))),
        ),
        (
            "bytes_to_target",
            Value::Number(Some(entry.bytes_to_target.to_string())),
        ),
        (
            "bytes_to_client",
            Value::Number(Some(entry.bytes_to_client.to_string())),
        ),
        ("end", Value::Text(entry.end)),
        ("first_fin", Value::Text(entry.first_fin)),
        (
            "rate_limited_seconds",
            Value::Number(entry.rate_limited.map(seconds)),
        ),
        ("detail", Value::Text(entry.detail.as_deref())),
    ];
    let fields = fields
        .into_iter()
        .filter(|(key, _)| entry.event == Event::Close || OPEN_KEYS.contains(key));
    let mut line = String::with_capacity(256);
    match format {
        LogFormat::Text => {
            for (key, value) in fields {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(key);
                line.push('=');
                match value {
                    Value::Text(Some(text)) => quote_if_needed(&mut line, text),
                    Value::Number(Some(number)) => line.push_str(&number),
                    Value::Text(None) | Value::Number(None) => line.push('-'),
                }
            }
        }
        LogFormat::Json => {
            line.push('{');
            for (i, (key, value)) in fields.enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "\"{key}\":");
                match value {
                    Value::Text(Some(text)) => json_string(&mut line, text),
                    Value::Number(Some(number)) => line.push_str(&number),
                    Value::Text(None) | Value::Number(None) => line.push_str("null"),
                }
            }
            line.push('}');
        }
    }
    line
}

/// What an open line says: nothing about an end it has not reached.
const OPEN_KEYS: [&str; 7] = ["time", "event", "pipe", "route", "client", "target", "sni"];

enum Value<'a> {
    Text(Option<&'a str>),
    Number(Option<String>),
}

/// A text value as is if it has no space, quote, `=` or control character;
/// else in double quotes with `\` and `"` escaped.
fn quote_if_needed(out: &mut String, text: &str) {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if plain {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2026-12-01T20:40:12.345Z`: UTC, milliseconds.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ----- the file writer ----------------------------------------------------------

enum Line {
    Text(String),
    Reopen,
}

/// The thread that owns the file.
struct Writer {
    lines: Option<SyncSender<Line>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(path: &Path) -> io::Result<Writer> {
        let file = open_append(path)?;
        let (lines, queue) = mpsc::sync_channel(QUEUE);
        let path = path.to_path_buf();
        let thread = thread::Builder::new()
            .name("tcpipe-access-log".into())
            .spawn(move || write_lines(&path, file, &queue))?;
        Ok(Writer {
            lines: Some(lines),
            thread: Some(thread),
        })
    }

    fn send(&self, line: Line, dropped: &mut u64) {
        let Some(lines) = &self.lines else {
            return;
        };
        match lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => *dropped += 1,
        }
    }
}

impl Drop for Writer {
    /// Lets the thread write what is queued, so no line of a clean exit is
    /// lost.
    fn drop(&mut self) {
        drop(self.lines.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn write_lines(path: &Path, file: File, queue: &Receiver<Line>) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut failing = false;
    while let Ok(mut line) = queue.recv() {
        loop {
            match line {
                Line::Text(text) => {
                    let written = out
                        .write_all(text.as_bytes())
                        .and_then(|()| out.write_all(b"\n"));
                    match written {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            error!("access log {}: cannot write: {e}", path.display());
                        }
                        Err(_) => {}
                    }
                }
                Line::Reopen => match open_append(path) {
                    Ok(file) => {
                        let _ = out.flush();
                        out = BufWriter::with_capacity(64 * 1024, file);
                    }
                    Err(e) => error!(
                        "access log {}: cannot reopen, writing to the old file: {e}",
                        path.display()
                    ),
                },
            }
            // Write everything queued, then flush once: one syscall for a
            // burst of closes, and no line waits while the queue is quiet.
            match queue.try_recv() {
                Ok(next) => line = next,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            event: Event::Close,
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_620_412_345),
            pipe: 7,
            route: Some("web"),
            client: "127.0.0.1:5000".parse().unwrap(),
            target: Some("10.0.0.1:80"),
            sni: Some("api.example.com"),
            connect_time: Some(Duration::from_micros(250)),
            duration: Duration::from_millis(1500),
            bytes_to_target: 10,
            bytes_to_client: 20,
            end: Some("target_reset"),
            first_fin: None,
            rate_limited: None,
            detail: Some("Connection reset by peer (os error 104)".into()),
        }
    }

    #[test]
    fn dates_are_utc_and_exact() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(entry().time), "2025-12-01T20:20:12.345Z");
    }

    #[test]
    fn text_lines_are_key_value_with_quotes_where_needed() {
        let line = format(&entry(), LogFormat::Text);
        assert_eq!(
            line,
            "time=2025-12-01T20:20:12.345Z event=close pipe=7 route=web client=127.0.0.1:5000 \
             target=10.0.0.1:80 sni=api.example.com connect_seconds=0.000250 duration_seconds=1.500000 \
             bytes_to_target=10 bytes_to_client=20 end=target_reset first_fin=- \
             rate_limited_seconds=- detail=\"Connection reset by peer (os error 104)\""
        );
    }

    #[test]
    fn json_lines_have_the_same_keys() {
        let mut e = entry();
        e.route = Some("we\"b");
        let line = format(&e, LogFormat::Json);
        assert!(line.starts_with("{\"time\":\"2025-12-01T20:20:12.345Z\",\"event\":\"close\",\"pipe\":7,\"route\":\"we\\\"b\""), "{line}");
        assert!(line.contains("\"sni\":\"api.example.com\","), "{line}");
        assert!(line.contains("\"connect_seconds\":0.000250,"), "{line}");
        assert!(line.contains("\"first_fin\":null,"), "{line}");
        assert!(
            line.ends_with("\"detail\":\"Connection reset by peer (os error 104)\"}"),
            "{line}"
        );
    }

    #[test]
    fn open_lines_say_only_what_is_known() {
        let mut e = entry();
        e.event = Event::Open;
        let line = format(&e, LogFormat::Text);
        assert_eq!(
            line,
            "time=2025-12-01T20:20:12.345Z event=open pipe=7 route=web client=127.0.0.1:5000 target=10.0.0.1:80 \
             sni=api.example.com"
        );
    }
}
