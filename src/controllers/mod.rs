//! The controllers: one folder per kind, each `observe -> plan (pure) -> apply`, run
//! under one harness ([`harness`]). They stand on the shared pieces built once in
//! `main` (inventory, cluster registry, authorization snapshot, keys, configuration);
//! the HTTP server stands on the same pieces, never on the controllers.

pub mod application;
pub mod cluster;
pub mod harness;
pub mod notification;
pub mod profile;
pub mod quota;
pub mod system_rights;
pub mod tags;
pub mod written;

pub use crate::api::FIELD_MANAGER;
pub use crate::config::Config;
pub use harness::{Error, ErrorKind};

use crate::shared::Shared;
use kube::runtime::events::{Recorder, Reporter};
use std::sync::Arc;

/// What reconcilers share: the shared pieces, and the GanetiCluster controller's memory.
pub struct Context {
    pub shared: Shared,
    /// Events on the controllers' objects (repeats folded into one with a count).
    pub recorder: Recorder,
    /// What the GanetiCluster controller remembers between reconciles.
    pub cluster_sync: cluster::SyncState,
}

impl Context {
    pub fn new(shared: Shared) -> Arc<Self> {
        Arc::new(Self {
            recorder: Recorder::new(shared.client.clone(), Reporter::from(FIELD_MANAGER.to_string())),
            shared,
            cluster_sync: Default::default(),
        })
    }
}

/// How long a stopping controller keeps watching for its first list (see [`once_listed`]).
const FIRST_LIST_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The graceful-shutdown trigger for a kube-runtime `Controller` whose store is `store`:
/// `shutdown`, but not before the store's first list is in (at most
/// [`FIRST_LIST_GRACE`]). kube-runtime's runner waits for that list before it ends,
/// and stopping the watch earlier (a SIGTERM right after winning the lease) would leave
/// it waiting forever.
pub async fn once_listed<K>(
    store: kube::runtime::reflector::Store<K>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    shutdown.await;
    let _ = tokio::time::timeout(FIRST_LIST_GRACE, store.wait_until_ready()).await;
}
