//! The controllers: one folder per kind, each `observe -> plan (pure) -> apply`.

pub mod application;
pub mod cluster;
pub mod notification;
pub mod profile;
pub mod system_rights;
pub mod tags;
pub mod written;

use crate::inventory::Inventory;
use crate::metrics::Metrics;
use std::sync::Arc;

/// Name under which the operator writes (server-side apply field manager, Events).
pub const FIELD_MANAGER: &str = "ganeti-operator";

/// Settings every controller may read.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace of the Secrets that GanetiClusters (and SMTP settings) name.
    pub secrets_namespace: String,
    /// Secret (in `secrets_namespace`) with the SMTP settings; `None`: no mail is sent.
    pub smtp_secret: Option<String>,
    /// Mail addresses users have not verified too (default: verified ones only).
    pub mail_unverified: bool,
    /// The operator's HTTP server as users reach it (`https://ganeti.example.org`), for
    /// links in mails; `None`: no links can be mailed.
    pub public_url: Option<String>,
    /// Signs email verification links (never printed).
    pub link_key: Arc<profile::link::LinkKey>,
    /// Which GanetiClusters the operator connects to (`--allow-insecure-rapi`).
    pub rapi_policy: crate::clusters::Policy,
}

/// What reconcilers share: the API client, the inventory, metrics, settings.
pub struct Context {
    pub client: kube::Client,
    pub inventory: Inventory,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    pub clusters: cluster::ClusterState,
}

impl Context {
    pub fn new(
        client: kube::Client,
        inventory: Inventory,
        metrics: Arc<Metrics>,
        config: Config,
    ) -> Arc<Self> {
        Arc::new(Self {
            client,
            inventory,
            metrics,
            config,
            clusters: Default::default(),
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

/// Why a reconciliation failed, with a bounded category for metrics and Events.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Ganeti RAPI: {0}")]
    Rapi(#[from] crate::rapi::RapiError),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(e)) if e.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(e)) if e.code == 403 => "forbidden",
            Error::Kube(_) => "kubernetes",
            Error::Rapi(_) => "rapi",
            Error::Invalid(_) => "invalid",
        }
    }
}

/// Records a reconciliation's duration and outcome.
pub fn observe(metrics: &Metrics, controller: &str, started: std::time::Instant, error: Option<&Error>) {
    metrics.reconciles.with_label_values(&[controller]).inc();
    metrics
        .reconcile_duration
        .with_label_values(&[controller])
        .observe(started.elapsed().as_secs_f64());
    if let Some(e) = error {
        metrics
            .reconcile_errors
            .with_label_values(&[controller, e.category()])
            .inc();
    }
}
