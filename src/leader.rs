//! Leader election on a Kubernetes Lease (kube-lease-manager): of several replicas
//! only the leader runs the controllers; every replica serves HTTP.
//!
//! A leader that loses its lease stops its controllers and the process exits non-zero
//! (as controller-runtime does): a reconcile in flight may not be cut short safely, and
//! a fresh start is the simplest state to re-contend from. A replica stopped gracefully
//! releases the lease, so a follower takes over at once rather than after it expires.

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Name of the Lease the replicas contend for.
pub const LEASE_NAME: &str = "ganeti-operator-leader";

/// How leadership is decided.
pub enum Leadership {
    /// One replica only (`--leader-election=false`): it always leads.
    Disabled,
    Elected {
        identity: String,
        state: watch::Receiver<bool>,
        task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
    },
}

impl Leadership {
    /// Starts contending for the Lease `LEASE_NAME` in `namespace`. `duration`: seconds a
    /// lease stays valid without renewal (a dead leader is replaced within it).
    pub async fn start(
        client: &kube::Client,
        namespace: &str,
        identity: String,
        duration: u64,
    ) -> anyhow::Result<Self> {
        let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
            .with_namespace(namespace)
            .with_identity(identity.clone())
            .with_duration(duration)
            .with_grace((duration / 3).max(1))
            .build()
            .await?;
        let (state, task) = manager.watch().await;
        tracing::info!(%identity, lease = LEASE_NAME, %namespace, "contending for leadership");
        Ok(Self::Elected {
            identity,
            state,
            task,
        })
    }

    /// Waits until this replica leads; `false` when `stop` fired first.
    pub async fn acquired(&mut self, stop: &CancellationToken) -> bool {
        let Self::Elected { state, identity, .. } = self else {
            return true;
        };
        tokio::select! {
            result = state.wait_for(|leading| *leading) => {
                if result.is_ok() {
                    tracing::info!(%identity, "leading: starting the controllers");
                }
                result.is_ok()
            }
            _ = stop.cancelled() => false,
        }
    }

    /// Waits until this replica loses the lead (`true`) or `stop` fires (`false`).
    pub async fn lost(&mut self, stop: &CancellationToken) -> bool {
        let Self::Elected { state, .. } = self else {
            stop.cancelled().await;
            return false;
        };
        tokio::select! {
            _ = state.wait_for(|leading| !*leading) => true,
            _ = stop.cancelled() => false,
        }
    }

    /// Gives the lease up so a follower takes over at once.
    pub async fn release(self) {
        let Self::Elected {
            state,
            task,
            identity,
        } = self
        else {
            return;
        };
        // Closing the channel ends the manager's task, which hands the manager back.
        drop(state);
        match task.await {
            Ok(Ok(manager)) => match manager.release().await {
                Ok(()) => tracing::info!(%identity, "lease released"),
                Err(e) => {
                    tracing::warn!(%identity, error = %e, "releasing the lease failed; it expires on its own")
                }
            },
            Ok(Err(e)) => tracing::warn!(%identity, error = %e, "the lease manager failed"),
            Err(e) => tracing::warn!(%identity, error = %e, "the lease manager task failed"),
        }
    }
}

/// One `()` each time `leading` turns true (at once if it is true already): what a
/// reader that writes only while leading acts on when it takes over.
pub fn each_win(leading: watch::Receiver<bool>) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((leading, false), |(mut rx, led)| async move {
        if led {
            rx.wait_for(|l| !*l).await.ok()?;
        }
        rx.wait_for(|l| *l).await.ok()?;
        Some(((), (rx, true)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    async fn next_within(s: &mut (impl futures::Stream<Item = ()> + Unpin), ms: u64) -> Option<()> {
        tokio::time::timeout(Duration::from_millis(ms), s.next())
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn a_win_is_told_once_until_the_lead_is_lost_and_won_again() {
        let (tx, rx) = watch::channel(false);
        let mut wins = Box::pin(each_win(rx));
        assert_eq!(next_within(&mut wins, 50).await, None, "not leading yet");
        tx.send(true).unwrap();
        assert_eq!(next_within(&mut wins, 500).await, Some(()));
        tx.send(true).unwrap();
        assert_eq!(next_within(&mut wins, 50).await, None, "still the same lead");
        tx.send(false).unwrap();
        assert_eq!(next_within(&mut wins, 50).await, None, "lost");
        tx.send(true).unwrap();
        assert_eq!(next_within(&mut wins, 500).await, Some(()), "won again");
        drop(tx);
        assert_eq!(next_within(&mut wins, 500).await, None, "ends with the sender");
    }
}
