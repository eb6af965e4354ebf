//! The ClusterQuota controller: writes each quota's usage per subject, its `Used` and
//! `Limit` summaries and its `Ready`/`ClusterFound` conditions, and publishes the same
//! figures as `ganeti_quota_used`/`ganeti_quota_limit`. Leader only.
//!
//! observe (watches of ClusterQuotas, InstanceApplications and GanetiClusters' metadata;
//! the shared inventory) -> plan (`plan::plan`, pure) -> apply (a status patch per quota
//! whose status changed; nothing on an unchanged pass).
//!
//! # When it runs
//! One pass over every quota whenever a watch delivers a change (a quota, an
//! application moving through its phases, a GanetiCluster created or deleted) or the
//! inventory of any cluster is read anew: a VM created or removed in Ganeti shows in
//! the next pass after the cluster's next sync. A burst of changes makes one pass
//! ([`SETTLE`]). A pass is cheap: one tally per cluster from memory, no API reads; it
//! writes only the quotas whose status differs. The usage tally is the same one the
//! approval's quota check makes (`quota::usage_by_subject`), so what status shows is
//! what an approval is judged against.

pub mod plan;

use super::Context;
use super::harness::{self, Error, ErrorKind};
use super::written::LastWritten;
use crate::api::application::InstanceApplication;
use crate::api::cluster::GanetiCluster;
use crate::api::quota::{ClusterQuota, ClusterQuotaStatus};
use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CONTROLLER: &str = "clusterquota";
/// A burst of watch events (a GitOps sync of many quotas) makes one pass.
const SETTLE: Duration = Duration::from_millis(50);
/// When failed status writes are tried again.
const RETRY: Duration = Duration::from_secs(10);

/// Runs until `stop`.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let client = ctx.shared.client.clone();
    let changed = Arc::new(Notify::new());
    let (quotas, q_task) = reflect(
        watcher::watcher(
            Api::<ClusterQuota>::all(client.clone()),
            watcher::Config::default(),
        ),
        changed.clone(),
    );
    let (applications, a_task) = reflect(
        watcher::watcher(
            Api::<InstanceApplication>::all(client.clone()),
            watcher::Config::default(),
        ),
        changed.clone(),
    );
    // Only whether a cluster exists matters here: its metadata is enough.
    let (clusters, c_task) = reflect(
        watcher::watcher(
            Api::<PartialObjectMeta<GanetiCluster>>::all(client.clone()),
            watcher::Config::default(),
        ),
        changed.clone(),
    );
    let tasks = [q_task, a_task, c_task];
    let listed = async {
        // Before every first list, an empty store means "unknown", not "none".
        let _ = quotas.wait_until_ready().await;
        let _ = applications.wait_until_ready().await;
        let _ = clusters.wait_until_ready().await;
    };
    tokio::select! {
        _ = stop.cancelled() => { tasks.iter().for_each(JoinHandle::abort); return }
        _ = listed => {}
    }
    tracing::info!("quota usage: quotas, applications and clusters listed");
    let mut inventory = ctx.shared.inventory.changes();
    let written = LastWritten::<ClusterQuotaStatus>::default();
    loop {
        inventory.mark_unchanged();
        let failed = pass(&ctx, &quotas, &applications, &clusters, &written).await;
        let retry_at = failed.then(|| Instant::now() + RETRY);
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = changed.notified() => {}
            r = inventory.changed() => if r.is_err() { break },
            _ = retry => {}
        }
        tokio::time::sleep(SETTLE).await;
    }
    tasks.iter().for_each(JoinHandle::abort);
}

/// One pass over every quota; whether a write failed.
async fn pass(
    ctx: &Context,
    quotas: &Store<ClusterQuota>,
    applications: &Store<InstanceApplication>,
    clusters: &Store<PartialObjectMeta<GanetiCluster>>,
    written: &LastWritten<ClusterQuotaStatus>,
) -> bool {
    let started = Instant::now();
    let metrics = &ctx.shared.metrics;
    let stored = quotas.state();
    let names: BTreeSet<String> = stored.iter().map(|q| q.name_any()).collect();
    written.retain(|n| names.contains(n));
    // A quota whose cached copy predates our last write is planned against that write.
    let current: Vec<Arc<ClusterQuota>> = stored
        .into_iter()
        .map(|q| {
            let rv = q.resource_version().unwrap_or_default();
            match written.newer_than_cache(&q.name_any(), &rv) {
                Some(ours) => Arc::new(ClusterQuota {
                    status: Some(ours),
                    ..(*q).clone()
                }),
                None => q,
            }
        })
        .collect();
    let cluster_names: BTreeSet<String> = clusters.state().iter().map(|c| c.name_any()).collect();
    let planned = plan::plan(&plan::Input {
        quotas: &current,
        clusters: &cluster_names,
        inventories: &ctx.shared.inventory.all(),
        applications: &applications.state(),
        now: Timestamp::now(),
    });
    metrics.set_quota_series(planned.series);
    let api: Api<ClusterQuota> = Api::all(ctx.shared.client.clone());
    let mut failed = false;
    for w in planned.writes {
        tracing::debug!(quota = %w.quota, used = ?w.status.used, "writing ClusterQuota status");
        match crate::status::apply(&api, &w.quota, &w.status).await {
            Ok(_) => {
                written.record(&w.quota, &w.planned_from, w.status);
                metrics.status_writes.with_label_values(&[CONTROLLER]).inc();
            }
            // Deleted meanwhile: its watch event brings the next pass.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                failed = true;
                let e = Error::from(e);
                let kind = e.kind();
                tracing::warn!(quota = %w.quota, error = %e, "writing ClusterQuota status failed");
                metrics
                    .reconcile_errors
                    .with_label_values(&[CONTROLLER, kind.as_str()])
                    .inc();
                if kind != ErrorKind::Conflict
                    && let Some(q) = current.iter().find(|q| q.name_any() == w.quota)
                {
                    harness::warn(&ctx.recorder, &**q, kind, &e.to_string()).await;
                }
            }
        }
    }
    metrics.reconciles.with_label_values(&[CONTROLLER]).inc();
    metrics
        .reconcile_duration
        .with_label_values(&[CONTROLLER])
        .observe(started.elapsed().as_secs_f64());
    failed
}

/// A store kept by `events`, whose every change wakes `changed`; the task keeping it.
fn reflect<K>(
    events: impl futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
    changed: Arc<Notify>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + Clone + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store::<K>();
    let task = tokio::spawn(
        reflector::reflector(writer, events)
            .default_backoff()
            .for_each(move |event| {
                match event {
                    Ok(_) => changed.notify_one(),
                    Err(e) => tracing::debug!(error = %e, "ClusterQuota controller: watch error"),
                }
                futures::future::ready(())
            }),
    );
    (store, task)
}
