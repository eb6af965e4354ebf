//! What an InstanceApplication needs next, decided without IO: validation, quota,
//! approval, the create request, each phase transition's status, and each step of creating
//! the VM: what to store, to say and to wait for ([`after_lookup`], [`after_job`]).
//!
//! Phases: Pending → Approved → Creating → Created, or Rejected, or Failed. A new spec
//! generation re-evaluates a Pending, Rejected or Failed application from scratch.
//!
//! # An approval is bound to what was approved
//! A decision counts for the spec generation it was made on ([`decision_in_force`]):
//! `status.decided` records it with the generation the operator first saw it on, and a
//! later spec change under the same decision leaves the application waiting for a new
//! one (an admin sets the decision again, with a new verdict or reason). A rejection
//! stands all the same. The approved generation is recorded (`status.approvedGeneration`)
//! and the VM is created from that generation only: a spec that changed between the
//! approval and the create call goes back to Pending ([`changed_after_approval`]). So an
//! edited Failed application is tried again only on a new decision, or when its
//! applicant may approve it themselves within quota.
//!
//! Admission refuses a non-admin's spec change once a decision exists (they may delete
//! the application and file a new one); this is the second line, for an admission policy
//! that is missing and for admins' own edits.
//!
//! # Which VM is the application's
//! The create request carries the owner tag and a marker tag naming the application's
//! UID ([`marker_tag`]). Only the application's own create job makes an instance with
//! both, so that is what adoption after a crash and the end of the job look for
//! ([`after_lookup`], [`after_job`]); never an instance found by the current
//! `spec.hostname`.
//! Its UUID is recorded (`status.instanceUUID`).
//!
//! # Adopting an existing VM
//! `spec.mode: Adopt` asks for an owner for a VM that has none; see [`adopt`] for what
//! its approval means and how its one tag job is written.

mod adopt;
mod create;
mod evaluate;
mod mail;
mod status;
mod steps;
mod validate;

pub use adopt::{
    ADOPTED, ADOPTING, Adopt, Seen, adopt_after_job, adopt_reason, adopt_step, after_tag, is_tag_job,
};
pub use create::{
    approved_name, create_reason, create_request, is_ours, marker_tag, owner_tag, spec_is_approved, ssh_keys,
};
pub use evaluate::evaluate;
pub use mail::{MailKind, mail_due, mail_text, notified};
pub use status::{OBSERVED_ONLY, changed_after_approval, failed, failed_locally, held_observed, submitted};
pub use steps::{
    Follow, Found, JOB_POLL, JOB_POLL_MAX, JobOutcome, Step, Submission, Submit, after_create, after_job,
    after_lookup, create_job_summary, held_on_observed, poll_delay,
};

use crate::api::application::{Decision, InstanceApplication, InstanceApplicationStatus, Phase};
use crate::api::cluster::GanetiClusterSpec;
use crate::api::quota::ClusterQuota;
use crate::inventory::ClusterInventory;
use k8s_openapi::jiff::Timestamp;

/// Condition: an admin (or policy) decided, and what.
pub const DECIDED: &str = "Decided";
/// Condition: the cluster exists, is ready, and allows what the application asks for.
pub const VALIDATED: &str = "Validated";
/// Condition: the application does not fit its owner's quota.
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// Condition: the VM exists in Ganeti.
pub const INSTANCE_CREATED: &str = "InstanceCreated";
/// Condition: the applicant was mailed about the phase named by its reason.
pub const APPLICANT_NOTIFIED: &str = "ApplicantNotified";

/// What is known of the cluster an application names.
#[derive(Debug, Clone, Copy)]
pub enum ClusterView<'a> {
    /// Neither the application nor an admin chose a cluster yet.
    Unchosen,
    Missing(&'a str),
    NotReady {
        name: &'a str,
        message: &'a str,
    },
    Ready {
        name: &'a str,
        spec: &'a GanetiClusterSpec,
        inventory: &'a ClusterInventory,
        catalog: &'a Catalog,
    },
}

/// What a cluster offers, read from Ganeti when an application is validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// OS definitions valid on every node, with variants.
    pub operating_systems: Vec<String>,
    /// Enabled disk templates; the first is Ganeti's default.
    pub disk_templates: Vec<String>,
}

/// Everything evaluating a Pending application needs.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    pub app: &'a InstanceApplication,
    pub cluster: ClusterView<'a>,
    pub quotas: &'a [ClusterQuota],
    /// Every application (all namespaces), for the usage approved ones hold.
    pub applications: &'a [InstanceApplication],
    /// The applicant holds `clusters.createVm` on the cluster: within quota, no admin
    /// needs to approve.
    pub may_self_approve: bool,
    pub now: Timestamp,
}

/// Something for people to see on the application (a Kubernetes Event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The outcome of evaluating a Pending application.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub status: InstanceApplicationStatus,
    /// Approved now: the create job may be submitted once this status is stored.
    pub approved: bool,
    pub note: Option<Note>,
}

pub fn phase(app: &InstanceApplication) -> Phase {
    app.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The decision an evaluation acts on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InForce<'a> {
    /// No decision (an applicant holding `clusters.createVm` may approve themselves).
    None,
    /// Made on the current spec (or first seen on it).
    Fresh(&'a Decision),
    /// Made on an earlier generation of a spec that changed since.
    Stale { decision: &'a Decision, generation: i64 },
}

/// The decision that applies to the current spec: see the module docs.
pub fn decision_in_force(app: &InstanceApplication) -> InForce<'_> {
    let Some(decision) = &app.spec.decision else {
        return InForce::None;
    };
    let recorded = app.status.as_ref().and_then(|s| s.decided.as_ref());
    match recorded {
        Some(r) if &r.decision == decision && Some(r.generation) != app.metadata.generation => {
            InForce::Stale {
                decision,
                generation: r.generation,
            }
        }
        _ => InForce::Fresh(decision),
    }
}

/// Whether the application is (re-)evaluated: it waits in Pending, or a Rejected or
/// Failed one was edited since its status was written.
pub fn needs_evaluation(app: &InstanceApplication) -> bool {
    let Some(status) = &app.status else { return true };
    match status.phase {
        Phase::Pending => true,
        Phase::Rejected | Phase::Failed => status.observed_generation != app.metadata.generation,
        Phase::Approved | Phase::Creating | Phase::Created => false,
    }
}

fn applicant(app: &InstanceApplication) -> &str {
    app.spec.applicant.as_deref().unwrap_or("(unknown)")
}

fn decider(app: &InstanceApplication) -> &str {
    app.spec
        .decision
        .as_ref()
        .and_then(|d| d.decided_by.as_deref())
        .unwrap_or("an admin")
}

#[cfg(test)]
mod tests;
