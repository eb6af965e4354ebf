//! The API against the real kube-apiserver of the testbed: CRDs install, every example
//! round-trips, malformed manifests are refused server-side with their messages, and the
//! operator runs under its own least-privilege ServiceAccount.

mod support;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use std::time::Duration;
use support::crds::install_crds;
use support::operator::Operator;
use support::testbed::{kube_client, kubectl, kubectl_ok};
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

/// Whether `obj` is one of ours (the examples also carry core objects, e.g. the GWM
/// id map's ConfigMap).
fn is_ours(obj: &Value) -> bool {
    obj["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("ganeti.dev/"))
}

fn dynamic_api(client: &kube::Client, obj: &Value) -> Api<DynamicObject> {
    let kind = obj["kind"].as_str().unwrap();
    let (ar, namespaced) = if is_ours(obj) {
        api_resource(kind)
    } else {
        assert_eq!(obj["apiVersion"], "v1", "an example of an unexpected API: {obj}");
        assert_eq!(kind, "ConfigMap", "an example of an unexpected core kind: {obj}");
        let gvk = GroupVersionKind::gvk("", "v1", kind);
        (ApiResource::from_gvk_with_plural(&gvk, "configmaps"), true)
    };
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
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&ns))
        .await
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
}

/// Deletes `name` and waits until it is gone; panics if it is not.
async fn must_delete(api: &Api<DynamicObject>, name: &str) {
    assert!(
        support::delete_and_wait(api, name).await,
        "{name} was not deleted"
    );
}

/// Whether every field of `expected` is in `actual` with the same value.
fn is_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            e.iter().all(|(k, v)| a.get(k).is_some_and(|av| is_subset(v, av)))
        }
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(x, y)| is_subset(x, y))
        }
        _ => expected == actual,
    }
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
            // Server-side apply: creates it, or (for the preconfigured roles, which
            // admission forbids deleting) confirms the stored one.
            api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&doc))
                .await
                .unwrap_or_else(|e| panic!("{}: {kind}/{name} refused: {e}", path.display()));
            let back = api.get(&name).await.unwrap();
            // Admission may add fields (the applicant); everything written reads back.
            assert!(
                is_subset(&doc["spec"], &back.data["spec"]),
                "{kind}/{name} reads back as written: {} vs {}",
                doc["spec"],
                back.data["spec"]
            );

            if !is_ours(&doc) {
                let back = back.data.get("data").cloned().unwrap_or_default();
                assert_eq!(back, doc["data"], "{kind}/{name} reads back as written");
                continue;
            }
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
            let preconfigured = doc["metadata"]["labels"]["ganeti.dev/preconfigured"] == "true";
            if doc["kind"] != "Secret" && !preconfigured {
                must_delete(
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
        must_delete(&api, name).await;
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
        must_delete(&api, name).await;
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

#[tokio::test]
async fn the_operator_runs_under_its_least_privilege_service_account() {
    let root = kube_client("root").await;
    install_crds(&root).await;
    support::operator::apply_operator_rbac();
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

    let mut op = Operator::start("kube").await;
    let http = reqwest::Client::new();
    let mut ready = None;
    for _ in 0..100 {
        let resp = http.get(op.url("/readyz")).send().await.unwrap();
        ready = Some((resp.status(), resp.text().await.unwrap_or_default()));
        if ready.as_ref().unwrap().0.is_success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = ready.unwrap();
    assert!(
        status.is_success(),
        "readyz under the ServiceAccount: {status} {body}\n{}",
        op.log()
    );
    assert!(op.metrics().await.contains("ganeti_operator_build_info"));
    // SIGTERM: the operator must shut down cleanly.
    let (exit, log) = op.stop();
    assert!(exit.success(), "exit after SIGTERM: {exit:?}\n{log}");
    assert!(log.contains("shut down cleanly"), "{log}");
    assert!(!log.contains("eyJ"), "no bearer token (JWT) in the log");
}

#[tokio::test]
async fn the_api_server_has_no_warnings_about_our_crds() {
    let crds = repo_path("crds");
    let (ok, _, stderr) = kubectl(
        "root",
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            crds.to_str().unwrap(),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        !stderr.contains("Warning"),
        "the API server warns about our CRDs:\n{stderr}"
    );
}
