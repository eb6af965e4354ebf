//! The GanetiCluster controller: reads each cluster in bulk once per interval into the
//! shared inventory, and reports it as status and metrics.
//!
//! observe (Secret, RAPI bulk reads) -> plan (`plan::plan_status`, pure) -> apply (a
//! status patch only when something changed).
//!
//! Followers (replicas without the leader Lease) run the same reads through [`follow`]:
//! they keep their own inventory and RAPI clients, so the HTTP API answers on every
//! replica, but write nothing (no status, nothing to Ganeti). The inventory metrics are
//! the leader's only (`Metrics::set_leading`), so sums over pods count each VM once.
//!
//! The RAPI client comes from [`crate::clusters`]: a credentials Secret is read only
//! when labelled for the operator, and `spec.insecure` only under
//! `--allow-insecure-rapi`; a cluster refused either way is not Ready, and its
//! condition message says what to do.

pub mod plan;

use super::written::LastWritten;
use super::{Context, Error, FIELD_MANAGER, observe};
use crate::api::GanetiCluster;
use crate::api::cluster::GanetiClusterStatus;
use crate::clusters::{self, CREDENTIALS_LABEL, CREDENTIALS_LABEL_VALUE, ConnectError};
use crate::inventory::ClusterInventory;
use crate::rapi::{self, RapiClient, RapiError, RapiObserver};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use plan::{FailureReason, SyncOutcome};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONTROLLER: &str = "ganeticluster";
/// The follower's reads, in the reconcile metrics.
const FOLLOWER: &str = "ganeticluster-follower";
/// Default `syncInterval`.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// How often the inventories of deleted GanetiClusters are looked for.
const PRUNE_INTERVAL: Duration = Duration::from_secs(5);
/// `lastSyncTime` alone is rewritten at most this often.
const HEARTBEAT: SignedDuration = SignedDuration::from_secs(300);

/// What the controller remembers between reconciliations (in memory only).
#[derive(Default)]
pub struct ClusterState {
    /// Per cluster: the inputs of the last successful read and when it happened, so a
    /// reconcile triggered by our own status write does not read Ganeti again.
    last_sync: Mutex<HashMap<String, SyncMark>>,
    /// Per cluster: the RAPI client and the inputs it was built from.
    clients: Mutex<HashMap<String, (ClientKey, Arc<RapiClient>)>>,
    /// The status last written per cluster, for reconciles on a not-yet-updated copy.
    written: LastWritten<GanetiClusterStatus>,
}

impl ClusterState {
    /// The RAPI client of a cluster, as last built by the controller (other controllers
    /// and the HTTP server use it to write to Ganeti).
    pub fn client(&self, cluster: &str) -> Option<Arc<RapiClient>> {
        self.clients
            .lock()
            .expect("clients lock")
            .get(cluster)
            .map(|(_, c)| c.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
struct SyncMark {
    key: ClientKey,
    generation: Option<i64>,
    at: Instant,
}

/// Everything a RAPI client is built from; a change means a new client.
#[derive(Debug, Clone, PartialEq)]
struct ClientKey {
    url: String,
    ca_bundle: Option<String>,
    insecure: bool,
    secret_version: Option<String>,
}

/// Feeds RAPI request durations into the operator's metrics.
struct MetricsObserver(Arc<crate::metrics::Metrics>);

impl RapiObserver for MetricsObserver {
    fn observe(&self, op: &'static str, outcome: &'static str, seconds: f64) {
        self.0
            .rapi_duration
            .with_label_values(&[op, outcome])
            .observe(seconds);
    }
}

/// Whether this replica leads (reads, then writes status) or follows (reads only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Follower,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    // A follower's reads wrote no status: the first pass as leader must not skip the
    // write for a read the follower made.
    ctx.clusters.last_sync.lock().expect("lock").clear();
    run_as(Role::Leader, ctx, shutdown).await;
}

/// Reads every cluster into the inventory without writing anything, until `shutdown`
/// resolves (a follower; the leader runs [`run`]).
pub async fn follow(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    run_as(Role::Follower, ctx, shutdown).await;
}

async fn run_as(
    role: Role,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let clusters: Api<GanetiCluster> = Api::all(ctx.client.clone());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.config.secrets_namespace);
    let controller = Controller::new(clusters, watcher::Config::default());
    // Only Secrets labelled as RAPI credentials are watched: the data of any other
    // Secret in the namespace never enters the operator. A label added or removed
    // moves a Secret in or out of this selection, which triggers its clusters too.
    let credentials =
        watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}={CREDENTIALS_LABEL_VALUE}"));
    let store = controller.store();
    let shutdown = super::once_listed(store.clone(), shutdown);
    // A deleted GanetiCluster gets no reconcile (the operator keeps nothing in Ganeti for
    // it, so it needs no finalizer): prune its inventory, RAPI client and metrics by
    // comparing with a cheap metadata-only list.
    // Ends with this future, also when it is aborted (a follower taking the lead).
    let pruner = AbortOnDrop(tokio::spawn(prune_deleted(ctx.clone())));
    let reconcile = move |cluster, ctx| reconcile(role, cluster, ctx);
    controller
        // A changed credentials Secret triggers its clusters at once.
        .watches(secrets, credentials, move |secret| {
            let name = secret.name_any();
            store
                .state()
                .into_iter()
                .filter(|c| c.spec.credentials_secret.name == name)
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ganeticluster reconcile event");
            }
        })
        .await;
    drop(pruner);
}

/// A background task that ends when its owner is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn prune_deleted(ctx: Arc<Context>) {
    let api: Api<GanetiCluster> = Api::all(ctx.client.clone());
    loop {
        tokio::time::sleep(PRUNE_INTERVAL).await;
        // Only what was known before the list: a cluster created meanwhile is not pruned.
        let known: Vec<String> = ctx.inventory.all().iter().map(|c| c.cluster.clone()).collect();
        let live: std::collections::HashSet<String> = match api.list_metadata(&Default::default()).await {
            Ok(list) => list.items.iter().map(|c| c.name_any()).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "listing GanetiClusters to prune failed");
                continue;
            }
        };
        for cluster in known.iter().filter(|c| !live.contains(*c)) {
            tracing::info!(%cluster, "GanetiCluster deleted: forgetting its inventory");
            forget(&ctx, cluster);
        }
    }
}

fn error_policy(_cluster: Arc<GanetiCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %error, category = error.category(), "GanetiCluster reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// The cluster's sync interval (validated by the CRD; a bad value falls back to 30s).
pub fn sync_interval(cluster: &GanetiCluster) -> Duration {
    cluster
        .spec
        .sync_interval
        .as_deref()
        .and_then(|s| s.parse::<SignedDuration>().ok().or_else(|| parse_go_duration(s)))
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| *d >= Duration::from_secs(5))
        .unwrap_or(DEFAULT_SYNC_INTERVAL)
}

/// `30s`, `2m`, `1h30m` (the Kubernetes duration syntax the CRD accepts).
fn parse_go_duration(s: &str) -> Option<SignedDuration> {
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0.001
        } else {
            match c {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                _ => return None,
            }
        };
        total += number.parse::<f64>().ok()? * unit;
        number.clear();
    }
    number.is_empty().then(|| SignedDuration::from_secs_f64(total))
}

async fn reconcile(role: Role, cluster: Arc<GanetiCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(role, &cluster, &ctx).await;
    let label = match role {
        Role::Leader => CONTROLLER,
        Role::Follower => FOLLOWER,
    };
    observe(&ctx.metrics, label, started, result.as_ref().err());
    result
}

async fn reconcile_inner(role: Role, cluster: &GanetiCluster, ctx: &Context) -> Result<Action, Error> {
    // A follower writes no status: the leader's is the one.
    let report = async |outcome: &SyncOutcome<'_>| match role {
        Role::Leader => write_status(cluster, ctx, outcome).await,
        Role::Follower => Ok(()),
    };
    let name = cluster.name_any();
    let interval = sync_interval(cluster);
    if cluster.meta().deletion_timestamp.is_some() {
        forget(ctx, &name);
        return Ok(Action::await_change());
    }

    let (key, secret) = match read_secret(cluster, ctx).await? {
        Ok(found) => found,
        Err((reason, message)) => {
            let outcome = SyncOutcome::Failed { reason, message };
            ctx.inventory.mark_unreachable(&name);
            report(&outcome).await?;
            return Ok(Action::requeue(interval));
        }
    };

    // Our own status write triggers a reconcile: do not read Ganeti again for it.
    if let Some(mark) = ctx.clusters.last_sync.lock().expect("lock").get(&name)
        && mark.key == key
        && mark.generation == cluster.metadata.generation
        && mark.at.elapsed() < interval
    {
        return Ok(Action::requeue(interval - mark.at.elapsed()));
    }

    let client = match client_for(ctx, cluster, &key, &secret) {
        Ok(c) => c,
        Err(e) => {
            let outcome = SyncOutcome::Failed {
                reason: refusal(&e),
                message: e.to_string(),
            };
            report(&outcome).await?;
            return Ok(Action::requeue(interval));
        }
    };

    let prefix = cluster
        .spec
        .tag_prefix
        .clone()
        .unwrap_or_else(|| crate::tags::DEFAULT_PREFIX.to_string());
    match read_cluster(&client, &name, prefix).await {
        Ok(inventory) => {
            ctx.inventory.put(inventory);
            let snapshot = ctx.inventory.get(&name).expect("just stored");
            report(&SyncOutcome::Synced(&snapshot)).await?;
            ctx.clusters.last_sync.lock().expect("lock").insert(
                name.clone(),
                SyncMark {
                    key,
                    generation: cluster.metadata.generation,
                    at: Instant::now(),
                },
            );
        }
        Err(outcome) => {
            if let SyncOutcome::Failed { reason, message } = &outcome {
                tracing::warn!(cluster = %name, reason = reason.as_str(), %message, "cluster read failed");
            }
            ctx.inventory.mark_unreachable(&name);
            ctx.clusters.last_sync.lock().expect("lock").remove(&name);
            report(&outcome).await?;
        }
    }
    Ok(Action::requeue(interval))
}

fn forget(ctx: &Context, name: &str) {
    ctx.inventory.remove(name);
    ctx.clusters.last_sync.lock().expect("lock").remove(name);
    ctx.clusters.clients.lock().expect("lock").remove(name);
    ctx.clusters.written.forget(name);
}

type SecretResult = Result<(ClientKey, Secret), (FailureReason, String)>;

/// The condition reason for a refused connection.
fn refusal(e: &ConnectError) -> FailureReason {
    match e {
        ConnectError::MissingSecret { .. } => FailureReason::MissingSecret,
        ConnectError::Unlabelled { .. } => FailureReason::UnlabelledSecret,
        ConnectError::InvalidSecret { .. } => FailureReason::InvalidSecret,
        ConnectError::InsecureRefused => FailureReason::InsecureRefused,
        ConnectError::Client(_) | ConnectError::Kube { .. } => FailureReason::InvalidSpec,
    }
}

/// Reads the credentials Secret, if the operator's policy lets it (see
/// [`crate::clusters`]). The outer error is the API server failing; the inner one a
/// problem the cluster's status should report.
async fn read_secret(cluster: &GanetiCluster, ctx: &Context) -> Result<SecretResult, Error> {
    // An insecure spec is refused before its Secret is even read.
    if let Err(e) = clusters::tls_mode(&cluster.spec, ctx.config.rapi_policy) {
        return Ok(Err((refusal(&e), e.to_string())));
    }
    let secret = match clusters::fetch_secret(&ctx.client, &ctx.config.secrets_namespace, &cluster.spec).await
    {
        Ok(s) => s,
        Err(ConnectError::Kube { source, .. }) => return Err(source.into()),
        Err(e) => return Ok(Err((refusal(&e), e.to_string()))),
    };
    let key = ClientKey {
        url: cluster.spec.rapi_url.clone(),
        ca_bundle: cluster.spec.ca_bundle.clone(),
        insecure: cluster.spec.insecure == Some(true),
        secret_version: secret.metadata.resource_version.clone(),
    };
    Ok(Ok((key, secret)))
}

/// The cluster's client: the one built before if nothing it came from changed (a
/// label removed since changes the Secret's version), else a new one.
fn client_for(
    ctx: &Context,
    cluster: &GanetiCluster,
    key: &ClientKey,
    secret: &Secret,
) -> Result<Arc<RapiClient>, ConnectError> {
    let name = cluster.name_any();
    let mut clients = ctx.clusters.clients.lock().expect("lock");
    if let Some((k, c)) = clients.get(&name)
        && k == key
    {
        return Ok(c.clone());
    }
    let client = Arc::new(
        clusters::connect(&cluster.spec, secret, ctx.config.rapi_policy)?
            .with_observer(Arc::new(MetricsObserver(ctx.metrics.clone()))),
    );
    clients.insert(name, (key.clone(), client.clone()));
    Ok(client)
}

/// One bulk read of a cluster: info, features, nodes, instances and jobs, concurrently.
pub async fn read_cluster(
    client: &RapiClient,
    name: &str,
    tag_prefix: String,
) -> Result<ClusterInventory, SyncOutcome<'static>> {
    let read_started = Timestamp::now();
    let (info, features, nodes, instances, jobs) = tokio::join!(
        client.info(),
        client.features(),
        client.nodes_inventory(),
        client.instances_inventory(),
        client.job_counts()
    );
    let info = info.map_err(failure)?;
    if !plan::version_supported(&info.software_version) {
        return Err(SyncOutcome::Failed {
            reason: FailureReason::UnsupportedVersion,
            message: format!(
                "Ganeti {} is not supported (need 2.x or 3.x)",
                info.software_version
            ),
        });
    }
    let features = features.map_err(failure)?;
    if !features.iter().any(|f| f == rapi::FEATURE_INSTANCE_CREATE_V1) {
        return Err(SyncOutcome::Failed {
            reason: FailureReason::UnsupportedVersion,
            message: format!(
                "the Remote API lacks the feature {}",
                rapi::FEATURE_INSTANCE_CREATE_V1
            ),
        });
    }
    Ok(ClusterInventory {
        cluster: name.to_string(),
        facts: info.into(),
        nodes: nodes.map_err(failure)?,
        instances: instances.map_err(failure)?,
        jobs_by_status: jobs.map_err(failure)?,
        tag_prefix,
        reachable: true,
        read_started: Some(read_started),
    })
}

/// Maps a RAPI error onto the condition reason an admin acts on.
fn failure(e: RapiError) -> SyncOutcome<'static> {
    let reason = match e.category() {
        "auth_failed" => FailureReason::AuthFailed,
        "forbidden" => FailureReason::Forbidden,
        "tls_error" => FailureReason::TlsError,
        "timeout" => FailureReason::Timeout,
        "unreachable" => FailureReason::Unreachable,
        "unavailable" => FailureReason::Unavailable,
        "config_error" => FailureReason::InvalidSpec,
        _ => FailureReason::BadResponse,
    };
    let hint = match reason {
        FailureReason::AuthFailed => ": check the username and password in the credentials Secret",
        FailureReason::TlsError => ": check spec.caBundle against the RAPI certificate",
        FailureReason::Unreachable => ": check spec.rapiUrl and that ganeti-rapi runs on the master",
        _ => "",
    };
    SyncOutcome::Failed {
        reason,
        message: format!("{e}{hint}"),
    }
}

async fn write_status(
    cluster: &GanetiCluster,
    ctx: &Context,
    outcome: &SyncOutcome<'_>,
) -> Result<(), Error> {
    let name = cluster.name_any();
    let planned_from = cluster.resource_version().unwrap_or_default();
    // A copy that predates our last write is planned against what we wrote.
    let caught_up;
    let cluster = match ctx.clusters.written.newer_than_cache(&name, &planned_from) {
        Some(ours) if cluster.status.as_ref() != Some(&ours) => {
            caught_up = GanetiCluster {
                status: Some(ours),
                ..cluster.clone()
            };
            &caught_up
        }
        _ => cluster,
    };
    let Some(status) = plan::plan_status(cluster, outcome, Timestamp::now(), HEARTBEAT) else {
        return Ok(());
    };
    tracing::debug!(cluster = %cluster.name_any(), "writing status");
    let api: Api<GanetiCluster> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({
        "apiVersion": "ganeti.dev/v1alpha1",
        "kind": "GanetiCluster",
        "status": status,
    });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.clusters.written.record(&name, &planned_from, status);
    ctx.metrics.status_writes.with_label_values(&[CONTROLLER]).inc();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_kubernetes_syntax() {
        assert_eq!(parse_go_duration("30s"), Some(SignedDuration::from_secs(30)));
        assert_eq!(parse_go_duration("1h30m"), Some(SignedDuration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Some(SignedDuration::from_millis(500)));
        assert_eq!(parse_go_duration("5x"), None);
    }
}
