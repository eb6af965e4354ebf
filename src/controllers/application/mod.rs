//! The InstanceApplication controller: approval within quota, creation through RAPI,
//! mails to the applicant.
//!
//! observe (cluster, quotas, applications, Ganeti) -> plan (`plan`, pure) -> apply (one
//! status write per step, then the RAPI call the new status announces).
//!
//! After the approval, what to do next is decided by `plan::after_lookup`,
//! `plan::after_create` and `plan::after_job`: this shell reads from Ganeti what they ask
//! for and carries out the `plan::Step` they return (status, then Event, then requeue).
//!
//! # Crash safety
//! Every step is recorded before the next one starts, and every step can be repeated:
//! - The approval is written (phase `Approved`, with the approved generation and the
//!   name to create) before anything is submitted.
//! - Before submitting again after a restart, Ganeti is asked for instances carrying the
//!   application's marker tag (`plan::marker_tag`, sent with the create request beside
//!   the owner tag), and its job list for a create job of the approved name: a restart
//!   after the POST but before the job id was recorded adopts that instance (whatever it
//!   is called now) or that job, instead of submitting again.
//! - The job id is written (phase `Creating`) before anything waits on it; a restart
//!   follows the recorded job. When it ends (or is archived), the instance is the one
//!   carrying the marker and the owner tag, and its UUID is recorded: never an instance
//!   found by the spec's hostname, which may have been changed to another VM's name.
//!   An adopted job that turns out to be someone else's leaves no marked instance, and
//!   the application fails rather than take a stranger's VM.
//! - A spec changed after the approval is created only if a job for the approved one was
//!   already under way; otherwise it goes back to Pending and needs a new decision
//!   (`plan::changed_after_approval`).
//!
//! Quota decisions that approve are serialised per cluster and made on a fresh list of
//! applications, so two approvals cannot together overshoot a quota.
//!
//! Mode Adopt (an owner for an existing VM) takes the same phases; its one Ganeti write
//! is a tag job on the VM approved by UUID (`plan::adopt_step`, shell in `adopt`).
//!
//! Deleting an application never touches Ganeti: a created VM outlives it (remove VMs
//! through the console API or Ganeti).

mod adopt;
mod evaluate;
mod follow;
mod ganeti;
mod mails;
pub mod plan;
mod submit;

use super::Context;
use super::harness::{self, Error};
use crate::api::application::{InstanceApplication, InstanceApplicationStatus, Phase};
use crate::api::cluster::GanetiCluster;
use crate::api::conditions;
use crate::api::quota::ClusterQuota;
use crate::rapi::JobProgress;
use evaluate::evaluate;
use follow::follow;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use mails::mail_applicant;
use plan::Catalog;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use submit::submit;

const CONTROLLER: &str = "instanceapplication";
/// How often a waiting application (no decision, no quota, cluster not ready) is looked at again.
const PENDING_RESYNC: Duration = Duration::from_secs(60);
/// How soon a step that waits for something outside (a cluster this replica has not
/// read yet, an instance renamed while it was read) is tried again.
const WAIT: Duration = Duration::from_secs(5);
/// How long Ganeti's OS and disk template lists are reused.
const CATALOG_TTL: Duration = Duration::from_secs(60);

/// The controller's own state, beside the shared context.
struct State {
    ctx: Arc<Context>,
    recorder: Recorder,
    /// Per cluster: held while an approval is decided and recorded.
    approvals: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per cluster: Ganeti's OS and disk template lists, and when they were read. Listing
    /// OSes makes Ganeti ask every node, so many waiting applications share one answer.
    catalogs: Arc<tokio::sync::Mutex<HashMap<String, (Instant, Catalog)>>>,
    /// The controller's cache of applications: enough to see that one does not fit or
    /// waits; approving re-reads them from the API server.
    applications: Store<InstanceApplication>,
    /// Per cluster: the create jobs being followed and their statuses, read for all of
    /// them in one query at most once per [`plan::JOB_POLL`], so a hundred VMs being created
    /// cost Ganeti one small query a second, not a hundred full job reads.
    job_boards: Mutex<HashMap<String, Arc<tokio::sync::Mutex<JobBoard>>>>,
}

#[derive(Default)]
struct JobBoard {
    followed: BTreeSet<u64>,
    progress: HashMap<u64, JobProgress>,
    read_at: Option<Instant>,
}

impl State {
    fn approval_lock(&self, cluster: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.approvals
            .lock()
            .expect("approvals lock")
            .entry(cluster.to_string())
            .or_default()
            .clone()
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let apps: Api<InstanceApplication> = Api::all(ctx.shared.client.clone());
    let controller = Controller::new(apps, watcher::Config::default());
    let store = controller.store();
    ctx.shared.metrics.follow_applications(store.clone());
    let shutdown = super::once_listed(store.clone(), shutdown);
    let state = Arc::new(State {
        recorder: ctx.recorder.clone(),
        ctx: ctx.clone(),
        approvals: Mutex::default(),
        catalogs: Default::default(),
        applications: store.clone(),
        job_boards: Mutex::default(),
    });
    let quota_store = store.clone();
    let cluster_store = store.clone();
    // Per cluster: its generation and readiness as last seen. A cluster's status changes
    // with every inventory change; only these two matter to waiting applications, and
    // waking every one of them on each sync would flood the API servers.
    let seen: Mutex<HashMap<String, (Option<i64>, bool)>> = Mutex::default();
    controller
        // A changed quota may let waiting applications through (or stop them).
        .watches(
            Api::<ClusterQuota>::all(ctx.shared.client.clone()),
            watcher::Config::default(),
            move |q| waiting_on(&quota_store, Some(&q.spec.cluster)),
        )
        // A cluster becoming ready (or its spec changing) matters to waiting ones.
        .watches(
            Api::<GanetiCluster>::all(ctx.shared.client.clone()),
            watcher::Config::default(),
            move |c| {
                let ready = c
                    .status
                    .as_ref()
                    .is_some_and(|s| conditions::is_true(&s.conditions, "Ready"));
                let now = (c.metadata.generation, ready);
                let before = seen.lock().expect("seen lock").insert(c.name_any(), now);
                if before == Some(now) {
                    return Vec::new();
                }
                waiting_on(&cluster_store, Some(&c.name_any()))
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "instanceapplication reconcile event");
            }
        })
        .await;
}

/// Pending applications naming `cluster`, and Approved ones on it (held while it is
/// observed only).
fn waiting_on(
    store: &Store<InstanceApplication>,
    cluster: Option<&str>,
) -> Vec<ObjectRef<InstanceApplication>> {
    store
        .state()
        .into_iter()
        .filter(|a| match plan::phase(a) {
            Phase::Pending => a.spec.cluster.as_deref() == cluster,
            Phase::Approved => {
                let on = a.status.as_ref().and_then(|s| s.cluster.as_deref());
                on.or(a.spec.cluster.as_deref()) == cluster
            }
            _ => false,
        })
        .map(|a| ObjectRef::from_obj(&*a))
        .collect()
}

fn error_policy(app: Arc<InstanceApplication>, error: &Error, _state: Arc<State>) -> Action {
    harness::retry(CONTROLLER, &app.key(), error, Duration::from_secs(5))
}

async fn reconcile(app: Arc<InstanceApplication>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let work = reconcile_inner(app.clone(), &state);
    harness::reconcile(CONTROLLER, &ctx.shared.metrics, &state.recorder, &*app, work).await
}

async fn reconcile_inner(app: Arc<InstanceApplication>, state: &State) -> Result<Action, Error> {
    match advance(&app, state).await {
        Ok(action) => Ok(action),
        // Not an error: no warning, no error count, and a look again soon.
        Err(Stop::Wait(why)) => {
            tracing::debug!(application = %app.key(), %why, "InstanceApplication waits");
            Ok(Action::requeue(WAIT))
        }
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// Each phase's step in turn, as far as the application gets in this reconcile, then
/// the applicant's mail.
async fn advance(app: &InstanceApplication, state: &State) -> Result<Action, Stop> {
    if app.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut app = app.clone();
    let mut action = Action::await_change();
    // Approved by this very reconcile: no create job can exist yet (none is submitted
    // before the approval is stored, and nothing else reconciles this object meanwhile).
    let mut approved_here = false;
    if plan::needs_evaluation(&app) {
        action = evaluate(&mut app, state).await?;
        approved_here = plan::phase(&app) == Phase::Approved;
    }
    if plan::phase(&app) == Phase::Approved {
        action = submit(&mut app, state, approved_here).await?;
    }
    if plan::phase(&app) == Phase::Creating {
        action = follow(&mut app, state).await?;
    }
    if let Some(kind) = plan::mail_due(&app)
        && let Some(retry) = mail_applicant(&mut app, kind, state).await?
    {
        return Ok(Action::requeue(retry));
    }
    Ok(action)
}

/// Why a reconcile ends before its last step.
enum Stop {
    /// Waiting for something outside that is not there yet (what, in words): not an
    /// error; looked at again after [`WAIT`].
    Wait(String),
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl From<kube::Error> for Stop {
    fn from(e: kube::Error) -> Self {
        Stop::Failed(e.into())
    }
}

async fn event(state: &State, app: &InstanceApplication, warning: bool, reason: &str, note: &str) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_string(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(e) = state.recorder.publish(&ev, &app.object_ref(&())).await {
        tracing::debug!(application = %app.key(), error = %e, "publishing an Event failed");
    }
}

/// Carries out a step the plan decided: its status first, then its Event.
async fn record(app: &mut InstanceApplication, state: &State, step: plan::Step) -> Result<Action, Error> {
    if let Some(status) = step.status {
        write_status(app, state, status).await?;
    }
    if let Some(note) = &step.note {
        event(state, app, note.warning, note.reason, &note.message).await;
    }
    Ok(step.requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Replaces `app` with what the API server stores now (the watch cache may lag behind
/// this controller's own last write).
async fn reread(app: &mut InstanceApplication, state: &State) -> Result<(), kube::Error> {
    let api: Api<InstanceApplication> = Api::namespaced(
        state.ctx.shared.client.clone(),
        &app.namespace().unwrap_or_default(),
    );
    *app = api.get_status(&app.name_any()).await?;
    Ok(())
}

/// Stores `status` (server-side apply, the whole status) and keeps `app` current.
async fn write_status(
    app: &mut InstanceApplication,
    state: &State,
    status: InstanceApplicationStatus,
) -> Result<(), Error> {
    let api: Api<InstanceApplication> = Api::namespaced(
        state.ctx.shared.client.clone(),
        &app.namespace().unwrap_or_default(),
    );
    let stored = crate::status::apply(&api, &app.name_any(), &status).await?;
    state
        .ctx
        .shared
        .metrics
        .status_writes
        .with_label_values(&[CONTROLLER])
        .inc();
    tracing::debug!(application = %app.key(), phase = ?status.phase, "status written");
    app.status = stored.status;
    app.metadata.resource_version = stored.metadata.resource_version;
    Ok(())
}
