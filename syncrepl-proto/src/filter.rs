//! Search filters: the Filter of RFC 4511 §4.5.1.7 as a type of this crate ([`SearchFilter`]), read
//! from and written back to its string form (RFC 4515).
//!
//! The request encoder turns a [`SearchFilter`] into rasn-ldap's `Filter`; that type stays private
//! to the crate.

use std::fmt;
use std::str::FromStr;

use rasn::types::{OctetString, SetOf};
use rasn_ldap::{
    AttributeValueAssertion, Filter, LdapString, MatchingRuleAssertion, SubstringChoice,
    SubstringFilter,
};

/// Why a filter string could not be parsed; `position` is a byte offset into the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid search filter at byte {position}: {reason}")]
pub struct FilterError {
    /// Byte offset of the problem.
    pub position: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

/// A search filter: the `Filter` CHOICE of RFC 4511 §4.5.1.7, with the attribute descriptions as
/// text and the assertion values as the octets they stand for (RFC 4515 escapes resolved).
///
/// [`SearchFilter::parse`] reads the string form of RFC 4515 (`(&(objectClass=person)(uid=a*))`),
/// and [`Display`](fmt::Display) writes it back, so that `SearchFilter::parse(&f.to_string())`
/// gives `f` again for every filter `parse` can return. Besides encoding a search, a filter can be
/// evaluated by the client itself, which a mirror needs when the server cannot apply it (Active
/// Directory's DirSync ignores the filter's scope and searches from a naming-context root).
///
/// Attribute descriptions are kept as written (`cn;lang-en`, `2.5.4.3`); comparing them is the
/// evaluator's business (they are case-insensitive, RFC 4512 §2.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SearchFilter {
    /// `(&…)`: TRUE when every element is TRUE, FALSE when one is FALSE, else Undefined; the empty
    /// `(&)` is TRUE (RFC 4511 §4.5.1.7, RFC 4526).
    And(Vec<SearchFilter>),
    /// `(|…)`: TRUE when one element is TRUE, FALSE when every one is FALSE, else Undefined; the
    /// empty `(|)` is FALSE (RFC 4511 §4.5.1.7, RFC 4526).
    Or(Vec<SearchFilter>),
    /// `(!…)`: TRUE and FALSE swap, Undefined stays Undefined (RFC 4511 §4.5.1.7).
    Not(Box<SearchFilter>),
    /// `(attr=value)`: equalityMatch (RFC 4511 §4.5.1.7.1), by the attribute's EQUALITY rule.
    Equality {
        /// The attribute description.
        attribute: String,
        /// The assertion value.
        value: Vec<u8>,
    },
    /// `(attr=initial*any*…*final)`: substrings (RFC 4511 §4.5.1.7.2), by the attribute's SUBSTR
    /// rule. A value matches when it starts with `initial`, then contains each of `any` in order
    /// without overlap, then ends with `final_`.
    Substrings {
        /// The attribute description.
        attribute: String,
        /// What the value starts with.
        initial: Option<Vec<u8>>,
        /// What the value contains, in this order, between `initial` and `final_`.
        any: Vec<Vec<u8>>,
        /// What the value ends with (`final` is a Rust keyword).
        final_: Option<Vec<u8>>,
    },
    /// `(attr>=value)`: greaterOrEqual (RFC 4511 §4.5.1.7.3), by the attribute's ORDERING rule.
    GreaterOrEqual {
        /// The attribute description.
        attribute: String,
        /// The assertion value.
        value: Vec<u8>,
    },
    /// `(attr<=value)`: lessOrEqual (RFC 4511 §4.5.1.7.4), by the ORDERING or the EQUALITY rule.
    LessOrEqual {
        /// The attribute description.
        attribute: String,
        /// The assertion value.
        value: Vec<u8>,
    },
    /// `(attr=*)`: present (RFC 4511 §4.5.1.7.5), TRUE when the entry has the attribute.
    Present {
        /// The attribute description.
        attribute: String,
    },
    /// `(attr~=value)`: approxMatch (RFC 4511 §4.5.1.7.6), by a rule of the server's choosing.
    Approx {
        /// The attribute description.
        attribute: String,
        /// The assertion value.
        value: Vec<u8>,
    },
    /// `(attr:dn:rule:=value)`: extensibleMatch (RFC 4511 §4.5.1.7.7), by the named matching rule,
    /// or by the attribute's EQUALITY rule when no rule is named. At least one of `matching_rule`
    /// and `attribute` is present in a parsed filter.
    Extensible {
        /// The matching rule, by OID or name (`1.2.840.113556.1.4.803`, `caseExactMatch`).
        matching_rule: Option<String>,
        /// The attribute description; without one, every attribute the rule applies to.
        attribute: Option<String>,
        /// The assertion value.
        value: Vec<u8>,
        /// `:dn`: the attribute-value assertions of the entry's DN are matched too.
        dn_attributes: bool,
    },
}

impl SearchFilter {
    /// Parses the string form of RFC 4515, such as `(&(objectClass=person)(!(uid=admin)))`.
    ///
    /// As `ldapsearch` does, a single item may be written without its parentheses (`uid=ann`).
    /// Filters nest at most 64 deep, so that hostile input cannot exhaust the stack.
    pub fn parse(text: &str) -> Result<SearchFilter, FilterError> {
        let trimmed = text.trim();
        let offset = text.len() - text.trim_start().len();
        let mut p = Parser {
            s: trimmed.as_bytes(),
            pos: 0,
            offset,
        };
        let filter = if trimmed.starts_with('(') {
            p.filter(0)?
        } else {
            p.item(trimmed.len())?
        };
        if p.pos != p.s.len() {
            return Err(p.error("unexpected text after the filter"));
        }
        Ok(filter)
    }

    /// The attribute descriptions the filter names, each once (compared ignoring ASCII case), in
    /// the order they first appear: an entry can only be evaluated against the filter on the
    /// client's side if it was read with at least these attributes.
    pub fn attributes(&self) -> Vec<&str> {
        fn walk<'a>(f: &'a SearchFilter, out: &mut Vec<&'a str>) {
            let name = match f {
                SearchFilter::And(items) | SearchFilter::Or(items) => {
                    items.iter().for_each(|i| walk(i, out));
                    return;
                }
                SearchFilter::Not(inner) => return walk(inner, out),
                SearchFilter::Equality { attribute, .. }
                | SearchFilter::Substrings { attribute, .. }
                | SearchFilter::GreaterOrEqual { attribute, .. }
                | SearchFilter::LessOrEqual { attribute, .. }
                | SearchFilter::Present { attribute }
                | SearchFilter::Approx { attribute, .. } => attribute.as_str(),
                SearchFilter::Extensible { attribute, .. } => match attribute {
                    Some(a) => a.as_str(),
                    None => return,
                },
            };
            if !out.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
                out.push(name);
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The ASN.1 structure that goes into a SearchRequest (RFC 4511 §4.5.1.7).
    ///
    /// Empty substrings are left out, and a substrings filter left with none becomes a presence
    /// filter, as its string form (`(cn=*)`) would: the ASN.1 type wants at least one.
    pub(crate) fn to_ldap(&self) -> Filter {
        let ava = |attribute: &str, value: &[u8]| {
            AttributeValueAssertion::new(
                LdapString::from(attribute),
                OctetString::from_slice(value),
            )
        };
        let list = |items: &[SearchFilter]| {
            SetOf::from_vec(items.iter().map(SearchFilter::to_ldap).collect())
        };
        match self {
            SearchFilter::And(items) => Filter::And(list(items)),
            SearchFilter::Or(items) => Filter::Or(list(items)),
            SearchFilter::Not(inner) => Filter::Not(Box::new(inner.to_ldap())),
            SearchFilter::Equality { attribute, value } => {
                Filter::EqualityMatch(ava(attribute, value))
            }
            SearchFilter::Substrings {
                attribute,
                initial,
                any,
                final_,
            } => {
                let piece = |v: &Vec<u8>| (!v.is_empty()).then(|| OctetString::from_slice(v));
                let substrings: Vec<SubstringChoice> = initial
                    .iter()
                    .filter_map(|v| piece(v).map(SubstringChoice::Initial))
                    .chain(
                        any.iter()
                            .filter_map(|v| piece(v).map(SubstringChoice::Any)),
                    )
                    .chain(
                        final_
                            .iter()
                            .filter_map(|v| piece(v).map(SubstringChoice::Final)),
                    )
                    .collect();
                if substrings.is_empty() {
                    Filter::Present(LdapString::from(attribute.as_str()))
                } else {
                    Filter::Substrings(SubstringFilter::new(
                        LdapString::from(attribute.as_str()),
                        substrings,
                    ))
                }
            }
            SearchFilter::GreaterOrEqual { attribute, value } => {
                Filter::GreaterOrEqual(ava(attribute, value))
            }
            SearchFilter::LessOrEqual { attribute, value } => {
                Filter::LessOrEqual(ava(attribute, value))
            }
            SearchFilter::Present { attribute } => {
                Filter::Present(LdapString::from(attribute.as_str()))
            }
            SearchFilter::Approx { attribute, value } => Filter::ApproxMatch(ava(attribute, value)),
            SearchFilter::Extensible {
                matching_rule,
                attribute,
                value,
                dn_attributes,
            } => Filter::ExtensibleMatch(MatchingRuleAssertion::new(
                matching_rule.as_deref().map(LdapString::from),
                attribute.as_deref().map(LdapString::from),
                OctetString::from_slice(value),
                *dn_attributes,
            )),
        }
    }
}

impl FromStr for SearchFilter {
    type Err = FilterError;

    /// See [`SearchFilter::parse`].
    fn from_str(text: &str) -> Result<SearchFilter, FilterError> {
        SearchFilter::parse(text)
    }
}

impl fmt::Display for SearchFilter {
    /// The string form of RFC 4515 §3, always parenthesized. In values, `*`, `(`, `)`, `\`, NUL,
    /// the other control characters and the octets that are not UTF-8 are escaped as `\xx`.
    ///
    /// Empty substrings are left out (they constrain nothing), so a substrings filter without any
    /// is written `(attr=*)`. Attribute descriptions and matching rules are written as they are:
    /// RFC 4515 has no escapes for them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SearchFilter::And(items) | SearchFilter::Or(items) => {
                f.write_str(if matches!(self, SearchFilter::And(_)) {
                    "(&"
                } else {
                    "(|"
                })?;
                for item in items {
                    write!(f, "{item}")?;
                }
                f.write_str(")")
            }
            SearchFilter::Not(inner) => write!(f, "(!{inner})"),
            SearchFilter::Equality { attribute, value } => {
                write!(f, "({attribute}={})", Escaped(value))
            }
            SearchFilter::Substrings {
                attribute,
                initial,
                any,
                final_,
            } => {
                write!(f, "({attribute}=")?;
                if let Some(v) = initial {
                    write!(f, "{}", Escaped(v))?;
                }
                f.write_str("*")?;
                for v in any.iter().filter(|v| !v.is_empty()) {
                    write!(f, "{}*", Escaped(v))?;
                }
                if let Some(v) = final_ {
                    write!(f, "{}", Escaped(v))?;
                }
                f.write_str(")")
            }
            SearchFilter::GreaterOrEqual { attribute, value } => {
                write!(f, "({attribute}>={})", Escaped(value))
            }
            SearchFilter::LessOrEqual { attribute, value } => {
                write!(f, "({attribute}<={})", Escaped(value))
            }
            SearchFilter::Present { attribute } => write!(f, "({attribute}=*)"),
            SearchFilter::Approx { attribute, value } => {
                write!(f, "({attribute}~={})", Escaped(value))
            }
            SearchFilter::Extensible {
                matching_rule,
                attribute,
                value,
                dn_attributes,
            } => {
                f.write_str("(")?;
                if let Some(a) = attribute {
                    f.write_str(a)?;
                }
                if *dn_attributes {
                    f.write_str(":dn")?;
                }
                if let Some(rule) = matching_rule {
                    write!(f, ":{rule}")?;
                }
                write!(f, ":={})", Escaped(value))
            }
        }
    }
}

/// An assertion value in the escaped form of RFC 4515 §3.
struct Escaped<'a>(&'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                if matches!(c, '*' | '(' | ')' | '\\') || c.is_ascii_control() {
                    write!(f, "\\{:02x}", c as u32)?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Checks that `text` is an RFC 4515 filter such as `(&(objectClass=person)(!(uid=admin)))`, as
/// a sync search will encode it: a URL's filter is checked before anything connects.
///
/// As `ldapsearch` does, a single item may be written without its parentheses (`uid=ann`).
pub fn check_filter(text: &str) -> Result<(), FilterError> {
    SearchFilter::parse(text).map(|_| ())
}

/// Parses an RFC 4515 filter into the ASN.1 structure of RFC 4511 §4.5.1.7 (see
/// [`SearchFilter::parse`]).
pub(crate) fn parse_filter(text: &str) -> Result<Filter, FilterError> {
    SearchFilter::parse(text).map(|f| f.to_ldap())
}

/// Filters nest at most this deep, so that hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    offset: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> FilterError {
        FilterError {
            position: self.offset + self.pos,
            reason,
        }
    }

    fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), FilterError> {
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    fn filter(&mut self, depth: usize) -> Result<SearchFilter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error("filter nested too deeply"));
        }
        self.expect(b'(', "expected '('")?;
        let filter = match self.s.get(self.pos) {
            Some(b'&') => {
                self.pos += 1;
                SearchFilter::And(self.list(depth)?)
            }
            Some(b'|') => {
                self.pos += 1;
                SearchFilter::Or(self.list(depth)?)
            }
            Some(b'!') => {
                self.pos += 1;
                SearchFilter::Not(Box::new(self.filter(depth + 1)?))
            }
            Some(_) => {
                let end = self.item_end()?;
                self.item(end)?
            }
            None => return Err(self.error("unterminated filter")),
        };
        self.expect(b')', "expected ')'")?;
        Ok(filter)
    }

    fn list(&mut self, depth: usize) -> Result<Vec<SearchFilter>, FilterError> {
        let mut items = Vec::new();
        while self.s.get(self.pos) == Some(&b'(') {
            items.push(self.filter(depth + 1)?);
        }
        Ok(items)
    }

    /// The end of an item: the next unescaped ')' or the end of the text.
    fn item_end(&self) -> Result<usize, FilterError> {
        let rest = self.s.get(self.pos..).unwrap_or_default();
        match rest.iter().position(|&c| c == b')' || c == b'(') {
            Some(n) if rest.get(n) == Some(&b')') => Ok(self.pos + n),
            Some(n) => Err(FilterError {
                position: self.offset + self.pos + n,
                reason: "unescaped '(' in a value (write it as \\28)",
            }),
            None => Err(self.error("unterminated filter")),
        }
    }

    fn item(&mut self, end: usize) -> Result<SearchFilter, FilterError> {
        let start = self.pos;
        let item = self.s.get(start..end).unwrap_or_default();
        let eq = item
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| self.error("expected an attribute, an operator and a value"))?;
        let (lhs, op) = match eq.checked_sub(1).and_then(|i| item.get(i)) {
            Some(b'~') => (&item[..eq - 1], b'~'),
            Some(b'>') => (&item[..eq - 1], b'>'),
            Some(b'<') => (&item[..eq - 1], b'<'),
            Some(b':') => (&item[..eq - 1], b':'),
            _ => (&item[..eq], b'='),
        };
        let value_start = start + eq + 1;
        let raw_value = &item[eq + 1..];
        self.pos = end;
        if op == b':' {
            return self.extensible(lhs, raw_value, start, value_start);
        }
        let attribute = attribute(lhs).ok_or(FilterError {
            position: self.offset + start,
            reason: "invalid attribute description",
        })?;
        let value = |bytes: &[u8], at: usize| {
            unescape(bytes).map_err(|i| FilterError {
                position: self.offset + at + i,
                reason: "invalid escape (expected a backslash and two hex digits)",
            })
        };
        Ok(match op {
            b'~' => SearchFilter::Approx {
                attribute,
                value: value(raw_value, value_start)?,
            },
            b'>' => SearchFilter::GreaterOrEqual {
                attribute,
                value: value(raw_value, value_start)?,
            },
            b'<' => SearchFilter::LessOrEqual {
                attribute,
                value: value(raw_value, value_start)?,
            },
            _ if raw_value == b"*" => SearchFilter::Present { attribute },
            _ if raw_value.contains(&b'*') => {
                let parts: Vec<&[u8]> = raw_value.split(|&c| c == b'*').collect();
                let last = parts.len() - 1;
                let (mut initial, mut any, mut final_) = (None, Vec::new(), None);
                let mut at = value_start;
                for (i, part) in parts.iter().enumerate() {
                    if !part.is_empty() {
                        let v = value(part, at)?;
                        match i {
                            0 => initial = Some(v),
                            i if i == last => final_ = Some(v),
                            _ => any.push(v),
                        }
                    } else if i != 0 && i != last {
                        return Err(FilterError {
                            position: self.offset + at,
                            reason: "empty substring between two '*'",
                        });
                    }
                    at += part.len() + 1;
                }
                SearchFilter::Substrings {
                    attribute,
                    initial,
                    any,
                    final_,
                }
            }
            _ => SearchFilter::Equality {
                attribute,
                value: value(raw_value, value_start)?,
            },
        })
    }

    fn extensible(
        &self,
        lhs: &[u8],
        raw_value: &[u8],
        start: usize,
        value_start: usize,
    ) -> Result<SearchFilter, FilterError> {
        let bad = |reason| FilterError {
            position: self.offset + start,
            reason,
        };
        let text = std::str::from_utf8(lhs).map_err(|_| bad("not UTF-8"))?;
        let mut parts = text.split(':');
        let attr_part = parts.next().unwrap_or_default();
        let mut dn_attributes = false;
        let mut matching_rule = None;
        for part in parts {
            if part.eq_ignore_ascii_case("dn") && !dn_attributes && matching_rule.is_none() {
                dn_attributes = true;
            } else if matching_rule.is_none() && !part.is_empty() {
                // An OID or a name (RFC 4512 §1.4), with `attribute`'s leniency: a rule has no
                // escapes, so anything else could not be written back.
                if !part
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
                {
                    return Err(bad("invalid matching rule"));
                }
                matching_rule = Some(part.to_owned());
            } else {
                return Err(bad("invalid extensible match"));
            }
        }
        let attribute = if attr_part.is_empty() {
            if matching_rule.is_none() {
                return Err(bad(
                    "an extensible match needs an attribute or a matching rule",
                ));
            }
            None
        } else {
            Some(attribute(attr_part.as_bytes()).ok_or(bad("invalid attribute description"))?)
        };
        let value = unescape(raw_value).map_err(|i| FilterError {
            position: self.offset + value_start + i,
            reason: "invalid escape (expected a backslash and two hex digits)",
        })?;
        Ok(SearchFilter::Extensible {
            matching_rule,
            attribute,
            value,
            dn_attributes,
        })
    }
}

/// Checks an attribute description: a name or OID, then options after ';' (RFC 4512 §2.5).
fn attribute(raw: &[u8]) -> Option<String> {
    let ok = !raw.is_empty()
        && raw
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b';' | b'_'));
    if ok {
        std::str::from_utf8(raw).ok().map(str::to_owned)
    } else {
        None
    }
}

/// Undoes RFC 4515 value escaping (`\2a` for `*`); on error gives the offset of the bad escape.
fn unescape(raw: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c == b'\\' {
            let hi = raw.get(i + 1).and_then(|&h| char::from(h).to_digit(16));
            let lo = raw.get(i + 2).and_then(|&l| char::from(l).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
                _ => return Err(i),
            }
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn eq(a: &str, v: &[u8]) -> Filter {
        Filter::EqualityMatch(AttributeValueAssertion::new(
            a.into(),
            OctetString::from(v.to_vec()),
        ))
    }

    #[test]
    fn simple_items() {
        assert_eq!(parse_filter("(uid=ann)"), Ok(eq("uid", b"ann")));
        assert_eq!(parse_filter("uid=ann"), Ok(eq("uid", b"ann")));
        assert_eq!(
            parse_filter("(objectClass=*)"),
            Ok(Filter::Present("objectClass".into()))
        );
        assert_eq!(parse_filter("(cn=a\\2ab\\29)"), Ok(eq("cn", b"a*b)")));
        assert!(matches!(
            parse_filter("(age>=30)"),
            Ok(Filter::GreaterOrEqual(_))
        ));
        assert!(matches!(
            parse_filter("(age<=30)"),
            Ok(Filter::LessOrEqual(_))
        ));
        assert!(matches!(
            parse_filter("(cn~=ann)"),
            Ok(Filter::ApproxMatch(_))
        ));
    }

    #[test]
    fn substrings() {
        let Ok(Filter::Substrings(s)) = parse_filter("(cn=a*b*c)") else {
            panic!("not a substring filter");
        };
        assert_eq!(
            s.substrings,
            vec![
                SubstringChoice::Initial(OctetString::from_static(b"a")),
                SubstringChoice::Any(OctetString::from_static(b"b")),
                SubstringChoice::Final(OctetString::from_static(b"c")),
            ]
        );
        let Ok(Filter::Substrings(s)) = parse_filter("(cn=*b*)") else {
            panic!("not a substring filter");
        };
        assert_eq!(
            s.substrings,
            vec![SubstringChoice::Any(OctetString::from_static(b"b"))]
        );
        assert!(parse_filter("(cn=a**b)").is_err());
    }

    #[test]
    fn composite_filters() {
        let f = parse_filter("(&(objectClass=person)(|(uid=a)(uid=b))(!(cn=x)))").expect("valid");
        let Filter::And(items) = f else {
            panic!("not an and");
        };
        assert_eq!(items.len(), 3);
        assert_eq!(
            parse_filter("(&)"),
            Ok(Filter::And(SetOf::from_vec(vec![])))
        );
    }

    #[test]
    fn extensible_match() {
        let Ok(Filter::ExtensibleMatch(m)) = parse_filter("(ou:dn:caseExactMatch:=People)") else {
            panic!("not extensible");
        };
        assert!(m.dn_attributes);
        assert_eq!(
            m.matching_rule.as_deref().map(String::as_str),
            Some("caseExactMatch")
        );
        assert!(parse_filter("(:=x)").is_err());
        assert_eq!(
            parse_filter(":(:=").map_err(|e| e.reason),
            Err("invalid matching rule")
        );
        assert!(parse_filter("(cn:a b:=x)").is_err());
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(parse_filter("(uid=ann").map_err(|e| e.position), Err(1));
        assert_eq!(parse_filter("(cn=\\zz)").map_err(|e| e.position), Err(4));
        assert_eq!(parse_filter("(uid=a))").map_err(|e| e.position), Err(7));
        assert!(parse_filter("(u id=a)").is_err());
        assert!(parse_filter("()").is_err());
        assert!(parse_filter(&"(!".repeat(100)).is_err());
    }

    fn text(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn parses_into_the_public_type() {
        assert_eq!(
            SearchFilter::parse(" uid=ann "),
            Ok(SearchFilter::Equality {
                attribute: "uid".into(),
                value: text("ann"),
            })
        );
        assert_eq!(
            "(&(objectCategory=person)(!(mail=*))(cn=a*b*c))".parse::<SearchFilter>(),
            Ok(SearchFilter::And(vec![
                SearchFilter::Equality {
                    attribute: "objectCategory".into(),
                    value: text("person"),
                },
                SearchFilter::Not(Box::new(SearchFilter::Present {
                    attribute: "mail".into(),
                })),
                SearchFilter::Substrings {
                    attribute: "cn".into(),
                    initial: Some(text("a")),
                    any: vec![text("b")],
                    final_: Some(text("c")),
                },
            ]))
        );
        assert_eq!(
            SearchFilter::parse("(userAccountControl:1.2.840.113556.1.4.803:=2)"),
            Ok(SearchFilter::Extensible {
                matching_rule: Some("1.2.840.113556.1.4.803".into()),
                attribute: Some("userAccountControl".into()),
                value: text("2"),
                dn_attributes: false,
            })
        );
        assert_eq!(
            SearchFilter::parse("(objectGUID=\\01\\ff)"),
            Ok(SearchFilter::Equality {
                attribute: "objectGUID".into(),
                value: vec![0x01, 0xff],
            })
        );
        // Same errors, at the same places, as through the rasn form.
        for bad in [
            "(uid=ann",
            "(cn=\\zz)",
            "(uid=a))",
            "(cn=a**b)",
            "(:=x)",
            "x",
        ] {
            assert_eq!(
                SearchFilter::parse(bad).map(|_| ()),
                parse_filter(bad).map(|_| ())
            );
        }
        let deep = format!("{}(a=b){}", "(!".repeat(64), ")".repeat(64));
        assert!(SearchFilter::parse(&deep).is_ok());
        let deeper = format!("{}(a=b){}", "(!".repeat(65), ")".repeat(65));
        assert_eq!(
            SearchFilter::parse(&deeper).map_err(|e| e.reason),
            Err("filter nested too deeply")
        );
    }

    #[test]
    fn displays_the_string_form() {
        for (text, shown) in [
            ("uid=ann", "(uid=ann)"),
            ("(cn=a\\2ab\\29)", "(cn=a\\2ab\\29)"),
            ("(cn=*b*)", "(cn=*b*)"),
            ("(cn=a*)", "(cn=a*)"),
            ("(cn=*a)", "(cn=*a)"),
            ("(&(a>=1)(b<=2)(c~=x)(d=*))", "(&(a>=1)(b<=2)(c~=x)(d=*))"),
            ("(|(!(a=b)))", "(|(!(a=b)))"),
            ("(&)", "(&)"),
            ("(|)", "(|)"),
            (
                "(ou:DN:caseExactMatch:=People)",
                "(ou:dn:caseExactMatch:=People)",
            ),
            ("(:dn:2.5.13.5:=x)", "(:dn:2.5.13.5:=x)"),
            ("(cn:=x)", "(cn:=x)"),
            ("(cn=\\c3\\a9t\\c3)", "(cn=ét\\c3)"),
            ("(cn=\\00\\5c\\0a)", "(cn=\\00\\5c\\0a)"),
            ("(cn==)", "(cn==)"),
            ("(cn=)", "(cn=)"),
        ] {
            let filter = SearchFilter::parse(text).expect(text);
            assert_eq!(filter.to_string(), shown, "{text}");
            assert_eq!(SearchFilter::parse(shown), Ok(filter));
        }
        let hollow = SearchFilter::Substrings {
            attribute: "cn".into(),
            initial: Some(Vec::new()),
            any: vec![Vec::new()],
            final_: None,
        };
        assert_eq!(hollow.to_string(), "(cn=*)");
        assert_eq!(hollow.to_ldap(), Filter::Present("cn".into()));
    }

    #[test]
    fn lists_the_attributes_named() {
        let f = SearchFilter::parse("(&(cn=a)(|(CN=b)(!(mail=*)))(:dn:2.5.13.5:=x)(uid:=y))")
            .expect("valid");
        assert_eq!(f.attributes(), ["cn", "mail", "uid"]);
    }

    /// Filters of every kind that `parse` can return.
    fn any_filter() -> impl Strategy<Value = SearchFilter> {
        let attribute = "[a-zA-Z][a-zA-Z0-9-]{0,6}(;[a-z0-9-]{1,5})?|[0-9]\\.[0-9]{1,3}";
        let value = || prop::collection::vec(any::<u8>(), 0..8);
        let piece = || prop::collection::vec(any::<u8>(), 1..6);
        let rule =
            "[a-zA-Z0-9.-]{1,12}".prop_filter("dn is :dn", |r| !r.eq_ignore_ascii_case("dn"));
        let leaf = prop_oneof![
            (attribute, value())
                .prop_map(|(attribute, value)| SearchFilter::Equality { attribute, value }),
            (attribute, value())
                .prop_map(|(attribute, value)| SearchFilter::GreaterOrEqual { attribute, value }),
            (attribute, value())
                .prop_map(|(attribute, value)| SearchFilter::LessOrEqual { attribute, value }),
            (attribute, value())
                .prop_map(|(attribute, value)| SearchFilter::Approx { attribute, value }),
            attribute.prop_map(|attribute| SearchFilter::Present { attribute }),
            (
                attribute,
                prop::option::of(piece()),
                prop::collection::vec(piece(), 0..3),
                prop::option::of(piece())
            )
                .prop_filter("one substring at least", |(_, i, a, f)| {
                    i.is_some() || !a.is_empty() || f.is_some()
                })
                .prop_map(|(attribute, initial, any, final_)| {
                    SearchFilter::Substrings {
                        attribute,
                        initial,
                        any,
                        final_,
                    }
                }),
            (
                prop::option::of(rule),
                prop::option::of(attribute),
                value(),
                any::<bool>()
            )
                .prop_filter("a rule or an attribute", |(r, a, _, _)| {
                    r.is_some() || a.is_some()
                })
                .prop_map(|(matching_rule, attribute, value, dn_attributes)| {
                    SearchFilter::Extensible {
                        matching_rule,
                        attribute,
                        value,
                        dn_attributes,
                    }
                }),
        ];
        leaf.prop_recursive(5, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(SearchFilter::And),
                prop::collection::vec(inner.clone(), 0..4).prop_map(SearchFilter::Or),
                inner.prop_map(|f| SearchFilter::Not(Box::new(f))),
            ]
        })
    }

    proptest! {
        #[test]
        fn display_parses_back(filter in any_filter()) {
            let text = filter.to_string();
            prop_assert_eq!(SearchFilter::parse(&text), Ok(filter), "{}", text);
        }

        #[test]
        fn parse_never_panics(text in "[a-z()&|!=*~<>:\\\\0-9 ]{0,40}") {
            if let Ok(filter) = SearchFilter::parse(&text) {
                prop_assert_eq!(SearchFilter::parse(&filter.to_string()), Ok(filter));
            }
        }
    }
}
