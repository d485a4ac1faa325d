//! 389 Directory Server's dialect of RFC 4533: what its cookies look like, so that the rules can
//! allow for how it ends incremental refreshes.

use syncrepl_proto::Cookie;

/// Whether `cookie` has the form of 389 Directory Server's Content Synchronization cookies,
/// `host:port#bind DN:base:filter#changenumber`: that server ends incremental refreshes as present
/// phases without presenting anything, which must not delete what it did not send.
pub(crate) fn is_389_cookie(cookie: &Cookie) -> bool {
    let Ok(text) = std::str::from_utf8(cookie.as_bytes()) else {
        return false;
    };
    let mut parts = text.split('#');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(server), Some(_search), Some(number), None) => {
            server.contains(':') && number.parse::<i64>().is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_of_389_and_of_slapd() {
        let ds = Cookie::from(
            b"ldap.example.com:389#cn=reader:dc=example,dc=com:(objectClass=*)#42".as_slice(),
        );
        assert!(is_389_cookie(&ds));
        let slapd =
            Cookie::from(b"rid=000,csn=20240101000000.000000Z#000000#000#000000".as_slice());
        assert!(!is_389_cookie(&slapd));
        assert!(!is_389_cookie(&Cookie::from(
            b"a:b#c#notanumber".as_slice()
        )));
    }
}
