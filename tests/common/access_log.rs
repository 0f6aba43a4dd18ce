//! Reading the access log as its users do: by its fields. It goes to
//! stderr by default, so a forwarder's logs hold its lines.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::BTreeMap;

use crate::common::Tcpipe;

impl Tcpipe {
    /// The access log's close lines on stderr (its default), each as its
    /// `key=value` fields, in the order the pipes closed.
    pub fn access_log_closes(&self) -> Vec<BTreeMap<String, String>> {
        self.logs()
            .iter()
            .filter_map(|line| line.find("time=").map(|at| access_log_fields(&line[at..])))
            .filter(|fields| fields.get("event").map(String::as_str) == Some("close"))
            .collect()
    }
}

/// The fields of one text access-log line: `key=value` pairs separated by
/// spaces, a value in double quotes (with `\"` and `\\` escapes) where it
/// has a space, quote, `=` or backslash. Control characters' escapes are
/// not decoded: no field the tests read has one.
pub fn access_log_fields(line: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = line.trim_end();
    while let Some((key, after)) = rest.split_once('=') {
        let (value, next) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((at, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '"' => {
                            end = at + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end..])
            }
            None => {
                let end = after.find(' ').unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            }
        };
        fields.insert(key.trim().to_string(), value);
        rest = next.trim_start();
    }
    fields
}
