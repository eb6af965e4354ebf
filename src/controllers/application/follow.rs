//! Creating: follow the recorded create job to its end (decided by `plan::after_job`).

use super::ganeti::{cluster_client, job_outcome, marked, tag_prefix};
use super::{State, Stop, plan, record};
use crate::api::application::InstanceApplication;
use crate::controllers::Error;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use plan::Follow;

/// Creating: follow the recorded job.
pub(super) async fn follow(app: &mut InstanceApplication, state: &State) -> Result<Action, Stop> {
    if app.spec.adopts() {
        return super::adopt::creating(app, state).await;
    }
    let (client, cluster) = cluster_client(app, state).await?;
    let prefix = tag_prefix(&cluster).to_string();
    let id = app
        .status
        .as_ref()
        .and_then(|s| s.job_id)
        .ok_or_else(|| Error::Invalid("phase Creating without a job id".into()))?;
    let now = Timestamp::now();
    let outcome = job_outcome(state, &cluster.name_any(), &client, id).await?;
    // The instance the job made carries the application's tags; whatever the spec's
    // hostname says now, no other instance is taken for it.
    let mut found = None;
    let step = loop {
        match plan::after_job(app, id, &outcome, found.as_deref(), &prefix, now) {
            Follow::Done(step) => break step,
            Follow::ReadMarked => {
                found = Some(marked(state, &cluster.name_any(), &client, app, &prefix).await?)
            }
        }
    };
    Ok(record(app, state, step).await?)
}
