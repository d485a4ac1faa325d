//! LDAP URLs (RFC 4516): where to connect and what to search, plus the bind extensions.

use std::fmt;

use percent_encoding::percent_decode_str;
use syncrepl_proto::{check_filter, Scope};

/// The socket Debian's slapd listens on for `ldapi:///` with an empty host.
pub const DEFAULT_LDAPI_PATH: &str = "/var/run/slapd/ldapi";

/// How to reach the server.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `ldap://`: TCP, cleartext unless StartTLS is used.
    Ldap {
        /// Host name or IP literal (without brackets).
        host: String,
        /// Port, 389 by default.
        port: u16,
    },
    /// `ldaps://`: TLS from the first byte.
    Ldaps {
        /// Host name or IP literal (without brackets); also the name the certificate must carry.
        host: String,
        /// Port, 636 by default.
        port: u16,
    },
    /// `ldapi://`: a Unix domain socket.
    Ldapi {
        /// The socket's path.
        path: String,
    },
}

impl Endpoint {
    /// Whether the connection is encrypted from the start (ldaps) or local to the machine (ldapi).
    pub fn is_secure_transport(&self) -> bool {
        !matches!(self, Endpoint::Ldap { .. })
    }

    /// The host a SASL service principal names (`ldap@HOST`): the URL's host as written, and
    /// `localhost` for ldapi://.
    pub fn sasl_host(&self) -> &str {
        match self {
            Endpoint::Ldap { host, .. } | Endpoint::Ldaps { host, .. } => host,
            Endpoint::Ldapi { .. } => "localhost",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        };
        match self {
            Endpoint::Ldap { host: h, port } => write!(f, "ldap://{}:{port}", host(h)),
            Endpoint::Ldaps { host: h, port } => write!(f, "ldaps://{}:{port}", host(h)),
            Endpoint::Ldapi { path } => write!(
                f,
                "ldapi://{}",
                percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC)
            ),
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Everything an LDAP URL says.
#[derive(Clone, PartialEq, Eq)]
pub struct LdapUrl {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// The search base DN (empty: the root DSE).
    pub base: String,
    /// Attributes to return (empty: all user attributes).
    pub attributes: Vec<String>,
    /// The scope; RFC 4516 makes `base` the default.
    pub scope: Scope,
    /// The filter; `(objectClass=*)` by default.
    pub filter: String,
    /// The `bindname` extension: the DN to bind as.
    pub bind_dn: Option<String>,
    /// `bindname=GSSAPI`: bind with SASL GSSAPI instead of as a DN (the old Python library's
    /// convention).
    pub gssapi: bool,
    /// The `X-BINDPW` extension: the password (the old Python library's way; prefer a file).
    pub bind_password: Option<String>,
    /// The `StartTLS` extension (OpenLDAP's name, or its OID).
    pub start_tls: bool,
}

impl fmt::Debug for LdapUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapUrl")
            .field("endpoint", &self.endpoint)
            .field("base", &self.base)
            .field("attributes", &self.attributes)
            .field("scope", &self.scope)
            .field("filter", &self.filter)
            .field("bind_dn", &self.bind_dn)
            .field("gssapi", &self.gssapi)
            .field("bind_password", &self.bind_password.as_ref().map(|_| "…"))
            .field("start_tls", &self.start_tls)
            .finish()
    }
}

/// A malformed LDAP URL; `position` is the byte offset in the URL where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LDAP URL at byte {position}: {reason}")]
pub struct UrlError {
    /// Byte offset of the problem.
    pub position: usize,
    /// What is wrong there.
    pub reason: String,
}

fn err(position: usize, reason: impl Into<String>) -> UrlError {
    UrlError {
        position,
        reason: reason.into(),
    }
}

fn decode(part: &str, at: usize) -> Result<String, UrlError> {
    let bytes = part.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        if c == b'%' {
            let ok = bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(err(at + i, "'%' must be followed by two hex digits"));
            }
        }
    }
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| err(at, "percent-encoded text is not UTF-8"))
}

impl std::str::FromStr for LdapUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        LdapUrl::parse(url)
    }
}

impl LdapUrl {
    /// Parses `scheme://[host[:port]][/dn[?attrs[?scope[?filter[?extensions]]]]]`.
    pub fn parse(url: &str) -> Result<LdapUrl, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err(0, "expected ldap://, ldaps:// or ldapi://"))?;
        let scheme_lower = scheme.to_ascii_lowercase();
        let mut pos = scheme.len() + 3;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if path.is_none() && rest.contains('?') {
            return Err(err(
                pos + rest.find('?').unwrap_or(0),
                "expected '/' before '?'",
            ));
        }
        let endpoint = match scheme_lower.as_str() {
            "ldap" | "ldaps" => {
                let default_port = if scheme_lower == "ldap" { 389 } else { 636 };
                let (host, port) = split_host_port(hostport, pos, default_port)?;
                if scheme_lower == "ldap" {
                    Endpoint::Ldap { host, port }
                } else {
                    Endpoint::Ldaps { host, port }
                }
            }
            "ldapi" => {
                let path = decode(hostport, pos)?;
                Endpoint::Ldapi {
                    path: if path.is_empty() {
                        DEFAULT_LDAPI_PATH.to_owned()
                    } else {
                        path
                    },
                }
            }
            _ => return Err(err(0, format!("unknown scheme {scheme:?}"))),
        };
        pos += hostport.len() + 1;
        let mut url = LdapUrl {
            endpoint,
            base: String::new(),
            attributes: Vec::new(),
            scope: Scope::Base,
            filter: "(objectClass=*)".to_owned(),
            bind_dn: None,
            gssapi: false,
            bind_password: None,
            start_tls: false,
        };
        let Some(path) = path else {
            return Ok(url);
        };
        let mut parts = path.split('?');
        let mut next = |pos: &mut usize| {
            parts.next().map(|p| {
                let at = *pos;
                *pos += p.len() + 1;
                (p, at)
            })
        };
        if let Some((dn, at)) = next(&mut pos) {
            url.base = decode(dn, at)?;
        }
        if let Some((attrs, at)) = next(&mut pos) {
            let attrs = decode(attrs, at)?;
            url.attributes = attrs
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some((scope, at)) = next(&mut pos) {
            url.scope = match scope.to_ascii_lowercase().as_str() {
                "" | "base" => Scope::Base,
                "one" => Scope::One,
                "sub" => Scope::Subtree,
                other => {
                    return Err(err(
                        at,
                        format!("unknown scope {other:?} (expected base, one or sub)"),
                    ))
                }
            };
        }
        if let Some((filter, at)) = next(&mut pos) {
            let filter = decode(filter, at)?;
            if !filter.is_empty() {
                check_filter(&filter).map_err(|e| err(at + e.position, e.reason))?;
                url.filter = filter;
            }
        }
        if let Some((extensions, at)) = next(&mut pos) {
            url.extensions(extensions, at)?;
        }
        if let Some((_, at)) = next(&mut pos) {
            return Err(err(at - 1, "too many '?' parts"));
        }
        Ok(url)
    }

    /// Parses several URLs for one search, separated by whitespace as `ldapsearch -H "ldap://a
    /// ldap://b"` takes them: servers holding the same content (multi-provider replication),
    /// tried in turn. The first says what to search; each further one is either only
    /// `scheme://host[:port]` or the same URL with another scheme, host or port. Returns the
    /// first URL and the endpoints of the others.
    pub fn parse_many(text: &str) -> Result<(LdapUrl, Vec<Endpoint>), UrlError> {
        let mut words = text
            .split_whitespace()
            .map(|w| (w, w.as_ptr() as usize - text.as_ptr() as usize));
        let (first, at) = words.next().ok_or_else(|| err(0, "no URL given"))?;
        let shift = |e: UrlError, at: usize| err(e.position + at, e.reason);
        let url = LdapUrl::parse(first).map_err(|e| shift(e, at))?;
        let mut others = Vec::new();
        for (word, at) in words {
            let other = LdapUrl::parse(word).map_err(|e| shift(e, at))?;
            let bare = word
                .split_once("://")
                .map(|(_, rest)| rest.strip_suffix('/').unwrap_or(rest))
                .is_some_and(|hostport| !hostport.contains(['/', '?']));
            let same_search = other.base == url.base
                && other.attributes == url.attributes
                && other.scope == url.scope
                && other.filter == url.filter
                && other.bind_dn == url.bind_dn
                && other.gssapi == url.gssapi
                && other.bind_password == url.bind_password
                && other.start_tls == url.start_tls;
            if !bare && !same_search {
                return Err(err(
                    at,
                    "a further URL may differ from the first only in scheme, host and port                      (or give only scheme://host:port)",
                ));
            }
            if other.endpoint == url.endpoint || others.contains(&other.endpoint) {
                return Err(err(at, format!("{} is given twice", other.endpoint)));
            }
            others.push(other.endpoint);
        }
        Ok((url, others))
    }

    fn extensions(&mut self, text: &str, mut at: usize) -> Result<(), UrlError> {
        for ext in text.split(',') {
            let start = at;
            at += ext.len() + 1;
            if ext.is_empty() {
                continue;
            }
            let (critical, ext) = match ext.strip_prefix('!') {
                Some(e) => (true, e),
                None => (false, ext),
            };
            let (name, value) = match ext.split_once('=') {
                Some((n, v)) => (n, Some(decode(v, start + n.len() + 1)?)),
                None => (ext, None),
            };
            let name = decode(name, start)?;
            match name.to_ascii_lowercase().as_str() {
                "bindname" => {
                    let value = value.ok_or_else(|| err(start, "bindname needs a value"))?;
                    if value.eq_ignore_ascii_case("GSSAPI") {
                        self.gssapi = true;
                    } else {
                        self.bind_dn = Some(value);
                    }
                }
                "x-bindpw" => {
                    self.bind_password =
                        Some(value.ok_or_else(|| err(start, "X-BINDPW needs a value"))?);
                }
                "starttls" | "1.3.6.1.4.1.1466.20037" => self.start_tls = true,
                _ if critical => {
                    return Err(err(
                        start,
                        format!("unsupported critical extension {name:?}"),
                    ))
                }
                _ => tracing::warn!(extension = %name, "ignoring unknown LDAP URL extension"),
            }
        }
        Ok(())
    }
}

fn split_host_port(text: &str, at: usize, default_port: u16) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| err(at, "unterminated IPv6 literal"))?;
        let host = &rest[..close];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(err(at + 1, format!("invalid IPv6 address {host:?}")));
        }
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some((p, at + close + 3)),
            None if after.is_empty() => None,
            None => return Err(err(at + close + 2, "expected ':' after the IPv6 literal")),
        };
        (host.to_owned(), port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (decode(h, at)?, Some((p, at + h.len() + 1))),
            None => (decode(text, at)?, None),
        }
    };
    let port = match port {
        Some(("", _)) => default_port,
        Some((p, pat)) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| err(pat, format!("invalid port {p:?}")))?,
        None => default_port,
    };
    let host = if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let url = LdapUrl::parse(
            "ldap://127.0.0.1:3890/dc=example,dc=com?cn,mail?sub?(objectClass=person)?bindname=cn=reader%2Cdc=example%2Cdc=com,X-BINDPW=s%3Fcret",
        )
        .expect("valid");
        assert_eq!(
            url.endpoint,
            Endpoint::Ldap {
                host: "127.0.0.1".into(),
                port: 3890
            }
        );
        assert_eq!(url.base, "dc=example,dc=com");
        assert_eq!(url.attributes, ["cn", "mail"]);
        assert_eq!(url.scope, Scope::Subtree);
        assert_eq!(url.filter, "(objectClass=person)");
        assert_eq!(url.bind_dn.as_deref(), Some("cn=reader,dc=example,dc=com"));
        assert!(!url.gssapi);
        let kerberos =
            LdapUrl::parse("ldap://ldap.example.com/dc=example,dc=com??sub??bindname=GSSAPI")
                .expect("valid");
        assert!(kerberos.gssapi);
        assert_eq!(kerberos.bind_dn, None);
        assert_eq!(url.bind_password.as_deref(), Some("s?cret"));
        assert!(!format!("{url:?}").contains("s?cret"));
    }

    #[test]
    fn defaults_and_schemes() {
        let url = LdapUrl::parse("ldaps://ldap.example.com").expect("valid");
        assert_eq!(
            url.endpoint,
            Endpoint::Ldaps {
                host: "ldap.example.com".into(),
                port: 636
            }
        );
        assert_eq!(url.scope, Scope::Base);
        assert_eq!(url.filter, "(objectClass=*)");
        let url = LdapUrl::parse("ldap://[::1]:1389/o=x??one").expect("valid");
        assert_eq!(
            url.endpoint,
            Endpoint::Ldap {
                host: "::1".into(),
                port: 1389
            }
        );
        assert_eq!(url.endpoint.to_string(), "ldap://[::1]:1389");
        assert_eq!(url.scope, Scope::One);
        let url = LdapUrl::parse("ldapi://%2Ftmp%2Fs%20x.sock/o=x").expect("valid");
        assert_eq!(
            url.endpoint,
            Endpoint::Ldapi {
                path: "/tmp/s x.sock".into()
            }
        );
        let url = LdapUrl::parse("ldapi:///o=x").expect("valid");
        assert_eq!(
            url.endpoint,
            Endpoint::Ldapi {
                path: DEFAULT_LDAPI_PATH.into()
            }
        );
        let url = LdapUrl::parse("LDAP:///?").expect("valid");
        assert_eq!(
            url.endpoint,
            Endpoint::Ldap {
                host: "localhost".into(),
                port: 389
            }
        );
        let url = LdapUrl::parse("ldap://h/o=x????!StartTLS").expect("valid");
        assert!(url.start_tls);
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("http://x/", 0),
            ("ldap://x:99999/", 9),
            ("ldap://x:0/", 9),
            ("ldap://x/o=x??subtree", 14),
            ("ldap://x/o=x???(cn=", 16),
            ("ldap://x/o=x????!x-unknown", 16),
            ("ldap://x/o=%zz", 11),
            ("ldap://[::1/", 7),
            ("ldap://[zz]:1/", 8),
            ("ldap://x/a?b?base?(cn=*)?e?f", 26),
            ("ldap://x?cn", 8),
        ];
        for (url, position) in cases {
            match LdapUrl::parse(url) {
                Err(e) => assert_eq!(e.position, position, "{url}: {e}"),
                Ok(u) => panic!("{url} parsed as {u:?}"),
            }
        }
        assert!(LdapUrl::parse("ldap://x/o=x????x-unknown=1").is_ok());
    }

    #[test]
    fn several_servers_for_one_search() {
        let (url, others) = LdapUrl::parse_many(
            "ldap://a:1389/dc=example,dc=com??sub?(cn=*)  ldaps://b ldap://c:3/dc=example,dc=com??sub?(cn=*)\n",
        )
        .expect("valid");
        assert_eq!(url.base, "dc=example,dc=com");
        assert_eq!(url.scope, Scope::Subtree);
        assert_eq!(
            others,
            [
                Endpoint::Ldaps {
                    host: "b".into(),
                    port: 636
                },
                Endpoint::Ldap {
                    host: "c".into(),
                    port: 3
                }
            ]
        );
        let (_, others) = LdapUrl::parse_many("ldap://a/o=x ldap://b/").expect("bare with a slash");
        assert_eq!(others.len(), 1);
        let cases = [
            ("", 0),
            ("ldap://a/o=x ldap://b/o=y", 13),
            ("ldap://a/o=x??sub ldap://b/o=x??one", 18),
            ("ldap://a/o=x ldap://b/o=x????StartTLS", 13),
            ("ldap://a/o=x ldap://a:389", 13),
            ("ldap://a/o=x ldap://b:0", 22),
        ];
        for (text, position) in cases {
            match LdapUrl::parse_many(text) {
                Err(e) => assert_eq!(e.position, position, "{text}: {e}"),
                Ok(u) => panic!("{text} parsed as {u:?}"),
            }
        }
    }
}
