//! Properties of the text form of a connection rate (`20/s`, `100/10s`),
//! as `max-connection-rate-per-source` takes it: no text makes it panic,
//! what it prints reads back the same, and `N/DURATION` reads as the
//! count and the duration it says.

use std::time::Duration;

use proptest::prelude::*;
use tcpipe::{format_duration, parse_connection_rate, ConnectionRate};

proptest! {
    #[test]
    fn any_text_is_a_rate_or_a_reason_never_a_panic(text in "\\PC{0,40}") {
        let _ = parse_connection_rate(&text);
    }

    #[test]
    fn any_rate_like_text_is_a_rate_or_a_reason_never_a_panic(
        text in "[0-9]{0,12}/[0-9.]{0,6}(ms|s|m|h|d|x)?"
    ) {
        let _ = parse_connection_rate(&text);
    }

    #[test]
    fn a_count_per_a_duration_reads_as_it_says(
        count in 1u32..,
        millis in 1u64..1_000_000_000,
    ) {
        let per = Duration::from_millis(millis);
        let text = format!("{count}/{}", format_duration(Some(per)));
        prop_assert_eq!(parse_connection_rate(&text), Ok(ConnectionRate { count, per }));
    }

    #[test]
    fn a_printed_rate_reads_back_the_same(count in 1u32.., millis in 1u64..1_000_000_000) {
        let rate = ConnectionRate { count, per: Duration::from_millis(millis) };
        prop_assert_eq!(parse_connection_rate(&rate.to_string()), Ok(rate));
    }

    #[test]
    fn no_connections_is_refused_with_the_reason(unit in "(s|m|h|10s)") {
        let e = parse_connection_rate(&format!("0/{unit}")).expect_err("0 connections");
        prop_assert!(e.contains("at least 1"), "{}", e);
    }
}

#[test]
fn a_unit_alone_means_one_of_it() {
    let per_second = parse_connection_rate("20/s").unwrap();
    assert_eq!(per_second.per, Duration::from_secs(1));
    assert_eq!(per_second.to_string(), "20/s");
    assert_eq!(
        parse_connection_rate("5/m").unwrap().per,
        Duration::from_secs(60)
    );
    assert!(parse_connection_rate("20").is_err());
    assert!(parse_connection_rate("20/0s").is_err());
}
