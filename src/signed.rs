//! Signed tokens: `<claims>.<tag>`, the claims base64url JSON, the tag their
//! HMAC-SHA256 under a key only the operator holds. Email verification links,
//! confirmation links and console tickets are such tokens; each purpose signs with its
//! own derived key, so a token made for one can never pass as another. A signature
//! proves who issued a token, not that it was used once: single use is the caller's
//! (see `server::spent`). Pure.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An HMAC key. Never printed.
pub struct SigningKey(hmac::Key);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
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

    /// A random key, for an operator given none (its tokens then die with the process).
    pub fn random() -> Self {
        Self(
            hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("system randomness"),
        )
    }

    /// The key for one purpose: HMAC as a PRF over the purpose's label. Deterministic,
    /// so every replica sharing the root key checks every replica's tokens.
    pub fn derive(&self, purpose: &str) -> Self {
        let label = format!("ganeti-operator/signed/{purpose}");
        let secret = hmac::sign(&self.0, label.as_bytes());
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret.as_ref()))
    }
}

/// Claims that stop being valid at some point.
pub trait Expiring {
    /// Seconds since the epoch.
    fn expires(&self) -> i64;
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is damaged (was it cut off when copied?)")]
    Malformed,
    #[error("the link's signature is not valid")]
    BadSignature,
    #[error("the link expired")]
    Expired,
}

pub fn sign<C: Serialize>(key: &SigningKey, claims: &C) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let tag = hmac::sign(&key.0, payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Checks the signature (in constant time), then the expiry; `now` in epoch seconds.
pub fn verify<C: DeserializeOwned + Expiring>(
    key: &SigningKey,
    token: &str,
    now: i64,
) -> Result<C, TokenError> {
    let (payload, tag) = token.trim().split_once('.').ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
    hmac::verify(&key.0, payload.as_bytes(), &tag).map_err(|_| TokenError::BadSignature)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: C = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if now >= claims.expires() {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// A fresh nonce: 128 random bits, base64url.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system randomness");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Claims {
        who: String,
        x: i64,
    }

    impl Expiring for Claims {
        fn expires(&self) -> i64 {
            self.x
        }
    }

    fn key() -> SigningKey {
        SigningKey::new(&[7u8; 32]).unwrap()
    }

    fn claims() -> Claims {
        Claims {
            who: "alice".into(),
            x: 1000,
        }
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let token = sign(&key(), &claims());
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "URL-safe: {token}"
        );
        assert_eq!(verify(&key(), &token, 999), Ok(claims()));
        assert_eq!(verify::<Claims>(&key(), &token, 1000), Err(TokenError::Expired));
    }

    #[test]
    fn tampering_or_another_key_breaks_the_signature() {
        let token = sign(&key(), &claims());
        let forged = sign(
            &key(),
            &Claims {
                who: "mallory".into(),
                ..claims()
            },
        );
        let (payload, _) = forged.split_once('.').unwrap();
        let (_, tag) = token.split_once('.').unwrap();
        assert_eq!(
            verify::<Claims>(&key(), &format!("{payload}.{tag}"), 0),
            Err(TokenError::BadSignature)
        );
        let other = SigningKey::new(&[8u8; 32]).unwrap();
        assert_eq!(verify::<Claims>(&other, &token, 0), Err(TokenError::BadSignature));
        assert_eq!(verify::<Claims>(&key(), "garbage", 0), Err(TokenError::Malformed));
        assert_eq!(
            verify::<Claims>(&key(), &token[..token.len() - 3], 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn derived_keys_agree_across_replicas_and_differ_by_purpose() {
        let token = sign(&key().derive("console"), &claims());
        assert_eq!(verify(&key().derive("console"), &token, 0), Ok(claims()));
        assert_eq!(
            verify::<Claims>(&key().derive("confirm"), &token, 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify::<Claims>(&key(), &token, 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn short_keys_are_refused_and_nonces_differ() {
        assert!(SigningKey::new(b"too short").is_err());
        assert_ne!(nonce(), nonce());
        assert_eq!(nonce().len(), 22);
        assert!(!format!("{:?}", key()).contains('7'));
    }
}
