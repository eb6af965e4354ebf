//! Single use for signed tokens (console tickets, confirmation links), shared by every
//! replica and kept across restarts: spending a token creates a ConfigMap named after
//! the token's nonce. The API server's create is atomic, so of two replicas spending the
//! same token at once exactly one succeeds (the other gets 409), and a restart forgets
//! nothing. Spent records are deleted once their token has expired (its expiry alone
//! refuses it from then on).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;

/// Marks the records; the value is the token's purpose.
pub const LABEL: &str = "ganeti-operator.io/spent-token";
/// When the token expires, in epoch seconds.
const EXPIRES: &str = "ganeti-operator.io/expires";

/// Where spent tokens are recorded.
#[derive(Clone)]
pub struct SpentTokens {
    api: Api<ConfigMap>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    #[error("already used")]
    AlreadySpent,
    #[error("the record of used links could not be written: {0}")]
    Store(#[from] kube::Error),
}

impl SpentTokens {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }

    /// Records the token as spent; `AlreadySpent` when it was.
    pub async fn spend(&self, purpose: &str, nonce: &str, expires: i64) -> Result<(), SpendError> {
        let record = ConfigMap {
            metadata: ObjectMeta {
                name: Some(record_name(purpose, nonce)),
                labels: Some(BTreeMap::from([(LABEL.to_string(), purpose.to_string())])),
                annotations: Some(BTreeMap::from([(EXPIRES.to_string(), expires.to_string())])),
                ..Default::default()
            },
            ..Default::default()
        };
        match self.api.create(&PostParams::default(), &record).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Err(SpendError::AlreadySpent),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives a token back (nothing was done with it: the user may retry).
    pub async fn refund(&self, purpose: &str, nonce: &str) -> Result<(), kube::Error> {
        match self
            .api
            .delete(&record_name(purpose, nonce), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the records of expired tokens; returns how many.
    pub async fn prune(&self, now: i64) -> Result<usize, kube::Error> {
        let records = self.api.list(&ListParams::default().labels(LABEL)).await?;
        let mut pruned = 0;
        for record in records.items {
            let expires = record
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(EXPIRES))
                .and_then(|x| x.parse::<i64>().ok());
            if is_prunable(expires, now)
                && let Some(name) = &record.metadata.name
            {
                match self.api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => pruned += 1,
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(pruned)
    }

    /// Prunes every `every` until the process ends (any replica may: deletes are
    /// idempotent).
    pub async fn prune_forever(self, every: std::time::Duration) {
        loop {
            tokio::time::sleep(every).await;
            match self.prune(crate::signed::now_secs()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(pruned = n, "deleted the records of expired tokens"),
                Err(e) => tracing::warn!(error = %e, "pruning the records of expired tokens failed"),
            }
        }
    }
}

/// A valid ConfigMap name that reveals nothing of the token: the nonce is hashed, so
/// reading the records does not hand out usable tokens (they are signed anyway).
fn record_name(purpose: &str, nonce: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{purpose}\0{nonce}").as_bytes());
    let hex: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("spent-{purpose}-{hex}")
}

/// A record without a readable expiry was not written by [`SpentTokens::spend`]: pruned.
fn is_prunable(expires: Option<i64>, now: i64) -> bool {
    expires.is_none_or(|x| x <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_valid_distinct_and_opaque() {
        let a = record_name("console", "abc");
        assert_eq!(a, record_name("console", "abc"), "deterministic: replicas agree");
        assert_ne!(a, record_name("confirm", "abc"));
        assert_ne!(a, record_name("console", "abd"));
        assert!(!a.contains("abc"));
        assert!(a.len() <= 63);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn only_expired_or_unreadable_records_are_pruned() {
        assert!(is_prunable(Some(100), 100));
        assert!(is_prunable(Some(99), 100));
        assert!(!is_prunable(Some(101), 100));
        assert!(is_prunable(None, 100));
    }
}
