//! The operator's signing keys, built once in `main`: one root key (from a Secret, a
//! flag, or random for a single replica), and per purpose a key derived from it, so a
//! token made for one purpose never passes as another's ([`crate::signed`]). Every
//! replica derives the same keys from the same root, so each checks the others' tokens.

use crate::signed::SigningKey;
use kube::api::Api;

/// The purposes' labels: changing one invalidates every token in flight.
const EMAIL_LINKS: &str = "verify-email";
const CONFIRM_LINKS: &str = "confirm";
const CONSOLE_TICKETS: &str = "console-ticket";

/// One key per purpose. Never printed.
#[derive(Debug)]
pub struct Keys {
    /// Email verification links ([`crate::profile::link`]).
    pub email_links: SigningKey,
    /// Confirmation links of fatal VM actions (`server::confirm`).
    pub confirm_links: SigningKey,
    /// Console tickets (`server::console`).
    pub console_tickets: SigningKey,
}

impl Keys {
    pub fn derive(root: &SigningKey) -> Self {
        Self {
            email_links: root.derive(EMAIL_LINKS),
            confirm_links: root.derive(CONFIRM_LINKS),
            console_tickets: root.derive(CONSOLE_TICKETS),
        }
    }

    /// Keys from a fixed root, for tests.
    pub fn for_tests(byte: u8) -> Self {
        Self::derive(&SigningKey::new(&[byte; 32]).expect("32 bytes"))
    }
}

/// Refuses a random per-process root key where replicas share the work: with leader
/// election on, a link or console ticket signed by one replica is checked by whichever
/// replica the next request reaches, so each must have the same key.
pub fn require_shared(leader_election: bool, secret: Option<&str>, raw: Option<&str>) -> Result<(), String> {
    if !leader_election || secret.is_some() || raw.is_some() {
        return Ok(());
    }
    Err(
        "leader election is on (several replicas) but no link key is configured: each replica would \
         sign console tickets and confirmation links with its own random key, and those checked by \
         another replica would fail. Give --link-key-secret (a Secret whose key `key` holds at least \
         32 random bytes; the Helm chart creates one), or run one replica with --leader-election=false"
            .into(),
    )
}

/// The root key: from `--link-key` (at least 32 bytes), else the key `key` of the Secret
/// `--link-key-secret`, else a random one (links and tickets then stop working when the
/// operator restarts; only with one replica, see [`require_shared`]).
pub async fn load_root(
    client: &kube::Client,
    namespace: &str,
    secret: Option<&str>,
    raw: Option<&str>,
) -> Result<SigningKey, String> {
    if let Some(raw) = raw {
        return SigningKey::new(raw.as_bytes());
    }
    let Some(name) = secret else {
        tracing::warn!(
            "no --link-key or --link-key-secret: verification links stop working when the operator restarts"
        );
        return Ok(SigningKey::random());
    };
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api
        .get(name)
        .await
        .map_err(|e| format!("reading the link key Secret {namespace}/{name}: {e}"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get("key"))
        .map(|b| b.0.clone())
        .ok_or_else(|| format!("Secret {namespace}/{name} has no key \"key\""))?;
    SigningKey::new(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed;

    #[test]
    fn each_purpose_has_its_own_key_and_replicas_agree() {
        let (a, b) = (Keys::for_tests(1), Keys::for_tests(1));
        let claims = serde_json::json!({"x": i64::MAX});
        let token = signed::sign(&a.confirm_links, &claims);
        #[derive(serde::Deserialize)]
        struct C {
            x: i64,
        }
        impl signed::Expiring for C {
            fn expires(&self) -> i64 {
                self.x
            }
        }
        assert!(
            signed::verify::<C>(&b.confirm_links, &token, 0).is_ok(),
            "deterministic"
        );
        for other in [
            &a.email_links,
            &a.console_tickets,
            &Keys::for_tests(2).confirm_links,
        ] {
            assert!(signed::verify::<C>(other, &token, 0).is_err());
        }
    }

    #[test]
    fn several_replicas_need_a_configured_key() {
        assert!(require_shared(true, None, None).is_err());
        assert!(require_shared(true, Some("ganeti-operator-link-key"), None).is_ok());
        assert!(require_shared(false, None, None).is_ok());
    }
}
