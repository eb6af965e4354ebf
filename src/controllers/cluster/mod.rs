//! The GanetiCluster controller: reads each cluster in bulk once per interval into the
//! shared inventory, and reports it as status and metrics.
//!
//! observe (Secret, RAPI bulk reads) -> plan (`plan::plan_status`, pure) -> apply (a
//! status patch only when something changed).
//!
//! Every replica runs it (linkerd's pattern: readers everywhere, writers gated on the
//! lease): all fill their own inventory and RAPI clients, so the HTTP API answers on
//! every replica, but only the leader writes status and Events. On winning the lease
//! the leader reconciles every cluster at once, so the status catches up with reads a
//! follower made. The inventory metrics are the leader's only
//! (`Metrics::set_leading`), so sums over pods count each VM once.
//!
//! The RAPI client comes from the shared [`crate::clusters::Registry`]: a credentials
//! Secret is read only when labelled for the operator, and `spec.insecure` only under
//! `--allow-insecure-rapi`; a cluster refused either way is not Ready, and its
//! condition message says what to do. A failed read is a failed reconcile: a Warning
//! Event of its kind on the GanetiCluster, beside the status.

pub mod plan;

use super::Context;
use super::harness::{self, Error};
use super::written::LastWritten;
use crate::api::GanetiCluster;
use crate::api::cluster::GanetiClusterStatus;
use crate::clusters::{self, CREDENTIALS_LABEL, CREDENTIALS_LABEL_VALUE, ClientKey, ConnectError};
use crate::inventory::ClusterInventory;
use crate::rapi::{self, ErrorKind as RapiKind, RapiClient, RapiError};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use plan::{FailureReason, SyncOutcome};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONTROLLER: &str = "ganeticluster";
/// A follower's reads, in the reconcile metrics.
const FOLLOWER: &str = "ganeticluster-follower";
/// Default `syncInterval`.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// `lastSyncTime` alone is rewritten at most this often.
const HEARTBEAT: SignedDuration = SignedDuration::from_secs(300);

/// What the controller remembers between reconciliations (in memory only).
#[derive(Default)]
pub struct SyncState {
    /// Per cluster: the inputs of the last successful read and when it happened, so a
    /// reconcile triggered by our own status write does not read Ganeti again.
    last_sync: Mutex<HashMap<String, SyncMark>>,
    /// The status last written per cluster, for reconciles on a not-yet-updated copy.
    written: LastWritten<GanetiClusterStatus>,
}

#[derive(Debug, Clone, PartialEq)]
struct SyncMark {
    key: ClientKey,
    generation: Option<i64>,
    at: Instant,
    /// Whether the read was reported (a follower's was not).
    reported: bool,
    /// The resource version of the GWM id map read with it.
    gwm_map: Option<String>,
}

/// Runs the controller on this replica until `shutdown` resolves; it writes only
/// while `leading` says so, and reconciles everything each time it becomes true.
pub async fn run(
    ctx: Arc<Context>,
    leading: tokio::sync::watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let clusters: Api<GanetiCluster> = Api::all(ctx.shared.client.clone());
    let secrets: Api<Secret> =
        Api::namespaced(ctx.shared.client.clone(), &ctx.shared.config.secrets_namespace);
    let config_maps: Api<ConfigMap> =
        Api::namespaced(ctx.shared.client.clone(), &ctx.shared.config.secrets_namespace);
    // Deletions trigger too: the store no longer has the cluster when its turn comes,
    // and `drive` hears of it (a GanetiCluster needs no finalizer: the operator keeps
    // nothing in Ganeti for it, only its inventory, client and metrics here).
    let (store, writer) = reflector::store();
    let objects = reflector::reflector(writer, watcher(clusters, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let controller = Controller::for_stream(objects, store.clone());
    // Only Secrets labelled as RAPI credentials are watched: the data of any other
    // Secret in the namespace never enters the operator. A label added or removed
    // moves a Secret in or out of this selection, which triggers its clusters too.
    let credentials =
        watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}={CREDENTIALS_LABEL_VALUE}"));
    let shutdown = super::once_listed(store.clone(), shutdown);
    let became_leader = crate::leader::each_win(leading.clone());
    let reconcile = move |cluster, ctx| {
        let leading = *leading.borrow();
        reconcile(leading, cluster, ctx)
    };
    let forget_ctx = ctx.clone();
    let mapper_store = store.clone();
    let gwm_store = store.clone();
    // Likewise only ConfigMaps labelled as GWM id maps: a changed map is read with its
    // clusters at once (the operator's ledgers, rewritten often, are not watched).
    let id_maps = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::tags::GWM_IDS_LABEL,
        crate::tags::GWM_IDS_LABEL_VALUE
    ));
    let results = controller
        .watches(config_maps, id_maps, move |cm| {
            let name = cm.name_any();
            gwm_store
                .state()
                .into_iter()
                .filter(|c| c.spec.gwm.as_ref().and_then(|g| g.id_map.as_ref()) == Some(&name))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        // A changed credentials Secret triggers its clusters at once.
        .watches(secrets, credentials, move |secret| {
            let name = secret.name_any();
            mapper_store
                .state()
                .into_iter()
                .filter(|c| c.spec.credentials_secret.name == name)
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(became_leader)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx);
    harness::drive(CONTROLLER, results, move |deleted| {
        tracing::info!(cluster = %deleted, "GanetiCluster deleted: forgetting its inventory");
        forget(&forget_ctx, deleted);
    })
    .await;
}

fn error_policy(cluster: Arc<GanetiCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    // A cluster that could not be read is read again at its interval; anything else
    // (the API server) sooner.
    let delay = match error {
        Error::ClusterSync { .. } => sync_interval(&cluster),
        _ => Duration::from_secs(10),
    };
    harness::retry(CONTROLLER, &cluster.name_any(), error, delay)
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

async fn reconcile(leading: bool, cluster: Arc<GanetiCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    if leading {
        let work = reconcile_inner(true, &cluster, &ctx);
        harness::reconcile(CONTROLLER, &ctx.shared.metrics, &ctx.recorder, &*cluster, work).await
    } else {
        // A follower reports nothing: no status, no Event, no error (the leader's are
        // the ones); it only keeps its inventory and clients.
        let started = Instant::now();
        let result = reconcile_inner(false, &cluster, &ctx).await;
        ctx.shared.metrics.reconciles.with_label_values(&[FOLLOWER]).inc();
        ctx.shared
            .metrics
            .reconcile_duration
            .with_label_values(&[FOLLOWER])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Err(Error::ClusterSync { .. }) => Ok(Action::requeue(sync_interval(&cluster))),
            other => other,
        }
    }
}

async fn reconcile_inner(leading: bool, cluster: &GanetiCluster, ctx: &Context) -> Result<Action, Error> {
    // A follower writes no status: the leader's is the one.
    let report = async |outcome: &SyncOutcome<'_>| {
        if leading {
            write_status(cluster, ctx, outcome).await?;
        }
        match outcome {
            SyncOutcome::Failed { reason, message } => Err(Error::ClusterSync {
                reason: *reason,
                message: message.clone(),
            }),
            SyncOutcome::Synced(_) => Ok(()),
        }
    };
    let name = cluster.name_any();
    let interval = sync_interval(cluster);
    if cluster.meta().deletion_timestamp.is_some() {
        forget(ctx, &name);
        return Ok(Action::await_change());
    }

    let secret = match read_secret(cluster, ctx).await? {
        Ok(found) => found,
        Err((reason, message)) => {
            ctx.shared.inventory.mark_unreachable(&name);
            report(&SyncOutcome::Failed { reason, message }).await?;
            return Ok(Action::requeue(interval));
        }
    };
    let key = ClientKey::new(&cluster.spec, &secret);
    let (gwm, gwm_map) = crate::clusters::gwm::load(
        &ctx.shared.client,
        &ctx.shared.config.secrets_namespace,
        &cluster.spec,
    )
    .await?;

    // Our own status write triggers a reconcile: do not read Ganeti again for it.
    if let Some(mark) = ctx.cluster_sync.last_sync.lock().expect("lock").get(&name)
        && mark.key == key
        && mark.generation == cluster.metadata.generation
        && mark.gwm_map == gwm_map
        && mark.reported == leading
        && mark.at.elapsed() < interval
    {
        return Ok(Action::requeue(interval - mark.at.elapsed()));
    }

    let client = match ctx.shared.clusters.connect(&name, &cluster.spec, &secret) {
        Ok(c) => c,
        Err(e) => {
            report(&SyncOutcome::Failed {
                reason: refusal(&e),
                message: e.to_string(),
            })
            .await?;
            return Ok(Action::requeue(interval));
        }
    };

    let prefix = cluster
        .spec
        .tag_prefix
        .clone()
        .unwrap_or_else(|| crate::tags::DEFAULT_PREFIX.to_string());
    match read_cluster(&client, &name, prefix).await {
        Ok(mut inventory) => {
            inventory.observed = cluster.spec.observed_only();
            inventory.gwm = gwm;
            ctx.shared.inventory.put(inventory);
            let snapshot = ctx.shared.inventory.get(&name).expect("just stored");
            report(&SyncOutcome::Synced(&snapshot)).await?;
            ctx.cluster_sync.last_sync.lock().expect("lock").insert(
                name.clone(),
                SyncMark {
                    key,
                    generation: cluster.metadata.generation,
                    at: Instant::now(),
                    reported: leading,
                    gwm_map,
                },
            );
        }
        Err(outcome) => {
            ctx.shared.inventory.mark_unreachable(&name);
            ctx.cluster_sync.last_sync.lock().expect("lock").remove(&name);
            report(&outcome).await?;
        }
    }
    Ok(Action::requeue(interval))
}

fn forget(ctx: &Context, name: &str) {
    ctx.shared.inventory.remove(name);
    ctx.cluster_sync.last_sync.lock().expect("lock").remove(name);
    ctx.cluster_sync.written.forget(name);
    ctx.shared.clusters.forget(name);
}

type SecretResult = Result<Secret, (FailureReason, String)>;

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
    if let Err(e) = clusters::tls_mode(&cluster.spec, ctx.shared.clusters.policy()) {
        return Ok(Err((refusal(&e), e.to_string())));
    }
    match clusters::fetch_secret(
        &ctx.shared.client,
        &ctx.shared.config.secrets_namespace,
        &cluster.spec,
    )
    .await
    {
        Ok(s) => Ok(Ok(s)),
        Err(ConnectError::Kube { source, .. }) => Err(source.into()),
        Err(e) => Ok(Err((refusal(&e), e.to_string()))),
    }
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
        // Set by the caller, from the spec.
        gwm: Default::default(),
        observed: false,
        reachable: true,
        read_started: Some(read_started),
    })
}

/// Maps a RAPI error onto the condition reason an admin acts on.
fn failure(e: RapiError) -> SyncOutcome<'static> {
    let reason = match e.kind() {
        RapiKind::AuthFailed => FailureReason::AuthFailed,
        RapiKind::Forbidden => FailureReason::Forbidden,
        RapiKind::Tls => FailureReason::TlsError,
        RapiKind::Timeout => FailureReason::Timeout,
        RapiKind::Unreachable => FailureReason::Unreachable,
        RapiKind::Unavailable => FailureReason::Unavailable,
        RapiKind::Config | RapiKind::ReadOnly => FailureReason::InvalidSpec,
        RapiKind::NotFound
        | RapiKind::BadRequest
        | RapiKind::Http
        | RapiKind::Decode
        | RapiKind::JobFailed => FailureReason::BadResponse,
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
    let cluster = match ctx.cluster_sync.written.newer_than_cache(&name, &planned_from) {
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
    tracing::debug!(cluster = %name, "writing status");
    crate::status::apply(
        &Api::<GanetiCluster>::all(ctx.shared.client.clone()),
        &name,
        &status,
    )
    .await?;
    ctx.cluster_sync.written.record(&name, &planned_from, status);
    ctx.shared
        .metrics
        .status_writes
        .with_label_values(&[CONTROLLER])
        .inc();
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
