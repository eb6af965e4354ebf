//! Approved: adopt what an earlier attempt left in Ganeti, else submit the create job.

use super::ganeti::{catalog, cluster_client, marked, rapi, tag_prefix};
use super::{JOB_POLL, State, event, plan, write_status};
use crate::api::application::{InstanceApplication, Phase};
use crate::api::profile::UserProfile;
use crate::controllers::Error;
use crate::fault;
use crate::rapi::{JobId, RapiError};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;

/// Approved: adopt what an earlier attempt left in Ganeti, else submit the create job.
/// `approved_here`: the approval was stored by this reconcile, so no earlier attempt
/// can have left a job or an instance behind, and Ganeti need not be searched.
pub(super) async fn submit(
    app: &mut InstanceApplication,
    state: &State,
    approved_here: bool,
) -> Result<Action, Error> {
    if !approved_here {
        // The watch cache may lag behind our own last write: decide on what is stored,
        // so a job already recorded is never submitted again.
        let api: Api<InstanceApplication> =
            Api::namespaced(state.ctx.client.clone(), &app.namespace().unwrap_or_default());
        *app = api.get_status(&app.name_any()).await?;
        if plan::phase(app) != Phase::Approved {
            return Ok(Action::requeue(JOB_POLL));
        }
    }
    let (client, cluster) = cluster_client(app, state).await?;
    let prefix = tag_prefix(&cluster).to_string();
    // The name fixed at approval, not the spec's: that may have changed since.
    let host = plan::approved_name(app).to_string();
    let now = Timestamp::now();
    // What an earlier attempt may have created, known by the application's own tags
    // whatever it is called now. Right after the approval there was none (and a VM
    // someone else made under the name meanwhile fails the job: `already_exists`).
    if !approved_here {
        let found = marked(state, &cluster.name_any(), &client, app, &prefix).await?;
        if let Some(status) = plan::adopt(app, &found, &prefix, now) {
            write_status(app, state, status).await?;
            return Ok(Action::await_change());
        }
    }
    // A create job that a crashed predecessor submitted but did not record. (Should it
    // be someone else's job for the name, its end shows no instance with this
    // application's tags, and the application fails rather than adopt a stranger.)
    let summary = format!("INSTANCE_CREATE({host})");
    let running = if approved_here {
        None
    } else {
        client
            .unfinished_jobs()
            .await
            .map_err(rapi)?
            .into_iter()
            .filter(|j| j.summary.contains(&summary))
            .map(|j| j.id)
            .max()
    };
    let (job, adopted) = match running {
        Some(id) => (id, true),
        // Created from the approved generation only: a spec changed since goes back to
        // Pending, where the change needs a decision of its own.
        None if !plan::spec_is_approved(app) => {
            let status = plan::changed_after_approval(app, now);
            write_status(app, state, status).await?;
            event(
                state,
                app,
                true,
                "ChangedAfterApproval",
                "the spec changed after the approval; nothing was created and the change needs a new decision",
            )
            .await;
            return Ok(Action::requeue(JOB_POLL));
        }
        None => {
            let profiles = Api::<UserProfile>::all(state.ctx.client.clone())
                .list(&ListParams::default())
                .await?
                .items;
            let catalog = catalog(state, &cluster.name_any(), &client).await?;
            let request = match plan::create_request(app, &cluster.spec, &catalog, &prefix, &profiles) {
                Ok(r) => r,
                Err(message) => {
                    let status = plan::failed_locally(app, "InvalidApplication", message, now);
                    write_status(app, state, status).await?;
                    return Ok(Action::await_change());
                }
            };
            match client.create_instance(&request, &plan::create_reason(app)).await {
                Ok(JobId(id)) => {
                    fault::point(fault::points::AFTER_CREATE_POST);
                    (id, false)
                }
                // Ganeti refused the request itself: no job, nothing to adopt later.
                Err(RapiError::BadRequest { message }) => {
                    let status = plan::failed_locally(app, "BadRequest", message, now);
                    write_status(app, state, status).await?;
                    return Ok(Action::await_change());
                }
                // Anything else (timeout, connection lost) may or may not have created a
                // job: retry, and the lookup above adopts it if it exists.
                Err(e) => return Err(rapi(e)),
            }
        }
    };
    let status = plan::submitted(app, job, adopted, now);
    write_status(app, state, status).await?;
    let verb = if adopted { "found running" } else { "submitted" };
    event(
        state,
        app,
        false,
        "Creating",
        &format!("Ganeti job {job} ({verb}) creates {host}"),
    )
    .await;
    fault::point(fault::points::WHILE_JOB_RUNS);
    Ok(Action::requeue(JOB_POLL))
}
