//! What a handler answers, and its bytes on the wire.

/// A status, a content type, a body, and any headers the handler adds.
/// The server writes `Content-Type`, `Content-Length` and
/// `Connection: close` itself; a handler adds only others (`Allow`,
/// `WWW-Authenticate`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `text/plain` answer, for errors and pointers.
    pub(crate) fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status, "text/plain", body.into())
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    #[cfg(test)]
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    #[cfg(test)]
    pub(crate) fn content_type(&self) -> &str {
        self.content_type
    }

    #[cfg(test)]
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let mut found = self.headers.iter().filter(|(n, _)| *n == name);
        found.next().map(|(_, value)| value.as_str())
    }

    /// Head and body as sent; the head alone for a `HEAD` request, with the
    /// length the body would have had (RFC 9110 §9.3.2).
    pub(super) fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        // No length and no body with 204 (RFC 9110 §8.6, §15.3.5).
        let has_body = self.status != 204;
        if has_body {
            head.push_str(&format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n",
                self.content_type,
                self.body.len()
            ));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        if has_body && !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The reason phrase; clients ignore it, so unknown codes get none.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::Response;

    #[test]
    fn the_head_has_length_type_close_and_extra_headers() {
        let response = Response::text(405, "GET only\n").with_header("Allow", "GET, HEAD");
        let expected = "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\n\
                        Content-Length: 9\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n";
        assert_eq!(
            String::from_utf8(response.encode(false)).unwrap(),
            format!("{expected}GET only\n")
        );
        assert_eq!(String::from_utf8(response.encode(true)).unwrap(), expected);
    }

    #[test]
    fn no_content_has_neither_length_nor_body() {
        let encoded = Response::text(204, "ignored").encode(false);
        assert_eq!(
            String::from_utf8(encoded).unwrap(),
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        );
        let unknown = Response::text(299, "").encode(false);
        assert!(unknown.starts_with(b"HTTP/1.1 299 \r\n"));
    }
}
