//! Email verification links: `<claims>.<signature>`, both base64url, the signature an
//! HMAC-SHA256 of the claims under a key only the operator holds. The claims name the
//! profile, the address, a nonce and an expiry; the nonce is also recorded in the
//! profile's status, and verifying removes it there, which is what makes a link
//! single-use (the signature alone could be replayed). Pure.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::jiff::Timestamp;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// How long a link works.
pub const LINK_TTL_SECS: i64 = 24 * 3600;

/// The HMAC key. Never printed.
pub struct LinkKey(hmac::Key);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

impl LinkKey {
    /// A key from secret bytes (at least 32: shorter keys are refused).
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err(format!(
                "the link signing key has {} bytes; it needs at least 32 (e.g. head -c 32 /dev/urandom | base64)",
                secret.len()
            ));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// A random key, for an operator given none (links then die with the process).
    pub fn random() -> Self {
        Self(
            hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("system randomness"),
        )
    }
}

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

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is damaged (was it cut off when copied?)")]
    Malformed,
    #[error("the link's signature is not valid")]
    BadSignature,
    #[error("the link expired")]
    Expired,
}

pub fn sign(key: &LinkKey, claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let tag = hmac::sign(&key.0, payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Checks the signature (in constant time) and the expiry.
pub fn verify(key: &LinkKey, token: &str, now: Timestamp) -> Result<Claims, LinkError> {
    let (payload, tag) = token.trim().split_once('.').ok_or(LinkError::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkError::Malformed)?;
    hmac::verify(&key.0, payload.as_bytes(), &tag).map_err(|_| LinkError::BadSignature)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LinkError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| LinkError::Malformed)?;
    if now.as_second() >= claims.expires {
        return Err(LinkError::Expired);
    }
    Ok(claims)
}

/// A fresh nonce: 128 random bits, base64url.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system randomness");
    URL_SAFE_NO_PAD.encode(bytes)
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
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "URL-safe: {token}"
        );
        assert_eq!(verify(&key(), &token, t(999)), Ok(claims()));
        assert_eq!(verify(&key(), &token, t(1000)), Err(LinkError::Expired));
    }

    #[test]
    fn tampering_or_another_key_breaks_the_signature() {
        let token = sign(&key(), &claims());
        let mut other = claims();
        other.email = "mallory@example.org".into();
        let forged_payload = sign(&key(), &other);
        let (payload, _) = forged_payload.split_once('.').unwrap();
        let (_, tag) = token.split_once('.').unwrap();
        assert_eq!(
            verify(&key(), &format!("{payload}.{tag}"), t(0)),
            Err(LinkError::BadSignature)
        );
        let other_key = LinkKey::new(&[8u8; 32]).unwrap();
        assert_eq!(verify(&other_key, &token, t(0)), Err(LinkError::BadSignature));
        assert_eq!(verify(&key(), "garbage", t(0)), Err(LinkError::Malformed));
        assert_eq!(
            verify(&key(), &token[..token.len() - 3], t(0)),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn short_keys_are_refused_and_nonces_differ() {
        assert!(LinkKey::new(b"too short").is_err());
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 22);
        assert!(!format!("{:?}", key()).contains('7'));
    }
}
