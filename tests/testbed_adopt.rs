//! Adopting existing VMs on the real testbed: VMs made directly in Ganeti (no owner, and
//! one of bob's), alice asks to own each with an `InstanceApplication` in mode `Adopt`,
//! an admin approves. The VM without an owner gets exactly one owner tag (alice's), in
//! one tag job, and shows in alice's list through the operator's JSON API as alice; the
//! one of bob's fails with the reason and is not written to.
//!
//! Instances: `adopt-free.example.org` and `adopt-owned.example.org` at
//! 198.51.100.230-231, created by the test as the testbed's writer.

mod support;

use ganeti_operator::api::InstanceApplication;
use ganeti_operator::api::application::Phase;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::apply;
use support::ganeti::{self, gnt, ip};
use support::operator::{Operator, sample};
use support::testbed::{env, kube_client, kubectl};

const CLUSTER: &str = "adopt-tb";
const SECRET: &str = "rapi-adopt-tb";
const NS: &str = "adopt-alice";
const BINDING: &str = "adopt-users";
const FREE: &str = "adopt-free.example.org";
const OWNED: &str = "adopt-owned.example.org";
const BOBS_TAG: &str = "GANETI_WEB_MANAGER:owner:U:bob";
const ALICES_TAG: &str = "GANETI_WEB_MANAGER:owner:U:alice";

/// Deletes what the test made, also when it fails (the VMs go with their guard).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        // The namespace stays (applicant_namespaces is idempotent): a run right after
        // this one would find it still terminating and could file nothing in it.
        let deletions: [&[&str]; 4] = [
            &["delete", "rolebindings.ganeti.dev", BINDING, "--ignore-not-found"],
            &[
                "delete",
                "instanceapplications",
                "-n",
                NS,
                "--all",
                "--ignore-not-found",
            ],
            &["delete", "ganeticlusters", CLUSTER, "--ignore-not-found"],
            &[
                "delete",
                "secret",
                "-n",
                "ganeti-system",
                SECRET,
                "--ignore-not-found",
            ],
        ];
        for args in deletions {
            let _ = kubectl("root", args);
        }
    }
}

fn condition<'a>(a: &'a InstanceApplication, type_: &str) -> Option<&'a Condition> {
    a.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)
}

fn tags(vm: &str) -> Vec<String> {
    let mut tags: Vec<String> = gnt(&format!("gnt-instance list-tags {vm}"))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    tags.sort();
    tags
}

/// The newest job Ganeti knows.
fn last_job() -> u64 {
    gnt("gnt-job list --no-headers -o id")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

/// The jobs after `after` that set tags on `vm` (Ganeti 3.0 summarises them as
/// `TAGS_SET`; the opcode names the instance).
fn tag_jobs(vm: &str, after: u64) -> usize {
    gnt("gnt-job list --no-headers -o id,ops")
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .and_then(|id| id.parse::<u64>().ok())
                .is_some_and(|id| id > after)
                && l.contains("'OP_ID': 'OP_TAGS_SET'")
                && l.contains(&format!("'name': '{vm}'"))
        })
        .count()
}

/// alice's VMs as the operator's JSON API lists them to her: (cluster, name, owner).
async fn alices_list(op: &Operator) -> Vec<(String, String, Value)> {
    let resp = reqwest::Client::new()
        .get(op.url("/api/v1/instances"))
        .bearer_auth(env("KUBE_TOKEN_ALICE"))
        .send()
        .await
        .expect("request sent");
    if resp.status() != 200 {
        return Vec::new();
    }
    let body: Value = resp.json().await.unwrap();
    body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["cluster"].as_str().unwrap().to_string(),
                i["name"].as_str().unwrap().to_string(),
                i["owner"].clone(),
            )
        })
        .collect()
}

fn adoption(name: &str, instance: &str) -> InstanceApplication {
    serde_json::from_value(json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": name},
        "spec": {"mode": "Adopt", "cluster": CLUSTER, "instance": instance,
                 "owner": {"kind": "User", "name": "alice"}, "purpose": "testbed_adopt"}
    }))
    .unwrap()
}

async fn approve(name: &str) {
    Api::<InstanceApplication>::namespaced(kube_client("admin").await, NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": {"verdict": "Approved"}}})),
        )
        .await
        .expect("admin approves");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_approves_an_adoption_and_the_vm_shows_in_its_owners_list() {
    let _cleanup = Cleanup;
    let root = support::install_with_policies().await;
    support::apply_manifest("examples/10-roles-preconfigured.yaml");
    support::applicant_namespaces("adopt", &["alice"]);
    let _vms = ganeti::create_instances(
        &[
            (FREE, &ip(230), vec![]),
            (OWNED, &ip(231), vec![BOBS_TAG.to_string()]),
        ],
        "testbed_adopt",
    )
    .await;
    ganeti::apply_cluster(&root, CLUSTER, SECRET, json!({})).await;
    // alice uses her own VMs (the preconfigured role `user`): her list shows what she owns.
    apply(
        &Api::<ganeti_operator::api::RoleBinding>::all(root.clone()),
        BINDING,
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": BINDING},
               "spec": {"roleRef": "user", "subjects": [{"kind": "User", "name": "alice"}]}}),
    )
    .await;

    let first_job = last_job();
    let op = Operator::start("adopt").await;
    // Only the leader reconciles applications (another test's operator may hold the
    // lease for a while).
    let started = Instant::now();
    while sample(&op.metrics().await, "ganeti_operator_leading") != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never led:\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let before = alices_list(&op).await;
    assert!(
        !before.iter().any(|(_, n, _)| n == FREE),
        "not alice's before the adoption: {before:?}"
    );

    // alice asks for both; the operator finds them, by UUID, and waits for an admin.
    let alice: Api<InstanceApplication> = Api::namespaced(kube_client("alice").await, NS);
    let apps: Api<InstanceApplication> = Api::namespaced(root.clone(), NS);
    for (name, vm) in [("adopt-free", FREE), ("adopt-owned", OWNED)] {
        support::delete_and_wait(&apps, name).await;
        let filed = alice
            .create(&PostParams::default(), &adoption(name, vm))
            .await
            .expect("alice files");
        assert_eq!(filed.spec.applicant.as_deref(), Some("alice"));
    }
    let uuid = gnt(&format!("gnt-instance list --no-headers -o uuid {FREE}"))
        .trim()
        .to_string();
    let pending = op
        .wait_for(&apps, "adopt-free", Duration::from_secs(90), |a| {
            condition(a, "Validated").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(pending.status.as_ref().unwrap().phase, Phase::Pending);
    assert_eq!(
        condition(&pending, "Validated").unwrap().message,
        format!("instance {FREE} (UUID {uuid}) exists and has no owner")
    );
    let owned = op
        .wait_for(&apps, "adopt-owned", Duration::from_secs(60), |a| {
            condition(a, "Validated").is_some_and(|c| c.reason == "AlreadyOwned")
        })
        .await;
    assert_eq!(owned.status.as_ref().unwrap().phase, Phase::Pending);
    // Nobody approves their own adoption.
    let refused = alice
        .patch(
            "adopt-free",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": {"verdict": "Approved"}}})),
        )
        .await;
    assert!(
        support::refused(refused).contains("do not hold the system right applications"),
        "alice approved herself"
    );

    // The admin approves: exactly one owner tag, alice's, in one job.
    approve("adopt-free").await;
    let adopted = op
        .wait_for(&apps, "adopt-free", Duration::from_secs(120), |a| {
            a.status.as_ref().is_some_and(|s| {
                s.phase != Phase::Pending && s.phase != Phase::Approved && s.phase != Phase::Creating
            })
        })
        .await;
    let s = adopted.status.clone().unwrap();
    assert_eq!(s.phase, Phase::Created, "{s:#?}\n{}", op.log());
    assert_eq!(s.instance_uuid.as_deref(), Some(uuid.as_str()));
    assert_eq!(s.instance_name.as_deref(), Some(FREE));
    let job = s.job_id.expect("the tag job is recorded");
    let c = condition(&adopted, "InstanceCreated").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Adopted"));
    assert_eq!(
        c.message,
        format!(
            "instance {FREE} (UUID {uuid}) belongs to user alice now: its owner tag was written by Ganeti job {job}"
        )
    );
    let vm_tags = tags(FREE);
    let owners: Vec<&String> = vm_tags.iter().filter(|t| t.contains(":owner:")).collect();
    assert_eq!(owners, [ALICES_TAG], "exactly one owner tag: {vm_tags:?}");
    let marker = format!(
        "GANETI_WEB_MANAGER:app:{}",
        adopted.metadata.uid.as_deref().unwrap()
    );
    assert!(vm_tags.contains(&marker), "{vm_tags:?}");
    assert_eq!(tag_jobs(FREE, first_job), 1, "one tag job for one approval");
    let (_, events, _) = kubectl("root", &["get", "events", "-n", NS, "-o", "json"]);
    assert!(
        events.contains("Adopting") && events.contains("Adopted"),
        "Events: {events}"
    );
    assert!(op.log().contains("adoption"), "an audit line:\n{}", op.log());

    // alice's list shows it, hers.
    let started = Instant::now();
    let listed = loop {
        let list = alices_list(&op).await;
        if let Some(found) = list.iter().find(|(c, n, _)| c == CLUSTER && n == FREE) {
            break found.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not in alice's list: {list:?}\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(listed.2, json!({"kind": "User", "name": "alice"}));

    // bob's VM: the approval ends with the reason, and nothing is written to it.
    approve("adopt-owned").await;
    let failed = op
        .wait_for(&apps, "adopt-owned", Duration::from_secs(60), |a| {
            a.status.as_ref().is_some_and(|s| s.phase == Phase::Failed)
        })
        .await;
    let c = condition(&failed, "InstanceCreated").unwrap();
    assert_eq!(c.reason, "AlreadyOwned");
    assert!(
        c.message
            .contains(&format!("instance {OWNED} already has an owner ({BOBS_TAG})")),
        "{}",
        c.message
    );
    assert_eq!(failed.status.as_ref().unwrap().job_id, None);
    // Given the time to do wrong: still bob's alone, and never a tag job.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(tags(OWNED), [BOBS_TAG]);
    assert_eq!(tag_jobs(OWNED, first_job), 0);
    assert_eq!(
        apps.get_status("adopt-owned")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase,
        Phase::Failed
    );
    assert!(!alices_list(&op).await.iter().any(|(_, n, _)| n == OWNED));
}
