//! The API against the real kube-apiserver of the testbed: CRDs install, every example
//! round-trips, malformed manifests are refused server-side with their messages, and the
//! operator runs under its own least-privilege ServiceAccount.

mod support;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use std::time::Duration;
use support::crds::install_crds;
use support::testbed::{env, kube_client, kubectl, kubectl_ok};
use support::*;

fn api_resource(kind: &str) -> (ApiResource, bool) {
    let (_, crd) = ganeti_operator::api::crds()
        .into_iter()
        .find(|(_, c)| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for {kind}"));
    let gvk = GroupVersionKind::gvk("ganeti.dev", "v1alpha1", kind);
    (
        ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural),
        crd.spec.scope == "Namespaced",
    )
}

fn dynamic_api(client: &kube::Client, obj: &Value) -> Api<DynamicObject> {
    let (ar, namespaced) = api_resource(obj["kind"].as_str().unwrap());
    if namespaced {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

async fn ensure_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .patch(
            name,
            &PatchParams::apply("ganeti-operator-tests"),
            &Patch::Apply(&ns),
        )
        .await
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

async fn delete_and_wait(api: &Api<DynamicObject>, name: &str) {
    let _ = api.delete(name, &DeleteParams::default()).await;
    for _ in 0..50 {
        if api.get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} was not deleted");
}

#[tokio::test]
async fn every_example_is_created_listed_with_columns_and_deleted() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    let dir = repo_path("examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        for doc in yaml_documents(&path) {
            if doc["kind"] == "Secret" {
                continue;
            }
            let kind = doc["kind"].as_str().unwrap().to_string();
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            if let Some(ns) = doc["metadata"]["namespace"].as_str() {
                ensure_namespace(&root, ns).await;
            }
            let api = dynamic_api(&root, &doc);
            delete_and_wait(&api, &name).await;
            let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
            api.create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("{}: {kind}/{name} refused: {e}", path.display()));
            let back = api.get(&name).await.unwrap();
            assert_eq!(
                back.data["spec"], doc["spec"],
                "{kind}/{name} reads back as written"
            );

            let (ar, namespaced) = api_resource(&kind);
            // Fully qualified: `roles` and `rolebindings` alone mean RBAC's.
            let resource = format!("{}.ganeti.dev", ar.plural);
            let mut args = vec!["get", resource.as_str(), name.as_str()];
            let ns_arg;
            if namespaced {
                ns_arg = format!(
                    "--namespace={}",
                    doc["metadata"]["namespace"].as_str().unwrap_or("default")
                );
                args.push(&ns_arg);
            }
            let table = kubectl_ok("root", &args);
            let (_, crd) = ganeti_operator::api::crds()
                .into_iter()
                .find(|(_, c)| c.spec.names.kind == kind)
                .unwrap();
            let header = table.lines().next().unwrap_or_default();
            for column in crd.spec.versions[0].additional_printer_columns.as_ref().unwrap() {
                if column.priority.unwrap_or(0) == 0 {
                    assert!(
                        header.contains(&column.name.to_uppercase()),
                        "kubectl get {kind} shows column {}: {table}",
                        column.name
                    );
                }
            }
            assert!(table.contains(&name), "kubectl get {kind} lists {name}: {table}");
        }
    }
    // `kubectl get ganeti` lists every kind through the category.
    let all = kubectl_ok("root", &["get", "ganeti", "--all-namespaces"]);
    for kind in [
        "ganeticluster",
        "instanceapplication",
        "role",
        "rolebinding",
        "clusterquota",
        "notification",
        "userprofile",
    ] {
        assert!(
            all.contains(&format!("{kind}.ganeti.dev/")),
            "kubectl get ganeti lists {kind}: {all}"
        );
    }
    // And they are deleted again.
    for path in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
        for doc in yaml_documents(&path) {
            if doc["kind"] != "Secret" {
                delete_and_wait(
                    &dynamic_api(&root, &doc),
                    doc["metadata"]["name"].as_str().unwrap(),
                )
                .await;
            }
        }
    }
}

#[tokio::test]
async fn malformed_manifests_are_refused_by_the_api_server_with_their_message() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    let cases = invalid_cases();
    assert!(cases.len() >= 20);
    let mut wrong: Vec<String> = Vec::new();
    for case in &cases {
        let api = dynamic_api(&root, &case.object);
        let name = case.object["metadata"]["name"].as_str().unwrap();
        delete_and_wait(&api, name).await;
        let result = if let Some(old) = &case.old {
            let stored: DynamicObject = serde_json::from_value(old.clone()).unwrap();
            let stored = api
                .create(&PostParams::default(), &stored)
                .await
                .unwrap_or_else(|e| panic!("{}: the stored version is refused: {e}", case.name));
            let mut update: DynamicObject = serde_json::from_value(case.object.clone()).unwrap();
            update.metadata.resource_version = stored.metadata.resource_version;
            api.replace(name, &PostParams::default(), &update).await
        } else {
            let obj: DynamicObject = serde_json::from_value(case.object.clone()).unwrap();
            api.create(&PostParams::default(), &obj).await
        };
        match result {
            Ok(_) => wrong.push(format!(
                "{}: accepted; expected a refusal saying {:?}",
                case.name, case.expect
            )),
            Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains(&case.expect) => {}
            Err(kube::Error::Api(status)) => wrong.push(format!(
                "{}: refused ({}), but not saying {:?}: {}",
                case.name, status.code, case.expect, status.message
            )),
            Err(e) => wrong.push(format!("{}: {e}", case.name)),
        }
        delete_and_wait(&api, name).await;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn kubectl_explain_documents_the_fields() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    let out = kubectl_ok("root", &["explain", "instanceapplication.spec.memory"]);
    assert!(out.contains("Kubernetes quantity"), "{out}");
    let out = kubectl_ok("root", &["explain", "roles.ganeti.dev.spec.vms.reboot"]);
    assert!(out.contains("Reboot the VM"), "{out}");
}

/// Writes a kubeconfig for a bearer token against the testbed API server.
fn token_kubeconfig(token: &str, path: &std::path::Path) {
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": env("KUBE_SERVER"), "certificate-authority": env("KUBE_CA_FILE")}}],
        "users": [{"name": "t", "user": {"token": token}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
    });
    std::fs::write(path, serde_yaml::to_string(&doc).unwrap()).unwrap();
}

#[tokio::test]
async fn the_operator_runs_under_its_least_privilege_service_account() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    kubectl_ok(
        "root",
        &[
            "apply",
            "--server-side",
            "-f",
            repo_path("manifests/rbac.yaml").to_str().unwrap(),
        ],
    );
    let sa = "system:serviceaccount:ganeti-system:ganeti-operator";
    // What it needs, and not more.
    for (verb, resource, ns, expected) in [
        ("watch", "instanceapplications.ganeti.dev", None, "yes"),
        ("patch", "ganeticlusters.ganeti.dev/status", None, "yes"),
        ("get", "secrets", Some("ganeti-system"), "yes"),
        ("get", "secrets", Some("default"), "no"),
        ("delete", "instanceapplications.ganeti.dev", None, "no"),
        (
            "create",
            "customresourcedefinitions.apiextensions.k8s.io",
            None,
            "no",
        ),
    ] {
        let mut args = vec!["auth", "can-i", verb, resource, "--as", sa];
        if let Some(ns) = ns {
            args.extend(["--namespace", ns]);
        } else {
            args.push("--all-namespaces");
        }
        let (_, out, _) = kubectl("root", &args);
        assert_eq!(
            out.trim(),
            expected,
            "can the operator {verb} {resource} in {ns:?}?"
        );
    }

    let token = kubectl_ok(
        "root",
        &[
            "create",
            "token",
            "ganeti-operator",
            "--namespace",
            "ganeti-system",
            "--duration",
            "10m",
        ],
    );
    let dir = tempdir();
    let kubeconfig = dir.join("kubeconfig-operator");
    token_kubeconfig(token.trim(), &kubeconfig);

    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ganeti-operator"))
        .args([
            "run",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("operator starts");
    let http = reqwest::Client::new();
    let mut ready = None;
    for _ in 0..100 {
        if let Ok(resp) = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await {
            ready = Some((resp.status(), resp.text().await.unwrap_or_default()));
            if ready.as_ref().unwrap().0.is_success() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .map(|r| r.status());
    // SIGTERM: the operator must shut down cleanly.
    unsafe_kill_term(child.id());
    let output = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    let (status, body) = ready.expect("the operator's HTTP server answered");
    assert!(
        status.is_success(),
        "readyz under the ServiceAccount: {status} {body}\n{log}"
    );
    assert_eq!(metrics.unwrap().as_u16(), 200);
    assert!(
        output.status.success(),
        "exit after SIGTERM: {:?}\n{log}",
        output.status
    );
    assert!(log.contains("shut down cleanly"), "{log}");
    assert!(!log.contains(token.trim()), "the token must never be logged");
}

fn unsafe_kill_term(pid: u32) {
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ganeti-operator-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
