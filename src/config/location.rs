//! Where in the config text a key is: its key path from a byte offset
//! (for what the TOML reader reports), its offset from a key path (for
//! what validation reports), and the line of an offset.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// The key path (`route[1].idle-timeout`) of the key or value at byte
/// `offset`, or of the innermost table around it.
pub(super) fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    let mut path = String::new();
    walk_to_offset(document.get_ref(), offset, &mut path);
    (!path.is_empty()).then_some(path)
}

fn walk_to_offset(table: &DeTable<'_>, offset: usize, path: &mut String) {
    for (key, value) in table.iter() {
        let in_key = contains(&key.span(), offset);
        if !in_key && !contains(&value.span(), offset) && !within_table(value.get_ref(), offset) {
            continue;
        }
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        if !in_key {
            walk_value(value.get_ref(), offset, path);
        }
        return;
    }
}

fn walk_value(value: &DeValue<'_>, offset: usize, path: &mut String) {
    match value {
        DeValue::Table(table) => walk_to_offset(table, offset, path),
        DeValue::Array(items) => {
            let hit = items.iter().enumerate().rfind(|(_, item)| {
                contains(&item.span(), offset) || within_table(item.get_ref(), offset)
            });
            if let Some((index, item)) = hit {
                path.push_str(&format!("[{index}]"));
                walk_value(item.get_ref(), offset, path);
            }
        }
        _ => {}
    }
}

/// A table's own span may cover only its header; its keys lie beyond it.
fn within_table(value: &DeValue<'_>, offset: usize) -> bool {
    match value {
        DeValue::Table(table) => table.iter().any(|(key, value)| {
            contains(&key.span(), offset)
                || contains(&value.span(), offset)
                || within_table(value.get_ref(), offset)
        }),
        DeValue::Array(items) => items
            .iter()
            .any(|item| within_table(item.get_ref(), offset)),
        _ => false,
    }
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.is_empty() && offset == span.start)
}

/// Where the key at `path` is written; for a key left out, where its
/// nearest written parent is.
pub(super) fn offset_of(text: &str, path: &str) -> Option<usize> {
    let document = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = document.get_ref();
    let mut found = None;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((key, value)) = table.iter().find(|(key, _)| key.get_ref() == name) else {
            return found;
        };
        found = Some(key.span().start);
        let mut value: &DeValue<'_> = value.get_ref();
        if let (Some(index), DeValue::Array(items)) = (index, value) {
            let Some(item) = items.get(index) else {
                return found;
            };
            found = Some(item.span().start);
            value = item.get_ref();
        }
        match value {
            DeValue::Table(inner) => table = inner,
            _ => return found,
        }
    }
    found
}

pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}
