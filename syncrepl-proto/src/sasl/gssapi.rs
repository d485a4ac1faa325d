//! The client side of the SASL GSSAPI mechanism (RFC 4752 §3.1): context establishment over
//! saslBindInProgress round trips, then the security layer negotiation.

use super::{GssapiContext, Layer, SaslError, SecurityLayer, SecurityProps, MAX_BUFFER_FIELD};

/// Where the exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet.
    Start,
    /// Tokens go back and forth until the context is established.
    Establishing,
    /// The context is established: the next challenge is the server's wrapped offer (or an
    /// empty one, answered with an empty response).
    AwaitOffer,
    /// The layer was chosen and sent; the server answers with the bind's result.
    AwaitOutcome { layer: SecurityLayer, send_max: u32 },
}

/// A GSSAPI bind as data: the runtime sends [`initial_response`](Self::initial_response) in a
/// SASL BindRequest, passes each saslBindInProgress (14) result's credentials to
/// [`challenge`](Self::challenge) and sends what it returns, and on success calls
/// [`success`](Self::success) for the negotiated [`Layer`].
#[derive(Debug)]
pub struct GssapiBind<C> {
    context: C,
    props: SecurityProps,
    authz_id: Vec<u8>,
    secure_transport: bool,
    state: State,
}

impl<C: GssapiContext> GssapiBind<C> {
    /// A bind through `context`, choosing a layer by `props`; `authz_id` is the identity to
    /// assume (`-X`, RFC 4752 §3.1), and `secure_transport` says whether TLS or ldapi already
    /// protect the connection (see [`SecurityProps::choose`]).
    pub fn new(
        context: C,
        props: SecurityProps,
        authz_id: Option<&str>,
        secure_transport: bool,
    ) -> GssapiBind<C> {
        GssapiBind {
            context,
            props,
            authz_id: authz_id.unwrap_or_default().as_bytes().to_vec(),
            secure_transport,
            state: State::Start,
        }
    }

    /// The credentials of the first BindRequest: the context's first token.
    pub fn initial_response(&mut self) -> Result<Vec<u8>, SaslError> {
        if self.state != State::Start {
            return Err(SaslError::InvalidState("initial response sent twice"));
        }
        let step = self.context.step(None)?;
        self.state = if step.complete {
            State::AwaitOffer
        } else {
            State::Establishing
        };
        Ok(step.token)
    }

    /// The credentials to answer a saslBindInProgress result with.
    pub fn challenge(&mut self, server_creds: Option<&[u8]>) -> Result<Vec<u8>, SaslError> {
        let token = server_creds.unwrap_or_default();
        match self.state {
            State::Start => Err(SaslError::InvalidState(
                "challenge before the first response",
            )),
            State::Establishing => {
                let step = self.context.step(Some(token))?;
                if step.complete {
                    self.state = State::AwaitOffer;
                }
                // Once complete, an empty response asks for the offer (RFC 4752 §3.1).
                Ok(step.token)
            }
            State::AwaitOffer if token.is_empty() => Ok(Vec::new()),
            State::AwaitOffer => {
                let offer = self.context.unwrap(token)?;
                let [mask, a, b, c] = offer[..] else {
                    return Err(SaslError::BadOffer {
                        length: offer.len(),
                    });
                };
                let send_max = u32::from_be_bytes([0, a, b, c]);
                let layer = self.props.choose(mask, self.secure_transport)?;
                if layer != SecurityLayer::None && send_max == 0 {
                    return Err(SaslError::NoBuffer);
                }
                let receive_max = match layer {
                    SecurityLayer::None => 0,
                    _ => self.props.max_buffer.min(MAX_BUFFER_FIELD),
                };
                let [_, a, b, c] = receive_max.to_be_bytes();
                let mut answer = vec![layer.bit(), a, b, c];
                answer.extend_from_slice(&self.authz_id);
                let wrapped = self.context.wrap(&answer, false)?;
                self.state = State::AwaitOutcome { layer, send_max };
                Ok(wrapped)
            }
            State::AwaitOutcome { .. } => Err(SaslError::UnexpectedChallenge),
        }
    }

    /// The bind succeeded: the layer that now applies to every message in both directions.
    pub fn success(self) -> Result<Layer<C>, SaslError> {
        match self.state {
            State::AwaitOutcome { layer, send_max } => {
                let receive_max = self.props.max_buffer.min(MAX_BUFFER_FIELD);
                Ok(Layer::new(self.context, layer, send_max, receive_max))
            }
            _ => Err(SaslError::EarlySuccess),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sasl::{GssapiStep, MechanismError};

    /// A context whose "wrap" is visible and checkable: a tag byte (`c` or `i`) before the
    /// message, and whose establishment takes `rounds` tokens.
    #[derive(Debug, Default)]
    pub(crate) struct Scripted {
        pub(crate) rounds: usize,
        pub(crate) seen: Vec<Option<Vec<u8>>>,
        pub(crate) fail_step: bool,
    }

    impl GssapiContext for Scripted {
        fn step(&mut self, token: Option<&[u8]>) -> Result<GssapiStep, MechanismError> {
            if self.fail_step {
                return Err(MechanismError::new("No Kerberos credentials available"));
            }
            self.seen.push(token.map(<[u8]>::to_vec));
            let n = self.seen.len();
            Ok(GssapiStep {
                token: if n < self.rounds {
                    format!("token{n}").into_bytes()
                } else {
                    Vec::new()
                },
                complete: n >= self.rounds,
            })
        }

        fn wrap(&mut self, message: &[u8], confidential: bool) -> Result<Vec<u8>, MechanismError> {
            let mut out = vec![if confidential { b'c' } else { b'i' }];
            out.extend_from_slice(message);
            Ok(out)
        }

        fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, MechanismError> {
            match token.split_first() {
                Some((b'c' | b'i', rest)) => Ok(rest.to_vec()),
                _ => Err(MechanismError::new("bad token")),
            }
        }
    }

    fn offer(mask: u8, max: u32) -> Vec<u8> {
        let [_, a, b, c] = max.to_be_bytes();
        vec![b'i', mask, a, b, c]
    }

    #[test]
    fn kerberos_exchange_with_confidentiality() {
        let context = Scripted {
            rounds: 2,
            ..Scripted::default()
        };
        let mut bind = GssapiBind::new(context, SecurityProps::default(), Some("u:reader"), false);
        assert_eq!(bind.initial_response().expect("first"), b"token1");
        // The AP-REP completes the context; no token, so an empty response.
        assert_eq!(bind.challenge(Some(b"ap-rep")).expect("second"), b"");
        assert_eq!(bind.challenge(None).expect("empty challenge"), b"");
        let answer = bind.challenge(Some(&offer(7, 65536))).expect("offer");
        assert_eq!(
            answer[0], b'i',
            "the answer is wrapped without confidentiality"
        );
        assert_eq!(&answer[1..5], &[4, 0xff, 0xff, 0xff]);
        assert_eq!(&answer[5..], b"u:reader");
        assert_eq!(
            bind.challenge(Some(b"x")),
            Err(SaslError::UnexpectedChallenge)
        );
        let layer = bind.success().expect("layer");
        assert_eq!(layer.security_layer(), SecurityLayer::Confidentiality);
        assert_eq!(layer.send_max(), 65536);
    }

    #[test]
    fn no_layer_answers_zero_buffer_and_needs_no_room() {
        let mut bind = GssapiBind::new(
            Scripted {
                rounds: 1,
                ..Scripted::default()
            },
            SecurityProps::default(),
            None,
            true,
        );
        assert_eq!(bind.initial_response().expect("first"), b"");
        let answer = bind.challenge(Some(&offer(1, 0))).expect("offer");
        assert_eq!(answer, [b'i', 1, 0, 0, 0]);
        let layer = bind.success().expect("layer");
        assert_eq!(layer.security_layer(), SecurityLayer::None);
    }

    #[test]
    fn server_mistakes_are_typed() {
        let scripted = || Scripted {
            rounds: 1,
            ..Scripted::default()
        };
        let early = GssapiBind::new(scripted(), SecurityProps::default(), None, false);
        assert!(matches!(early.success(), Err(SaslError::EarlySuccess)));

        let mut bind = GssapiBind::new(scripted(), SecurityProps::default(), None, false);
        assert_eq!(
            bind.challenge(Some(b"x")),
            Err(SaslError::InvalidState(
                "challenge before the first response"
            ))
        );
        bind.initial_response().expect("first");
        assert_eq!(
            bind.challenge(Some(b"i\x07\x00")),
            Err(SaslError::BadOffer { length: 2 })
        );

        let mut bind = GssapiBind::new(scripted(), SecurityProps::default(), None, false);
        bind.initial_response().expect("first");
        assert_eq!(bind.challenge(Some(&offer(4, 0))), Err(SaslError::NoBuffer));

        let mut bind = GssapiBind::new(scripted(), SecurityProps::default(), None, false);
        bind.initial_response().expect("first");
        assert!(matches!(
            bind.challenge(Some(b"garbage")),
            Err(SaslError::Mechanism(_))
        ));

        let strict = SecurityProps::parse("minssf=56").expect("valid");
        let mut bind = GssapiBind::new(scripted(), strict, None, false);
        bind.initial_response().expect("first");
        assert!(matches!(
            bind.challenge(Some(&offer(3, 65536))),
            Err(SaslError::NoAcceptableLayer { offered: 3, .. })
        ));

        let mut failing = GssapiBind::new(
            Scripted {
                fail_step: true,
                ..Scripted::default()
            },
            SecurityProps::default(),
            None,
            false,
        );
        assert_eq!(
            failing.initial_response().map_err(|e| e.to_string()),
            Err("GSSAPI: No Kerberos credentials available".to_owned())
        );
    }
}
