//! Search filters evaluated on the client's side, against a stored entry (RFC 4511 §4.5.1.7).
//!
//! Active Directory's DirSync searches from a naming-context root and ignores the filter's scope,
//! so a mirror fed by it applies the user's filter itself, to each entry once the changed
//! attributes are merged into the stored ones: an entry that stops matching is a delete, one that
//! starts matching an add. [`matches`] is that test. There is no schema on this side, so the
//! matching rules are the ones Active Directory and most LDAP users expect of the usual attributes
//! (see [`matches`]).

use std::cmp::Ordering;
use std::str;

use syncrepl_proto::{AttributeList, SearchFilter};

use crate::dn::same_dn;

/// Whether an entry with `attributes` matches `filter`: whether the filter evaluates to TRUE, as
/// RFC 4511 §4.5.1.7 says ("A server MUST evaluate filters according to the three-valued logic
/// of [X.511] (1993), Clause 7.8.1 … the entry matches the filter if and only if it evaluates to
/// TRUE"). FALSE and Undefined both mean no match; they differ under a NOT, where NOT FALSE is
/// TRUE but NOT Undefined stays Undefined.
///
/// The rules, without a schema:
///
/// - **Attribute descriptions** compare ignoring ASCII case and options (RFC 4512 §2.5), on both
///   sides: `(cn=x)`, `(CN=x)` and `(cn;lang-en=x)` all look at `cn` and `cn;lang-en`. An
///   attribute the entry lacks makes an item FALSE (not Undefined: every attribute is taken to be
///   known), so `(!(mail=*))` matches an entry without mail. Presence of `objectClass` is always
///   TRUE: every entry has one (RFC 4512 §2.4.1), even when it was not among the attributes read,
///   and `(objectClass=*)` is the usual match-all filter.
/// - **Equality, approx and substrings** are case-insensitive with insignificant spaces (leading,
///   trailing and repeated) ignored, like caseIgnoreMatch and caseIgnoreSubstringsMatch (RFC 4517
///   §4.2.11, §4.2.13; RFC 4518 §2.6), when both sides are UTF-8; a side that is not (objectGUID,
///   objectSid) compares as exact octets. An assertion with a `=` also matches a stored value
///   naming the same DN the LDAP way (`member`, `manager`, `objectCategory`).
/// - **`>=` and `<=`** compare as integers (`i64`: Active Directory's Integer and Large Integer
///   syntaxes, such as uSNChanged) when both sides are integers, else as case-folded text
///   (generalized time strings order correctly so), else as octets. Ordering is thus never
///   Undefined: `(!(x>=5))` is TRUE for an entry without `x`, as it would be from a server that
///   knows an ordering rule for `x`.
/// - **Active Directory's `objectCategory` shorthand**: a value without `=`, as in
///   `(objectCategory=person)`, stands for the class's defaultObjectCategory, a schema DN. It
///   matches a stored DN whose first RDN value is the class name, ignoring case and hyphens
///   (`organizationalUnit` matches `CN=Organizational-Unit,CN=Schema,…`); `user`, `contact`,
///   `inetOrgPerson` and `organizationalPerson`, whose default category is Person, match
///   `CN=Person,…`.
/// - **Extensible matches** (RFC 4511 §4.5.1.7.7): without a rule, equality; the bitwise rules of
///   Active Directory (and OpenLDAP), `1.2.840.113556.1.4.803` (LDAP_MATCHING_RULE_BIT_AND,
///   integerBitAndMatch: `value & N == N`) and `1.2.840.113556.1.4.804` (BIT_OR,
///   integerBitOrMatch: `value & N != 0`), on `i64` values (so groupType's negative form
///   `-2147483646` and the unsigned `2147483648` of its top bit work together); caseIgnoreMatch
///   (`2.5.13.2`) and caseExactMatch (`2.5.13.5`). Any other rule (such as
///   LDAP_MATCHING_RULE_IN_CHAIN, which needs other entries), an assertion or stored value the
///   rule cannot read, and a rule without an attribute are Undefined; with `:dn`, whatever is
///   not TRUE from the attributes is Undefined, since the DN is not looked at.
pub fn matches(filter: &SearchFilter, attributes: &AttributeList) -> bool {
    evaluate(filter, attributes) == Truth::True
}

/// The three values of a filter (RFC 4511 §4.5.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Undefined,
}

impl Truth {
    fn of(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }

    /// RFC 4511 §4.5.1.7: "A filter of the "not" choice is TRUE if the filter being negated is
    /// FALSE, FALSE if it is TRUE, and Undefined if it is Undefined."
    fn not(self) -> Truth {
        match self {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Undefined => Truth::Undefined,
        }
    }

    /// An item over the values of an attribute: TRUE if one value matches, else Undefined if one
    /// could not be decided, else FALSE (X.511 §7.8.1); FALSE for no values.
    fn any(results: impl IntoIterator<Item = Truth>) -> Truth {
        let mut out = Truth::False;
        for r in results {
            match r {
                Truth::True => return Truth::True,
                Truth::Undefined => out = Truth::Undefined,
                Truth::False => {}
            }
        }
        out
    }
}

/// The value of `filter` for an entry with `attrs` (RFC 4511 §4.5.1.7); the quotations are
/// from there.
fn evaluate(filter: &SearchFilter, attrs: &AttributeList) -> Truth {
    match filter {
        // "A filter of the "and" choice is TRUE if all the filters in the SET OF evaluate to
        // TRUE, FALSE if at least one filter is FALSE, and Undefined otherwise."
        SearchFilter::And(items) => {
            let mut out = Truth::True;
            for item in items {
                match evaluate(item, attrs) {
                    Truth::False => return Truth::False,
                    Truth::Undefined => out = Truth::Undefined,
                    Truth::True => {}
                }
            }
            out
        }
        // "A filter of the "or" choice is FALSE if all the filters in the SET OF evaluate to
        // FALSE, TRUE if at least one filter is TRUE, and Undefined otherwise."
        SearchFilter::Or(items) => Truth::any(items.iter().map(|item| evaluate(item, attrs))),
        SearchFilter::Not(inner) => evaluate(inner, attrs).not(),
        SearchFilter::Equality { attribute, value } | SearchFilter::Approx { attribute, value } => {
            equality(attrs, attribute, value)
        }
        SearchFilter::Substrings {
            attribute,
            initial,
            any,
            final_,
        } => {
            let pattern = Pattern::new(initial.as_deref(), any, final_.as_deref());
            Truth::any(values(attrs, attribute).map(|v| Truth::of(pattern.matches(v))))
        }
        SearchFilter::GreaterOrEqual { attribute, value } => Truth::any(
            values(attrs, attribute).map(|v| Truth::of(compare(v, value) != Ordering::Less)),
        ),
        SearchFilter::LessOrEqual { attribute, value } => Truth::any(
            values(attrs, attribute).map(|v| Truth::of(compare(v, value) != Ordering::Greater)),
        ),
        SearchFilter::Present { attribute } => Truth::of(
            base(attribute).eq_ignore_ascii_case("objectClass")
                || attrs
                    .iter()
                    .any(|a| base(a.name).eq_ignore_ascii_case(base(attribute))),
        ),
        SearchFilter::Extensible {
            matching_rule,
            attribute,
            value,
            dn_attributes,
        } => {
            let result = match (matching_rule.as_deref().map(Rule::named), attribute) {
                (_, None) => Truth::Undefined,
                (None, Some(attribute)) => equality(attrs, attribute, value),
                (Some(rule), Some(attribute)) => rule.evaluate(attrs, attribute, value),
            };
            // "If the dnAttributes field is set to TRUE, the match is additionally applied
            // against all the AttributeValueAssertions in an entry's distinguished name": we do
            // not see the DN, so only a match in the attributes is certain.
            if *dn_attributes && result != Truth::True {
                Truth::Undefined
            } else {
                result
            }
        }
    }
}

/// The attribute type of a description, without its options (RFC 4512 §2.5).
fn base(description: &str) -> &str {
    description.split(';').next().unwrap_or(description)
}

/// Every value of the attributes whose type is that of `description` (any options).
fn values<'a>(attrs: &'a AttributeList, description: &'a str) -> impl Iterator<Item = &'a [u8]> {
    let want = base(description);
    attrs
        .iter()
        .filter(move |a| base(a.name).eq_ignore_ascii_case(want))
        .flat_map(|a| a.values)
}

/// An equality (or approx) item; see [`matches`].
fn equality(attrs: &AttributeList, attribute: &str, asserted: &[u8]) -> Truth {
    let category = base(attribute).eq_ignore_ascii_case("objectCategory");
    let asserted_text = str::from_utf8(asserted).ok();
    Truth::any(values(attrs, attribute).map(|stored| {
        let (Ok(s), Some(a)) = (str::from_utf8(stored), asserted_text) else {
            return Truth::of(stored == asserted);
        };
        Truth::of(
            folded(s).eq(folded(a))
                || if a.contains('=') {
                    s.contains('=') && same_dn(s, a)
                } else {
                    category && category_matches(s, a)
                },
        )
    }))
}

/// Whether a stored objectCategory DN is that of class `name` (`person`), the way Active
/// Directory reads a value without `=` (see [`matches`]).
fn category_matches(stored: &str, name: &str) -> bool {
    /// Classes of the default schema whose defaultObjectCategory is not their own (MS-ADSC).
    const PERSON: &[&str] = &["user", "contact", "inetOrgPerson", "organizationalPerson"];
    let name = name.trim();
    let name = if PERSON.iter().any(|p| p.eq_ignore_ascii_case(name)) {
        "person"
    } else {
        name
    };
    let Some((_, rest)) = stored.split_once('=') else {
        return false;
    };
    let rdn_value = rest.split([',', '+']).next().unwrap_or(rest).trim();
    let squash = |s: &str| {
        s.chars()
            .filter(|&c| c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect::<Vec<_>>()
    };
    !rdn_value.is_empty() && squash(rdn_value) == squash(name)
}

/// `s` with insignificant spaces removed: trimmed, each run of white space one space (RFC 4518
/// §2.6.1).
fn squeezed(s: &str) -> impl Iterator<Item = char> + '_ {
    let mut after_space = false;
    s.trim().chars().filter_map(move |c| {
        if c.is_whitespace() {
            let first = !after_space;
            after_space = true;
            first.then_some(' ')
        } else {
            after_space = false;
            Some(c)
        }
    })
}

/// `s` squeezed and lowercased, the prepared form caseIgnoreMatch compares.
fn folded(s: &str) -> impl Iterator<Item = char> + '_ {
    squeezed(s).flat_map(char::to_lowercase)
}

/// The ordering of `>=` and `<=`: integers, else case-folded text, else octets (see [`matches`]).
fn compare(stored: &[u8], asserted: &[u8]) -> Ordering {
    if let (Some(s), Some(a)) = (integer(stored), integer(asserted)) {
        return s.cmp(&a);
    }
    match (str::from_utf8(stored), str::from_utf8(asserted)) {
        (Ok(s), Ok(a)) => folded(s).cmp(folded(a)),
        _ => stored.cmp(asserted),
    }
}

/// A value in the Integer syntax (RFC 4517 §3.3.16), within `i64`.
fn integer(value: &[u8]) -> Option<i64> {
    str::from_utf8(value).ok()?.trim().parse().ok()
}

/// A substrings assertion, prepared once for all the values it is tried on.
struct Pattern<'a> {
    initial: Option<&'a [u8]>,
    any: &'a [Vec<u8>],
    final_: Option<&'a [u8]>,
    /// The pieces folded like the values, when they are all UTF-8.
    text: Option<(Option<String>, Vec<String>, Option<String>)>,
}

impl<'a> Pattern<'a> {
    fn new(initial: Option<&'a [u8]>, any: &'a [Vec<u8>], final_: Option<&'a [u8]>) -> Self {
        Pattern {
            initial,
            any,
            final_,
            text: Self::folded(initial, any, final_),
        }
    }

    /// The pieces folded like the values, unless one is not UTF-8. Spaces inside a piece
    /// collapse like the value's; the value's leading spaces are insignificant, so are those of
    /// `initial`, and its trailing ones so those of `final`.
    fn folded(
        initial: Option<&[u8]>,
        any: &[Vec<u8>],
        final_: Option<&[u8]>,
    ) -> Option<(Option<String>, Vec<String>, Option<String>)> {
        fn fold(piece: &[u8]) -> Option<String> {
            let text = str::from_utf8(piece).ok()?;
            let mut after_space = false;
            Some(
                text.chars()
                    .filter_map(|c| {
                        let space = c.is_whitespace();
                        let keep = !(space && after_space);
                        after_space = space;
                        keep.then_some(if space { ' ' } else { c })
                    })
                    .flat_map(char::to_lowercase)
                    .collect(),
            )
        }
        let initial = match initial {
            Some(p) => Some(fold(p)?.trim_start().to_owned()),
            None => None,
        };
        let any = any.iter().map(|p| fold(p)).collect::<Option<Vec<_>>>()?;
        let final_ = match final_ {
            Some(p) => Some(fold(p)?.trim_end().to_owned()),
            None => None,
        };
        Some((initial, any, final_))
    }

    fn matches(&self, value: &[u8]) -> bool {
        match (&self.text, str::from_utf8(value)) {
            (Some((initial, any, final_)), Ok(text)) => {
                let text: String = folded(text).collect();
                substrings(
                    text.as_bytes(),
                    initial.as_deref().map(str::as_bytes),
                    any.iter().map(|p| p.as_bytes()),
                    final_.as_deref().map(str::as_bytes),
                )
            }
            _ => substrings(
                value,
                self.initial,
                self.any.iter().map(Vec::as_slice),
                self.final_,
            ),
        }
    }
}

/// Whether `value` starts with `initial`, then holds each of `any` in order, then ends with
/// `final_`, none of them overlapping (RFC 4511 §4.5.1.7.2). Empty pieces constrain nothing.
fn substrings<'p>(
    value: &[u8],
    initial: Option<&[u8]>,
    any: impl Iterator<Item = &'p [u8]>,
    final_: Option<&[u8]>,
) -> bool {
    let mut rest = value;
    if let Some(initial) = initial {
        match rest.strip_prefix(initial) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for piece in any.filter(|p| !p.is_empty()) {
        match rest.windows(piece.len()).position(|w| w == piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    final_.is_none_or(|f| rest.ends_with(f))
}

/// The matching rules an extensible match can name that are evaluated here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// LDAP_MATCHING_RULE_BIT_AND (Active Directory), integerBitAndMatch (OpenLDAP).
    BitAnd,
    /// LDAP_MATCHING_RULE_BIT_OR (Active Directory), integerBitOrMatch (OpenLDAP).
    BitOr,
    /// caseIgnoreMatch (RFC 4517 §4.2.11).
    CaseIgnore,
    /// caseExactMatch (RFC 4517 §4.2.4).
    CaseExact,
    /// Anything else: Undefined (RFC 4511 §4.5.1.7: "A MatchingRuleId in the extensibleMatch is
    /// not recognized by the server").
    Unknown,
}

impl Rule {
    /// The rule by its OID or name (names ignore case, RFC 4512 §1.4).
    fn named(rule: &str) -> Rule {
        let is = |oid: &str, name: &str| rule == oid || rule.eq_ignore_ascii_case(name);
        if is("1.2.840.113556.1.4.803", "integerBitAndMatch") {
            Rule::BitAnd
        } else if is("1.2.840.113556.1.4.804", "integerBitOrMatch") {
            Rule::BitOr
        } else if is("2.5.13.2", "caseIgnoreMatch") {
            Rule::CaseIgnore
        } else if is("2.5.13.5", "caseExactMatch") {
            Rule::CaseExact
        } else {
            Rule::Unknown
        }
    }

    fn evaluate(self, attrs: &AttributeList, attribute: &str, asserted: &[u8]) -> Truth {
        match self {
            Rule::BitAnd | Rule::BitOr => {
                // "The assertion value is invalid": Undefined, whatever the entry holds.
                let Some(n) = integer(asserted) else {
                    return Truth::Undefined;
                };
                Truth::any(values(attrs, attribute).map(|v| match integer(v) {
                    Some(v) if self == Rule::BitAnd => Truth::of(v & n == n),
                    Some(v) => Truth::of(v & n != 0),
                    None => Truth::Undefined,
                }))
            }
            Rule::CaseIgnore | Rule::CaseExact => {
                let Ok(a) = str::from_utf8(asserted) else {
                    return Truth::Undefined;
                };
                Truth::any(values(attrs, attribute).map(|v| match str::from_utf8(v) {
                    Ok(s) if self == Rule::CaseIgnore => Truth::of(folded(s).eq(folded(a))),
                    Ok(s) => Truth::of(squeezed(s).eq(squeezed(a))),
                    Err(_) => Truth::Undefined,
                }))
            }
            Rule::Unknown => Truth::Undefined,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(attributes: &[(&str, &[&[u8]])]) -> AttributeList {
        AttributeList::build(attributes.iter().map(|(n, v)| (*n, v.iter().copied())))
    }

    fn eval(filter: &str, attrs: &AttributeList) -> Truth {
        evaluate(&SearchFilter::parse(filter).expect(filter), attrs)
    }

    fn check(attrs: &AttributeList, cases: &[(&str, Truth)]) {
        for (filter, want) in cases {
            assert_eq!(eval(filter, attrs), *want, "{filter} on {attrs:?}");
            assert_eq!(
                matches(&SearchFilter::parse(filter).expect(filter), attrs),
                *want == Truth::True,
                "{filter}"
            );
        }
    }

    use Truth::{False as F, True as T, Undefined as U};

    /// An item that is always Undefined, for the logic.
    const UNDEF: &str = "(cn:1.2.3.4:=x)";

    #[test]
    fn three_valued_logic() {
        let e = entry(&[("cn", &[b"Ann"])]);
        let u = UNDEF;
        check(
            &e,
            &[
                (u, U),
                (&format!("(!{u})"), U),
                ("(&)", T),
                ("(|)", F),
                (&format!("(&(cn=ann){u})"), U),
                (&format!("(&(cn=bob){u})"), F),
                (&format!("(|(cn=ann){u})"), T),
                (&format!("(|(cn=bob){u})"), U),
                (&format!("(!(&(cn=bob){u}))"), T),
                (&format!("(!(|(cn=bob){u}))"), U),
                ("(!(cn=ann))", F),
                ("(!(!(cn=ann)))", T),
            ],
        );
    }

    #[test]
    fn absent_attributes_are_false_so_their_negation_is_true() {
        let e = entry(&[("cn", &[b"Ann"])]);
        check(
            &e,
            &[
                ("(mail=*)", F),
                ("(!(mail=*))", T),
                ("(mail=a@b)", F),
                ("(!(mail=a@b))", T),
                ("(mail=a*)", F),
                ("(!(x>=5))", T),
                ("(!(x<=5))", T),
                ("(!(userAccountControl:1.2.840.113556.1.4.803:=2))", T),
            ],
        );
        let with_mail = entry(&[("mail", &[b"a@b"])]);
        check(&with_mail, &[("(!(mail=*))", F), ("(mail=*)", T)]);
    }

    #[test]
    fn object_class_is_always_present() {
        check(
            &AttributeList::default(),
            &[
                ("(objectClass=*)", T),
                ("(objectclass;x=*)", T),
                ("(objectClass=top)", F),
            ],
        );
    }

    #[test]
    fn descriptions_ignore_case_and_options() {
        let e = entry(&[
            ("CN;lang-en", &[b"Ann"]),
            ("cn", &[b"Anna"]),
            ("sn", &[b"Smith"]),
        ]);
        check(
            &e,
            &[
                ("(cn=ann)", T),
                ("(cn=anna)", T),
                ("(Cn;lang-fr=ANN)", T),
                ("(cn;x=*)", T),
                ("(SN=smith)", T),
                ("(givenName=*)", F),
            ],
        );
    }

    #[test]
    fn equality_is_case_and_space_insensitive_on_text_exact_on_octets() {
        let guid: &[u8] = &[0x01, 0xff, b'A', 0x00];
        let e = entry(&[
            ("cn", &[b"  Ann   Marie Smith "]),
            ("title", &["\u{c9}cole".as_bytes()]),
            ("objectGUID", &[guid]),
        ]);
        check(
            &e,
            &[
                ("(cn=ann marie smith)", T),
                ("(cn=ANN MARIE   SMITH  )", T),
                ("(cn=annmarie smith)", F),
                ("(title=\u{e9}COLE)", T),
                ("(objectGUID=\\01\\ff\\41\\00)", T),
                ("(objectGUID=\\01\\ff\\61\\00)", F),
                ("(objectGUID=\\01\\ff\\41)", F),
                ("(cn~=ANN MARIE SMITH)", T),
                ("(cn~=bob)", F),
            ],
        );
    }

    #[test]
    fn dn_values_compare_as_dns() {
        let e = entry(&[
            ("member", &[b"CN=Ann Smith,OU=People,DC=example,DC=com"]),
            ("description", &[b"no dn here"]),
        ]);
        check(
            &e,
            &[
                ("(member=cn=ann smith, ou=people, dc=example, dc=com)", T),
                ("(member=CN=Bob,OU=People,DC=example,DC=com)", F),
                ("(description=x=y)", F),
            ],
        );
    }

    #[test]
    fn substrings_fold_like_equality() {
        let e = entry(&[
            ("cn", &[b"Ann  Marie Smith"]),
            ("bin", &[&[0xff, 0xfe, b'A']]),
        ]);
        check(
            &e,
            &[
                ("(cn=ann*)", T),
                ("(cn=ANN M*)", T),
                ("(cn=  ann*)", T),
                ("(cn=*smith)", T),
                ("(cn=* smith  )", T),
                ("(cn=*marie*)", T),
                ("(cn=ann*marie*smith)", T),
                ("(cn=*n  m*)", T),
                ("(cn=smith*)", F),
                ("(cn=*marie)", F),
                ("(cn=*smith*marie*)", F),
                ("(cn=ann marie smith*h)", F),
                ("(bin=\\ff*)", T),
                ("(bin=*\\41)", T),
                ("(bin=*\\61)", F),
            ],
        );
        // The pieces may not overlap.
        check(
            &entry(&[("cn", &[b"aba"])]),
            &[("(cn=ab*ba)", F), ("(cn=ab*a)", T)],
        );
    }

    #[test]
    fn ordering_is_numeric_for_integers_else_textual() {
        let e = entry(&[
            ("uSNChanged", &[b"123456789012"]),
            ("x", &[b"10"]),
            ("neg", &[b"-3"]),
            ("whenChanged", &[b"20240131120000.0Z"]),
            ("cn", &[b"Mary"]),
        ]);
        check(
            &e,
            &[
                ("(uSNChanged>=123456789000)", T),
                ("(uSNChanged<=99999)", F),
                ("(x>=9)", T),
                ("(x<=9)", F),
                ("(x<=10)", T),
                ("(x>=10)", T),
                ("(neg>=-5)", T),
                ("(neg<=-4)", F),
                ("(whenChanged>=20240101000000.0Z)", T),
                ("(whenChanged>=20240201000000.0Z)", F),
                ("(whenChanged<=20240201000000.0Z)", T),
                ("(cn>=mark)", T),
                ("(cn<=MARY)", T),
                ("(cn<=mark)", F),
                ("(!(x>=9))", F),
                ("(!(x>=11))", T),
            ],
        );
    }

    #[test]
    fn object_category_shorthand() {
        let person = entry(&[(
            "objectCategory",
            &[b"CN=Person,CN=Schema,CN=Configuration,DC=example,DC=com"],
        )]);
        check(
            &person,
            &[
                ("(objectCategory=person)", T),
                ("(objectCategory=PERSON)", T),
                ("(objectCategory=user)", T),
                ("(objectCategory=contact)", T),
                ("(objectCategory=computer)", F),
                ("(objectCategory=pers)", F),
                (
                    "(objectCategory=cn=person,cn=schema,cn=configuration,dc=example,dc=com)",
                    T,
                ),
                ("(objectCategory=CN=Person,CN=Schema,DC=other)", F),
                ("(&(objectCategory=person)(objectClass=user))", F),
            ],
        );
        let ou = entry(&[(
            "objectCategory",
            &[b"CN=Organizational-Unit,CN=Schema,CN=Configuration,DC=x"],
        )]);
        check(
            &ou,
            &[
                ("(objectCategory=organizationalUnit)", T),
                ("(objectCategory=Organizational-Unit)", T),
                ("(objectCategory=organization)", F),
            ],
        );
        // Only objectCategory reads a bare name so.
        let other = entry(&[("manager", &[b"CN=Person,DC=x"])]);
        check(&other, &[("(manager=person)", F)]);
    }

    #[test]
    fn bitwise_rules() {
        let user = entry(&[("userAccountControl", &[b"514"])]); // 512 | ACCOUNTDISABLE (2)
        let and = "1.2.840.113556.1.4.803";
        let or = "1.2.840.113556.1.4.804";
        check(
            &user,
            &[
                (&format!("(userAccountControl:{and}:=2)"), T),
                (&format!("(userAccountControl:{and}:=514)"), T),
                (&format!("(userAccountControl:{and}:=3)"), F),
                (&format!("(!(userAccountControl:{and}:=2))"), F),
                (&format!("(userAccountControl:{or}:=3)"), T),
                (&format!("(userAccountControl:{or}:=5)"), F),
                ("(userAccountControl:integerBitAndMatch:=2)", T),
                // An assertion that is not an integer is invalid: Undefined, even negated.
                (&format!("(userAccountControl:{and}:=two)"), U),
                (&format!("(!(userAccountControl:{and}:=two))"), U),
            ],
        );
        // A global security group: 0x80000000 | 0x2, as AD writes it, signed.
        let group = entry(&[("groupType", &[b"-2147483646"])]);
        check(
            &group,
            &[
                (&format!("(groupType:{and}:=2147483648)"), T),
                (&format!("(groupType:{and}:=-2147483648)"), T),
                (&format!("(groupType:{and}:=2)"), T),
                (&format!("(groupType:{and}:=4)"), F),
                (&format!("(groupType:{or}:=6)"), T),
            ],
        );
        check(
            &entry(&[("cn", &[b"Ann"])]),
            &[
                (&format!("(cn:{and}:=1)"), U),
                (&format!("(!(cn:{and}:=1))"), U),
            ],
        );
    }

    #[test]
    fn other_extensible_matches() {
        let e = entry(&[("ou", &[b"People"])]);
        check(
            &e,
            &[
                ("(ou:=people)", T),
                ("(ou:caseIgnoreMatch:=PEOPLE)", T),
                ("(ou:2.5.13.5:=People)", T),
                ("(ou:caseExactMatch:=people)", F),
                ("(ou:1.2.840.113556.1.4.1941:=x)", U),
                ("(:caseIgnoreMatch:=people)", U),
                ("(ou:dn:=people)", T),
                ("(ou:dn:=staff)", U),
                ("(!(ou:dn:=staff))", U),
            ],
        );
    }

    fn any_filter() -> impl Strategy<Value = SearchFilter> {
        let attribute = prop::sample::select(vec![
            "cn",
            "CN;lang-en",
            "mail",
            "x",
            "objectClass",
            "objectCategory",
            "userAccountControl",
        ])
        .prop_map(str::to_owned);
        let bytes = || {
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..6),
                any::<i64>().prop_map(|n| n.to_string().into_bytes()),
                "[ a-zA-Z=,\u{e9}\u{130}-]{0,10}".prop_map(String::into_bytes),
            ]
        };
        let rule = prop::option::of(prop::sample::select(vec![
            "1.2.840.113556.1.4.803",
            "1.2.840.113556.1.4.804",
            "caseIgnoreMatch",
            "2.5.13.5",
            "9.9",
        ]));
        let leaf = prop_oneof![
            (attribute.clone(), bytes())
                .prop_map(|(attribute, value)| SearchFilter::Equality { attribute, value }),
            (attribute.clone(), bytes())
                .prop_map(|(attribute, value)| SearchFilter::Approx { attribute, value }),
            (attribute.clone(), bytes())
                .prop_map(|(attribute, value)| SearchFilter::GreaterOrEqual { attribute, value }),
            (attribute.clone(), bytes())
                .prop_map(|(attribute, value)| SearchFilter::LessOrEqual { attribute, value }),
            attribute
                .clone()
                .prop_map(|attribute| SearchFilter::Present { attribute }),
            (
                attribute.clone(),
                prop::option::of(bytes()),
                prop::collection::vec(bytes(), 0..3),
                prop::option::of(bytes())
            )
                .prop_map(|(attribute, initial, any, final_)| {
                    SearchFilter::Substrings {
                        attribute,
                        initial,
                        any,
                        final_,
                    }
                }),
            (rule, prop::option::of(attribute), bytes(), any::<bool>()).prop_map(
                |(rule, attribute, value, dn_attributes)| {
                    SearchFilter::Extensible {
                        matching_rule: rule.map(str::to_owned),
                        attribute,
                        value,
                        dn_attributes,
                    }
                }
            ),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(SearchFilter::And),
                prop::collection::vec(inner.clone(), 0..4).prop_map(SearchFilter::Or),
                inner.prop_map(|f| SearchFilter::Not(Box::new(f))),
            ]
        })
    }

    fn any_entry() -> impl Strategy<Value = Vec<(String, Vec<Vec<u8>>)>> {
        let name = prop::sample::select(vec![
            "cn",
            "cn;lang-en",
            "MAIL",
            "x",
            "objectCategory",
            "userAccountControl",
        ]);
        let value = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..6),
            any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            "[ a-zA-Z=,\u{e9}\u{130}-]{0,12}".prop_map(String::into_bytes),
            Just(b"CN=Person,CN=Schema,CN=Configuration,DC=x".to_vec()),
        ];
        prop::collection::vec(
            (
                name.prop_map(str::to_owned),
                prop::collection::vec(value, 0..3),
            ),
            0..5,
        )
    }

    proptest! {
        #[test]
        fn never_panics_and_never_contradicts_itself(filter in any_filter(), attrs in any_entry()) {
            let attrs = AttributeList::build(
                attrs.iter().map(|(n, v)| (n.as_str(), v.iter().map(Vec::as_slice))),
            );
            let yes = matches(&filter, &attrs);
            let negated = SearchFilter::Not(Box::new(filter.clone()));
            prop_assert!(!(yes && matches(&negated, &attrs)));
            prop_assert!(!matches(&SearchFilter::And(vec![filter.clone(), negated.clone()]), &attrs));
            // Excluded middle holds exactly when the filter is not Undefined.
            let decided = evaluate(&filter, &attrs) != Truth::Undefined;
            prop_assert_eq!(
                matches(&SearchFilter::Or(vec![filter, negated]), &attrs),
                decided
            );
        }
    }
}
