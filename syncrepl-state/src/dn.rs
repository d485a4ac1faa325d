//! Distinguished names compared the LDAP way (RFC 4514 string form, RFC 4517 matching).

use std::fmt::Write as _;
use std::hash::BuildHasher;

/// A DN in a canonical form, so that two spellings of the same name compare equal.
///
/// The rules: RDNs and their attribute-value assertions are parsed per RFC 4514; attribute types are
/// lowercased (OIDs are kept as written); escapes (`\,`, `\2C`) are resolved; leading and trailing
/// unescaped spaces are dropped and runs of inner spaces collapse to one (the insignificant-space
/// handling of RFC 4518 §2.6.1); values are lowercased, since the attributes that name entries
/// (cn, uid, ou, dc, o, l, mail, …) use case-insensitive matching (RFC 4519) — except for the few
/// naming attributes whose equality rule is case-exact ([`CASE_EXACT`]); the assertions of a
/// multi-valued RDN are sorted; `#hex` values are kept as lowercase hex. A DN that does not parse is
/// kept as its lowercased text, so that it still has a stable key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalizedDn(String);

impl NormalizedDn {
    /// Normalizes `dn`.
    pub fn new(dn: &str) -> NormalizedDn {
        if is_plain(dn) {
            return NormalizedDn(dn.to_ascii_lowercase());
        }
        match parse(dn) {
            Some(rdns) => {
                let mut out = String::with_capacity(dn.len());
                for (i, rdn) in rdns.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    for (j, (ty, value)) in rdn.iter().enumerate() {
                        if j > 0 {
                            out.push('+');
                        }
                        out.push_str(ty);
                        out.push('=');
                        escape_into(&mut out, value);
                    }
                }
                NormalizedDn(out)
            }
            None => {
                // Surrounding white space may be all that keeps it from parsing: then the
                // normal form is that of the trimmed DN, so that normalizing is idempotent.
                let trimmed = dn.trim_matches(' ');
                if trimmed.len() != dn.len() {
                    return NormalizedDn::new(trimmed);
                }
                NormalizedDn(trimmed.to_lowercase())
            }
        }
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Hashes the normal form of `dn` with `state`, without building it for the usual plain DNs: the
/// DN index keeps these hashes rather than a normalized copy of every DN.
pub(crate) fn hash_normalized(dn: &str, state: &impl BuildHasher) -> u64 {
    const STACK: usize = 256;
    if dn.len() <= STACK && is_plain(dn) {
        let mut buf = [0u8; STACK];
        let lower = &mut buf[..dn.len()];
        lower.copy_from_slice(dn.as_bytes());
        lower.make_ascii_lowercase();
        state.hash_one(&*lower)
    } else {
        state.hash_one(NormalizedDn::new(dn).as_str().as_bytes())
    }
}

/// Whether two DNs name the same entry, compared the LDAP way.
pub(crate) fn same_dn(a: &str, b: &str) -> bool {
    a == b || NormalizedDn::new(a) == NormalizedDn::new(b)
}

/// Attribute types (lowercase) whose values keep their case in a DN key: their equality matching
/// rule is caseExactMatch or caseExactIA5Match in the usual schemas.
pub const CASE_EXACT: &[&str] = &[
    "automountkey",
    "krbprincipalname",
    "labeleduri",
    "memberuid",
];

/// Whether values of attribute type `ty` keep their case in a DN key (see [`CASE_EXACT`]).
fn case_exact(ty: &str) -> bool {
    ty.len() >= 9 && CASE_EXACT.iter().any(|t| t.eq_ignore_ascii_case(ty))
}

/// Whether `dn` is made of single-valued RDNs `type=value` of letters, digits and `.-_@` only, like
/// most DNs: then its normal form is just its lowercase, and the parser can be skipped.
fn is_plain(dn: &str) -> bool {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@');
    let bytes = dn.as_bytes();
    let mut i = 0;
    loop {
        let type_start = i;
        while i < bytes.len() && plain(bytes[i]) {
            i += 1;
        }
        if i == type_start || bytes.get(i) != Some(&b'=') || case_exact(&dn[type_start..i]) {
            return false;
        }
        i += 1;
        let value_start = i;
        while i < bytes.len() && plain(bytes[i]) {
            i += 1;
        }
        if i == value_start {
            return false;
        }
        match bytes.get(i) {
            None => return true,
            Some(b',') => i += 1,
            Some(_) => return false,
        }
    }
}

/// Appends `value` escaped as RFC 4514 §2.4 says, so that the normal form parses back to the
/// same value: the special characters, NUL, a leading `#` or space, and a trailing space.
fn escape_into(out: &mut String, value: &str) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '\0')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            let _ = write!(out, "\\{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// The first RDN of `dn` as its lowercased attribute type and its value with escapes resolved and
/// case kept (RFC 4514 §2.4), e.g. `("cn", "Ann, Smith")` for `CN=Ann\, Smith,OU=People`; `None`
/// for a DN that does not parse, or a multi-valued first RDN.
pub(crate) fn first_rdn(dn: &str) -> Option<(String, String)> {
    let bytes = dn.as_bytes();
    let eq = dn.find('=')?;
    let ty = dn[..eq].trim().to_ascii_lowercase();
    let (value, next) = parse_value(bytes, eq + 1, false)?;
    match bytes.get(next) {
        None | Some(b',' | b';') => Some((ty, value)),
        _ => None,
    }
}

/// `dn` moved along with `old`, which is now `new`: `new` if `dn` names `old`, the same RDNs above
/// `new` if `dn` is below `old`, `None` otherwise. This is how Active Directory's DN-valued
/// attributes and the DNs of an object's descendants follow a rename or move of the object.
pub(crate) fn rebase(dn: &str, old: &NormalizedDn, old_depth: usize, new: &str) -> Option<String> {
    let commas = unescaped_commas(dn);
    if commas.len() + 1 < old_depth {
        return None;
    }
    let cut = commas.len() + 1 - old_depth;
    let (head, tail) = match cut {
        0 => ("", dn),
        n => (&dn[..commas[n - 1]], &dn[commas[n - 1] + 1..]),
    };
    if NormalizedDn::new(tail) != *old {
        return None;
    }
    Some(if head.is_empty() {
        new.to_owned()
    } else {
        format!("{head},{new}")
    })
}

/// The number of RDNs of `dn`.
pub(crate) fn depth(dn: &str) -> usize {
    if dn.trim().is_empty() {
        0
    } else {
        unescaped_commas(dn).len() + 1
    }
}

/// Byte offsets of the commas of `dn` that separate RDNs (not escaped with `\`).
fn unescaped_commas(dn: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut escaped = false;
    for (i, b) in dn.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b',' => out.push(i),
            _ => {}
        }
    }
    out
}

/// Whether `dn` is within `scope` of `base` (RFC 4511 §4.5.1.2), comparing the LDAP way.
pub(crate) fn in_scope(dn: &str, base: &str, scope: syncrepl_proto::Scope) -> bool {
    let (Some(dn), Some(base)) = (parse(dn), parse(base)) else {
        return NormalizedDn::new(dn) == NormalizedDn::new(base)
            && scope != syncrepl_proto::Scope::One;
    };
    if dn.len() < base.len() || dn[dn.len() - base.len()..] != base[..] {
        return false;
    }
    let depth = dn.len() - base.len();
    match scope {
        syncrepl_proto::Scope::Base => depth == 0,
        syncrepl_proto::Scope::One => depth == 1,
        syncrepl_proto::Scope::Subtree => true,
    }
}

type Rdn = Vec<(String, String)>;

fn parse(dn: &str) -> Option<Vec<Rdn>> {
    let bytes = dn.as_bytes();
    let mut rdns = Vec::new();
    let mut rdn: Rdn = Vec::new();
    let mut i = 0;
    if dn.trim().is_empty() {
        return Some(rdns);
    }
    loop {
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' {
            if matches!(bytes[i], b',' | b'+') {
                return None;
            }
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        let ty = dn[start..i].trim().to_ascii_lowercase();
        // An attribute type is a name or an OID (RFC 4514 §3): anything else is not a DN this
        // parser can put in normal form, and the whole text is kept as it is, lowercased.
        let type_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if ty.is_empty() || !ty.bytes().all(type_char) {
            return None;
        }
        i += 1;
        let (value, next) = parse_value(bytes, i, !case_exact(&ty))?;
        i = next;
        rdn.push((ty, value));
        match bytes.get(i) {
            Some(b'+') => i += 1,
            Some(b',' | b';') => {
                rdn.sort();
                rdns.push(std::mem::take(&mut rdn));
                i += 1;
            }
            None => {
                rdn.sort();
                rdns.push(rdn);
                return Some(rdns);
            }
            Some(_) => return None,
        }
    }
}

/// Parses one attribute value starting at `i`; returns the normalized value and where it ended.
fn parse_value(bytes: &[u8], mut i: usize, fold: bool) -> Option<(String, usize)> {
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    if bytes.get(i) == Some(&b'#') {
        let start = i + 1;
        i = start;
        while i < bytes.len() && bytes[i].is_ascii_hexdigit() {
            i += 1;
        }
        let hex = std::str::from_utf8(&bytes[start..i])
            .ok()?
            .to_ascii_lowercase();
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        return Some((format!("#{hex}"), i));
    }
    let mut raw: Vec<u8> = Vec::new();
    let mut last_significant = 0;
    let mut quoted = false;
    if bytes.get(i) == Some(&b'"') {
        quoted = true;
        i += 1;
    }
    while i < bytes.len() {
        let c = bytes[i];
        if quoted {
            if c == b'"' {
                i += 1;
                break;
            }
        } else if matches!(c, b',' | b'+' | b';') {
            break;
        }
        if c == b'\\' {
            let next = *bytes.get(i + 1)?;
            if next.is_ascii_hexdigit() {
                let hi = char::from(next).to_digit(16)?;
                let lo = char::from(*bytes.get(i + 2)?).to_digit(16)?;
                raw.push((hi * 16 + lo) as u8);
                i += 3;
            } else {
                raw.push(next);
                i += 2;
            }
            last_significant = raw.len();
            continue;
        }
        raw.push(c);
        if c != b' ' {
            last_significant = raw.len();
        }
        i += 1;
    }
    raw.truncate(last_significant);
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    let text = String::from_utf8(raw).ok()?;
    let mut folded = String::with_capacity(text.len());
    let mut space = false;
    let chars: Box<dyn Iterator<Item = char>> = if fold {
        Box::new(text.chars().flat_map(char::to_lowercase))
    } else {
        Box::new(text.chars())
    };
    for c in chars {
        if c == ' ' {
            space = true;
        } else {
            if space && !folded.is_empty() {
                folded.push(' ');
            }
            space = false;
            folded.push(c);
        }
    }
    Some((folded, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `dn` fuzz target: a DN that parses only once its trailing newline is gone
    /// normalized to its lowercase, and that to its sorted multi-valued RDN.
    #[test]
    fn normalizing_a_normal_form_changes_nothing() {
        for dn in [
            ")--o=S+\0D=#+\0D=#\n",
            " CN=b+CN=a,O=x\t",
            "cn=Smith\\, John+uid=js,dc=Example",
            "UID=x, OU=People",
            "cnCN$$$$$=-,\u{417}\0\u{5a3}0 jcu=puccn,oi=#\0\0",
            "cn=\\#02c,o=\\ x\\ ,o=a\\00b\r",
        ] {
            let once = NormalizedDn::new(dn);
            assert_eq!(NormalizedDn::new(once.as_str()), once, "{dn:?}");
        }
    }

    fn same(a: &str, b: &str) {
        assert_eq!(NormalizedDn::new(a), NormalizedDn::new(b), "{a} vs {b}");
    }

    fn differ(a: &str, b: &str) {
        assert_ne!(NormalizedDn::new(a), NormalizedDn::new(b), "{a} vs {b}");
    }

    #[test]
    fn case_spacing_and_escapes() {
        same(
            "uid=Ann,ou=People,dc=Example,dc=COM",
            "UID=ann, OU=people, DC=example, DC=com",
        );
        same("cn=Smith\\, John,dc=x", "cn=smith\\2c john,dc=x");
        same("cn=  John   Smith ,dc=x", "cn=john smith,dc=x");
        same("cn=a+sn=b,dc=x", "sn=B+cn=A,dc=x");
        same("cn=\"a, b\",dc=x", "cn=a\\, b,dc=x");
        same("cn=#04024869,dc=x", "CN=#04024869,dc=x");
        same("cn=Émile,dc=x", "cn=émile,dc=x");
        differ("uid=ann,dc=x", "uid=anne,dc=x");
        differ("cn=a\\,b,dc=x", "cn=a,b=,dc=x");
        differ("cn=a+sn=b,dc=x", "cn=a,sn=b,dc=x");
        same("", "  ");
        // Case-exact naming attributes keep the case of their values.
        same(
            "krbPrincipalName=Ann@EXAMPLE.COM,dc=x",
            "KRBPRINCIPALNAME=Ann@EXAMPLE.COM,DC=X",
        );
        differ(
            "krbPrincipalName=Ann@EXAMPLE.COM,dc=x",
            "krbPrincipalName=ann@example.com,dc=x",
        );
        differ("automountKey=Home,dc=x", "automountKey=home,dc=x");
    }

    #[test]
    fn the_fast_path_agrees_with_the_parser() {
        for dn in [
            "uid=user0000001,ou=people,dc=example,dc=com",
            "UID=Ann.Smith@x,OU=People-2,DC=Example_1",
            "cn=a",
        ] {
            assert!(is_plain(dn), "{dn}");
            let parsed = parse(dn).expect("parses");
            let mut slow = String::new();
            for (i, rdn) in parsed.iter().enumerate() {
                if i > 0 {
                    slow.push(',');
                }
                for (ty, value) in rdn {
                    slow.push_str(ty);
                    slow.push('=');
                    escape_into(&mut slow, value);
                }
            }
            assert_eq!(NormalizedDn::new(dn).as_str(), slow);
        }
        for dn in [
            "cn=a=b,dc=x",
            "cn=a+sn=b",
            "cn=a b",
            "cn=,dc=x",
            "cn=a,,dc=x",
            "cn=a,",
            "=a",
            "cn",
            "automountKey=x,dc=y",
            "",
        ] {
            assert!(!is_plain(dn), "{dn}");
        }
    }

    #[test]
    fn hashes_agree_between_the_fast_path_and_the_parser() {
        let state = foldhash::fast::RandomState::default();
        let hash = |dn: &str| hash_normalized(dn, &state);
        assert_eq!(hash("UID=a,DC=x"), hash("uid=a, dc=x"));
        assert_eq!(hash("uid=a,dc=x"), hash("uid = A , dc = X"));
        assert_ne!(hash("uid=a,dc=x"), hash("uid=b,dc=x"));
        let long = format!("cn={},dc=x", "a".repeat(300));
        assert_eq!(hash(&long), hash(&long.to_uppercase()));
        assert!(same_dn("CN=A, dc=x", "cn=a,dc=x"));
        assert!(!same_dn("cn=a,dc=x", "cn=b,dc=x"));
    }

    #[test]
    fn rebasing_follows_a_rename() {
        let old = NormalizedDn::new("OU=Old,DC=x");
        let rebase = |dn| rebase(dn, &old, 2, "OU=New,DC=x");
        assert_eq!(rebase("ou=old, dc=X").as_deref(), Some("OU=New,DC=x"));
        assert_eq!(
            rebase(r"CN=a\,b,OU=Old,DC=x").as_deref(),
            Some(r"CN=a\,b,OU=New,DC=x")
        );
        assert_eq!(rebase("CN=a,OU=Older,DC=x"), None);
        assert_eq!(rebase("DC=x"), None);
        assert_eq!(rebase("not a dn"), None);
        assert_eq!(depth(r"CN=a\,b,OU=Old,DC=x"), 3);
        assert_eq!(depth(""), 0);
    }

    #[test]
    fn first_rdns_and_scopes() {
        use syncrepl_proto::Scope;
        assert_eq!(
            first_rdn(r"CN=Ann\, Smith,OU=People,DC=example"),
            Some(("cn".into(), "Ann, Smith".into()))
        );
        assert_eq!(
            first_rdn(r"CN=u8\0ADEL:0eb3,CN=Deleted Objects,DC=x"),
            Some(("cn".into(), "u8\nDEL:0eb3".into()))
        );
        assert_eq!(first_rdn("not a dn"), None);
        let base = "OU=People,DC=example,DC=test";
        assert!(in_scope(
            "cn=u1,ou=people,dc=Example,dc=test",
            base,
            Scope::Subtree
        ));
        assert!(in_scope(
            "cn=u1,ou=people,dc=Example,dc=test",
            base,
            Scope::One
        ));
        assert!(!in_scope(
            "cn=u1,ou=people,dc=Example,dc=test",
            base,
            Scope::Base
        ));
        assert!(in_scope(base, base, Scope::Base));
        assert!(in_scope(base, base, Scope::Subtree));
        assert!(!in_scope(base, base, Scope::One));
        assert!(!in_scope(
            "cn=x,cn=u1,OU=People,DC=example,DC=test",
            base,
            Scope::One
        ));
        assert!(!in_scope(
            "cn=u7,ou=Elsewhere,dc=example,dc=test",
            base,
            Scope::Subtree
        ));
        assert!(!in_scope("dc=example,dc=test", base, Scope::Subtree));
    }

    #[test]
    fn canonical_text_escapes_specials() {
        assert_eq!(
            NormalizedDn::new("CN=Smith\\, John+UID=js, DC=Example").as_str(),
            "cn=smith\\2c john+uid=js,dc=example"
        );
        assert_eq!(NormalizedDn::new("garbage").as_str(), "garbage");
        assert_eq!(NormalizedDn::new("cn=a\\").as_str(), "cn=a\\");
    }
}
