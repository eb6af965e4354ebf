//! Confirmation links for fatal VM actions (rename, reinstall, destroy):
//! `<claims>.<signature>`, base64url, an HMAC-SHA256 bound to the user, the VM, the
//! action and an expiry, as the email verification links are (controllers/profile/link.rs).
//! Single use: a followed link's nonce is remembered until the link expires. Pure.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How long a confirmation link works.
pub const CONFIRM_TTL_SECS: i64 = 3600;

/// The signing key. Never printed.
pub struct ConfirmKey(hmac::Key);

impl std::fmt::Debug for ConfirmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfirmKey(..)")
    }
}

impl ConfirmKey {
    /// Derived from the operator's link key, so every replica checks every replica's
    /// links, and a confirmation link can never pass as an email verification link.
    pub fn derive(link_key: &crate::controllers::profile::link::LinkKey) -> Self {
        use crate::controllers::profile::link::{Claims, sign};
        // HMAC as a PRF over a fixed label: the signature part is the derived secret.
        let label = Claims {
            profile: "ganeti-operator/console-confirmation-key".into(),
            email: String::new(),
            nonce: String::new(),
            expires: 0,
        };
        let token = sign(link_key, &label);
        let secret = token.rsplit('.').next().expect("signed token has a tag");
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()))
    }

    #[cfg(test)]
    pub fn for_tests(byte: u8) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, &[byte; 32]))
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is damaged (was it cut off when copied?)")]
    Malformed,
    #[error("the link's signature is not valid")]
    BadSignature,
    #[error("the link expired")]
    Expired,
    #[error("the link was already used")]
    Used,
}

pub fn sign(key: &ConfirmKey, claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let tag = hmac::sign(&key.0, payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Checks the signature (constant time) and the expiry; `now` in epoch seconds.
pub fn verify(key: &ConfirmKey, token: &str, now: i64) -> Result<Claims, LinkError> {
    let (payload, tag) = token.trim().split_once('.').ok_or(LinkError::Malformed)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkError::Malformed)?;
    hmac::verify(&key.0, payload.as_bytes(), &tag).map_err(|_| LinkError::BadSignature)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| LinkError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| LinkError::Malformed)?;
    if now >= claims.expires {
        return Err(LinkError::Expired);
    }
    Ok(claims)
}

/// Nonces of followed links, each kept until its link expires (then the expiry alone
/// refuses it).
#[derive(Debug, Default)]
pub struct UsedNonces(HashMap<String, i64>);

impl UsedNonces {
    /// Marks `claims`' nonce used; `Err(Used)` if it already was.
    pub fn spend(&mut self, claims: &Claims, now: i64) -> Result<(), LinkError> {
        self.0.retain(|_, expires| *expires > now);
        if self.0.contains_key(&claims.nonce) {
            return Err(LinkError::Used);
        }
        self.0.insert(claims.nonce.clone(), claims.expires);
        Ok(())
    }

    /// Gives a nonce back (the action could not even be submitted: let the user retry).
    pub fn refund(&mut self, claims: &Claims) {
        self.0.remove(&claims.nonce);
    }
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
            action: "destroy".into(),
            new_name: None,
            os: None,
            nonce: "n1".into(),
            expires: 1000,
        }
    }

    #[test]
    fn a_link_verifies_once_until_it_expires() {
        let key = ConfirmKey::for_tests(1);
        let token = sign(&key, &claims());
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
        let got = verify(&key, &token, 999).unwrap();
        assert_eq!(got, claims());
        assert_eq!(verify(&key, &token, 1000), Err(LinkError::Expired));
        let mut used = UsedNonces::default();
        assert_eq!(used.spend(&got, 10), Ok(()));
        assert_eq!(used.spend(&got, 11), Err(LinkError::Used));
        used.refund(&got);
        assert_eq!(used.spend(&got, 12), Ok(()));
        // Expired nonces are forgotten (the expiry refuses the link by then).
        used.spend(
            &Claims {
                nonce: "n2".into(),
                ..claims()
            },
            2000,
        )
        .unwrap();
        assert_eq!(used.0.len(), 1);
    }

    #[test]
    fn links_are_bound_to_their_claims_and_key() {
        let key = ConfirmKey::for_tests(1);
        let token = sign(&key, &claims());
        let other = sign(
            &key,
            &Claims {
                instance: "vm2.example.org".into(),
                ..claims()
            },
        );
        let (payload, _) = other.split_once('.').unwrap();
        let (_, tag) = token.split_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("{payload}.{tag}"), 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(&ConfirmKey::for_tests(2), &token, 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(verify(&key, "nonsense", 0), Err(LinkError::Malformed));
    }

    #[test]
    fn the_derived_key_differs_from_the_link_key() {
        use crate::controllers::profile::link::LinkKey;
        let link_key = LinkKey::new(&[1u8; 32]).unwrap();
        let a = ConfirmKey::derive(&link_key);
        let b = ConfirmKey::derive(&link_key);
        let token = sign(&a, &claims());
        assert!(verify(&b, &token, 0).is_ok(), "deterministic: replicas agree");
        assert_eq!(
            verify(&ConfirmKey::for_tests(1), &token, 0),
            Err(LinkError::BadSignature)
        );
        let other = ConfirmKey::derive(&LinkKey::new(&[2u8; 32]).unwrap());
        assert_eq!(verify(&other, &token, 0), Err(LinkError::BadSignature));
    }
}
