//! How messages say counts and measured times: "1 pipe", "2 pipes", "0s",
//! "1.5s", "2m 5s". Settings are written back as they are read
//! ([`format_duration`](crate::format_duration)); these are for what
//! happened.

use std::time::Duration;

/// "1 pipe", "2 pipes".
pub(crate) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A measured time as a person reads it: whole milliseconds below a
/// second, one decimal below ten seconds, then whole seconds, minutes and
/// hours. Never `1.500000000s` or `0ns`.
pub(crate) fn format_elapsed(elapsed: Duration) -> String {
    let millis = elapsed.as_millis();
    match millis {
        0 => "0s".into(),
        m if m < 1000 => format!("{m}ms"),
        m if m < 10_000 => {
            let tenths = (m + 50) / 100;
            if tenths % 10 == 0 {
                format!("{}s", tenths / 10)
            } else {
                format!("{}.{}s", tenths / 10, tenths % 10)
            }
        }
        m => {
            let secs = (m + 500) / 1000;
            match secs {
                s if s < 60 => format!("{s}s"),
                s if s < 3600 => with_rest(s / 60, "m", s % 60, "s"),
                s => with_rest(s / 3600, "h", s % 3600 / 60, "m"),
            }
        }
    }
}

/// "2m" or "2m 5s".
fn with_rest(whole: u128, unit: &str, rest: u128, rest_unit: &str) -> String {
    if rest == 0 {
        format!("{whole}{unit}")
    } else {
        format!("{whole}{unit} {rest}{rest_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_nouns() {
        assert_eq!(plural(0, "pipe"), "0 pipes");
        assert_eq!(plural(1, "pipe"), "1 pipe");
        assert_eq!(plural(2, "pipe"), "2 pipes");
    }

    #[test]
    fn measured_times_read_well() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_micros(300), "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1000), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(9990), "10s"),
            (Duration::from_secs(42), "42s"),
            (Duration::from_secs(125), "2m 5s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(3600 * 3 + 60 * 7 + 5), "3h 7m"),
        ];
        for (elapsed, text) in cases {
            assert_eq!(format_elapsed(elapsed), text, "{elapsed:?}");
        }
    }
}
