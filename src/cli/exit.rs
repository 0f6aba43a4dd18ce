//! How the command line ends when it gives no config: help and version on
//! stdout, and every usage error as one line, clap's rewritten without its
//! usage block.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::CommandFactory;

use super::Args;
use crate::config::FileError;

/// The command line could not give a config: print `message` and exit with
/// `code` (0 for --help and --version, which go to stdout).
#[derive(Debug)]
pub struct CliExit {
    /// The process exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

impl CliExit {
    /// Prints the message: to stdout for help and version, else to stderr.
    pub fn print(&self) {
        if self.code == 0 {
            print!("{}", self.message);
        } else {
            eprintln!("{}", self.message);
        }
    }

    pub(super) fn usage(message: impl std::fmt::Display) -> CliExit {
        CliExit {
            code: 2,
            message: format!("tcpipe: {message}"),
        }
    }
}

/// Each problem of the file on a line of its own.
impl From<FileError> for CliExit {
    fn from(e: FileError) -> CliExit {
        let lines: Vec<String> = e
            .problems()
            .map(|problem| format!("tcpipe: {}", problem.line_text()))
            .collect();
        CliExit {
            code: 2,
            message: lines.join("\n"),
        }
    }
}

/// A usage error as one line: clap's message, the values it would take and
/// the flag it guesses was meant, without the usage block.
pub(super) fn usage_line(e: &clap::Error, args: &[OsString]) -> String {
    if e.kind() == ErrorKind::UnknownArgument {
        if let Some(line) = negative_value(e, args) {
            return line;
        }
    }
    let mut line = one_line(&e.render().to_string());
    if let Some(ContextValue::Strings(values)) = e.get(ContextKind::ValidValue) {
        if !values.is_empty() {
            line.push_str(&format!(" [possible values: {}]", values.join(", ")));
        }
    }
    for kind in [ContextKind::SuggestedArg, ContextKind::SuggestedValue] {
        match e.get(kind) {
            Some(ContextValue::String(one)) => line.push_str(&format!("; did you mean '{one}'?")),
            Some(ContextValue::Strings(many)) if !many.is_empty() => {
                line.push_str(&format!("; did you mean '{}'?", many.join("' or '")))
            }
            _ => {}
        }
    }
    line
}

/// clap reads `--pool -1` as the flag `-1` (and `--cooldown -1s` as `-1`);
/// say what was meant: the value of the flag before it, which cannot be
/// negative.
fn negative_value(e: &clap::Error, args: &[OsString]) -> Option<String> {
    let Some(ContextValue::String(found)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    if !found
        .strip_prefix('-')?
        .starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let command = Args::command();
    let takes_value = |flag: &str| {
        command.get_arguments().find(|arg| {
            let named = match flag.strip_prefix("--") {
                Some(long) => arg.get_long() == Some(long),
                None => {
                    let mut chars = flag.chars();
                    chars.next() == Some('-')
                        && chars.next() == arg.get_short()
                        && chars.next().is_none()
                }
            };
            // Only numbers can be negative; `-l -1` is no address at all.
            let numeric = arg.get_value_names().is_some_and(|names| {
                names
                    .iter()
                    .any(|n| ["N", "DURATION", "SIZE"].contains(&n.as_str()))
            });
            named && numeric
        })
    };
    args.windows(2).find_map(|pair| {
        let (flag, value) = (pair[0].to_str()?, pair[1].to_str()?);
        if !value.starts_with(found.as_str()) {
            return None;
        }
        let long = takes_value(flag)?.get_long()?;
        Some(format!(
            "invalid value '{value}' for '--{long}': must not be negative"
        ))
    })
}

/// clap's message on one line: its first line, plus the indented list that
/// follows a line ending in ':' (the missing flags), without tips or usage.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or_default();
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    if message.ends_with(':') {
        let items: Vec<&str> = lines
            .take_while(|line| line.starts_with(' '))
            .map(str::trim)
            .collect();
        message = format!("{} {}", message, items.join(", "));
    }
    message
}
