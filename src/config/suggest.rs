//! "Did you mean": the known key closest to one that is not known, as clap
//! offers for flags.

/// The key of `known` that `unknown` most likely means: the same once `_`
/// is read as `-` and case is ignored, else the nearest by edit distance if
/// it is near enough to be a typo (a third of the key's length, at least 1).
pub(crate) fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let normal: String = unknown
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    if let Some(same) = known.iter().find(|key| **key == normal) {
        return Some(same);
    }
    let most = (normal.chars().count() / 3).max(1);
    known
        .iter()
        .map(|key| (edit_distance(&normal, key), *key))
        .filter(|(distance, _)| *distance <= most)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Levenshtein distance: the fewest one-character insertions, deletions
/// and substitutions that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 4] = ["idle-timeout", "balance", "pool", "low-water"];

    #[test]
    fn underscores_and_case_read_as_the_key() {
        assert_eq!(closest("idle_timeout", &KEYS), Some("idle-timeout"));
        assert_eq!(closest("Low_Water", &KEYS), Some("low-water"));
    }

    #[test]
    fn a_typo_finds_the_nearest_key_and_nonsense_none() {
        assert_eq!(closest("balanse", &KEYS), Some("balance"));
        assert_eq!(closest("idel-timeout", &KEYS), Some("idle-timeout"));
        assert_eq!(closest("pol", &KEYS), Some("pool"));
        assert_eq!(closest("frobnicate", &KEYS), None);
        assert_eq!(closest("", &KEYS), None);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
