//! The GanetiCluster controller: reads each cluster in bulk once per interval into the
//! shared inventory, and reports it as status and metrics.

pub mod plan;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// What the controller remembers between reconciliations (in memory only).
#[derive(Default)]
pub struct ClusterState {
    /// Per cluster: the inputs of the last successful read and when it happened, so a
    /// reconcile triggered by our own status write does not read Ganeti again.
    #[allow(dead_code)] // read by the reconciler (next commit)
    pub(crate) last_sync: Mutex<HashMap<String, SyncMark>>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SyncMark {
    pub generation: Option<i64>,
    pub secret_version: Option<String>,
    pub at: Instant,
}
