//! Read-only clusters on the real testbed: a GanetiCluster with `managementPolicy:
//! Observe`, reached as the testbed's read-only RAPI user (`viewer`), is Ready and lists
//! its VM (JSON API, metrics), while a RoleBinding narrowed to that VM (which would imply
//! tags) and an approved InstanceApplication exist for it. Over a minute the operator
//! asks for no RAPI write on it at all (its `ganeti_operator_rapi_writes_total`, which
//! counts writes sent and writes refused unsent alike): the binding says no tags are
//! written there, the application says it is not created, a user's action through the
//! JSON API is refused with the reason, and Ganeti's VM carries no tag.
//!
//! Instance: `observe-vm1.example.org` at 198.51.100.97, created by the test as the
//! testbed's writer.

mod support;

use ganeti_operator::api::application::Phase;
use ganeti_operator::api::cluster::ManagementPolicy;
use ganeti_operator::api::{GanetiCluster, InstanceApplication, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::apply;
use support::ganeti::{self, gnt, ip};
use support::operator::{Operator, sample};
use support::testbed::{env, kube_client, kubectl};

const CLUSTER: &str = "observe-tb";
const SECRET: &str = "rapi-observe-tb";
const NS: &str = "observe-alice";
const ROLE: &str = "observe-power";
const BINDING: &str = "observe-alice-power";
const APP: &str = "observe-app1";
const VM: &str = "observe-vm1.example.org";
/// How long the operator is watched for writes.
const WINDOW: Duration = Duration::from_secs(60);

/// Deletes what the test made, also when it fails (the VM goes with its guard).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let deletions: [&[&str]; 5] = [
            &["delete", "rolebindings.ganeti.dev", BINDING, "--ignore-not-found"],
            &["delete", "roles.ganeti.dev", ROLE, "--ignore-not-found"],
            &["delete", "namespace", NS, "--ignore-not-found", "--wait=false"],
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

/// Every RAPI write the operator was asked for on our cluster, sent or refused.
fn writes(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("ganeti_operator_rapi_writes_total{")
                && l.contains(&format!("cluster=\"{CLUSTER}\""))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Polls `check` every 250 ms until it holds; panics with `what` and the log after `secs`.
async fn wait_until(what: &str, secs: u64, op: &Operator, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not within {secs}s\n{}", op.log());
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

async fn act(op: &Operator, token: &str, action: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(op.url(&format!("/api/v1/instances/{CLUSTER}/{VM}/{action}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_observed_cluster_is_ready_and_never_written() {
    let _cleanup = Cleanup;
    let root = support::install_with_policies().await;
    support::applicant_namespaces("observe", &["alice"]);
    let _vm = ganeti::create_instances(&[(VM, &ip(97), vec![])], "testbed_observe").await;

    ganeti::apply_rapi_secret_for(
        &root,
        SECRET,
        &env("GANETI_RAPI_RO_USER"),
        &env("GANETI_RAPI_RO_PASSWORD"),
        true,
    )
    .await;
    let mut spec = ganeti::cluster_spec(SECRET);
    spec["managementPolicy"] = json!("Observe");
    spec["defaults"] = json!({"os": env("GANETI_OS"), "hypervisor": env("GANETI_HYPERVISOR"),
                              "diskTemplate": "diskless", "primaryNode": env("GANETI_NODE")});
    ganeti::apply_cluster_spec(&root, CLUSTER, spec).await;

    // alice may start her VM there: a binding narrowed to it would write her tags on a
    // managed cluster.
    apply(
        &Api::<ganeti_operator::api::Role>::all(root.clone()),
        ROLE,
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": ROLE},
               "spec": {"scope": {"kind": "All"},
                        "vms": {"view": "allowed", "start": "allowed", "shutdown": "allowed", "console": "allowed"}}}),
    )
    .await;
    let bindings: Api<RoleBinding> = Api::all(root.clone());
    apply(
        &bindings,
        BINDING,
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": BINDING},
               "spec": {"roleRef": ROLE, "subjects": [{"kind": "User", "name": "alice"}],
                        "instances": [{"cluster": CLUSTER, "name": VM}]}}),
    )
    .await;

    let op = Operator::start("observe").await;
    // Its own metrics count only while it leads (another test's operator may hold the
    // lease for a while): then its controllers are the ones that would write.
    wait_until("the operator leads", 120, &op, async || {
        sample(&op.metrics().await, "ganeti_operator_leading") == Some(1.0)
    })
    .await;

    // Ready, through the read-only user, and saying that it is observed only.
    let clusters: Api<GanetiCluster> = Api::all(root.clone());
    let c = op
        .wait_for(&clusters, CLUSTER, Duration::from_secs(60), |c| {
            c.status
                .as_ref()
                .is_some_and(|s| condition(&s.conditions, "Ready").is_some_and(|(st, _, _)| st == "True"))
        })
        .await;
    let status = c.status.unwrap();
    assert_eq!(status.management_policy, Some(ManagementPolicy::Observe));
    let (_, _, ready) = condition(&status.conditions, "Ready").unwrap();
    assert!(ready.contains("observed only"), "{ready}");
    let (ok, table, _) = kubectl("root", &["get", "ganeticlusters", CLUSTER]);
    assert!(
        ok && table.contains("POLICY") && table.contains("Observe"),
        "{table}"
    );

    // alice files an application there and an admin approves it.
    let apps: Api<InstanceApplication> = Api::namespaced(kube_client("alice").await, NS);
    support::delete_and_wait(&Api::<InstanceApplication>::namespaced(root.clone(), NS), APP).await;
    let app: InstanceApplication = serde_json::from_value(json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": APP},
        "spec": {"cluster": CLUSTER, "hostname": "observe-app1.example.org",
                 "vcpus": 1, "memory": "128Mi", "disks": [{"size": "1Gi"}],
                 "owner": {"kind": "User", "name": "alice"}, "purpose": "testbed_observe"}
    }))
    .unwrap();
    apps.create(&PostParams::default(), &app)
        .await
        .expect("alice files");
    Api::<InstanceApplication>::namespaced(kube_client("admin").await, NS)
        .patch(
            APP,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": {"verdict": "Approved"}}})),
        )
        .await
        .expect("admin approves");
    let root_apps: Api<InstanceApplication> = Api::namespaced(root.clone(), NS);
    let a = op
        .wait_for(&root_apps, APP, Duration::from_secs(60), |a| {
            a.status.as_ref().is_some_and(|s| {
                condition(&s.conditions, "InstanceCreated")
                    .is_some_and(|(_, r, _)| r == "ClusterObservedOnly")
            })
        })
        .await;
    let s = a.status.unwrap();
    assert_eq!(s.phase, Phase::Approved, "held, not failed");
    assert_eq!(s.job_id, None, "nothing submitted");
    let (_, _, why) = condition(&s.conditions, "InstanceCreated").unwrap();
    assert!(
        why.contains("cluster observe-tb is observed only (managementPolicy: Observe)"),
        "{why}"
    );
    let (_, events, _) = kubectl("root", &["get", "events", "-n", NS, "-o", "json"]);
    assert!(events.contains("ClusterObservedOnly"), "an Event: {events}");

    // The binding: no tags written there, and not an error.
    let b = op
        .wait_for(&bindings, BINDING, Duration::from_secs(60), |b| {
            b.status.as_ref().is_some_and(|s| {
                condition(&s.conditions, "TagsInSync").is_some_and(|(_, r, _)| r == "ObservedOnly")
            })
        })
        .await;
    let bs = b.status.unwrap();
    assert_eq!(condition(&bs.conditions, "Ready").unwrap().0, "True", "{bs:?}");
    assert_eq!(bs.tag_count, 0);

    // A user's action is refused, with the reason; viewing works.
    let alice = env("KUBE_TOKEN_ALICE");
    let (code, answer) = act(&op, &alice, "shutdown").await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(
        answer["error"],
        "cluster observe-tb is observed only (managementPolicy: Observe): the operator makes no changes to it in Ganeti"
    );
    let listed = reqwest::Client::new()
        .get(op.url("/api/v1/instances"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listed.contains(VM), "alice sees her VM: {listed}");
    let metrics = op.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ganeti_instance_up{") && l.contains(CLUSTER) && l.contains(VM)),
        "the VM in the metrics"
    );

    // A minute of syncs (every 5 s): the tag sync and the application controller run on
    // every one, and not one write is asked for.
    let tag_passes =
        |m: &str| sample(m, "ganeti_operator_reconciles_total{controller=\"tags\"}").unwrap_or(0.0);
    let before = tag_passes(&op.metrics().await);
    tokio::time::sleep(WINDOW).await;
    let metrics = op.metrics().await;
    assert_eq!(
        sample(&metrics, "ganeti_operator_leading"),
        Some(1.0),
        "still the leader"
    );
    assert!(
        tag_passes(&metrics) >= before + 5.0,
        "the tag sync ran during the window: {} -> {}",
        before,
        tag_passes(&metrics)
    );
    assert_eq!(writes(&metrics), 0.0, "no RAPI write since the operator started");
    assert_eq!(
        gnt(&format!("gnt-instance list-tags {VM}")).trim(),
        "",
        "no tag in Ganeti"
    );
    let a = root_apps.get_status(APP).await.unwrap();
    assert_eq!(a.status.unwrap().phase, Phase::Approved);
}
