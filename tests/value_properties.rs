//! Properties of the text forms of durations and sizes, as flags and the
//! config file take them: no text makes them panic; durations with
//! decimals and days read as the milliseconds they say, and what
//! `format_duration` writes reads back the same; `kb`, `mb` and `gb` are
//! refused with the binary spelling to use; no ring is smaller than a page.

use std::time::Duration;

use proptest::prelude::*;
use tcpipe::{format_duration, format_size, parse_duration, parse_size, Config};

/// Each unit with its length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

/// `millis` written in `unit` as a decimal, exactly: as many decimals as it
/// takes, none if it divides.
fn decimal(millis: u64, unit: &str, unit_ms: u64) -> String {
    let whole = millis / unit_ms;
    let mut rest = millis % unit_ms;
    if rest == 0 {
        return format!("{whole}{unit}");
    }
    // unit_ms is 2^a * 5^b * 3^c; only the 3s could make a fraction that
    // never ends, and the caller keeps to multiples of them.
    let mut digits = String::new();
    while rest != 0 {
        rest *= 10;
        digits.push(char::from(b'0' + (rest / unit_ms) as u8));
        rest %= unit_ms;
    }
    format!("{whole}.{digits}{unit}")
}

proptest! {
    #[test]
    fn any_text_is_a_duration_or_a_reason_never_a_panic(text in "\\PC{0,40}") {
        if let Err(reason) = parse_duration(&text) {
            prop_assert!(!reason.is_empty());
        }
    }

    #[test]
    fn any_number_like_text_is_a_duration_or_a_reason_never_a_panic(
        text in "[0-9.]{0,30}(ms|s|m|h|d|us|e3|)",
    ) {
        let _ = parse_duration(&text);
    }

    #[test]
    fn any_text_is_a_size_or_a_reason_never_a_panic(text in "\\PC{0,40}") {
        let _ = parse_size(&text);
    }

    #[test]
    fn a_decimal_duration_reads_as_the_milliseconds_it_says(
        // Whole multiples of 27 ms: an hour or a day divided by them ends.
        units in 1u64..40_000_000_000,
        unit in proptest::sample::select(UNITS.to_vec()),
    ) {
        let millis = units * 27;
        let (name, unit_ms) = unit;
        let text = decimal(millis, name, unit_ms);
        prop_assert_eq!(parse_duration(&text), Ok(Some(Duration::from_millis(millis))), "{}", text);
    }

    #[test]
    fn a_formatted_duration_reads_back_the_same(millis in 0u64..u64::MAX / 2) {
        let duration = (millis > 0).then(|| Duration::from_millis(millis));
        let text = format_duration(duration);
        prop_assert_eq!(parse_duration(&text), Ok(duration), "{}", text);
    }

    #[test]
    fn a_parsed_duration_formats_to_text_that_reads_the_same(
        whole in 0u64..100_000,
        fraction in "[0-9]{0,4}",
        unit in proptest::sample::select(UNITS.to_vec()),
    ) {
        let text = if fraction.is_empty() {
            format!("{whole}{}", unit.0)
        } else {
            format!("{whole}.{fraction}{}", unit.0)
        };
        if let Ok(parsed) = parse_duration(&text) {
            prop_assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed), "{}", text);
        }
    }

    #[test]
    fn a_duration_finer_than_a_millisecond_is_refused_with_the_reason(
        millis in 0u64..1_000_000,
        micros in 1u64..1000,
    ) {
        let text = format!("{}.{:06}s", millis / 1000, (millis % 1000) * 1000 + micros);
        let reason = parse_duration(&text).expect_err("sub-millisecond");
        prop_assert!(reason.contains("finer than a millisecond"), "{}: {}", text, reason);
    }

    #[test]
    fn decimal_size_units_are_refused_with_the_binary_spelling(
        amount in 0usize..100_000,
        unit in "[kKmMgG][bB]",
    ) {
        let text = format!("{amount}{unit}");
        let reason = parse_size(&text).expect_err("ambiguous");
        let letter = unit[..1].to_ascii_lowercase();
        let expected = format!(
            "ambiguous unit '{unit}': write {amount}{letter} or {amount}{}iB (sizes are binary)",
            letter.to_ascii_uppercase()
        );
        prop_assert_eq!(reason, expected);
    }

    #[test]
    fn a_formatted_size_reads_back_the_same(bytes in any::<usize>()) {
        prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
    }

    #[test]
    fn a_ring_below_a_page_is_refused_naming_the_minimum(size in 0usize..4096) {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), "127.0.0.1:1".parse().unwrap());
        config.routes[0].buffer_size = size;
        config.routes[0].low_water = 0;
        let e = config.validate().expect_err("below a page");
        prop_assert_eq!(e.key, "route[0].buffer-size");
        prop_assert_eq!(e.reason, "must be between 4k (a page) and 1g");
        config.routes[0].buffer_size = 4096;
        prop_assert!(config.validate().is_ok());
    }
}
