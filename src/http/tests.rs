//! The server with handlers of its own, on 127.0.0.1: what the metrics
//! endpoint does not use (bodies, headers, 413, 501) and what needs short
//! limits to see quickly (deadlines, the connection cap, stopping).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Answer, Limits, Request, Response, Server};

const DEADLINE: Duration = Duration::from_secs(30);

/// Answers with what it was sent: method, path, query, `X-Token`, body.
fn echo(request: &Request) -> Response {
    let text = format!(
        "{} {} {:?} {:?} {}",
        request.method(),
        request.path(),
        request.query(),
        request.header("x-token"),
        String::from_utf8_lossy(request.body()),
    );
    Response::text(200, text)
}

fn start(limits: Limits) -> Server {
    Server::start("test", "127.0.0.1:0".parse().unwrap(), limits, echo).unwrap()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Writes each part in turn, then reads to the server's close.
fn exchange(addr: SocketAddr, parts: &[&[u8]]) -> String {
    let mut stream = connect(addr);
    stream.set_nodelay(true).unwrap();
    for part in parts {
        stream.write_all(part).unwrap();
    }
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8(answer).unwrap()
}

fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or_default()
}

#[test]
fn headers_and_a_body_in_several_segments_reach_the_handler() {
    let server = start(Limits::default());
    let answer = exchange(
        server.tcp_addr().unwrap(),
        &[
            b"POST /pipes?id=7 HTTP/1.1\r\nX-Tok",
            b"en: secret\r\nContent-Length: 11\r",
            b"\n\r\n{\"a\":",
            b" true}",
        ],
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nPOST /pipes Some(\"id=7\") Some(\"secret\") {\"a\": true}"),
        "{answer}"
    );
}

#[test]
fn oversize_bodies_chunked_bodies_and_garbage_get_their_error() {
    let limits = Limits {
        max_body: 16,
        ..Limits::default()
    };
    let server = start(limits);
    let too_long = exchange(
        server.tcp_addr().unwrap(),
        &[b"PUT / HTTP/1.1\r\nContent-Length: 17\r\n\r\n"],
    );
    assert_eq!(status(&too_long), "413", "{too_long}");
    let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(
        status(&exchange(server.tcp_addr().unwrap(), &[chunked])),
        "501"
    );
    assert_eq!(
        status(&exchange(
            server.tcp_addr().unwrap(),
            &[b"\x16\x03\x01\x02\x00\n\n"]
        )),
        "400"
    );
    // A client that gives up halfway is told so, not left waiting.
    let mut cut = connect(server.tcp_addr().unwrap());
    cut.write_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
        .unwrap();
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    cut.read_to_string(&mut answer).unwrap();
    assert_eq!(status(&answer), "400", "{answer}");
}

#[test]
fn a_head_request_gets_the_length_without_the_body() {
    let server = start(Limits::default());
    let answer = exchange(server.tcp_addr().unwrap(), &[b"HEAD /x HTTP/1.1\r\n\r\n"]);
    let length = "HEAD /x None None ".len();
    assert!(
        answer.contains(&format!("Content-Length: {length}\r\n")),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\n"), "{answer}");
}

#[test]
fn a_silent_client_is_told_408_at_its_deadline() {
    let limits = Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start(limits);
    let started = Instant::now();
    let answer = exchange(server.tcp_addr().unwrap(), &[b"GET / HTTP/1.1\r\n"]);
    assert_eq!(status(&answer), "408", "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn at_the_cap_a_silent_client_makes_room_and_one_that_spoke_keeps_its_place() {
    let limits = Limits {
        max_connections: 3,
        request_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let server = start(limits);
    let mut first = connect(server.tcp_addr().unwrap());
    // The first speaks (half a request), so it is no longer idle.
    first.write_all(b"GET /").unwrap();
    let silent = [
        connect(server.tcp_addr().unwrap()),
        connect(server.tcp_addr().unwrap()),
    ];
    let answer = exchange(server.tcp_addr().unwrap(), &[b"GET /a HTTP/1.1\r\n\r\n"]);
    assert_eq!(status(&answer), "200", "{answer}");
    // One silent client was closed to make room, with nothing said; the
    // other is told 408 at its request deadline. Which is which depends on
    // when the server accepted them, not on the rule.
    let ends: Vec<String> = silent
        .map(|mut client| {
            let mut got = String::new();
            let _ = client.read_to_string(&mut got);
            got
        })
        .into_iter()
        .collect();
    assert_eq!(
        ends.iter().filter(|got| got.is_empty()).count(),
        1,
        "one silent client closed to make room: {ends:?}"
    );
    assert!(
        ends.iter().any(|got| status(got) == "408"),
        "the other waits for its deadline: {ends:?}"
    );
    first.write_all(b" HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = String::new();
    first.read_to_string(&mut rest).unwrap();
    // It spoke before its deadline but finished after it: either way it
    // was answered, not dropped for a silent one.
    assert!(
        matches!(status(&rest), "200" | "408"),
        "the one that spoke kept its place: {rest}"
    );
}

#[test]
fn a_client_that_does_not_read_is_reset_at_its_write_deadline() {
    let limits = Limits {
        write_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    // Far more than the socket buffers hold; a HEAD is answered cheaply,
    // so the handler's own time does not count as being held up.
    let big = |request: &Request| match request.method() {
        "HEAD" => Response::text(200, String::new()),
        _ => Response::new(200, "application/octet-stream", vec![7u8; 32 << 20]),
    };
    let server = Server::start("test", "127.0.0.1:0".parse().unwrap(), limits, big).unwrap();
    let mut stalled = connect(server.tcp_addr().unwrap());
    stalled.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    // Meanwhile others are answered.
    let started = Instant::now();
    let answer = exchange(server.tcp_addr().unwrap(), &[b"HEAD / HTTP/1.1\r\n\r\n"]);
    assert_eq!(status(&answer), "200", "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The stalled client stays stalled past its deadline (the behaviour
    // under test, not a wait for a condition), then finds it was cut off:
    // fewer bytes than the answer, then a reset.
    thread::sleep(Duration::from_millis(400));
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let end = loop {
        match stalled.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => got += n,
            Err(e) => break Some(e.kind()),
        }
    };
    assert_eq!(end, Some(ErrorKind::ConnectionReset), "after {got} bytes");
    assert!(got < 64 << 20, "{got}");
}

#[test]
fn dropping_the_server_closes_its_port() {
    let server = start(Limits::default());
    let addr = server.tcp_addr().unwrap();
    let idle = connect(addr);
    drop(server);
    let started = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(started.elapsed() < DEADLINE, "still accepting");
        thread::sleep(Duration::from_millis(5));
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    let mut idle = idle;
    let mut byte = [0u8; 1];
    // Closed, or reset if the server stopped before accepting it.
    match idle.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("its clients are closed: {other:?}"),
    }
}

/// Answers `/later` with work that waits for the gate to open; anything
/// else at once.
fn gated(gate: Arc<(Mutex<bool>, Condvar)>) -> impl Fn(&Request) -> Answer + Send + 'static {
    move |request: &Request| {
        if request.path() != "/later" {
            return Answer::Now(Response::text(200, "now"));
        }
        let gate = Arc::clone(&gate);
        Answer::Later(Box::new(move || {
            let (open, opened) = &*gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            Response::text(200, "later")
        }))
    }
}

#[test]
fn a_later_answer_outlives_the_request_and_write_deadlines_and_holds_up_no_one() {
    let limits = Limits {
        request_timeout: Duration::from_millis(200),
        write_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let server = Server::start(
        "test",
        "127.0.0.1:0".parse().unwrap(),
        limits,
        gated(Arc::clone(&gate)),
    )
    .unwrap();
    let addr = server.tcp_addr().unwrap();
    let waiter = thread::spawn(move || exchange(addr, &[b"GET /later HTTP/1.1\r\n\r\n"]));
    // Past both deadlines (the behaviour under test), others are served.
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let other = exchange(addr, &[b"GET /now HTTP/1.1\r\n\r\n"]);
    assert!(other.ends_with("\r\n\r\nnow"), "{other}");
    assert!(started.elapsed() < Duration::from_millis(200));
    assert!(!waiter.is_finished(), "the waiting client was dropped");
    let (open, opened) = &*gate;
    *open.lock().unwrap() = true;
    opened.notify_all();
    let answer = waiter.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nlater"), "{answer}");
}

#[test]
fn work_that_takes_longer_than_max_wait_is_answered_504_in_json_if_asked() {
    let limits = Limits {
        max_wait: Duration::from_millis(200),
        json_errors: true,
        ..Limits::default()
    };
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let server = Server::start(
        "test",
        "127.0.0.1:0".parse().unwrap(),
        limits,
        gated(Arc::clone(&gate)),
    )
    .unwrap();
    let started = Instant::now();
    let answer = exchange(
        server.tcp_addr().unwrap(),
        &[b"GET /later HTTP/1.1\r\n\r\n"],
    );
    assert_eq!(status(&answer), "504", "{answer}");
    assert!(
        answer.contains("Content-Type: application/json\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("{\"error\":\"no answer in time\"}\n"),
        "{answer}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    let (open, opened) = &*gate;
    *open.lock().unwrap() = true;
    opened.notify_all();
}
