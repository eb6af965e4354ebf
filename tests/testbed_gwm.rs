//! Migrating from Ganeti Web Manager on the real testbed: GWM's permission tags name
//! users and groups by database id (written here over RAPI, as GWM writes them). They
//! grant nothing until the cluster's id map (`spec.gwm.idMap`, a labelled ConfigMap)
//! names the ids; then they grant to the mapped users and groups (carol through the
//! JSON API, others through `ganeti-operator explain`). A changed map applies without
//! a restart, an invalid one maps nothing and says why, and with `writeIds` the tag sync
//! writes GWM's id form (and rewrites it when an id changes). ganetimgr's `needsreboot`
//! shows in the JSON API and the metrics.
//!
//! Instances: `gwm-*` names, IPs 198.51.100.232-233. One test function: the steps
//! share one operator and one cluster.

mod support;

use ganeti_operator::api::{GanetiCluster, Role, RoleBinding};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::apply;
use support::crds::install_crds;
use support::ganeti::{self, rapi, tags_of};
use support::operator::{Operator, explain};
use support::testbed::{delete_config_map, env, kube_client};

const CLUSTER: &str = "gwm-tb";
const SECRET: &str = "rapi-gwm-tb";
const ID_MAP: &str = "gwm-ids-tb";
/// The VM GWM granted rights on.
const VM: &str = "gwm-vm1.example.org";
/// The VM whose tags the operator writes.
const VM_OURS: &str = "gwm-vm2.example.org";
const ROLE: &str = "gwm-power";
const BINDINGS: &[&str] = &["gwm-bob-power", "gwm-erin-power"];
/// GWM's tags on [`VM`]: user 2 is admin, user 3 has power, group 5 may start it.
const GWM_TAGS: &[&str] = &[
    "GANETI_WEB_MANAGER:admin:U:2",
    "GANETI_WEB_MANAGER:power:U:3",
    "GANETI_WEB_MANAGER:start:G:5",
];

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        use support::testbed::delete_if_present;
        delete_if_present("rolebindings.ganeti.dev", BINDINGS);
        delete_if_present("roles.ganeti.dev", &[ROLE]);
        delete_if_present("ganeticlusters", &[CLUSTER]);
        delete_config_map(ID_MAP);
        delete_config_map(&format!("ganeti-tags.{CLUSTER}"));
    }
}

/// carol's `GET /api/v1/instances/<cluster>/<VM>`: the status and the body.
async fn carol_gets_vm(op: &Operator) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(op.url(&format!("/api/v1/instances/{CLUSTER}/{VM}")))
        .bearer_auth(env("KUBE_TOKEN_CAROL"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The id map ConfigMap with these `users` and `groups` (YAML), labelled as one.
async fn apply_id_map(root: &kube::Client, users: &str, groups: &str) {
    let api: Api<ConfigMap> = Api::namespaced(root.clone(), "ganeti-system");
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": ID_MAP, "namespace": "ganeti-system", "labels": {"ganeti.dev/gwm-ids": "true"}},
        "data": {"users": users, "groups": groups},
    });
    apply(&api, ID_MAP, &cm).await;
}

/// The cluster's `GwmIdMap` condition: (status, reason, message), once it has one.
async fn gwm_condition(clusters: &Api<GanetiCluster>) -> Option<(String, String, String)> {
    let c = clusters.get(CLUSTER).await.ok()?;
    let cond = c.status?.conditions.into_iter().find(|c| c.type_ == "GwmIdMap")?;
    Some((cond.status, cond.reason, cond.message))
}

async fn unmapped_id_tags(clusters: &Api<GanetiCluster>) -> Option<u32> {
    let c = clusters.get(CLUSTER).await.ok()?;
    Some(c.status?.gwm?.unmapped_id_tags)
}

async fn bind(bindings: &Api<RoleBinding>, name: &str, user: &str) {
    let obj = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": name},
        "spec": {"roleRef": ROLE, "subjects": [{"kind": "User", "name": user}],
                 "instances": [{"cluster": CLUSTER, "name": VM_OURS}]}});
    apply(bindings, name, &obj).await;
}

#[tokio::test]
async fn gwm_id_tags_grant_rights_once_mapped_and_write_ids_writes_them() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    support::operator::apply_operator_rbac();
    let _cleanup = Cleanup;
    let _vms = ganeti::create_instances(
        &[
            (VM, "198.51.100.232", vec![]),
            (VM_OURS, "198.51.100.233", vec![]),
        ],
        "tests/testbed_gwm setup",
    )
    .await;
    // GWM's own writes: its ids, and ganetimgr's reboot marker, over RAPI.
    let mut written: Vec<&str> = GWM_TAGS.to_vec();
    written.push("ganetimgr:needsreboot");
    let client = rapi();
    let job = client
        .add_instance_tags(VM, &written, "Ganeti Web Manager")
        .await
        .expect("tags accepted");
    client
        .wait_job(job, Duration::from_secs(60))
        .await
        .unwrap()
        .into_success()
        .expect("tags added");
    let clusters: Api<GanetiCluster> = Api::all(root.clone());
    let bindings: Api<RoleBinding> = Api::all(root.clone());
    for b in BINDINGS {
        let _ = bindings.delete(b, &DeleteParams::default()).await;
    }
    delete_config_map(ID_MAP);
    ganeti::apply_cluster(&root, CLUSTER, SECRET, json!({})).await;
    let roles: Api<Role> = Api::all(root.clone());
    apply(
        &roles,
        ROLE,
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": ROLE},
               "spec": {"scope": {"kind": "All"},
                        "vms": {"view": "allowed", "start": "allowed", "shutdown": "allowed", "reboot": "allowed", "console": "allowed"}}}),
    )
    .await;

    let op = Operator::start("gwm").await;
    // Status and tags are the leader's: another test's operator may hold the lease a while.
    op.wait_until("the operator leads and syncs tags", 120, async || {
        op.log().contains("tag sync: roles and bindings listed")
    })
    .await;

    // 1. No map: the ids grant nothing, to nobody, and the cluster says so.
    op.wait_until("the cluster reports unmapped GWM ids", 60, async || {
        gwm_condition(&clusters)
            .await
            .is_some_and(|(s, r, _)| s == "False" && r == "NoIdMap")
    })
    .await;
    let (_, _, message) = gwm_condition(&clusters).await.unwrap();
    println!("before the map: GwmIdMap False NoIdMap: {message}");
    let unmapped_before = unmapped_id_tags(&clusters).await.unwrap();
    assert!(unmapped_before >= 3, "{unmapped_before}");
    op.wait_until("carol's VM view is in the JSON API's snapshot", 30, async || {
        carol_gets_vm(&op).await.0 == 404
    })
    .await;
    let object = format!("{CLUSTER}/{VM}");
    let (allowed, text) = explain(&["gwm-dana", "reboot", &object]);
    assert!(!allowed, "{text}");
    assert!(
        text.contains("GANETI_WEB_MANAGER:admin:U:2: GWM user id 2 is not in the cluster's id map"),
        "{text}"
    );
    let (allowed, text) = explain(&["2", "view", &object]);
    assert!(!allowed, "a user literally named 2 gets nothing: {text}");

    // 2. The map: ids 2 and 3 are gwm-dana and carol, group 5 is gwm-team.
    apply_id_map(
        &root,
        "\"2\": gwm-dana\n\"3\": carol\n\"7\": bob\n",
        "\"5\": gwm-team\n",
    )
    .await;
    let started = Instant::now();
    ganeti::apply_cluster(&root, CLUSTER, SECRET, json!({"gwm": {"idMap": ID_MAP}})).await;
    op.wait_until("carol sees the VM GWM gave her power on", 60, async || {
        carol_gets_vm(&op).await.0 == 200
    })
    .await;
    println!("map applied -> carol's right: {:?}", started.elapsed());
    let (_, vm) = carol_gets_vm(&op).await;
    assert_eq!(vm["needsReboot"], json!(true), "{vm}");
    let (allowed, text) = explain(&["gwm-dana", "reboot", &object]);
    assert!(allowed, "GWM's admin tag for id 2: {text}");
    assert!(text.contains("GWM id of user gwm-dana"), "{text}");
    let (allowed, text) = explain(&["gwm-erin", "start", &object, "--group", "gwm-team"]);
    assert!(allowed, "GWM's start tag for group 5: {text}");
    let (allowed, text) = explain(&["gwm-erin", "reboot", &object, "--group", "gwm-team"]);
    assert!(!allowed, "start is not reboot: {text}");
    op.wait_until("the cluster reports the map in force", 30, async || {
        gwm_condition(&clusters)
            .await
            .is_some_and(|(s, r, _)| s == "True" && r == "Loaded")
    })
    .await;
    let status = clusters.get(CLUSTER).await.unwrap().status.unwrap().gwm.unwrap();
    println!("after the map: {status:?}");
    assert_eq!((status.mapped_users, status.mapped_groups), (3, 1));
    assert!(status.unmapped_id_tags + 3 <= unmapped_before, "{status:?}");
    let metrics = op.metrics().await;
    let reboot_line = format!("ganeti_instance_needs_reboot{{cluster=\"{CLUSTER}\",instance=\"{VM}\"");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(&reboot_line) && l.ends_with(" 1")),
        "no needs-reboot sample for {VM}"
    );

    // 3. The map changes (id 3 is someone else now): carol's right goes, no restart.
    let started = Instant::now();
    apply_id_map(
        &root,
        "\"2\": gwm-dana\n\"3\": gwm-zed\n\"7\": bob\n",
        "\"5\": gwm-team\n",
    )
    .await;
    op.wait_until("carol's right goes with her id", 60, async || {
        carol_gets_vm(&op).await.0 == 404
    })
    .await;
    println!("map changed -> carol's right gone: {:?}", started.elapsed());

    // 4. An invalid map maps nothing and says why.
    apply_id_map(&root, "\"2\": gwm-dana\n\"4\": gwm-dana\n", "").await;
    op.wait_until("the cluster reports the invalid map", 60, async || {
        gwm_condition(&clusters)
            .await
            .is_some_and(|(s, r, m)| s == "False" && r == "IdMapInvalid" && m.contains("two ids, 2 and 4"))
    })
    .await;
    let (allowed, text) = explain(&["gwm-dana", "reboot", &object]);
    assert!(!allowed, "an invalid map grants nothing: {text}");

    // 5. writeIds: bob's binding becomes GWM's id form; erin has no id, so no tag.
    apply_id_map(&root, "\"2\": gwm-dana\n\"7\": bob\n", "\"5\": gwm-team\n").await;
    ganeti::apply_cluster(
        &root,
        CLUSTER,
        SECRET,
        json!({"gwm": {"idMap": ID_MAP, "writeIds": true}}),
    )
    .await;
    // Bound once the cluster's snapshot has writeIds (else names go first, then ids).
    op.wait_until("the cluster's read with writeIds", 60, async || {
        gwm_condition(&clusters)
            .await
            .is_some_and(|(s, _, m)| s == "True" && m.contains("writeIds"))
    })
    .await;
    bind(&bindings, "gwm-bob-power", "bob").await;
    bind(&bindings, "gwm-erin-power", "gwm-erin").await;
    let latency = op
        .wait_until("bob's tag in GWM's id form", 60, async || {
            tags_of(VM_OURS).contains("GANETI_WEB_MANAGER:power:U:7")
        })
        .await;
    let tags = tags_of(VM_OURS);
    println!("binding -> id tag in Ganeti: {latency:?}; tags: {tags:?}");
    assert_eq!(tags, BTreeSet::from(["GANETI_WEB_MANAGER:power:U:7".to_string()]));
    op.wait_until("erin's binding reports she has no GWM id", 30, async || {
        let b = bindings.get("gwm-erin-power").await.unwrap();
        b.status.and_then(|s| {
            s.conditions
                .into_iter()
                .find(|c| c.type_ == "TagsInSync" && c.status == "False")
                .map(|c| c.message.contains("id map has none for them"))
        }) == Some(true)
    })
    .await;

    // 6. bob's id changes: the old id tag goes, the new one comes.
    apply_id_map(&root, "\"2\": gwm-dana\n\"8\": bob\n", "\"5\": gwm-team\n").await;
    op.wait_until("bob's tag follows his new id", 60, async || {
        let tags = tags_of(VM_OURS);
        tags.contains("GANETI_WEB_MANAGER:power:U:8") && !tags.contains("GANETI_WEB_MANAGER:power:U:7")
    })
    .await;
    assert!(
        tags_of(VM).is_superset(&GWM_TAGS.iter().map(|t| t.to_string()).collect()),
        "GWM's own tags are never touched: {:?}",
        tags_of(VM)
    );
}
