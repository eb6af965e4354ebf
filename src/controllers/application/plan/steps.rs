//! Creating an approved application's VM, step by step, decided without IO: what the
//! controller stores, says (an Event) and waits for after each thing it read from Ganeti.
//!
//! Approved ([`after_lookup`]): an earlier attempt's instance (found by the marker tag)
//! or its running create job is adopted; else the create job is submitted
//! ([`after_create`]), unless the spec changed since the approval. Creating
//! ([`after_job`]): the recorded job is followed to its end, and the VM is the instance
//! carrying the application's tags, never one found by name.
//!
//! The controller reads what a function asks for ([`Submit::ReadMarked`],
//! [`Submit::ReadJobs`], [`Follow::ReadMarked`]) and asks again with the answer, so
//! Ganeti is asked only what the decision needs, in this order.

use super::status::{adopt, failed, failed_locally, job_ended, submitted};
use super::{Note, approved_name, spec_is_approved};
use crate::api::application::{InstanceApplication, InstanceApplicationStatus, Phase};
use crate::inventory::Instance;
use crate::rapi::{GanetiFailure, Job};
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// How often a young create job is polled, and an old one at least.
pub const JOB_POLL: Duration = Duration::from_secs(1);
/// How often an old create job is polled at most.
pub const JOB_POLL_MAX: Duration = Duration::from_secs(10);

/// One step: the status to store, then the Event to publish, then when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The whole new status; `None`: nothing to store.
    pub status: Option<InstanceApplicationStatus>,
    /// The Event to publish once the status is stored.
    pub note: Option<Note>,
    /// When to look again; `None`: on the application's next change.
    pub requeue: Option<Duration>,
}

impl Step {
    fn store(status: InstanceApplicationStatus) -> Self {
        Self {
            status: Some(status),
            note: None,
            requeue: None,
        }
    }

    pub(super) fn wait(after: Duration) -> Self {
        Self {
            status: None,
            note: None,
            requeue: Some(after),
        }
    }
}

/// What the search of Ganeti for an earlier attempt's leftovers found so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The approval was stored by this very reconcile: no earlier attempt can have left
    /// an instance or a job behind, and Ganeti is not searched.
    FreshApproval,
    /// Approved earlier (a restart, a retry): not searched yet.
    NotSearched,
    /// The instances carrying the application's marker tag ([`super::marker_tag`]).
    Marked(Vec<Instance>),
    /// None of them is the application's: the newest unfinished job whose summary holds
    /// [`create_job_summary`], if any.
    Job(Option<u64>),
}

/// What an Approved application needs next.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per reconcile; a box buys nothing"
)]
pub enum Submit {
    /// Carry out the step: creating is decided for this reconcile.
    Done(Step),
    /// Read the instances carrying the marker tag, then ask again with [`Found::Marked`].
    ReadMarked,
    /// Read Ganeti's unfinished jobs, then ask again with [`Found::Job`].
    ReadJobs,
    /// Nothing to adopt: build and send the create request, then [`after_create`].
    Create,
}

/// What became of the create request.
#[derive(Debug, Clone, PartialEq)]
pub enum Submission {
    /// Ganeti accepted it: the job's id.
    Submitted(u64),
    /// It could not be built from the application ([`super::create_request`]'s error).
    Invalid(String),
    /// Ganeti refused the request itself (HTTP 400): no job, nothing to adopt later.
    Refused(String),
}

/// Where the application's create job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Queued, waiting or running; received by Ganeti at `received_ts` (seconds since
    /// the epoch).
    Running {
        received_ts: Option<f64>,
    },
    Succeeded,
    Failed(GanetiFailure),
    /// Ganeti no longer knows the job (archived): what it did shows in Ganeti.
    Archived,
}

impl JobOutcome {
    /// The outcome a job's record shows.
    pub fn of(job: &Job) -> Self {
        if !job.status.is_final() {
            return Self::Running {
                received_ts: job.received_ts,
            };
        }
        match job.failure() {
            Some(failure) => Self::Failed(failure),
            None => Self::Succeeded,
        }
    }
}

/// What a Creating application needs next.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per reconcile; a box buys nothing"
)]
pub enum Follow {
    /// Carry out the step.
    Done(Step),
    /// Read the instances carrying the marker tag, then ask again with them.
    ReadMarked,
}

/// The summary Ganeti gives a create job of the approved name, e.g.
/// `INSTANCE_CREATE(vm1.example.org)`.
pub fn create_job_summary(app: &InstanceApplication) -> String {
    format!("INSTANCE_CREATE({})", approved_name(app))
}

/// Approved: what to do with what the search of Ganeti `found` so far.
///
/// The marker comes first: an instance an earlier attempt made, whatever it is called
/// now, is adopted. Then a create job of the approved name that a crashed predecessor
/// submitted but did not record (should it be someone else's job for the name, its end
/// shows no instance with this application's tags, and [`after_job`] fails the
/// application rather than adopt a stranger's VM). Only then is a job submitted, and
/// only for the approved generation: a spec changed since goes back to Pending, where
/// the change needs a decision of its own.
pub fn after_lookup(app: &InstanceApplication, found: &Found, prefix: &str, now: Timestamp) -> Submit {
    match found {
        Found::NotSearched => Submit::ReadMarked,
        Found::Marked(marked) => match adopt(app, marked, prefix, now) {
            Some(status) => Submit::Done(Step::store(status)),
            None => Submit::ReadJobs,
        },
        Found::Job(Some(job)) => Submit::Done(creating(app, *job, true, now)),
        Found::FreshApproval | Found::Job(None) if !spec_is_approved(app) => Submit::Done(Step {
            status: Some(super::changed_after_approval(app, now)),
            note: Some(Note {
                warning: true,
                reason: "ChangedAfterApproval",
                message: "the spec changed after the approval; nothing was created and the change needs a new decision"
                    .to_string(),
            }),
            requeue: Some(JOB_POLL),
        }),
        Found::FreshApproval | Found::Job(None) => Submit::Create,
    }
}

/// Approved, on a cluster that is observed only (`managementPolicy: Observe`): never
/// submitted, whatever else holds; the condition and a warning Event say why (once).
pub fn held_on_observed(app: &InstanceApplication, cluster: &str, now: Timestamp) -> Step {
    let status = super::status::held_observed(app, cluster, now);
    let note = status.as_ref().map(|_| Note {
        warning: true,
        reason: super::status::OBSERVED_ONLY,
        message: format!(
            "{}: the approved instance is not {}",
            crate::api::cluster::observed_only_message(cluster),
            if app.spec.adopts() { "adopted" } else { "created" }
        ),
    });
    Step {
        status,
        note,
        // The GanetiCluster watch wakes the application when its spec changes.
        requeue: None,
    }
}

/// Approved, the create request built and sent (or not): Creating with the job, or
/// Failed.
pub fn after_create(app: &InstanceApplication, submission: Submission, now: Timestamp) -> Step {
    match submission {
        Submission::Submitted(job) => creating(app, job, false, now),
        Submission::Invalid(message) => Step::store(failed_locally(app, "InvalidApplication", message, now)),
        Submission::Refused(message) => Step::store(failed_locally(app, "BadRequest", message, now)),
    }
}

/// Creating: the recorded job `job_id` stands at `outcome`; `marked`: the instances
/// carrying the application's marker tag, once read.
///
/// A running job is polled again ([`poll_delay`]); a failed one fails the application,
/// whatever exists. A job that succeeded, or that Ganeti archived, made the instance
/// carrying the application's tags: that one is Created, whatever its name; none, or
/// several, fail the application.
pub fn after_job(
    app: &InstanceApplication,
    job_id: u64,
    outcome: &JobOutcome,
    marked: Option<&[Instance]>,
    prefix: &str,
    now: Timestamp,
) -> Follow {
    let status = match (outcome, marked) {
        (JobOutcome::Running { received_ts }, _) => {
            return Follow::Done(Step::wait(poll_delay(*received_ts, now)));
        }
        (JobOutcome::Failed(failure), _) => failed(app, failure, now),
        (_, None) => return Follow::ReadMarked,
        (outcome, Some(marked)) => job_ended(
            app,
            job_id,
            *outcome == JobOutcome::Succeeded,
            marked,
            prefix,
            now,
        ),
    };
    Follow::Done(ended(status))
}

/// Creating, with the job recorded: followed from now on.
fn creating(app: &InstanceApplication, job: u64, adopted: bool, now: Timestamp) -> Step {
    // The name fixed at approval, not the spec's: that may have changed since.
    let host = approved_name(app);
    let verb = if adopted { "found running" } else { "submitted" };
    let message = format!("Ganeti job {job} ({verb}) creates {host}");
    Step {
        status: Some(submitted(app, job, adopted, now)),
        note: Some(Note {
            warning: false,
            reason: "Creating",
            message,
        }),
        requeue: Some(JOB_POLL),
    }
}

/// The job ended in `status` (Created or Failed), and says so.
fn ended(status: InstanceApplicationStatus) -> Step {
    let host = status.instance_name.as_deref().unwrap_or_default();
    let created = status.phase == Phase::Created;
    let message = match (&status.ganeti_error, created) {
        (_, true) => format!(
            "instance {host} created on {}",
            status.primary_node.as_deref().unwrap_or("?")
        ),
        (Some(e), _) => format!("creating {host} failed: {}", e.message),
        (None, _) => format!("creating {host} failed"),
    };
    Step {
        status: Some(status),
        note: Some(Note {
            warning: !created,
            reason: if created { "Created" } else { "CreateFailed" },
            message,
        }),
        requeue: None,
    }
}

/// When to look at an unfinished job again: soon for a young job, less often as it
/// ages, so many VMs being created at once do not flood RAPI with polls.
pub fn poll_delay(received_ts: Option<f64>, now: Timestamp) -> Duration {
    let now = now.as_duration().as_secs_f64();
    let age = received_ts.map(|t| (now - t).max(0.0)).unwrap_or_default();
    Duration::try_from_secs_f64(age / 4.0)
        .unwrap_or(JOB_POLL_MAX)
        .clamp(JOB_POLL, JOB_POLL_MAX)
}
