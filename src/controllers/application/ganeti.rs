//! What the controller reads from Ganeti: the cluster's client, instances, the catalog,
//! create jobs.

use super::{CATALOG_TTL, State, Stop, plan};
use crate::api::application::InstanceApplication;
use crate::api::cluster::GanetiCluster;
use crate::controllers::Error;
use crate::inventory::Instance;
use crate::rapi::{JobProgress, RapiClient, RapiError};
use kube::api::Api;
use plan::{Catalog, JOB_POLL};
use std::sync::Arc;
use std::time::Instant;

impl State {
    /// Where `id` stands in Ganeti, from the cluster's shared job board (read again
    /// when older than [`JOB_POLL`] or when `id` is new to it); `None`: Ganeti no
    /// longer knows the job (archived).
    pub(super) async fn job_progress(
        &self,
        cluster: &str,
        client: &RapiClient,
        id: u64,
    ) -> Result<Option<JobProgress>, RapiError> {
        let board = self
            .job_boards
            .lock()
            .expect("job boards lock")
            .entry(cluster.to_string())
            .or_default()
            .clone();
        let mut board = board.lock().await;
        board.followed.insert(id);
        let fresh =
            board.read_at.is_some_and(|at| at.elapsed() < JOB_POLL) && board.progress.contains_key(&id);
        if !fresh {
            let ids: Vec<u64> = board.followed.iter().copied().collect();
            let rows = client.job_progress(&ids).await?;
            board.progress = rows.into_iter().map(|p| (p.id, p)).collect();
            board.read_at = Some(Instant::now());
        }
        let progress = board.progress.get(&id).copied();
        // A finished or forgotten job is not followed any more.
        if progress.is_none_or(|p| p.status.is_final()) {
            board.followed.remove(&id);
        }
        Ok(progress)
    }
}

/// Where the recorded job `id` stands: from the cluster's job board, then (finished) its
/// whole record for Ganeti's message; a job Ganeti no longer knows is archived, and what
/// it did shows in Ganeti.
pub(super) async fn job_outcome(
    state: &State,
    cluster: &str,
    client: &RapiClient,
    id: u64,
) -> Result<plan::JobOutcome, Error> {
    use plan::JobOutcome;
    let outcome = match state.job_progress(cluster, client, id).await {
        Ok(Some(p)) if !p.status.is_final() => Ok(JobOutcome::Running {
            received_ts: p.received_ts,
        }),
        Ok(Some(_)) => client
            .job(crate::rapi::JobId(id))
            .await
            .map(|job| JobOutcome::of(&job)),
        Ok(None) => Ok(JobOutcome::Archived),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(outcome) => Ok(outcome),
        Err(RapiError::NotFound { .. }) => Ok(JobOutcome::Archived),
        Err(e) => Err(rapi(e)),
    }
}

/// The RAPI client and the GanetiCluster an approved application is created on. A
/// cluster this replica has not read yet (just started, or just made leader) is waited
/// for.
pub(super) async fn cluster_client(
    app: &InstanceApplication,
    state: &State,
) -> Result<(Arc<RapiClient>, GanetiCluster), Stop> {
    let name = app
        .status
        .as_ref()
        .and_then(|s| s.cluster.clone())
        .or_else(|| app.spec.cluster.clone())
        .ok_or_else(|| Error::Invalid("an approved application without a cluster".into()))?;
    let cluster = Api::<GanetiCluster>::all(state.ctx.shared.client.clone())
        .get_opt(&name)
        .await?
        .ok_or_else(|| Error::Invalid(format!("GanetiCluster {name} is gone")))?;
    let Some(client) = state.ctx.shared.clusters.client(&name) else {
        return Err(Stop::Wait(format!("GanetiCluster {name} has not been read yet")));
    };
    Ok((client, cluster))
}

pub(super) fn tag_prefix(cluster: &GanetiCluster) -> &str {
    cluster
        .spec
        .tag_prefix
        .as_deref()
        .unwrap_or(crate::tags::DEFAULT_PREFIX)
}

pub(super) fn rapi(e: RapiError) -> Error {
    Error::Rapi(e)
}

/// The instance by name, from Ganeti itself (the inventory may be a sync behind). What
/// is found goes into the shared inventory at once, so that quota decisions count a VM
/// just created before the next bulk read shows it.
pub(super) async fn lookup(
    state: &State,
    cluster: &str,
    client: &RapiClient,
    name: &str,
) -> Result<Option<Instance>, Error> {
    match client.instance(name).await {
        Ok(wire) => {
            let instance: Instance = wire.into();
            state
                .ctx
                .shared
                .inventory
                .upsert_instance(cluster, instance.clone());
            Ok(Some(instance))
        }
        Err(RapiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(rapi(e)),
    }
}

/// The instances carrying the application's marker tag, fresh from Ganeti (each read in
/// full, and put into the shared inventory like [`lookup`]'s). One renamed between the
/// two reads is waited for: read again shortly rather than missed.
pub(super) async fn marked(
    state: &State,
    cluster: &str,
    client: &RapiClient,
    app: &InstanceApplication,
    prefix: &str,
) -> Result<Vec<Instance>, Stop> {
    let marker = plan::marker_tag(app, prefix).map_err(Error::Invalid)?;
    let mut found = Vec::new();
    for name in client.instances_tagged(&marker).await.map_err(rapi)? {
        match lookup(state, cluster, client, &name).await? {
            Some(instance) => found.push(instance),
            // Renamed between the two reads: look again rather than miss it.
            None => {
                return Err(Stop::Wait(format!(
                    "instance {name} vanished while it was read (renamed?); reading the marked instances again"
                )));
            }
        }
    }
    Ok(found)
}

/// The newest of Ganeti's unfinished jobs that has `summary` among its opcode summaries.
pub(super) async fn running_job(client: &RapiClient, summary: &str) -> Result<Option<u64>, Error> {
    let jobs = client.unfinished_jobs().await.map_err(rapi)?;
    Ok(jobs
        .into_iter()
        .filter(|j| j.summary.iter().any(|s| s == summary))
        .map(|j| j.id)
        .max())
}

/// The cluster's catalog. Read from Ganeti when none is known; once known, an answer
/// older than `CATALOG_TTL` is refreshed in the background while the known one serves,
/// so no approval waits for Ganeti to ask its nodes for their OSes.
pub(super) async fn catalog(
    state: &State,
    cluster: &str,
    client: &Arc<RapiClient>,
) -> Result<Catalog, RapiError> {
    // Held across the first read: waiting applications share one answer.
    let mut catalogs = state.catalogs.lock().await;
    let Some((at, catalog)) = catalogs.get(cluster).cloned() else {
        let catalog = read_catalog(client).await?;
        catalogs.insert(cluster.to_string(), (Instant::now(), catalog.clone()));
        return Ok(catalog);
    };
    if at.elapsed() >= CATALOG_TTL {
        // Stamped now so that one refresh runs at a time.
        catalogs.insert(cluster.to_string(), (Instant::now(), catalog.clone()));
        let (catalogs, client, cluster) = (state.catalogs.clone(), client.clone(), cluster.to_string());
        tokio::spawn(async move {
            match read_catalog(&client).await {
                Ok(fresh) => {
                    catalogs.lock().await.insert(cluster, (Instant::now(), fresh));
                }
                Err(e) => tracing::debug!(%cluster, error = %e, "refreshing the OS list failed"),
            }
        });
    }
    Ok(catalog)
}

async fn read_catalog(client: &RapiClient) -> Result<Catalog, RapiError> {
    let (info, os) = tokio::join!(client.info(), client.operating_systems());
    Ok(Catalog {
        operating_systems: os?,
        disk_templates: info?.enabled_disk_templates,
    })
}
