//! What subjects hold on a cluster: instances in Ganeti plus approved applications not
//! yet created.

use super::check::Request;
use crate::api::application::{InstanceApplication, Phase};
use crate::api::common::Subject;
use crate::api::quantity::Bytes;
use crate::api::quota::{ClusterQuota, SubjectUsage};
use crate::inventory::Instance;
use std::collections::{BTreeMap, HashSet};

/// At most this many subjects in a default quota's status: the status must stay well
/// under the apiserver's object size limit however many users a cluster has.
pub const MAX_STATUS_SUBJECTS: usize = 1000;

/// What one subject holds on one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Instances, running or not, plus approved applications not yet created.
    pub instances: u64,
    pub vcpus: u64,
    pub memory: Bytes,
    pub disk: Bytes,
    /// Of `instances`, the approved applications not yet created.
    pub pending_instances: u64,
    /// Approved applications (`namespace/name`) whose memory or disk could not be read:
    /// counted as instances and vCPUs, but not in `memory`/`disk`.
    pub uncountable: Vec<String>,
}

impl Usage {
    pub fn get(&self, kind: super::LimitKind) -> u64 {
        use super::LimitKind::*;
        match kind {
            Instances => self.instances,
            Vcpus => self.vcpus,
            Memory => self.memory.0,
            Disk => self.disk.0,
        }
    }

    fn add(&mut self, vcpus: u64, memory: u64, disk: u64) {
        // Saturating: absurd inventories must not wrap around to "almost nothing used".
        self.instances = self.instances.saturating_add(1);
        self.vcpus = self.vcpus.saturating_add(vcpus);
        self.memory = Bytes(self.memory.0.saturating_add(memory));
        self.disk = Bytes(self.disk.0.saturating_add(disk));
    }
}

/// The GanetiCluster an application is (to be) created on: the one recorded in status
/// (an admin may have chosen it) before the one asked for.
pub(crate) fn application_cluster(app: &InstanceApplication) -> Option<&str> {
    app.status
        .as_ref()
        .and_then(|s| s.cluster.as_deref())
        .or(app.spec.cluster.as_deref())
}

/// The Ganeti instance name an application creates (or adopts).
pub(crate) fn application_instance(app: &InstanceApplication) -> &str {
    let asked = match &app.spec.instance {
        Some(instance) if app.spec.adopts() => instance,
        _ => &app.spec.hostname,
    };
    app.status
        .as_ref()
        .and_then(|s| s.instance_name.as_deref())
        .unwrap_or(asked)
}

/// The UUID of the VM an approved Adopt application holds (resolved at its approval).
fn adopted_uuid(app: &InstanceApplication) -> Option<&str> {
    app.spec
        .adopts()
        .then(|| app.status.as_ref()?.instance_uuid.as_deref())
        .flatten()
        .filter(|u| !u.is_empty())
}

fn phase(app: &InstanceApplication) -> Phase {
    app.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

fn mib(v: u64) -> u64 {
    v.saturating_mul(Bytes::MIB)
}

/// Usage of every subject owning something on `cluster`. `instances` are that cluster's
/// instances (its inventory); `applications` may span clusters (others are ignored).
pub fn usage_by_subject(
    cluster: &str,
    instances: &[Instance],
    applications: &[InstanceApplication],
    owner_of: impl Fn(&Instance) -> Option<Subject>,
) -> BTreeMap<Subject, Usage> {
    tally(cluster, instances, applications, owner_of)
}

/// [`usage_by_subject`] over any selection of applications (borrowed, not cloned).
pub(crate) fn tally<'a>(
    cluster: &str,
    instances: &[Instance],
    applications: impl IntoIterator<Item = &'a InstanceApplication>,
    owner_of: impl Fn(&Instance) -> Option<Subject>,
) -> BTreeMap<Subject, Usage> {
    let mut apps: Vec<&InstanceApplication> = applications
        .into_iter()
        .filter(|a| application_cluster(a) == Some(cluster))
        .collect();
    // Sorted so that, should two applications name one instance, the same one wins.
    apps.sort_by_cached_key(|a| a.key());

    // Ganeti names are host names: compare them case-insensitively.
    let present: HashSet<String> = instances.iter().map(|i| i.name.to_ascii_lowercase()).collect();
    let mut claimed: BTreeMap<String, &Subject> = BTreeMap::new();
    // An approved adoption holds its VM by UUID from the approval on, before the owner
    // tag is written (and never a VM that took its name since).
    let mut adopted: BTreeMap<&str, &Subject> = BTreeMap::new();
    for app in &apps {
        if !matches!(phase(app), Phase::Approved | Phase::Creating | Phase::Created) {
            continue;
        }
        if app.spec.adopts() {
            if let Some(uuid) = adopted_uuid(app) {
                adopted.entry(uuid).or_insert(&app.spec.owner);
            }
            continue;
        }
        claimed
            .entry(application_instance(app).to_ascii_lowercase())
            .or_insert(&app.spec.owner);
    }

    let mut out: BTreeMap<Subject, Usage> = BTreeMap::new();
    for inst in instances {
        let owner = owner_of(inst)
            .or_else(|| adopted.get(inst.uuid.as_str()).map(|s| (*s).clone()))
            .or_else(|| claimed.get(&inst.name.to_ascii_lowercase()).map(|s| (*s).clone()));
        if let Some(owner) = owner {
            out.entry(owner).or_default().add(
                u64::from(inst.vcpus),
                mib(inst.memory_mib),
                mib(inst.disk_mib),
            );
        }
    }
    for app in apps {
        // An adoption's VM exists: it counts through the instance above, or not at all.
        if app.spec.adopts()
            || !matches!(phase(app), Phase::Approved | Phase::Creating)
            || present.contains(&application_instance(app).to_ascii_lowercase())
        {
            continue;
        }
        let usage = out.entry(app.spec.owner.clone()).or_default();
        usage.pending_instances = usage.pending_instances.saturating_add(1);
        match Request::from_application(app) {
            Ok(r) => usage.add(r.vcpus, r.memory.0, r.disk.0),
            Err(_) => {
                usage.add(u64::from(app.spec.vcpus), 0, 0);
                usage.uncountable.push(app.key());
            }
        }
    }
    out
}

/// Usage of `subject` on `cluster`; see [`usage_by_subject`] for the inputs.
pub fn usage(
    cluster: &str,
    subject: &Subject,
    instances: &[Instance],
    applications: &[InstanceApplication],
    owner_of: impl Fn(&Instance) -> Option<Subject>,
) -> Usage {
    usage_by_subject(cluster, instances, applications, owner_of)
        .remove(subject)
        .unwrap_or_default()
}

/// What a ClusterQuota's status reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusUsage {
    /// Sorted by subject; at most [`MAX_STATUS_SUBJECTS`] entries.
    pub usage: Vec<SubjectUsage>,
    /// Subjects left out to stay within the bound.
    pub omitted: usize,
    /// Applications of the listed subjects whose sizes could not be read.
    pub uncountable: Vec<String>,
}

fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Usage per subject the quota governs: an override's subject (even when it holds
/// nothing), or, for a default, every subject owning instances or approved
/// applications on the quota's cluster. `instances` are that cluster's instances.
pub fn status_usage(
    quota: &ClusterQuota,
    instances: &[Instance],
    applications: &[InstanceApplication],
    owner_of: impl Fn(&Instance) -> Option<Subject>,
) -> StatusUsage {
    let all = usage_by_subject(&quota.spec.cluster, instances, applications, owner_of);
    status_usage_of(quota, &all)
}

/// [`status_usage`] from the usage of every subject on the quota's cluster
/// ([`usage_by_subject`]), computed once for all the quotas of a cluster.
pub fn status_usage_of(quota: &ClusterQuota, all: &BTreeMap<Subject, Usage>) -> StatusUsage {
    let none = Usage::default();
    let selected: Vec<(&Subject, &Usage)> = match &quota.spec.subject {
        Some(s) => vec![(s, all.get(s).unwrap_or(&none))],
        None => all.iter().collect(),
    };
    let omitted = selected.len().saturating_sub(MAX_STATUS_SUBJECTS);
    let mut out = StatusUsage {
        omitted,
        ..Default::default()
    };
    for (subject, u) in selected.into_iter().take(MAX_STATUS_SUBJECTS) {
        out.uncountable.extend(u.uncountable.iter().cloned());
        out.usage.push(SubjectUsage {
            subject: subject.clone(),
            instances: saturate(u.instances),
            vcpus: saturate(u.vcpus),
            memory: u.memory.to_string(),
            disk: u.disk.to_string(),
            pending_instances: saturate(u.pending_instances),
        });
    }
    out
}
