//! Out of file descriptors (RLIMIT_NOFILE 64, 200 clients): the forwarder
//! stays up, backs off instead of spinning, says so once per burst, and
//! serves every waiting client as others close.

mod common;
use common::config::*;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

const FD_LIMIT: u32 = 64;
const CLIENTS: usize = 200;
const BACKOFF_WARNING: &str = "cannot accept";
const RECOVERY: &str = "accepting again";
/// How long the exhausted forwarder is watched.
const WINDOW: Duration = Duration::from_millis(1500);
/// CPU seconds per second the forwarder may burn while exhausted.
const MAX_CPU_SHARE: f64 = 0.2;

/// One client that sent a message and waits for its echo.
struct Client {
    stream: TcpStream,
    message: Vec<u8>,
    echoed: Vec<u8>,
}

impl Client {
    /// Reads what has arrived without blocking; true once the whole echo is in.
    fn poll_echo(&mut self) -> bool {
        let mut buf = [0u8; 64];
        while self.echoed.len() < self.message.len() {
            match self.stream.read(&mut buf) {
                Ok(0) => panic!(
                    "{:?} was closed before its echo",
                    String::from_utf8_lossy(&self.message)
                ),
                Ok(n) => self.echoed.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) => panic!(
                    "{:?} failed while waiting for its echo: {e}",
                    String::from_utf8_lossy(&self.message)
                ),
            }
        }
        assert_eq!(self.echoed, self.message, "an echo came back altered");
        true
    }
}

/// A forwarder limited to `FD_LIMIT` descriptors with `CLIENTS` clients
/// connected, each having sent its message. Returns once the forwarder has
/// run out of descriptors.
fn exhausted_forwarder() -> (Tcpipe, Vec<Client>) {
    let tcpipe = Tcpipe::start_with_fd_limit(FD_LIMIT, echo_server(), &[]);
    let clients = exhaust(&tcpipe, tcpipe.addr);
    (tcpipe, clients)
}

/// Connects `CLIENTS` clients to `addr`, each sending its message, and
/// returns once the forwarder has run out of descriptors.
fn exhaust(tcpipe: &Tcpipe, addr: std::net::SocketAddr) -> Vec<Client> {
    let clients = (0..CLIENTS)
        .map(|i| {
            let mut stream = connect(addr);
            let message = format!("client {i:04}").into_bytes();
            stream.write_all(&message).expect("send a message");
            stream.set_nonblocking(true).unwrap();
            Client {
                stream,
                message,
                echoed: Vec::new(),
            }
        })
        .collect();
    assert!(
        tcpipe.wait_for_log(BACKOFF_WARNING, DEADLINE),
        "{CLIENTS} clients under a limit of {FD_LIMIT} descriptors never made accept back off; logs: {:#?}",
        tcpipe.logs()
    );
    clients
}

fn count_logs(tcpipe: &Tcpipe, needle: &str) -> usize {
    tcpipe
        .logs()
        .iter()
        .filter(|line| line.contains(needle))
        .count()
}

/// Closes each client as soon as its echo is in, until every one has had
/// its echo: each close frees descriptors for a waiting client.
fn serve_everyone(mut clients: Vec<Client>) {
    let served_all = wait_until(DEADLINE, || {
        clients.retain_mut(|client| !client.poll_echo());
        clients.is_empty()
    });
    assert!(
        served_all,
        "{} clients were never served after others closed",
        clients.len()
    );
}

#[test]
fn out_of_descriptors_the_forwarder_stays_up_idles_and_retries_quietly() {
    let (mut tcpipe, mut clients) = exhausted_forwarder();
    let warnings = count_logs(&tcpipe, BACKOFF_WARNING);

    let cpu_before = tcpipe.cpu_time();
    let started = Instant::now();
    // Elapsed time is what is under test: accept is retried every 50 ms
    // during this window, and must cost almost nothing.
    thread::sleep(WINDOW);
    let cpu_share =
        (tcpipe.cpu_time() - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();

    assert!(
        tcpipe.wait_exit(Duration::ZERO).is_none(),
        "the forwarder exited when it ran out of descriptors; logs: {:#?}",
        tcpipe.logs()
    );
    assert!(
        cpu_share < MAX_CPU_SHARE,
        "the exhausted forwarder used {cpu_share:.2} CPU seconds per second"
    );
    assert_eq!(
        count_logs(&tcpipe, BACKOFF_WARNING),
        warnings,
        "accept failures were logged again during one burst; logs: {:#?}",
        tcpipe.logs()
    );
    // The pipes it did open are served meanwhile.
    let served = clients
        .iter_mut()
        .map(Client::poll_echo)
        .filter(|&done| done)
        .count();
    assert!(served > 0, "no client was served while exhausted");
    assert!(
        served < CLIENTS,
        "every client was served: the limit did not bite"
    );

    // The line that ends the shortage counts the retries made quietly.
    serve_everyone(clients);
    assert!(
        tcpipe.wait_for_log(RECOVERY, DEADLINE),
        "the end of the shortage was not logged; logs: {:#?}",
        tcpipe.logs()
    );
    let recovery = tcpipe
        .logs()
        .into_iter()
        .find(|line| line.contains(RECOVERY))
        .unwrap();
    let failed_attempts: u64 = recovery
        .split('(')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no attempt count in {recovery:?}"));
    assert!(
        failed_attempts >= 10,
        "accept was retried only {failed_attempts} times in {WINDOW:?} of exhaustion: {recovery:?}"
    );
}

#[test]
fn every_client_waiting_for_descriptors_is_served_as_others_close() {
    let (_tcpipe, clients) = exhausted_forwarder();
    serve_everyone(clients);
}

#[test]
fn one_shortage_lasting_until_the_backlog_drains_is_logged_once() {
    let (tcpipe, clients) = exhausted_forwarder();
    // From the first failed accept until the last waiting client is
    // accepted, clients are queued and descriptors short the whole time: one
    // burst. Admitting one client into a freed slot is not a recovery.
    serve_everyone(clients);
    assert!(
        tcpipe.wait_for_log(RECOVERY, DEADLINE),
        "the end of the shortage was not logged; logs: {:#?}",
        tcpipe.logs()
    );
    let warnings = count_logs(&tcpipe, BACKOFF_WARNING);
    assert_eq!(
        warnings,
        1,
        "one shortage was logged as {warnings} bursts: {} recovery lines",
        count_logs(&tcpipe, RECOVERY)
    );
}

#[test]
fn after_a_shortage_a_route_held_at_its_own_limit_does_not_hold_back_the_others() {
    let target = echo_server();
    let file = ConfigFile::new(&format!(
        "{}{}",
        route("full", &[target], "max-connections = 1"),
        route("busy", &[target], ""),
    ));
    let tcpipe = Tcpipe::start_args_with_fd_limit(FD_LIMIT, &["--config", file.path_str()]);
    // "full" sits at its own limit, a client waiting in its backlog...
    let full = tcpipe.route_addr("full");
    let mut holding = connect(full);
    common::faults::assert_round_trip(&mut holding, b"the only slot");
    let mut waiting = connect(full);
    waiting.write_all(b"wait").unwrap();
    // ...while "busy" runs the process out of descriptors, then drains.
    let busy = tcpipe.route_addr("busy");
    serve_everyone(exhaust(&tcpipe, busy));

    // The shortage is over, though "full" still has a client waiting: new
    // clients of "busy" are accepted as they come, not when a pipe closes.
    assert!(
        tcpipe.wait_for_log(RECOVERY, DEADLINE),
        "the end of the shortage was not logged; logs: {:#?}",
        tcpipe.logs()
    );
    for n in 0..3 {
        let mut client = connect(busy);
        common::faults::assert_round_trip(&mut client, format!("late {n}").as_bytes());
    }
    holding.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echoed = [0u8; 4];
    waiting
        .read_exact(&mut echoed)
        .expect("served once the slot freed");
    assert_eq!(&echoed, b"wait");
}
