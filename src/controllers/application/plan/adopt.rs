//! Adopting an existing VM (`spec.mode: Adopt`), decided without IO: whether the VM may be
//! adopted, and each step of writing its owner tag.
//!
//! # What an adoption approval means, and nothing more
//! An admin approves giving one VM, the one `spec.instance` named *at the approval*, an
//! owner. The evaluation resolves the name to the VM's Ganeti UUID and records it
//! (`status.instanceUUID`) with the approval; from then on only that VM is adopted, and
//! only while it has no owner in any form the operator reads (its own owner tag, also
//! under the default prefix, and ganetimgr's): [`crate::tags::owner_tags`]. Anything else fails the
//! application with the reason, and no tag is written: no silent takeover of someone's
//! VM. `clusters.createVm` never approves an adoption (creating VMs is not taking them).
//!
//! # One tag job per approval
//! The owner tag goes with the application's marker tag ([`super::marker_tag`]) in one
//! job (`PUT /2/instances/<name>/tags`). Before it is sent, the intent is stored (phase
//! `Creating` without a job id); then the job id. So after a restart:
//! - the marker on the approved VM says the job did its work: Adopted;
//! - phase `Approved`: nothing was sent yet;
//! - `Creating` with a job: that job is followed;
//! - `Creating` without one: the operator stopped while sending. A tag job still running
//!   on the VM is waited for; if the VM then carries no marker, the application fails
//!   rather than send a second job for one approval (an admin decides again to retry).

use super::status::{created, transition};
use super::{ClusterView, marker_tag, owner_tag, phase, poll_delay, spec_is_approved};
use super::{INSTANCE_CREATED, JOB_POLL, JobOutcome, Note, Step, Submission, approved_name, is_ours};
use crate::api::application::{GanetiError, InstanceApplication, InstanceApplicationStatus, Phase};
use crate::api::conditions::{self, Status};
use crate::inventory::Instance;
use crate::rapi::GanetiFailure;
use k8s_openapi::jiff::Timestamp;

/// Reason of the `InstanceCreated` condition while the owner tag is being written.
pub const ADOPTING: &str = "Adopting";
/// Reason of the `InstanceCreated` condition once the VM is the owner's.
pub const ADOPTED: &str = "Adopted";

/// The instance an Adopt application names, if it may be adopted now: it is on the
/// (ready) cluster, has no owner, and no other adoption of it is under way.
pub(super) fn validate_adopt<'a>(
    app: &InstanceApplication,
    cluster: &ClusterView<'a>,
    applications: &[InstanceApplication],
) -> Result<&'a Instance, (&'static str, String)> {
    super::validate::owner_allowed(app)?;
    let (name, _, inventory, _) = super::validate::ready(cluster)?;
    let Some(wanted) = app.spec.instance.as_deref() else {
        return Err((
            "NoInstance",
            "no instance named: set spec.instance to the existing VM to adopt".into(),
        ));
    };
    let Some(instance) = inventory.instance(wanted) else {
        return Err((
            "InstanceNotFound",
            format!(
                "cluster {name} has no instance named {wanted}: adoption gives an existing VM an owner (name it exactly as Ganeti lists it); to get a new VM, file an application in mode Create"
            ),
        ));
    };
    let owners = crate::tags::owner_tags(&instance.tags, &inventory.tag_prefix);
    if !owners.is_empty() {
        return Err((
            "AlreadyOwned",
            format!(
                "instance {wanted} already has an owner ({}): adoption only gives a VM without an owner one, never takes it from someone",
                owners.join(", ")
            ),
        ));
    }
    let rival = applications.iter().find(|a| {
        a.metadata.uid != app.metadata.uid
            && a.spec.adopts()
            && matches!(phase(a), Phase::Approved | Phase::Creating)
            && a.status.as_ref().and_then(|s| s.instance_uuid.as_deref()) == Some(instance.uuid.as_str())
    });
    if let Some(other) = rival {
        return Err((
            "AdoptionUnderWay",
            format!(
                "application {} was approved to adopt instance {wanted} and is under way: one VM gets one owner",
                other.key()
            ),
        ));
    }
    if instance.uuid.is_empty() {
        return Err((
            "NoUUID",
            format!("Ganeti reports no UUID for instance {wanted}: a VM is adopted by its UUID only"),
        ));
    }
    Ok(instance)
}

/// Whether a validation failure ends an admin's approval of an adoption (the VM has an
/// owner, or another adoption of it is under way) rather than leave it waiting (a cluster
/// not ready, a VM not read yet).
pub(super) fn conflict_ends_approval(reason: &str) -> bool {
    matches!(reason, "AlreadyOwned" | "AdoptionUnderWay")
}

/// What is known so far of the approved VM in Ganeti, each read fresh when asked for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen<'a> {
    /// The instances carrying the application's marker tag.
    pub marked: Option<&'a [Instance]>,
    /// The approved VM under its current name (`None` inside: Ganeti has no such VM).
    pub current: Option<Option<&'a Instance>>,
    /// Phase `Creating` without a job id: a tag job still running on the VM, if any.
    pub running: Option<Option<u64>>,
}

/// What an approved adoption needs next.
#[derive(Debug, Clone, PartialEq)]
pub enum Adopt {
    Done(Step),
    /// Read the instances carrying the marker tag into [`Seen::marked`].
    ReadMarked,
    /// Read the approved VM (by the name it has now) into [`Seen::current`].
    ReadInstance,
    /// Read Ganeti's unfinished tag jobs ([`is_tag_job`]) into [`Seen::running`].
    ReadJobs,
    /// Store `intent`, then send one job adding `tags` to the instance `name`, then
    /// [`after_tag`].
    Tag {
        intent: InstanceApplicationStatus,
        name: String,
        tags: Vec<String>,
    },
}

/// Whether a job's opcode `summary` may be one setting tags on instance `name`: Ganeti
/// 3.0 summarises it as `TAGS_SET`, without the object, so any running tag job may be
/// the one an interrupted send left, and is waited for.
pub fn is_tag_job(summary: &str, name: &str) -> bool {
    summary == "TAGS_SET"
        || summary
            .strip_prefix("TAGS_SET(")
            .and_then(|r| r.strip_suffix(')'))
            == Some(name)
}

/// Approved (or Creating without a job id: see the module docs), with what was `seen`.
pub fn adopt_step(app: &InstanceApplication, seen: &Seen<'_>, prefix: &str, now: Timestamp) -> Adopt {
    let Some(uuid) = approved_uuid(app) else {
        return fail(
            app,
            "NoUUID",
            "the approval recorded no instance UUID; an admin decides again".into(),
            now,
        );
    };
    let Some(marked) = seen.marked else {
        return Adopt::ReadMarked;
    };
    if let Some(done) = tagged(app, uuid, marked, prefix, None, now) {
        return Adopt::Done(done);
    }
    if phase(app) == Phase::Creating {
        return match seen.running {
            None => Adopt::ReadJobs,
            // Perhaps ours, perhaps not: its end shows whether the marker came.
            Some(Some(_)) => Adopt::Done(Step::wait(JOB_POLL)),
            Some(None) => fail(
                app,
                "AdoptionInterrupted",
                format!(
                    "the operator stopped while sending the job that writes the owner tag, and VM {} (UUID {uuid}) carries no tag from it; so that one approval never sends two tag jobs, nothing more is sent: an admin decides again (a new reason) to try once more",
                    approved_name(app)
                ),
                now,
            ),
        };
    }
    if !spec_is_approved(app) {
        return Adopt::Done(Step {
            status: Some(super::changed_after_approval(app, now)),
            note: Some(Note {
                warning: true,
                reason: "ChangedAfterApproval",
                message: "the spec changed after the approval; nothing was adopted and the change needs a new decision"
                    .into(),
            }),
            requeue: Some(JOB_POLL),
        });
    }
    let Some(current) = seen.current else {
        return Adopt::ReadInstance;
    };
    let Some(instance) = current else {
        return fail(
            app,
            "InstanceGone",
            format!(
                "the approved VM {} (UUID {uuid}) is no longer on the cluster under that name: nothing was adopted",
                approved_name(app)
            ),
            now,
        );
    };
    if instance.uuid != uuid {
        return fail(
            app,
            "InstanceReplaced",
            format!(
                "instance {} is another VM now (UUID {}, approved: {uuid}): nothing was adopted",
                instance.name, instance.uuid
            ),
            now,
        );
    }
    let owners = crate::tags::owner_tags(&instance.tags, prefix);
    if !owners.is_empty() {
        return fail(
            app,
            "AlreadyOwned",
            format!(
                "instance {} got an owner after the approval ({}): nothing was adopted, no one's VM is taken",
                instance.name,
                owners.join(", ")
            ),
            now,
        );
    }
    let tags = match (owner_tag(app, prefix), marker_tag(app, prefix)) {
        (Ok(owner), Ok(marker)) => vec![owner, marker],
        (Err(e), _) | (_, Err(e)) => return fail(app, "InvalidApplication", e, now),
    };
    let (mut intent, generation) = transition(app);
    intent.phase = Phase::Creating;
    intent.job_id = None;
    conditions::set(
        &mut intent.conditions,
        INSTANCE_CREATED,
        Status::False,
        ADOPTING,
        format!("sending the job that writes the owner tag on {}", instance.name),
        generation,
        now,
    );
    Adopt::Tag {
        intent,
        name: instance.name.clone(),
        tags,
    }
}

/// The tag job was sent (or not): Creating with its id, or Failed.
pub fn after_tag(app: &InstanceApplication, submission: Submission, now: Timestamp) -> Step {
    let id = match submission {
        Submission::Submitted(id) => id,
        Submission::Invalid(message) => return failed_step(app, "InvalidApplication", message, now),
        Submission::Refused(message) => return failed_step(app, "BadRequest", message, now),
    };
    let (mut status, generation) = transition(app);
    status.phase = Phase::Creating;
    status.job_id = Some(id);
    let host = approved_name(app);
    let message = format!(
        "Ganeti job {id} writes the owner tag of {} on {host} (UUID {})",
        app.spec.owner,
        approved_uuid(app).unwrap_or("?")
    );
    told(status, generation, ADOPTING, message, now)
}

/// Creating, following the tag job `job_id`; `marked`: the instances carrying the
/// marker, once read. Like a create job, the end shows in Ganeti, not in the job.
pub fn adopt_after_job(
    app: &InstanceApplication,
    job_id: u64,
    outcome: &JobOutcome,
    marked: Option<&[Instance]>,
    prefix: &str,
    now: Timestamp,
) -> super::Follow {
    use super::Follow;
    let uuid = approved_uuid(app).unwrap_or_default();
    match (outcome, marked) {
        (JobOutcome::Running { received_ts }, _) => Follow::Done(Step::wait(poll_delay(*received_ts, now))),
        (JobOutcome::Failed(failure), _) => Follow::Done(failed_step_with(
            app,
            "TagJobFailed",
            format!("Ganeti job {job_id} did not write the owner tag: {failure}"),
            Some(failure),
            now,
        )),
        (_, None) => Follow::ReadMarked,
        (_, Some(marked)) => Follow::Done(tagged(app, uuid, marked, prefix, Some(job_id), now).unwrap_or_else(
            || {
                failed_step(
                    app,
                    "TagMissing",
                    format!(
                        "job {job_id} ended, but VM {} (UUID {uuid}) carries no owner tag from it (removed meanwhile?)",
                        approved_name(app)
                    ),
                    now,
                )
            },
        )),
    }
}

/// The UUID the approval resolved `spec.instance` to.
fn approved_uuid(app: &InstanceApplication) -> Option<&str> {
    app.status
        .as_ref()
        .and_then(|s| s.instance_uuid.as_deref())
        .filter(|u| !u.is_empty())
}

/// The end, when an instance carries the application's tags: Adopted if it is the
/// approved VM, Failed if another (the tag went astray: an admin must take it off).
fn tagged(
    app: &InstanceApplication,
    uuid: &str,
    marked: &[Instance],
    prefix: &str,
    job: Option<u64>,
    now: Timestamp,
) -> Option<Step> {
    let ours: Vec<&Instance> = marked.iter().filter(|i| is_ours(app, i, prefix)).collect();
    match ours.as_slice() {
        [] => None,
        [instance] if instance.uuid == uuid => Some(adopted(app, instance, job, now)),
        strays => Some(failed_step(
            app,
            "InstanceReplaced",
            format!(
                "the owner tag is on {} and not on the approved VM (UUID {uuid}): an admin must remove the tags {} from it",
                strays
                    .iter()
                    .map(|i| format!("{} (UUID {})", i.name, i.uuid))
                    .collect::<Vec<_>>()
                    .join(", "),
                [owner_tag(app, prefix), marker_tag(app, prefix)]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            now,
        )),
    }
}

fn adopted(app: &InstanceApplication, instance: &Instance, job: Option<u64>, now: Timestamp) -> Step {
    let status = created(app, instance, now);
    let generation = status.approved_generation.or(status.observed_generation);
    let by = job.map(|j| format!(" by Ganeti job {j}")).unwrap_or_default();
    let message = format!(
        "instance {} (UUID {}) belongs to {} now: its owner tag was written{by}",
        instance.name, instance.uuid, app.spec.owner
    );
    told(status, generation, ADOPTED, message, now)
}

fn fail(app: &InstanceApplication, reason: &'static str, message: String, now: Timestamp) -> Adopt {
    Adopt::Done(failed_step(app, reason, message, now))
}

fn failed_step(app: &InstanceApplication, reason: &'static str, message: String, now: Timestamp) -> Step {
    failed_step_with(app, reason, message, None, now)
}

/// Failed: nothing (more) is written to Ganeti for this approval; the condition, the
/// Ganeti error field and a warning Event say why.
fn failed_step_with(
    app: &InstanceApplication,
    reason: &'static str,
    message: String,
    failure: Option<&GanetiFailure>,
    now: Timestamp,
) -> Step {
    let (mut status, generation) = transition(app);
    status.phase = Phase::Failed;
    status.ganeti_error = Some(GanetiError {
        message: message.clone(),
        code: failure
            .and_then(|f| f.ecode.as_ref())
            .map(|c| c.as_str().to_string()),
    });
    told(status, generation, reason, format!("not adopted: {message}"), now)
}

/// `status` with its `InstanceCreated` condition saying `message` (true once Created),
/// and the same as an Event: a warning when it failed; a look again soon while the tag
/// job runs.
fn told(
    mut status: InstanceApplicationStatus,
    generation: Option<i64>,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Step {
    let created = status.phase == Phase::Created;
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::from(created),
        reason,
        message.clone(),
        generation,
        now,
    );
    let requeue = (status.phase == Phase::Creating).then_some(JOB_POLL);
    Step {
        note: Some(Note {
            warning: status.phase == Phase::Failed,
            reason,
            message,
        }),
        status: Some(status),
        requeue,
    }
}

/// The `reason=` of the tag job: which application, whose VM it makes it, approved by whom.
pub fn adopt_reason(app: &InstanceApplication) -> String {
    format!(
        "ganeti-operator: InstanceApplication {} of {} adopts it for {}, approved by {}",
        app.key(),
        super::applicant(app),
        app.spec.owner,
        super::decider(app),
    )
}
