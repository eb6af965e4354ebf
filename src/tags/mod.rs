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
//!   keep their owners and locks; `ganetimgr:needsreboot` (a change waits for a reboot)
//!   and `ganetimgr:whitelist_ip:<cidr>` (where an isolated VM stays reachable from),
//!   read to show them.
//!
//! Ganeti Web Manager itself names users and groups by its database ids
//! (`GANETI_WEB_MANAGER:admin:U:2`). A subject of ASCII digits is therefore always an
//! id ([`ParsedTag::GwmId`]), never a name: [`parse`] leaves it unresolved, so it grants
//! nothing, and [`Reader::parse`] resolves it through the cluster's [`GwmIds`] map. A
//! name made of digits only is written with its first digit escaped (`+32` for the user
//! `2`), so the two spellings never meet.
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

mod gwm_ids;
pub use gwm_ids::{GWM_IDS_LABEL, GWM_IDS_LABEL_VALUE, GwmIds};

/// Longest tag Ganeti accepts.
pub const MAX_TAG_LEN: usize = 128;
/// GWM's prefix, used when a cluster sets none.
pub const DEFAULT_PREFIX: &str = "GANETI_WEB_MANAGER";
/// ganetimgr's (default) prefix.
pub const GANETIMGR_PREFIX: &str = "ganetimgr";
/// ganetimgr's tag for a change that applies at the next reboot.
pub const NEEDS_REBOOT_TAG: &str = "ganetimgr:needsreboot";
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

/// Whether `s` is a Ganeti Web Manager id as GWM prints one: ASCII digits, no leading zero.
fn gwm_id(s: &str) -> Option<u64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Encodes a subject name into tag characters; plain names come back borrowed, unchanged.
/// A name of digits only gets its first digit escaped: plain digits are a GWM id.
pub fn encode_subject(name: &str) -> Cow<'_, str> {
    if name.bytes().all(is_plain_byte) && !all_digits(name) {
        return Cow::Borrowed(name);
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(name.len() * 3);
    for (at, b) in name.bytes().enumerate() {
        if is_plain_byte(b) && !(at == 0 && all_digits(name)) {
            out.push(b as char);
        } else {
            out.push('+');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xF)] as char);
        }
    }
    Cow::Owned(out)
}

/// Decodes what [`encode_subject`] wrote; `None` for anything it could not have written
/// (plain digits too: they are an id, see [`gwm_id`]).
pub fn decode_subject(encoded: &str) -> Option<Cow<'_, str>> {
    let bytes = encoded.as_bytes();
    // A name of digits only: its first digit escaped, the rest plain.
    // (`+3X` is the digit X, so the name is what follows `+3`.)
    if let Some(rest) = encoded.strip_prefix("+3")
        && all_digits(rest)
    {
        return Some(Cow::Borrowed(rest));
    }
    if all_digits(encoded) {
        return None;
    }
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
    /// `ganetimgr:needsreboot`: a change ganetimgr made applies at the next reboot.
    NeedsReboot,
    /// `ganetimgr:whitelist_ip:<cidr>`: where an isolated VM stays reachable from (as
    /// written, unchecked: shown, never acted on).
    WhitelistIp(String),
    /// `<prefix>:<perm>:<U|G>:<id>`: a subject named by its Ganeti Web Manager database
    /// id (`perm` `None`: the `owner` perm). Grants nothing until a [`GwmIds`] map names
    /// the id ([`Reader::parse`] turns it into [`ParsedTag::GwmGrant`] or
    /// [`ParsedTag::Owner`] then).
    GwmId {
        perm: Option<GwmPerm>,
        kind: SubjectKind,
        id: u64,
    },
    /// A valid tag with no meaning here (other prefixes, unknown perms, malformed subjects).
    Other,
}

/// Classifies a tag, leaving GWM ids unresolved (so they grant nothing): what every
/// reader of a cluster without an id map gets. `None` when `tag` is not a valid Ganeti
/// tag at all.
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
        if all_digits(encoded) {
            let perm = match perm {
                OWNER_PERM => None,
                p => Some(GwmPerm::parse(p)?),
            };
            // `02` is no id GWM writes, nor a name we write: it means nothing.
            let id = gwm_id(encoded)?;
            return Some(ParsedTag::GwmId { perm, kind, id });
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
            None if rest == "needsreboot" => Some(ParsedTag::NeedsReboot),
            Some(("whitelist_ip", cidr)) if !cidr.is_empty() => Some(ParsedTag::WhitelistIp(cidr.to_owned())),
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

/// `<prefix>:<perm>:<U|G>:<id>`: a grant as Ganeti Web Manager writes it.
pub fn format_grant_id(prefix: &str, perm: GwmPerm, kind: SubjectKind, id: u64) -> Result<String, TagError> {
    validate_prefix(prefix)?;
    checked(format!("{prefix}:{perm}:{}:{id}", kind_letter(kind)))
}

/// How one cluster's tags are read: its prefix and, when it has one, its GWM id map.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub prefix: &'a str,
    pub ids: Option<&'a GwmIds>,
}

impl<'a> Reader<'a> {
    /// A reader without an id map: GWM ids grant nothing.
    pub fn new(prefix: &'a str) -> Self {
        Self { prefix, ids: None }
    }

    /// [`parse`], with GWM ids the map names turned into the named subject's grant or
    /// ownership. An id the map does not name stays [`ParsedTag::GwmId`]: nothing.
    pub fn parse(&self, tag: &str) -> Option<ParsedTag> {
        let parsed = parse(tag, self.prefix)?;
        let ParsedTag::GwmId { perm, kind, id } = parsed else {
            return Some(parsed);
        };
        let Some(name) = self.ids.and_then(|m| m.name(kind, id)) else {
            return Some(parsed);
        };
        let subject = Subject {
            kind,
            name: name.to_owned(),
        };
        Some(match perm {
            Some(perm) => ParsedTag::GwmGrant { perm, subject },
            None => ParsedTag::Owner(subject),
        })
    }
}

impl<'a> From<&'a str> for Reader<'a> {
    fn from(prefix: &'a str) -> Self {
        Self::new(prefix)
    }
}

impl<'a> From<&'a String> for Reader<'a> {
    fn from(prefix: &'a String) -> Self {
        Self::new(prefix)
    }
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
            ParsedTag::NeedsReboot => Ok(format!("{GANETIMGR_PREFIX}:needsreboot")),
            ParsedTag::WhitelistIp(cidr) => checked(format!("{GANETIMGR_PREFIX}:whitelist_ip:{cidr}")),
            ParsedTag::GwmId { perm, kind, id } => match perm {
                Some(perm) => format_grant_id(prefix, *perm, *kind, *id),
                None => {
                    validate_prefix(prefix)?;
                    checked(format!("{prefix}:{OWNER_PERM}:{}:{id}", kind_letter(*kind)))
                }
            },
            ParsedTag::Other => Err(TagError::NotWritable),
        }
    }
}

/// The tags that give a VM an owner, as the operator reads them (its own, with the
/// cluster's `prefix` or the default one, and ganetimgr's), malformed ones included: a
/// tag that looks like an owner is treated as one, so adopting never adds a second owner.
pub fn owner_tags<'a>(tags: &'a [String], prefix: &str) -> Vec<&'a str> {
    let heads = [
        format!("{prefix}:{OWNER_PERM}:"),
        format!("{DEFAULT_PREFIX}:{OWNER_PERM}:"),
        format!("{GANETIMGR_PREFIX}:user:"),
        format!("{GANETIMGR_PREFIX}:group:"),
    ];
    tags.iter()
        .map(String::as_str)
        .filter(|t| {
            matches!(
                parse(t, prefix),
                Some(ParsedTag::Owner(_) | ParsedTag::GanetimgrOwner(_))
            ) || heads.iter().any(|h| t.starts_with(h.as_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
