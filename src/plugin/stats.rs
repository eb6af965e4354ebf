//! `kubectl ganeti stats`: the service statistics dashboard as tables, for admins without
//! Grafana. Applications by cluster and phase with the times from filing to decision and
//! to VM (the same figures `ganeti_applications` and the `_seconds` histograms export),
//! and VMs and resources per owner and cluster (the VMs the caller may list: all, for an
//! admin).

use super::client::{About, INSTANCES, explain, get};
use super::instance::{GanetiInstance, InstanceList};
use super::list::{aligned, mib};
use crate::api::InstanceApplication;
use crate::api::application::Phase;
use crate::metrics::applications::{cluster_of, phase_name, waits};
use kube::api::{Api, ListParams};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Per cluster (empty: not assigned yet).
    pub applications: BTreeMap<String, ClusterApplications>,
    /// Per `(cluster, owner)`, the owner as `User:alice`, `Group:team`, or empty.
    pub owners: Vec<OwnerUse>,
}

#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterApplications {
    pub by_phase: BTreeMap<&'static str, u64>,
    /// Seconds from filing to the decision in force, of each decided application.
    pub decision_seconds: Vec<u64>,
    /// Seconds from filing to the VM, of each created application.
    pub creation_seconds: Vec<u64>,
}

#[derive(Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OwnerUse {
    pub cluster: String,
    pub owner: String,
    pub vms: u64,
    pub running: u64,
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_mib: u64,
}

pub fn stats(apps: &[InstanceApplication], vms: &[GanetiInstance]) -> Stats {
    let mut applications: BTreeMap<String, ClusterApplications> = BTreeMap::new();
    for app in apps {
        let c = applications.entry(cluster_of(app).to_owned()).or_default();
        let phase = app.status.as_ref().map(|s| s.phase).unwrap_or_default();
        *c.by_phase.entry(phase_name(phase)).or_default() += 1;
        let (decided, created) = waits(app);
        c.decision_seconds.extend(decided);
        c.creation_seconds.extend(created);
    }
    for c in applications.values_mut() {
        c.decision_seconds.sort_unstable();
        c.creation_seconds.sort_unstable();
    }
    let mut owners: BTreeMap<(String, String), OwnerUse> = BTreeMap::new();
    for vm in vms {
        let owner = vm
            .status
            .owner
            .as_ref()
            .map(|o| format!("{}:{}", o.kind, o.name))
            .unwrap_or_default();
        let key = (vm.spec.cluster.clone(), owner);
        let u = owners.entry(key.clone()).or_insert_with(|| OwnerUse {
            cluster: key.0,
            owner: key.1,
            ..Default::default()
        });
        u.vms += 1;
        u.running += u64::from(vm.status.running);
        u.vcpus += vm.status.vcpus.unwrap_or(0);
        u.memory_mib += vm.status.memory_mib.unwrap_or(0);
        u.disk_mib += vm.status.disk_mib.unwrap_or(0);
    }
    Stats {
        applications,
        owners: owners.into_values().collect(),
    }
}

/// The median of sorted values (the lower middle of an even count).
fn median(sorted: &[u64]) -> Option<u64> {
    (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) / 2])
}

/// Seconds as one rounded unit, as kubectl prints ages: `45s`, `12m`, `5h`, `3d`.
pub fn duration(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

pub fn render(stats: &Stats) -> String {
    let mut out = String::from("Applications:\n");
    if stats.applications.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut header = vec!["CLUSTER".to_owned()];
        header.extend(Phase::ALL.iter().map(|p| phase_name(*p).to_uppercase()));
        header.extend(["TO DECISION (MEDIAN)".to_owned(), "TO VM (MEDIAN)".to_owned()]);
        let mut rows = vec![header];
        for (cluster, c) in &stats.applications {
            let mut row = vec![if cluster.is_empty() {
                "<unassigned>".into()
            } else {
                cluster.clone()
            }];
            row.extend(
                Phase::ALL
                    .iter()
                    .map(|p| c.by_phase.get(phase_name(*p)).copied().unwrap_or(0).to_string()),
            );
            for waits in [&c.decision_seconds, &c.creation_seconds] {
                row.push(median(waits).map_or("<none>".into(), duration));
            }
            rows.push(row);
        }
        out.push_str(&aligned(rows));
    }
    out.push_str("\nVMs per owner:\n");
    if stats.owners.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut rows = vec![
            ["CLUSTER", "OWNER", "VMS", "RUNNING", "VCPUS", "MEMORY", "DISK"]
                .map(String::from)
                .to_vec(),
        ];
        for u in &stats.owners {
            rows.push(vec![
                u.cluster.clone(),
                if u.owner.is_empty() {
                    "<none>".into()
                } else {
                    u.owner.clone()
                },
                u.vms.to_string(),
                u.running.to_string(),
                u.vcpus.to_string(),
                mib(u.memory_mib),
                mib(u.disk_mib),
            ]);
        }
        out.push_str(&aligned(rows));
    }
    out
}

/// Reads every InstanceApplication and the VMs, and prints the statistics (or JSON).
pub async fn print(client: &kube::Client, json: bool) -> anyhow::Result<()> {
    let apps = Api::<InstanceApplication>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("listing InstanceApplications in all namespaces: {e}"))?
        .items;
    let vms: InstanceList = match get(client, INSTANCES).await {
        Ok(list) => list,
        Err(error) => return Err(explain(client, error, About::Vms).await),
    };
    let stats = stats(&apps, &vms.items);
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", render(&stats));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::application::InstanceApplicationStatus;
    use crate::api::conditions::{Status, set};
    use crate::plugin::instance::Owner;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    fn app(
        cluster: &str,
        phase: Phase,
        decided_after: Option<i64>,
        created_after: Option<i64>,
    ) -> InstanceApplication {
        let filed: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let mut a = InstanceApplication::for_tests(Some(cluster), filed);
        let mut status = InstanceApplicationStatus {
            phase,
            ..Default::default()
        };
        if let Some(s) = decided_after {
            let at = filed + SignedDuration::from_secs(s);
            set(
                &mut status.conditions,
                "Decided",
                Status::True,
                "Approved",
                "",
                None,
                at,
            );
        }
        status.created_time = created_after.map(|s| Time(filed + SignedDuration::from_secs(s)));
        a.status = Some(status);
        a
    }

    fn vm(cluster: &str, owner: Option<(&str, &str)>, running: bool, memory_mib: u64) -> GanetiInstance {
        let mut vm = GanetiInstance::default();
        vm.spec.cluster = cluster.into();
        vm.status.running = running;
        vm.status.vcpus = Some(2);
        vm.status.memory_mib = Some(memory_mib);
        vm.status.disk_mib = Some(10_240);
        vm.status.owner = owner.map(|(k, n)| Owner {
            kind: k.into(),
            name: n.into(),
        });
        vm
    }

    #[test]
    fn applications_per_cluster_and_use_per_owner() {
        let apps = vec![
            app("lab", Phase::Pending, None, None),
            app("lab", Phase::Created, Some(600), Some(700)),
            app("lab", Phase::Created, Some(60), Some(100)),
            app("lab", Phase::Rejected, Some(7200), None),
            app("prod", Phase::Created, Some(86_400 * 3), Some(86_400 * 3 + 60)),
        ];
        let vms = vec![
            vm("lab", Some(("User", "alice")), true, 1024),
            vm("lab", Some(("User", "alice")), false, 2048),
            vm("lab", Some(("Group", "team")), true, 512),
            vm("prod", None, true, 1024),
        ];
        let s = stats(&apps, &vms);
        let lab = &s.applications["lab"];
        assert_eq!(lab.by_phase["Created"], 2);
        assert_eq!(lab.by_phase["Pending"], 1);
        assert_eq!(lab.decision_seconds, vec![60, 600, 7200]);
        assert_eq!(median(&lab.decision_seconds), Some(600));
        assert_eq!(median(&lab.creation_seconds), Some(100));
        let alice = s.owners.iter().find(|u| u.owner == "User:alice").unwrap();
        assert_eq!(
            (alice.vms, alice.running, alice.vcpus, alice.memory_mib),
            (2, 1, 4, 3072)
        );
        assert!(s.owners.iter().any(|u| u.owner == "Group:team" && u.vms == 1));
        let text = render(&s);
        assert!(text.contains("CLUSTER   PENDING   APPROVED"), "{text}");
        // lab: 1 pending, 0 approved, 0 creating, 2 created, 1 rejected, 0 failed, 10m, 100s.
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["lab", "1", "0", "0", "2", "1", "0", "10m", "100s"]),
            "{text}"
        );
        assert!(text.contains("3d"), "{text}");
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["lab", "User:alice", "2", "1", "4", "3Gi", "20Gi"]),
            "{text}"
        );
        assert!(text.contains("<none>"), "a VM without owner: {text}");
    }
}
