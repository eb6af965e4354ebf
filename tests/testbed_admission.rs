//! Identity rules for InstanceApplications, enforced by the real API server's admission
//! policies (manifests/admission.yaml): who filed, on whose behalf, who decides.

mod support;

use ganeti_operator::api::InstanceApplication;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;
use support::crds::install_crds;
use support::refused;
use support::testbed::kube_client;

/// Installs CRDs, user RBAC and the admission policies; gives each user a namespace
/// they may file applications in. Waits until the policies are in force.
async fn setup() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    for f in ["manifests/access.yaml", "manifests/admission.yaml"] {
        support::apply_manifest(f);
    }
    support::applicant_namespaces("adm", &["alice", "bob", "carol"]);
    // Policies reach the admission chain asynchronously: probe until one bites.
    let alice: Api<InstanceApplication> = Api::namespaced(kube_client("alice").await, "adm-alice");
    for attempt in 0.. {
        let probe = app("policy-probe", json!({"kind": "User", "name": "bob"}), None);
        match alice
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &probe,
            )
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 403 || e.message.contains("ValidatingAdmissionPolicy") => {
                break;
            }
            other if attempt >= 100 => panic!("admission policies never took effect: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn app(name: &str, owner: serde_json::Value, applicant: Option<&str>) -> InstanceApplication {
    let mut spec = json!({
        "hostname": format!("{name}.example.org"),
        "vcpus": 1, "memory": "1Gi", "disks": [{"size": "10Gi"}],
        "owner": owner, "purpose": "admission test",
    });
    if let Some(a) = applicant {
        spec["applicant"] = json!(a);
    }
    serde_json::from_value(json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "InstanceApplication",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

async fn api_as(user: &str, ns: &str) -> Api<InstanceApplication> {
    Api::namespaced(kube_client(user).await, ns)
}

/// Creates `app` afresh: an older application of its name is deleted first.
async fn file_fresh(
    api: &Api<InstanceApplication>,
    app: InstanceApplication,
) -> Result<InstanceApplication, kube::Error> {
    support::delete_and_wait(api, app.metadata.name.as_deref().unwrap()).await;
    api.create(&PostParams::default(), &app).await
}

#[tokio::test]
async fn the_applicant_is_recorded_and_nobody_files_as_someone_else() {
    setup().await;
    let alice = api_as("alice", "adm-alice").await;
    let created = file_fresh(
        &alice,
        app("own-vm", json!({"kind": "User", "name": "alice"}), None),
    )
    .await
    .expect("alice files for herself");
    assert_eq!(
        created.spec.applicant.as_deref(),
        Some("alice"),
        "recorded by admission"
    );

    let msg = refused(
        alice
            .create(
                &PostParams::default(),
                &app("as-bob", json!({"kind": "User", "name": "alice"}), Some("bob")),
            )
            .await,
    );
    assert!(
        msg.contains("nobody files an application as someone else"),
        "{msg}"
    );

    let msg = refused(
        alice
            .create(
                &PostParams::default(),
                &app("for-bob", json!({"kind": "User", "name": "bob"}), None),
            )
            .await,
    );
    assert!(msg.contains("would belong to user \"bob\""), "{msg}");

    // The applicant cannot be changed afterwards either (CRD transition rule).
    let patch = json!({"spec": {"applicant": "mallory"}});
    let err = alice
        .patch("own-vm", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("applicant cannot change"), "{err}");
}

#[tokio::test]
async fn group_applications_only_from_members() {
    setup().await;
    let carol = api_as("carol", "adm-carol").await;
    let created = file_fresh(
        &carol,
        app("team-vm", json!({"kind": "Group", "name": "team-a"}), None),
    )
    .await
    .expect("carol is in team-a");
    assert_eq!(created.spec.applicant.as_deref(), Some("carol"));

    let bob = api_as("bob", "adm-bob").await;
    let msg = refused(
        file_fresh(
            &bob,
            app("team-vm", json!({"kind": "Group", "name": "team-a"}), None),
        )
        .await,
    );
    assert!(msg.contains("not a member of group \"team-a\""), "{msg}");
}

#[tokio::test]
async fn only_admins_decide_and_the_decider_is_recorded() {
    setup().await;
    let alice = api_as("alice", "adm-alice").await;
    file_fresh(
        &alice,
        app("decide-me", json!({"kind": "User", "name": "alice"}), None),
    )
    .await
    .unwrap();

    // alice approving herself is refused.
    let approve = json!({"spec": {"decision": {"verdict": "Approved"}}});
    let msg = refused(
        alice
            .patch("decide-me", &PatchParams::default(), &Patch::Merge(&approve))
            .await,
    );
    assert!(msg.contains("do not hold the system right applications"), "{msg}");

    // Nor may she file one pre-approved.
    let mut pre = app("pre-approved", json!({"kind": "User", "name": "alice"}), None);
    pre.spec.decision = Some(serde_json::from_value(json!({"verdict": "Approved"})).unwrap());
    let msg = refused(file_fresh(&alice, pre).await);
    assert!(msg.contains("do not hold the system right applications"), "{msg}");

    // An admin decides; admission records who, whatever the request claimed.
    let admin = api_as("admin", "adm-alice").await;
    let approve = json!({"spec": {"decision": {"verdict": "Approved", "decidedBy": "someone-else"}}});
    let decided = admin
        .patch("decide-me", &PatchParams::default(), &Patch::Merge(&approve))
        .await
        .expect("admins decide");
    let decision = decided.spec.decision.unwrap();
    assert_eq!(decision.decided_by.as_deref(), Some("admin"));

    // And alice cannot rewrite the recorded decision afterwards.
    let forge = json!({"spec": {"decision": {"verdict": "Approved", "decidedBy": "alice"}}});
    let msg = refused(
        alice
            .patch("decide-me", &PatchParams::default(), &Patch::Merge(&forge))
            .await,
    );
    assert!(msg.contains("do not hold the system right applications"), "{msg}");

    // A rejection needs a reason (CRD rule), even from an admin.
    let reject = json!({"spec": {"decision": {"verdict": "Rejected", "reason": null}}});
    let err = admin
        .patch("decide-me", &PatchParams::default(), &Patch::Merge(&reject))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("a rejection needs a reason"), "{err}");
}

#[tokio::test]
async fn users_keep_only_their_own_profile_and_admins_set_groups() {
    use ganeti_operator::api::UserProfile;
    setup().await;
    let profile = |name: &str, user: &str, groups: &[&str]| -> UserProfile {
        serde_json::from_value(json!({
            "apiVersion": "ganeti.dev/v1alpha1", "kind": "UserProfile", "metadata": {"name": name},
            "spec": {"username": user, "email": format!("{user}@example.org"), "groups": groups},
        }))
        .unwrap()
    };
    let root: Api<UserProfile> = Api::all(kube_client("root").await);
    for name in ["adm-alice-profile", "adm-bob-profile"] {
        let _ = root.delete(name, &DeleteParams::default()).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alice: Api<UserProfile> = Api::all(kube_client("alice").await);
    alice
        .create(
            &PostParams::default(),
            &profile("adm-alice-profile", "alice", &[]),
        )
        .await
        .expect("own profile");

    let err = alice
        .create(&PostParams::default(), &profile("adm-bob-profile", "bob", &[]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("you may only keep your own profile"),
        "{err}"
    );

    let join = json!({"spec": {"groups": ["ganeti-admins"]}});
    let err = alice
        .patch("adm-alice-profile", &PatchParams::default(), &Patch::Merge(&join))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("only holders of the system right users set group memberships"),
        "{err}"
    );

    let rename = json!({"spec": {"fullName": "Alice L."}});
    alice
        .patch(
            "adm-alice-profile",
            &PatchParams::default(),
            &Patch::Merge(&rename),
        )
        .await
        .expect("own edits");

    let admin: Api<UserProfile> = Api::all(kube_client("admin").await);
    let team = json!({"spec": {"groups": ["team-a"]}});
    admin
        .patch("adm-alice-profile", &PatchParams::default(), &Patch::Merge(&team))
        .await
        .expect("admins set groups");

    let bob: Api<UserProfile> = Api::all(kube_client("bob").await);
    let err = bob
        .delete("adm-alice-profile", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("you may only keep your own profile"),
        "{err}"
    );
    root.delete("adm-alice-profile", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_preconfigured_roles_cannot_be_changed_or_deleted() {
    use ganeti_operator::api::Role;
    setup().await;
    support::apply_manifest("examples/10-roles-preconfigured.yaml");
    let admin: Api<Role> = Api::all(kube_client("admin").await);
    let widen = json!({"spec": {"vms": {"destroy": "forbidden"}}});
    let err = admin
        .patch("user", &PatchParams::default(), &Patch::Merge(&widen))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the preconfigured role \"user\" cannot be changed"),
        "{err}"
    );
    let err = admin
        .delete("administrator", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot be deleted"), "{err}");
    // Labels and annotations may still change.
    let label = json!({"metadata": {"labels": {"example.org/reviewed": "yes"}}});
    admin
        .patch("advanced-user", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("metadata edits pass");
}
