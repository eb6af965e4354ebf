//! ClusterQuota usage on the real testbed: the status follows a VM created and removed
//! in Ganeti and an application approved, being created and created, each within one
//! sync of the cluster (5 s here); an unchanged world writes no status; `kubectl get`
//! shows the Used/Limit/Ready columns; the same figures are metrics; a quota on a
//! cluster that does not exist says so.
//!
//! Instances: `quota-*` names, IPs 198.51.100.94-95. The owner is the group
//! `quota-team`, which nothing else on the shared Ganeti owns.

mod support;

use ganeti_operator::api::InstanceApplication;
use ganeti_operator::api::application::Phase;
use ganeti_operator::api::quota::{ClusterQuota, SubjectUsage};
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use support::ganeti::{self, gnt, ip};
use support::operator::{Operator, sample};
use support::testbed::{env, kubectl, kubectl_ok};

const CLUSTER: &str = "quota-tb";
const SECRET: &str = "rapi-quota-tb";
const NS: &str = "quota-test";
const TEAM: &str = "quota-team";
const QUOTA: &str = "quota-team";
/// A quota on a GanetiCluster that does not exist.
const GHOST: &str = "quota-ghost";
const VM: &str = "quota-vm1.example.org";
const APP: &str = "quota-app1";
const APP_VM: &str = "quota-app1.quota.ganeti.test";
/// The GanetiCluster's sync interval ([`ganeti::cluster_spec`]).
const SYNC: Duration = Duration::from_secs(5);
/// "Within one sync": the first read that starts after a change in Ganeti sees it, so
/// the status follows at most one interval plus that read (and our polling) later.
const ONE_SYNC: Duration = Duration::from_secs(12);

/// Deletes what the test made, also when it fails (the VMs go with their guard).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(
            "root",
            &["delete", "clusterquotas", QUOTA, GHOST, "--ignore-not-found"],
        );
        let _ = kubectl(
            "root",
            &["delete", "namespace", NS, "--ignore-not-found", "--wait=false"],
        );
        let _ = kubectl(
            "root",
            &["delete", "ganeticlusters", CLUSTER, "--ignore-not-found"],
        );
    }
}

/// The team's row in the quota's status.
fn team_usage(q: &ClusterQuota) -> Option<&SubjectUsage> {
    q.status.as_ref()?.usage.iter().find(|u| u.subject.name == TEAM)
}

fn ready(q: &ClusterQuota) -> Option<(&str, &str)> {
    let c = q
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((&c.status, &c.reason))
}

/// Waits until the team's usage is `(instances, pending)`; how long that took.
async fn wait_usage(
    op: &Operator,
    quotas: &Api<ClusterQuota>,
    instances: u32,
    pending: u32,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    op.wait_for(quotas, QUOTA, within, |q| {
        team_usage(q).is_some_and(|u| (u.instances, u.pending_instances) == (instances, pending))
    })
    .await;
    started.elapsed()
}

fn writes(metrics: &str) -> f64 {
    sample(
        metrics,
        "ganeti_operator_status_writes_total{controller=\"clusterquota\"}",
    )
    .unwrap_or(0.0)
}

fn passes(metrics: &str) -> f64 {
    sample(
        metrics,
        "ganeti_operator_reconciles_total{controller=\"clusterquota\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn quota_usage_follows_vms_and_approvals_within_one_sync() {
    let test_started = Instant::now();
    let root = support::install_with_policies().await;
    let _cleanup = Cleanup;
    let _vms = ganeti::Instances::fresh(vec![VM.to_owned(), APP_VM.to_owned()]);
    let _ = kubectl("root", &["create", "namespace", NS]);
    let defaults = json!({"os": env("GANETI_OS"), "hypervisor": env("GANETI_HYPERVISOR"),
                          "diskTemplate": "diskless", "primaryNode": env("GANETI_NODE")});
    ganeti::apply_cluster(
        &root,
        CLUSTER,
        SECRET,
        json!({"defaults": defaults, "allowed": {"ipRanges": [format!("{}/24", ip(0))]}}),
    )
    .await;
    let quotas: Api<ClusterQuota> = Api::all(root.clone());
    for (name, cluster) in [(QUOTA, CLUSTER), (GHOST, "quota-nope")] {
        let obj = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "ClusterQuota", "metadata": {"name": name},
            "spec": {"cluster": cluster, "subject": {"kind": "Group", "name": TEAM},
                     "limits": {"instances": 3, "vcpus": 8, "memory": "1Gi"}}});
        support::apply(&quotas, name, &obj).await;
    }

    let op = Operator::start("quota").await;
    // Generous: another test's operator may hold the leader lease for a while.
    let q = op
        .wait_for(&quotas, QUOTA, Duration::from_secs(150), |q| {
            ready(q) == Some(("True", "UsageComputed"))
        })
        .await;
    let s = q.status.as_ref().unwrap();
    assert_eq!(team_usage(&q).map(|u| u.instances), Some(0), "{s:?}");
    assert_eq!(s.limit.as_deref(), Some("instances 3, vCPUs 8, memory 1Gi"));
    let ghost = op
        .wait_for(&quotas, GHOST, Duration::from_secs(10), |q| ready(q).is_some())
        .await;
    assert_eq!(ready(&ghost), Some(("False", "ClusterNotFound")));

    // A VM created in Ganeti, owned by the team through its tag.
    let owner_tag = format!("GANETI_WEB_MANAGER:owner:G:{TEAM}");
    let _vm = ganeti::create_instances(&[(VM, &ip(94), vec![owner_tag])], "tests/testbed_quota").await;
    let took = wait_usage(&op, &quotas, 1, 0, ONE_SYNC).await;
    eprintln!("a VM created: usage rose after {took:?}");

    // An approved application counts at once, as pending, until its VM exists.
    let apps: Api<InstanceApplication> = Api::namespaced(root.clone(), NS);
    let app = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": APP, "namespace": NS},
        "spec": {"cluster": CLUSTER, "hostname": APP_VM, "vcpus": 1, "memory": "128Mi",
                 "disks": [{"size": "1Gi"}], "network": {"ip": ip(95)},
                 "owner": {"kind": "Group", "name": TEAM}, "purpose": "quota usage test",
                 "decision": {"verdict": "Approved"}}});
    apps.create(&PostParams::default(), &serde_json::from_value(app).unwrap())
        .await
        .expect("root files and approves");
    let took = wait_usage(&op, &quotas, 2, 1, Duration::from_secs(60)).await;
    eprintln!("an approval: counted as pending after {took:?}");
    op.wait_for(&apps, APP, ganeti::CREATE_DEADLINE, |a| {
        a.status.as_ref().is_some_and(|s| s.phase == Phase::Created)
    })
    .await;
    let took = wait_usage(&op, &quotas, 2, 0, ONE_SYNC).await;
    eprintln!("its VM created: no longer pending after {took:?}");
    let q = quotas.get(QUOTA).await.unwrap();
    let s = q.status.as_ref().unwrap();
    let u = team_usage(&q).unwrap();
    assert_eq!((u.vcpus, u.memory.as_str()), (2, "256Mi"), "{s:?}");
    assert_eq!(
        s.used.as_deref(),
        Some(format!("instances 2, vCPUs 2, memory 256Mi, disk {}", u.disk).as_str())
    );

    // kubectl shows what is used beside what is allowed.
    let table = kubectl_ok("root", &["get", "clusterquota", QUOTA]);
    for needle in [
        "USED",
        "LIMIT",
        "READY",
        "instances 2, vCPUs 2",
        "instances 3, vCPUs 8, memory 1Gi",
        "True",
    ] {
        assert!(table.contains(needle), "{needle:?} missing:\n{table}");
    }
    // The same figures as metrics, labelled alike so that used / limit matches.
    let labels = format!(
        "{{cluster=\"{CLUSTER}\",quota=\"{QUOTA}\",subject_kind=\"Group\",subject=\"{TEAM}\",resource=\"instances\"}}"
    );
    let metrics = op.metrics().await;
    assert_eq!(
        sample(&metrics, &format!("ganeti_quota_used{labels}")),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &format!("ganeti_quota_limit{labels}")),
        Some(3.0)
    );
    let memory = labels.replace("instances", "memory");
    assert_eq!(
        sample(&metrics, &format!("ganeti_quota_used{memory}")),
        Some(256.0 * 1048576.0)
    );

    // Steady state: passes run on every inventory read, and write nothing.
    let before = op.metrics().await;
    let versions = |qs: &[ClusterQuota]| -> Vec<Option<String>> {
        qs.iter().map(|q| q.metadata.resource_version.clone()).collect()
    };
    let rv_before = versions(&[quotas.get(QUOTA).await.unwrap(), quotas.get(GHOST).await.unwrap()]);
    let steady = Instant::now();
    loop {
        let now = op.metrics().await;
        if passes(&now) >= passes(&before) + 3.0 && steady.elapsed() >= 2 * SYNC {
            assert_eq!(
                writes(&now),
                writes(&before),
                "a status write in steady state:\n{}",
                op.log()
            );
            break;
        }
        assert!(
            steady.elapsed() < Duration::from_secs(30),
            "no quota passes:\n{now}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rv_after = versions(&[quotas.get(QUOTA).await.unwrap(), quotas.get(GHOST).await.unwrap()]);
    assert_eq!(rv_before, rv_after, "an unchanged world rewrote a quota");
    eprintln!(
        "steady state: {} passes, 0 ClusterQuota status writes",
        passes(&op.metrics().await) - passes(&before)
    );

    // VMs removed in Ganeti: usage falls back.
    gnt(&format!("gnt-instance remove -f {VM}"));
    let took = wait_usage(&op, &quotas, 1, 0, ONE_SYNC).await;
    eprintln!("a VM removed: usage fell after {took:?}");
    gnt(&format!("gnt-instance remove -f {APP_VM}"));
    let took = wait_usage(&op, &quotas, 0, 0, ONE_SYNC).await;
    eprintln!("the application's VM removed: usage fell after {took:?}");
    let metrics = op.metrics().await;
    assert_eq!(sample(&metrics, &format!("ganeti_quota_used{labels}")), Some(0.0));
    eprintln!("wall time {:?}", test_started.elapsed());
}
