//! System rights decided by the roles, at the real API server's admission: the operator
//! publishes who holds each right (ConfigMap ganeti-system-rights, and the subjects of
//! the ClusterRoleBindings ganeti.dev:system-*), and the policies of
//! manifests/admission.yaml read it.
//!
//! - a user bound to a custom Role with `system.applications` decides applications;
//! - a member of the admin group whose Role forbids it cannot;
//! - `system.quotas` lets its holder change ClusterQuotas and nothing else;
//! - a group listed in a UserProfile counts as the user's own group, as at the API.
//!
//! Requests are made as the testbed's superuser impersonating the users (admission sees
//! the impersonated identity); writes are server-side dry runs, so nothing acts on them.

mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use std::time::Duration;
use support::operator::Operator;
use support::testbed::{delete_if_present, kubectl};

const NS: &str = "ganeti-system";
const ROLES: &[&str] = &["sr-reviewer", "sr-no-deciding", "sr-quota-keeper"];
const BINDINGS: &[&str] = &["sr-rita", "sr-gwen", "sr-quinn", "sr-reviewers"];
const PROFILE: &str = "sr-pat";

struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_if_present("rolebindings.ganeti.dev", BINDINGS);
        delete_if_present("roles.ganeti.dev", ROLES);
        delete_if_present("userprofiles.ganeti.dev", &[PROFILE]);
    }
}

/// Runs kubectl as root impersonating `user` (and `groups`), with `stdin` as the
/// object for `apply`-like commands; returns (success, output).
fn as_user(user: &str, groups: &[&str], args: &[&str], stdin: Option<&serde_json::Value>) -> (bool, String) {
    let mut full: Vec<String> = vec![format!("--as={user}")];
    full.extend(groups.iter().map(|g| format!("--as-group={g}")));
    full.extend(args.iter().map(|a| a.to_string()));
    let file;
    if let Some(obj) = stdin {
        file = std::env::temp_dir().join(format!("sr-{}-{}.json", std::process::id(), rand_suffix()));
        std::fs::write(&file, obj.to_string()).unwrap();
        full.push("-f".into());
        full.push(file.display().to_string());
    }
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    let (ok, out, err) = kubectl("root", &refs);
    (ok, format!("{out}{err}"))
}

fn rand_suffix() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn role(name: &str, system: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": name},
           "spec": {"system": system}})
}

fn binding(name: &str, role: &str, subject: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": name},
           "spec": {"roleRef": role, "subjects": [subject]}})
}

fn apply_as_root(obj: &serde_json::Value) {
    let (ok, out) = as_user(
        "testbed-root",
        &["system:masters"],
        &["apply", "--server-side", "--force-conflicts"],
        Some(obj),
    );
    assert!(ok, "applying {obj}: {out}");
}

/// An application of alice's, as the reviewer patches it (dry run).
fn decide_as(user: &str, groups: &[&str]) -> (bool, String) {
    let patch = json!({"spec": {"decision": {"verdict": "Approved", "reason": "looks fine"}}}).to_string();
    as_user(
        user,
        groups,
        &[
            "patch",
            "instanceapplication",
            "sr-app",
            "-n",
            "sr-alice",
            "--type",
            "merge",
            "--dry-run=server",
            "-p",
            &patch,
        ],
        None,
    )
}

/// Waits until admission (which reads the ConfigMap through an informer) answers `want`.
async fn until(what: &str, want: bool, mut probe: impl FnMut() -> (bool, String)) -> String {
    let mut last = String::new();
    for _ in 0..75 {
        let (ok, out) = probe();
        if ok == want {
            return out;
        }
        last = out;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    panic!(
        "{what}: never {}; last answer: {last}",
        if want { "allowed" } else { "refused" }
    );
}

async fn published(root: &kube::Client, key: &str, name: &str, op: &Operator) {
    listed(root, key, name, true, op).await
}

/// Waits until the operator lists (or no longer lists) `name` under `key`.
async fn listed(root: &kube::Client, key: &str, name: &str, present: bool, op: &Operator) {
    let cms: Api<ConfigMap> = Api::namespaced(root.clone(), NS);
    for _ in 0..150 {
        if let Ok(cm) = cms.get("ganeti-system-rights").await {
            let data = cm.data.unwrap_or_default();
            let has = data.get(key).is_some_and(|v| v.lines().any(|l| l == name));
            if has == present {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "ganeti-system-rights never had {name} under {key} = {present}:\n{}",
        op.log()
    );
}

#[tokio::test]
async fn system_rights_come_from_the_roles_at_admission() {
    let root = support::install_with_policies().await;
    let _cleanup = Cleanup;
    let op = Operator::start("system-rights").await;
    support::applicant_namespaces("sr", &["alice"]);
    let app = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": "sr-app", "namespace": "sr-alice"},
        "spec": {"hostname": "sr-app.example.org", "cluster": "sr-no-such-cluster", "vcpus": 1, "memory": "1Gi",
                 "disks": [{"size": "1Gi"}], "owner": {"kind": "User", "name": "alice"},
                 "purpose": "system rights test"}});
    // Her namespace's RBAC and the policies reach a fresh API server's caches in a moment.
    until("alice filing", true, || {
        as_user("alice", &[], &["apply", "--server-side"], Some(&app))
    })
    .await;

    for (name, system) in [
        ("sr-reviewer", json!({"applications": "allowed"})),
        ("sr-no-deciding", json!({"applications": "forbidden"})),
        ("sr-quota-keeper", json!({"quotas": "allowed"})),
    ] {
        apply_as_root(&role(name, system));
    }

    // What an earlier run left is published until a leader recomputes it.
    for (key, name) in [
        ("applications.allowedUsers", "rita"),
        ("applications.forbiddenUsers", "gwen"),
        ("quotas.allowedUsers", "quinn"),
        ("applications.allowedUsers", "pat"),
    ] {
        listed(&root, key, name, false, &op).await;
    }

    // 1. rita holds system.applications through a custom Role: she decides, and RBAC
    //    lets her reach applications in every namespace (the operator binds her).
    until("rita deciding before any role", false, || decide_as("rita", &[])).await;
    apply_as_root(&binding(
        "sr-rita",
        "sr-reviewer",
        json!({"kind": "User", "name": "rita"}),
    ));
    published(&root, "applications.allowedUsers", "rita", &op).await;
    let crbs: Api<ClusterRoleBinding> = Api::all(root.clone());
    let crb = crbs.get("ganeti.dev:system-applications").await.unwrap();
    assert!(
        crb.subjects
            .unwrap_or_default()
            .iter()
            .any(|s| s.kind == "User" && s.name == "rita"),
        "the operator binds holders in RBAC"
    );
    until("rita deciding", true, || decide_as("rita", &[])).await;
    // Without the right, a plain user is refused by admission, naming the right.
    let (ok, out) = decide_as("alice", &[]);
    assert!(
        !ok && out.contains("do not hold the system right applications"),
        "{out}"
    );

    // 2. gwen is in the admin group, but a Role forbids her deciding: refused.
    until("gwen (admin group) deciding", true, || {
        decide_as("gwen", &["ganeti-admins"])
    })
    .await;
    apply_as_root(&binding(
        "sr-gwen",
        "sr-no-deciding",
        json!({"kind": "User", "name": "gwen"}),
    ));
    published(&root, "applications.forbiddenUsers", "gwen", &op).await;
    let out = until("gwen deciding under a forbidding role", false, || {
        decide_as("gwen", &["ganeti-admins"])
    })
    .await;
    assert!(out.contains("system right applications"), "{out}");

    // 3. quinn holds system.quotas: ClusterQuotas yes, nothing else.
    let quota = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "ClusterQuota",
        "metadata": {"name": "sr-quota"},
        "spec": {"cluster": "sr-no-such-cluster", "limits": {"instances": 3}}});
    let create_quota = || as_user("quinn", &[], &["create", "--dry-run=server"], Some(&quota));
    until("quinn creating a quota before any role", false, create_quota).await;
    apply_as_root(&binding(
        "sr-quinn",
        "sr-quota-keeper",
        json!({"kind": "User", "name": "quinn"}),
    ));
    published(&root, "quotas.allowedUsers", "quinn", &op).await;
    until("quinn creating a ClusterQuota", true, create_quota).await;
    let (ok, out) = decide_as("quinn", &[]);
    assert!(!ok, "quinn decides an application: {out}");
    let (ok, out) = as_user(
        "quinn",
        &[],
        &["create", "--dry-run=server"],
        Some(&role("sr-quinn-made", json!({"quotas": "allowed"}))),
    );
    assert!(!ok, "quinn writes a Role: {out}");
    let cluster = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "GanetiCluster",
        "metadata": {"name": "sr-quinn-cluster"},
        "spec": {"rapiUrl": "https://127.0.0.1:5080", "credentialsSecret": {"name": "x"}}});
    let (ok, out) = as_user("quinn", &[], &["create", "--dry-run=server"], Some(&cluster));
    assert!(
        !ok && out.contains("forbidden"),
        "quinn creates a GanetiCluster: {out}"
    );
    let (ok, out) = as_user(
        "admin",
        &["ganeti-admins"],
        &["create", "--dry-run=server"],
        Some(&cluster),
    );
    assert!(ok, "the cluster object itself is valid: {out}");
    let profile = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile",
        "metadata": {"name": "sr-quinn-edits-bob"}, "spec": {"username": "bob", "email": "bob@example.org"}});
    let (ok, out) = as_user("quinn", &[], &["create", "--dry-run=server"], Some(&profile));
    assert!(
        !ok && out.contains("system right users"),
        "quinn keeps bob's profile: {out}"
    );

    // 4. pat's group sr-reviewers comes from his UserProfile alone (Kubernetes
    //    authenticates no group for him): it counts as his, as at the API.
    until("pat deciding before his profile names the group", false, || {
        decide_as("pat", &[])
    })
    .await;
    apply_as_root(&binding(
        "sr-reviewers",
        "sr-reviewer",
        json!({"kind": "Group", "name": "sr-reviewers"}),
    ));
    apply_as_root(
        &json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile",
        "metadata": {"name": PROFILE}, "spec": {"username": "pat", "email": "pat@example.org", "groups": ["sr-reviewers"]}}),
    );
    published(&root, "applications.allowedUsers", "pat", &op).await;
    until("pat deciding through his profile's group", true, || {
        decide_as("pat", &[])
    })
    .await;
    // And applying on the group's behalf, which needs membership.
    let group_app = json!({"apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": "sr-group-app", "namespace": "sr-alice"},
        "spec": {"hostname": "sr-group-app.example.org", "vcpus": 1, "memory": "1Gi",
                 "disks": [{"size": "1Gi"}], "owner": {"kind": "Group", "name": "sr-reviewers"},
                 "purpose": "system rights test"}});
    let (ok, out) = as_user("alice", &[], &["create", "--dry-run=server"], Some(&group_app));
    assert!(
        !ok && out.contains("not a member of group"),
        "alice is no member: {out}"
    );

    let apps: Api<ganeti_operator::api::InstanceApplication> = Api::namespaced(root.clone(), "sr-alice");
    let _ = apps.delete("sr-app", &DeleteParams::default()).await;
}
