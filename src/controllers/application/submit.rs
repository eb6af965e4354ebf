//! Approved: adopt what an earlier attempt left in Ganeti, else submit the create job
//! (decided by `plan::after_lookup` and `plan::after_create`).

use super::ganeti::{catalog, cluster_client, marked, rapi, running_job, tag_prefix};
use super::{State, Stop, plan, record};
use crate::api::application::{InstanceApplication, Phase};
use crate::api::cluster::GanetiCluster;
use crate::api::profile::UserProfile;
use crate::controllers::Error;
use crate::fault;
use crate::rapi::{JobId, RapiClient, RapiError};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use plan::{Found, Step, Submission, Submit};
use std::sync::Arc;

/// Approved: adopt what an earlier attempt left in Ganeti, else submit the create job.
/// `approved_here`: the approval was stored by this reconcile, so no earlier attempt
/// can have left a job or an instance behind, and Ganeti need not be searched.
pub(super) async fn submit(
    app: &mut InstanceApplication,
    state: &State,
    approved_here: bool,
) -> Result<Action, Stop> {
    if !approved_here {
        // The watch cache may lag behind our own last write: decide on what is stored,
        // so a job already recorded is never submitted again.
        super::reread(app, state).await?;
        if plan::phase(app) != Phase::Approved {
            return Ok(Action::requeue(plan::JOB_POLL));
        }
    }
    let (client, cluster) = cluster_client(app, state).await?;
    let now = Timestamp::now();
    // Before anything else: an observed-only cluster gets no create job, and the
    // application says so rather than fail on the client's refusal.
    if cluster.spec.observed_only() || client.is_read_only() {
        let step = plan::held_on_observed(app, &cluster.name_any(), now);
        return Ok(record(app, state, step).await?);
    }
    if app.spec.adopts() {
        return super::adopt::step(app, state, &client, &cluster, approved_here).await;
    }
    let prefix = tag_prefix(&cluster).to_string();
    // Ganeti is searched as far as the decision needs: the marked instances, then the
    // running jobs.
    let mut found = if approved_here {
        Found::FreshApproval
    } else {
        Found::NotSearched
    };
    let step = loop {
        found = match plan::after_lookup(app, &found, &prefix, now) {
            Submit::Done(step) => break step,
            Submit::ReadMarked => {
                Found::Marked(marked(state, &cluster.name_any(), &client, app, &prefix).await?)
            }
            Submit::ReadJobs => Found::Job(running_job(&client, &plan::create_job_summary(app)).await?),
            Submit::Create => break create(app, state, &client, &cluster, &prefix, now).await?,
        };
    };
    let action = record(app, state, step).await?;
    if plan::phase(app) == Phase::Creating {
        fault::point(fault::points::WHILE_JOB_RUNS);
    }
    Ok(action)
}

/// Builds and sends the create request; the step its answer leads to.
async fn create(
    app: &InstanceApplication,
    state: &State,
    client: &Arc<RapiClient>,
    cluster: &GanetiCluster,
    prefix: &str,
    now: Timestamp,
) -> Result<Step, Error> {
    let profiles = Api::<UserProfile>::all(state.ctx.shared.client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let catalog = catalog(state, &cluster.name_any(), client).await?;
    let submission = match plan::create_request(app, &cluster.spec, &catalog, prefix, &profiles) {
        Err(message) => Submission::Invalid(message),
        Ok(request) => match client.create_instance(&request, &plan::create_reason(app)).await {
            Ok(JobId(id)) => {
                fault::point(fault::points::AFTER_CREATE_POST);
                Submission::Submitted(id)
            }
            Err(RapiError::BadRequest { message }) => Submission::Refused(message),
            // Anything else (timeout, connection lost) may or may not have created a
            // job: retry, and the search of Ganeti adopts it if it exists.
            Err(e) => return Err(rapi(e)),
        },
    };
    Ok(plan::after_create(app, submission, now))
}
