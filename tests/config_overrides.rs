//! Process-wide flags beside `--config` (`--workers`, `--metrics`,
//! `--max-connections`, `--access-log-opens`, ...) win over the file's
//! `[global]`, as `haproxy -f` and `nginx -g` let the command line win; and
//! they still do after every SIGHUP reload, which reads the file again.

mod common;
use common::config::*;
use common::faults::*;
use common::scrape::*;
use common::*;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a client beyond the limit is watched to see it is not served.
const WAIT_WINDOW: Duration = Duration::from_millis(400);

/// A client whose message has made the round trip through `addr`.
fn served_client(addr: SocketAddr, message: &[u8]) -> TcpStream {
    let mut client = connect(addr);
    assert_round_trip(&mut client, message);
    client
}

#[test]
fn workers_metrics_and_access_log_opens_from_flags_win_over_the_file() {
    let file = ConfigFile::new(&format!(
        "[global]\nworkers = 1\naccess-log-opens = false\n\n{}",
        route("web", &[echo_server()], "")
    ));
    let tcpipe = Tcpipe::start_args(&[
        "--config",
        file.path_str(),
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:0",
        "--access-log-opens",
    ]);
    let addr = tcpipe.route_addr("web");
    let clients: Vec<TcpStream> = (0..30).map(|_| served_client(addr, b"x")).collect();
    assert!(
        wait_until(DEADLINE, || tcpipe.opened_pipe_ids().len() == 30),
        "no open line for every client: --access-log-opens lost; logs: {:#?}",
        tcpipe.logs()
    );
    // Two workers give pipe ids of both parities (worker 1 the odd ones).
    let workers: BTreeSet<u64> = tcpipe
        .opened_pipe_ids()
        .iter()
        .map(|id| (id - 1) % 2)
        .collect();
    assert_eq!(workers, BTreeSet::from([0, 1]), "both workers have pipes");
    let route = [("route", "web")];
    let scrape = scrape_until(&tcpipe, "every client", |s| {
        s.get("tcpipe_connections_active", &route) == 30.0
    });
    assert_eq!(
        scrape.get("tcpipe_connections_accepted_total", &route),
        30.0
    );
    drop(clients);
}

#[test]
fn max_connections_from_a_flag_wins_over_the_file_and_still_does_after_a_reload() {
    let target = echo_server();
    let text = |idle: &str| {
        format!(
            "[global]\nmax-connections = 100\n\n{}",
            route("web", &[target], &format!("idle-timeout = \"{idle}\""))
        )
    };
    let file = ConfigFile::new(&text("1h"));
    let tcpipe = Tcpipe::start_args(&["--config", file.path_str(), "--max-connections", "2"]);
    let addr = tcpipe.route_addr("web");
    let mut first = served_client(addr, b"one");
    let _second = served_client(addr, b"two");
    let mut waiting = connect(addr);
    std::io::Write::write_all(&mut waiting, b"three").expect("send");
    assert_nothing_arrives(
        &mut waiting,
        WAIT_WINDOW,
        "a third client beyond --max-connections 2",
    );

    // The reload reads max-connections = 100 again; the flag must win again.
    file.write(&text("2h"));
    tcpipe.reload().expect("a valid reload");
    assert_nothing_arrives(
        &mut waiting,
        WAIT_WINDOW,
        "a third client beyond --max-connections 2, after the reload",
    );
    // A slot freed lets it in: the limit is 2, not a stuck listener.
    assert_round_trip(&mut first, b"still served");
    drop(first);
    let mut echoed = [0u8; 5];
    std::io::Read::read_exact(&mut waiting, &mut echoed).expect("served once a slot frees");
    assert_eq!(&echoed, b"three");
}
