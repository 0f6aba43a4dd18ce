//! The operator's state survives a reload for the targets that remain
//! (same route, same name): a drained target stays drained, a weight set
//! at runtime stays unless the file's weight for that target changed (the
//! file's new value wins then), and a target removed and added back starts
//! afresh. Through `Handle::reload` and through SIGHUP with a file.

mod common;
use common::config::ConfigFile;
use common::hooks::{Events, Running};
use common::operate::{self, name, next_target, ROUTE};
use common::upstreams::Backend;
use common::*;

use std::process::Command;

use tcpipe::{Config, Forwarder, Target, TargetState};

fn route_over(listen: std::net::SocketAddr, targets: Vec<Target>) -> Config {
    let mut config = Config::new(listen, targets[0].addr);
    config.routes[0].targets = targets;
    config.workers = 2;
    config
}

fn states(running: &Running) -> Vec<(String, TargetState, u32)> {
    let targets = running.handle.targets().expect("targets");
    targets
        .into_iter()
        .map(|t| (t.name, t.state, t.weight))
        .collect()
}

#[test]
fn a_reload_keeps_the_operator_s_state_of_the_targets_it_keeps() {
    let (a, b, c, d) = (
        Backend::echo(),
        Backend::echo(),
        Backend::echo(),
        Backend::echo(),
    );
    let running = operate::start(
        vec![
            Target::from(a.addr),
            Target::from(b.addr),
            Target::from(c.addr),
        ],
        2,
        |_| {},
    );
    let listen = running.addr();
    let handle = &running.handle;
    handle
        .set_target_state(ROUTE, &name(&a), TargetState::Drain)
        .unwrap();
    handle.set_target_weight(ROUTE, &name(&b), 5).unwrap();
    handle.set_target_weight(ROUTE, &name(&c), 7).unwrap();

    // B's weight in the config stays 1 (the operator's 5 stays); C's goes
    // from 1 to 2 (the config's new value wins); D is new.
    let config = route_over(
        listen,
        vec![
            Target::from(a.addr),
            Target::from(b.addr),
            Target::from(c.addr).weight(2),
            Target::from(d.addr),
        ],
    );
    let reloaded = handle.reload(config).expect("reload");
    let summary = reloaded.summary.join("\n");
    assert!(
        summary.contains(&format!("{} weight 1 -> 2", c.addr))
            && summary.contains(&format!("+{}", d.addr)),
        "{summary}"
    );
    assert_eq!(
        states(&running),
        [
            (name(&a), TargetState::Drain, 1),
            (name(&b), TargetState::Ready, 5),
            (name(&c), TargetState::Ready, 2),
            (name(&d), TargetState::Ready, 1),
        ]
    );
    let backends = [&a, &b, &c, &d];
    for n in 0..40 {
        assert_ne!(
            next_target(listen, &backends, n),
            0,
            "a drained target got a client after a reload"
        );
    }

    // Removed, then listed again: A starts afresh, ready.
    let without_a = route_over(
        listen,
        vec![Target::from(b.addr), Target::from(c.addr).weight(2)],
    );
    handle.reload(without_a).expect("reload without A");
    let with_a = route_over(listen, vec![Target::from(a.addr), Target::from(b.addr)]);
    handle.reload(with_a).expect("reload with A again");
    assert_eq!(
        states(&running),
        [
            (name(&a), TargetState::Ready, 1),
            (name(&b), TargetState::Ready, 5),
        ]
    );
    running.stop();
}

/// The file: one route `default` listening on `listen`, over `targets`
/// (TOML target entries), with two workers.
fn file_text(listen: &str, targets: &[String]) -> String {
    format!(
        "[global]\nworkers = 2\n\n[[route]]\nname = \"{ROUTE}\"\nlisten = \"{listen}\"\ntargets = [{}]\n",
        targets.join(", ")
    )
}

#[test]
fn a_sighup_reload_keeps_a_drained_target_drained() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let (listener, listen) = listener();
    drop(listener);
    let entries = |b_weight: u32| {
        vec![
            format!("\"{}\"", a.addr),
            format!("{{ address = \"{}\", weight = {b_weight} }}", b.addr),
        ]
    };
    let file = ConfigFile::new(&file_text(&listen.to_string(), &entries(1)));
    let config = tcpipe::load_file(file.path()).expect("the file loads");
    let mut forwarder = Forwarder::builder(config).bind().expect("bind");
    forwarder.reload_on_sighup(file.path().to_path_buf());
    forwarder.handle_signals().expect("signals");
    let running = Running::start_forwarder(forwarder, Events::default());
    let handle = &running.handle;
    handle
        .set_target_state(ROUTE, &name(&a), TargetState::Drain)
        .unwrap();

    file.write(&file_text(&listen.to_string(), &entries(2)));
    let status = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    assert!(
        wait_until(DEADLINE, || states(&running)[1].2 == 2),
        "the reload never applied the file's new weight: {:?}",
        states(&running)
    );
    assert_eq!(states(&running)[0], (name(&a), TargetState::Drain, 1));
    for n in 0..20 {
        assert_eq!(next_target(listen, &[&a, &b], n), 1);
    }
    running.stop();
}
