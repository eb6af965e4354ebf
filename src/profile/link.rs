//! Email verification links: signed tokens (`crate::signed`) whose claims name the
//! profile, the address, a nonce and an expiry, signed with the operator's key for this
//! purpose ([`crate::keys::Keys::email_links`]). The nonce is also recorded in the profile's status, and verifying
//! removes it there, which is what makes a link single-use (the signature alone could
//! be replayed). Pure.

use crate::signed::{self, Expiring, TokenError};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::signed::SigningKey;
pub use crate::signed::nonce;

/// How long a link works.
pub const LINK_TTL_SECS: i64 = 24 * 3600;

/// What a link vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// UserProfile name.
    #[serde(rename = "p")]
    pub profile: String,
    /// The address verified.
    #[serde(rename = "e")]
    pub email: String,
    /// Matches `status.pendingVerification.nonce` while the link is unused.
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

/// Signs with `key`, the email links' key.
pub fn sign(key: &SigningKey, claims: &Claims) -> String {
    signed::sign(key, claims)
}

/// Checks the signature (in constant time) and the expiry.
pub fn verify(key: &SigningKey, token: &str, now: Timestamp) -> Result<Claims, TokenError> {
    signed::verify(key, token, now.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::keys::Keys;

    fn key() -> SigningKey {
        Keys::for_tests(7).email_links
    }

    fn claims() -> Claims {
        Claims {
            profile: "alice".into(),
            email: "alice@example.org".into(),
            nonce: "abc".into(),
            expires: 1000,
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let token = sign(&key(), &claims());
        assert_eq!(verify(&key(), &token, t(999)), Ok(claims()));
        assert_eq!(verify(&key(), &token, t(1000)), Err(TokenError::Expired));
    }

    #[test]
    fn only_the_email_links_key_signs_email_links() {
        let token = sign(&key(), &claims());
        assert_eq!(
            verify(&Keys::for_tests(8).email_links, &token, t(0)),
            Err(TokenError::BadSignature)
        );
        // Neither the root key nor another purpose's key makes a link that passes.
        let keys = Keys::for_tests(7);
        let root = SigningKey::new(&[7u8; 32]).unwrap();
        for other in [&root, &keys.confirm_links, &keys.console_tickets] {
            let forged = signed::sign(other, &claims());
            assert_eq!(verify(&key(), &forged, t(0)), Err(TokenError::BadSignature));
        }
    }
}
