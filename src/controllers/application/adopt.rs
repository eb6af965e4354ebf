//! Mode Adopt, Approved and Creating: read from Ganeti what `plan::adopt_step` and
//! `plan::adopt_after_job` ask for, and send the one tag job (`plan::after_tag`).
//! Every outcome is stored, published as an Event and written as an audit log line.

use super::ganeti::{cluster_client, job_outcome, lookup, marked, rapi, tag_prefix};
use super::{State, Stop, plan, record};
use crate::api::application::{InstanceApplication, Phase};
use crate::api::cluster::GanetiCluster;
use crate::controllers::Error;
use crate::inventory::Instance;
use crate::rapi::{JobId, RapiClient, RapiError};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use plan::{Adopt, Follow, Seen, Step, Submission};
use std::sync::Arc;

/// Approved (its status read fresh by the caller), or Creating without a job id.
/// `approved_here`: the approval was stored by this reconcile, so no earlier attempt can
/// have tagged anything, and the marked instances need not be read.
pub(super) async fn step(
    app: &mut InstanceApplication,
    state: &State,
    client: &Arc<RapiClient>,
    cluster: &GanetiCluster,
    approved_here: bool,
) -> Result<Action, Stop> {
    let prefix = tag_prefix(cluster).to_string();
    let name = cluster.name_any();
    let now = Timestamp::now();
    let none: Vec<Instance> = Vec::new();
    let (mut marked_read, mut current_read, mut running) = (None::<Vec<Instance>>, None, None);
    if approved_here {
        marked_read = Some(none);
    }
    let next = loop {
        let seen = Seen {
            marked: marked_read.as_deref(),
            current: current_read.as_ref().map(Option::as_ref),
            running,
        };
        match plan::adopt_step(app, &seen, &prefix, now) {
            Adopt::ReadMarked => marked_read = Some(marked(state, &name, client, app, &prefix).await?),
            Adopt::ReadInstance => current_read = Some(current(app, state, &name, client).await?),
            Adopt::ReadJobs => {
                let vm = plan::approved_name(app);
                let jobs = client.unfinished_jobs().await.map_err(rapi)?;
                let tagging = jobs
                    .into_iter()
                    .filter(|j| j.summary.iter().any(|s| plan::is_tag_job(s, vm)));
                running = Some(tagging.map(|j| j.id).max());
            }
            other => break other,
        }
    };
    let step = match next {
        Adopt::Done(step) => step,
        Adopt::Tag {
            intent,
            name: vm,
            tags,
        } => {
            // The intent first: a restart then knows a job may have been sent.
            super::write_status(app, state, intent).await?;
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            let submission = match client
                .add_instance_tags(&vm, &tags, &plan::adopt_reason(app))
                .await
            {
                Ok(JobId(id)) => Submission::Submitted(id),
                Err(RapiError::BadRequest { message }) => Submission::Refused(message),
                // Perhaps sent: the next reconcile finds out, and sends nothing again.
                Err(e) => return Err(rapi(e).into()),
            };
            plan::after_tag(app, submission, now)
        }
        _ => unreachable!("read requests are carried out above"),
    };
    finish(app, state, step).await
}

/// Creating: follow the recorded tag job, or, without one, find out what became of the
/// one that may have been sent ([`step`]).
pub(super) async fn creating(app: &mut InstanceApplication, state: &State) -> Result<Action, Stop> {
    if app.status.as_ref().is_some_and(|s| s.job_id.is_none()) {
        // The watch cache may show our intent while the job id is stored already.
        super::reread(app, state).await?;
        if plan::phase(app) != Phase::Creating {
            return Ok(Action::requeue(plan::JOB_POLL));
        }
    }
    let (client, cluster) = cluster_client(app, state).await?;
    let Some(id) = app.status.as_ref().and_then(|s| s.job_id) else {
        return step(app, state, &client, &cluster, false).await;
    };
    let prefix = tag_prefix(&cluster).to_string();
    let now = Timestamp::now();
    let outcome = job_outcome(state, &cluster.name_any(), &client, id).await?;
    let mut found = None;
    let step = loop {
        match plan::adopt_after_job(app, id, &outcome, found.as_deref(), &prefix, now) {
            Follow::Done(step) => break step,
            Follow::ReadMarked => {
                found = Some(marked(state, &cluster.name_any(), &client, app, &prefix).await?)
            }
        }
    };
    finish(app, state, step).await
}

/// The approved VM as Ganeti has it now, under the name the inventory last saw for its
/// UUID (renamed since the approval) or else the approved one.
async fn current(
    app: &InstanceApplication,
    state: &State,
    cluster: &str,
    client: &RapiClient,
) -> Result<Option<Instance>, Error> {
    let uuid = app
        .status
        .as_ref()
        .and_then(|s| s.instance_uuid.clone())
        .unwrap_or_default();
    let name = state
        .ctx
        .shared
        .inventory
        .get(cluster)
        .and_then(|inv| inv.instance_by_uuid(&uuid).map(|i| i.name.clone()))
        .unwrap_or_else(|| plan::approved_name(app).to_string());
    lookup(state, cluster, client, &name).await
}

/// Records the step, and what it did to whose VM as an audit log line.
async fn finish(app: &mut InstanceApplication, state: &State, step: Step) -> Result<Action, Stop> {
    let audit = step.note.clone();
    let action = record(app, state, step).await?;
    if let Some(note) = audit {
        let status = app.status.clone().unwrap_or_default();
        tracing::info!(
            target: "audit",
            application = %app.key(),
            applicant = app.spec.applicant.as_deref().unwrap_or_default(),
            owner = %app.spec.owner,
            decided_by = app.spec.decision.as_ref().and_then(|d| d.decided_by.as_deref()).unwrap_or_default(),
            cluster = status.cluster.as_deref().unwrap_or_default(),
            instance = status.instance_name.as_deref().unwrap_or_default(),
            instance_uuid = status.instance_uuid.as_deref().unwrap_or_default(),
            job = status.job_id.map(|j| j.to_string()).unwrap_or_default(),
            outcome = note.reason,
            message = %note.message,
            "adoption"
        );
    }
    Ok(action)
}
