//! Creating: follow the recorded create job to its end.

use super::ganeti::{cluster_client, marked, rapi, tag_prefix};
use super::{JOB_POLL, JOB_POLL_MAX, State, event, plan, write_status};
use crate::api::application::{InstanceApplication, Phase};
use crate::controllers::Error;
use crate::rapi::{JobId, RapiError};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::time::Duration;

/// Creating: follow the recorded job.
pub(super) async fn follow(app: &mut InstanceApplication, state: &State) -> Result<Action, Error> {
    let (client, cluster) = cluster_client(app, state).await?;
    let prefix = tag_prefix(&cluster).to_string();
    let id = app
        .status
        .as_ref()
        .and_then(|s| s.job_id)
        .ok_or_else(|| Error::Invalid("phase Creating without a job id".into()))?;
    let now = Timestamp::now();
    let finished = match state.job_progress(&cluster.name_any(), &client, id).await {
        Ok(Some(p)) if !p.status.is_final() => return Ok(Action::requeue(poll_delay(p.received_ts))),
        // Finished: its whole record, for Ganeti's message if it failed.
        Ok(Some(_)) => client.job(JobId(id)).await,
        Ok(None) => Err(RapiError::NotFound {
            message: format!("job {id} is unknown"),
        }),
        Err(e) => Err(e),
    };
    // `Some(failure)`: the job failed; `None` with `known`: it succeeded.
    let (failure, known) = match finished {
        Ok(job) if !job.status.is_final() => return Ok(Action::requeue(poll_delay(job.received_ts))),
        Ok(job) => (job.failure(), true),
        Err(RapiError::NotFound { .. }) => (None, false),
        Err(e) => return Err(rapi(e)),
    };
    let outcome = match (&failure, known) {
        (Some(f), _) => plan::JobOutcome::Failed(f),
        (None, true) => plan::JobOutcome::Succeeded,
        // Archived: what the job did shows in Ganeti.
        (None, false) => plan::JobOutcome::Unknown,
    };
    // The instance the job made carries the application's tags; whatever the spec's
    // hostname says now, no other instance is taken for it.
    let found = match outcome {
        plan::JobOutcome::Failed(_) => Vec::new(),
        _ => marked(state, &cluster.name_any(), &client, app, &prefix).await?,
    };
    let status = plan::after_job(app, id, outcome, &found, &prefix, now);
    let host = status.instance_name.clone().unwrap_or_default();
    let created = status.phase == Phase::Created;
    let message = match (&status.ganeti_error, created) {
        (_, true) => format!(
            "instance {host} created on {}",
            status.primary_node.as_deref().unwrap_or("?")
        ),
        (Some(e), _) => format!("creating {host} failed: {}", e.message),
        (None, _) => format!("creating {host} failed"),
    };
    write_status(app, state, status).await?;
    let reason = if created { "Created" } else { "CreateFailed" };
    event(state, app, !created, reason, &message).await;
    Ok(Action::await_change())
}

/// When to look at an unfinished job again: soon for a young job, less often as it
/// ages, so many VMs being created at once do not flood RAPI with polls.
fn poll_delay(received_ts: Option<f64>) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    let age = received_ts.map(|t| (now - t).max(0.0)).unwrap_or_default();
    Duration::from_secs_f64(age / 4.0).clamp(JOB_POLL, JOB_POLL_MAX)
}
