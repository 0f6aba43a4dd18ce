//! A TLS ClientHello read from the first bytes of a stream: the server
//! name (RFC 6066), the ALPN protocols (RFC 7301) and whether it carries
//! Encrypted Client Hello, for routing without terminating TLS.
//!
//! [`parse`] is given everything the client has sent so far, a prefix of
//! the stream that may end anywhere, and re-reads it from the start each
//! time. The hello is a handshake message that may span any number of TLS
//! records (RFC 8446 §5.1), its own 4-byte header included, so a prefix of
//! a valid hello, however it is split into records and segments, is always
//! [`Inspected::NeedMore`]; the answer comes only once the whole message
//! is in, never from a prefix of it (HAProxy's post-quantum aborts, #3148).
//!
//! Nothing is consumed: the caller peeks, and the target later gets the
//! same bytes. Only the first `max_bytes` of the stream, record headers
//! included, are ever looked at; a hello that does not fit is
//! [`Malformed::TooLarge`] as soon as that is certain.

use std::fmt;

use super::cursor::Cursor;

/// The default bound on the bytes a hello may take, record headers
/// included: a 16 KiB handshake message with room for its records'
/// headers to spare (a hello of 16 KiB needs at least two records). Real
/// hellos are 0.2 to 2 KiB, post-quantum ones (X25519MLKEM768) about 1.8.
pub(crate) const DEFAULT_MAX_BYTES: usize = 17 * 1024;
/// The smallest bound [`parse`] applies; below it a plain hello with a
/// server name would not fit. A config should refuse less.
pub(crate) const MIN_MAX_BYTES: usize = 512;

/// A record's header: content type, legacy version, length.
const RECORD_HEADER: usize = 5;
/// The largest plaintext fragment a record may carry (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 1 << 14;
/// A handshake message's header: type and a 3-byte length.
const HANDSHAKE_HEADER: usize = 4;
const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// `encrypted_client_hello`, the code point of draft-ietf-tls-esni that
/// browsers send.
const EXT_ECH: u16 = 0xfe0d;
const NAME_TYPE_HOST_NAME: u8 = 0;
/// A DNS name's longest text form, without a trailing dot.
const MAX_HOST_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// What the bytes received so far amount to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Inspected {
    /// A valid hello may still follow.
    NeedMore,
    /// The stream does not start with a TLS handshake record: an SSLv2
    /// style hello, another record type, or another protocol entirely.
    NotTls,
    /// A complete ClientHello.
    Hello(ClientHello),
    /// TLS, but not a hello tcpipe can route on.
    Malformed(Malformed),
}

/// What a ClientHello says that a route can match on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientHello {
    /// The `host_name` of the `server_name` extension, in lowercase; `None`
    /// without one (a client dialing an IP address sends none). With ECH
    /// this is the outer, public name: the real one is encrypted.
    pub(crate) server_name: Option<String>,
    /// The ALPN protocol names in the client's order of preference. They
    /// are opaque bytes to RFC 7301; the registered ones are ASCII.
    pub(crate) alpn: Vec<Vec<u8>>,
    /// An `encrypted_client_hello` extension is present.
    pub(crate) ech: bool,
    /// The stream bytes up to the end of the record that completed the
    /// hello: what was inspected, record headers included.
    pub(crate) len: usize,
}

/// Why a TLS stream's hello cannot be routed on: few kinds, so that each
/// can be a metric label ([`Malformed::label`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Malformed {
    /// A record after the first is not a handshake record or not TLS, or
    /// a record's length is 0 or over 2^14.
    Record,
    /// The first handshake message is not a ClientHello, or its fixed
    /// fields (version, session id, cipher suites, compression methods)
    /// are wrong, or bytes follow its extensions.
    Handshake,
    /// The extension block or an extension tcpipe reads is malformed, or
    /// an extension appears twice.
    Extension,
    /// The `host_name` is not a DNS host name as RFC 6066 §3 requires:
    /// letters, digits and hyphens in labels of 1 to 63 bytes, at most 253
    /// bytes, no trailing dot, no IP address.
    ServerName,
    /// The hello does not fit in the bound given to [`parse`].
    TooLarge,
    /// The client closed before its hello was complete. [`parse`] never
    /// says so (it cannot tell); the caller does, on end of stream after
    /// [`Inspected::NeedMore`].
    Truncated,
}

impl Malformed {
    /// Every kind, for a metric family that shows zeros too.
    pub(crate) const ALL: [Malformed; 6] = [
        Malformed::Record,
        Malformed::Handshake,
        Malformed::Extension,
        Malformed::ServerName,
        Malformed::TooLarge,
        Malformed::Truncated,
    ];

    /// A short snake_case name for metrics and logs.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Malformed::Record => "bad_record",
            Malformed::Handshake => "bad_handshake",
            Malformed::Extension => "bad_extension",
            Malformed::ServerName => "bad_server_name",
            Malformed::TooLarge => "too_large",
            Malformed::Truncated => "truncated",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::Record => "a malformed TLS record",
            Malformed::Handshake => "a malformed ClientHello",
            Malformed::Extension => "a malformed or repeated ClientHello extension",
            Malformed::ServerName => "a server name that is not a DNS host name",
            Malformed::TooLarge => "a ClientHello larger than the inspection bound",
            Malformed::Truncated => "the client closed before its ClientHello was complete",
        })
    }
}

/// Whether `received` starts like a TLS handshake record (content type 22,
/// version 3.0 to 3.4); `None` while fewer than 3 bytes say.
pub(crate) fn is_tls_record_start(received: &[u8]) -> Option<bool> {
    match *received {
        [] => None,
        [CONTENT_HANDSHAKE] | [CONTENT_HANDSHAKE, 3] => None,
        [CONTENT_HANDSHAKE, 3, minor, ..] => Some(minor <= 4),
        _ => Some(false),
    }
}

/// Reads the ClientHello at the start of `received`, looking at no more
/// than its first `max_bytes` (at least [`MIN_MAX_BYTES`]).
pub(crate) fn parse(received: &[u8], max_bytes: usize) -> Inspected {
    let max_bytes = max_bytes.max(MIN_MAX_BYTES);
    let window = received.get(..max_bytes).unwrap_or(received);
    // What to answer when the hello goes on past what has been received:
    // once the bound is reached, more bytes cannot help.
    let need_more = if received.len() >= max_bytes {
        Inspected::Malformed(Malformed::TooLarge)
    } else {
        Inspected::NeedMore
    };
    match is_tls_record_start(window) {
        None => return need_more,
        Some(false) => return Inspected::NotTls,
        Some(true) => {}
    }
    let mut at = 0; // where the next record starts
    let mut header = [0u8; HANDSHAKE_HEADER];
    let mut before = 0; // handshake bytes in the records before `at`
    let mut total = None; // the hello's length, header included, once known
    loop {
        let Some(mut record) = window.get(at..at + RECORD_HEADER).map(Cursor::new) else {
            return need_more;
        };
        let (content, major) = (record.u8(), record.u8());
        let _minor = record.u8();
        let len = usize::from(record.u16().unwrap_or(0));
        // The first record's type and version were checked above; the
        // minor version "MUST be ignored" (RFC 8446 §5.1).
        if content != Some(CONTENT_HANDSHAKE) || major != Some(3) {
            return Inspected::Malformed(Malformed::Record);
        }
        if len == 0 || len > MAX_FRAGMENT {
            return Inspected::Malformed(Malformed::Record);
        }
        let start = at + RECORD_HEADER;
        let end = start + len;
        let fragment = window.get(start..end.min(window.len())).unwrap_or(&[]);
        if before < HANDSHAKE_HEADER {
            // The header itself may be split over records, even byte by byte.
            let mut have = before;
            for (slot, &byte) in header.iter_mut().skip(before).zip(fragment) {
                *slot = byte;
                have += 1;
            }
            if have >= 1 && header[0] != HANDSHAKE_CLIENT_HELLO {
                return Inspected::Malformed(Malformed::Handshake);
            }
            if have == HANDSHAKE_HEADER {
                let [_, a, b, c] = header;
                let body = (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c);
                let length = HANDSHAKE_HEADER + body;
                // The least the stream can take: the rest of the hello all
                // in this record.
                if start + (length - before) > max_bytes {
                    return Inspected::Malformed(Malformed::TooLarge);
                }
                total = Some(length);
            }
        }
        if end > window.len() {
            return need_more;
        }
        before += len;
        match total {
            Some(total) if before >= total => return finish(window, end, total),
            _ => at = end,
        }
    }
}

/// Reads the hello of `total` bytes carried by the records in
/// `window[..end]`, which are known to be well framed.
fn finish(window: &[u8], end: usize, total: usize) -> Inspected {
    let mut records = Cursor::new(window);
    let first = records.take(3).and(records.vec16());
    let gathered;
    let message = match first.and_then(|fragment| fragment.get(..total)) {
        // The common case: the whole hello in the first record.
        Some(message) => message,
        None => {
            gathered = gather(window.get(..end).unwrap_or(&[]), total);
            &gathered[..]
        }
    };
    match read_hello(message) {
        Ok(mut hello) => {
            hello.len = end;
            Inspected::Hello(hello)
        }
        Err(kind) => Inspected::Malformed(kind),
    }
}

/// The fragments of `records`, joined and cut to `total` bytes.
fn gather(records: &[u8], total: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(total);
    let mut c = Cursor::new(records);
    while let (Some(_), Some(fragment)) = (c.take(3), c.vec16()) {
        message.extend_from_slice(fragment);
    }
    message.truncate(total);
    message
}

/// Reads a whole ClientHello message, its header included (RFC 8446
/// §4.1.2; the TLS 1.2 form, RFC 5246 §7.4.1.2, is the same bytes).
fn read_hello(message: &[u8]) -> Result<ClientHello, Malformed> {
    use Malformed::Handshake;
    let mut c = Cursor::new(message);
    c.take(HANDSHAKE_HEADER).ok_or(Handshake)?;
    let version = c.u16().ok_or(Handshake)?;
    if version >> 8 != 3 {
        return Err(Handshake);
    }
    c.take(32).ok_or(Handshake)?; // random
    let session_id = c.vec8().ok_or(Handshake)?;
    let cipher_suites = c.vec16().ok_or(Handshake)?;
    let compression_methods = c.vec8().ok_or(Handshake)?;
    if session_id.len() > 32
        || cipher_suites.is_empty()
        || cipher_suites.len() % 2 != 0
        || compression_methods.is_empty()
    {
        return Err(Handshake);
    }
    let mut hello = ClientHello::default();
    if c.is_empty() {
        // A hello without extensions, as TLS 1.2 and older allow.
        return Ok(hello);
    }
    let extensions = c.vec16().ok_or(Malformed::Extension)?;
    if !c.is_empty() {
        return Err(Handshake);
    }
    read_extensions(extensions, &mut hello)?;
    Ok(hello)
}

fn read_extensions(block: &[u8], hello: &mut ClientHello) -> Result<(), Malformed> {
    use Malformed::Extension;
    // One bit per extension type: "There MUST NOT be more than one
    // extension of the same type" (RFC 8446 §4.2), and a second
    // server_name would make the route ambiguous.
    let mut seen = [0u64; 1 << 10];
    let mut c = Cursor::new(block);
    while !c.is_empty() {
        let kind = c.u16().ok_or(Extension)?;
        let data = c.vec16().ok_or(Extension)?;
        let bit = 1u64 << (kind & 63);
        let word = seen.get_mut(usize::from(kind >> 6)).ok_or(Extension)?;
        if *word & bit != 0 {
            return Err(Extension);
        }
        *word |= bit;
        match kind {
            EXT_SERVER_NAME => hello.server_name = read_server_name(data)?,
            EXT_ALPN => hello.alpn = read_alpn(data)?,
            EXT_ECH => hello.ech = true,
            _ => {}
        }
    }
    Ok(())
}

/// `ServerNameList server_name_list<1..2^16-1>` of `name_type` and
/// `HostName<1..2^16-1>` (RFC 6066 §3). Name types other than `host_name`
/// are skipped; at most one `host_name` is allowed.
fn read_server_name(data: &[u8]) -> Result<Option<String>, Malformed> {
    use Malformed::Extension;
    let mut c = Cursor::new(data);
    let list = c.vec16().ok_or(Extension)?;
    if list.is_empty() || !c.is_empty() {
        return Err(Extension);
    }
    let mut c = Cursor::new(list);
    let mut host = None;
    while !c.is_empty() {
        let name_type = c.u8().ok_or(Extension)?;
        let name = c.vec16().ok_or(Extension)?;
        if name.is_empty() {
            return Err(Extension);
        }
        if name_type == NAME_TYPE_HOST_NAME {
            if host.is_some() {
                return Err(Extension);
            }
            host = Some(host_name(name)?);
        }
    }
    Ok(host)
}

/// A `HostName` checked and lowercased: "the fully qualified DNS hostname
/// ... without a trailing dot", A-labels for IDNs, no IPv4 or IPv6
/// literal (RFC 6066 §3): LDH labels (RFC 1123 §2.1), and a last label
/// that is not all digits, which every IPv4 literal's is (RFC 3696 §2).
fn host_name(raw: &[u8]) -> Result<String, Malformed> {
    if raw.len() > MAX_HOST_NAME {
        return Err(Malformed::ServerName);
    }
    let label_ok = |label: &[u8]| {
        (1..=MAX_LABEL).contains(&label.len())
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
    };
    let mut labels = raw.split(|&b| b == b'.');
    let all_ok = labels.clone().all(label_ok);
    let numeric_last = labels
        .next_back()
        .unwrap_or_default()
        .iter()
        .all(u8::is_ascii_digit);
    if !all_ok || numeric_last {
        return Err(Malformed::ServerName);
    }
    String::from_utf8(raw.to_ascii_lowercase()).map_err(|_| Malformed::ServerName)
}

/// `ProtocolNameList protocol_name_list<2..2^16-1>` of
/// `ProtocolName<1..2^8-1>` (RFC 7301 §3.1).
fn read_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, Malformed> {
    use Malformed::Extension;
    let mut c = Cursor::new(data);
    let list = c.vec16().ok_or(Extension)?;
    if list.is_empty() || !c.is_empty() {
        return Err(Extension);
    }
    let mut c = Cursor::new(list);
    let mut names = Vec::new();
    while !c.is_empty() {
        let name = c.vec8().ok_or(Extension)?;
        if name.is_empty() {
            return Err(Extension);
        }
        names.push(name.to_vec());
    }
    Ok(names)
}
