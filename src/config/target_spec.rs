//! A target as the command line writes it, `ADDR[,weight=N][,backup]`,
//! and a weight as the command line and the config file write it.

use super::MAX_WEIGHT;

/// `--target`'s value, taken apart; the address is left to
/// [`parse_address`](super::parse_address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetSpec<'a> {
    pub(crate) address: &'a str,
    pub(crate) weight: u32,
    pub(crate) backup: bool,
}

const FORM: &str = "write ADDR[,weight=N][,backup], as in 10.0.0.1:80,weight=3";

/// Parses `ADDR[,weight=N][,backup]`: the options in any order, each at
/// most once. An address never holds a comma (IPv6 ones are bracketed).
pub(crate) fn parse_target_spec(text: &str) -> Result<TargetSpec<'_>, String> {
    let mut parts = text.split(',');
    let address = parts.next().unwrap_or_default();
    if address.is_empty() && text.contains(',') {
        return Err(format!("the address comes first: {FORM}"));
    }
    let mut spec = TargetSpec {
        address,
        weight: 1,
        backup: false,
    };
    let (mut weighted, mut backup) = (false, false);
    for option in parts {
        match option.split_once('=') {
            Some(("weight", value)) => {
                if std::mem::replace(&mut weighted, true) {
                    return Err("weight is given twice".into());
                }
                spec.weight = parse_weight(value)
                    .map_err(|reason| format!("invalid weight '{value}': {reason}"))?;
            }
            None if option == "backup" => {
                if std::mem::replace(&mut backup, true) {
                    return Err("backup is given twice".into());
                }
                spec.backup = true;
            }
            Some(("backup", _)) => return Err("backup takes no value: write ,backup".into()),
            _ if option.is_empty() => return Err(format!("an empty option: {FORM}")),
            _ => {
                return Err(format!(
                    "unknown option '{option}' (a target takes weight=N and backup)"
                ))
            }
        }
    }
    Ok(spec)
}

/// A weight: a whole number from 0 (no new pipes) to [`MAX_WEIGHT`].
pub(crate) fn parse_weight(text: &str) -> Result<u32, String> {
    if text.starts_with('-') {
        return Err("must not be negative".into());
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected a whole number from 0 to {MAX_WEIGHT}, such as 3"
        ));
    }
    match text.parse::<u32>() {
        Ok(weight) if weight <= MAX_WEIGHT => Ok(weight),
        _ => Err(format!("must be at most {MAX_WEIGHT}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn options_in_any_order() {
        let spec = parse_target_spec("10.0.0.1:80,backup,weight=3").unwrap();
        assert_eq!(
            spec,
            TargetSpec {
                address: "10.0.0.1:80",
                weight: 3,
                backup: true
            }
        );
        assert_eq!(parse_target_spec("[::1]:80").unwrap().weight, 1);
        assert_eq!(parse_target_spec("a:1,weight=0").unwrap().weight, 0);
    }

    #[test]
    fn bad_options_say_why() {
        for (text, reason) in [
            ("a:1,weight=-1", "invalid weight '-1': must not be negative"),
            ("a:1,weight=x", "whole number"),
            ("a:1,weight=", "whole number"),
            ("a:1,weight=10001", "at most 10000"),
            ("a:1,weight=99999999999", "at most 10000"),
            ("a:1,weight=2,weight=3", "twice"),
            ("a:1,backup,backup", "twice"),
            ("a:1,backup=true", "no value"),
            ("a:1,wieght=3", "unknown option 'wieght=3'"),
            ("a:1,", "empty option"),
            (",weight=3", "address comes first"),
        ] {
            let e = parse_target_spec(text).unwrap_err();
            assert!(e.contains(reason), "{text}: {e}");
        }
    }

    fn any_address() -> impl Strategy<Value = String> {
        prop_oneof![
            (any::<[u8; 4]>(), 1u16..)
                .prop_map(|(ip, port)| format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3])),
            "[a-z][a-z0-9.-]{0,20}:[0-9]{1,5}",
            (1u16..).prop_map(|port| format!("[::1]:{port}")),
        ]
    }

    proptest! {
        /// Whatever the order of the options, what is written is what is
        /// read.
        #[test]
        fn a_written_spec_reads_back(
            address in any_address(),
            weight in prop::option::of(0..=MAX_WEIGHT),
            backup in any::<bool>(),
            backup_first in any::<bool>(),
        ) {
            let mut options = Vec::new();
            if let Some(weight) = weight {
                options.push(format!("weight={weight}"));
            }
            if backup {
                options.insert(if backup_first { 0 } else { options.len() }, "backup".into());
            }
            let text = std::iter::once(address.clone()).chain(options).collect::<Vec<_>>().join(",");
            let spec = parse_target_spec(&text).unwrap();
            prop_assert_eq!(spec, TargetSpec { address: &address, weight: weight.unwrap_or(1), backup });
        }

        /// Any text: an answer, never a panic; a refusal is one line; a
        /// weight accepted is in range.
        #[test]
        fn any_text_is_answered_in_one_line(text in "[a-z0-9:.,=\\[\\]-]{0,40}") {
            match parse_target_spec(&text) {
                Ok(spec) => prop_assert!(spec.weight <= MAX_WEIGHT && text.starts_with(spec.address)),
                Err(reason) => prop_assert!(!reason.is_empty() && !reason.contains('\n')),
            }
        }

        #[test]
        fn weights_in_range_are_taken_and_others_refused(n in any::<u64>()) {
            let read = parse_weight(&n.to_string());
            if n <= u64::from(MAX_WEIGHT) {
                prop_assert_eq!(read, Ok(n as u32));
            } else {
                prop_assert!(read.is_err());
            }
        }
    }
}
