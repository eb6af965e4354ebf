//! Tag sync on the real testbed: RoleBindings narrowed to a VM become Ganeti Web Manager
//! tags in the real Ganeti and go away with their binding, tags written by hand stay,
//! the ledger survives a restart, applications' VMs get owner tags, and an unchanged
//! world costs no RAPI write. `ganeti-operator explain` reads foreign tags as grants,
//! ownership and locks.
//!
//! Instances: `tags-*` names, IPs 198.51.100.65-.72. One test function: the steps share
//! one operator and one cluster.

mod support;

use ganeti_operator::api::{InstanceApplication, Role, RoleBinding};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};
use support::crds::install_crds;
use support::ganeti::{self, gnt, ip};
use support::operator::{Operator, sample};
use support::testbed::{env, kube_client, kubeconfig, kubectl};
use support::{MANAGER, apply};

const CLUSTER: &str = "tags-tb";
const SECRET: &str = "rapi-tags-tb";
const NS: &str = "tags-test";
/// alice's VM, as ganetimgr knows it.
const VM: &str = "tags-alice1.example.org";
/// A VM "created through an application".
const VM_APP: &str = "tags-team1.example.org";
const BINDINGS: &[&str] = &[
    "tags-bob-power",
    "tags-carol-power",
    "tags-dave-power",
    "tags-long-name",
    "tags-odd-name",
    "tags-alice-user",
    "tags-admins",
];

fn tags_of(vm: &str) -> BTreeSet<String> {
    gnt(&format!("gnt-instance list-tags {vm}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn set(tags: &[&str]) -> BTreeSet<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

/// Deletes what the test made, also when it fails (the instances go with their guard).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        for b in BINDINGS {
            let _ = kubectl(
                "root",
                &["delete", "rolebindings.ganeti.dev", b, "--ignore-not-found"],
            );
        }
        let _ = kubectl(
            "root",
            &["delete", "roles.ganeti.dev", "tags-power", "--ignore-not-found"],
        );
        let _ = kubectl(
            "root",
            &["delete", "namespace", NS, "--ignore-not-found", "--wait=false"],
        );
        let _ = kubectl(
            "root",
            &["delete", "ganeticlusters", CLUSTER, "--ignore-not-found"],
        );
        delete_ledger();
    }
}

/// The operator's record of the tags it wrote on our cluster.
fn delete_ledger() {
    let _ = kubectl(
        "root",
        &[
            "delete",
            "configmap",
            "-n",
            "ganeti-system",
            &format!("ganeti-tags.{CLUSTER}"),
            "--ignore-not-found",
        ],
    );
}

/// Binds the user to `tags-power` on alice's VM, as the RoleBinding `name`.
async fn power_on_vm(bindings: &Api<RoleBinding>, name: &str, user: &str) {
    bind(
        bindings,
        name,
        "tags-power",
        json!({"kind": "User", "name": user}),
        Some(VM),
    )
    .await;
}

/// Applies the RoleBinding `name` of `role` to `subject`, on `vm` only if given.
async fn bind(bindings: &Api<RoleBinding>, name: &str, role: &str, subject: Value, vm: Option<&str>) {
    let mut spec = json!({"roleRef": role, "subjects": [subject]});
    if let Some(vm) = vm {
        spec["instances"] = json!([{"cluster": CLUSTER, "name": vm}]);
    }
    let obj = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": name}, "spec": spec});
    apply(bindings, name, &obj).await;
}

/// Waits until this operator leads (another test's operator may hold the lease for a
/// while) and its tag sync has listed everything: the metrics below are its own.
async fn wait_leading(op: &Operator) {
    wait_until("the operator leads and syncs tags", 120, op, async || {
        op.log()
            .contains("tag sync: roles, bindings and applications listed")
    })
    .await;
}

/// Polls `check` every 250 ms until it holds; panics with `what` and the log after `secs`.
async fn wait_until(what: &str, secs: u64, op: &Operator, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not within {secs}s\n{}", op.log());
}

fn explain(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ganeti-operator"))
        .arg("explain")
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig("root"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn condition<'a>(b: &'a RoleBinding, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("{:?} has no {type_} condition", b.metadata.name));
    (&c.status, &c.reason, &c.message)
}

/// RAPI tag writes so far, whatever their outcome.
fn writes(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            ["instance_tags_add", "instance_tags_remove"].iter().any(|op| {
                l.starts_with(&format!(
                    "ganeti_operator_rapi_request_duration_seconds_count{{operation=\"{op}\""
                ))
            })
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test]
async fn bindings_become_ganeti_tags_and_only_ours_are_removed() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    support::operator::apply_operator_rbac();
    let _cleanup = Cleanup;
    let _vms = ganeti::create_instances(
        &[
            (
                VM,
                &ip(65),
                vec!["ganetimgr:user:alice".into(), "webserver".into()],
            ),
            (VM_APP, &ip(66), vec![]),
        ],
        "tests/testbed_tags setup",
    )
    .await;
    delete_ledger();
    ganeti::apply_cluster(&root, CLUSTER, SECRET, json!({})).await;
    let roles: Api<Role> = Api::all(root.clone());
    let bindings: Api<RoleBinding> = Api::all(root.clone());
    for b in BINDINGS {
        let _ = bindings.delete(b, &DeleteParams::default()).await;
    }
    apply(
        &roles,
        "tags-power",
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": "tags-power"},
               "spec": {"scope": {"kind": "All"},
                        "vms": {"view": "allowed", "start": "allowed", "shutdown": "allowed", "reboot": "allowed", "console": "allowed"}}}),
    )
    .await;

    let mut op = Operator::start("tags").await;
    wait_leading(&op).await;

    // 1. A binding granting bob power on alice's VM: the tag appears in Ganeti.
    let bob_tag = "GANETI_WEB_MANAGER:power:U:bob";
    power_on_vm(&bindings, "tags-bob-power", "bob").await;
    let latency = wait_until("bob's tag in Ganeti", 60, &op, async || {
        tags_of(VM).contains(bob_tag)
    })
    .await;
    println!("binding applied -> tag in Ganeti: {latency:?}");
    let b = bindings.get("tags-bob-power").await.unwrap();
    let mut b = b;
    wait_until("bob's binding reports its tag", 30, &op, async || {
        b = bindings.get("tags-bob-power").await.unwrap();
        b.status.as_ref().is_some_and(|s| s.tag_count == 1)
    })
    .await;
    let s = b.status.clone().unwrap();
    assert_eq!(s.tags_written, vec![format!("{CLUSTER}/{VM}: {bob_tag}")]);
    assert_eq!(s.instances_covered.len(), 1);
    assert_eq!(s.resolved_subjects[0].name, "bob");
    assert_eq!(condition(&b, "Ready").0, "True", "{:?}", s.conditions);
    assert_eq!(condition(&b, "RoleFound").0, "True");
    let ledger: Api<ConfigMap> = Api::namespaced(root.clone(), "ganeti-system");
    let cm = ledger
        .get(&format!("ganeti-tags.{CLUSTER}"))
        .await
        .expect("the ledger exists");
    assert_eq!(cm.data.unwrap()[VM], format!("{bob_tag}\n"));

    // 2. Tags by hand: one unrelated, one equal to what a new binding implies.
    gnt(&format!(
        "gnt-instance add-tags {VM} handmade GANETI_WEB_MANAGER:tags:U:carol GANETI_WEB_MANAGER:power:U:carol"
    ));
    power_on_vm(&bindings, "tags-carol-power", "carol").await;
    wait_until("carol's binding reports the hand-made tag", 30, &op, async || {
        bindings
            .get("tags-carol-power")
            .await
            .unwrap()
            .status
            .is_some_and(|s| s.tag_count == 1)
    })
    .await;

    // 3. Steady state: two inventory refreshes later, not one RAPI write.
    let before = op.metrics().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = op.metrics().await;
    let status_writes = |m: &str| {
        sample(
            m,
            "ganeti_operator_status_writes_total{controller=\"rolebinding\"}",
        )
        .unwrap_or(0.0)
    };
    let syncs = |m: &str| sample(m, "ganeti_operator_reconciles_total{controller=\"tags\"}").unwrap_or(0.0);
    println!(
        "steady state over 12 s: {} cluster syncs, {} RAPI tag writes, {} RoleBinding status writes",
        syncs(&after) - syncs(&before),
        writes(&after) - writes(&before),
        status_writes(&after) - status_writes(&before)
    );
    assert!(
        syncs(&after) - syncs(&before) >= 2.0,
        "re-synced after each refresh"
    );
    assert_eq!(
        writes(&after) - writes(&before),
        0.0,
        "no RAPI write when nothing changed"
    );
    assert_eq!(
        status_writes(&after) - status_writes(&before),
        0.0,
        "no status write either:\n{}",
        op.log()
            .lines()
            .filter(|l| l.contains("writing RoleBinding status"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // 4. Removing the bindings removes exactly the tag the operator wrote.
    for b in ["tags-bob-power", "tags-carol-power"] {
        bindings.delete(b, &DeleteParams::default()).await.unwrap();
    }
    wait_until("bob's tag removed", 60, &op, async || {
        !tags_of(VM).contains(bob_tag)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        tags_of(VM),
        set(&[
            "ganetimgr:user:alice",
            "webserver",
            "handmade",
            "GANETI_WEB_MANAGER:tags:U:carol",
            "GANETI_WEB_MANAGER:power:U:carol",
        ]),
        "everything not written by the operator stays"
    );

    // 5. The ledger survives a restart: a binding deleted while the operator is down
    //    still has its tag removed.
    let dave_tag = "GANETI_WEB_MANAGER:power:U:dave";
    power_on_vm(&bindings, "tags-dave-power", "dave").await;
    let latency = wait_until("dave's tag in Ganeti", 60, &op, async || {
        tags_of(VM).contains(dave_tag)
    })
    .await;
    println!("binding applied -> tag in Ganeti (operator running): {latency:?}");
    bindings
        .delete("tags-dave-power", &DeleteParams::default())
        .await
        .unwrap();
    let latency = wait_until("dave's tag removed", 60, &op, async || {
        !tags_of(VM).contains(dave_tag)
    })
    .await;
    println!("binding deleted -> tag gone from Ganeti: {latency:?}");
    power_on_vm(&bindings, "tags-dave-power", "dave").await;
    wait_until("dave's tag in Ganeti again", 60, &op, async || {
        tags_of(VM).contains(dave_tag)
    })
    .await;
    let (exit, log) = op.stop();
    assert!(exit.success(), "{log}");
    assert!(
        !log.contains(&env("GANETI_RAPI_PASSWORD")),
        "no password in the log"
    );
    bindings
        .delete("tags-dave-power", &DeleteParams::default())
        .await
        .unwrap();
    let op = Operator::start("tags-restarted").await;
    wait_leading(&op).await;
    wait_until("dave's tag removed after the restart", 60, &op, async || {
        !tags_of(VM).contains(dave_tag)
    })
    .await;

    // 6. A VM created through an application gets its owner's tag.
    let _ = kubectl("root", &["create", "namespace", NS]);
    let apps: Api<InstanceApplication> = Api::namespaced(root.clone(), NS);
    apply(
        &apps,
        "tags-team1",
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
               "metadata": {"name": "tags-team1", "namespace": NS},
               "spec": {"cluster": CLUSTER, "hostname": VM_APP, "vcpus": 1, "memory": "128Mi",
                        "disks": [{"size": "1Gi"}], "owner": {"kind": "Group", "name": "team-a"},
                        "purpose": "tag sync test"}}),
    )
    .await;
    // Stand in for the application controller's last step (the VM exists already);
    // repeated in case that controller writes its first status in between.
    let created = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
                         "status": {"phase": "Created", "cluster": CLUSTER, "instanceName": VM_APP}});
    let owner_tag = "GANETI_WEB_MANAGER:owner:G:team-a";
    wait_until("the owner tag on the application's VM", 60, &op, async || {
        let app = apps.get("tags-team1").await.unwrap();
        if app
            .status
            .as_ref()
            .is_none_or(|s| s.phase != ganeti_operator::api::application::Phase::Created)
        {
            apps.patch_status(
                "tags-team1",
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&created),
            )
            .await
            .unwrap();
        }
        tags_of(VM_APP).contains(owner_tag)
    })
    .await;

    // 7. Subjects outside the tag charset are encoded; an over-long tag is an error on
    //    the binding, not a truncated tag.
    power_on_vm(&bindings, "tags-odd-name", "Dr. Who").await;
    let long = "x".repeat(110);
    power_on_vm(&bindings, "tags-long-name", &long).await;
    wait_until("the encoded tag", 60, &op, async || {
        tags_of(VM).contains("GANETI_WEB_MANAGER:power:U:Dr.+20Who")
    })
    .await;
    let mut lb = bindings.get("tags-long-name").await.unwrap();
    wait_until("the long name's error", 30, &op, async || {
        lb = bindings.get("tags-long-name").await.unwrap();
        lb.status.is_some() && condition(&lb, "TagsInSync").0 == "False"
    })
    .await;
    let (_, reason, message) = condition(&lb, "TagsInSync");
    assert_eq!(reason, "TagError");
    assert!(message.contains("at most 128"), "{message}");
    assert!(!tags_of(VM).iter().any(|t| t.contains("xxxxxxxxxx")));

    // 8. Foreign tags decide: a hand-made GWM grant, ganetimgr ownership and lock.
    gnt(&format!("gnt-instance add-tags {VM} {bob_tag}"));
    let object = format!("{CLUSTER}/{VM}");
    let (allowed, text) = explain(&["bob", "reboot", &object]);
    assert!(allowed, "{text}");
    assert!(text.contains(&format!("tag {bob_tag} grants it")), "{text}");
    bind(
        &bindings,
        "tags-alice-user",
        "user",
        json!({"kind": "User", "name": "alice"}),
        None,
    )
    .await;
    let (allowed, text) = explain(&["alice", "reboot", &object]);
    assert!(allowed, "{text}");
    assert!(
        text.contains("owned by user alice (the requester): tag ganetimgr:user:alice"),
        "{text}"
    );
    assert!(text.contains("binding tags-alice-user"), "{text}");
    let (allowed, text) = explain(&["dave", "reboot", &object]);
    assert!(!allowed, "no binding, no tag: {text}");
    gnt(&format!("gnt-instance add-tags {VM} ganetimgr:adminlock"));
    let (allowed, text) = explain(&["alice", "reboot", &object]);
    assert!(!allowed, "{text}");
    assert!(text.contains("locked"), "{text}");
    let (allowed, text) = explain(&["alice", "view", &object]);
    assert!(allowed, "a lock leaves visibility: {text}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(tags_of(VM).contains(bob_tag), "the hand-made tag stays");
    assert!(tags_of(VM).contains("ganetimgr:adminlock"));

    // 9. The administrator role says whether anyone administers the service.
    support::apply_manifest("examples/10-roles-preconfigured.yaml");
    let admin_bound = async || {
        let all = bindings.list(&Default::default()).await.unwrap().items;
        let role = roles.get("administrator").await.unwrap();
        let reported = role
            .status
            .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "AdministratorBound"))
            .map(|c| c.status == "True");
        (ganeti_operator::authz::has_administrator_binding(&all), reported)
    };
    let mut state = (false, None);
    wait_until("AdministratorBound reported", 30, &op, async || {
        state = admin_bound().await;
        state.1 == Some(state.0)
    })
    .await;
    if !state.0 {
        // Nobody administers the shared apiserver's service now: bind and unbind someone.
        bind(
            &bindings,
            "tags-admins",
            "administrator",
            json!({"kind": "Group", "name": "ganeti-admins"}),
            None,
        )
        .await;
        wait_until("AdministratorBound True", 30, &op, async || {
            admin_bound().await.1 == Some(true)
        })
        .await;
        bindings
            .delete("tags-admins", &DeleteParams::default())
            .await
            .unwrap();
        wait_until("AdministratorBound False", 30, &op, async || {
            admin_bound().await.1 == Some(false)
        })
        .await;
    }
    drop(op);
}
