//! Pure: every ClusterQuota + the clusters as last read + the applications -> the
//! status each quota should show (only where it differs from the stored one) and the
//! quota metrics.

use crate::api::application::InstanceApplication;
use crate::api::common::{Subject, SubjectKind};
use crate::api::conditions::{self, Status};
use crate::api::quota::{ClusterQuota, ClusterQuotaStatus};
use crate::inventory::ClusterInventory;
use crate::metrics::QuotaSeries;
use crate::quota::{self, EffectiveLimits, LimitKind, QuotaError, Usage};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the plan is made from.
pub struct Input<'a> {
    /// Each as stored, or with the status we last wrote when the cache lags behind it.
    pub quotas: &'a [Arc<ClusterQuota>],
    /// The names of the GanetiClusters that exist.
    pub clusters: &'a BTreeSet<String>,
    pub inventories: &'a [Arc<ClusterInventory>],
    pub applications: &'a [Arc<InstanceApplication>],
    pub now: Timestamp,
}

/// A status to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub quota: String,
    /// The resourceVersion the status was planned from.
    pub planned_from: String,
    pub status: ClusterQuotaStatus,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub writes: Vec<Write>,
    pub series: Vec<QuotaSeries>,
}

/// Condition reasons, CamelCase as Kubernetes spells them.
pub mod reason {
    pub const FOUND: &str = "ClusterFound";
    pub const NOT_FOUND: &str = "ClusterNotFound";
    pub const NOT_READ: &str = "ClusterNotRead";
    pub const UNREACHABLE: &str = "ClusterUnreachable";
    pub const INVALID_LIMIT: &str = "InvalidLimit";
    pub const COMPUTED: &str = "UsageComputed";
}

pub fn plan(input: &Input<'_>) -> Plan {
    let all: Vec<ClusterQuota> = input.quotas.iter().map(|q| (**q).clone()).collect();
    // One tally per cluster, shared by all its quotas.
    let mut tallies: BTreeMap<&str, BTreeMap<Subject, Usage>> = BTreeMap::new();
    let mut out = Plan::default();
    for q in input.quotas {
        let cluster = q.spec.cluster.as_str();
        let inventory = input.inventories.iter().find(|i| i.cluster == cluster);
        let usage = inventory.map(|inv| {
            &*tallies.entry(cluster).or_insert_with(|| {
                quota::tally(
                    cluster,
                    &inv.instances,
                    input.applications.iter().map(|a| &**a),
                    |i| inv.owner_of(i),
                )
            })
        });
        let view = match (input.clusters.contains(cluster), inventory, usage) {
            (false, _, _) => View::Missing,
            (true, Some(inv), Some(usage)) => View::Read {
                reachable: inv.reachable,
                usage,
            },
            _ => View::NotRead,
        };
        let planned = quota_status(q, &all, &view, input.now);
        if let View::Read { usage, .. } = &view {
            out.series.extend(series(q, &all, &planned, usage));
        }
        if q.status.as_ref() != Some(&planned) {
            out.writes.push(Write {
                quota: q.name_any(),
                planned_from: q.resource_version().unwrap_or_default(),
                status: planned,
            });
        }
    }
    out
}

/// What is known of a quota's cluster.
enum View<'a> {
    /// No GanetiCluster of that name.
    Missing,
    /// It exists, but the operator has no inventory of it.
    NotRead,
    Read {
        reachable: bool,
        usage: &'a BTreeMap<Subject, Usage>,
    },
}

/// The limits in force for the quota's subject, or for a default's subjects without an
/// override (the smallest of every default on the cluster).
fn limits_in_force(q: &ClusterQuota, all: &[ClusterQuota]) -> Result<EffectiveLimits, QuotaError> {
    match &q.spec.subject {
        Some(s) => quota::effective_limits(all, &q.spec.cluster, s),
        None => {
            let defaults: Vec<ClusterQuota> =
                all.iter().filter(|d| d.spec.subject.is_none()).cloned().collect();
            // No overrides among them: any subject gets the defaults.
            quota::effective_limits(&defaults, &q.spec.cluster, &Subject::user(""))
        }
    }
}

/// The status `q` should show; its conditions keep their transition times.
fn quota_status(
    q: &ClusterQuota,
    all: &[ClusterQuota],
    view: &View<'_>,
    now: Timestamp,
) -> ClusterQuotaStatus {
    let generation = q.metadata.generation;
    let mut status = ClusterQuotaStatus {
        conditions: q
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        observed_generation: generation,
        ..Default::default()
    };
    let limits = limits_in_force(q, all);
    status.limit = limits
        .as_ref()
        .ok()
        .map(|l| limit_summary(l, q.spec.subject.is_none()));
    let cluster = &q.spec.cluster;
    let found = !matches!(view, View::Missing);
    let (ready, why, message) = match view {
        View::Missing => (
            false,
            reason::NOT_FOUND,
            format!("no GanetiCluster {cluster:?}: nothing to count"),
        ),
        View::NotRead => (
            false,
            reason::NOT_READ,
            format!("the operator has not read GanetiCluster {cluster:?} yet (see its status)"),
        ),
        View::Read { reachable, usage } => {
            let shown = quota::status_usage_of(q, usage);
            status.used = Some(used_summary(q, usage, &shown));
            let mut notes = Vec::new();
            if shown.omitted > 0 {
                notes.push(format!(
                    "{} more subjects are left out of status.usage (at most {} are listed)",
                    shown.omitted,
                    quota::MAX_STATUS_SUBJECTS
                ));
            }
            if !shown.uncountable.is_empty() {
                notes.push(format!(
                    "the memory or disk of approved applications {} cannot be read and is not counted",
                    shown.uncountable.join(", ")
                ));
            }
            status.usage = shown.usage;
            let (ready, why, lead) = match (&limits, reachable) {
                (Err(e), _) => (false, reason::INVALID_LIMIT, e.to_string()),
                (Ok(_), false) => (
                    false,
                    reason::UNREACHABLE,
                    format!("GanetiCluster {cluster:?} is unreachable: usage as of its last read"),
                ),
                (Ok(_), true) => (
                    true,
                    reason::COMPUTED,
                    "usage counts the cluster's instances and approved applications not yet created"
                        .to_string(),
                ),
            };
            notes.insert(0, lead);
            (ready, why, notes.join("; "))
        }
    };
    let (found_reason, found_message) = if found {
        (reason::FOUND, String::new())
    } else {
        (reason::NOT_FOUND, format!("no GanetiCluster {cluster:?}"))
    };
    let conds = &mut status.conditions;
    conditions::set(
        conds,
        "ClusterFound",
        Status::from(found),
        found_reason,
        found_message,
        generation,
        now,
    );
    conditions::set(conds, "Ready", Status::from(ready), why, message, generation, now);
    status
}

fn sizes(u: &Usage) -> String {
    format!(
        "instances {}, vCPUs {}, memory {}, disk {}",
        u.instances, u.vcpus, u.memory, u.disk
    )
}

/// The `Used` column: one subject's usage, or a default's subject count and total.
fn used_summary(q: &ClusterQuota, usage: &BTreeMap<Subject, Usage>, shown: &quota::StatusUsage) -> String {
    let pending = |u: &Usage| match u.pending_instances {
        0 => String::new(),
        n => format!(" ({n} pending)"),
    };
    match &q.spec.subject {
        Some(s) => {
            let u = usage.get(s).cloned().unwrap_or_default();
            format!("{}{}", sizes(&u), pending(&u))
        }
        None => {
            let mut total = Usage::default();
            for u in usage.values() {
                total.instances += u.instances;
                total.vcpus += u.vcpus;
                total.memory.0 = total.memory.0.saturating_add(u.memory.0);
                total.disk.0 = total.disk.0.saturating_add(u.disk.0);
                total.pending_instances += u.pending_instances;
            }
            let subjects = shown.usage.len() + shown.omitted;
            format!("{subjects} subjects: {}{}", sizes(&total), pending(&total))
        }
    }
}

/// The `Limit` column: the finite limits in force, `unlimited` if none; `each:` for a
/// default (every subject has its own budget).
fn limit_summary(l: &EffectiveLimits, default: bool) -> String {
    let parts: Vec<String> = LimitKind::ALL
        .iter()
        .filter_map(|k| {
            l.get(*k)
                .map(|lim| format!("{} {}", resource_name(*k), k.format(lim.value)))
        })
        .collect();
    let text = if parts.is_empty() {
        "unlimited".to_string()
    } else {
        parts.join(", ")
    };
    if default { format!("each: {text}") } else { text }
}

fn resource_name(k: LimitKind) -> &'static str {
    match k {
        LimitKind::Instances => "instances",
        LimitKind::Vcpus => "vCPUs",
        LimitKind::Memory => "memory",
        LimitKind::Disk => "disk",
    }
}

/// The metric label of a resource.
fn resource_label(k: LimitKind) -> &'static str {
    match k {
        LimitKind::Instances => "instances",
        LimitKind::Vcpus => "vcpus",
        LimitKind::Memory => "memory",
        LimitKind::Disk => "disk",
    }
}

/// The quota's figures for the subjects its status lists, each with the limit in force
/// for that subject (an override's, where one exists).
fn series(
    q: &ClusterQuota,
    all: &[ClusterQuota],
    status: &ClusterQuotaStatus,
    usage: &BTreeMap<Subject, Usage>,
) -> Vec<QuotaSeries> {
    let none = Usage::default();
    let mut out = Vec::new();
    for row in &status.usage {
        let u = usage.get(&row.subject).unwrap_or(&none);
        let limits = match &q.spec.subject {
            Some(_) => limits_in_force(q, all).ok(),
            None => quota::effective_limits(all, &q.spec.cluster, &row.subject).ok(),
        };
        for kind in LimitKind::ALL {
            out.push(QuotaSeries {
                cluster: q.spec.cluster.clone(),
                quota: q.name_any(),
                subject_kind: match row.subject.kind {
                    SubjectKind::User => "User",
                    SubjectKind::Group => "Group",
                },
                subject: row.subject.name.clone(),
                resource: resource_label(kind),
                used: u.get(kind),
                limit: limits.as_ref().and_then(|l| l.get(kind)).map(|l| l.value),
            });
        }
    }
    out
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
