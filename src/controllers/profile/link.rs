//! Email verification links: signed tokens (`crate::signed`) whose claims name the
//! profile, the address, a nonce and an expiry, signed with the operator's key derived
//! for this purpose. The nonce is also recorded in the profile's status, and verifying
//! removes it there, which is what makes a link single-use (the signature alone could
//! be replayed). Pure.

use crate::signed::{self, Expiring, TokenError};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The operator's root signing key: email links sign with its `verify-email` key,
/// confirmation links (`server::confirm`) with another key derived from it.
pub use crate::signed::SigningKey as LinkKey;
pub use crate::signed::nonce;

/// How long a link works.
pub const LINK_TTL_SECS: i64 = 24 * 3600;

/// The purpose email links' key is derived for.
const PURPOSE: &str = "verify-email";

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

pub fn sign(key: &LinkKey, claims: &Claims) -> String {
    signed::sign(&key.derive(PURPOSE), claims)
}

/// Checks the signature (in constant time) and the expiry.
pub fn verify(key: &LinkKey, token: &str, now: Timestamp) -> Result<Claims, TokenError> {
    signed::verify(&key.derive(PURPOSE), token, now.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LinkKey {
        LinkKey::new(&[7u8; 32]).unwrap()
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
            verify(&LinkKey::new(&[8u8; 32]).unwrap(), &token, t(0)),
            Err(TokenError::BadSignature)
        );
        // Neither the root key nor another purpose's key makes a link that passes.
        for other in [key(), key().derive("confirm"), key().derive("console")] {
            let forged = signed::sign(&other, &claims());
            assert_eq!(verify(&key(), &forged, t(0)), Err(TokenError::BadSignature));
        }
    }
}
