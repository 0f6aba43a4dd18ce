//! `--workers N`: N event loops, each with its own listening socket on
//! the same address (SO_REUSEPORT). Clients are spread over them; pipe ids
//! name their worker; reloads and shutdowns reach every one; probes and the
//! warm pool are not multiplied; `/metrics` and the handle sum them all.

mod common;
use common::config::*;
use common::scrape::*;
use common::upstreams::*;
use common::*;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use tcpipe::{Config, Forwarder, Handle, Hooks, PipeControl, PipeId, PipeOpened, StartError};

/// A library forwarder of `config` on its own thread.
fn spawn(config: Config) -> (SocketAddr, Handle, thread::JoinHandle<()>) {
    let forwarder = Forwarder::bind(config).expect("bind");
    let addr = forwarder.local_addr().expect("a listener");
    let handle = forwarder.handle();
    let thread = thread::spawn(move || forwarder.run().expect("run"));
    (addr, handle, thread)
}

fn two_workers(target: SocketAddr) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target);
    config.workers = 2;
    config
}

/// A client whose byte has made the round trip through the forwarder.
fn served_client(addr: SocketAddr) -> TcpStream {
    let mut client = connect(addr);
    client.write_all(b"x").unwrap();
    let mut byte = [0u8; 1];
    client.read_exact(&mut byte).unwrap();
    client
}

/// Which worker gave pipe `id`, of two: worker 1 gives odd ids.
fn worker_of(id: u64) -> u64 {
    (id - 1) % 2
}

#[test]
fn clients_are_spread_over_both_workers_and_every_pipe_is_listed() {
    let (addr, handle, thread) = spawn(two_workers(echo_server()));
    let clients: Vec<TcpStream> = (0..40).map(|_| served_client(addr)).collect();

    let pipes = handle.pipes().expect("running");
    assert_eq!(pipes.len(), clients.len(), "pipes() lists every worker's");
    let ids: BTreeSet<u64> = pipes.iter().map(|p| p.id.get()).collect();
    assert_eq!(
        ids.len(),
        clients.len(),
        "pipe ids are unique across workers"
    );
    let workers: BTreeSet<u64> = ids.iter().map(|&id| worker_of(id)).collect();
    assert_eq!(
        workers,
        BTreeSet::from([0, 1]),
        "40 clients all went to one worker: {ids:?}"
    );
    assert_eq!(handle.metrics().live_pipes.get(), 40, "metrics sum both");
    assert_eq!(handle.metrics().accepted_total.get(), 40);

    // A command reaches the worker that owns the pipe, whichever it is.
    for worker in [0, 1] {
        let pipe = pipes
            .iter()
            .find(|p| worker_of(p.id.get()) == worker)
            .unwrap();
        let id = pipe.id.get();
        handle.abort(pipe.id).expect("abort a live pipe");
        assert!(wait_until(DEADLINE, || handle
            .pipes()
            .unwrap()
            .iter()
            .all(|p| p.id.get() != id)));
    }
    assert_eq!(handle.pipes().unwrap().len(), 38);

    drop(clients);
    assert!(wait_until(DEADLINE, || handle.metrics().live_pipes.get() == 0));
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn attached_pairs_go_to_the_workers_in_turn() {
    let (_, handle, thread) = spawn(two_workers(echo_server()));
    let (listener, target) = listener();
    let mut ids = Vec::new();
    let mut ends = Vec::new();
    for _ in 0..4 {
        let (client_listener, client_addr) = common::listener();
        let outside = connect(client_addr);
        let (inside, _) = client_listener.accept().unwrap();
        let upstream = TcpStream::connect(target).unwrap();
        let (far, _) = listener.accept().unwrap();
        ids.push(handle.attach(inside, upstream).expect("attach").get());
        ends.push((outside, far));
    }
    let workers: BTreeSet<u64> = ids.iter().map(|&id| worker_of(id)).collect();
    assert_eq!(workers, BTreeSet::from([0, 1]), "ids {ids:?}");
    for (outside, far) in &mut ends {
        outside.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        far.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }
    handle.shutdown();
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn a_reload_reaches_every_worker_and_keeps_the_number_of_workers() {
    let old = Backend::echo();
    let new = Backend::echo();
    let (addr, handle, thread) = spawn(two_workers(old.addr));
    let mut config = two_workers(new.addr);
    config.workers = 3;
    let reloaded = handle.reload(config).expect("reload");
    assert!(
        reloaded
            .summary
            .iter()
            .any(|line| line.contains("workers 2 kept")),
        "{:?}",
        reloaded.summary
    );
    assert_eq!(reloaded.listening[0].1, addr, "the address is kept");

    // Every new client, on either worker, goes to the new target.
    let clients: Vec<TcpStream> = (0..40).map(|_| served_client(addr)).collect();
    let workers: BTreeSet<u64> = handle
        .pipes()
        .unwrap()
        .iter()
        .map(|p| worker_of(p.id.get()))
        .collect();
    assert_eq!(workers, BTreeSet::from([0, 1]));
    assert_eq!(new.served(), 40);
    assert_eq!(old.served(), 0);
    // Every worker applied it, and it is one reload.
    let text = handle.prometheus().expect("running");
    assert!(
        text.contains("tcpipe_reloads_total{result=\"ok\"} 1\n"),
        "{text}"
    );
    assert_eq!(handle.metrics().reloads_ok_total.get(), 1);
    drop(clients);
    handle.shutdown();
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn sighup_reloads_every_worker_of_the_binary() {
    let old = Backend::echo();
    let new = Backend::echo();
    let text = |target: SocketAddr| {
        format!(
            "[global]\nworkers = 2\naccess-log-opens = true\n\n{}",
            route("web", &[target], "")
        )
    };
    let file = ConfigFile::new(&text(old.addr));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("web");
    file.write(&text(new.addr));
    tcpipe.reload().expect("a valid reload");

    let mark = tcpipe.opened_pipe_ids();
    let clients: Vec<TcpStream> = (0..40).map(|_| served_client(addr)).collect();
    assert!(wait_until(DEADLINE, || tcpipe.opened_pipe_ids().len()
        == mark.len() + 40));
    let ids = tcpipe.opened_pipe_ids();
    let workers: BTreeSet<u64> = ids.difference(&mark).map(|&id| worker_of(id)).collect();
    assert_eq!(workers, BTreeSet::from([0, 1]), "ids {ids:?}");
    assert_eq!(new.served(), 40, "every worker forwards to the new target");
    assert_eq!(old.served(), 0);
    drop(clients);
}

/// The binary with two workers, a long drain, and 20 clients served (their
/// opens logged, so their pipe ids are known).
fn two_workers_with_20_clients() -> (Tcpipe, Vec<TcpStream>) {
    let tcpipe = Tcpipe::start(
        echo_server(),
        &[
            "--workers",
            "2",
            "--drain-timeout",
            "30s",
            "--access-log-opens",
        ],
    );
    let clients: Vec<TcpStream> = (0..20).map(|_| served_client(tcpipe.addr)).collect();
    assert!(wait_until(DEADLINE, || tcpipe.opened_pipe_ids().len() == 20));
    (tcpipe, clients)
}

#[test]
fn sigterm_drains_the_pipes_of_every_worker_then_the_process_exits_0() {
    let (mut tcpipe, mut clients) = two_workers_with_20_clients();
    let workers: BTreeSet<u64> = tcpipe
        .opened_pipe_ids()
        .iter()
        .map(|&id| worker_of(id))
        .collect();
    assert_eq!(workers, BTreeSet::from([0, 1]));

    let status = tcpipe.latest_ready().status().to_string();
    assert!(
        status.contains("2 workers"),
        "the status systemd shows gives the number of workers: {status}"
    );
    tcpipe.signal("TERM");
    // No worker accepts any more...
    assert!(wait_until(DEADLINE, || TcpStream::connect(tcpipe.addr)
        .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)));
    // ...and every pipe, on either worker, still forwards until its client ends.
    for client in &mut clients {
        client.write_all(b"after").unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"after");
    }
    for mut client in clients {
        client.shutdown(Shutdown::Write).unwrap();
        assert!(read_to_end(&mut client).is_empty());
    }
    let status = tcpipe.wait_exit(DEADLINE).expect("exits once drained");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_sigterm_aborts_the_pipes_of_every_worker() {
    let (mut tcpipe, mut clients) = two_workers_with_20_clients();
    tcpipe.signal("TERM");
    // The shutdown has begun once no worker accepts any more.
    assert!(wait_until(DEADLINE, || TcpStream::connect(tcpipe.addr)
        .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)));
    tcpipe.signal("TERM");
    let status = tcpipe.wait_exit(DEADLINE).expect("exits at once");
    assert!(status.success(), "{status:?}");
    for client in &mut clients {
        let (_, ended) = read_until_closed(client);
        assert!(
            ended.is_err_and(|e| e.kind() == ErrorKind::ConnectionReset),
            "every client is reset"
        );
    }
}

#[test]
fn health_probes_are_made_once_per_interval_not_once_per_worker() {
    let target = Backend::echo();
    let started = Instant::now();
    let tcpipe = start_forwarder(
        &[target.addr],
        &["--workers", "2", "--health-interval", "200ms"],
    );
    // One prober makes 10 probes in at least 9 intervals; one per worker
    // would make them in half that.
    assert!(wait_until(DEADLINE, || target.accepted() >= 10));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1700),
        "10 probes in {took:?}: more than one prober"
    );
    drop(tcpipe);
}

#[test]
fn a_probe_verdict_reaches_every_worker() {
    let mut target = Backend::echo();
    let backup = Backend::echo();
    let tcpipe = start_forwarder(
        &[target.addr, backup.addr],
        &[
            "--workers",
            "2",
            "--health-interval",
            "200ms",
            "--cooldown",
            "1m",
            "--access-log-opens",
        ],
    );
    target.refuse();
    tcpipe.wait_target_up(target.addr, false);
    // Every worker now sends every client to the backup, with no failed
    // connect of its own first.
    let clients: Vec<TcpStream> = (0..40).map(|_| served_client(tcpipe.addr)).collect();
    assert!(wait_until(DEADLINE, || tcpipe.opened_pipe_ids().len() == 40));
    let workers: BTreeSet<u64> = tcpipe
        .opened_pipe_ids()
        .iter()
        .map(|&id| worker_of(id))
        .collect();
    assert_eq!(workers, BTreeSet::from([0, 1]));
    assert_eq!(backup.served(), 40);
    assert_eq!(tcpipe.connects_to(target.addr), 0, "no client tried it");
    drop(clients);
}

#[test]
fn the_warm_pool_is_split_so_its_total_is_what_was_asked_and_metrics_sum_it() {
    let target = Backend::echo();
    let name = target.addr.to_string();
    let of_target = [("route", "default"), ("target", name.as_str())];
    let tcpipe = Tcpipe::start(
        target.addr,
        &["--workers", "2", "--pool", "3", "--metrics", "127.0.0.1:0"],
    );
    // Worker 1 keeps 2, worker 2 keeps 1: the endpoint shows their sum.
    scrape_until(&tcpipe, "a full pool", |s| {
        s.get("tcpipe_target_pool_idle_connections", &of_target) == 3.0
    });
    assert!(
        !wait_until(Duration::from_millis(500), || target.accepted() > 3),
        "the target got {} pooled connections for --pool 3",
        target.accepted()
    );
    assert_eq!(target.accepted(), 3);
}

#[test]
fn the_metrics_endpoint_sums_every_worker() {
    let tcpipe = Tcpipe::start(
        echo_server(),
        &[
            "--workers",
            "2",
            "--metrics",
            "127.0.0.1:0",
            "--access-log-opens",
        ],
    );
    let route = [("route", "default")];
    let clients: Vec<TcpStream> = (0..30).map(|_| served_client(tcpipe.addr)).collect();
    assert!(wait_until(DEADLINE, || tcpipe.opened_pipe_ids().len() == 30));
    let workers: BTreeSet<u64> = tcpipe
        .opened_pipe_ids()
        .iter()
        .map(|&id| worker_of(id))
        .collect();
    assert_eq!(workers, BTreeSet::from([0, 1]), "both workers have pipes");
    let scrape = scrape_until(&tcpipe, "every client", |s| {
        s.get("tcpipe_connections_active", &route) == 30.0
    });
    assert_eq!(
        scrape.get("tcpipe_connections_accepted_total", &route),
        30.0
    );
    drop(clients);
    let scrape = scrape_until(&tcpipe, "every pipe closed", |s| {
        s.get("tcpipe_connections_active", &route) == 0.0
    });
    assert_eq!(
        scrape.get(
            "tcpipe_pipes_closed_total",
            &[("route", "default"), ("reason", "clean")]
        ),
        30.0
    );
}

#[test]
fn bad_worker_counts_name_the_flag_or_key_and_exit_2() {
    for (value, reason) in [
        ("0", "must be between 1 and 1024"),
        ("5000", "must be between 1 and 1024"),
        ("-1", "must not be negative"),
        ("many", "expected a whole number"),
    ] {
        let output = run_tcpipe(&["-l", "127.0.0.1:0", "-t", "127.0.0.1:1", "--workers", value]);
        assert_eq!(output.status.code(), Some(2), "--workers {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(
            lines[0].contains("--workers") && lines[0].contains(value) && lines[0].contains(reason),
            "{stderr}"
        );
    }
    for (value, reason) in [
        ("0", "must be between 1 and 1024"),
        ("\"lots\"", "expected a whole number"),
    ] {
        let file = ConfigFile::new(&format!(
            "[global]\nworkers = {value}\n\n{}",
            route("web", &["127.0.0.1:1".parse().unwrap()], "")
        ));
        let output = run_tcpipe(&["--check", "--config", file.path_str()]);
        assert_eq!(output.status.code(), Some(2), "workers = {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("global.workers")
                && stderr.contains(value.trim_matches('"'))
                && stderr.contains(reason),
            "{stderr}"
        );
    }
    let file = ConfigFile::new(&format!(
        "[global]\nworkers = \"auto\"\n\n{}",
        route("web", &["127.0.0.1:1".parse().unwrap()], "")
    ));
    let output = run_tcpipe(&["--check", "--config", file.path_str()]);
    assert_eq!(output.status.code(), Some(0), "workers = \"auto\"");
}

#[test]
fn one_set_of_hooks_is_refused_with_two_workers() {
    struct Quiet;
    impl Hooks for Quiet {}
    let config = two_workers(echo_server());
    match Forwarder::builder(config).hooks(Quiet).bind() {
        Err(StartError::Config(e)) => {
            let message = e.to_string();
            assert!(
                message.contains("workers") && message.contains("hooks_per_worker"),
                "{e}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("one set of hooks with 2 workers must be refused"),
    }
}

#[test]
fn hooks_per_worker_hear_the_pipes_of_both_workers() {
    /// Which worker's hooks heard each pipe open, by pipe id.
    type Heard = Arc<Mutex<Vec<(usize, PipeId)>>>;
    struct Tagged(usize, Heard);
    impl Hooks for Tagged {
        fn pipe_opened(&mut self, pipe: &PipeOpened<'_>, _: &mut PipeControl) {
            self.1.lock().unwrap().push((self.0, pipe.id));
        }
    }
    let heard: Heard = Arc::default();
    let made = Arc::new(Mutex::new(Vec::new()));
    let forwarder = {
        let (heard, made) = (Arc::clone(&heard), Arc::clone(&made));
        Forwarder::builder(two_workers(echo_server()))
            .hooks_per_worker(move |worker| {
                made.lock().unwrap().push(worker);
                Tagged(worker, Arc::clone(&heard))
            })
            .bind()
            .expect("bind two workers with hooks")
    };
    assert_eq!(*made.lock().unwrap(), [0, 1], "one set of hooks per worker");
    let addr = forwarder.local_addr().expect("a listener");
    let handle = forwarder.handle();
    let thread = thread::spawn(move || forwarder.run().expect("run"));
    // SO_REUSEPORT spreads clients by their ports' hash: enough clients
    // reach both workers.
    let mut clients = Vec::new();
    let both = wait_until(DEADLINE, || {
        clients.push(served_client(addr));
        let workers: BTreeSet<usize> = heard.lock().unwrap().iter().map(|(w, _)| *w).collect();
        workers.len() == 2
    });
    assert!(
        both,
        "only one worker's hooks heard anything: {:?}",
        heard.lock().unwrap()
    );
    // Each worker's hooks hear only its own pipes: ids name their worker.
    for (worker, id) in heard.lock().unwrap().iter() {
        assert_eq!(
            worker_of(id.get()) as usize,
            *worker,
            "pipe {id} heard by worker {worker}"
        );
    }
    handle.shutdown();
    handle.shutdown();
    thread.join().unwrap();
}

#[test]
fn check_warns_of_more_workers_than_cpus() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    let many = (cpus + 1).to_string();
    let output = run_tcpipe(&[
        "--check",
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--workers",
        &many,
    ]);
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warned = |fragments: &[&str]| {
        stderr
            .lines()
            .any(|line| line.contains("warning") && fragments.iter().all(|f| line.contains(f)))
    };
    assert!(
        warned(&["--workers", &many, &format!("{cpus} CPUs")]),
        "{stderr}"
    );
    let output = run_tcpipe(&["--check", "-l", "127.0.0.1:0", "-t", "127.0.0.1:1"]);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("workers"));
}

/// How many of `clients` have had their echo since the last look.
fn echoes_arrived(clients: &mut [TcpStream], seen: &mut [bool]) -> usize {
    for (client, seen) in clients.iter_mut().zip(seen.iter_mut()) {
        let mut byte = [0u8; 1];
        if !*seen && matches!(client.read(&mut byte), Ok(1)) {
            *seen = true;
        }
    }
    seen.iter().filter(|&&s| s).count()
}

#[test]
fn max_connections_is_one_count_for_all_workers() {
    let tcpipe = Tcpipe::start(echo_server(), &["--workers", "2", "--max-connections", "4"]);
    let mut served: Vec<TcpStream> = (0..4).map(|_| served_client(tcpipe.addr)).collect();
    let mut waiting: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut client = connect(tcpipe.addr);
            client.write_all(b"w").unwrap();
            client.set_nonblocking(true).unwrap();
            client
        })
        .collect();
    let mut seen = vec![false; waiting.len()];
    assert!(
        !wait_until(Duration::from_millis(400), || echoes_arrived(
            &mut waiting,
            &mut seen
        ) > 0),
        "a client beyond the limit of 4 was served"
    );
    // Each place freed on either worker admits exactly one waiting client,
    // on whichever worker it waits.
    for admitted in 1..=4 {
        drop(served.remove(0));
        assert!(
            wait_until(DEADLINE, || echoes_arrived(&mut waiting, &mut seen)
                >= admitted),
            "a freed place was not taken"
        );
        assert!(
            !wait_until(Duration::from_millis(300), || echoes_arrived(
                &mut waiting,
                &mut seen
            ) > admitted),
            "one freed place admitted two clients"
        );
    }
    assert!(served.is_empty());
}
