//! Which limits apply to one subject on one cluster, and where each came from.

use super::QuotaError;
use crate::api::common::Subject;
use crate::api::quantity::{Bytes, parse_bytes};
use crate::api::quota::{ClusterQuota, QuotaLimits};
use kube::ResourceExt;
use std::fmt;

/// One of the four things a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LimitKind {
    Instances,
    Vcpus,
    Memory,
    Disk,
}

impl LimitKind {
    pub const ALL: [LimitKind; 4] = [Self::Instances, Self::Vcpus, Self::Memory, Self::Disk];

    /// Formats a value of this kind for people: sizes as quantities, counts as numbers.
    pub fn format(self, value: u64) -> String {
        match self {
            Self::Memory | Self::Disk => Bytes(value).to_string(),
            Self::Instances | Self::Vcpus => value.to_string(),
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Instances => "instances",
            Self::Vcpus => "vCPUs",
            Self::Memory => "memory",
            Self::Disk => "disk",
        })
    }
}

/// The ClusterQuota a limit came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The ClusterQuota object's name.
    pub quota: String,
    /// Whether it is an override for the subject (else the cluster's default).
    pub is_override: bool,
}

/// One finite limit: instances and vCPUs as counts, memory and disk in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub value: u64,
    pub source: Source,
}

/// The limits that apply to one subject on one cluster; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveLimits {
    pub cluster: String,
    pub subject: Subject,
    pub instances: Option<Limit>,
    pub vcpus: Option<Limit>,
    pub memory: Option<Limit>,
    pub disk: Option<Limit>,
}

impl EffectiveLimits {
    /// No limit at all.
    pub fn unlimited(cluster: impl Into<String>, subject: Subject) -> Self {
        Self {
            cluster: cluster.into(),
            subject,
            instances: None,
            vcpus: None,
            memory: None,
            disk: None,
        }
    }

    pub fn get(&self, kind: LimitKind) -> Option<&Limit> {
        match kind {
            LimitKind::Instances => self.instances.as_ref(),
            LimitKind::Vcpus => self.vcpus.as_ref(),
            LimitKind::Memory => self.memory.as_ref(),
            LimitKind::Disk => self.disk.as_ref(),
        }
    }

    fn slot(&mut self, kind: LimitKind) -> &mut Option<Limit> {
        match kind {
            LimitKind::Instances => &mut self.instances,
            LimitKind::Vcpus => &mut self.vcpus,
            LimitKind::Memory => &mut self.memory,
            LimitKind::Disk => &mut self.disk,
        }
    }
}

/// A limit as written in a quota: `None` if absent, an error if unreadable.
fn read_limit(
    limits: &QuotaLimits,
    kind: LimitKind,
) -> Option<Result<u64, crate::api::quantity::QuantityError>> {
    match kind {
        LimitKind::Instances => limits.instances.map(|v| Ok(u64::from(v))),
        LimitKind::Vcpus => limits.vcpus.map(|v| Ok(u64::from(v))),
        LimitKind::Memory => limits.memory.as_deref().map(|s| parse_bytes(s).map(|b| b.0)),
        LimitKind::Disk => limits.disk.as_deref().map(|s| parse_bytes(s).map(|b| b.0)),
    }
}

/// The limits that apply to `subject` on `cluster`, given every ClusterQuota (of any
/// cluster; the others are ignored). See the module docs for the rules.
pub fn effective_limits(
    quotas: &[ClusterQuota],
    cluster: &str,
    subject: &Subject,
) -> Result<EffectiveLimits, QuotaError> {
    // Sorted by name so that ties, and the first error reported, do not depend on the
    // order the watch delivered the objects in.
    let mut applicable: Vec<(String, &ClusterQuota)> = quotas
        .iter()
        .filter(|q| q.spec.cluster == cluster && q.spec.subject.as_ref().is_none_or(|s| s == subject))
        .map(|q| (q.name_any(), q))
        .collect();
    applicable.sort_by(|a, b| a.0.cmp(&b.0));

    let mut out = EffectiveLimits::unlimited(cluster, subject.clone());
    for kind in LimitKind::ALL {
        let sets = |q: &ClusterQuota| read_limit(&q.spec.limits, kind).is_some();
        let overridden = applicable
            .iter()
            .any(|(_, q)| q.spec.subject.is_some() && sets(q));
        let mut best: Option<Limit> = None;
        for (name, q) in &applicable {
            if q.spec.subject.is_some() != overridden {
                continue;
            }
            let Some(value) = read_limit(&q.spec.limits, kind) else {
                continue;
            };
            let value = value.map_err(|source| QuotaError::InvalidLimit {
                quota: name.clone(),
                limit: kind,
                source,
            })?;
            // Strictly smaller only: on a tie the first name (sorted) stays the source.
            if best.as_ref().is_none_or(|b| value < b.value) {
                best = Some(Limit {
                    value,
                    source: Source {
                        quota: name.clone(),
                        is_override: overridden,
                    },
                });
            }
        }
        *out.slot(kind) = best;
    }
    Ok(out)
}
