//! Pure: what a GanetiCluster's status should say after a sync attempt, and whether
//! it needs writing at all.

use crate::api::cluster::{ClusterCapacity, GanetiCluster, GanetiClusterStatus, GwmStatus, NodeStatus};
use crate::api::common::SubjectKind;
use crate::api::conditions::{self, Status};
use crate::inventory::ClusterInventory;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;

/// Nodes listed in status at most: etcd objects are limited to ~1.5 MiB, and a
/// cluster with more nodes than this is summarised by the counts and capacity.
pub const MAX_NODES_IN_STATUS: usize = 1000;

/// Ganeti versions the operator speaks (RAPI v2 with create request v1).
pub const SUPPORTED_MAJOR_VERSIONS: &[&str] = &["2", "3"];

/// Why a sync failed, as the `Reachable` / `Ready` condition reasons say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    MissingSecret,
    /// The Secret lacks the label that marks it as RAPI credentials.
    UnlabelledSecret,
    InvalidSecret,
    /// `spec.insecure` without `--allow-insecure-rapi`.
    InsecureRefused,
    InvalidSpec,
    AuthFailed,
    Forbidden,
    TlsError,
    Unreachable,
    Timeout,
    Unavailable,
    BadResponse,
    UnsupportedVersion,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingSecret => "MissingSecret",
            Self::UnlabelledSecret => "SecretNotLabelled",
            Self::InvalidSecret => "InvalidSecret",
            Self::InsecureRefused => "InsecureNotAllowed",
            Self::InvalidSpec => "InvalidSpec",
            Self::AuthFailed => "AuthFailed",
            Self::Forbidden => "Forbidden",
            Self::TlsError => "TLSError",
            Self::Unreachable => "Unreachable",
            Self::Timeout => "Timeout",
            Self::Unavailable => "Unavailable",
            Self::BadResponse => "BadResponse",
            Self::UnsupportedVersion => "UnsupportedVersion",
        }
    }

    /// Whether the RAPI answered at all (an unsupported version still did).
    pub fn reachable(self) -> bool {
        matches!(self, Self::UnsupportedVersion)
    }
}

/// The result of one attempt to read a cluster.
#[derive(Debug, Clone)]
pub enum SyncOutcome<'a> {
    Synced(&'a ClusterInventory),
    Failed { reason: FailureReason, message: String },
}

/// Whether a Ganeti version string is one we support.
pub fn version_supported(version: &str) -> bool {
    SUPPORTED_MAJOR_VERSIONS
        .iter()
        .any(|major| version.split('.').next() == Some(*major))
}

/// The status after `outcome`, or `None` when the current status already says it all
/// (so an unchanged cluster costs no API server write). `lastSyncTime` alone is
/// refreshed only every `heartbeat`, for the same reason.
pub fn plan_status(
    cluster: &GanetiCluster,
    outcome: &SyncOutcome<'_>,
    now: Timestamp,
    heartbeat: SignedDuration,
) -> Option<GanetiClusterStatus> {
    let empty = GanetiClusterStatus::default();
    let current = cluster.status.as_ref().unwrap_or(&empty);
    let generation = cluster.metadata.generation;
    let mut next = current.clone();
    next.observed_generation = generation;
    next.management_policy = Some(cluster.spec.management_policy());
    let conds = &mut next.conditions;

    match outcome {
        SyncOutcome::Synced(inv) => {
            fill_from_inventory(&mut next, inv);
            gwm_status(&mut next, inv, generation, now);
            let conds = &mut next.conditions;
            conditions::set(
                conds,
                "Reachable",
                Status::True,
                "Synced",
                "the Remote API answered",
                generation,
                now,
            );
            conditions::set(
                conds,
                "Ready",
                Status::True,
                "Synced",
                format!(
                    "Ganeti {} with {} nodes and {} instances{}",
                    inv.facts.software_version,
                    inv.nodes.len(),
                    inv.instances.len(),
                    if cluster.spec.observed_only() {
                        "; observed only (managementPolicy: Observe): nothing is written to it"
                    } else {
                        ""
                    }
                ),
                generation,
                now,
            );
        }
        SyncOutcome::Failed { reason, message } => {
            let reachable = if reason.reachable() {
                (Status::True, "Synced", "the Remote API answered")
            } else {
                (Status::False, reason.as_str(), message.as_str())
            };
            conditions::set(
                conds,
                "Reachable",
                reachable.0,
                reachable.1,
                reachable.2,
                generation,
                now,
            );
            conditions::set(
                conds,
                "Ready",
                Status::False,
                reason.as_str(),
                message.clone(),
                generation,
                now,
            );
        }
    }

    let conds = &mut next.conditions;
    if cluster.spec.insecure == Some(true) {
        conditions::set(
            conds,
            "InsecureTransport",
            Status::True,
            "InsecureFlagSet",
            "TLS certificate checks are off for this cluster (spec.insecure): use a CA bundle in production",
            generation,
            now,
        );
    } else {
        conditions::remove(conds, "InsecureTransport");
    }

    let synced = matches!(outcome, SyncOutcome::Synced(_));
    let stale_heartbeat = current
        .last_sync_time
        .as_ref()
        .is_none_or(|t| now.duration_since(t.0) >= heartbeat);
    if synced && (next != *current || stale_heartbeat) {
        next.last_sync_time = Some(Time(now));
    }
    (next != *current).then_some(next)
}

/// The GWM id map's figures and the `GwmIdMap` condition: present when the cluster
/// names a map, or when tags name ids that no map maps (so an admin migrating from GWM
/// learns that they need one).
fn gwm_status(
    status: &mut GanetiClusterStatus,
    inv: &ClusterInventory,
    generation: Option<i64>,
    now: Timestamp,
) {
    let mut unmapped = inv.unmapped_gwm_tags();
    let example = unmapped.next();
    let count = example.map_or(0, |_| 1 + unmapped.count());
    let setting = &inv.gwm;
    let conds = &mut status.conditions;
    if setting.id_map.is_none() && count == 0 {
        status.gwm = None;
        conditions::remove(conds, "GwmIdMap");
        return;
    }
    let ids = setting.ids.as_deref();
    status.gwm = Some(GwmStatus {
        id_map: ids.and(setting.id_map.clone()),
        mapped_users: ids.map_or(0, |m| m.len(SubjectKind::User)) as u32,
        mapped_groups: ids.map_or(0, |m| m.len(SubjectKind::Group)) as u32,
        unmapped_id_tags: count as u32,
    });
    let unmapped_note = match example {
        Some(tag) => format!("; {count} tags name ids it does not map and grant nothing (such as {tag})"),
        None => String::new(),
    };
    let (state, reason, message) = match (&setting.id_map, ids, &setting.problem) {
        (_, _, Some((reason, message))) => (Status::False, *reason, format!("{message}{unmapped_note}")),
        (Some(name), Some(m), None) => (
            Status::True,
            "Loaded",
            format!(
                "ConfigMap {name} maps {} GWM user ids and {} group ids{}{unmapped_note}",
                m.len(SubjectKind::User),
                m.len(SubjectKind::Group),
                if setting.write_ids {
                    "; tags are written with ids (writeIds)"
                } else {
                    ""
                },
            ),
        ),
        _ => (
            Status::False,
            "NoIdMap",
            format!(
                "{count} tags name Ganeti Web Manager ids (such as {}): they grant nothing until spec.gwm.idMap maps them",
                example.unwrap_or_default()
            ),
        ),
    };
    conditions::set(conds, "GwmIdMap", state, reason, message, generation, now);
}

/// Free memory and disk move with every sync (the hosts' page cache, logs). Status
/// rounds them down to 1% of the total, so it is rewritten on meaningful change only;
/// the metrics carry the exact values.
fn coarse_free(free_mib: u64, total_mib: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    let step = (total_mib / 100).max(1);
    (free_mib.min(total_mib.max(free_mib)) / step) * step * MIB
}

fn fill_from_inventory(status: &mut GanetiClusterStatus, inv: &ClusterInventory) {
    status.cluster_name = Some(inv.facts.name.clone());
    status.software_version = Some(inv.facts.software_version.clone());
    status.master = Some(inv.facts.master.clone());
    status.hypervisors = inv.facts.enabled_hypervisors.clone();
    status.node_count = Some(inv.nodes.len() as u32);
    status.instance_count = Some(inv.instances.len() as u32);
    const MIB: u64 = 1 << 20;
    let mut capacity = ClusterCapacity::default();
    for n in inv.nodes.iter().filter(|n| !n.offline && !n.drained) {
        capacity.memory_total_bytes += n.memory_total_mib * MIB;
        capacity.memory_free_bytes += coarse_free(n.memory_free_mib, n.memory_total_mib);
        capacity.disk_total_bytes += n.disk_total_mib * MIB;
        capacity.disk_free_bytes += coarse_free(n.disk_free_mib, n.disk_total_mib);
        capacity.cpus += n.cpus;
    }
    status.capacity = Some(capacity);
    let mut nodes: Vec<NodeStatus> = inv
        .nodes
        .iter()
        .map(|n| NodeStatus {
            name: n.name.clone(),
            role: n.role.as_str().to_string(),
            memory_total_bytes: n.memory_total_mib * MIB,
            memory_free_bytes: coarse_free(n.memory_free_mib, n.memory_total_mib),
            disk_total_bytes: n.disk_total_mib * MIB,
            disk_free_bytes: coarse_free(n.disk_free_mib, n.disk_total_mib),
            cpus: n.cpus,
            primary_instances: n.primary_instances,
            secondary_instances: n.secondary_instances,
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.truncate(MAX_NODES_IN_STATUS);
    status.nodes = nodes;
    // Counted by borrowed name: a String per instance would be 10k allocations.
    let mut by_status: BTreeMap<&str, u32> = BTreeMap::new();
    for i in &inv.instances {
        *by_status.entry(i.status.as_str()).or_insert(0) += 1;
    }
    status.instances_by_status = by_status.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    status.jobs_by_status = inv.jobs_by_status.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cluster::GanetiClusterSpec;
    use crate::inventory::{ClusterFacts, Instance, Node, NodeRole};

    fn cluster(insecure: bool) -> GanetiCluster {
        let mut c = GanetiCluster::new(
            "prod",
            serde_json::from_value::<GanetiClusterSpec>(serde_json::json!({
                "rapiUrl": "https://c:5080", "credentialsSecret": {"name": "s"}, "insecure": insecure
            }))
            .unwrap(),
        );
        c.metadata.generation = Some(3);
        c
    }

    fn inv(drained: bool) -> ClusterInventory {
        ClusterInventory {
            cluster: "prod".into(),
            facts: ClusterFacts {
                name: "cluster.example".into(),
                master: "n1".into(),
                software_version: "3.0.2".into(),
                enabled_hypervisors: vec!["kvm".into()],
                default_hypervisor: "kvm".into(),
            },
            nodes: vec![
                Node {
                    name: "n2".into(),
                    role: if drained {
                        NodeRole::Drained
                    } else {
                        NodeRole::Regular
                    },
                    drained,
                    memory_total_mib: 1024,
                    cpus: 4,
                    ..Default::default()
                },
                Node {
                    name: "n1".into(),
                    role: NodeRole::Master,
                    memory_total_mib: 2048,
                    cpus: 8,
                    ..Default::default()
                },
            ],
            instances: vec![
                Instance {
                    name: "a".into(),
                    status: "running".into(),
                    ..Default::default()
                },
                Instance {
                    name: "b".into(),
                    status: "ADMIN_down".into(),
                    ..Default::default()
                },
                Instance {
                    name: "c".into(),
                    status: "running".into(),
                    ..Default::default()
                },
            ],
            jobs_by_status: [("success".into(), 7)].into(),
            reachable: true,
            read_started: None,
            tag_prefix: "GANETI_WEB_MANAGER".into(),
            gwm: Default::default(),
            observed: false,
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    const HEARTBEAT: SignedDuration = SignedDuration::from_secs(300);

    #[test]
    fn the_policy_in_force_is_shown_and_an_observed_cluster_says_so() {
        use crate::api::cluster::ManagementPolicy;
        let mut c = cluster(false);
        let inventory = inv(false);
        let status = plan_status(&c, &SyncOutcome::Synced(&inventory), t(1000), HEARTBEAT).unwrap();
        assert_eq!(status.management_policy, Some(ManagementPolicy::Manage));
        c.spec.management_policy = Some(ManagementPolicy::Observe);
        let status = plan_status(&c, &SyncOutcome::Synced(&inventory), t(1000), HEARTBEAT).unwrap();
        assert_eq!(status.management_policy, Some(ManagementPolicy::Observe));
        assert!(
            conditions::is_true(&status.conditions, "Ready"),
            "observed is no failure"
        );
        let ready = conditions::get(&status.conditions, "Ready").unwrap();
        assert!(
            ready
                .message
                .contains("observed only (managementPolicy: Observe)"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn a_sync_fills_status_and_a_second_identical_sync_writes_nothing() {
        let mut c = cluster(false);
        let inventory = inv(false);
        let status =
            plan_status(&c, &SyncOutcome::Synced(&inventory), t(1000), HEARTBEAT).expect("first write");
        assert_eq!(status.node_count, Some(2));
        assert_eq!(status.nodes[0].name, "n1", "sorted");
        assert_eq!(status.instances_by_status.get("running"), Some(&2));
        assert_eq!(status.capacity.as_ref().unwrap().cpus, 12);
        assert_eq!(status.observed_generation, Some(3));
        assert!(conditions::is_true(&status.conditions, "Ready"));
        assert_eq!(status.last_sync_time, Some(Time(t(1000))));
        c.status = Some(status);
        assert_eq!(
            plan_status(&c, &SyncOutcome::Synced(&inventory), t(1030), HEARTBEAT),
            None
        );
        // ...until the heartbeat is due.
        let hb = plan_status(&c, &SyncOutcome::Synced(&inventory), t(1300), HEARTBEAT).expect("heartbeat");
        assert_eq!(hb.last_sync_time, Some(Time(t(1300))));
    }

    #[test]
    fn draining_a_node_changes_role_and_capacity() {
        let mut c = cluster(false);
        c.status = plan_status(&c, &SyncOutcome::Synced(&inv(false)), t(1000), HEARTBEAT);
        let drained = inv(true);
        let status = plan_status(&c, &SyncOutcome::Synced(&drained), t(1030), HEARTBEAT).expect("changed");
        assert_eq!(status.nodes[1].role, "drained");
        assert_eq!(
            status.capacity.unwrap().cpus,
            8,
            "drained nodes do not count as capacity"
        );
    }

    #[test]
    fn a_failure_keeps_the_last_inventory_and_says_why() {
        let mut c = cluster(false);
        c.status = plan_status(&c, &SyncOutcome::Synced(&inv(false)), t(1000), HEARTBEAT);
        let failed = SyncOutcome::Failed {
            reason: FailureReason::AuthFailed,
            message: "401 from RAPI".into(),
        };
        let status = plan_status(&c, &failed, t(1030), HEARTBEAT).expect("changed");
        let reachable = conditions::get(&status.conditions, "Reachable").unwrap();
        assert_eq!(
            (reachable.status.as_str(), reachable.reason.as_str()),
            ("False", "AuthFailed")
        );
        assert!(!conditions::is_true(&status.conditions, "Ready"));
        assert_eq!(status.node_count, Some(2), "last known inventory stays");
        assert_eq!(
            status.last_sync_time,
            Some(Time(t(1000))),
            "a failed sync is not a sync"
        );
        c.status = Some(status);
        assert_eq!(
            plan_status(&c, &failed, t(1060), HEARTBEAT),
            None,
            "same failure, no write"
        );
    }

    #[test]
    fn unsupported_version_is_reachable_but_not_ready() {
        let c = cluster(false);
        let out = SyncOutcome::Failed {
            reason: FailureReason::UnsupportedVersion,
            message: "Ganeti 1.2".into(),
        };
        let status = plan_status(&c, &out, t(1), HEARTBEAT).unwrap();
        assert!(conditions::is_true(&status.conditions, "Reachable"));
        assert_eq!(
            conditions::get(&status.conditions, "Ready").unwrap().reason,
            "UnsupportedVersion"
        );
        assert!(version_supported("3.0.2") && version_supported("2.16.0") && !version_supported("1.2"));
    }

    #[test]
    fn free_space_is_rounded_to_a_percent_of_the_total() {
        assert_eq!(coarse_free(1234, 10_000), 1200 << 20);
        assert_eq!(coarse_free(1299, 10_000), 1200 << 20);
        assert_eq!(coarse_free(5, 0), 5 << 20, "no total known: exact");
    }

    #[test]
    fn insecure_clusters_carry_a_warning_condition() {
        let c = cluster(true);
        let status = plan_status(&c, &SyncOutcome::Synced(&inv(false)), t(1), HEARTBEAT).unwrap();
        assert!(conditions::is_true(&status.conditions, "InsecureTransport"));
    }
}
