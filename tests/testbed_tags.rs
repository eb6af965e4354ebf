//! Tag sync on the real testbed: RoleBindings narrowed to a VM become Ganeti Web Manager
//! tags in the real Ganeti and go away with their binding, tags written by hand stay,
//! the ledger (keyed by instance UUID) survives a restart and a rename, a name reused
//! after a destroy inherits nothing, an application whose status names another user's
//! VM gets no owner tag on it, and an unchanged world costs no RAPI write.
//! `ganeti-operator explain` reads foreign tags as grants, ownership and locks.
//!
//! Instances: `tags-*` names, IPs 198.51.100.65-.72. One test function: the steps share
//! one operator and one cluster.

mod support;

use ganeti_operator::api::{InstanceApplication, Role, RoleBinding};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use support::crds::install_crds;
use support::ganeti::{self, gnt, ip, tags_of};
use support::operator::{Operator, explain, sample};
use support::testbed::{env, kube_client, kubectl};
use support::{MANAGER, apply};

const CLUSTER: &str = "tags-tb";
const SECRET: &str = "rapi-tags-tb";
const NS: &str = "tags-test";
/// alice's VM, as ganetimgr knows it.
const VM: &str = "tags-alice1.example.org";
/// bob's VM, which alice's application will claim in its status.
const VM_APP: &str = "tags-team1.example.org";
/// A VM that is renamed to [`VM_RENAMED`].
const VM_RENAME: &str = "tags-rename1.example.org";
const VM_RENAMED: &str = "tags-rename2.example.org";
/// A VM destroyed and created again under the same name.
const VM_REUSE: &str = "tags-reuse1.example.org";
const BINDINGS: &[&str] = &[
    "tags-bob-power",
    "tags-carol-power",
    "tags-dave-power",
    "tags-long-name",
    "tags-odd-name",
    "tags-alice-user",
    "tags-admins",
    "tags-erin-power",
    "tags-frank-power",
];

/// The instance's Ganeti UUID.
fn uuid_of(vm: &str) -> String {
    gnt(&format!("gnt-instance list --no-headers -o uuid {vm}"))
        .trim()
        .to_owned()
}

/// The ledger's entries (instance UUID -> tags), empty when there is none.
async fn ledger_entries(root: &kube::Client) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let api: Api<ConfigMap> = Api::namespaced(root.clone(), "ganeti-system");
    api.get_opt(&format!("ganeti-tags.{CLUSTER}"))
        .await
        .unwrap()
        .and_then(|cm| cm.data)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.lines().map(str::to_owned).collect()))
        .collect()
}

/// Waits until the tag sync has run `n` more passes over the clusters (each inventory
/// refresh makes one): what it would do, it has done.
async fn wait_syncs(op: &Operator, n: f64) {
    let syncs = |m: &str| sample(m, "ganeti_operator_reconciles_total{controller=\"tags\"}").unwrap_or(0.0);
    let start = syncs(&op.metrics().await);
    op.wait_until("more tag syncs", 60, async || {
        syncs(&op.metrics().await) >= start + n
    })
    .await;
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
    support::testbed::delete_config_map(&format!("ganeti-tags.{CLUSTER}"));
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
    op.wait_until("the operator leads and syncs tags", 120, async || {
        op.log().contains("tag sync: roles and bindings listed")
    })
    .await;
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
    // The renamed VM goes under its new name too.
    let _renamed = ganeti::Instances::fresh(vec![VM_RENAMED.to_owned()]);
    let _vms = ganeti::create_instances(
        &[
            (
                VM,
                &ip(65),
                vec!["ganetimgr:user:alice".into(), "webserver".into()],
            ),
            (VM_APP, &ip(66), vec!["GANETI_WEB_MANAGER:owner:U:bob".into()]),
            (VM_RENAME, &ip(67), vec![]),
            (VM_REUSE, &ip(68), vec![]),
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
    let latency = op
        .wait_until("bob's tag in Ganeti", 60, async || tags_of(VM).contains(bob_tag))
        .await;
    println!("binding applied -> tag in Ganeti: {latency:?}");
    let b = bindings.get("tags-bob-power").await.unwrap();
    let mut b = b;
    op.wait_until("bob's binding reports its tag", 30, async || {
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
    assert_eq!(
        cm.data.unwrap()[&uuid_of(VM)],
        format!("{bob_tag}\n"),
        "recorded under the VM's UUID"
    );
    assert_eq!(
        cm.metadata.annotations.unwrap()["ganeti.dev/ledger-keys"],
        "instance-uuid"
    );

    // 2. Tags by hand: one unrelated, one equal to what a new binding implies.
    gnt(&format!(
        "gnt-instance add-tags {VM} handmade GANETI_WEB_MANAGER:tags:U:carol GANETI_WEB_MANAGER:power:U:carol"
    ));
    power_on_vm(&bindings, "tags-carol-power", "carol").await;
    op.wait_until("carol's binding reports the hand-made tag", 30, async || {
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
    op.wait_until("bob's tag removed", 60, async || !tags_of(VM).contains(bob_tag))
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
    let latency = op
        .wait_until("dave's tag in Ganeti", 60, async || {
            tags_of(VM).contains(dave_tag)
        })
        .await;
    println!("binding applied -> tag in Ganeti (operator running): {latency:?}");
    bindings
        .delete("tags-dave-power", &DeleteParams::default())
        .await
        .unwrap();
    let latency = op
        .wait_until("dave's tag removed", 60, async || !tags_of(VM).contains(dave_tag))
        .await;
    println!("binding deleted -> tag gone from Ganeti: {latency:?}");
    power_on_vm(&bindings, "tags-dave-power", "dave").await;
    op.wait_until("dave's tag in Ganeti again", 60, async || {
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
    let mut op = Operator::start("tags-restarted").await;
    wait_leading(&op).await;
    op.wait_until("dave's tag removed after the restart", 60, async || {
        !tags_of(VM).contains(dave_tag)
    })
    .await;

    // 6. The takeover of issue 14: alice's application claims, in its status, bob's VM
    //    (as patching the hostname mid-creation once made it do). The tag sync writes
    //    no owner tag: the owner tag goes with the create request of the VM the
    //    application's own job makes, and nowhere else.
    let _ = kubectl("root", &["create", "namespace", NS]);
    let apps: Api<InstanceApplication> = Api::namespaced(root.clone(), NS);
    apply(
        &apps,
        "tags-team1",
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
               "metadata": {"name": "tags-team1", "namespace": NS},
               "spec": {"cluster": CLUSTER, "hostname": "tags-alice-new.example.org", "vcpus": 1, "memory": "128Mi",
                        "disks": [{"size": "1Gi"}], "owner": {"kind": "Group", "name": "team-a"},
                        "purpose": "tag sync test"}}),
    )
    .await;
    let claimed = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
                         "status": {"phase": "Created", "cluster": CLUSTER, "instanceName": VM_APP}});
    apps.patch_status(
        "tags-team1",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&claimed),
    )
    .await
    .unwrap();
    wait_syncs(&op, 3.0).await;
    assert_eq!(
        tags_of(VM_APP),
        set(&["GANETI_WEB_MANAGER:owner:U:bob"]),
        "bob's VM stays bob's: no owner:G:team-a on it"
    );
    let _ = apps.delete("tags-team1", &DeleteParams::default()).await;

    // 7. Subjects outside the tag charset are encoded; an over-long tag is an error on
    //    the binding, not a truncated tag.
    power_on_vm(&bindings, "tags-odd-name", "Dr. Who").await;
    let long = "x".repeat(110);
    power_on_vm(&bindings, "tags-long-name", &long).await;
    op.wait_until("the encoded tag", 60, async || {
        tags_of(VM).contains("GANETI_WEB_MANAGER:power:U:Dr.+20Who")
    })
    .await;
    let mut lb = bindings.get("tags-long-name").await.unwrap();
    op.wait_until("the long name's error", 30, async || {
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
    op.wait_until("AdministratorBound reported", 30, async || {
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
        op.wait_until("AdministratorBound True", 30, async || {
            admin_bound().await.1 == Some(true)
        })
        .await;
        bindings
            .delete("tags-admins", &DeleteParams::default())
            .await
            .unwrap();
        op.wait_until("AdministratorBound False", 30, async || {
            admin_bound().await.1 == Some(false)
        })
        .await;
    }

    // 10. A renamed VM keeps its ledger entry: its tag is still known as the
    //     operator's, nothing is written by the old name, and when the binding goes
    //     the tag goes from the VM under its new name.
    let erin_tag = "GANETI_WEB_MANAGER:power:U:erin";
    let rename_uuid = uuid_of(VM_RENAME);
    bind(
        &bindings,
        "tags-erin-power",
        "tags-power",
        json!({"kind": "User", "name": "erin"}),
        Some(VM_RENAME),
    )
    .await;
    op.wait_until("erin's tag in Ganeti", 60, async || {
        tags_of(VM_RENAME).contains(erin_tag)
    })
    .await;
    wait_syncs(&op, 1.0).await;
    assert_eq!(ledger_entries(&root).await[&rename_uuid], set(&[erin_tag]));
    // The admin lists the new name beside the old one first: a sync between the rename
    // and the binding's edit must find the VM covered under either name (a binding
    // naming only a name that no longer exists rightly implies nothing).
    let both = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding",
        "metadata": {"name": "tags-erin-power"},
        "spec": {"roleRef": "tags-power", "subjects": [{"kind": "User", "name": "erin"}],
                 "instances": [{"cluster": CLUSTER, "name": VM_RENAME}, {"cluster": CLUSTER, "name": VM_RENAMED}]}});
    apply(&bindings, "tags-erin-power", &both).await;
    wait_syncs(&op, 1.0).await;
    let before = writes(&op.metrics().await);
    gnt(&format!("gnt-instance shutdown --timeout=0 {VM_RENAME}"));
    gnt(&format!(
        "gnt-instance rename --force --no-ip-check --no-name-check {VM_RENAME} {VM_RENAMED}"
    ));
    assert_eq!(uuid_of(VM_RENAMED), rename_uuid, "Ganeti keeps the UUID");
    // The binding follows the VM to its new name.
    bind(
        &bindings,
        "tags-erin-power",
        "tags-power",
        json!({"kind": "User", "name": "erin"}),
        Some(VM_RENAMED),
    )
    .await;
    wait_syncs(&op, 3.0).await;
    assert_eq!(
        writes(&op.metrics().await) - before,
        0.0,
        "nothing re-added, by either name:\n{}",
        op.log()
    );
    assert_eq!(
        ledger_entries(&root).await[&rename_uuid],
        set(&[erin_tag]),
        "the record stays with the VM"
    );
    bindings
        .delete("tags-erin-power", &DeleteParams::default())
        .await
        .unwrap();
    op.wait_until("erin's tag removed from the renamed VM", 60, async || {
        !tags_of(VM_RENAMED).contains(erin_tag)
    })
    .await;

    // 11. A VM destroyed and another created under its name (while the operator was
    //     down, so no pass saw the name free) inherits nothing from the ledger: the
    //     same tag, now written by hand on the new VM, is not the operator's and stays
    //     when the binding goes.
    let frank_tag = "GANETI_WEB_MANAGER:power:U:frank";
    bind(
        &bindings,
        "tags-frank-power",
        "tags-power",
        json!({"kind": "User", "name": "frank"}),
        Some(VM_REUSE),
    )
    .await;
    op.wait_until("frank's tag in Ganeti", 60, async || {
        tags_of(VM_REUSE).contains(frank_tag)
    })
    .await;
    let old_uuid = uuid_of(VM_REUSE);
    wait_syncs(&op, 1.0).await;
    assert!(ledger_entries(&root).await.contains_key(&old_uuid));
    let (exit, log) = op.stop();
    assert!(exit.success(), "{log}");
    ganeti::remove_instance(VM_REUSE);
    let _reused = ganeti::create_instances(
        &[(VM_REUSE, &ip(68), vec![frank_tag.to_owned()])],
        "tests/testbed_tags: a name reused",
    )
    .await;
    let new_uuid = uuid_of(VM_REUSE);
    assert_ne!(new_uuid, old_uuid);
    bindings
        .delete("tags-frank-power", &DeleteParams::default())
        .await
        .unwrap();
    let op = Operator::start("tags-reused").await;
    wait_leading(&op).await;
    // The pass that plans on the new VM drops the old one's record: until then, the
    // counted reconciles may be early ones (no inventory or RAPI client yet).
    op.wait_until("the old VM's record dropped from the ledger", 60, async || {
        !ledger_entries(&root).await.contains_key(&old_uuid)
    })
    .await;
    wait_syncs(&op, 2.0).await;
    assert!(
        tags_of(VM_REUSE).contains(frank_tag),
        "the hand-written tag on the new VM stays:\n{}",
        op.log()
    );
    let entries = ledger_entries(&root).await;
    assert!(
        !entries.contains_key(&old_uuid)
            && !entries.contains_key(&new_uuid)
            && !entries.contains_key(VM_REUSE),
        "{entries:?}"
    );
    drop(op);
}
