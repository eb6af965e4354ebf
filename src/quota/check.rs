//! Does one more VM fit? Limits + usage + request → verdict with a message for people.

use super::QuotaError;
use super::limits::{EffectiveLimits, LimitKind, effective_limits};
use super::usage::{Usage, application_cluster, tally};
use crate::api::application::{InstanceApplication, QuotaCheck};
use crate::api::common::Subject;
use crate::api::quantity::{Bytes, parse_bytes};
use crate::api::quota::ClusterQuota;
use crate::inventory::Instance;

/// What one new VM asks for (it always counts as one instance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    pub vcpus: u64,
    pub memory: Bytes,
    /// Sum of its disks.
    pub disk: Bytes,
}

impl Request {
    /// What an application asks for; an unreadable size is an error, not zero.
    pub fn from_application(app: &InstanceApplication) -> Result<Self, QuotaError> {
        let invalid = |field, source| QuotaError::InvalidRequest {
            application: app.key(),
            field,
            source,
        };
        let memory = parse_bytes(&app.spec.memory).map_err(|e| invalid("memory", e))?;
        let mut disk = 0u64;
        for d in &app.spec.disks {
            disk = disk.saturating_add(parse_bytes(&d.size).map_err(|e| invalid("disk size", e))?.0);
        }
        Ok(Self {
            vcpus: u64::from(app.spec.vcpus),
            memory,
            disk: Bytes(disk),
        })
    }

    /// What an existing VM holds: what adopting it adds to its new owner's usage.
    pub fn from_instance(instance: &Instance) -> Self {
        Self {
            vcpus: u64::from(instance.vcpus),
            memory: Bytes(instance.memory_mib.saturating_mul(Bytes::MIB)),
            disk: Bytes(instance.disk_mib.saturating_mul(Bytes::MIB)),
        }
    }

    fn get(&self, kind: LimitKind) -> u64 {
        match kind {
            LimitKind::Instances => 1,
            LimitKind::Vcpus => self.vcpus,
            LimitKind::Memory => self.memory.0,
            LimitKind::Disk => self.disk.0,
        }
    }
}

/// One limit a request would break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub limit: LimitKind,
    pub limit_value: u64,
    /// What the subject already uses.
    pub used: u64,
    pub requested: u64,
    /// The ClusterQuota that set the limit.
    pub quota: String,
    /// Usage could not be fully counted (an application's size is unreadable), so the
    /// limit is treated as exceeded rather than guessed.
    pub uncountable: bool,
}

/// The outcome of a quota check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub fits: bool,
    /// Empty when it fits.
    pub exceeded: Vec<Exceeded>,
    /// Which limits it exceeds, or what it leaves free.
    pub message: String,
}

impl Verdict {
    /// As recorded in an InstanceApplication's status.
    pub fn to_status(&self) -> QuotaCheck {
        QuotaCheck {
            fits: self.fits,
            message: self.message.clone(),
        }
    }
}

/// Whether `request` fits within `limits` on top of `usage`. Exactly at the limit fits.
pub fn check(limits: &EffectiveLimits, usage: &Usage, request: &Request) -> Verdict {
    let mut exceeded = Vec::new();
    let mut left = Vec::new();
    for kind in LimitKind::ALL {
        let Some(limit) = limits.get(kind) else {
            left.push(format!("{kind}: unlimited"));
            continue;
        };
        let used = usage.get(kind);
        let requested = request.get(kind);
        let total = used.saturating_add(requested);
        let uncountable =
            matches!(kind, LimitKind::Memory | LimitKind::Disk) && !usage.uncountable.is_empty();
        if total > limit.value || uncountable {
            exceeded.push(Exceeded {
                limit: kind,
                limit_value: limit.value,
                used,
                requested,
                quota: limit.source.quota.clone(),
                uncountable,
            });
        } else {
            left.push(format!("{kind}: {}", kind.format(limit.value - total)));
        }
    }
    let (subject, cluster) = (&limits.subject, &limits.cluster);
    let message = if exceeded.is_empty() {
        format!(
            "fits the quota of {subject} on cluster {cluster}; left after it: {}",
            left.join(", ")
        )
    } else {
        exceeded
            .iter()
            .map(|e| {
                if e.uncountable {
                    format!(
                        "the {} of {subject} on cluster {cluster} cannot be counted: approved applications {} \
                         have invalid sizes (ClusterQuota {})",
                        e.limit,
                        usage.uncountable.join(", "),
                        e.quota
                    )
                } else {
                    format!(
                        "{subject} would use {} of {} {} on cluster {cluster} (ClusterQuota {})",
                        e.limit.format(e.used.saturating_add(e.requested)),
                        e.limit.format(e.limit_value),
                        e.limit,
                        e.quota
                    )
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    Verdict {
        fits: exceeded.is_empty(),
        exceeded,
        message,
    }
}

/// Checks one application against its owner's quota on its cluster. `instances` are
/// that cluster's instances; an Adopt application asks for what its VM holds there. The application itself is left out of the usage (when it
/// is already approved and re-checked, its request must not count twice).
pub fn check_application(
    quotas: &[ClusterQuota],
    instances: &[Instance],
    applications: &[InstanceApplication],
    app: &InstanceApplication,
    owner_of: impl Fn(&Instance) -> Option<Subject>,
) -> Result<Verdict, QuotaError> {
    let key = app.key();
    let cluster = application_cluster(app).ok_or_else(|| QuotaError::NoCluster(key.clone()))?;
    let request = if app.spec.adopts() {
        // The VM to adopt as it is now, by the name the application gives.
        let name = app.spec.instance.as_deref().unwrap_or_default();
        let instance = instances
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| QuotaError::NoInstance {
                application: key.clone(),
                instance: name.to_string(),
            })?;
        Request::from_instance(instance)
    } else {
        Request::from_application(app)?
    };
    let limits = effective_limits(quotas, cluster, &app.spec.owner)?;
    let others = applications.iter().filter(|a| a.key() != key);
    let used = tally(cluster, instances, others, owner_of)
        .remove(&app.spec.owner)
        .unwrap_or_default();
    Ok(check(&limits, &used, &request))
}

/// A VM's new size, for [`check_resize`].
#[derive(Debug, Clone, Copy)]
pub struct Resize<'a> {
    /// Whose quota the VM counts against.
    pub owner: &'a Subject,
    /// The VM, by its Ganeti UUID.
    pub instance_uuid: &'a str,
    pub new_size: Request,
}

/// Checks a resize against the owner's quota on `cluster`: the owner's usage without
/// that VM, plus the VM at its new size. Pure.
pub fn check_resize(
    quotas: &[ClusterQuota],
    cluster: &str,
    instances: &[Instance],
    applications: &[InstanceApplication],
    resize: &Resize<'_>,
    owner_of: impl Fn(&Instance) -> Option<Subject>,
) -> Result<Verdict, QuotaError> {
    let limits = effective_limits(quotas, cluster, resize.owner)?;
    let others: Vec<Instance> = instances
        .iter()
        .filter(|i| i.uuid != resize.instance_uuid)
        .cloned()
        .collect();
    let used = tally(cluster, &others, applications, owner_of)
        .remove(resize.owner)
        .unwrap_or_default();
    Ok(check(&limits, &used, &resize.new_size))
}
