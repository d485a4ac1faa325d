//! The SASL security layer on the wire (RFC 4422 §3.7, RFC 4752 §3.3): after the bind, each
//! buffer is a 4-octet big-endian length followed by a `GSS_Wrap` token.

use super::{GssapiContext, SaslError, SecurityLayer};

/// What a wrapped buffer may add to the message it carries (Kerberos adds under 100 octets):
/// messages are cut so that their wrapped form stays within what the peer accepts.
const WRAP_ALLOWANCE: usize = 1024;

/// The negotiated layer of a GSSAPI bind: seals what the client sends and opens what the server
/// sends. With [`SecurityLayer::None`] it passes bytes through unchanged.
#[derive(Debug)]
pub struct Layer<C> {
    context: C,
    layer: SecurityLayer,
    send_max: usize,
    receive_max: usize,
    /// Received bytes of a buffer not yet complete.
    pending: Vec<u8>,
}

impl<C: GssapiContext> Layer<C> {
    /// A layer over `context`; `send_max` is the server's maximum buffer and `receive_max` the
    /// client's (RFC 4752 §3.1).
    pub(crate) fn new(
        context: C,
        layer: SecurityLayer,
        send_max: u32,
        receive_max: u32,
    ) -> Layer<C> {
        Layer {
            context,
            layer,
            send_max: usize::try_from(send_max).unwrap_or(usize::MAX),
            receive_max: usize::try_from(receive_max).unwrap_or(usize::MAX),
            pending: Vec::new(),
        }
    }

    /// The layer that was chosen.
    pub fn security_layer(&self) -> SecurityLayer {
        self.layer
    }

    /// Whether messages are wrapped at all.
    pub fn is_active(&self) -> bool {
        self.layer != SecurityLayer::None
    }

    /// The largest buffer the server accepts.
    pub fn send_max(&self) -> usize {
        self.send_max
    }

    /// Appends `plain` to `out` as one or more wrapped buffers, each within the server's maximum.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SaslError> {
        if !self.is_active() {
            out.extend_from_slice(plain);
            return Ok(());
        }
        let confidential = self.layer == SecurityLayer::Confidentiality;
        let chunk = if self.send_max > 2 * WRAP_ALLOWANCE {
            self.send_max - WRAP_ALLOWANCE
        } else {
            (self.send_max / 2).max(1)
        };
        for piece in plain.chunks(chunk) {
            let wrapped = self.context.wrap(piece, confidential)?;
            let length = u32::try_from(wrapped.len())
                .ok()
                .filter(|&n| n as usize <= self.send_max)
                .ok_or(SaslError::FrameTooLarge {
                    length: wrapped.len(),
                    max: self.send_max,
                })?;
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(&wrapped);
        }
        Ok(())
    }

    /// Takes bytes from the server and appends the LDAP bytes of every buffer they complete to
    /// `out`; a partial buffer waits for the next call.
    pub fn open(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), SaslError> {
        if !self.is_active() {
            out.extend_from_slice(input);
            return Ok(());
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        let result = loop {
            let Some(header) = self.pending.get(at..at + 4) else {
                break Ok(());
            };
            let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let length = usize::try_from(length).unwrap_or(usize::MAX);
            if length == 0 {
                break Err(SaslError::EmptyFrame);
            }
            if length > self.receive_max {
                break Err(SaslError::FrameTooLarge {
                    length,
                    max: self.receive_max,
                });
            }
            let Some(token) = self.pending.get(at + 4..at + 4 + length) else {
                break Ok(());
            };
            match self.context.unwrap(token) {
                Ok(plain) => out.extend_from_slice(&plain),
                Err(e) => break Err(e.into()),
            }
            at += 4 + length;
        };
        self.pending.drain(..at);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::gssapi::tests::Scripted;
    use proptest::prelude::*;

    fn layer(kind: SecurityLayer, send_max: u32, receive_max: u32) -> Layer<Scripted> {
        Layer::new(Scripted::default(), kind, send_max, receive_max)
    }

    #[test]
    fn none_passes_through() {
        let mut l = layer(SecurityLayer::None, 0, 0);
        let mut out = Vec::new();
        l.seal(b"abc", &mut out).expect("seal");
        l.open(b"def", &mut out).expect("open");
        assert_eq!(out, b"abcdef");
    }

    #[test]
    fn sealed_buffers_respect_the_servers_maximum() {
        let mut l = layer(SecurityLayer::Confidentiality, 4096, 1 << 20);
        let plain: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut wire = Vec::new();
        l.seal(&plain, &mut wire).expect("seal");
        let mut at = 0;
        let mut pieces = 0;
        while at < wire.len() {
            let n = u32::from_be_bytes(wire[at..at + 4].try_into().expect("4")) as usize;
            assert!(n <= 4096);
            assert_eq!(wire[at + 4], b'c', "confidentiality asks for encryption");
            at += 4 + n;
            pieces += 1;
        }
        assert_eq!(pieces, 4);
        let mut back = Vec::new();
        l.open(&wire, &mut back).expect("open");
        assert_eq!(back, plain);
    }

    #[test]
    fn bad_buffers_are_typed() {
        let mut l = layer(SecurityLayer::Integrity, 1000, 100);
        let mut out = Vec::new();
        assert_eq!(l.open(&[0, 0, 0, 0], &mut out), Err(SaslError::EmptyFrame));
        let mut l = layer(SecurityLayer::Integrity, 1000, 100);
        assert_eq!(
            l.open(&[0xff, 0xff, 0xff, 0xff], &mut out),
            Err(SaslError::FrameTooLarge {
                length: 0xffff_ffff,
                max: 100
            })
        );
        let mut l = layer(SecurityLayer::Integrity, 1000, 100);
        assert!(matches!(
            l.open(&[0, 0, 0, 1, b'x'], &mut out),
            Err(SaslError::Mechanism(_))
        ));
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn any_split_of_the_input_gives_the_same_bytes(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..20),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut l = layer(SecurityLayer::Integrity, 256, 1 << 16);
            let mut wire = Vec::new();
            for m in &messages {
                l.seal(m, &mut wire).expect("seal");
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
            cuts.push(wire.len());
            cuts.sort_unstable();
            let mut back = Vec::new();
            let mut from = 0;
            for cut in cuts {
                l.open(&wire[from..cut], &mut back).expect("open");
                from = cut;
            }
            prop_assert_eq!(back, messages.concat());
        }

        #[test]
        fn arbitrary_input_never_panics(input in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut l = layer(SecurityLayer::Confidentiality, 256, 512);
            let mut out = Vec::new();
            let _ = l.open(&input, &mut out);
        }
    }
}
