//! A UserProfile's status from its spec and what happened to its verification mail.
//! Pure: the IO edge (mod.rs) mails, then records.

use super::keys;
use super::link::LINK_TTL_SECS;
use crate::api::conditions::{self, Status};
use crate::api::profile::{PendingVerification, UserProfile, UserProfileStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const EMAIL_VERIFIED: &str = "EmailVerified";
pub const KEYS_VALID: &str = "KeysValid";
/// Setting this annotation to a new value asks for a new verification link.
pub const RESEND_ANNOTATION: &str = "ganeti.dev/resend-verification";

/// What the email verification needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailStep {
    /// The current address is verified.
    Verified,
    /// Make a new link (new nonce, new expiry), record it, then mail it.
    NewLink,
    /// The recorded link was not mailed yet (or the mail failed): mail it.
    Mail,
    /// Mailed; wait for the click until the link expires.
    Wait { expires: Timestamp },
    /// The link expired or the address was refused: wait for a new request.
    Stuck,
}

fn annotation(p: &UserProfile) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(RESEND_ANNOTATION).cloned()
}

pub fn email(p: &UserProfile) -> &str {
    p.spec.email.trim()
}

pub fn email_step(p: &UserProfile, now: Timestamp) -> EmailStep {
    let status = p.status.clone().unwrap_or_default();
    if status.verified_email.as_deref() == Some(email(p)) {
        return EmailStep::Verified;
    }
    let Some(pending) = status.pending_verification.filter(|v| v.email == email(p)) else {
        return EmailStep::NewLink;
    };
    if pending.resend_request != annotation(p) {
        return EmailStep::NewLink;
    }
    if now >= pending.expires.0 || pending.refused.is_some() {
        return EmailStep::Stuck;
    }
    if pending.sent_time.is_none() {
        return EmailStep::Mail;
    }
    EmailStep::Wait {
        expires: pending.expires.0,
    }
}

/// A new pending verification for the profile's current address.
pub fn new_link(p: &UserProfile, nonce: String, now: Timestamp) -> PendingVerification {
    PendingVerification {
        email: email(p).to_string(),
        nonce,
        expires: Time(now + SignedDuration::from_secs(LINK_TTL_SECS)),
        sent_time: None,
        resend_request: annotation(p),
        refused: None,
    }
}

/// How the last mail attempt went, for the condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailNote {
    /// Nothing tried in this pass.
    None,
    /// The operator cannot mail (no SMTP settings or no public URL): why.
    CannotMail(String),
    /// A transient failure; retried.
    Failed(String),
}

/// The status for the profile: keys checked, the verification condition from the
/// recorded pending verification (already updated by the caller) and `note`.
pub fn status(p: &UserProfile, note: &MailNote, now: Timestamp) -> UserProfileStatus {
    let mut s = p.status.clone().unwrap_or_default();
    let g = p.metadata.generation;
    s.observed_generation = g;

    let (fingerprints, problems) = keys::check_all(&p.spec.ssh_keys);
    let (keys_valid, reason, message) = if problems.is_empty() {
        (
            Status::True,
            "Valid",
            format!("{} valid key(s)", fingerprints.len()),
        )
    } else {
        (Status::False, "InvalidKey", problems.join("; "))
    };
    s.key_fingerprints = fingerprints;
    conditions::set(&mut s.conditions, KEYS_VALID, keys_valid, reason, message, g, now);

    let address = email(p).to_string();
    if s.verified_email.as_deref() == Some(address.as_str()) {
        s.pending_verification = None;
        conditions::set(
            &mut s.conditions,
            EMAIL_VERIFIED,
            Status::True,
            "Verified",
            format!("{address} is verified"),
            g,
            now,
        );
        return s;
    }
    // A link for an older address is void.
    if s.pending_verification
        .as_ref()
        .is_some_and(|v| v.email != address)
    {
        s.pending_verification = None;
    }
    let (reason, message) = match (&s.pending_verification, note) {
        (_, MailNote::CannotMail(why)) => ("CannotMail", format!("{address} is not verified: {why}")),
        (Some(v), _) if v.refused.is_some() => (
            "AddressRefused",
            format!(
                "the mail server refused {address}: {}; correct the address, or set the annotation {RESEND_ANNOTATION} to a new value to try again",
                v.refused.as_deref().unwrap_or_default()
            ),
        ),
        (Some(v), _) if now >= v.expires.0 => (
            "LinkExpired",
            format!(
                "the link mailed to {address} expired; set the annotation {RESEND_ANNOTATION} to a new value for a new one"
            ),
        ),
        (_, MailNote::Failed(why)) => (
            "MailFailed",
            format!("mailing the link to {address} failed ({why}); trying again"),
        ),
        (Some(v), _) if v.sent_time.is_some() => (
            "LinkSent",
            format!(
                "a verification link was mailed to {address}; it works until {}",
                v.expires.0
            ),
        ),
        _ => (
            "Pending",
            format!("a verification link for {address} is about to be mailed"),
        ),
    };
    conditions::set(
        &mut s.conditions,
        EMAIL_VERIFIED,
        Status::False,
        reason,
        message,
        g,
        now,
    );
    s
}

/// Why a correctly signed, unexpired link is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The link was used before (the address is verified).
    AlreadyUsed,
    /// The profile's address changed since the link was made.
    AddressChanged,
    /// A newer link was made since (or the profile was recreated).
    Superseded,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::AlreadyUsed => "this link was already used: the address is verified",
            Refusal::AddressChanged => "the profile's email address changed after this link was sent",
            Refusal::Superseded => "this link was replaced by a newer one: use the most recent mail",
        })
    }
}

/// The status after following a link with `claims` (signature and expiry checked by
/// the caller): the address verified and the nonce consumed, so the link works once.
pub fn verify(
    p: &UserProfile,
    claims: &super::link::Claims,
    now: Timestamp,
) -> Result<UserProfileStatus, Refusal> {
    let s = p.status.clone().unwrap_or_default();
    let matches = s
        .pending_verification
        .as_ref()
        .is_some_and(|v| v.nonce == claims.nonce && v.email == claims.email);
    if !matches {
        return Err(if s.verified_email.as_deref() == Some(claims.email.as_str()) {
            Refusal::AlreadyUsed
        } else if email(p) != claims.email {
            Refusal::AddressChanged
        } else {
            Refusal::Superseded
        });
    }
    if email(p) != claims.email {
        return Err(Refusal::AddressChanged);
    }
    let mut verified = p.clone();
    let mut st = s;
    st.verified_email = Some(claims.email.clone());
    st.pending_verification = None;
    verified.status = Some(st);
    Ok(status(&verified, &MailNote::None, now))
}

/// The verification mail.
pub fn mail_text(p: &UserProfile, url: &str) -> (String, String) {
    let name = p
        .spec
        .full_name
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or(&p.spec.username);
    let subject = "Confirm your email address for the Ganeti VM service".to_string();
    let body = format!(
        "Hello {name},\n\n\
         this address was entered as the email address of the Ganeti VM service user\n\
         \"{user}\". To confirm it, open this link within {hours} hours:\n\n\
         {url}\n\n\
         The link works once. If you did not ask for this, ignore this mail: the\n\
         address then stays unconfirmed and gets no mail from the service.\n",
        user = p.spec.username,
        hours = LINK_TTL_SECS / 3600,
    );
    (subject, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::profile::UserProfileSpec;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn profile(email: &str) -> UserProfile {
        let mut p = UserProfile::new(
            "alice",
            UserProfileSpec {
                username: "alice".into(),
                full_name: Some("Alice Liddell".into()),
                email: email.into(),
                ssh_keys: vec![],
                groups: vec![],
            },
        );
        p.metadata.generation = Some(1);
        p
    }

    #[test]
    fn a_new_address_gets_a_link_which_is_mailed_then_awaited() {
        let mut p = profile("alice@example.org");
        assert_eq!(email_step(&p, t(0)), EmailStep::NewLink);
        let mut s = UserProfileStatus {
            pending_verification: Some(new_link(&p, "n1".into(), t(0))),
            ..Default::default()
        };
        p.status = Some(s.clone());
        assert_eq!(email_step(&p, t(1)), EmailStep::Mail);
        s.pending_verification.as_mut().unwrap().sent_time = Some(Time(t(1)));
        p.status = Some(s);
        let expires = t(LINK_TTL_SECS);
        assert_eq!(email_step(&p, t(2)), EmailStep::Wait { expires });
        let st = status(&p, &MailNote::None, t(2));
        let c = conditions::get(&st.conditions, EMAIL_VERIFIED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "LinkSent"));
        assert_eq!(email_step(&p, expires), EmailStep::Stuck);
        let st = status(&p, &MailNote::None, expires);
        assert_eq!(
            conditions::get(&st.conditions, EMAIL_VERIFIED).unwrap().reason,
            "LinkExpired"
        );
    }

    /// alice's profile with a link (nonce n1, made at 0) recorded, then `edit`ed.
    fn with_link(edit: impl FnOnce(&mut PendingVerification)) -> UserProfile {
        let mut p = profile("alice@example.org");
        let mut v = new_link(&p, "n1".into(), t(0));
        edit(&mut v);
        p.status = Some(UserProfileStatus {
            pending_verification: Some(v),
            ..Default::default()
        });
        p
    }

    #[test]
    fn a_resend_request_or_a_changed_address_makes_a_new_link() {
        let mut p = with_link(|v| v.sent_time = Some(Time(t(0))));
        p.metadata.annotations = Some([(RESEND_ANNOTATION.to_string(), "1".to_string())].into());
        assert_eq!(email_step(&p, t(5)), EmailStep::NewLink);
        p.metadata.annotations = None;
        p.spec.email = "alice@new.example.org".into();
        assert_eq!(email_step(&p, t(5)), EmailStep::NewLink);
        let st = status(&p, &MailNote::None, t(5));
        assert!(
            st.pending_verification.is_none(),
            "the old address's link is void"
        );
    }

    #[test]
    fn verified_means_the_current_address() {
        let mut p = profile("alice@example.org");
        p.status = Some(UserProfileStatus {
            verified_email: Some("alice@example.org".into()),
            ..Default::default()
        });
        assert_eq!(email_step(&p, t(0)), EmailStep::Verified);
        assert!(conditions::is_true(
            &status(&p, &MailNote::None, t(0)).conditions,
            EMAIL_VERIFIED
        ));
        p.spec.email = "other@example.org".into();
        assert_eq!(email_step(&p, t(0)), EmailStep::NewLink);
        let st = status(&p, &MailNote::CannotMail("no SMTP settings".into()), t(0));
        let c = conditions::get(&st.conditions, EMAIL_VERIFIED).unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "CannotMail"));
    }

    #[test]
    fn a_refused_address_waits_for_a_change() {
        let p = with_link(|v| v.refused = Some("550 no such user".into()));
        assert_eq!(email_step(&p, t(1)), EmailStep::Stuck);
        let st = status(&p, &MailNote::None, t(1));
        assert_eq!(
            conditions::get(&st.conditions, EMAIL_VERIFIED).unwrap().reason,
            "AddressRefused"
        );
    }

    #[test]
    fn keys_are_checked_into_fingerprints_and_a_condition() {
        let mut p = profile("alice@example.org");
        p.spec.ssh_keys = vec!["-----BEGIN OPENSSH PRIVATE KEY-----".into()];
        let st = status(&p, &MailNote::None, t(0));
        let c = conditions::get(&st.conditions, KEYS_VALID).unwrap();
        assert_eq!(c.status, "False");
        assert!(c.message.contains("private key"), "{}", c.message);
        assert!(st.key_fingerprints.is_empty());
    }

    #[test]
    fn a_link_verifies_once_and_only_for_its_address_and_nonce() {
        let mut p = with_link(|v| v.sent_time = Some(Time(t(0))));
        let claims = super::super::link::Claims {
            profile: "alice".into(),
            email: "alice@example.org".into(),
            nonce: "n1".into(),
            expires: LINK_TTL_SECS,
        };
        let stale = super::super::link::Claims {
            nonce: "n0".into(),
            ..claims.clone()
        };
        assert_eq!(verify(&p, &stale, t(1)), Err(Refusal::Superseded));
        let st = verify(&p, &claims, t(1)).unwrap();
        assert_eq!(st.verified_email.as_deref(), Some("alice@example.org"));
        assert!(st.pending_verification.is_none());
        assert!(conditions::is_true(&st.conditions, EMAIL_VERIFIED));
        p.status = Some(st);
        assert_eq!(verify(&p, &claims, t(2)), Err(Refusal::AlreadyUsed), "single use");

        let mut q = with_link(|_| {});
        q.spec.email = "changed@example.org".into();
        assert_eq!(verify(&q, &claims, t(1)), Err(Refusal::AddressChanged));
    }

    #[test]
    fn the_mail_names_the_user_and_carries_the_link() {
        let p = profile("alice@example.org");
        let (subject, body) = mail_text(&p, "https://ganeti.example.org/verify-email?token=x.y");
        assert!(subject.contains("Confirm"));
        assert!(body.starts_with("Hello Alice Liddell,"));
        assert!(body.contains("\n\nhttps://ganeti.example.org/verify-email?token=x.y\n\n"));
    }
}
