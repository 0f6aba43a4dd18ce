use super::*;

fn parse_line(args: &[&str]) -> Result<Config, CliExit> {
    parse(std::iter::once("tcpipe").chain(args.iter().copied())).map(|i| i.config)
}

#[test]
fn defaults_follow_the_buffer_size() {
    let config = parse_line(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--buffer-size",
        "16k",
    ])
    .expect("valid flags");
    let route = &config.routes[0];
    assert_eq!(route.name, "default");
    assert_eq!(route.buffer_size, 16 * 1024);
    assert_eq!(route.low_water, 8 * 1024);
    assert_eq!(route.idle_timeout, None);
    assert_eq!(route.connect_timeout, Some(Duration::from_secs(5)));
}

#[test]
fn a_missing_flag_is_named_on_one_line() {
    let exit = parse_line(&["-l", "127.0.0.1:0"]).unwrap_err();
    assert_eq!(exit.code, 2);
    assert!(!exit.message.contains('\n'), "{}", exit.message);
    assert!(exit.message.contains("--target"), "{}", exit.message);
}

#[test]
fn a_bad_duration_names_flag_value_and_reason() {
    let exit = parse_line(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--idle-timeout",
        "5",
    ])
    .unwrap_err();
    assert_eq!(exit.code, 2);
    assert!(exit.message.contains("--idle-timeout"), "{}", exit.message);
    assert!(exit.message.contains("'5'"), "{}", exit.message);
    assert!(exit.message.contains("missing unit"), "{}", exit.message);
}

#[test]
fn every_flag_is_a_route_flag_or_a_global_one() {
    let command = Args::command();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let known = ["config", "check", "help", "version"].contains(&id)
            || ROUTE_FLAGS.contains(&id)
            || GLOBAL_FLAGS.contains(&id);
        assert!(
            known,
            "--{id}: say in cli/mod.rs whether --config replaces it"
        );
    }
}

#[test]
fn global_flags_given_with_config_are_overrides() {
    let args = [
        "tcpipe",
        "-c",
        "x.toml",
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:9",
    ];
    let matches = Args::command().try_get_matches_from(args).expect("valid");
    let parsed = Args::from_arg_matches(&matches).expect("valid");
    assert_eq!(route_flag_with_config(&matches), None);
    let overrides = parsed.overrides(&matches);
    assert_eq!(
        overrides.describe(),
        ["metrics = 127.0.0.1:9", "workers = 2"],
        "defaults are no overrides"
    );
    let set: Vec<&str> = GLOBAL_FLAGS
        .iter()
        .copied()
        .filter(|id| given(&matches, id))
        .collect();
    assert_eq!(set, ["metrics", "workers"]);
}

#[test]
fn config_replaces_the_route_flags() {
    let exit = parse_line(&["--config", "x.toml", "-l", "127.0.0.1:0"]).unwrap_err();
    assert_eq!(exit.code, 2);
    assert_eq!(
        exit.message,
        "tcpipe: --listen cannot be combined with --config: routes come from the file \
         (give the route a listen key there)"
    );
    let exit =
        parse_line(&["--idle-timeout", "5s", "-t", "127.0.0.1:1", "-c", "x.toml"]).unwrap_err();
    assert_eq!(
        exit.message,
        "tcpipe: --idle-timeout cannot be combined with --config: route options come from \
         the file (set idle-timeout in [defaults] or a [[route]])"
    );
}
