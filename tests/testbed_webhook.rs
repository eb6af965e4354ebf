//! Escalation prevention on the real apiserver: the operator's admission webhook
//! (manifests/webhook.yaml, served over TLS by the real binary) refuses Roles and
//! RoleBindings that grant more than their author holds, with the missing rights named;
//! admins pass; the preconfigured `administrator` role cannot be changed.
//!
//! The webhook configuration is removed at the end (also on failure): other tests
//! share the apiserver.

mod support;

use ganeti_operator::api::{Role, RoleBinding};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{ValidatingWebhookConfiguration, WebhookClientConfig};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};
use std::time::Duration;
use support::crds::install_crds;
use support::operator::{Operator, Options};
use support::testbed::{kube_client, kubectl};
use support::{MANAGER, refused};

const WEBHOOK: &str = "ganeti.dev-rbac-escalation";
const EDITOR: &str = "wh-test-rbac-editor";
const ROLES: &[&str] = &["wh-power", "wh-destroyer"];
const BINDINGS: &[&str] = &[
    "wh-carol-power",
    "wh-bob-power",
    "wh-bob-wider",
    "wh-bob-advanced",
    "wh-ghost",
    "wh-admin-made",
];

/// Removes the webhook configuration and the test's objects, also when the test fails.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(
            "root",
            &[
                "delete",
                "validatingwebhookconfiguration",
                WEBHOOK,
                "--ignore-not-found",
            ],
        );
        for b in BINDINGS {
            let _ = kubectl(
                "root",
                &["delete", "rolebindings.ganeti.dev", b, "--ignore-not-found"],
            );
        }
        for r in ROLES {
            let _ = kubectl("root", &["delete", "roles.ganeti.dev", r, "--ignore-not-found"]);
        }
        let _ = kubectl(
            "root",
            &["delete", "clusterrolebinding", EDITOR, "--ignore-not-found"],
        );
        let _ = kubectl("root", &["delete", "clusterrole", EDITOR, "--ignore-not-found"]);
    }
}

/// A CA and a serving certificate for 127.0.0.1, as PEM: (ca, cert, key).
fn certificates() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ganeti-operator webhook test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn binding(name: &str, role: &str, user: &str, instance: Option<&str>) -> RoleBinding {
    let mut spec = json!({"roleRef": role, "subjects": [{"kind": "User", "name": user}]});
    if let Some(i) = instance {
        spec["instances"] = json!([{"cluster": "wh-c", "name": i}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "RoleBinding", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn role(name: &str, vms: Value) -> Role {
    serde_json::from_value(json!({
        "apiVersion": "ganeti.dev/v1alpha1", "kind": "Role", "metadata": {"name": name},
        "spec": {"scope": {"kind": "All"}, "vms": vms},
    }))
    .unwrap()
}

#[tokio::test]
async fn escalation_is_refused_at_admission() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    let _cleanup = Cleanup;
    for f in [
        "manifests/access.yaml",
        "manifests/admission.yaml",
        "examples/10-roles-preconfigured.yaml",
    ] {
        support::apply_manifest(f);
    }
    // carol (group team-a) and bob may write Roles and RoleBindings as far as
    // Kubernetes RBAC goes: only the webhook stands between them and escalation.
    for doc in [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": EDITOR},
               "rules": [{"apiGroups": ["ganeti.dev"], "resources": ["roles", "rolebindings"],
                          "verbs": ["get", "list", "create", "update", "patch"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": EDITOR},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": EDITOR},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"},
                            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]}),
    ] {
        let file = std::env::temp_dir().join(format!(
            "wh-{}-{}.json",
            doc["kind"].as_str().unwrap(),
            std::process::id()
        ));
        std::fs::write(&file, doc.to_string()).unwrap();
        support::testbed::kubectl_ok("root", &["apply", "--server-side", "-f", file.to_str().unwrap()]);
        let _ = std::fs::remove_file(file);
    }

    let roles: Api<Role> = Api::all(root.clone());
    let bindings: Api<RoleBinding> = Api::all(root.clone());
    for b in BINDINGS {
        let _ = bindings.delete(b, &DeleteParams::default()).await;
    }
    for r in ROLES {
        let _ = roles.delete(r, &DeleteParams::default()).await;
    }
    // What carol holds: power on one VM.
    let apply = PatchParams::apply(MANAGER).force();
    let power = role(
        "wh-power",
        json!({"view": "allowed", "start": "allowed", "shutdown": "allowed", "reboot": "allowed", "console": "allowed"}),
    );
    roles
        .patch("wh-power", &apply, &Patch::Apply(&power))
        .await
        .unwrap();
    let carols = binding("wh-carol-power", "wh-power", "carol", Some("vm1.example.org"));
    bindings
        .patch("wh-carol-power", &apply, &Patch::Apply(&carols))
        .await
        .unwrap();

    // The operator with its webhook listener, and the configuration pointing at it.
    let (ca, cert, key) = certificates();
    let dir = std::env::temp_dir().join(format!("wh-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let port = support::free_port();
    let op = Operator::start_with(
        "webhook",
        Options::default()
            .arg("--webhook-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--webhook-cert")
            .arg(cert_file.to_str().unwrap())
            .arg("--webhook-key")
            .arg(key_file.to_str().unwrap()),
    )
    .await;
    let docs = support::yaml_documents(&support::repo_path("manifests/webhook.yaml"));
    let doc = docs
        .into_iter()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("the manifest has the configuration");
    let mut config: ValidatingWebhookConfiguration = serde_json::from_value(doc).unwrap();
    for w in config.webhooks.iter_mut().flatten() {
        // The testbed runs no pods: the API server calls the operator's address directly.
        let path = w
            .client_config
            .service
            .as_ref()
            .and_then(|s| s.path.clone())
            .unwrap();
        w.client_config = WebhookClientConfig {
            url: Some(format!("https://127.0.0.1:{port}{path}")),
            ca_bundle: Some(ByteString(ca.clone().into_bytes())),
            service: None,
        };
    }
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(root.clone());
    configs
        .patch(WEBHOOK, &apply, &Patch::Apply(&config))
        .await
        .unwrap();

    let carol: Api<RoleBinding> = Api::all(kube_client("carol").await);
    let bob: Api<RoleBinding> = Api::all(kube_client("bob").await);
    let pp = PostParams::default();
    // The configuration reaches the admission chain asynchronously: probe until it bites.
    let wider = binding("wh-bob-wider", "wh-power", "bob", Some("vm2.example.org"));
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    for attempt in 0.. {
        match carol.create(&dry, &wider).await {
            Err(kube::Error::Api(e)) if e.message.contains("denied the request") => break,
            other if attempt >= 100 => panic!("the webhook never took effect: {other:?}\n{}", op.log()),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }

    // carol passes on what she holds, on the VM she holds it on...
    carol
        .create(
            &pp,
            &binding("wh-bob-power", "wh-power", "bob", Some("vm1.example.org")),
        )
        .await
        .expect("carol may grant bob what she holds");
    // ... but not on another VM.
    let msg = refused(carol.create(&pp, &wider).await);
    assert!(
        msg.contains("vms.view, vms.start, vms.shutdown, vms.reboot, vms.console"),
        "{msg}"
    );
    assert!(
        msg.contains("wh-bob-wider") && msg.contains("ganeti-admins"),
        "{msg}"
    );

    // A non-admin binding a role they do not hold (here: themselves).
    let msg = refused(
        bob.create(&pp, &binding("wh-bob-advanced", "advanced-user", "bob", None))
            .await,
    );
    assert!(
        msg.contains("clusters.createVm") && msg.contains("vms.modify"),
        "{msg}"
    );

    // A Role with a right its author lacks.
    let carol_roles: Api<Role> = Api::all(kube_client("carol").await);
    let msg = refused(
        carol_roles
            .create(&pp, &role("wh-destroyer", json!({"destroy": "allowed"})))
            .await,
    );
    assert!(msg.contains("vms.destroy"), "{msg}");

    // A binding to a role that does not exist yet.
    let msg = refused(
        carol
            .create(&pp, &binding("wh-ghost", "wh-not-yet", "bob", None))
            .await,
    );
    assert!(msg.contains("does not exist"), "{msg}");

    // An admin may grant anything; a label on it is no escalation.
    let admin: Api<RoleBinding> = Api::all(kube_client("admin").await);
    admin
        .create(&pp, &binding("wh-admin-made", "advanced-user", "bob", None))
        .await
        .expect("admins grant what they like");
    carol
        .patch(
            "wh-admin-made",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"reviewed": "yes"}}})),
        )
        .await
        .expect("a metadata change grants nothing");

    // The preconfigured administrator role cannot be changed, even by an admin.
    let admin_roles: Api<Role> = Api::all(kube_client("admin").await);
    let msg = refused(
        admin_roles
            .patch(
                "administrator",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"description": "mine now"}})),
            )
            .await,
    );
    assert!(msg.contains("cannot be changed"), "{msg}");

    let log = op.log();
    assert!(
        log.lines().any(|l| l.contains("admission review")
            && l.contains("carol")
            && l.contains("\"allowed\":false")),
        "refusals are logged with who asked:\n{log}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
