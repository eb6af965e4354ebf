//! Quotas, pure: ClusterQuota limits + what a subject holds on a cluster → a verdict.
//!
//! No IO: the caller hands in the quotas, the cluster's instances (from the inventory),
//! the InstanceApplications and who owns each instance (`owner_of`; the tag codec lives
//! elsewhere), and gets back limits, usage, a verdict or the status of a ClusterQuota.
//!
//! # Which limits apply ([`effective_limits`])
//! - A ClusterQuota without a subject is the default for everyone on its cluster; one
//!   with a subject overrides the default for that user or group only, and only for the
//!   limits it sets: the others fall back to the default. An absent limit is unlimited;
//!   no ClusterQuota at all means no limit.
//! - Quotas are per owner: a group-owned VM counts against the group's quota, a
//!   user-owned one against the user's. A user's groups' quotas do not add to, or cap,
//!   the user's own (one owner, one budget: nothing is counted twice).
//! - Several defaults on one cluster, or several overrides for one subject: per limit,
//!   the most restrictive (smallest) wins, whatever the order the objects come in; on a
//!   tie the source reported is the quota whose name sorts first. Taking the minimum is
//!   the only merge that lets no stray object grant more than an admin meant.
//! - A limit that is not a valid quantity (objects stored before the CRD's rules) is an
//!   error, [`QuotaError::InvalidLimit`], never "unlimited": the caller reports it and
//!   approves nothing on its strength (fail closed). A limit shadowed by an override
//!   that sets the same limit is never consulted, so it cannot block anything.
//!
//! # What counts as usage ([`usage`])
//! - Every instance the subject owns in Ganeti, running or not. Ganeti Web Manager
//!   counted only running VMs, and users overshot their quota by creating VMs while
//!   others were stopped and then starting them all; a stopped VM still holds its disk
//!   and can be started at any time without asking, so it holds its share of the quota.
//! - Plus every application of the subject that is approved but not yet created (phase
//!   `Approved` or `Creating`) and whose instance is not in the inventory yet, so two
//!   approvals in a row cannot together overshoot. Once the instance shows in the
//!   inventory it is counted as an instance only, never twice. An instance nobody owns
//!   by its tags, but which an approved application of this cluster names, belongs to
//!   that application's owner: a VM whose owner tags are not written yet still counts.
//! - An approved Adopt application holds the VM it adopts, found by the UUID recorded
//!   at its approval, from then on (before its owner tag is written); it never counts
//!   as a VM still to be created: the VM exists, or there is nothing to count.
//! - An approved application whose sizes cannot be read still counts as an instance and
//!   its vCPUs; its name is kept in [`Usage::uncountable`], and [`check`] then refuses
//!   anything that a memory or disk limit governs (fail closed).

mod check;
mod limits;
mod usage;

pub use check::{Exceeded, Request, Resize, Verdict, check, check_application, check_resize};
pub use limits::{EffectiveLimits, Limit, LimitKind, Source, effective_limits};
pub(crate) use usage::tally;
pub use usage::{
    MAX_STATUS_SUBJECTS, StatusUsage, Usage, status_usage, status_usage_of, usage, usage_by_subject,
};

use crate::api::quantity::QuantityError;

/// Why quotas could not be evaluated. Each means "do not approve": report it and retry
/// once the object is fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// A ClusterQuota's limit is not a valid quantity.
    #[error(
        "ClusterQuota {quota}: the {limit} limit is invalid ({source}); nothing is approved against it until it is fixed"
    )]
    InvalidLimit {
        quota: String,
        limit: LimitKind,
        source: QuantityError,
    },
    /// An application's own sizes are not valid quantities.
    #[error("InstanceApplication {application}: the {field} is invalid ({source})")]
    InvalidRequest {
        application: String,
        field: &'static str,
        source: QuantityError,
    },
    /// The instance an Adopt application names is not on its cluster.
    #[error("InstanceApplication {application}: the instance {instance} to adopt is not on the cluster")]
    NoInstance { application: String, instance: String },
    /// An application names no cluster (neither in spec nor in status), so no quota
    /// can be chosen for it.
    #[error("InstanceApplication {0} names no cluster yet")]
    NoCluster(String),
}

#[cfg(test)]
mod tests;
