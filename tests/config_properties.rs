//! Properties of the config file parser, over generated input: no text
//! makes it panic; every valid config written out reads back the same; an
//! unknown key or a value of the wrong type anywhere is refused, naming its
//! key path, and every one of them in a file is.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use tcpipe::{
    format_duration, format_size, AccessLogConfig, Balance, Config, LogDestination, LogFormat,
    Route, Splice, Target,
};

/// Every route key that takes a duration.
const DURATION_KEYS: [&str; 6] = [
    "cooldown",
    "health-interval",
    "connect-timeout",
    "idle-timeout",
    "half-close-timeout",
    "keepalive",
];

fn duration() -> impl Strategy<Value = Option<Duration>> {
    prop_oneof![
        Just(None),
        (1u64..100_000).prop_map(|ms| Some(Duration::from_millis(ms))),
        (1u64..100).prop_map(|h| Some(Duration::from_secs(h * 3600))),
    ]
}

fn balance() -> impl Strategy<Value = Balance> {
    prop_oneof![
        Just(Balance::RoundRobin),
        Just(Balance::LeastConn),
        Just(Balance::SourceHash)
    ]
}

fn splice() -> impl Strategy<Value = Splice> {
    prop_oneof![
        Just(Splice::Auto),
        Just(Splice::Always),
        Just(Splice::Never)
    ]
}

/// A target: mostly of weight 1 and primary (written as a bare address),
/// else weighted (0 included) or a backup (written as a table).
fn target() -> impl Strategy<Value = Target> {
    let weight = prop_oneof![3 => Just(1u32), 1 => 0..=tcpipe::MAX_WEIGHT];
    (any::<[u8; 4]>(), 1u16.., weight, any::<bool>()).prop_map(|(ip, port, weight, backup)| {
        let mut target =
            Target::from(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)).weight(weight);
        target.backup = backup;
        target
    })
}

/// A valid route; `index` keeps names and addresses apart across routes.
fn route(index: usize) -> impl Strategy<Value = Route> {
    let options = (
        (balance(), proptest::option::of(0usize..8), 1u32..10),
        (duration(), duration(), 0usize..5, 1u64..100_000),
        (
            4096usize..(1 << 20),
            duration(),
            duration(),
            duration(),
            duration(),
        ),
        (proptest::option::of(1usize..100_000), splice()),
    );
    (
        "[a-z][a-z0-9_.-]{0,20}",
        1usize..4,
        proptest::collection::vec(target(), 1..5),
        options,
    )
        .prop_map(move |(name, listeners, targets, options)| {
            let ((balance, retries, threshold), health, flow, (limit, splice)) = options;
            let (cooldown, health_interval, pool, pool_max_idle_ms) = health;
            let (buffer_size, connect, idle, half_close, keepalive) = flow;
            let listen = (0..listeners)
                .map(|n| SocketAddr::from(([127, 0, index as u8, n as u8 + 1], 7000)))
                .collect();
            let mut route = Route::new(
                format!("{name}{index}"),
                listen_first(index),
                targets[0].addr,
            );
            route.listen = listen;
            route.targets = targets;
            route.balance = balance;
            route.retries = retries;
            route.fail_threshold = threshold;
            route.cooldown = cooldown;
            route.health_interval = health_interval;
            route.pool = pool;
            route.pool_max_idle = Duration::from_millis(pool_max_idle_ms);
            route.buffer_size = buffer_size;
            route.low_water = buffer_size / 3;
            route.connect_timeout = connect;
            route.idle_timeout = idle;
            route.half_close_timeout = half_close;
            route.keepalive = keepalive;
            route.max_connections = limit;
            route.splice = splice;
            route
        })
}

fn listen_first(index: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, index as u8, 1], 7000))
}

/// The metrics endpoint and the access log: on a port no route uses.
fn outputs() -> impl Strategy<Value = (Option<SocketAddr>, AccessLogConfig)> {
    let destination = prop_oneof![
        Just(LogDestination::Stderr),
        Just(LogDestination::Off),
        "/[a-z]{1,8}/[a-z.]{1,12}".prop_map(|path| LogDestination::File(path.into())),
    ];
    let format = prop_oneof![Just(LogFormat::Text), Just(LogFormat::Json)];
    (
        proptest::option::of(9000u16..9100),
        destination,
        format,
        any::<bool>(),
    )
        .prop_map(|(port, destination, format, opens)| {
            let metrics = port.map(|port| SocketAddr::from(([127, 0, 0, 1], port)));
            let access_log = AccessLogConfig {
                destination,
                format,
                opens,
            };
            (metrics, access_log)
        })
}

fn config() -> impl Strategy<Value = Config> {
    (1usize..4)
        .prop_flat_map(|n| {
            let routes: Vec<_> = (0..n).map(route).collect();
            (routes, 1usize..1_000_000, duration(), duration(), outputs())
        })
        .prop_map(|(routes, max, drain, resolve, (metrics, access_log))| {
            let mut config = Config::with_routes(routes);
            config.max_connections = max;
            config.drain_timeout = drain;
            config.resolve_interval = resolve;
            config.metrics = metrics;
            config.access_log = access_log;
            config
        })
}

/// A route's targets as the file writes them: a bare address for a
/// primary of weight 1, else a table, with only the keys that differ from
/// the defaults.
fn targets(targets: &[Target]) -> String {
    let entries: Vec<String> = targets
        .iter()
        .map(|t| match (t.weight, t.backup) {
            (1, false) => format!("\"{}\"", t.name),
            (1, true) => format!("{{ address = \"{}\", backup = true }}", t.name),
            (weight, false) => format!("{{ address = \"{}\", weight = {weight} }}", t.name),
            (weight, true) => format!(
                "{{ backup = true, weight = {weight}, address = \"{}\" }}",
                t.name
            ),
        })
        .collect();
    format!("[{}]", entries.join(", "))
}

/// Writes `config` out in the file format, every key spelled out.
fn render(config: &Config) -> String {
    let quoted = |items: Vec<String>| {
        let items: Vec<String> = items.into_iter().map(|i| format!("\"{i}\"")).collect();
        format!("[{}]", items.join(", "))
    };
    let d = |duration: Option<Duration>| format!("\"{}\"", format_duration(duration));
    let mut text = format!(
        "[global]\nmax-connections = {}\ndrain-timeout = {}\nresolve-interval = {}\n\
         access-log = \"{}\"\nlog-format = \"{}\"\naccess-log-opens = {}\n",
        config.max_connections,
        d(config.drain_timeout),
        d(config.resolve_interval),
        config.access_log.destination,
        config.access_log.format,
        config.access_log.opens,
    );
    if let Some(metrics) = config.metrics {
        text.push_str(&format!("metrics = \"{metrics}\"\n"));
    }
    text.push('\n');
    for route in &config.routes {
        text.push_str(&format!(
            "[[route]]\nname = \"{}\"\nlisten = {}\ntargets = {}\nbalance = \"{}\"\n",
            route.name,
            quoted(route.listen.iter().map(|a| a.to_string()).collect()),
            targets(&route.targets),
            route.balance,
        ));
        if let Some(retries) = route.retries {
            text.push_str(&format!("retries = {retries}\n"));
        }
        if let Some(max) = route.max_connections {
            text.push_str(&format!("max-connections = {max}\n"));
        }
        text.push_str(&format!(
            "fail-threshold = {}\ncooldown = {}\nhealth-interval = {}\npool = {}\n\
             pool-max-idle = {}\nbuffer-size = \"{}\"\nlow-water = {}\nconnect-timeout = {}\n\
             idle-timeout = {}\nhalf-close-timeout = {}\nkeepalive = {}\nsplice = \"{}\"\n\n",
            route.fail_threshold,
            d(route.cooldown),
            d(route.health_interval),
            route.pool,
            d(Some(route.pool_max_idle)),
            format_size(route.buffer_size),
            route.low_water,
            d(route.connect_timeout),
            d(route.idle_timeout),
            d(route.half_close_timeout),
            d(route.keepalive),
            route.splice,
        ));
    }
    text
}

proptest! {
    #[test]
    fn any_text_is_refused_or_accepted_without_a_panic(text in "\\PC{0,400}") {
        let _ = Config::from_toml(&text);
    }

    #[test]
    fn a_valid_file_damaged_anywhere_is_refused_or_valid_never_a_panic(
        config in config(),
        cut in any::<proptest::sample::Index>(),
        junk in "[\\[\\]=\"'\\n a-z0-9.,{}#-]{0,12}",
    ) {
        let text = render(&config);
        let at = cut.index(text.len() + 1);
        let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        let damaged = format!("{}{junk}{}", &text[..at], &text[at..]);
        if let Ok(parsed) = Config::from_toml(&damaged) {
            prop_assert!(parsed.validate().is_ok());
        }
    }

    #[test]
    fn every_valid_config_reads_back_the_same(config in config()) {
        prop_assume!(config.validate().is_ok());
        let text = render(&config);
        let parsed = Config::from_toml(&text);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&config), "{}\n{:?}", text, parsed.as_ref().err());
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_path(
        config in config(),
        which in any::<proptest::sample::Index>(),
        key in "[a-z]{3,12}",
    ) {
        prop_assume!(config.validate().is_ok());
        let known = ["name", "listen", "targets", "balance", "retries", "pool"];
        prop_assume!(!known.contains(&key.as_str()));
        let index = which.index(config.routes.len());
        let text = insert_into_route(&render(&config), index, &format!("{key} = 1"));
        let error = Config::from_toml(&text).expect_err("an unknown key must be refused");
        let expected = format!("route[{index}].{key}");
        prop_assert_eq!(error.key.as_deref(), Some(expected.as_str()), "{}", error);
    }

    #[test]
    fn a_duration_without_a_unit_is_refused_with_its_path(
        config in config(),
        which in any::<proptest::sample::Index>(),
        key in proptest::sample::select(DURATION_KEYS.to_vec()),
        amount in 1u32..1000,
    ) {
        prop_assume!(config.validate().is_ok());
        let index = which.index(config.routes.len());
        let text = render(&config);
        let start = route_start(&text, index);
        let line_start = start + text[start..].find(&format!("\n{key} = ")).expect("rendered") + 1;
        let line_end = line_start + text[line_start..].find('\n').expect("a line");
        let text = format!("{}{key} = {amount}{}", &text[..line_start], &text[line_end..]);
        let error = Config::from_toml(&text).expect_err("a bare number must be refused");
        let expected = format!("route[{index}].{key}");
        prop_assert_eq!(error.key.as_deref(), Some(expected.as_str()), "{}", error);
    }

    #[test]
    fn every_bad_key_of_every_route_is_reported_in_file_order(
        config in config(),
        bad in proptest::collection::vec((any::<bool>(), 1u32..1000), 1..4),
    ) {
        prop_assume!(config.validate().is_ok());
        let mut text = render(&config);
        let mut expected = Vec::new();
        // Later routes first, so that the earlier ones' offsets hold.
        for (index, (unknown, amount)) in bad.iter().enumerate().take(config.routes.len()).rev() {
            let line = if *unknown {
                expected.push(format!("route[{index}].no-such-key-{amount}"));
                format!("no-such-key-{amount} = 1")
            } else {
                expected.push(format!("route[{index}].proxy-timeout"));
                format!("proxy-timeout = {amount}")
            };
            text = insert_into_route(&text, index, &line);
        }
        expected.reverse();
        let error = Config::from_toml(&text).expect_err("bad keys must be refused");
        let found: Vec<String> = error.problems().filter_map(|p| p.key.clone()).collect();
        prop_assert_eq!(&found, &expected, "{}", error);
        prop_assert_eq!(error.problems().count(), expected.len(), "{}", error);
    }
}

/// Where the `index`-th `[[route]]` table starts.
fn route_start(text: &str, index: usize) -> usize {
    text.match_indices("[[route]]")
        .nth(index)
        .expect("the route")
        .0
}

/// `text` with `line` added right after the `index`-th route's header.
fn insert_into_route(text: &str, index: usize, line: &str) -> String {
    let after_header = route_start(text, index) + "[[route]]\n".len();
    format!("{}{line}\n{}", &text[..after_header], &text[after_header..])
}
