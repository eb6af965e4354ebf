//! Confirmation links for fatal VM actions (rename, reinstall, destroy): signed tokens
//! (`crate::signed`) bound to the user, the VM, the action and an expiry, signed with
//! the operator's key for this purpose ([`crate::keys::Keys::confirm_links`]), so a
//! confirmation link can never pass as an email verification link or the reverse.
//! Single use is recorded by the API (`server::spent`). Pure.

use crate::signed::{self, Expiring, SigningKey, TokenError};
use serde::{Deserialize, Serialize};

/// How long a confirmation link works.
/// How long a confirmation link works: long enough to open a mail, short enough that
/// the groups it carries (authenticated when it was asked for) are recent.
pub const CONFIRM_TTL_SECS: i64 = 15 * 60;

/// The signing key ([`crate::keys::Keys::confirm_links`]).
pub type ConfirmKey = SigningKey;

/// What a link vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "u")]
    pub user: String,
    /// The groups at the time of the request: the action is authorized again with them
    /// when the link is followed (rights may have changed meanwhile).
    #[serde(rename = "g")]
    pub groups: Vec<String>,
    #[serde(rename = "c")]
    pub cluster: String,
    #[serde(rename = "i")]
    pub instance: String,
    /// The VM's Ganeti UUID when the link was made: the link acts on that VM only.
    #[serde(rename = "id")]
    pub uuid: String,
    /// rename, reinstall or destroy.
    #[serde(rename = "a")]
    pub action: String,
    /// rename: the new name.
    #[serde(rename = "nn", default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// reinstall: the OS (absent: the current one).
    #[serde(rename = "os", default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(rename = "n")]
    pub nonce: String,
    /// Seconds since the epoch.
    #[serde(rename = "x")]
    pub expires: i64,
}

impl Expiring for Claims {
    fn expires(&self) -> i64 {
        self.expires
    }
}

/// Why a link is refused: as any signed token, or because it was followed before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("{}", TokenError::Malformed)]
    Malformed,
    #[error("{}", TokenError::BadSignature)]
    BadSignature,
    #[error("{}", TokenError::Expired)]
    Expired,
    #[error("the link was already used")]
    Used,
}

impl From<TokenError> for LinkError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Malformed => Self::Malformed,
            TokenError::BadSignature => Self::BadSignature,
            TokenError::Expired => Self::Expired,
        }
    }
}

pub fn sign(key: &ConfirmKey, claims: &Claims) -> String {
    signed::sign(key, claims)
}

/// Checks the signature (constant time) and the expiry; `now` in epoch seconds.
pub fn verify(key: &ConfirmKey, token: &str, now: i64) -> Result<Claims, LinkError> {
    Ok(signed::verify(key, token, now)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            user: "alice".into(),
            groups: vec!["staff".into()],
            cluster: "lab".into(),
            instance: "vm1.example.org".into(),
            uuid: "6d0f5b3e-8f0a-4c4e-9a57-0f1a2b3c4d5e".into(),
            action: "destroy".into(),
            new_name: None,
            os: None,
            nonce: "n1".into(),
            expires: 1000,
        }
    }

    #[test]
    fn a_link_verifies_until_it_expires() {
        let key = crate::keys::Keys::for_tests(1).confirm_links;
        let token = sign(&key, &claims());
        assert_eq!(verify(&key, &token, 999), Ok(claims()));
        assert_eq!(verify(&key, &token, 1000), Err(LinkError::Expired));
    }

    #[test]
    fn token_errors_keep_their_kind_and_words() {
        let key = crate::keys::Keys::for_tests(1).confirm_links;
        let token = sign(&key, &claims());
        assert_eq!(
            verify(&crate::keys::Keys::for_tests(2).confirm_links, &token, 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(verify(&key, "nonsense", 0), Err(LinkError::Malformed));
        for e in [
            TokenError::Malformed,
            TokenError::BadSignature,
            TokenError::Expired,
        ] {
            assert_eq!(LinkError::from(e.clone()).to_string(), e.to_string());
        }
    }

    #[test]
    fn confirmation_and_email_links_never_pass_as_each_other() {
        use crate::profile::link;
        let keys = crate::keys::Keys::for_tests(1);
        let token = sign(&keys.confirm_links, &claims());
        assert!(verify(&crate::keys::Keys::for_tests(1).confirm_links, &token, 0).is_ok());
        assert_eq!(verify(&keys.email_links, &token, 0), Err(LinkError::BadSignature));
        let email = link::Claims {
            profile: "alice".into(),
            email: "alice@example.org".into(),
            nonce: "n1".into(),
            expires: 1000,
        };
        let now = k8s_openapi::jiff::Timestamp::from_second(0).unwrap();
        assert_eq!(
            verify(&keys.confirm_links, &link::sign(&keys.email_links, &email), 0),
            Err(LinkError::BadSignature)
        );
        assert!(link::verify(&keys.email_links, &signed::sign(&keys.confirm_links, &email), now).is_err());
    }
}
