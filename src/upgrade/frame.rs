//! The handover socket's framing. The socket is `SOCK_SEQPACKET`, so the
//! kernel keeps message boundaries; a frame is one message, or several
//! when its payload is longer than [`CHUNK`] (a message must fit in the
//! socket's send buffer). Each message starts with a header:
//!
//! ```text
//! kind u8 | more u8 (1: the frame goes on in the next message) | fds u16 LE | len u32 LE | len bytes
//! ```
//!
//! `fds` counts the descriptors that came with that message (`SCM_RIGHTS`);
//! only a frame's first message carries any, and the frame's payload names
//! them by position. A message whose `len` is not what arrived (cut), whose
//! descriptor count is not what arrived, or a frame that changes kind or
//! grows past [`MAX_FRAME`], is an error: the handover fails whole.

use std::fmt;

/// Header bytes of every message.
pub(crate) const HEADER: usize = 8;
/// Payload bytes per message: well inside a Unix socket's default send
/// buffer (208 KiB), so a message never fails for its size.
pub(crate) const CHUNK: usize = 60 * 1024;
/// The longest frame a receiver assembles.
pub(crate) const MAX_FRAME: usize = 1 << 30;

/// What a frame is. Old: the process handing over; new: the one taking over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Old → new: the versions it speaks, its pid and worker count.
    Hello = 1,
    /// New → old: versions known, config loaded; send everything.
    Accept = 2,
    /// New → old: it will not take over, and why.
    Refuse = 3,
    /// Old → new: listening sockets (name, addresses; one descriptor each).
    Listeners = 4,
    /// Old → new: one worker's connections (records and descriptors).
    Parcels = 5,
    /// Old → new: one worker's upstream state (no descriptor).
    Upstream = 6,
    /// Old → new: everything is sent, with counts to check.
    End = 7,
    /// New → old: everything is registered and runs once let go.
    Confirm = 8,
    /// Old → new: the old process lets go; the new one runs.
    Committed = 9,
    /// New → old: systemd has been told the new main pid.
    Notified = 10,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        use Kind::*;
        [
            Hello, Accept, Refuse, Listeners, Parcels, Upstream, End, Confirm, Committed, Notified,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte)
    }
}

/// One whole frame, with the descriptors of its first message.
#[derive(Debug)]
pub(crate) struct Frame<Fd> {
    pub(crate) kind: Kind,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<Fd>,
}

/// Why messages do not make a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Shorter than a header.
    NoHeader,
    /// The header's length is not what arrived.
    Cut {
        said: usize,
        came: usize,
    },
    UnknownKind(u8),
    /// The header's descriptor count is not what arrived.
    Descriptors {
        said: usize,
        came: usize,
    },
    /// A continuation of another kind, or carrying descriptors.
    Mixed,
    TooLong,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NoHeader => f.write_str("a message shorter than a frame header"),
            FrameError::Cut { said, came } => {
                write!(f, "a message cut short ({came} bytes of {said})")
            }
            FrameError::UnknownKind(kind) => write!(f, "an unknown frame kind {kind}"),
            FrameError::Descriptors { said, came } => {
                write!(f, "{came} descriptors came where {said} were sent")
            }
            FrameError::Mixed => f.write_str("a frame continued by another"),
            FrameError::TooLong => f.write_str("a frame longer than 1 GiB"),
        }
    }
}

/// The messages that carry a frame of `kind` with `payload` and `fds`
/// descriptors (which go with the first message).
pub(crate) fn messages(kind: Kind, payload: &[u8], fds: usize) -> Vec<Vec<u8>> {
    messages_of(kind, payload, fds, CHUNK)
}

fn messages_of(kind: Kind, payload: &[u8], fds: usize, chunk: usize) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = if payload.is_empty() {
        vec![&[]]
    } else {
        payload.chunks(chunk).collect()
    };
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut message = Vec::with_capacity(HEADER + chunk.len());
            message.push(kind as u8);
            message.push(u8::from(i < last));
            let fds = if i == 0 { fds as u16 } else { 0 };
            message.extend_from_slice(&fds.to_le_bytes());
            message.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            message.extend_from_slice(chunk);
            message
        })
        .collect()
}

/// Puts frames back together from the messages that arrive.
pub(crate) struct Assembler<Fd> {
    partial: Option<Frame<Fd>>,
}

impl<Fd> Default for Assembler<Fd> {
    fn default() -> Assembler<Fd> {
        Assembler { partial: None }
    }
}

impl<Fd> Assembler<Fd> {
    /// Takes the next message and the descriptors that came with it; a
    /// frame once its last message is in.
    pub(crate) fn push(
        &mut self,
        message: &[u8],
        fds: Vec<Fd>,
    ) -> Result<Option<Frame<Fd>>, FrameError> {
        let header = message.get(..HEADER).ok_or(FrameError::NoHeader)?;
        let kind = Kind::from_u8(header[0]).ok_or(FrameError::UnknownKind(header[0]))?;
        let more = header[1] != 0;
        let said_fds = u16::from_le_bytes([header[2], header[3]]) as usize;
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body = &message[HEADER..];
        if body.len() != len {
            return Err(FrameError::Cut {
                said: len,
                came: body.len(),
            });
        }
        if said_fds != fds.len() {
            return Err(FrameError::Descriptors {
                said: said_fds,
                came: fds.len(),
            });
        }
        let mut frame = match self.partial.take() {
            Some(partial) if partial.kind != kind || !fds.is_empty() => {
                return Err(FrameError::Mixed)
            }
            Some(partial) => partial,
            None => Frame {
                kind,
                payload: Vec::new(),
                fds,
            },
        };
        if frame.payload.len() + body.len() > MAX_FRAME {
            return Err(FrameError::TooLong);
        }
        frame.payload.extend_from_slice(body);
        if more {
            self.partial = Some(frame);
            return Ok(None);
        }
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assemble(messages: &[Vec<u8>], fds: usize) -> Result<Vec<Frame<u32>>, FrameError> {
        let mut assembler = Assembler::default();
        let mut frames = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let came = if i == 0 {
                (0..fds as u32).collect()
            } else {
                Vec::new()
            };
            if let Some(frame) = assembler.push(message, came)? {
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    proptest! {
        #[test]
        fn a_frame_comes_back_whole_however_it_is_chunked(
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
            chunk in 1usize..300,
            fds in 0usize..8,
        ) {
            let messages = messages_of(Kind::Parcels, &payload, fds, chunk);
            prop_assert!(messages.iter().all(|m| m.len() <= HEADER + chunk));
            let frames = assemble(&messages, fds).unwrap();
            prop_assert_eq!(frames.len(), 1);
            prop_assert_eq!(frames[0].kind, Kind::Parcels);
            prop_assert_eq!(&frames[0].payload, &payload);
            prop_assert_eq!(frames[0].fds.len(), fds);
        }

        #[test]
        fn a_cut_message_is_an_error(
            payload in proptest::collection::vec(any::<u8>(), 1..500),
            chunk in 1usize..100,
            which in any::<prop::sample::Index>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut messages = messages_of(Kind::Listeners, &payload, 0, chunk);
            let i = which.index(messages.len());
            let at = cut.index(messages[i].len());
            messages[i].truncate(at);
            prop_assert!(assemble(&messages, 0).is_err());
        }

        #[test]
        fn any_bytes_are_a_frame_or_an_error_never_a_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut assembler: Assembler<u32> = Assembler::default();
            let _ = assembler.push(&bytes, Vec::new());
        }
    }

    #[test]
    fn descriptors_must_match_the_header_and_come_first() {
        let messages = messages_of(Kind::Parcels, b"abcdef", 2, 3);
        assert_eq!(
            assemble(&messages, 1).unwrap_err(),
            FrameError::Descriptors { said: 2, came: 1 }
        );
        let mut assembler = Assembler::default();
        assert!(assembler.push(&messages[0], vec![1, 2]).unwrap().is_none());
        assert_eq!(
            assembler.push(&messages[1], vec![3]).unwrap_err(),
            FrameError::Descriptors { said: 0, came: 1 }
        );
        let mut assembler: Assembler<u32> = Assembler::default();
        let other = messages_of(Kind::End, b"xyz", 0, 3);
        let first = messages_of(Kind::Parcels, b"abcdef", 0, 3);
        assert!(assembler.push(&first[0], Vec::new()).unwrap().is_none());
        assert_eq!(
            assembler.push(&other[0], Vec::new()).unwrap_err(),
            FrameError::Mixed
        );
        assert_eq!(
            assemble(&[vec![42, 0, 0, 0, 0, 0, 0, 0]], 0).unwrap_err(),
            FrameError::UnknownKind(42)
        );
    }
}
