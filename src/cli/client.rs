//! The admin endpoint's client for `tcpipe ctl`: one blocking HTTP/1.1
//! request over a Unix or TCP socket, read to the server's close. Small
//! on purpose: the server answers every request with `Content-Length`
//! and `Connection: close`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::AdminAddress;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read (a list of every pipe of a busy forwarder).
const MAX_ANSWER: u64 = 256 << 20;

/// Where and how to ask.
pub(super) struct Client {
    pub(super) address: AdminAddress,
    pub(super) token: Option<String>,
}

/// The status and body of an answer.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

/// What can go wrong before there is an answer.
#[derive(Debug)]
pub(super) enum Failure {
    Connect(String, io::Error),
    Exchange(io::Error),
    NotHttp(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(address, e) => write!(f, "cannot connect to {address}: {e}"),
            Failure::Exchange(e) => write!(f, "the admin endpoint did not answer: {e}"),
            Failure::NotHttp(why) => write!(f, "the admin endpoint's answer is not HTTP: {why}"),
        }
    }
}

trait Socket: Read + Write {}
impl Socket for TcpStream {}
impl Socket for UnixStream {}

impl Client {
    /// Sends `method path` with `body` (JSON, if any) and waits up to
    /// `patience` for the whole answer.
    pub(super) fn ask(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        patience: Duration,
    ) -> Result<Answer, Failure> {
        let mut socket = self.connect(patience)?;
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: tcpipe\r\n");
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or_default();
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        socket
            .write_all(request.as_bytes())
            .map_err(Failure::Exchange)?;
        let mut answer = Vec::new();
        socket
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .map_err(Failure::Exchange)?;
        parse_answer(&answer)
    }

    fn connect(&self, patience: Duration) -> Result<Box<dyn Socket>, Failure> {
        let failed = |e| Failure::Connect(self.address.to_string(), e);
        let socket: Box<dyn Socket> = match &self.address {
            AdminAddress::Unix(path) => {
                let socket = UnixStream::connect(path).map_err(failed)?;
                socket.set_read_timeout(Some(patience)).map_err(failed)?;
                socket.set_write_timeout(Some(patience)).map_err(failed)?;
                Box::new(socket)
            }
            AdminAddress::Tcp(addr) => {
                let socket = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).map_err(failed)?;
                socket.set_read_timeout(Some(patience)).map_err(failed)?;
                socket.set_write_timeout(Some(patience)).map_err(failed)?;
                Box::new(socket)
            }
        };
        Ok(socket)
    }
}

/// `HTTP/1.x STATUS ...`, headers, blank line, body (to `Content-Length`
/// if given, else to the end).
fn parse_answer(bytes: &[u8]) -> Result<Answer, Failure> {
    let not_http = |why: &str| Failure::NotHttp(why.to_string());
    let head_len = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| not_http("no end of head"))?;
    let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| not_http("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| not_http(status_line))?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok());
    let body = &bytes[head_len + 4..];
    let body = match length {
        Some(n) if n <= body.len() => &body[..n],
        Some(_) => return Err(not_http("the body is cut short")),
        None => body,
    };
    Ok(Answer {
        status,
        body: body.to_vec(),
    })
}

/// The default admin address and token file: `TCPIPE_ADMIN` and
/// `TCPIPE_ADMIN_TOKEN_FILE` in the environment.
pub(super) fn from_env() -> (Option<String>, Option<PathBuf>) {
    let admin = std::env::var("TCPIPE_ADMIN").ok().filter(|a| !a.is_empty());
    let token = std::env::var_os("TCPIPE_ADMIN_TOKEN_FILE")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from);
    (admin, token)
}

#[cfg(test)]
mod tests {
    use super::parse_answer;

    #[test]
    fn an_answer_is_its_status_and_its_body() {
        let answer =
            parse_answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n{}\nextra").unwrap();
        assert_eq!((answer.status, &answer.body[..]), (404, &b"{}\n"[..]));
        let to_end = parse_answer(b"HTTP/1.1 200 OK\r\n\r\nall").unwrap();
        assert_eq!(to_end.body, b"all");
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
