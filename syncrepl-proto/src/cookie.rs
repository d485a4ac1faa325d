//! OpenLDAP's syncCookie, read: `rid=NNN[,sid=XXX][,csn=CSN[;CSN…]][,delcsn=CSN]`.
//!
//! RFC 4533 §2.1 makes the cookie opaque, and for every other server it stays so. slapd's, though,
//! holds one change sequence number (CSN) per serverID in multi-provider replication, and in the
//! persist stage each change's cookie carries only the CSN of the server that made it. A consumer
//! that keeps the last cookie as it came forgets the other servers' CSNs, and the next refresh
//! re-sends the whole content ("consumer cookie is missing a csn we track"). It must also never
//! echo `sid=`: that field names the server the cookie came from, and a provider that sees its
//! peer's sid in a consumer's cookie withholds the changes that peer made, taking the consumer for
//! the peer. [`Cookie::merge`] keeps the newest CSN of every serverID and sends back only `rid`
//! and the CSN set, as OpenLDAP's own consumer does.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

use crate::types::Cookie;

/// An OpenLDAP change sequence number: `YYYYmmddHHMMSS.uuuuuuZ#COUNT#SID#MOD`, with the count and
/// modifier in hexadecimal and the serverID of the server that made the change in 3 hex digits
/// (2 in OpenLDAP 2.3's older form). CSNs of one serverID order as their text does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Csn {
    text: String,
    sid: u16,
}

impl Csn {
    /// Reads a CSN; `None` when `text` does not have the four `#`-separated fields of one.
    pub fn parse(text: &str) -> Option<Csn> {
        let mut fields = text.split('#');
        let time = fields.next()?;
        let count = fields.next()?;
        let sid = fields.next()?;
        let modifier = fields.next()?;
        if fields.next().is_some() {
            return None;
        }
        let time_ok = time.len() >= 15
            && time.ends_with('Z')
            && time[..time.len() - 1]
                .bytes()
                .all(|c| c.is_ascii_digit() || c == b'.');
        let hex = |f: &str, max: usize| {
            !f.is_empty() && f.len() <= max && f.bytes().all(|c| c.is_ascii_hexdigit())
        };
        if !time_ok || !hex(count, 8) || !hex(sid, 3) || !hex(modifier, 8) {
            return None;
        }
        let sid = u16::from_str_radix(sid, 16).ok()?;
        Some(Csn {
            text: text.to_owned(),
            sid,
        })
    }

    /// The serverID of the server that made the change.
    pub fn sid(&self) -> u16 {
        self.sid
    }

    /// The CSN as slapd writes it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this CSN is later than `other` of the same serverID. CSNs of one form compare as
    /// text; between forms of different lengths the later-received one is taken as newer.
    fn is_newer_than(&self, other: &Csn) -> bool {
        if self.text.len() == other.text.len() {
            self.text > other.text
        } else {
            true
        }
    }
}

impl fmt::Display for Csn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Csn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Csn({})", self.text)
    }
}

/// slapd's cookie, parsed: the replica id, the serverID of the server that sent it, the CSN set
/// keyed by serverID (its contextCSN as far as this consumer has seen it), and the CSN of the last
/// delete (`delcsn`, OpenLDAP 2.5 and later).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlapdCookie {
    /// `rid=`: the replica id, in decimal (`000` for a client that configured none).
    pub rid: Option<u16>,
    /// `sid=`: the serverID of the provider that sent the cookie; never sent back.
    pub sid: Option<u16>,
    csns: BTreeMap<u16, Csn>,
    /// `delcsn=`: the CSN of the last delete the provider sent; kept for diagnosis, not sent back.
    pub delcsn: Option<Csn>,
}

impl SlapdCookie {
    /// Reads slapd's cookie; `None` for any other (389's, Active Directory's, a malformed one),
    /// which stays opaque.
    pub fn parse(cookie: &Cookie) -> Option<SlapdCookie> {
        let text = std::str::from_utf8(cookie.as_bytes()).ok()?;
        let mut parsed = SlapdCookie::default();
        let mut seen_csn = false;
        for field in text.split(',') {
            let (name, value) = field.split_once('=')?;
            match name {
                "rid" if parsed.rid.is_none() => {
                    if value.is_empty()
                        || value.len() > 3
                        || !value.bytes().all(|c| c.is_ascii_digit())
                    {
                        return None;
                    }
                    parsed.rid = Some(value.parse().ok()?);
                }
                "sid" if parsed.sid.is_none() => {
                    if value.is_empty()
                        || value.len() > 3
                        || !value.bytes().all(|c| c.is_ascii_hexdigit())
                    {
                        return None;
                    }
                    parsed.sid = Some(u16::from_str_radix(value, 16).ok()?);
                }
                "csn" if !seen_csn => {
                    seen_csn = true;
                    for csn in value.split(';').filter(|c| !c.is_empty()) {
                        parsed.insert(Csn::parse(csn)?);
                    }
                }
                "delcsn" if parsed.delcsn.is_none() => parsed.delcsn = Some(Csn::parse(value)?),
                _ => return None,
            }
        }
        (parsed.rid.is_some() || !parsed.csns.is_empty()).then_some(parsed)
    }

    /// The CSN set, in serverID order.
    pub fn csns(&self) -> impl Iterator<Item = &Csn> {
        self.csns.values()
    }

    /// The newest CSN of `sid`, if the set has one.
    pub fn csn(&self, sid: u16) -> Option<&Csn> {
        self.csns.get(&sid)
    }

    /// Adds `csn` to the set unless the set holds a newer one of its serverID.
    fn insert(&mut self, csn: Csn) {
        match self.csns.get(&csn.sid) {
            Some(held) if !csn.is_newer_than(held) => {}
            _ => {
                self.csns.insert(csn.sid, csn);
            }
        }
    }

    /// Takes in a newer cookie: its rid, each serverID's CSN where it moved forward (never
    /// back), its delcsn where newer, and its sid for diagnosis.
    pub fn merge(&mut self, newer: &SlapdCookie) {
        if newer.rid.is_some() {
            self.rid = newer.rid;
        }
        if newer.sid.is_some() {
            self.sid = newer.sid;
        }
        for csn in newer.csns.values() {
            self.insert(csn.clone());
        }
        if let Some(del) = &newer.delcsn {
            if self
                .delcsn
                .as_ref()
                .is_none_or(|held| del.is_newer_than(held))
            {
                self.delcsn = Some(del.clone());
            }
        }
    }

    /// The cookie to send back: `rid` and the CSN set, in the form slapd writes
    /// (`rid=000,csn=A;B`), without `sid` (we are not a server) and without `delcsn`.
    pub fn to_cookie(&self) -> Cookie {
        let mut text = String::new();
        if let Some(rid) = self.rid {
            text.push_str(&format!("rid={rid:03}"));
        }
        if !self.csns.is_empty() {
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str("csn=");
            let set: Vec<&str> = self.csns.values().map(Csn::as_str).collect();
            text.push_str(&set.join(";"));
        }
        Cookie(Bytes::from(text))
    }
}

impl Cookie {
    /// The cookie to hold after `next` arrives while `held` is held (RFC 4533 §3.4: the cookie
    /// represents the state of the content). Two slapd cookies merge into one CSN set per
    /// serverID, each CSN only moving forward, and the result carries no `sid`; a slapd cookie
    /// after none is rewritten the same way. Any other cookie replaces what was held.
    pub fn merge(held: Option<&Cookie>, next: Cookie) -> Cookie {
        let Some(mut newer) = SlapdCookie::parse(&next) else {
            return next;
        };
        match held.and_then(SlapdCookie::parse) {
            Some(mut current) => {
                current.merge(&newer);
                current.to_cookie()
            }
            None => {
                newer.delcsn = None;
                newer.to_cookie()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A1: &str = "20261201101010.000001Z#000000#001#000000";
    const A2: &str = "20261201101011.000000Z#000000#001#000000";
    const B1: &str = "20261201101009.000000Z#000000#002#000000";
    const B2: &str = "20261201101012.000000Z#000003#002#000000";

    fn cookie(text: &str) -> Cookie {
        Cookie::from(text.as_bytes())
    }

    fn text(cookie: &Cookie) -> &str {
        std::str::from_utf8(cookie.as_bytes()).expect("text")
    }

    #[test]
    fn reads_what_slapd_sends() {
        let c = SlapdCookie::parse(&cookie(&format!("rid=000,sid=002,csn={A1};{B1}")))
            .expect("slapd's");
        assert_eq!(c.rid, Some(0));
        assert_eq!(c.sid, Some(2));
        assert_eq!(c.csn(1).map(Csn::as_str), Some(A1));
        assert_eq!(c.csn(2).map(Csn::as_str), Some(B1));
        let c =
            SlapdCookie::parse(&cookie(&format!("rid=123,csn={A1},delcsn={B1}"))).expect("slapd's");
        assert_eq!(c.rid, Some(123));
        assert_eq!(c.delcsn.as_ref().map(Csn::sid), Some(2));
        let c = SlapdCookie::parse(&cookie("rid=000")).expect("no CSN yet");
        assert_eq!(c.csns().count(), 0);
    }

    #[test]
    fn other_servers_cookies_stay_opaque() {
        for other in [
            "localhost:389#cn=directory manager:dc=example,dc=com:(objectClass=*)#42",
            "MSDS\x03\0\0\0",
            "",
            "rid=000,csn=not-a-csn",
            "rid=0000,csn=",
            "csn=",
            "rid=000,color=blue",
            "rid=000,rid=001",
            &format!("rid=000,csn={A1}#extra"),
            &format!("rid=000,sid=1000,csn={A1}"),
        ] {
            assert_eq!(SlapdCookie::parse(&cookie(other)), None, "{other:?}");
            let next = cookie(other);
            let held = cookie(&format!("rid=000,csn={A1}"));
            assert_eq!(Cookie::merge(Some(&held), next.clone()), next);
        }
    }

    #[test]
    fn merging_keeps_every_servers_newest_csn_and_drops_sid() {
        let refreshed = cookie(&format!("rid=000,sid=001,csn={A1};{B1}"));
        let held = Cookie::merge(None, refreshed);
        assert_eq!(text(&held), format!("rid=000,csn={A1};{B1}"));
        // In the persist stage each change's cookie has only its server's CSN.
        let held = Cookie::merge(Some(&held), cookie(&format!("rid=000,sid=001,csn={B2}")));
        assert_eq!(text(&held), format!("rid=000,csn={A1};{B2}"));
        let held = Cookie::merge(Some(&held), cookie(&format!("rid=000,sid=002,csn={A2}")));
        assert_eq!(text(&held), format!("rid=000,csn={A2};{B2}"));
        // A provider that is behind never moves a CSN back.
        let held = Cookie::merge(
            Some(&held),
            cookie(&format!("rid=000,sid=002,csn={A1};{B1},delcsn={B1}")),
        );
        assert_eq!(text(&held), format!("rid=000,csn={A2};{B2}"));
    }

    #[test]
    fn a_held_cookie_of_another_server_is_replaced() {
        let held = cookie("localhost:389#cn=x:dc=example,dc=com:(objectClass=*)#7");
        let next = Cookie::merge(Some(&held), cookie(&format!("rid=000,sid=001,csn={A1}")));
        assert_eq!(text(&next), format!("rid=000,csn={A1}"));
    }

    fn csn_text() -> impl Strategy<Value = String> {
        (0u32..5, 0u32..3, 1u16..4).prop_map(|(second, count, sid)| {
            format!("2026120110101{second}.000000Z#{count:06x}#{sid:03x}#000000")
        })
    }

    fn slapd_cookie() -> impl Strategy<Value = String> {
        (
            proptest::option::of(0u16..1000),
            proptest::option::of(1u16..4),
            proptest::collection::vec(csn_text(), 0..4),
        )
            .prop_map(|(rid, sid, csns)| {
                let mut fields = Vec::new();
                if let Some(rid) = rid {
                    fields.push(format!("rid={rid:03}"));
                }
                if let Some(sid) = sid {
                    fields.push(format!("sid={sid:03x}"));
                }
                if !csns.is_empty() {
                    fields.push(format!("csn={}", csns.join(";")));
                }
                if rid.is_none() && csns.is_empty() {
                    fields.insert(0, "rid=000".to_owned());
                }
                fields.join(",")
            })
    }

    proptest! {
        #[test]
        fn merged_cookies_are_newest_per_server_in_any_order(
            cookies in proptest::collection::vec(slapd_cookie(), 1..6),
        ) {
            let mut held: Option<Cookie> = None;
            for c in &cookies {
                held = Some(Cookie::merge(held.as_ref(), cookie(c)));
            }
            let mut reversed: Option<Cookie> = None;
            for c in cookies.iter().rev() {
                reversed = Some(Cookie::merge(reversed.as_ref(), cookie(c)));
            }
            let held = SlapdCookie::parse(&held.expect("one")).expect("slapd's");
            let reversed = SlapdCookie::parse(&reversed.expect("one")).expect("slapd's");
            prop_assert_eq!(held.sid, None);
            prop_assert_eq!(
                held.csns().collect::<Vec<_>>(),
                reversed.csns().collect::<Vec<_>>()
            );
            for sid in 1u16..4 {
                let newest = cookies
                    .iter()
                    .filter_map(|c| SlapdCookie::parse(&cookie(c)))
                    .filter_map(|c| c.csn(sid).cloned())
                    .map(|c| c.as_str().to_owned())
                    .max();
                prop_assert_eq!(held.csn(sid).map(|c| c.as_str().to_owned()), newest);
            }
        }

        #[test]
        fn any_bytes_parse_without_panic(raw in proptest::collection::vec(any::<u8>(), 0..80)) {
            let c = Cookie(Bytes::from(raw));
            if let Some(parsed) = SlapdCookie::parse(&c) {
                let again = SlapdCookie::parse(&parsed.to_cookie());
                prop_assert_eq!(again.map(|a| a.csns().cloned().collect::<Vec<_>>()),
                    Some(parsed.csns().cloned().collect::<Vec<_>>()));
            }
            let _ = Cookie::merge(Some(&c), c.clone());
        }
    }
}
