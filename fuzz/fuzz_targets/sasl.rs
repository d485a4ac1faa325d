//! A GSSAPI bind (RFC 4752) and its security layer against a server that says anything: the
//! challenges and the wrapped buffers come from the input. Never a panic, an error or a layer;
//! with a layer, what the client seals opens again to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncrepl_proto::sasl::{GssapiBind, GssapiContext, GssapiStep, MechanismError, SecurityProps};

/// A context whose tokens are visible: wrapping prefixes a byte, unwrapping takes it off.
#[derive(Debug)]
struct Visible {
    rounds: u8,
}

impl GssapiContext for Visible {
    fn step(&mut self, token: Option<&[u8]>) -> Result<GssapiStep, MechanismError> {
        if token.is_some_and(|t| t.first() == Some(&0xff)) {
            return Err(MechanismError::new("refused"));
        }
        self.rounds = self.rounds.saturating_sub(1);
        Ok(GssapiStep {
            token: vec![self.rounds],
            complete: self.rounds == 0,
        })
    }

    fn wrap(&mut self, message: &[u8], _confidential: bool) -> Result<Vec<u8>, MechanismError> {
        let mut out = vec![b'w'];
        out.extend_from_slice(message);
        Ok(out)
    }

    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, MechanismError> {
        match token.split_first() {
            Some((b'w', rest)) => Ok(rest.to_vec()),
            _ => Err(MechanismError::new("bad token")),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let props = SecurityProps {
        min_ssf: u32::from(head & 0x3f),
        max_ssf: (head & 0x40 != 0).then_some(u32::from(head)),
        max_buffer: 1 << 16,
    };
    let context = Visible {
        rounds: head % 3 + 1,
    };
    let mut bind = GssapiBind::new(context, props, Some("u:x"), head & 0x80 != 0);
    if bind.initial_response().is_err() {
        return;
    }
    // Challenges: length-prefixed pieces until an empty length byte says "success".
    let mut input = rest;
    loop {
        let Some((&n, tail)) = input.split_first() else {
            return;
        };
        if n == 0 {
            input = tail;
            break;
        }
        let n = usize::from(n).min(tail.len());
        let (challenge, tail) = tail.split_at(n);
        input = tail;
        if bind.challenge(Some(challenge)).is_err() {
            return;
        }
    }
    let Ok(mut layer) = bind.success() else {
        return;
    };
    let mut sealed = Vec::new();
    if layer.seal(input, &mut sealed).is_ok() {
        let mut opened = Vec::new();
        if layer.open(&sealed, &mut opened).is_ok() {
            assert_eq!(opened, input);
        } else {
            return;
        }
    }
    let mut plain = Vec::new();
    for piece in input.chunks(7) {
        if layer.open(piece, &mut plain).is_err() {
            break;
        }
    }
});
