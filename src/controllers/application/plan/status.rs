//! Each transition after the approval, as the status it stores.

use super::{DECIDED, INSTANCE_CREATED, approved_name, is_ours};
use crate::api::application::{GanetiError, InstanceApplication, InstanceApplicationStatus, Phase};
use crate::api::conditions::{self, Status};
use crate::inventory::Instance;
use crate::rapi::GanetiFailure;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Approved, but the spec changed before the create job was submitted: back to Pending,
/// where the change needs a decision of its own.
pub fn changed_after_approval(app: &InstanceApplication, now: Timestamp) -> InstanceApplicationStatus {
    let mut status = app.status.clone().unwrap_or_default();
    let approved = status
        .approved_generation
        .or(status.observed_generation)
        .unwrap_or_default();
    status.phase = Phase::Pending;
    status.approved_generation = None;
    status.instance_name = None;
    status.observed_generation = app.metadata.generation;
    conditions::set(
        &mut status.conditions,
        DECIDED,
        Status::False,
        "ChangedAfterApproval",
        format!(
            "the spec changed after generation {approved} was approved and before the VM was created; nothing was created, and the new spec needs a decision of its own"
        ),
        app.metadata.generation,
        now,
    );
    status
}

/// The status once the create job `job_id` ended without failing (`succeeded`, or
/// archived: Ganeti no longer knows it). `marked`: the instances Ganeti has that carry
/// the application's marker tag (see [`is_ours`]).
pub(super) fn job_ended(
    app: &InstanceApplication,
    job_id: u64,
    succeeded: bool,
    marked: &[Instance],
    prefix: &str,
    now: Timestamp,
) -> InstanceApplicationStatus {
    let ours: Vec<&Instance> = marked.iter().filter(|i| is_ours(app, i, prefix)).collect();
    match (ours.as_slice(), succeeded) {
        ([instance], _) => created(app, instance, now),
        ([], true) => failed_locally(
            app,
            "InstanceMissing",
            format!(
                "job {job_id} succeeded but Ganeti has no instance carrying this application's tags (removed meanwhile?)"
            ),
            now,
        ),
        ([], _) => failed_locally(
            app,
            "JobLost",
            format!("job {job_id} is no longer known to Ganeti and created no instance for this application"),
            now,
        ),
        (many, _) => failed_locally(
            app,
            "AmbiguousInstance",
            format!(
                "{} instances carry this application's tags ({}); an admin must sort out which is its VM",
                many.len(),
                many.iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            now,
        ),
    }
}

/// Before submitting again after a restart: the instance an earlier attempt's job made,
/// if one carries the application's tags (whatever its name).
pub(super) fn adopt(
    app: &InstanceApplication,
    marked: &[Instance],
    prefix: &str,
    now: Timestamp,
) -> Option<InstanceApplicationStatus> {
    if !marked.iter().any(|i| is_ours(app, i, prefix)) {
        return None;
    }
    let job_id = app.status.as_ref().and_then(|s| s.job_id).unwrap_or_default();
    Some(job_ended(app, job_id, false, marked, prefix, now))
}

pub(super) fn transition(app: &InstanceApplication) -> (InstanceApplicationStatus, Option<i64>) {
    let mut status = app.status.clone().unwrap_or_default();
    // The generation the status describes stays the approved one: spec edits after
    // the approval are not carried out.
    if status.observed_generation.is_none() {
        status.observed_generation = app.metadata.generation;
    }
    let generation = status.approved_generation.or(status.observed_generation);
    (status, generation)
}

/// The create job was submitted (or one found running under the application's name).
pub fn submitted(
    app: &InstanceApplication,
    job_id: u64,
    adopted: bool,
    now: Timestamp,
) -> InstanceApplicationStatus {
    let (mut status, generation) = transition(app);
    status.phase = Phase::Creating;
    status.job_id = Some(job_id);
    status.instance_name = Some(approved_name(app).to_string());
    let how = if adopted { "found running" } else { "submitted" };
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::False,
        "Creating",
        format!("Ganeti job {job_id} ({how}) creates the instance"),
        generation,
        now,
    );
    status
}

/// Approved on a cluster that is observed only: nothing is submitted; the application
/// stays Approved (its VM is created if the cluster becomes managed again) and says why.
/// `None`: the status already says it.
pub fn held_observed(
    app: &InstanceApplication,
    cluster: &str,
    now: Timestamp,
) -> Option<InstanceApplicationStatus> {
    let (mut status, generation) = transition(app);
    let (nothing, then) = if app.spec.adopts() {
        ("no owner tag is written", "its VM is adopted")
    } else {
        ("no instance is created", "its VM is created")
    };
    let message = format!(
        "{}: {nothing}; the application stays Approved and {then} once the cluster is managed (managementPolicy: Manage)",
        crate::api::cluster::observed_only_message(cluster)
    );
    let current = conditions::get(&status.conditions, INSTANCE_CREATED);
    if current.is_some_and(|c| c.reason == OBSERVED_ONLY && c.message == message) {
        return None;
    }
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::False,
        OBSERVED_ONLY,
        message,
        generation,
        now,
    );
    Some(status)
}

/// The reason of the `InstanceCreated` condition while the cluster is observed only.
pub const OBSERVED_ONLY: &str = "ClusterObservedOnly";

/// The VM exists: the instance the application's own job made (see [`is_ours`]).
pub(super) fn created(
    app: &InstanceApplication,
    instance: &Instance,
    now: Timestamp,
) -> InstanceApplicationStatus {
    let (mut status, generation) = transition(app);
    status.phase = Phase::Created;
    status.instance_name = Some(instance.name.clone());
    status.instance_uuid = Some(instance.uuid.clone()).filter(|u| !u.is_empty());
    status.primary_node = Some(instance.primary_node.clone()).filter(|n| !n.is_empty());
    status.ips = instance.ips.clone();
    status.ganeti_error = None;
    let at = instance
        .ctime
        .and_then(|t| Timestamp::from_duration(k8s_openapi::jiff::SignedDuration::from_secs_f64(t)).ok())
        .unwrap_or(now);
    status.created_time = Some(Time(at));
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::True,
        "Created",
        format!("instance {} runs on {}", instance.name, instance.primary_node),
        generation,
        now,
    );
    status
}

/// Ganeti refused or failed to create the VM.
pub fn failed(
    app: &InstanceApplication,
    failure: &GanetiFailure,
    now: Timestamp,
) -> InstanceApplicationStatus {
    let (mut status, generation) = transition(app);
    status.phase = Phase::Failed;
    status.instance_uuid = None;
    status.ganeti_error = Some(GanetiError {
        message: failure.message.clone(),
        code: failure.ecode.as_ref().map(|c| c.as_str().to_string()),
    });
    conditions::set(
        &mut status.conditions,
        INSTANCE_CREATED,
        Status::False,
        "CreateFailed",
        format!(
            "Ganeti could not create the instance: {failure}. To try again, file a new application (or an admin edits this one and decides again)."
        ),
        generation,
        now,
    );
    status
}

/// A failure the operator itself found (no Ganeti job), e.g. the name taken meanwhile.
pub fn failed_locally(
    app: &InstanceApplication,
    error_type: &str,
    message: String,
    now: Timestamp,
) -> InstanceApplicationStatus {
    failed(
        app,
        &GanetiFailure {
            error_type: error_type.to_string(),
            message,
            ecode: None,
        },
        now,
    )
}
