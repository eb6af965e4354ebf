//! Ganeti instance tags that carry permissions and ownership: a pure codec.
//!
//! Tags the operator reads and writes:
//! - `<prefix>:<perm>:<U|G>:<subject>`: a Ganeti Web Manager (GWM) permission for a user
//!   (`U`) or group (`G`). The prefix defaults to [`DEFAULT_PREFIX`] and is set per
//!   cluster (`GanetiCluster.spec.tagPrefix`, which may not contain `:`).
//! - `<prefix>:owner:<U|G>:<subject>`: the owner of a VM created through an application.
//!   The GWM vocabulary with the perm `owner`, so one prefix covers everything the operator
//!   writes; GWM ignores perms it does not know.
//! - ganetimgr's `ganetimgr:user:<u>` / `ganetimgr:group:<g>` (ownership),
//!   `ganetimgr:adminlock` and `ganetimgr:isolate`, read so that VMs managed by ganetimgr
//!   keep their owners and locks.
//!
//! The subject field is everything after the third `:`, so subjects may contain `:`
//! (`system:serviceaccount:ns:sa`). Characters outside the tag charset, and the escape
//! character `+` itself, are written as `+XX` (uppercase hex of each UTF-8 byte): `+` is
//! in the charset while `%` is not. Decoding is strict (uppercase hex, only bytes that
//! need escaping, valid UTF-8) so that every subject has exactly one spelling, and a
//! malformed tag grants nothing. ganetimgr subjects are taken literally: ganetimgr does
//! not escape (its usernames may contain `+`).
//!
//! A tag longer than [`MAX_TAG_LEN`] is a [`TagError`], never truncated: a truncated
//! subject would name someone else.

use crate::api::common::{Subject, SubjectKind};
use crate::api::role::VmRight;
use std::borrow::Cow;

/// Longest tag Ganeti accepts.
pub const MAX_TAG_LEN: usize = 128;
/// GWM's prefix, used when a cluster sets none.
pub const DEFAULT_PREFIX: &str = "GANETI_WEB_MANAGER";
/// ganetimgr's (default) prefix.
pub const GANETIMGR_PREFIX: &str = "ganetimgr";
/// The perm of ownership tags.
pub const OWNER_PERM: &str = "owner";

/// Whether Ganeti accepts `c` in a tag: `[A-Za-z0-9.+*/:@_-]`.
pub const fn is_tag_char(c: char) -> bool {
    matches!(c, 'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '+' | '*' | '/' | ':' | '@' | '_' | '-')
}

/// Bytes written as themselves in an encoded subject: the charset less the escape `+`.
const fn is_plain_byte(b: u8) -> bool {
    b != b'+' && b.is_ascii() && is_tag_char(b as char)
}

/// Why a tag cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag is {len} characters long, Ganeti allows at most {MAX_TAG_LEN}")]
    TooLong { len: usize },
    #[error("tag is empty")]
    Empty,
    #[error("character {0:?} is not allowed in a Ganeti tag")]
    InvalidChar(char),
    #[error("tag prefix {0:?} must be non-empty and use only tag characters other than ':'")]
    InvalidPrefix(String),
    #[error("the subject of a tag cannot be empty")]
    EmptySubject,
    #[error("this kind of tag is read, never written")]
    NotWritable,
}

/// Checks that `tag` is a tag Ganeti accepts.
pub fn validate(tag: &str) -> Result<(), TagError> {
    if tag.is_empty() {
        return Err(TagError::Empty);
    }
    if let Some(c) = tag.chars().find(|c| !is_tag_char(*c)) {
        return Err(TagError::InvalidChar(c));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(TagError::TooLong { len: tag.len() });
    }
    Ok(())
}

fn validate_prefix(prefix: &str) -> Result<(), TagError> {
    if prefix.is_empty() || prefix.contains(':') || !prefix.chars().all(is_tag_char) {
        return Err(TagError::InvalidPrefix(prefix.to_owned()));
    }
    Ok(())
}

/// Encodes a subject name into tag characters; plain names come back borrowed, unchanged.
pub fn encode_subject(name: &str) -> Cow<'_, str> {
    if name.bytes().all(is_plain_byte) {
        return Cow::Borrowed(name);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if is_plain_byte(b) {
            out.push(b as char);
        } else {
            out.push('+');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xF)] as char);
        }
    }
    Cow::Owned(out)
}

/// Decodes what [`encode_subject`] wrote; `None` for anything it could not have written.
pub fn decode_subject(encoded: &str) -> Option<Cow<'_, str>> {
    let bytes = encoded.as_bytes();
    if !bytes.contains(&b'+') {
        return bytes
            .iter()
            .all(|b| is_plain_byte(*b))
            .then_some(Cow::Borrowed(encoded));
    }
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            let decoded = hi << 4 | lo;
            // A plain byte written escaped would give a second spelling of one subject.
            if is_plain_byte(decoded) {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else if is_plain_byte(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// GWM's permissions on a VM, as they appear in tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GwmPerm {
    Admin,
    Modify,
    Remove,
    Power,
    Tags,
    /// Older GWM versions wrote `start` alone.
    Start,
    Migrate,
    Export,
    ReplaceDisks,
}

impl GwmPerm {
    pub const ALL: &'static [GwmPerm] = &[
        GwmPerm::Admin,
        GwmPerm::Modify,
        GwmPerm::Remove,
        GwmPerm::Power,
        GwmPerm::Tags,
        GwmPerm::Start,
        GwmPerm::Migrate,
        GwmPerm::Export,
        GwmPerm::ReplaceDisks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GwmPerm::Admin => "admin",
            GwmPerm::Modify => "modify",
            GwmPerm::Remove => "remove",
            GwmPerm::Power => "power",
            GwmPerm::Tags => "tags",
            GwmPerm::Start => "start",
            GwmPerm::Migrate => "migrate",
            GwmPerm::Export => "export",
            GwmPerm::ReplaceDisks => "replace_disks",
        }
    }

    pub fn parse(perm: &str) -> Option<Self> {
        GwmPerm::ALL.iter().copied().find(|p| p.as_str() == perm)
    }

    /// The VM rights this GWM perm grants. Following GWM's own descriptions: `power`
    /// is start, stop, reboot and console; `modify` includes reinstalling the OS; every
    /// perm lets its holder see the VM (GWM lists VMs one has any perm on). `admin` is
    /// our `admin`, which implies every VM right.
    pub fn vm_rights(self) -> &'static [VmRight] {
        use VmRight::*;
        match self {
            GwmPerm::Admin => &[View, Admin],
            GwmPerm::Modify => &[View, Modify, Reinstall],
            GwmPerm::Remove => &[View, Destroy],
            GwmPerm::Power => &[View, Start, Shutdown, Reboot, Console],
            GwmPerm::Tags => &[View, Tags],
            GwmPerm::Start => &[View, Start],
            GwmPerm::Migrate => &[View, Migrate],
            GwmPerm::Export => &[View, Export],
            GwmPerm::ReplaceDisks => &[View, ReplaceDisks],
        }
    }

    /// The GWM perms to write for a set of VM rights: each perm whose rights are all in
    /// the set, so GWM never gets more than the binding grants (a binding with `start`
    /// but not `console` writes `start`, not `power`). Redundant perms are left out:
    /// `admin` alone when admin is held, `start` only without `power`. Rights no perm
    /// covers exactly (`view` alone, `rename`, `lock`, `isolate`) are not written.
    pub fn covering(holds: impl Fn(VmRight) -> bool) -> Vec<GwmPerm> {
        if holds(VmRight::Admin) {
            return vec![GwmPerm::Admin];
        }
        let covered = |p: GwmPerm| p.vm_rights().iter().all(|r| holds(*r));
        let mut perms: Vec<GwmPerm> = GwmPerm::ALL
            .iter()
            .copied()
            .filter(|p| *p != GwmPerm::Admin && covered(*p))
            .collect();
        if perms.contains(&GwmPerm::Power) {
            perms.retain(|p| *p != GwmPerm::Start);
        }
        perms
    }
}

impl std::fmt::Display for GwmPerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a tag means to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedTag {
    /// `<prefix>:<perm>:<U|G>:<subject>`.
    GwmGrant { perm: GwmPerm, subject: Subject },
    /// `<prefix>:owner:<U|G>:<subject>`, written by the operator.
    Owner(Subject),
    /// `ganetimgr:user:<u>` or `ganetimgr:group:<g>`.
    GanetimgrOwner(Subject),
    /// `ganetimgr:adminlock`.
    AdminLock,
    /// `ganetimgr:isolate`.
    Isolate,
    /// A valid tag with no meaning here (other prefixes, unknown perms, malformed subjects).
    Other,
}

/// Classifies a tag. `None` when `tag` is not a valid Ganeti tag at all.
pub fn parse(tag: &str, prefix: &str) -> Option<ParsedTag> {
    validate(tag).ok()?;
    Some(classify(tag, prefix).unwrap_or(ParsedTag::Other))
}

fn classify(tag: &str, prefix: &str) -> Option<ParsedTag> {
    let (head, rest) = tag.split_once(':')?;
    if head == prefix {
        let (perm, rest) = rest.split_once(':')?;
        let (kind, encoded) = rest.split_once(':')?;
        let kind = match kind {
            "U" => SubjectKind::User,
            "G" => SubjectKind::Group,
            _ => return None,
        };
        if encoded.is_empty() {
            return None;
        }
        let subject = Subject {
            kind,
            name: decode_subject(encoded)?.into_owned(),
        };
        if perm == OWNER_PERM {
            return Some(ParsedTag::Owner(subject));
        }
        return Some(ParsedTag::GwmGrant {
            perm: GwmPerm::parse(perm)?,
            subject,
        });
    }
    if head == GANETIMGR_PREFIX {
        return match rest.split_once(':') {
            None if rest == "adminlock" => Some(ParsedTag::AdminLock),
            None if rest == "isolate" => Some(ParsedTag::Isolate),
            Some(("user", name)) if !name.is_empty() => Some(ParsedTag::GanetimgrOwner(Subject::user(name))),
            Some(("group", name)) if !name.is_empty() => {
                Some(ParsedTag::GanetimgrOwner(Subject::group(name)))
            }
            _ => None,
        };
    }
    None
}

fn kind_letter(kind: SubjectKind) -> char {
    match kind {
        SubjectKind::User => 'U',
        SubjectKind::Group => 'G',
    }
}

fn checked(tag: String) -> Result<String, TagError> {
    validate(&tag)?;
    Ok(tag)
}

fn format_gwm(prefix: &str, perm: &str, subject: &Subject) -> Result<String, TagError> {
    validate_prefix(prefix)?;
    if subject.name.is_empty() {
        return Err(TagError::EmptySubject);
    }
    let encoded = encode_subject(&subject.name);
    checked(format!("{prefix}:{perm}:{}:{encoded}", kind_letter(subject.kind)))
}

/// Whether a user may set or remove `tag` on their VM themselves (right `vms.tags`):
/// a valid Ganeti tag outside every namespace the service or ganetimgr reads (the
/// cluster's tag prefix, the GWM default prefix, `ganetimgr`), compared
/// case-insensitively, so no user can write a grant, an owner, a lock or a marker.
pub fn check_user_tag(tag: &str, prefix: &str) -> Result<(), String> {
    validate(tag).map_err(|e| format!("{tag:?} is not a valid Ganeti tag: {e}"))?;
    let lower = tag.to_ascii_lowercase();
    for reserved in [prefix, DEFAULT_PREFIX, GANETIMGR_PREFIX] {
        let reserved = reserved.to_ascii_lowercase();
        if lower == reserved || lower.starts_with(&format!("{reserved}:")) {
            return Err(format!(
                "{tag:?} is in the {reserved}: namespace, which holds permissions, owners and locks: \
                 choose a tag without that prefix"
            ));
        }
    }
    Ok(())
}

/// `<prefix>:<perm>:<U|G>:<subject>`.
pub fn format_grant(prefix: &str, perm: GwmPerm, subject: &Subject) -> Result<String, TagError> {
    format_gwm(prefix, perm.as_str(), subject)
}

/// `<prefix>:owner:<U|G>:<subject>`.
pub fn format_owner(prefix: &str, subject: &Subject) -> Result<String, TagError> {
    format_gwm(prefix, OWNER_PERM, subject)
}

impl ParsedTag {
    /// The tag that [`parse`] reads back as `self`. `Other` cannot be written; ganetimgr
    /// owners are written literally, so their names must be tag characters.
    pub fn format(&self, prefix: &str) -> Result<String, TagError> {
        match self {
            ParsedTag::GwmGrant { perm, subject } => format_grant(prefix, *perm, subject),
            ParsedTag::Owner(subject) => format_owner(prefix, subject),
            ParsedTag::GanetimgrOwner(subject) => {
                if subject.name.is_empty() {
                    return Err(TagError::EmptySubject);
                }
                let kind = match subject.kind {
                    SubjectKind::User => "user",
                    SubjectKind::Group => "group",
                };
                checked(format!("{GANETIMGR_PREFIX}:{kind}:{}", subject.name))
            }
            ParsedTag::AdminLock => Ok(format!("{GANETIMGR_PREFIX}:adminlock")),
            ParsedTag::Isolate => Ok(format!("{GANETIMGR_PREFIX}:isolate")),
            ParsedTag::Other => Err(TagError::NotWritable),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn users_keep_out_of_the_reserved_namespaces() {
        assert!(check_user_tag("web", "acme").is_ok());
        assert!(check_user_tag("team:web", "acme").is_ok());
        for reserved in [
            "acme:owner:U:bob",
            "ACME:admin:U:bob",
            "GANETI_WEB_MANAGER:admin:U:bob",
            "ganetimgr:adminlock",
            "Ganetimgr:isolate",
            "acme",
        ] {
            let e = check_user_tag(reserved, "acme").unwrap_err();
            assert!(e.contains("namespace"), "{reserved}: {e}");
        }
        assert!(check_user_tag("has space", "acme").is_err());
    }

    use super::*;
    use proptest::prelude::*;

    const P: &str = DEFAULT_PREFIX;

    #[test]
    fn plain_names_are_unchanged() {
        for name in [
            "alice",
            "bob@example.org",
            "team-a_1",
            "system:serviceaccount:ns:sa",
        ] {
            assert!(matches!(encode_subject(name), Cow::Borrowed(n) if n == name));
        }
    }

    #[test]
    fn special_characters_are_escaped() {
        assert_eq!(encode_subject("alice smith"), "alice+20smith");
        assert_eq!(encode_subject("böb"), "b+C3+B6b");
        assert_eq!(encode_subject("a+b"), "a+2Bb");
        assert_eq!(decode_subject("b+C3+B6b").unwrap(), "böb");
    }

    #[test]
    fn decoding_is_strict() {
        for bad in ["a+2b", "a+4", "a+41", "a+ZZ", "+FF", "a b", "a%20b"] {
            assert_eq!(decode_subject(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_gwm_grants_and_owners() {
        assert_eq!(
            parse("GANETI_WEB_MANAGER:power:U:bob", P),
            Some(ParsedTag::GwmGrant {
                perm: GwmPerm::Power,
                subject: Subject::user("bob")
            })
        );
        assert_eq!(
            parse("GANETI_WEB_MANAGER:admin:G:system:serviceaccounts:ns", P),
            Some(ParsedTag::GwmGrant {
                perm: GwmPerm::Admin,
                subject: Subject::group("system:serviceaccounts:ns")
            })
        );
        assert_eq!(
            parse("GANETI_WEB_MANAGER:owner:U:alice+20smith", P),
            Some(ParsedTag::Owner(Subject::user("alice smith")))
        );
        assert_eq!(
            parse("ganetimgr:user:a+b", P),
            Some(ParsedTag::GanetimgrOwner(Subject::user("a+b")))
        );
        assert_eq!(
            parse("ganetimgr:group:ops", P),
            Some(ParsedTag::GanetimgrOwner(Subject::group("ops")))
        );
        assert_eq!(parse("ganetimgr:adminlock", P), Some(ParsedTag::AdminLock));
        assert_eq!(parse("ganetimgr:isolate", P), Some(ParsedTag::Isolate));
    }

    #[test]
    fn other_prefixes_and_malformed_tags_are_other() {
        for tag in [
            "GANETI_WEB_MANAGER:power:X:bob",
            "GANETI_WEB_MANAGER:fly:U:bob",
            "GANETI_WEB_MANAGER:power:U:",
            "GANETI_WEB_MANAGER:power:U:a+2b",
            "GANETI_WEB_MANAGER:power",
            "MYPREFIX:power:U:bob",
            "ganetimgr:whitelist_ip:10.0.0.0/8",
            "ganetimgr:user:",
            "webserver",
        ] {
            assert_eq!(parse(tag, P), Some(ParsedTag::Other), "{tag}");
        }
        assert_eq!(
            parse("MYPREFIX:power:U:bob", "MYPREFIX"),
            Some(ParsedTag::GwmGrant {
                perm: GwmPerm::Power,
                subject: Subject::user("bob")
            })
        );
        assert_eq!(parse("has space", P), None);
        assert_eq!(parse("", P), None);
        assert_eq!(parse(&"a".repeat(129), P), None);
    }

    #[test]
    fn long_tags_are_errors_not_truncated() {
        let subject = Subject::user("x".repeat(120));
        assert_eq!(
            format_owner(P, &subject),
            Err(TagError::TooLong {
                len: P.len() + ":owner:U:".len() + 120
            })
        );
        assert!(matches!(
            format_owner("a:b", &Subject::user("x")),
            Err(TagError::InvalidPrefix(_))
        ));
        assert_eq!(format_owner(P, &Subject::user("")), Err(TagError::EmptySubject));
    }

    #[test]
    fn covering_never_grants_more() {
        use VmRight::*;
        let set = |rs: &'static [VmRight]| move |r: VmRight| rs.contains(&r);
        assert_eq!(GwmPerm::covering(set(&[Admin])), vec![GwmPerm::Admin]);
        assert_eq!(
            GwmPerm::covering(set(&[View, Start, Shutdown, Reboot, Console, Destroy])),
            vec![GwmPerm::Remove, GwmPerm::Power]
        );
        assert_eq!(
            GwmPerm::covering(set(&[View, Start, Shutdown])),
            vec![GwmPerm::Start]
        );
        assert_eq!(GwmPerm::covering(set(&[Start, Shutdown])), vec![]);
        for p in GwmPerm::ALL {
            assert_eq!(GwmPerm::parse(p.as_str()), Some(*p));
        }
    }

    fn subject() -> impl Strategy<Value = Subject> {
        (any::<bool>(), "\\PC{1,40}|[a-z+:%. ]{1,20}").prop_map(|(user, name)| {
            if user {
                Subject::user(name)
            } else {
                Subject::group(name)
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn encoding_round_trips(name in "\\PC{0,60}|[a-zA-Z0-9+:%_ .@-]{0,30}|.{0,10}") {
            let encoded = encode_subject(&name);
            prop_assert!(encoded.chars().all(is_tag_char));
            let decoded = decode_subject(&encoded);
            prop_assert_eq!(decoded.as_deref(), Some(name.as_str()));
        }

        #[test]
        fn tags_round_trip_or_fail_typed(
            subject in subject(),
            perm in proptest::sample::select(GwmPerm::ALL),
            owner in any::<bool>(),
        ) {
            let parsed = if owner {
                ParsedTag::Owner(subject)
            } else {
                ParsedTag::GwmGrant { perm, subject }
            };
            match parsed.format(P) {
                Ok(tag) => {
                    prop_assert!(tag.len() <= MAX_TAG_LEN);
                    prop_assert!(tag.chars().all(is_tag_char));
                    prop_assert_eq!(parse(&tag, P), Some(parsed));
                }
                Err(e) => {
                    let too_long = matches!(e, TagError::TooLong { len } if len > MAX_TAG_LEN);
                    prop_assert!(too_long, "unexpected error {:?}", e);
                }
            }
        }

        #[test]
        fn parse_then_format_is_identity(tag in "(GANETI_WEB_MANAGER|ganetimgr)(:[a-zA-Z0-9+:_]{0,12}){0,4}") {
            if let Some(parsed) = parse(&tag, P)
                && parsed != ParsedTag::Other
            {
                prop_assert_eq!(parsed.format(P), Ok(tag));
            }
        }
    }
}
