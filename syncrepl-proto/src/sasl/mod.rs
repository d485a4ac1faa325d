//! SASL binds that take several round trips, as data (RFC 4422, RFC 4513 §5.2): GSSAPI (RFC 4752)
//! with its security layers.
//!
//! The core carries the tokens and decides the negotiation; the mechanism itself, a GSS-API
//! security context from a library such as MIT Kerberos, is a [`GssapiContext`] that the runtime
//! supplies, so this crate stays free of libraries and I/O. After the bind, a [`Layer`] wraps and
//! unwraps every LDAP message when integrity or confidentiality was chosen.

mod gssapi;
mod layer;

pub use gssapi::GssapiBind;
pub use layer::Layer;

/// The security layers of RFC 4752 §3.3, by the bit the server's offer sets for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityLayer {
    /// No layer: messages travel as they are (over TLS or ldapi, the usual choice).
    None,
    /// Each message carries a checksum (`gss_wrap` without confidentiality).
    Integrity,
    /// Each message is encrypted (`gss_wrap` with confidentiality).
    Confidentiality,
}

impl SecurityLayer {
    /// All three, weakest first.
    pub const ALL: [SecurityLayer; 3] = [
        SecurityLayer::None,
        SecurityLayer::Integrity,
        SecurityLayer::Confidentiality,
    ];

    /// The layer's bit in the offer and the answer (RFC 4752 §3.3).
    pub fn bit(self) -> u8 {
        match self {
            SecurityLayer::None => 1,
            SecurityLayer::Integrity => 2,
            SecurityLayer::Confidentiality => 4,
        }
    }

    /// Its security strength factor as Cyrus SASL and slapd count it: 0, 1, and 56 for
    /// confidentiality (the value `sasl-secprops minssf=56` asks for).
    pub fn ssf(self) -> u32 {
        match self {
            SecurityLayer::None => 0,
            SecurityLayer::Integrity => 1,
            SecurityLayer::Confidentiality => 56,
        }
    }

    /// Its name, as in logs.
    pub fn name(self) -> &'static str {
        match self {
            SecurityLayer::None => "none",
            SecurityLayer::Integrity => "integrity",
            SecurityLayer::Confidentiality => "confidentiality",
        }
    }
}

impl std::fmt::Display for SecurityLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest buffer size the 3-octet field of RFC 4752 §3.1 can carry.
pub const MAX_BUFFER_FIELD: u32 = 0x00FF_FFFF;

/// Which layers the client accepts, as ldap-utils' `-O` takes them (`minssf=56,maxssf=256`,
/// `maxbufsize=65536`; Cyrus SASL's security properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityProps {
    /// The weakest layer accepted, as an SSF (see [`SecurityLayer::ssf`]).
    pub min_ssf: u32,
    /// The strongest layer wanted; `None` lets the transport decide: the strongest offered over
    /// plain `ldap://`, none over TLS or ldapi, which protect the connection already.
    pub max_ssf: Option<u32>,
    /// The largest wrapped buffer the client accepts from the server.
    pub max_buffer: u32,
}

impl Default for SecurityProps {
    fn default() -> SecurityProps {
        SecurityProps {
            min_ssf: 0,
            max_ssf: None,
            max_buffer: MAX_BUFFER_FIELD,
        }
    }
}

impl SecurityProps {
    /// Parses a comma-separated list like ldap-utils' `-O`: `minssf=N`, `maxssf=N`,
    /// `maxbufsize=N`; the flags `none`, `noplain`, `noactive`, `nodict`, `noanonymous`,
    /// `forwardsec`, `passcred`, which GSSAPI satisfies, are accepted and change nothing.
    pub fn parse(text: &str) -> Result<SecurityProps, SaslError> {
        let mut props = SecurityProps::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || SaslError::BadSecurityProps(item.to_owned());
            match item.split_once('=') {
                Some((key, value)) => {
                    let n: u32 = value.trim().parse().map_err(|_| bad())?;
                    match key.trim().to_ascii_lowercase().as_str() {
                        "minssf" => props.min_ssf = n,
                        "maxssf" => props.max_ssf = Some(n),
                        "maxbufsize" => props.max_buffer = n.min(MAX_BUFFER_FIELD),
                        _ => return Err(bad()),
                    }
                }
                None => match item.to_ascii_lowercase().as_str() {
                    "none" | "noplain" | "noactive" | "nodict" | "noanonymous" | "forwardsec"
                    | "passcred" => {}
                    _ => return Err(bad()),
                },
            }
        }
        if props.max_ssf.is_some_and(|max| max < props.min_ssf) {
            return Err(SaslError::BadSecurityProps(format!(
                "maxssf {} is below minssf {}",
                props.max_ssf.unwrap_or_default(),
                props.min_ssf
            )));
        }
        Ok(props)
    }

    /// The layer to answer an offer with (the bit mask of RFC 4752 §3.1): among the offered
    /// layers within `min_ssf..=max_ssf`, the strongest, or over a secure transport with no
    /// `max_ssf` given, the weakest.
    pub fn choose(&self, offered: u8, secure_transport: bool) -> Result<SecurityLayer, SaslError> {
        let fits = |layer: &SecurityLayer| {
            offered & layer.bit() != 0
                && layer.ssf() >= self.min_ssf
                && self.max_ssf.is_none_or(|max| layer.ssf() <= max)
        };
        let mut candidates = SecurityLayer::ALL.into_iter().filter(fits);
        let chosen = if secure_transport && self.max_ssf.is_none() {
            candidates.next()
        } else {
            candidates.next_back()
        };
        chosen.ok_or(SaslError::NoAcceptableLayer {
            offered,
            min_ssf: self.min_ssf,
            max_ssf: self.max_ssf,
        })
    }
}

/// One step of establishing a security context (`GSS_Init_sec_context`, RFC 2743 §2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GssapiStep {
    /// The token to send the server; empty if the mechanism produced none.
    pub token: Vec<u8>,
    /// Whether the context is established (`GSS_S_COMPLETE`).
    pub complete: bool,
}

/// A mechanism failure in the words of the library, e.g. "No Kerberos credentials available".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MechanismError {
    /// What the library said, with a hint where one helps.
    pub message: String,
    /// Whether trying again later may succeed (the KDC could not be reached), unlike a missing
    /// ticket or an unknown principal.
    pub transient: bool,
}

impl MechanismError {
    /// A failure that retrying will not fix.
    pub fn new(message: impl Into<String>) -> MechanismError {
        MechanismError {
            message: message.into(),
            transient: false,
        }
    }
}

/// The client side of a GSS-API security context (RFC 2743), which the runtime supplies from a
/// library (MIT Kerberos through `libgssapi`) or a test supplies from a script.
pub trait GssapiContext: std::fmt::Debug {
    /// Takes the server's token (`None` on the first call) and returns the next one to send.
    fn step(&mut self, token: Option<&[u8]>) -> Result<GssapiStep, MechanismError>;
    /// `GSS_Wrap` (RFC 2743 §2.3.3): protects `message`, encrypting it when `confidential`.
    fn wrap(&mut self, message: &[u8], confidential: bool) -> Result<Vec<u8>, MechanismError>;
    /// `GSS_Unwrap` (RFC 2743 §2.3.4): checks (and decrypts) a token from the server.
    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, MechanismError>;
}

impl<C: GssapiContext + ?Sized> GssapiContext for Box<C> {
    fn step(&mut self, token: Option<&[u8]>) -> Result<GssapiStep, MechanismError> {
        (**self).step(token)
    }

    fn wrap(&mut self, message: &[u8], confidential: bool) -> Result<Vec<u8>, MechanismError> {
        (**self).wrap(message, confidential)
    }

    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, MechanismError> {
        (**self).unwrap(token)
    }
}

/// Why a SASL bind or its security layer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The GSS-API library refused (no ticket, an expired one, an unknown service principal…).
    #[error("GSSAPI: {0}")]
    Mechanism(#[from] MechanismError),
    /// The server sent a challenge where the exchange has none (RFC 4752 §3.1).
    #[error("the server sent a SASL challenge after the security layer was chosen")]
    UnexpectedChallenge,
    /// The server reported success before the security layer was negotiated, which would leave
    /// the server unauthenticated to the client (RFC 4752 §3.1).
    #[error("the server reported a successful bind before the GSSAPI exchange was complete")]
    EarlySuccess,
    /// The server's security layer offer is not the 4 octets RFC 4752 §3.1 requires.
    #[error("the server's security layer offer has {length} octets instead of 4")]
    BadOffer {
        /// How many octets the unwrapped offer had.
        length: usize,
    },
    /// No layer the server offers is acceptable under the client's security properties.
    #[error(
        "no acceptable security layer: the server offers {} and the client accepts SSF {min_ssf}..{}",
        offer_names(*offered),
        max_ssf.map_or_else(|| "any".to_owned(), |m| m.to_string())
    )]
    NoAcceptableLayer {
        /// The server's bit mask.
        offered: u8,
        /// The client's minimum SSF.
        min_ssf: u32,
        /// The client's maximum SSF, if given.
        max_ssf: Option<u32>,
    },
    /// The server offered a layer but no room to send it anything in.
    #[error("the server offers a security layer with a maximum buffer of 0")]
    NoBuffer,
    /// A security layer buffer longer than the client said it accepts (RFC 4422 §3.7).
    #[error("a security layer buffer of {length} octets exceeds the {max} accepted")]
    FrameTooLarge {
        /// The length the buffer claims.
        length: usize,
        /// The maximum the client announced.
        max: usize,
    },
    /// A security layer buffer of length 0.
    #[error("an empty security layer buffer")]
    EmptyFrame,
    /// The `-O` security properties are malformed.
    #[error("invalid SASL security property {0:?}")]
    BadSecurityProps(String),
    /// A method was called out of order, e.g. a challenge before the first response.
    #[error("SASL exchange used out of order: {0}")]
    InvalidState(&'static str),
}

fn offer_names(offered: u8) -> String {
    let names: Vec<&str> = SecurityLayer::ALL
        .into_iter()
        .filter(|l| offered & l.bit() != 0)
        .map(SecurityLayer::name)
        .collect();
    if names.is_empty() {
        "no layer".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn props_parse_like_ldap_utils() {
        let p = SecurityProps::parse("noanonymous, minssf=1,maxssf=56,maxbufsize=65536")
            .expect("valid");
        assert_eq!(p.min_ssf, 1);
        assert_eq!(p.max_ssf, Some(56));
        assert_eq!(p.max_buffer, 65536);
        assert_eq!(
            SecurityProps::parse("maxbufsize=99999999")
                .expect("valid")
                .max_buffer,
            MAX_BUFFER_FIELD
        );
        for bad in [
            "minssf",
            "minssf=x",
            "colour=1",
            "strong",
            "minssf=56,maxssf=1",
        ] {
            assert!(
                matches!(
                    SecurityProps::parse(bad),
                    Err(SaslError::BadSecurityProps(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            SecurityProps::parse("").expect("empty"),
            SecurityProps::default()
        );
    }

    #[test]
    fn strongest_over_plain_weakest_over_tls_unless_asked() {
        let any = SecurityProps::default();
        assert_eq!(any.choose(7, false), Ok(SecurityLayer::Confidentiality));
        assert_eq!(any.choose(7, true), Ok(SecurityLayer::None));
        assert_eq!(any.choose(4, true), Ok(SecurityLayer::Confidentiality));
        assert_eq!(any.choose(3, false), Ok(SecurityLayer::Integrity));
        let integrity = SecurityProps::parse("maxssf=1").expect("valid");
        assert_eq!(integrity.choose(7, false), Ok(SecurityLayer::Integrity));
        assert_eq!(integrity.choose(7, true), Ok(SecurityLayer::Integrity));
        let none = SecurityProps::parse("maxssf=0").expect("valid");
        assert_eq!(none.choose(7, false), Ok(SecurityLayer::None));
        let strong = SecurityProps::parse("minssf=56").expect("valid");
        assert_eq!(strong.choose(7, true), Ok(SecurityLayer::Confidentiality));
        let err = strong.choose(3, false).expect_err("too weak");
        assert_eq!(
            err.to_string(),
            "no acceptable security layer: the server offers none, integrity and the client \
             accepts SSF 56..any"
        );
        assert!(none.choose(4, false).is_err());
        assert!(any.choose(0, false).is_err());
    }
}
