//! Search filters in their string form (RFC 4515), parsed into rasn-ldap's `Filter`.

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

/// Checks that `text` is an RFC 4515 filter such as `(&(objectClass=person)(!(uid=admin)))`, as
/// a sync search will encode it: a URL's filter is checked before anything connects.
///
/// As `ldapsearch` does, a single item may be written without its parentheses (`uid=ann`).
pub fn check_filter(text: &str) -> Result<(), FilterError> {
    parse_filter(text).map(|_| ())
}

/// Parses an RFC 4515 filter into the ASN.1 structure of RFC 4511 §4.5.1.7 (see
/// [`check_filter`]).
pub(crate) fn parse_filter(text: &str) -> Result<Filter, FilterError> {
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

    fn filter(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error("filter nested too deeply"));
        }
        self.expect(b'(', "expected '('")?;
        let filter = match self.s.get(self.pos) {
            Some(b'&') => {
                self.pos += 1;
                Filter::And(self.list(depth)?)
            }
            Some(b'|') => {
                self.pos += 1;
                Filter::Or(self.list(depth)?)
            }
            Some(b'!') => {
                self.pos += 1;
                Filter::Not(Box::new(self.filter(depth + 1)?))
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

    fn list(&mut self, depth: usize) -> Result<SetOf<Filter>, FilterError> {
        let mut items = Vec::new();
        while self.s.get(self.pos) == Some(&b'(') {
            items.push(self.filter(depth + 1)?);
        }
        Ok(SetOf::from_vec(items))
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

    fn item(&mut self, end: usize) -> Result<Filter, FilterError> {
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
        let attr = attribute(lhs).ok_or(FilterError {
            position: self.offset + start,
            reason: "invalid attribute description",
        })?;
        let value = |bytes: &[u8], at: usize| {
            unescape(bytes).map_err(|i| FilterError {
                position: self.offset + at + i,
                reason: "invalid escape (expected a backslash and two hex digits)",
            })
        };
        let ava = |v: OctetString| AttributeValueAssertion::new(attr.clone(), v);
        Ok(match op {
            b'~' => Filter::ApproxMatch(ava(value(raw_value, value_start)?)),
            b'>' => Filter::GreaterOrEqual(ava(value(raw_value, value_start)?)),
            b'<' => Filter::LessOrEqual(ava(value(raw_value, value_start)?)),
            _ if raw_value == b"*" => Filter::Present(attr),
            _ if raw_value.contains(&b'*') => {
                let parts: Vec<&[u8]> = raw_value.split(|&c| c == b'*').collect();
                let last = parts.len() - 1;
                let mut substrings = Vec::new();
                let mut at = value_start;
                for (i, part) in parts.iter().enumerate() {
                    if !part.is_empty() {
                        let v = value(part, at)?;
                        substrings.push(match i {
                            0 => SubstringChoice::Initial(v),
                            i if i == last => SubstringChoice::Final(v),
                            _ => SubstringChoice::Any(v),
                        });
                    } else if i != 0 && i != last {
                        return Err(FilterError {
                            position: self.offset + at,
                            reason: "empty substring between two '*'",
                        });
                    }
                    at += part.len() + 1;
                }
                Filter::Substrings(SubstringFilter::new(attr, substrings))
            }
            _ => Filter::EqualityMatch(ava(value(raw_value, value_start)?)),
        })
    }

    fn extensible(
        &self,
        lhs: &[u8],
        raw_value: &[u8],
        start: usize,
        value_start: usize,
    ) -> Result<Filter, FilterError> {
        let bad = |reason| FilterError {
            position: self.offset + start,
            reason,
        };
        let text = std::str::from_utf8(lhs).map_err(|_| bad("not UTF-8"))?;
        let mut parts = text.split(':');
        let attr_part = parts.next().unwrap_or_default();
        let mut dn_attributes = false;
        let mut rule = None;
        for part in parts {
            if part.eq_ignore_ascii_case("dn") && !dn_attributes && rule.is_none() {
                dn_attributes = true;
            } else if rule.is_none() && !part.is_empty() {
                rule = Some(LdapString::from(part));
            } else {
                return Err(bad("invalid extensible match"));
            }
        }
        let attr = if attr_part.is_empty() {
            if rule.is_none() {
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
        Ok(Filter::ExtensibleMatch(MatchingRuleAssertion::new(
            rule,
            attr,
            value,
            dn_attributes,
        )))
    }
}

/// Checks an attribute description: a name or OID, then options after ';' (RFC 4512 §2.5).
fn attribute(raw: &[u8]) -> Option<LdapString> {
    let ok = !raw.is_empty()
        && raw
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b';' | b'_'));
    if ok {
        std::str::from_utf8(raw).ok().map(LdapString::from)
    } else {
        None
    }
}

/// Undoes RFC 4515 value escaping (`\2a` for `*`); on error gives the offset of the bad escape.
fn unescape(raw: &[u8]) -> Result<OctetString, usize> {
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
    Ok(OctetString::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
