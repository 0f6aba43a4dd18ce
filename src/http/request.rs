//! Reading one HTTP/1.x request: the head up to its blank line, then a
//! body of exactly `Content-Length` bytes. Bytes arrive in any segments;
//! [`head_end`] is asked again as they come, and [`parse_head`] once the
//! blank line is in. Anything a client can send gives an answer or a
//! [`Rejection`], never a panic.

/// A complete request, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: Option<String>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Request {
    /// `GET`, `POST`, ... as sent (methods are case-sensitive).
    pub(crate) fn method(&self) -> &str {
        &self.method
    }

    /// The target up to its `?`, as sent (not percent-decoded).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// What follows the `?`, if there is one.
    #[allow(dead_code)] // for the admin API
    pub(crate) fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The first header named `name` (case-insensitive), its value trimmed.
    #[allow(dead_code)] // for the admin API
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header in the order sent, names as sent.
    #[allow(dead_code)] // for the admin API
    pub(crate) fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Exactly `Content-Length` bytes (empty without one).
    #[allow(dead_code)] // for the admin API
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
impl Request {
    /// A request from its text, for handlers' unit tests (panics on bad text).
    pub(crate) fn parse_for_test(text: &str) -> Request {
        let bytes = text.as_bytes();
        let len = head_end(bytes, 0).expect("a complete head");
        let head = parse_head(bytes, len, usize::MAX).expect("a valid head");
        let mut request = head.request;
        request.body = bytes[len..].to_vec();
        request
    }
}

/// A head that parsed: the request without its body yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub(super) request: Request,
    /// Bytes of the head, blank line included: the body starts here.
    pub(super) len: usize,
    pub(super) content_length: usize,
}

/// Why a request gets an error answer instead of the handler's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rejection {
    /// 400, with what was wrong.
    Malformed(&'static str),
    /// 431: the head exceeds the server's cap.
    HeadTooLarge,
    /// 413: `Content-Length` exceeds the server's cap.
    BodyTooLarge,
    /// 501: a `Transfer-Encoding` (chunked bodies are not read; a length is).
    TransferEncoding,
    /// 408: the request did not arrive within the deadline.
    Timeout,
}

impl Rejection {
    pub(super) fn status(self) -> u16 {
        match self {
            Rejection::Malformed(_) => 400,
            Rejection::HeadTooLarge => 431,
            Rejection::BodyTooLarge => 413,
            Rejection::TransferEncoding => 501,
            Rejection::Timeout => 408,
        }
    }

    /// The answer's body: one line a person reading curl's output follows.
    pub(super) fn message(self) -> String {
        match self {
            Rejection::Malformed(why) => format!("bad request: {why}\n"),
            Rejection::HeadTooLarge => "request head too large\n".into(),
            Rejection::BodyTooLarge => "request body too large\n".into(),
            Rejection::TransferEncoding => {
                "Transfer-Encoding is not supported; send Content-Length\n".into()
            }
            Rejection::Timeout => "request not received in time\n".into(),
        }
    }
}

/// Where the head in `buf` ends (the byte after its blank line), looking
/// at line ends from `from` on. A caller that got `None` for `n` bytes
/// asks again from `n - 2`: only the last two line ends were undecided.
/// Lines end in LF with an optional CR before it (RFC 9112 §2.2).
pub(super) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(offset) = buf.get(at..)?.iter().position(|&b| b == b'\n') {
        let lf = at + offset;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            _ => at = lf + 1,
        }
    }
    None
}

/// Parses the head `buf[..len]` (`len` from [`head_end`]); a body longer
/// than `max_body` is refused here, before any of it is read.
pub(super) fn parse_head(buf: &[u8], len: usize, max_body: usize) -> Result<Head, Rejection> {
    let text = buf
        .get(..len)
        .and_then(|head| std::str::from_utf8(head).ok())
        .ok_or(Rejection::Malformed("the head is not UTF-8"))?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    let (method, target) = request_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines.take_while(|line| !line.is_empty()) {
        headers.push(header(line)?);
    }
    let content_length = content_length(&headers)?;
    if content_length > max_body {
        return Err(Rejection::BodyTooLarge);
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (target, None),
    };
    Ok(Head {
        request: Request {
            method: method.to_string(),
            path: path.to_string(),
            query,
            headers,
            body: Vec::new(),
        },
        len,
        content_length,
    })
}

/// `METHOD SP TARGET SP HTTP/1.x`, single spaces (RFC 9112 §3).
fn request_line(line: &str) -> Result<(&str, &str), Rejection> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(Rejection::Malformed("the method is not a token"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Rejection::Malformed(
            "the target has spaces or control bytes",
        ));
    }
    let minor = version.strip_prefix("HTTP/1.").unwrap_or_default();
    if minor.len() != 1 || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::Malformed("not HTTP/1.x"));
    }
    Ok((method, target))
}

/// `Name: value`; no space before the colon and no folded lines, which
/// RFC 9112 §5 says to refuse (they are how requests get smuggled).
fn header(line: &str) -> Result<(String, String), Rejection> {
    let (name, value) = line
        .split_once(':')
        .ok_or(Rejection::Malformed("a header line without a colon"))?;
    if name.is_empty() || !name.bytes().all(is_token) {
        return Err(Rejection::Malformed("a header name is not a token"));
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(Rejection::Malformed("a header value has control bytes"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// The body's length: 0 without `Content-Length`; every one present must
/// be the same number. A `Transfer-Encoding` is refused, so a body is never
/// framed two ways.
fn content_length(headers: &[(String, String)]) -> Result<usize, Rejection> {
    let mut length = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Rejection::TransferEncoding);
        }
        if !name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let parsed = if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            // Too many digits for a usize is too large for any cap.
            Some(value.parse::<usize>().unwrap_or(usize::MAX))
        };
        match (parsed, length) {
            (None, _) => return Err(Rejection::Malformed("Content-Length is not a number")),
            (Some(n), Some(before)) if n != before => {
                return Err(Rejection::Malformed("two different Content-Lengths"))
            }
            (Some(n), _) => length = Some(n),
        }
    }
    Ok(length.unwrap_or(0))
}

/// A `tchar` of RFC 9110 §5.6.2.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &[u8]) -> Result<Head, Rejection> {
        let len = head_end(text, 0).expect("a complete head");
        parse_head(text, len, 1024)
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line_with_or_without_cr() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r", 0), None);
        assert_eq!(head_end(b"", 0), None);
        assert_eq!(head_end(b"abc", 10), None);
    }

    #[test]
    fn asking_again_from_two_before_the_end_finds_what_one_pass_finds() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut from = 0;
        for n in 1..=text.len() {
            match head_end(&text[..n], from) {
                Some(end) => {
                    assert_eq!((n, end), (text.len(), text.len()));
                    return;
                }
                None => from = n.saturating_sub(2),
            }
        }
        panic!("never found");
    }

    #[test]
    fn method_path_query_and_headers_come_out_as_sent() {
        let head =
            parse(b"GET /metrics?x=1&y HTTP/1.1\r\nHost: a\r\nX-Thing:  two words \t\r\n\r\n")
                .unwrap();
        let request = &head.request;
        assert_eq!(request.method(), "GET");
        assert_eq!(request.path(), "/metrics");
        assert_eq!(request.query(), Some("x=1&y"));
        assert_eq!(request.header("host"), Some("a"));
        assert_eq!(request.header("X-THING"), Some("two words"));
        assert_eq!(request.header("missing"), None);
        assert_eq!(request.headers().len(), 2);
        assert_eq!(head.content_length, 0);
        assert_eq!(
            parse(b"POST / HTTP/1.0\r\n\r\n").unwrap().request.method(),
            "POST"
        );
    }

    #[test]
    fn content_length_is_read_and_capped() {
        let head = parse(b"POST /x HTTP/1.1\r\nContent-Length: 12\r\ncontent-length: 12\r\n\r\n");
        assert_eq!(head.unwrap().content_length, 12);
        let too_large = b"POST /x HTTP/1.1\r\nContent-Length: 1025\r\n\r\n";
        assert_eq!(parse(too_large), Err(Rejection::BodyTooLarge));
        let huge = b"POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
        assert_eq!(parse(huge), Err(Rejection::BodyTooLarge));
        for bad in [
            &b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length:\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(Rejection::Malformed(_))),
                "{bad:?}"
            );
        }
        let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse(chunked), Err(Rejection::TransferEncoding));
    }

    #[test]
    fn what_is_not_http_1_is_malformed() {
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"\xff\xfe /x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/2.0\r\n\r\n",
            b"GET /x HTTP/1.11\r\n\r\n",
            b"GET  /x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1 extra\r\n\r\n",
            b"G(T /x HTTP/1.1\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(Rejection::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    /// 4096 cases per property in every `cargo test`; a long run sets
    /// `TCPIPE_PROPTEST_CASES`.
    fn cases() -> u32 {
        std::env::var("TCPIPE_PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(4096)
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        /// Whatever arrives, finding and parsing the head answers without
        /// panicking, and a head found lies within what arrived.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            from in 0usize..500,
        ) {
            if let Some(end) = head_end(&bytes, from) {
                prop_assert!(end <= bytes.len());
                if let Ok(head) = parse_head(&bytes, end, 1024) {
                    prop_assert_eq!(head.len, end);
                    prop_assert!(head.content_length <= 1024);
                }
            }
            let _ = parse_head(&bytes, bytes.len(), 1024);
            let _ = parse_head(&bytes, bytes.len() + 1, 1024);
        }

        /// The same after a valid request line, where most paths are.
        #[test]
        fn a_valid_start_then_garbage_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut bytes = b"POST /x HTTP/1.1\r\n".to_vec();
            bytes.extend_from_slice(&tail);
            bytes.extend_from_slice(b"\r\n\r\n");
            let end = head_end(&bytes, 0);
            prop_assert!(end.is_some());
            let _ = parse_head(&bytes, end.unwrap_or_default(), 1024);
        }

        /// A valid request, read at every split: no prefix holds a head,
        /// and the whole gives back what was sent.
        #[test]
        fn a_valid_request_is_found_at_any_split_and_parses_back(
            method in token(),
            path in "/[A-Za-z0-9/._~-]{0,20}",
            query in proptest::option::of("[A-Za-z0-9=&]{0,10}"),
            headers in proptest::collection::vec((token(), "[ -~]{0,20}"), 0..6),
            length in 0usize..2000,
        ) {
            let headers: Vec<(String, String)> = headers
                .into_iter()
                .filter(|(name, _)| {
                    !name.eq_ignore_ascii_case("content-length")
                        && !name.eq_ignore_ascii_case("transfer-encoding")
                })
                .map(|(name, value)| (name, value.trim().to_string()))
                .collect();
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let mut text = format!("{method} {target} HTTP/1.1\r\n");
            for (name, value) in &headers {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
            text.push_str(&format!("Content-Length: {length}\r\n\r\n"));
            let bytes = text.as_bytes();
            let mut from = 0;
            for n in 0..bytes.len() {
                prop_assert_eq!(head_end(&bytes[..n], from), None);
                from = n.saturating_sub(2);
            }
            prop_assert_eq!(head_end(bytes, from), Some(bytes.len()));
            match parse_head(bytes, bytes.len(), 1024) {
                Ok(head) => {
                    prop_assert!(length <= 1024);
                    prop_assert_eq!(head.content_length, length);
                    prop_assert_eq!(head.request.method(), method.as_str());
                    prop_assert_eq!(head.request.path(), path.as_str());
                    prop_assert_eq!(head.request.query(), query.as_deref());
                    prop_assert_eq!(&head.request.headers()[..headers.len()], &headers[..]);
                }
                Err(rejection) => {
                    prop_assert!(length > 1024);
                    prop_assert_eq!(rejection, Rejection::BodyTooLarge);
                }
            }
        }
    }
}
